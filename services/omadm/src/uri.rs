//! `DmUri`: a management-tree URI (`.` or `./A/B/C`), parsed and bounded, never trusted as given.
//! Every URI that reaches the tree, the MO views or TNDS has passed `DmUri::parse` under `UriLimits`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A hard ceiling on depth whatever the configured limits say, so that recursion over a tree built
/// from URIs stays shallow.
pub const DEPTH_CEILING: usize = 256;

/// The bounds a URI must respect (DevDetail `URI/MaxTotLen`, `URI/MaxDepth`, `URI/MaxSegLen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriLimits {
    /// Longest accepted URI in bytes, `./` included, a tolerated trailing `/` excluded.
    pub max_total_len: usize,
    /// Most segments below the root (`./A/B` has depth 2). Never more than [`DEPTH_CEILING`].
    pub max_depth: usize,
    /// Longest accepted segment (node name) in bytes.
    pub max_segment_len: usize,
}

impl Default for UriLimits {
    fn default() -> Self {
        UriLimits {
            max_total_len: 255,
            max_depth: 16,
            max_segment_len: 64,
        }
    }
}

impl UriLimits {
    fn depth_limit(&self) -> usize {
        self.max_depth.min(DEPTH_CEILING)
    }
}

/// Longest excerpt of offending input kept in an error, in characters.
const EXCERPT_CHARS: usize = 64;

