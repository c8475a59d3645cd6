//! The generic element tree that sits between the typed SyncML model and the two wire codecs.
//! XML and WBXML both decode to `Element` and encode from it; `Limits` bounds hostile input.

use std::borrow::Cow;

use thiserror::Error;

/// The XML namespace (and, in WBXML, the code page) an element belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `SYNCML:SYNCML1.2`, WBXML code page 0.
    SyncMl,
    /// `syncml:metinf`, WBXML code page 1.
    MetInf,
    /// `syncml:dmddf1.2` (DM DDF / TNDS), WBXML code page 2.
    Ddf,
}

impl Namespace {
    /// The namespace URI written in XML.
    pub fn uri(self) -> &'static str {
        match self {
            Namespace::SyncMl => "SYNCML:SYNCML1.2",
            Namespace::MetInf => "syncml:metinf",
            Namespace::Ddf => "syncml:dmddf1.2",
        }
    }

    /// Recognise a namespace URI, case-insensitively; SyncML 1.1 and DDF 1.1 are accepted too.
    pub fn from_uri(uri: &str) -> Option<Namespace> {
        let u = uri.trim();
        if u.eq_ignore_ascii_case("SYNCML:SYNCML1.2") || u.eq_ignore_ascii_case("SYNCML:SYNCML1.1")
        {
            Some(Namespace::SyncMl)
        } else if u.eq_ignore_ascii_case("syncml:metinf") {
            Some(Namespace::MetInf)
        } else if u.eq_ignore_ascii_case("syncml:dmddf1.2")
            || u.eq_ignore_ascii_case("syncml:dmddf1.1")
        {
            Some(Namespace::Ddf)
        } else {
            None
        }
    }
}

/// One piece of an element's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (XML text or CDATA, WBXML STR_I / STR_T / entities).
    Text(String),
    /// Binary data (WBXML OPAQUE). In XML it is written as text when it is UTF-8, else base64 by the model.
    Opaque(Vec<u8>),
}

/// An element: a name in a namespace with ordered content. Attributes do not occur in SyncML DM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The namespace (code page) of the element.
    pub ns: Namespace,
    /// The local name, e.g. `SyncHdr`.
    pub name: Cow<'static, str>,
    /// Children, text and opaque data in document order.
    pub content: Vec<Node>,
}

impl Element {
    /// An empty element.
    pub fn new(ns: Namespace, name: impl Into<Cow<'static, str>>) -> Element {
        Element {
            ns,
            name: name.into(),
            content: Vec::new(),
        }
    }

    /// An element in the SyncML namespace.
    pub fn syncml(name: &'static str) -> Element {
        Element::new(Namespace::SyncMl, name)
    }

    /// An element in the MetInf namespace.
    pub fn metinf(name: &'static str) -> Element {
        Element::new(Namespace::MetInf, name)
    }

    /// Builder: append a child element.
    pub fn child(mut self, child: Element) -> Element {
        self.content.push(Node::Element(child));
        self
    }

    /// Builder: append text.
    pub fn text(mut self, text: impl Into<String>) -> Element {
        self.content.push(Node::Text(text.into()));
        self
    }

    /// Append a child element in place.
    pub fn push(&mut self, child: Element) {
        self.content.push(Node::Element(child));
    }

    /// Append a leaf `<name>text</name>` in the same namespace as `self`.
    pub fn push_leaf(&mut self, name: &'static str, text: impl Into<String>) {
        let ns = self.ns;
        self.push(Element::new(ns, name).text(text));
    }

    /// The child elements, in order.
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.content.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// The first child with this local name (namespace ignored, as real devices are lax with it).
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children().find(|e| e.name == name)
    }

    /// True when the element has child elements.
    pub fn has_children(&self) -> bool {
        self.content.iter().any(|n| matches!(n, Node::Element(_)))
    }

    /// The concatenated character data directly inside this element, exactly as it stands (opaque
    /// data decoded as UTF-8 where it is valid).
    pub fn raw_text(&self) -> String {
        let mut s = String::new();
        for n in &self.content {
            match n {
                Node::Text(t) => s.push_str(t),
                Node::Opaque(b) => s.push_str(&String::from_utf8_lossy(b)),
                Node::Element(_) => {}
            }
        }
        s
    }

    /// [`Element::raw_text`] trimmed of surrounding whitespace.
    pub fn text_content(&self) -> String {
        let s = self.raw_text();
        let trimmed = s.trim();
        if trimmed.len() == s.len() {
            s
        } else {
            trimmed.to_owned()
        }
    }

    /// Number of elements in this subtree, itself included.
    pub fn count_elements(&self) -> usize {
        1 + self.children().map(Element::count_elements).sum::<usize>()
    }
}

/// Bounds applied while decoding untrusted input. Every decoder checks all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message, in bytes.
    pub max_message_bytes: usize,
    /// Deepest accepted element nesting (the root is depth 1).
    pub max_depth: usize,
    /// Most elements accepted in one message.
    pub max_elements: usize,
    /// Longest accepted text or opaque run, in bytes.
    pub max_string_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 1024 * 1024,
            max_depth: 32,
            max_elements: 65_536,
            max_string_bytes: 512 * 1024,
        }
    }
}

/// A decoding bound that the input exceeded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    /// The whole message is larger than `Limits::max_message_bytes`.
    #[error("message is {size} bytes, the limit is {limit}")]
    MessageTooLarge { size: usize, limit: usize },
    /// Nesting deeper than `Limits::max_depth`.
    #[error("element nesting deeper than {limit} at <{element}>")]
    TooDeep { element: String, limit: usize },
    /// More elements than `Limits::max_elements`.
    #[error("more than {limit} elements")]
    TooManyElements { limit: usize },
    /// A text or opaque run longer than `Limits::max_string_bytes`.
    #[error("string of {size} bytes in <{element}>, the limit is {limit}")]
    StringTooLong {
        element: String,
        size: usize,
        limit: usize,
    },
}

/// Running account of what a decoder has consumed, checked against `Limits`.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    elements: usize,
}

impl Budget {
    /// Start a budget for one message of `size` bytes.
    pub fn start(limits: Limits, size: usize) -> Result<Budget, LimitError> {
        if size > limits.max_message_bytes {
            return Err(LimitError::MessageTooLarge {
                size,
                limit: limits.max_message_bytes,
            });
        }
        Ok(Budget {
            limits,
            elements: 0,
        })
    }

    /// Account for one more element opened at `depth` (root = 1).
    pub fn open(&mut self, name: &str, depth: usize) -> Result<(), LimitError> {
        if depth > self.limits.max_depth {
            return Err(LimitError::TooDeep {
                element: name.to_owned(),
                limit: self.limits.max_depth,
            });
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(LimitError::TooManyElements {
                limit: self.limits.max_elements,
            });
        }
        Ok(())
    }

    /// Check a string or opaque run of `size` bytes inside `element`.
    pub fn string(&self, element: &str, size: usize) -> Result<(), LimitError> {
        if size > self.limits.max_string_bytes {
            return Err(LimitError::StringTooLong {
                element: element.to_owned(),
                size,
                limit: self.limits.max_string_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_uris_round_trip_case_insensitively() {
        for ns in [Namespace::SyncMl, Namespace::MetInf, Namespace::Ddf] {
            assert_eq!(Namespace::from_uri(ns.uri()), Some(ns));
            assert_eq!(Namespace::from_uri(&ns.uri().to_lowercase()), Some(ns));
        }
        assert_eq!(Namespace::from_uri("urn:other"), None);
    }

    #[test]
    fn budget_rejects_each_bound() {
        let limits = Limits {
            max_message_bytes: 10,
            max_depth: 2,
            max_elements: 2,
            max_string_bytes: 3,
        };
        assert!(matches!(
            Budget::start(limits, 11),
            Err(LimitError::MessageTooLarge { size: 11, .. })
        ));
        let mut b = Budget::start(limits, 10).unwrap();
        assert!(b.open("A", 1).is_ok());
        assert!(matches!(b.open("B", 3), Err(LimitError::TooDeep { .. })));
        assert!(b.open("B", 2).is_ok());
        assert!(matches!(
            b.open("C", 2),
            Err(LimitError::TooManyElements { limit: 2 })
        ));
        assert!(b.string("D", 4).is_err());
        assert!(b.string("D", 3).is_ok());
    }

    #[test]
    fn text_content_trims_and_joins() {
        let mut e = Element::syncml("Data");
        e.content.push(Node::Text("  ab".into()));
        e.content.push(Node::Opaque(b"cd ".to_vec()));
        assert_eq!(e.text_content(), "abcd");
    }
}