/// A safe, bounded rendering of untrusted input for error messages: control characters escaped,
/// truncated to [`EXCERPT_CHARS`] characters with a trailing `…`.
pub(crate) fn excerpt(input: &str) -> String {
    let mut out = String::new();
    for (i, c) in input.chars().enumerate() {
        if i >= EXCERPT_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a string is not an acceptable management-tree URI. `input` is a bounded excerpt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    /// The string is empty.
    #[error("empty URI")]
    Empty,
    /// Neither `.` nor starting with `./`.
    #[error("URI {input:?} must be `.` or start with `./`")]
    MissingRootPrefix {
        /// The offending input (excerpt).
        input: String,
    },
    /// An empty segment (`//`, or `./` followed by nothing but more slashes).
    #[error("URI {input:?} has an empty segment at position {position}")]
    EmptySegment {
        /// The offending input (excerpt).
        input: String,
        /// Index of the empty segment below the root (0 = first).
        position: usize,
    },
    /// A `.` or `..` segment after the root.
    #[error("URI {input:?} has a relative segment {segment:?}")]
    DotSegment {
        /// The offending input (excerpt).
        input: String,
        /// `.` or `..`.
        segment: String,
    },
    /// A control character (NUL, CR, LF, DEL, C1 ...).
    #[error("URI {input:?} has a control character at byte {position}")]
    ControlCharacter {
        /// The offending input (excerpt).
        input: String,
        /// Byte offset of the character.
        position: usize,
    },
    /// A `?` (a DM query such as `?list=`); split it off with [`DmUri::split_query`] first.
    #[error("URI {input:?} has a query part; split it off before parsing")]
    QueryNotAllowed {
        /// The offending input (excerpt).
        input: String,
    },
    /// A segment given to `join` contains `/`.
    #[error("segment {segment:?} contains `/`")]
    SlashInSegment {
        /// The offending segment (excerpt).
        segment: String,
    },
    /// Longer than `UriLimits::max_total_len`.
    #[error("URI {input:?} is {len} bytes, the limit is {limit}")]
    TooLong {
        /// The offending input (excerpt).
        input: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Deeper than `UriLimits::max_depth`.
    #[error("URI {input:?} is deeper than {limit} segments")]
    TooDeep {
        /// The offending input (excerpt).
        input: String,
        /// The limit.
        limit: usize,
    },
    /// A segment longer than `UriLimits::max_segment_len`.
    #[error("URI {input:?} has a segment of {len} bytes, the limit is {limit}")]
    SegmentTooLong {
        /// The offending input (excerpt).
        input: String,
        /// The segment's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl UriError {
    /// True when the error is a size bound (length, depth, segment length) rather than bad syntax.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            UriError::TooLong { .. } | UriError::TooDeep { .. } | UriError::SegmentTooLong { .. }
        )
    }
}

/// A validated management-tree URI: `.` (the root) or `./seg/seg/...`, without trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DmUri(String);

impl DmUri {
    /// The root, `.`.
    pub fn root() -> DmUri {
        DmUri(".".to_owned())
    }

    /// Parse and validate `input` under `limits`. A single trailing `/` is removed.
    pub fn parse(input: &str, limits: &UriLimits) -> Result<DmUri, UriError> {
        // Bound the work before looking at the content: allow one extra byte for a trailing '/'.
        if input.len() > limits.max_total_len.saturating_add(1) {
            return Err(UriError::TooLong {
                input: excerpt(input),
                len: input.len(),
                limit: limits.max_total_len,
            });
        }
        if input.is_empty() {
            return Err(UriError::Empty);
        }
        if let Some((position, _)) = input.char_indices().find(|(_, c)| c.is_control()) {
            return Err(UriError::ControlCharacter {
                input: excerpt(input),
                position,
            });
        }
        if input.contains('?') {
            return Err(UriError::QueryNotAllowed {
                input: excerpt(input),
            });
        }
        let s = if input == "/" {
            input
        } else {
            input.strip_suffix('/').unwrap_or(input)
        };
        if s.len() > limits.max_total_len {
            return Err(UriError::TooLong {
                input: excerpt(input),
                len: s.len(),
                limit: limits.max_total_len,
            });
        }
        if s == "." {
            return Ok(DmUri::root());
        }
        let Some(rest) = s.strip_prefix("./") else {
            return Err(UriError::MissingRootPrefix {
                input: excerpt(input),
            });
        };
        let depth_limit = limits.depth_limit();
        for (position, segment) in rest.split('/').enumerate() {
            if position >= depth_limit {
                return Err(UriError::TooDeep {
                    input: excerpt(input),
                    limit: depth_limit,
                });
            }
            check_segment(input, segment, position, limits)?;
        }
        Ok(DmUri(s.to_owned()))
    }

    /// Split a DM query (`?list=Struct`, `?prop=ACL`) off a raw target string.
    pub fn split_query(raw: &str) -> (&str, Option<&str>) {
        match raw.split_once('?') {
            Some((uri, query)) => (uri, Some(query)),
            None => (raw, None),
        }
    }

    /// The URI as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `.`.
    pub fn is_root(&self) -> bool {
        self.0 == "."
    }

    /// The segments below the root, in order (none for the root).
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.0
            .strip_prefix("./")
            .into_iter()
            .flat_map(|rest| rest.split('/'))
    }

    /// Number of segments below the root (0 for the root).
    pub fn depth(&self) -> usize {
        self.segments().count()
    }

    /// The parent URI; `None` for the root.
    pub fn parent(&self) -> Option<DmUri> {
        if self.is_root() {
            return None;
        }
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| DmUri(parent.to_owned()))
    }

    /// The last segment (the node name); `None` for the root.
    pub fn name(&self) -> Option<&str> {
        if self.is_root() {
            return None;
        }
        self.0.rsplit_once('/').map(|(_, name)| name)
    }

    /// The ancestor made of the first `depth` segments (the root for 0; `self` when `depth` is
    /// at least `self.depth()`).
    pub fn prefix(&self, depth: usize) -> DmUri {
        let mut out = String::from(".");
        for segment in self.segments().take(depth) {
            out.push('/');
            out.push_str(segment);
        }
        DmUri(out)
    }

    /// `self/segment`, checked under the default limits.
    pub fn join(&self, segment: &str) -> Result<DmUri, UriError> {
        self.join_with_limits(segment, &UriLimits::default())
    }

    /// `self/segment`, checked under `limits`. `segment` must be a single valid node name.
    pub fn join_with_limits(&self, segment: &str, limits: &UriLimits) -> Result<DmUri, UriError> {
        if segment.contains('/') {
            return Err(UriError::SlashInSegment {
                segment: excerpt(segment),
            });
        }
        if segment.is_empty() {
            return Err(UriError::EmptySegment {
                input: excerpt(&format!("{}/", self.0)),
                position: self.depth(),
            });
        }
        let mut joined =
            String::with_capacity(self.0.len().saturating_add(segment.len()).saturating_add(1));
        joined.push_str(&self.0);
        joined.push('/');
        joined.push_str(segment);
        DmUri::parse(&joined, limits)
    }

    /// True when `base` is `self` or one of its ancestors, compared segment by segment
    /// (`./DMAccX` does not start with `./DMAcc`).
    pub fn starts_with(&self, base: &DmUri) -> bool {
        self.relative_to(base).is_some()
    }

    /// The part of `self` below `base` (`AppAddr/1/Addr` for `./DMAcc/X/AppAddr/1/Addr` relative
    /// to `./DMAcc/X`), `""` when equal, `None` when `base` is not an ancestor-or-self.
    pub fn relative_to(&self, base: &DmUri) -> Option<&str> {
        if base.is_root() {
            if self.is_root() {
                return Some("");
            }
            return self.0.strip_prefix("./");
        }
        let rest = self.0.strip_prefix(base.as_str())?;
        if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix('/')
        }
    }
}

fn check_segment(
    input: &str,
    segment: &str,
    position: usize,
    limits: &UriLimits,
) -> Result<(), UriError> {
    if segment.is_empty() {
        return Err(UriError::EmptySegment {
            input: excerpt(input),
            position,
        });
    }
    if segment == "." || segment == ".." {
        return Err(UriError::DotSegment {
            input: excerpt(input),
            segment: segment.to_owned(),
        });
    }
    if segment.len() > limits.max_segment_len {
        return Err(UriError::SegmentTooLong {
            input: excerpt(input),
            len: segment.len(),
            limit: limits.max_segment_len,
        });
    }
    Ok(())
}

impl fmt::Display for DmUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DmUri {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for DmUri {
    type Err = UriError;

    /// Parse under the default limits.
    fn from_str(s: &str) -> Result<DmUri, UriError> {
        DmUri::parse(s, &UriLimits::default())
    }
}

impl TryFrom<&str> for DmUri {
    type Error = UriError;

    /// Parse under the default limits.
    fn try_from(s: &str) -> Result<DmUri, UriError> {
        DmUri::parse(s, &UriLimits::default())
    }
}

impl TryFrom<String> for DmUri {
    type Error = UriError;

    /// Parse under the default limits.
    fn try_from(s: String) -> Result<DmUri, UriError> {
        DmUri::parse(&s, &UriLimits::default())
    }
}

impl Serialize for DmUri {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DmUri {
    /// Deserialize from a string, validated under the default limits.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DmUri, D::Error> {
        let s = String::deserialize(deserializer)?;
        DmUri::parse(&s, &UriLimits::default()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uri(s: &str) -> DmUri {
        s.parse().unwrap()
    }

    #[test]
    fn root_forms() {
        assert!(uri(".").is_root());
        assert!(uri("./").is_root());
        assert_eq!(uri(".").depth(), 0);
        assert_eq!(uri(".").segments().count(), 0);
        assert_eq!(uri(".").parent(), None);
        assert_eq!(uri(".").name(), None);
    }

    #[test]
    fn accepts_and_normalises() {
        let u = uri("./DMAcc/X/AppAddr/");
        assert_eq!(u.as_str(), "./DMAcc/X/AppAddr");
        assert_eq!(u.segments().collect::<Vec<_>>(), ["DMAcc", "X", "AppAddr"]);
        assert_eq!(u.depth(), 3);
        assert_eq!(u.name(), Some("AppAddr"));
        assert_eq!(u.parent(), Some(uri("./DMAcc/X")));
        assert_eq!(uri("./A").parent(), Some(DmUri::root()));
        assert_eq!(u.prefix(1), uri("./DMAcc"));
        assert_eq!(u.prefix(0), DmUri::root());
        assert_eq!(u.prefix(9), u);
        assert_eq!(u.to_string(), "./DMAcc/X/AppAddr");
        // Names may hold ':' and other printable characters.
        assert_eq!(uri("./A/IMEI:35-x y").name(), Some("IMEI:35-x y"));
    }

    #[test]
    fn each_rule_has_its_error() {
        let p = |s: &str| s.parse::<DmUri>().unwrap_err();
        assert_eq!(p(""), UriError::Empty);
        assert!(matches!(p("DMAcc"), UriError::MissingRootPrefix { .. }));
        assert!(matches!(p("/"), UriError::MissingRootPrefix { .. }));
        assert!(matches!(p("/DMAcc"), UriError::MissingRootPrefix { .. }));
        assert!(matches!(p(".DMAcc"), UriError::MissingRootPrefix { .. }));
        assert!(matches!(
            p("./a//b"),
            UriError::EmptySegment { position: 1, .. }
        ));
        assert!(matches!(p(".//"), UriError::EmptySegment { .. }));
        assert!(matches!(p("./a//"), UriError::EmptySegment { .. }));
        assert!(matches!(p("./a/../b"), UriError::DotSegment { segment, .. } if segment == ".."));
        assert!(matches!(p("./."), UriError::DotSegment { .. }));
        assert!(matches!(
            p("./a\0b"),
            UriError::ControlCharacter { position: 3, .. }
        ));
        assert!(matches!(p("./a\nb"), UriError::ControlCharacter { .. }));
        assert!(matches!(
            p("./a?list=Struct"),
            UriError::QueryNotAllowed { .. }
        ));
        let long = format!("./{}", "a".repeat(300));
        assert!(matches!(
            p(&long),
            UriError::TooLong {
                len: 302,
                limit: 255,
                ..
            }
        ));
        let deep = format!(".{}", "/a".repeat(17));
        assert!(matches!(p(&deep), UriError::TooDeep { limit: 16, .. }));
        let seg = format!("./{}", "s".repeat(65));
        assert!(matches!(
            p(&seg),
            UriError::SegmentTooLong {
                len: 65,
                limit: 64,
                ..
            }
        ));
        assert!(p(&seg).is_limit());
        assert!(!p("x").is_limit());
    }

    #[test]
    fn limits_are_configurable_and_ceilinged() {
        let tight = UriLimits {
            max_total_len: 6,
            max_depth: 1,
            max_segment_len: 2,
        };
        assert!(DmUri::parse("./ab", &tight).is_ok());
        assert!(DmUri::parse("./ab/", &tight).is_ok());
        assert!(matches!(
            DmUri::parse("./a/b", &tight),
            Err(UriError::TooDeep { .. })
        ));
        assert!(matches!(
            DmUri::parse("./abc", &tight),
            Err(UriError::SegmentTooLong { .. })
        ));
        let huge = UriLimits {
            max_total_len: 100_000,
            max_depth: usize::MAX,
            max_segment_len: 100,
        };
        let deep = format!(".{}", "/a".repeat(DEPTH_CEILING + 1));
        assert!(matches!(
            DmUri::parse(&deep, &huge),
            Err(UriError::TooDeep {
                limit: DEPTH_CEILING,
                ..
            })
        ));
    }

    #[test]
    fn error_excerpt_is_bounded_and_escaped() {
        let long = format!("x{}\u{7}", "y".repeat(1000));
        let limits = UriLimits {
            max_total_len: 5000,
            ..UriLimits::default()
        };
        let err = DmUri::parse(&long, &limits).unwrap_err();
        let UriError::ControlCharacter { input, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(input.chars().count() <= EXCERPT_CHARS + 1);
        assert_eq!(excerpt("a\u{0}b"), "a\\u{0}b");
    }

    #[test]
    fn join_validates_the_segment() {
        let base = uri("./DMAcc");
        assert_eq!(base.join("X").unwrap(), uri("./DMAcc/X"));
        assert_eq!(DmUri::root().join("DevInfo").unwrap(), uri("./DevInfo"));
        assert!(matches!(
            base.join("a/b"),
            Err(UriError::SlashInSegment { .. })
        ));
        assert!(matches!(base.join(""), Err(UriError::EmptySegment { .. })));
        assert!(matches!(base.join(".."), Err(UriError::DotSegment { .. })));
        assert!(matches!(
            base.join("a\0"),
            Err(UriError::ControlCharacter { .. })
        ));
        assert!(matches!(
            base.join(&"z".repeat(65)),
            Err(UriError::SegmentTooLong { .. })
        ));
    }

    #[test]
    fn starts_with_and_relative_to_are_segment_wise() {
        let u = uri("./DMAcc/X/AppAddr/1/Addr");
        assert!(u.starts_with(&DmUri::root()));
        assert!(u.starts_with(&uri("./DMAcc")));
        assert!(u.starts_with(&u));
        assert!(!uri("./DMAccX").starts_with(&uri("./DMAcc")));
        assert!(!uri("./DMAcc").starts_with(&u));
        assert_eq!(u.relative_to(&uri("./DMAcc/X")), Some("AppAddr/1/Addr"));
        assert_eq!(u.relative_to(&u), Some(""));
        assert_eq!(
            u.relative_to(&DmUri::root()),
            Some("DMAcc/X/AppAddr/1/Addr")
        );
        assert_eq!(DmUri::root().relative_to(&DmUri::root()), Some(""));
        assert_eq!(uri("./DMAccX").relative_to(&uri("./DMAcc")), None);
    }

    #[test]
    fn split_query() {
        assert_eq!(
            DmUri::split_query("./A?list=Struct"),
            ("./A", Some("list=Struct"))
        );
        assert_eq!(DmUri::split_query("./A"), ("./A", None));
    }

    #[test]
    fn conversions_and_serde() {
        assert_eq!(DmUri::try_from("./A").unwrap(), uri("./A"));
        assert_eq!(DmUri::try_from("./A".to_owned()).unwrap(), uri("./A"));
        assert!(DmUri::try_from("A").is_err());
        let json = serde_json::to_string(&uri("./DevInfo/DevId")).unwrap();
        assert_eq!(json, "\"./DevInfo/DevId\"");
        let back: DmUri = serde_json::from_str(&json).unwrap();
        assert_eq!(back, uri("./DevInfo/DevId"));
        assert!(serde_json::from_str::<DmUri>("\"./a//b\"").is_err());
        assert_eq!(uri("./A").as_ref(), "./A");
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_:@ .-]{1,12}".prop_filter("no dot segments", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn parse_format_round_trip(segs in proptest::collection::vec(segment(), 0..8)) {
            let mut s = String::from(".");
            for seg in &segs {
                s.push('/');
                s.push_str(seg);
            }
            let u: DmUri = s.parse().unwrap();
            prop_assert_eq!(u.as_str(), s.as_str());
            prop_assert_eq!(u.segments().collect::<Vec<_>>(), segs.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(u.depth(), segs.len());
            let again: DmUri = u.to_string().parse().unwrap();
            prop_assert_eq!(&again, &u);
            // Rebuilding by joins gives the same URI.
            let mut built = DmUri::root();
            for seg in &segs {
                built = built.join(seg).unwrap();
            }
            prop_assert_eq!(&built, &u);
            if let Some(parent) = u.parent() {
                prop_assert!(u.starts_with(&parent));
                prop_assert_eq!(parent.join(u.name().unwrap()).unwrap(), u);
            }
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = DmUri::parse(&s, &UriLimits::default());
        }

        #[test]
        fn parse_never_panics_on_uri_like_input(s in "[./a?\\x00-\\x1f\u{80}-\u{a0}é]{0,40}") {
            if let Ok(u) = DmUri::parse(&s, &UriLimits::default()) {
                prop_assert!(u.as_str().len() <= 255);
                prop_assert!(u.depth() <= 16);
                let reparsed: DmUri = u.as_str().parse().unwrap();
                prop_assert_eq!(reparsed, u);
            }
        }
    }
}
