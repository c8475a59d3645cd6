//! XML codec for SyncML DM messages and TNDS documents: bytes to the generic `Element` tree and back.
//! Decoding streams through quick-xml's `Reader` under `Limits`; encoding writes straight into a `Vec<u8>`.

use std::borrow::Cow;

use base64::Engine as _;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::PrefixDeclaration;
use quick_xml::reader::Reader;
use thiserror::Error;

use crate::element::{Budget, Element, LimitError, Limits, Namespace, Node};

/// The XML declaration that `encode` and `encode_pretty` write first.
pub const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Most namespace prefix declarations (`xmlns:p="..."`) accepted in scope at once.
pub const MAX_PREFIX_BINDINGS: usize = 32;

/// Longest piece of untrusted input (a name, an entity) quoted in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 64;

/// How far into the input the XML declaration's `?>` is looked for when sniffing its encoding.
const MAX_DECLARATION_BYTES: usize = 512;

/// Why an XML document was refused. Positions are byte offsets into the input (for ISO-8859-1
/// input, into its UTF-8 transcoding).
#[derive(Debug, Error)]
pub enum XmlError {
    /// The input exceeded one of the decoding `Limits`.
    #[error("XML limit exceeded: {0}")]
    Limit(#[from] LimitError),
    /// Malformed XML syntax, as reported by the reader.
    #[error("malformed XML at byte {position}: {detail}")]
    Syntax {
        /// What was wrong.
        detail: String,
        /// Where it was found.
        position: u64,
    },
    /// An end tag that does not close the innermost open element.
    #[error("end tag </{found}> at byte {position} does not close <{expected}>")]
    MismatchedEndTag {
        /// The name of the innermost open element.
        expected: String,
        /// The name in the end tag.
        found: String,
        /// Where the end tag starts.
        position: u64,
    },
    /// An end tag while no element is open.
    #[error("end tag </{found}> at byte {position} closes no open element")]
    UnexpectedEndTag {
        /// The name in the end tag.
        found: String,
        /// Where the end tag starts.
        position: u64,
    },
    /// The input ended while an element was still open.
    #[error("input ends at byte {position} inside <{element}>")]
    UnclosedElement {
        /// The innermost open element.
        element: String,
        /// The end of the input.
        position: u64,
    },
    /// A reference to an entity other than the five predefined ones.
    #[error("unknown entity &{name}; at byte {position}")]
    UnknownEntity {
        /// The entity name.
        name: String,
        /// Where the reference starts.
        position: u64,
    },
    /// A numeric character reference that is malformed or names a character XML forbids.
    #[error("invalid character reference &{reference}; at byte {position}")]
    InvalidCharRef {
        /// The reference between `&` and `;`.
        reference: String,
        /// Where the reference starts.
        position: u64,
    },
    /// A literal character that XML 1.0 forbids (a control character, U+FFFE, U+FFFF).
    #[error("character U+{code_point:04X} is not allowed in XML (byte {position})")]
    InvalidChar {
        /// The code point found.
        code_point: u32,
        /// Where it was found.
        position: u64,
    },
    /// An element name or namespace prefix that is not an XML name.
    #[error("invalid XML name {name:?} at byte {position}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Where the tag starts.
        position: u64,
    },
    /// An encoding other than UTF-8, US-ASCII or ISO-8859-1 (declared, or shown by a byte order mark).
    #[error(
        "unsupported XML encoding {encoding:?}: only UTF-8, US-ASCII and ISO-8859-1 are accepted"
    )]
    UnsupportedEncoding {
        /// The encoding named or detected.
        encoding: String,
    },
    /// Bytes that are not valid in the document's encoding.
    #[error("input is not valid {encoding} at byte {position}")]
    InvalidEncoding {
        /// The encoding the input was read as.
        encoding: &'static str,
        /// The first invalid byte.
        position: u64,
    },
    /// A DOCTYPE with an internal subset: entity declarations are refused (billion laughs).
    #[error("DOCTYPE at byte {position} has an internal subset; entity declarations are refused")]
    DoctypeInternalSubset {
        /// Where the DOCTYPE starts.
        position: u64,
    },
    /// More namespace prefix declarations in scope than `MAX_PREFIX_BINDINGS`.
    #[error("more than {limit} namespace prefix declarations in scope at byte {position}")]
    TooManyPrefixes {
        /// The bound, `MAX_PREFIX_BINDINGS`.
        limit: usize,
        /// Where the offending tag starts.
        position: u64,
    },
    /// The document has no root element.
    #[error("XML document has no root element")]
    NoRoot,
    /// Markup or text after the root element (only comments, PIs and whitespace may follow it).
    #[error("content after the root element at byte {position}")]
    TrailingContent {
        /// Where the content starts.
        position: u64,
    },
    /// A construct in a place where XML does not allow it.
    #[error("{what} at byte {position}")]
    Misplaced {
        /// What was found, e.g. "text before the root element".
        what: &'static str,
        /// Where it starts.
        position: u64,
    },
}

/// Decode a whole XML document (SyncML DM message or TNDS object) into its root element.
///
/// A root without a known namespace is `Namespace::SyncMl`, or `Namespace::Ddf` when named `MgmtTree`.
pub fn decode(input: &[u8], limits: &Limits) -> Result<Element, XmlError> {
    decode_with(input, limits, Namespace::SyncMl)
}

/// Decode XML carried inside another document (e.g. a TNDS object in `<Data>`); the root inherits
/// `parent_ns` when it declares no known namespace (`MgmtTree` is `Namespace::Ddf` regardless).
pub fn decode_fragment(
    input: &[u8],
    parent_ns: Namespace,
    limits: &Limits,
) -> Result<Element, XmlError> {
    decode_with(input, limits, parent_ns)
}

/// Encode a document: the XML declaration, then `root` with no whitespace between elements.
pub fn encode(root: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(XML_DECLARATION.len().saturating_add(estimate(root)));
    out.extend_from_slice(XML_DECLARATION.as_bytes());
    write_element(root, None, &mut out, None);
    out
}

/// Encode a document indented by two spaces for humans. Only elements whose content is child
/// elements alone are indented, so the character data of every element is exactly as in `encode`.
pub fn encode_pretty(root: &Element) -> String {
    let mut out = Vec::with_capacity(
        XML_DECLARATION
            .len()
            .saturating_add(estimate(root).saturating_mul(2)),
    );
    out.extend_from_slice(XML_DECLARATION.as_bytes());
    out.push(b'\n');
    write_element(root, None, &mut out, Some(0));
    out.push(b'\n');
    // The encoder writes only UTF-8; the fallback is never taken.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Append `el` to `out` as compact XML without a declaration (for XML embedded in `<Data>`);
/// `el` carries its own `xmlns`.
pub fn encode_fragment(el: &Element, out: &mut Vec<u8>) {
    out.reserve(estimate(el));
    write_element(el, None, out, None);
}

// ---------------------------------------------------------------------------------------------
// Names and namespaces shared by both directions
// ---------------------------------------------------------------------------------------------

/// Element names of SyncML 1.2 (code page 0), MetInf 1.2 (1) and DM DDF 1.2 (2), sorted, as in
/// libwbxml's `wbxml_tables.c`. Decoded names found here are borrowed, not allocated.
#[rustfmt::skip]
const KNOWN_NAMES: [&str; 119] = [
    "ACL", "AccessType", "Add", "Alert", "Anchor", "Archive", "Atomic", "CIS", "CS", "CaseSense",
    "Chal", "Cmd", "CmdID", "CmdRef", "Copy", "Correlator", "Cred", "DDFName", "DFFormat",
    "DFProperties", "DFTitle", "DFType", "Data", "DefaultValue", "Delete", "Description",
    "Dynamic", "EMI", "Exec", "Field", "FieldLevel", "Filter", "FilterType", "Final", "Format",
    "FreeID", "FreeMem", "Get", "Item", "Lang", "Last", "LocName", "LocURI", "MIME", "Man", "Map",
    "MapItem", "Mark", "MaxMsgSize", "MaxObjSize", "Mem", "MetInf", "Meta", "MgmtTree", "Mod",
    "MoreData", "Move", "MsgID", "MsgRef", "Name", "Next", "NextNonce", "NoResp", "NoResults",
    "Node", "NodeName", "NumberOfChanges", "Occurrence", "One", "OneOrMore", "OneOrN", "Path",
    "Permanent", "Put", "RTProperties", "Record", "Replace", "RespURI", "Results", "Scope",
    "Search", "Sequence", "SessionID", "SftDel", "SharedMem", "Size", "Source", "SourceParent",
    "SourceRef", "Status", "Sync", "SyncBody", "SyncHdr", "SyncML", "TStamp", "Target",
    "TargetParent", "TargetRef", "Title", "Type", "Value", "VerDTD", "VerNo", "VerProto",
    "Version", "ZeroOrMore", "ZeroOrN", "ZeroOrOne", "b64", "bin", "bool", "chr", "date", "float",
    "int", "node", "null", "time", "xml",
];

/// The element name as a `Cow`, borrowed from `KNOWN_NAMES` when it is a SyncML/MetInf/DDF name.
fn intern(name: &str) -> Cow<'static, str> {
    match KNOWN_NAMES.binary_search(&name) {
        Ok(i) => KNOWN_NAMES.get(i).map_or_else(
            || Cow::Owned(name.to_owned()),
            |known| Cow::Borrowed(*known),
        ),
        Err(_) => Cow::Owned(name.to_owned()),
    }
}

/// The namespace an element named `name` has when it declares none: `MgmtTree` is DDF, a child of
/// `Meta` is MetInf (devices often omit `xmlns="syncml:metinf"`), else the parent's default
/// namespace, or `fallback` for the root.
fn implied_ns(name: &str, parent: Option<(Namespace, &str)>, fallback: Namespace) -> Namespace {
    if name == "MgmtTree" {
        return Namespace::Ddf;
    }
    match parent {
        None => fallback,
        Some((_, "Meta")) => Namespace::MetInf,
        Some((ns, _)) => ns,
    }
}

/// XML 1.0 `NameStartChar`, without `:` (prefixes are split off before).
fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 `NameChar`, without `:`.
fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// True for an XML `NCName` (a name without a colon).
fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

/// XML 1.0 `Char`: the characters a document may contain.
fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// XML whitespace (space, tab, CR, LF) only.
fn is_xml_whitespace(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// The first character XML forbids in `s`, as (byte offset, code point). Scans bytes: in UTF-8 the
/// forbidden characters are the C0 controls (bar tab, LF, CR) and U+FFFE / U+FFFF (`EF BF BE|BF`).
fn find_forbidden_char(s: &str) -> Option<(usize, u32)> {
    let bytes = s.as_bytes();
    bytes.iter().enumerate().find_map(|(i, &b)| {
        if b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') {
            Some((i, u32::from(b)))
        } else if b == 0xEF
            && bytes.get(i.wrapping_add(1)) == Some(&0xBF)
            && let Some(&last @ (0xBE | 0xBF)) = bytes.get(i.wrapping_add(2))
        {
            Some((i, if last == 0xBE { 0xFFFE } else { 0xFFFF }))
        } else {
            None
        }
    })
}

/// Untrusted text shortened for an error message.
fn clip(s: &str) -> String {
    s.chars().take(MAX_QUOTED_CHARS).collect()
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// The character encodings the decoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    Ascii,
    Latin1,
}

fn decode_with(input: &[u8], limits: &Limits, fallback: Namespace) -> Result<Element, XmlError> {
    let budget = Budget::start(*limits, input.len())?;
    let (text, base) = to_utf8(input)?;
    Parser {
        budget,
        base,
        fallback,
        stack: Vec::new(),
        prefixes: Vec::new(),
        run: String::new(),
        root: None,
        doctype_seen: false,
    }
    .parse(&text)
}

/// The input as UTF-8 text and the length of the byte order mark that was skipped.
fn to_utf8(input: &[u8]) -> Result<(Cow<'_, str>, u64), XmlError> {
    let (body, base, bom) = match input {
        [0xEF, 0xBB, 0xBF, rest @ ..] => (rest, 3, true),
        [0xFE, 0xFF, ..] | [0xFF, 0xFE, ..] | [0x00, b'<', ..] | [b'<', 0x00, ..] => {
            return Err(XmlError::UnsupportedEncoding {
                encoding: "UTF-16".to_owned(),
            });
        }
        _ => (input, 0, false),
    };
    let charset = declared_charset(body, base)?;
    if bom && charset != Charset::Utf8 {
        return Err(XmlError::UnsupportedEncoding {
            encoding: format!("{charset:?} declared after a UTF-8 byte order mark"),
        });
    }
    let invalid = |encoding, at: usize| XmlError::InvalidEncoding {
        encoding,
        position: base + to_u64(at),
    };
    let text = match charset {
        Charset::Utf8 => {
            Cow::Borrowed(std::str::from_utf8(body).map_err(|e| invalid("UTF-8", e.valid_up_to()))?)
        }
        Charset::Ascii => {
            if let Some(at) = body.iter().position(|b| !b.is_ascii()) {
                return Err(invalid("US-ASCII", at));
            }
            Cow::Borrowed(
                std::str::from_utf8(body).map_err(|e| invalid("US-ASCII", e.valid_up_to()))?,
            )
        }
        Charset::Latin1 => Cow::Owned(body.iter().copied().map(char::from).collect()),
    };
    Ok((text, base))
}

/// The encoding named by the XML declaration at the start of `body` (UTF-8 when there is none).
fn declared_charset(body: &[u8], base: u64) -> Result<Charset, XmlError> {
    let is_declaration = body.starts_with(b"<?xml")
        && body
            .get(5)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    if !is_declaration {
        return Ok(Charset::Utf8);
    }
    let Some(end) = body
        .windows(2)
        .take(MAX_DECLARATION_BYTES)
        .position(|w| w == b"?>")
    else {
        // Unterminated: the parser reports it.
        return Ok(Charset::Utf8);
    };
    let Some(declaration) = body.get(..end.saturating_add(2)) else {
        return Ok(Charset::Utf8);
    };
    let mut reader = Reader::from_reader(declaration);
    let Ok(Event::Decl(decl)) = reader.read_event() else {
        // Not ASCII or otherwise broken: the parser reports it.
        return Ok(Charset::Utf8);
    };
    match decl.encoding() {
        None => Ok(Charset::Utf8),
        Some(Err(e)) => Err(XmlError::Syntax {
            detail: format!("bad encoding in the XML declaration: {e}"),
            position: base,
        }),
        Some(Ok(name)) => {
            let name = name.trim();
            let is = |options: &[&str]| options.iter().any(|o| name.eq_ignore_ascii_case(o));
            if is(&["UTF-8", "UTF8"]) {
                Ok(Charset::Utf8)
            } else if is(&["US-ASCII", "ASCII"]) {
                Ok(Charset::Ascii)
            } else if is(&["ISO-8859-1", "ISO8859-1", "ISO_8859-1", "LATIN1", "LATIN-1"]) {
                Ok(Charset::Latin1)
            } else {
                Err(XmlError::UnsupportedEncoding {
                    encoding: clip(name),
                })
            }
        }
    }
}

/// An open element while its content is read.
struct Frame {
    element: Element,
    /// The namespace its unprefixed children get when they declare none.
    default_ns: Namespace,
    /// How many prefix declarations it pushed onto `Parser::prefixes`.
    bindings: usize,
    /// Bytes of character data kept in it so far.
    kept_text: usize,
    /// Whether a child element has been opened in it.
    has_children: bool,
}

struct Parser {
    budget: Budget,
    /// Offset of the reader's input within the caller's input (a skipped byte order mark).
    base: u64,
    /// The namespace of a root that declares none.
    fallback: Namespace,
    stack: Vec<Frame>,
    /// Prefix declarations in scope, innermost last; `None` for an unknown namespace URI.
    prefixes: Vec<(String, Option<Namespace>)>,
    /// The character data run being collected for the innermost open element.
    run: String,
    root: Option<Element>,
    doctype_seen: bool,
}

impl Parser {
    fn parse(mut self, text: &str) -> Result<Element, XmlError> {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.allow_dangling_amp = false;
        config.allow_unmatched_ends = false;
        config.trim_text(false);

        let mut first = true;
        loop {
            let start = self.base.saturating_add(reader.buffer_position());
            let event = match reader.read_event() {
                Ok(event) => event,
                Err(e) => {
                    let position = self.base.saturating_add(reader.error_position());
                    return Err(self.reader_error(e, position));
                }
            };
            match event {
                Event::Decl(decl) => {
                    if !first {
                        return Err(XmlError::Misplaced {
                            what: "XML declaration not at the start of the document",
                            position: start,
                        });
                    }
                    match decl.version() {
                        Ok(v) if v.starts_with("1.") => {}
                        Ok(v) => {
                            return Err(XmlError::Syntax {
                                detail: format!("unsupported XML version {:?}", clip(&v)),
                                position: start,
                            });
                        }
                        Err(e) => return Err(self.reader_error(e, start)),
                    }
                }
                Event::DocType(doctype) => self.doctype(&doctype, start)?,
                Event::PI(_) | Event::Comment(_) => {}
                Event::Start(tag) => self.open(&tag, start)?,
                Event::Empty(tag) => {
                    self.open(&tag, start)?;
                    self.close(start)?;
                }
                Event::End(_) => self.close(start)?,
                Event::Text(text) => {
                    self.check_chars(&text, start)?;
                    if self.stack.is_empty() {
                        if !is_xml_whitespace(&text) {
                            return Err(self.outside_root("text before the root element", start));
                        }
                    } else {
                        self.append(&text.xml10_content())?;
                    }
                }
                Event::CData(cdata) => {
                    if self.stack.is_empty() {
                        return Err(self.outside_root("CDATA before the root element", start));
                    }
                    self.check_chars(&cdata, start.saturating_add(9))?;
                    self.append(&cdata.xml10_content())?;
                }
                Event::GeneralRef(reference) => {
                    let ch = resolve_reference(&reference, start)?;
                    if self.stack.is_empty() {
                        return Err(self.outside_root("reference before the root element", start));
                    }
                    self.append(ch.encode_utf8(&mut [0; 4]))?;
                }
                Event::Eof => break,
            }
            first = false;
        }
        let end = self.base.saturating_add(reader.buffer_position());
        if let Some(open) = self.stack.last() {
            return Err(XmlError::UnclosedElement {
                element: open.element.name.to_string(),
                position: end,
            });
        }
        self.root.ok_or(XmlError::NoRoot)
    }

    /// Map a reader error to ours.
    fn reader_error(&self, error: quick_xml::Error, position: u64) -> XmlError {
        use quick_xml::errors::IllFormedError;
        match error {
            quick_xml::Error::IllFormed(IllFormedError::MismatchedEndTag { expected, found }) => {
                XmlError::MismatchedEndTag {
                    expected: clip(&expected),
                    found: clip(&found),
                    position,
                }
            }
            quick_xml::Error::IllFormed(IllFormedError::UnmatchedEndTag(found)) => {
                XmlError::UnexpectedEndTag {
                    found: clip(&found),
                    position,
                }
            }
            quick_xml::Error::IllFormed(IllFormedError::MissingEndTag(element)) => {
                XmlError::UnclosedElement {
                    element: clip(&element),
                    position,
                }
            }
            quick_xml::Error::Encoding(_) => XmlError::InvalidEncoding {
                encoding: "UTF-8",
                position,
            },
            other => XmlError::Syntax {
                detail: other.to_string(),
                position,
            },
        }
    }

    /// The error for character data or markup outside the root element.
    fn outside_root(&self, what: &'static str, position: u64) -> XmlError {
        if self.root.is_some() {
            XmlError::TrailingContent { position }
        } else {
            XmlError::Misplaced { what, position }
        }
    }

    fn check_chars(&self, raw: &str, position: u64) -> Result<(), XmlError> {
        match find_forbidden_char(raw) {
            None => Ok(()),
            Some((at, code_point)) => Err(XmlError::InvalidChar {
                code_point,
                position: position.saturating_add(to_u64(at)),
            }),
        }
    }

    fn doctype(&mut self, content: &str, position: u64) -> Result<(), XmlError> {
        if self.root.is_some() || !self.stack.is_empty() {
            return Err(XmlError::Misplaced {
                what: "DOCTYPE after the root element started",
                position,
            });
        }
        if self.doctype_seen {
            return Err(XmlError::Misplaced {
                what: "second DOCTYPE",
                position,
            });
        }
        if has_internal_subset(content) {
            return Err(XmlError::DoctypeInternalSubset { position });
        }
        self.doctype_seen = true;
        Ok(())
    }

    /// Add character data to the run of the innermost open element, within the string limit.
    fn append(&mut self, s: &str) -> Result<(), XmlError> {
        let Some(frame) = self.stack.last() else {
            return Ok(());
        };
        let total = frame
            .kept_text
            .saturating_add(self.run.len())
            .saturating_add(s.len());
        self.budget.string(&frame.element.name, total)?;
        self.run.push_str(s);
        Ok(())
    }

    /// End the current text run of the innermost element: keep it, unless it is whitespace
    /// between child elements.
    fn flush_run(&mut self, child_follows: bool) {
        if self.run.is_empty() {
            return;
        }
        let Some(frame) = self.stack.last_mut() else {
            self.run.clear();
            return;
        };
        if (child_follows || frame.has_children) && is_xml_whitespace(&self.run) {
            self.run.clear();
            return;
        }
        frame.kept_text = frame.kept_text.saturating_add(self.run.len());
        frame
            .element
            .content
            .push(Node::Text(std::mem::take(&mut self.run)));
    }

    fn open(&mut self, tag: &BytesStart<'_>, position: u64) -> Result<(), XmlError> {
        if self.root.is_some() {
            return Err(XmlError::TrailingContent { position });
        }
        let qname = tag.name();
        let (local, prefix) = qname.decompose();
        let local = local.into_inner();
        let prefix = prefix.map(|p| p.into_inner());
        if !is_ncname(local) || prefix.is_some_and(|p| !is_ncname(p)) {
            return Err(XmlError::InvalidName {
                name: clip(qname.into_inner()),
                position,
            });
        }
        let depth = self.stack.len().saturating_add(1);
        self.budget.open(local, depth)?;
        self.flush_run(true);

        // Namespace declarations; other attributes do not occur in SyncML and are ignored.
        let mut own_default: Option<Option<Namespace>> = None;
        let mut bindings = 0usize;
        let mut attributes = tag.attributes();
        // The duplicate-attribute check is quadratic; declarations are checked below instead.
        attributes.with_checks(false);
        for attribute in attributes {
            let attribute = attribute.map_err(|e| XmlError::Syntax {
                detail: format!("bad attribute in <{}>: {e}", clip(qname.into_inner())),
                position,
            })?;
            let Some(declaration) = attribute.key.as_namespace_binding() else {
                continue;
            };
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| self.reader_error(e, position))?;
            let ns = Namespace::from_uri(&value);
            match declaration {
                PrefixDeclaration::Default => {
                    if own_default.is_some() {
                        return Err(XmlError::Syntax {
                            detail: "duplicate xmlns attribute".to_owned(),
                            position,
                        });
                    }
                    own_default = Some(ns);
                }
                PrefixDeclaration::Named(name) => {
                    if !is_ncname(name) {
                        return Err(XmlError::InvalidName {
                            name: clip(name),
                            position,
                        });
                    }
                    if self.prefixes.len() >= MAX_PREFIX_BINDINGS {
                        return Err(XmlError::TooManyPrefixes {
                            limit: MAX_PREFIX_BINDINGS,
                            position,
                        });
                    }
                    self.prefixes.push((name.to_owned(), ns));
                    bindings = bindings.saturating_add(1);
                }
            }
        }

        let parent = self.stack.last();
        let parent_ns = parent.map(|f| f.element.ns);
        let parent_default = parent.map_or(self.fallback, |f| f.default_ns);
        let inherited = parent_ns.unwrap_or_else(|| implied_ns(local, None, self.fallback));
        let ns = match prefix {
            Some(p) => self
                .prefixes
                .iter()
                .rev()
                .find(|(name, _)| name == p)
                .and_then(|(_, ns)| *ns)
                .unwrap_or(inherited),
            None => match own_default {
                Some(declared) => declared.unwrap_or(inherited),
                None => implied_ns(
                    local,
                    parent.map(|f| (f.default_ns, f.element.name.as_ref())),
                    self.fallback,
                ),
            },
        };
        let default_ns = match (prefix, own_default) {
            (None, _) => ns,
            (Some(_), Some(declared)) => declared.unwrap_or(parent_default),
            (Some(_), None) => parent_default,
        };
        if let Some(parent) = self.stack.last_mut() {
            parent.has_children = true;
        }
        self.stack.push(Frame {
            element: Element::new(ns, intern(local)),
            default_ns,
            bindings,
            kept_text: 0,
            has_children: false,
        });
        Ok(())
    }

    fn close(&mut self, position: u64) -> Result<(), XmlError> {
        self.flush_run(false);
        let Some(frame) = self.stack.pop() else {
            return Err(XmlError::UnexpectedEndTag {
                found: String::new(),
                position,
            });
        };
        let keep = self.prefixes.len().saturating_sub(frame.bindings);
        self.prefixes.truncate(keep);
        match self.stack.last_mut() {
            Some(parent) => parent.element.content.push(Node::Element(frame.element)),
            None => self.root = Some(frame.element),
        }
        Ok(())
    }
}

/// True when a DOCTYPE's content (after `<!DOCTYPE`) has an internal subset `[...]`, which is
/// where entity declarations live. Brackets inside quoted public/system literals do not count.
fn has_internal_subset(content: &str) -> bool {
    let mut quote = None;
    for b in content.bytes() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'[' => return true,
                _ => {}
            },
        }
    }
    false
}

/// Resolve `&name;`: the five predefined entities and numeric character references.
fn resolve_reference(name: &str, position: u64) -> Result<char, XmlError> {
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => match name.strip_prefix('#') {
            Some(number) => parse_char_ref(number).ok_or_else(|| XmlError::InvalidCharRef {
                reference: clip(name),
                position,
            }),
            None => Err(XmlError::UnknownEntity {
                name: clip(name),
                position,
            }),
        },
    }
}

/// The character of `&#123;` / `&#x7B;` (given without `&#` and `;`), if it is one XML allows.
fn parse_char_ref(number: &str) -> Option<char> {
    let (digits, radix) = match number.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let code = u32::from_str_radix(digits, radix).ok()?;
    char::from_u32(code).filter(|&c| is_xml_char(c))
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// A guess at the encoded size of `el`, so the output buffer is allocated once.
fn estimate(el: &Element) -> usize {
    let tags = el.name.len().saturating_mul(2).saturating_add(5);
    el.content.iter().fold(tags, |acc, node| {
        acc.saturating_add(match node {
            Node::Element(child) => estimate(child),
            Node::Text(t) => t.len().saturating_add(t.len() / 8),
            Node::Opaque(b) => b.len().saturating_mul(4) / 3 + 4,
        })
    })
}

/// Write `el` and its subtree. `parent` is the enclosing element's namespace and name (`None` for
/// the top element written); `indent` is the nesting level in pretty mode, `None` when compact.
fn write_element(
    el: &Element,
    parent: Option<(Namespace, &str)>,
    out: &mut Vec<u8>,
    indent: Option<usize>,
) {
    out.push(b'<');
    out.extend_from_slice(el.name.as_bytes());
    // Declare the namespace where it changes, and where a decoder would otherwise infer a
    // different one (a SyncML child of `Meta`, a `MgmtTree` outside DDF).
    let declare = match parent {
        None => true,
        Some((parent_ns, _)) => {
            el.ns != parent_ns || el.ns != implied_ns(&el.name, parent, Namespace::SyncMl)
        }
    };
    if declare {
        out.extend_from_slice(b" xmlns=\"");
        out.extend_from_slice(el.ns.uri().as_bytes());
        out.push(b'"');
    }
    if el.content.is_empty() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    let me = Some((el.ns, el.name.as_ref()));
    let only_elements = el.content.iter().all(|n| matches!(n, Node::Element(_)));
    match indent {
        Some(level) if only_elements => {
            let inner = level.saturating_add(1);
            for child in el.children() {
                newline_indent(out, inner);
                write_element(child, me, out, Some(inner));
            }
            newline_indent(out, level);
        }
        _ => {
            for node in &el.content {
                match node {
                    Node::Element(child) => write_element(child, me, out, None),
                    Node::Text(text) => write_text(text, out),
                    Node::Opaque(bytes) => write_opaque(bytes, out),
                }
            }
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(el.name.as_bytes());
    out.push(b'>');
}

fn newline_indent(out: &mut Vec<u8>, level: usize) {
    out.push(b'\n');
    out.resize(out.len().saturating_add(level.saturating_mul(2)), b' ');
}

/// Write character data escaped: `& < >` as entities, CR as `&#xD;` (so it survives end-of-line
/// normalisation), and characters XML cannot carry at all as U+FFFD.
fn write_text(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut done = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let (replacement, len): (&[u8], usize) = match b {
            b'&' => (b"&amp;", 1),
            b'<' => (b"&lt;", 1),
            b'>' => (b"&gt;", 1),
            b'\r' => (b"&#xD;", 1),
            b'\t' | b'\n' => (b"", 0),
            0..=0x1F => ("\u{FFFD}".as_bytes(), 1),
            0xEF if bytes.get(i.wrapping_add(1)) == Some(&0xBF)
                && matches!(bytes.get(i.wrapping_add(2)), Some(0xBE | 0xBF)) =>
            {
                ("\u{FFFD}".as_bytes(), 3)
            }
            _ => (b"", 0),
        };
        if len == 0 {
            i = i.saturating_add(1);
            continue;
        }
        out.extend_from_slice(bytes.get(done..i).unwrap_or_default());
        out.extend_from_slice(replacement);
        i = i.saturating_add(len);
        done = i;
    }
    out.extend_from_slice(bytes.get(done..).unwrap_or_default());
}

/// How opaque bytes appear in XML: the text itself when it is UTF-8 made only of characters XML
/// allows, else standard base64.
pub fn opaque_as_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if find_forbidden_char(s).is_none() => Cow::Borrowed(s),
        _ => Cow::Owned(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

fn write_opaque(bytes: &[u8], out: &mut Vec<u8>) {
    match std::str::from_utf8(bytes) {
        Ok(s) if find_forbidden_char(s).is_none() => write_text(s, out),
        _ => {
            let start = out.len();
            let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
            out.resize(start.saturating_add(len), 0);
            let written = out.get_mut(start..).map_or(0, |tail| {
                base64::engine::general_purpose::STANDARD
                    .encode_slice(bytes, tail)
                    .unwrap_or(0)
            });
            out.truncate(start.saturating_add(written));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    use super::*;

    const PACKAGE1: &[u8] = include_bytes!("../tests/fixtures/xml/package1.xml");

    fn dec(s: &str) -> Result<Element, XmlError> {
        decode(s.as_bytes(), &Limits::default())
    }

    fn ok(s: &str) -> Element {
        match dec(s) {
            Ok(e) => e,
            Err(e) => panic!("{s:?} should decode: {e}"),
        }
    }

    fn text(s: &str) -> Node {
        Node::Text(s.to_owned())
    }

    fn path<'a>(root: &'a Element, names: &[&str]) -> &'a Element {
        names.iter().fold(root, |el, name| {
            el.find(name)
                .unwrap_or_else(|| panic!("no <{name}> in <{}>", el.name))
        })
    }

    fn tiny_limits() -> Limits {
        Limits {
            max_message_bytes: 4096,
            max_depth: 4,
            max_elements: 20,
            max_string_bytes: 16,
        }
    }

    fn depth(el: &Element) -> usize {
        1 + el.children().map(depth).max().unwrap_or(0)
    }

    fn max_text(el: &Element) -> usize {
        let own: usize = el
            .content
            .iter()
            .map(|n| match n {
                Node::Text(t) => t.len(),
                _ => 0,
            })
            .sum();
        el.children().map(max_text).fold(own, usize::max)
    }

    // ---------------------------------------------------------------- the fixture

    #[test]
    fn package1_fixture_decodes_to_the_expected_structure() {
        let root = decode(PACKAGE1, &Limits::default()).unwrap();
        assert_eq!(root.name, "SyncML");
        assert_eq!(root.ns, Namespace::SyncMl);
        let names: Vec<_> = root.children().map(|e| e.name.as_ref()).collect();
        assert_eq!(names, ["SyncHdr", "SyncBody"]);

        let hdr = path(&root, &["SyncHdr"]);
        assert_eq!(path(hdr, &["VerDTD"]).content, [text("1.2")]);
        assert_eq!(path(hdr, &["VerProto"]).text_content(), "DM/1.2");
        assert_eq!(path(hdr, &["SessionID"]).text_content(), "1A2F");
        assert_eq!(
            path(hdr, &["Source", "LocName"]).text_content(),
            "gw-account"
        );
        let cred_type = path(hdr, &["Cred", "Meta", "Type"]);
        assert_eq!(cred_type.ns, Namespace::MetInf);
        assert_eq!(cred_type.text_content(), "syncml:auth-md5");
        assert_eq!(path(hdr, &["Cred", "Meta"]).ns, Namespace::SyncMl);
        assert_eq!(path(hdr, &["Cred", "Data"]).ns, Namespace::SyncMl);
        assert_eq!(
            path(hdr, &["Cred", "Data"]).text_content(),
            "Rud6jRUF4u5yo744s78hqg=="
        );
        let max = path(hdr, &["Meta", "MaxMsgSize"]);
        assert_eq!(
            (max.ns, max.text_content().as_str()),
            (Namespace::MetInf, "65536")
        );

        let body = path(&root, &["SyncBody"]);
        let commands: Vec<_> = body.children().map(|e| e.name.as_ref()).collect();
        assert_eq!(commands, ["Alert", "Replace", "Alert", "Final"]);
        let replace = path(body, &["Replace"]);
        assert_eq!(replace.children().filter(|e| e.name == "Item").count(), 5);
        let man = replace.children().nth(2).unwrap();
        assert_eq!(path(man, &["Data"]).content, [text("Acme & Sons")]);

        let generic = body.children().nth(2).unwrap();
        assert_eq!(path(generic, &["Data"]).text_content(), "1226");
        assert_eq!(path(generic, &["Correlator"]).text_content(), "c-0001");
        let meta = path(generic, &["Item", "Meta"]);
        for child in meta.children() {
            assert_eq!(child.ns, Namespace::MetInf, "<{}> under <Meta>", child.name);
        }
        assert_eq!(
            path(meta, &["Type"]).text_content(),
            "urn:oma:at:oma-gwmo:deviceattached:1.0"
        );
        assert_eq!(
            path(generic, &["Item", "Data"]).content,
            [text(
                "<Device><DevId>IMEI:356938035643809</DevId><Man>Acme</Man></Device>"
            )]
        );
        let fin = path(body, &["Final"]);
        assert!(fin.content.is_empty());
        assert!(matches!(fin.name, Cow::Borrowed(_)));

        // And it survives both encoders.
        assert_eq!(decode(&encode(&root), &Limits::default()).unwrap(), root);
        assert_eq!(
            decode(encode_pretty(&root).as_bytes(), &Limits::default()).unwrap(),
            root
        );
    }

    // ---------------------------------------------------------------- prolog and encodings

    #[test]
    fn accepts_bom_declaration_comments_pis_and_external_doctype() {
        let mut input = vec![0xEF, 0xBB, 0xBF];
        input.extend_from_slice(
            b"<?xml version=\"1.0\" encoding=\"utf-8\" standalone=\"yes\"?>\n<?proc x?>\
              <!-- c --><!DOCTYPE SyncML PUBLIC \"-//SYNCML//DTD SyncML 1.2//EN\" \
              \"http://www.openmobilealliance.org/tech/DTD/OMA-TS-DM_DTD_SyncML-V1_2.dtd\">\n\
              <SyncML><!-- inside --><?pi?><MsgID>1</MsgID></SyncML><!-- after -->\n<?after?>\n",
        );
        let root = decode(&input, &Limits::default()).unwrap();
        assert_eq!(
            root,
            Element::syncml("SyncML").child(Element::syncml("MsgID").text("1"))
        );
    }

    #[test]
    fn accepts_latin1_and_ascii_declarations() {
        let latin1 = b"<?xml version='1.0' encoding='ISO-8859-1'?><Data>caf\xE9</Data>";
        let root = decode(latin1, &Limits::default()).unwrap();
        assert_eq!(root.content, [text("caf\u{e9}")]);
        let ascii = ok("<?xml version=\"1.0\" encoding=\"US-ASCII\"?><Data>a&#xE9;</Data>");
        assert_eq!(ascii.content, [text("a\u{e9}")]);
        let err = decode(
            b"<?xml version=\"1.0\" encoding=\"us-ascii\"?><Data>\xC3\xA9</Data>",
            &Limits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                XmlError::InvalidEncoding {
                    encoding: "US-ASCII",
                    position: 47
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_other_encodings() {
        let err = dec("<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a/>").unwrap_err();
        assert!(
            matches!(&err, XmlError::UnsupportedEncoding { encoding } if encoding == "Shift_JIS")
        );
        assert!(err.to_string().contains("Shift_JIS"));
        for bom in [
            &[0xFF, 0xFE, b'<', 0][..],
            &[0xFE, 0xFF, 0, b'<'],
            &[b'<', 0, b'a', 0],
        ] {
            assert!(matches!(
                decode(bom, &Limits::default()),
                Err(XmlError::UnsupportedEncoding { .. })
            ));
        }
        let mut bom_latin1 = vec![0xEF, 0xBB, 0xBF];
        bom_latin1.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>");
        assert!(matches!(
            decode(&bom_latin1, &Limits::default()),
            Err(XmlError::UnsupportedEncoding { .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_reported_with_its_position() {
        let err = decode(b"<a>ok\xFF</a>", &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                XmlError::InvalidEncoding {
                    encoding: "UTF-8",
                    position: 5
                }
            ),
            "{err:?}"
        );
        let mut with_bom = vec![0xEF, 0xBB, 0xBF];
        with_bom.extend_from_slice(b"<a>\xC3</a>");
        let err = decode(&with_bom, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, XmlError::InvalidEncoding { position: 6, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_doctype_with_internal_subset_and_billion_laughs_quickly() {
        let mut laughs =
            String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_owned()
            } else {
                format!("lol{}", i - 1)
            };
            let refs = format!("&{prev};").repeat(10);
            laughs.push_str(&format!("<!ENTITY lol{i} \"{refs}\">\n"));
        }
        laughs.push_str("]>\n<lolz>&lol9;</lolz>");
        let started = Instant::now();
        let err = dec(&laughs).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(err, XmlError::DoctypeInternalSubset { position: 22 }),
            "{err:?}"
        );
        // A bracket inside a quoted literal is not a subset.
        assert!(dec("<!DOCTYPE a SYSTEM \"x[1].dtd\"><a/>").is_ok());
        // Without the DTD the entity is merely unknown.
        assert!(matches!(
            dec("<lolz>&lol9;</lolz>"),
            Err(XmlError::UnknownEntity { .. })
        ));
    }

    #[test]
    fn refuses_100k_deep_nesting_quickly() {
        let doc = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        let limits = Limits {
            max_message_bytes: doc.len(),
            ..Limits::default()
        };
        let started = Instant::now();
        let err = decode(doc.as_bytes(), &limits).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(err, XmlError::Limit(LimitError::TooDeep { limit: 32, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn misplaced_prolog_constructs_are_refused() {
        let cases = [
            ("<a/><?xml version=\"1.0\"?>", "XML declaration"),
            (" <?xml version=\"1.0\"?><a/>", "XML declaration"),
            ("<!DOCTYPE a><!DOCTYPE a><a/>", "second DOCTYPE"),
            ("<a><!DOCTYPE a></a>", "DOCTYPE after"),
            ("text<a/>", "text before"),
            ("<![CDATA[x]]><a/>", "CDATA before"),
            ("&amp;<a/>", "reference before"),
        ];
        for (doc, what_start) in cases {
            match dec(doc) {
                Err(XmlError::Misplaced { what, .. }) => {
                    assert!(what.starts_with(what_start), "{doc}: {what}");
                }
                other => panic!("{doc}: {other:?}"),
            }
        }
        assert!(matches!(
            dec("<?xml version=\"2.0\"?><a/>"),
            Err(XmlError::Syntax { .. })
        ));
    }

    // ---------------------------------------------------------------- character data

    #[test]
    fn cdata_entities_and_character_references_become_text() {
        let root =
            ok("<Data>a&lt;&gt;&amp;&apos;&quot;&#65;&#x42;&#x1F600;<![CDATA[<x>&amp;]]>z</Data>");
        assert_eq!(root.content, [text("a<>&'\"AB\u{1F600}<x>&amp;z")]);
        assert!(matches!(root.name, Cow::Borrowed("Data")));
    }

    #[test]
    fn line_ends_are_normalised_but_references_to_cr_are_kept() {
        let root = ok("<Data>a\r\nb\rc&#xD;&#13;\n</Data>");
        assert_eq!(root.content, [text("a\nb\nc\r\r\n")]);
    }

    #[test]
    fn invalid_character_references_are_refused() {
        for reference in [
            "#0",
            "#1",
            "#xD800",
            "#x110000",
            "#xFFFE",
            "#",
            "#x",
            "#-5",
            "#+5",
            "#12a",
            "#X41",
            "#99999999999",
        ] {
            let doc = format!("<a>x&{reference};</a>");
            match dec(&doc) {
                Err(XmlError::InvalidCharRef {
                    reference: r,
                    position: 4,
                }) => assert_eq!(r, reference),
                other => panic!("{doc}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_entities_are_refused() {
        let err = dec("<a>&nbsp;</a>").unwrap_err();
        assert!(
            matches!(&err, XmlError::UnknownEntity { name, position: 3 } if name == "nbsp"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "unknown entity &nbsp; at byte 3");
    }

    #[test]
    fn forbidden_literal_characters_are_refused() {
        let err = dec("<a>ab\u{1}</a>").unwrap_err();
        assert!(
            matches!(
                err,
                XmlError::InvalidChar {
                    code_point: 1,
                    position: 5
                }
            ),
            "{err:?}"
        );
        let err = dec("<a>\u{FFFF}</a>").unwrap_err();
        assert!(
            matches!(
                err,
                XmlError::InvalidChar {
                    code_point: 0xFFFF,
                    position: 3
                }
            ),
            "{err:?}"
        );
        let err = dec("<a><![CDATA[\u{0}]]></a>").unwrap_err();
        assert!(
            matches!(
                err,
                XmlError::InvalidChar {
                    code_point: 0,
                    position: 12
                }
            ),
            "{err:?}"
        );
        // Tab, LF, CR and U+FFFD are fine.
        assert_eq!(ok("<a>\t\u{FFFD}</a>").content, [text("\t\u{FFFD}")]);
    }

    #[test]
    fn whitespace_between_children_is_dropped_but_leaf_text_is_exact() {
        let root =
            ok("<Item>\n  <Data>  spaced \n</Data>\n  <Data> </Data>\n  <Data></Data>\n</Item>");
        let datas: Vec<_> = root.children().map(|e| e.content.clone()).collect();
        assert_eq!(datas, [vec![text("  spaced \n")], vec![text(" ")], vec![]]);
        assert_eq!(root.content.len(), 3);
    }

    #[test]
    fn mixed_content_is_kept_in_order() {
        let root = ok("<Data> a <b/> <c>x</c> tail&amp;<!-- c --> more </Data>");
        assert_eq!(
            root.content,
            [
                text(" a "),
                Node::Element(Element::syncml("b")),
                Node::Element(Element::syncml("c").text("x")),
                text(" tail& more "),
            ]
        );
    }

    // ---------------------------------------------------------------- namespaces and names

    #[test]
    fn namespaces_resolve_from_default_declarations() {
        let root = ok(
            "<MgmtTree xmlns=\"syncml:dmddf1.2\"><Node><NodeName>x</NodeName></Node></MgmtTree>",
        );
        assert_eq!(root.ns, Namespace::Ddf);
        assert_eq!(path(&root, &["Node", "NodeName"]).ns, Namespace::Ddf);
        let root = ok(
            "<SyncML xmlns=\"SYNCML:SYNCML1.1\"><Data><MgmtTree xmlns='syncml:DMDDF1.2'>\
                       <Node/></MgmtTree></Data><Final/></SyncML>",
        );
        assert_eq!(root.ns, Namespace::SyncMl);
        assert_eq!(
            path(&root, &["Data", "MgmtTree", "Node"]).ns,
            Namespace::Ddf
        );
        assert_eq!(path(&root, &["Final"]).ns, Namespace::SyncMl);
    }

    #[test]
    fn root_without_known_namespace_defaults_by_name() {
        assert_eq!(ok("<SyncML/>").ns, Namespace::SyncMl);
        assert_eq!(ok("<SyncML xmlns=\"urn:other\"/>").ns, Namespace::SyncMl);
        assert_eq!(ok("<MgmtTree><Node/></MgmtTree>").ns, Namespace::Ddf);
        assert_eq!(
            path(&ok("<MgmtTree><Node/></MgmtTree>"), &["Node"]).ns,
            Namespace::Ddf
        );
        // A MgmtTree inside SyncML that forgot its declaration is still DDF.
        assert_eq!(
            path(
                &ok("<SyncML><Data><MgmtTree/></Data></SyncML>"),
                &["Data", "MgmtTree"]
            )
            .ns,
            Namespace::Ddf
        );
    }

    #[test]
    fn unknown_namespace_inherits_the_parents() {
        let root = ok(
            "<MgmtTree xmlns=\"syncml:dmddf1.2\"><Node xmlns=\"urn:x\"><Value/></Node></MgmtTree>",
        );
        assert_eq!(path(&root, &["Node"]).ns, Namespace::Ddf);
        assert_eq!(path(&root, &["Node", "Value"]).ns, Namespace::Ddf);
    }

    #[test]
    fn children_of_meta_default_to_metinf() {
        let root = ok(
            "<SyncML xmlns=\"SYNCML:SYNCML1.2\"><Meta><Type>t</Type><Mem><FreeMem>1</FreeMem></Mem>\
                       <Format xmlns=\"SYNCML:SYNCML1.2\">f</Format></Meta><Data/></SyncML>",
        );
        let meta = path(&root, &["Meta"]);
        assert_eq!(meta.ns, Namespace::SyncMl);
        assert_eq!(path(meta, &["Type"]).ns, Namespace::MetInf);
        assert_eq!(path(meta, &["Mem", "FreeMem"]).ns, Namespace::MetInf);
        assert_eq!(
            path(meta, &["Format"]).ns,
            Namespace::SyncMl,
            "explicit declaration wins"
        );
        assert_eq!(path(&root, &["Data"]).ns, Namespace::SyncMl);
    }

    #[test]
    fn prefixed_names_take_the_namespace_of_their_prefix() {
        let root = ok(
            "<s:SyncML xmlns:s=\"SYNCML:SYNCML1.2\" xmlns:m=\"syncml:metinf\">\
                       <s:Meta><m:Type>t</m:Type></s:Meta><Data/><m:Size>3</m:Size>\
                       <x:Other xmlns:x=\"urn:unknown\"/></s:SyncML>",
        );
        assert_eq!(root.name, "SyncML");
        assert!(matches!(root.name, Cow::Borrowed(_)));
        assert_eq!(root.ns, Namespace::SyncMl);
        assert_eq!(path(&root, &["Meta", "Type"]).ns, Namespace::MetInf);
        assert_eq!(path(&root, &["Data"]).ns, Namespace::SyncMl);
        let size = path(&root, &["Size"]);
        assert_eq!(
            (size.ns, size.text_content().as_str()),
            (Namespace::MetInf, "3")
        );
        assert_eq!(path(&root, &["Other"]).ns, Namespace::SyncMl);
        // A prefix goes out of scope with its element.
        let root = ok("<a><b xmlns:m=\"syncml:metinf\"><m:c/></b><m:c/></a>");
        assert_eq!(path(&root, &["b", "c"]).ns, Namespace::MetInf);
        assert_eq!(path(&root, &["c"]).ns, Namespace::SyncMl);
    }

    #[test]
    fn other_attributes_are_ignored() {
        let root = ok("<Data a=\"1\" b='&amp;' xml:lang=\"en\">x</Data>");
        assert_eq!(root, Element::syncml("Data").text("x"));
        assert!(matches!(dec("<a b=\"1></a>"), Err(XmlError::Syntax { .. })));
        assert!(matches!(
            dec("<a xmlns=\"x\" xmlns=\"y\"/>"),
            Err(XmlError::Syntax { .. })
        ));
    }

    #[test]
    fn known_names_are_borrowed_and_others_owned() {
        let root = ok("<SyncML><VerDTD>1.2</VerDTD><Vendor-Ext/><b64/><ZeroOrOne/></SyncML>");
        let names: Vec<_> = root
            .children()
            .map(|e| matches!(e.name, Cow::Borrowed(_)))
            .collect();
        assert_eq!(names, [true, false, true, true]);
        assert_eq!(path(&root, &["Vendor-Ext"]).name, "Vendor-Ext");
    }

    #[test]
    fn known_names_are_sorted_and_unique() {
        assert!(KNOWN_NAMES.windows(2).all(|w| w[0] < w[1]));
        for name in KNOWN_NAMES {
            assert!(matches!(intern(name), Cow::Borrowed(n) if n == name));
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        for doc in ["<1a/>", "<a:b:c/>", "<-x/>", "<a xmlns:1p=\"u\"/>", "<:a/>"] {
            assert!(
                matches!(dec(doc), Err(XmlError::InvalidName { .. })),
                "{doc}: {:?}",
                dec(doc)
            );
        }
        assert!(dec("<\u{e9}l\u{e8}ve_1.x-y/>").is_ok());
    }

    #[test]
    fn too_many_prefixes_are_refused() {
        let decls: String = (0..=MAX_PREFIX_BINDINGS)
            .map(|i| format!(" xmlns:p{i}=\"u\""))
            .collect();
        let err = dec(&format!("<a{decls}/>")).unwrap_err();
        assert!(
            matches!(
                err,
                XmlError::TooManyPrefixes {
                    limit: MAX_PREFIX_BINDINGS,
                    position: 0
                }
            ),
            "{err:?}"
        );
    }

    // ---------------------------------------------------------------- structure errors

    #[test]
    fn structural_errors_name_what_and_where() {
        let err = dec("<a><b></a>").unwrap_err();
        assert!(
            matches!(&err, XmlError::MismatchedEndTag { expected, found, position: 6 } if expected == "b" && found == "a"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "end tag </a> at byte 6 does not close <b>");
        let err = dec("<a/></b>").unwrap_err();
        assert!(
            matches!(&err, XmlError::UnexpectedEndTag { found, position: 4 } if found == "b"),
            "{err:?}"
        );
        let err = dec("<a><b></b>").unwrap_err();
        assert!(
            matches!(&err, XmlError::UnclosedElement { element, position: 10 } if element == "a"),
            "{err:?}"
        );
        let err = dec("<a><b").unwrap_err();
        assert!(
            matches!(err, XmlError::Syntax { position: 3, .. }),
            "{err:?}"
        );
        assert!(matches!(dec("<a>&amp</a>"), Err(XmlError::Syntax { .. })));
        assert!(matches!(
            dec("<a><!ENTITY x \"y\"></a>"),
            Err(XmlError::Syntax { .. })
        ));
    }

    #[test]
    fn a_document_needs_exactly_one_root() {
        for doc in ["", "   \n", "<!-- only -->", "<?xml version=\"1.0\"?>"] {
            assert!(matches!(dec(doc), Err(XmlError::NoRoot)), "{doc:?}");
        }
        for (doc, at) in [
            ("<a/><b/>", 4),
            ("<a/>x", 4),
            ("<a></a><![CDATA[x]]>", 7),
            ("<a/>&amp;", 4),
        ] {
            match dec(doc) {
                Err(XmlError::TrailingContent { position }) => assert_eq!(position, at, "{doc}"),
                other => panic!("{doc}: {other:?}"),
            }
        }
        assert!(dec("<a/>\n \t<!-- c --><?p?>").is_ok());
    }

    // ---------------------------------------------------------------- limits

    #[test]
    fn every_limit_is_enforced() {
        let limits = tiny_limits();
        let big = format!("<a>{}</a>", " ".repeat(4096));
        assert!(matches!(
            decode(big.as_bytes(), &limits),
            Err(XmlError::Limit(LimitError::MessageTooLarge {
                size: 4103,
                limit: 4096
            }))
        ));
        assert!(matches!(
            decode(b"<a><a><a><a><a/></a></a></a></a>", &limits),
            Err(XmlError::Limit(LimitError::TooDeep { limit: 4, .. }))
        ));
        let many = format!("<a>{}</a>", "<b/>".repeat(20));
        assert!(matches!(
            decode(many.as_bytes(), &limits),
            Err(XmlError::Limit(LimitError::TooManyElements { limit: 20 }))
        ));
        assert!(decode(format!("<a>{}</a>", "<b/>".repeat(19)).as_bytes(), &limits).is_ok());
        // String length counts all of one element's text, across runs, entities and CDATA.
        assert!(decode(b"<a>0123456789abcdef</a>", &limits).is_ok());
        for doc in [
            "<a>0123456789abcdefg</a>",
            "<a>01234567<b/>89abcdefg</a>",
            "<a>0123456789abcdef&amp;</a>",
            "<a>0123456789<![CDATA[abcdefg]]></a>",
        ] {
            match decode(doc.as_bytes(), &limits) {
                Err(XmlError::Limit(LimitError::StringTooLong {
                    element,
                    size: 17,
                    limit: 16,
                })) => {
                    assert_eq!(element, "a");
                }
                other => panic!("{doc}: {other:?}"),
            }
        }
        // Whitespace between children is not kept, so it does not count.
        let spaced = format!(
            "<a>{}<b/>{}<b/>{}</a>",
            " ".repeat(10),
            " ".repeat(10),
            " ".repeat(10)
        );
        assert!(decode(spaced.as_bytes(), &limits).is_ok());
    }

    // ---------------------------------------------------------------- encoding

    fn sample() -> Element {
        let mut hdr = Element::syncml("SyncHdr");
        hdr.push_leaf("VerDTD", "1.2");
        let meta = Element::syncml("Meta").child(Element::metinf("MaxMsgSize").text("65536"));
        hdr.push(meta);
        let data = Element::syncml("Data").child(
            Element::new(Namespace::Ddf, "MgmtTree")
                .child(Element::new(Namespace::Ddf, "VerDTD").text("1.2")),
        );
        Element::syncml("SyncML").child(hdr).child(
            Element::syncml("SyncBody")
                .child(data)
                .child(Element::syncml("Final")),
        )
    }

    #[test]
    fn encode_writes_compact_xml_with_namespaces_where_they_change() {
        let xml = String::from_utf8(encode(&sample())).unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr>\
             <VerDTD>1.2</VerDTD><Meta><MaxMsgSize xmlns=\"syncml:metinf\">65536</MaxMsgSize></Meta>\
             </SyncHdr><SyncBody><Data><MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD>\
             </MgmtTree></Data><Final/></SyncBody></SyncML>"
        );
        assert_eq!(
            decode(xml.as_bytes(), &Limits::default()).unwrap(),
            sample()
        );
    }

    #[test]
    fn encode_declares_namespaces_the_decoder_would_otherwise_infer_wrongly() {
        // A SyncML element under Meta, and a MgmtTree outside DDF.
        let odd = Element::syncml("SyncML")
            .child(Element::syncml("Meta").child(Element::syncml("Data").text("x")))
            .child(Element::syncml("MgmtTree"));
        let xml = String::from_utf8(encode(&odd)).unwrap();
        assert!(
            xml.contains("<Meta><Data xmlns=\"SYNCML:SYNCML1.2\">x</Data></Meta>"),
            "{xml}"
        );
        assert!(
            xml.contains("<MgmtTree xmlns=\"SYNCML:SYNCML1.2\"/>"),
            "{xml}"
        );
        assert_eq!(decode(xml.as_bytes(), &Limits::default()).unwrap(), odd);
        // The root always carries its namespace.
        let tree = Element::new(Namespace::Ddf, "MgmtTree");
        assert!(
            String::from_utf8(encode(&tree))
                .unwrap()
                .ends_with("<MgmtTree xmlns=\"syncml:dmddf1.2\"/>")
        );
    }

    #[test]
    fn encode_escapes_text() {
        let el = Element::syncml("Data").text("a<b>&c]]>\"'\r\n\té");
        let xml = String::from_utf8(encode(&el)).unwrap();
        assert!(
            xml.ends_with(">a&lt;b&gt;&amp;c]]&gt;\"'&#xD;\n\té</Data>"),
            "{xml}"
        );
        assert_eq!(decode(xml.as_bytes(), &Limits::default()).unwrap(), el);
    }

    #[test]
    fn encode_replaces_characters_xml_cannot_carry() {
        let el = Element::syncml("Data").text("a\u{0}b\u{1B}c\u{FFFE}\u{FFFF}d");
        let decoded = decode(&encode(&el), &Limits::default()).unwrap();
        assert_eq!(
            decoded.content,
            [text("a\u{FFFD}b\u{FFFD}c\u{FFFD}\u{FFFD}d")]
        );
    }

    #[test]
    fn opaque_is_text_when_utf8_else_base64() {
        let mut el = Element::syncml("Data");
        el.content
            .push(Node::Opaque(b"plain <&> \xC3\xA9".to_vec()));
        let xml = String::from_utf8(encode(&el)).unwrap();
        assert!(
            xml.ends_with("<Data xmlns=\"SYNCML:SYNCML1.2\">plain &lt;&amp;&gt; é</Data>"),
            "{xml}"
        );

        let mut bin = Element::syncml("Data");
        bin.content.push(Node::Opaque(vec![0xFF, 0x00, 0x10, 0x80]));
        let xml = String::from_utf8(encode(&bin)).unwrap();
        assert!(xml.ends_with(">/wAQgA==</Data>"), "{xml}");
        // Valid UTF-8 with control characters is binary too.
        assert_eq!(opaque_as_text(b"\x00\x01"), "AAE=");
        assert_eq!(opaque_as_text(b"ok"), "ok");
    }

    #[test]
    fn encode_pretty_indents_only_element_only_content() {
        let mut el = Element::syncml("SyncML");
        el.push(Element::syncml("SyncHdr").child(Element::syncml("VerDTD").text(" 1.2\n")));
        el.push(
            Element::syncml("Data")
                .text("mixed ")
                .child(Element::syncml("b").text("x"))
                .text(" end"),
        );
        el.push(Element::syncml("Final"));
        let pretty = encode_pretty(&el);
        assert_eq!(
            pretty,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SyncML xmlns=\"SYNCML:SYNCML1.2\">\n  <SyncHdr>\n    \
             <VerDTD> 1.2\n</VerDTD>\n  </SyncHdr>\n  <Data>mixed <b>x</b> end</Data>\n  <Final/>\n</SyncML>\n"
        );
        assert_eq!(decode(pretty.as_bytes(), &Limits::default()).unwrap(), el);
    }

    #[test]
    fn fragments_have_no_declaration_and_decode_in_their_parents_namespace() {
        let tree = Element::new(Namespace::Ddf, "MgmtTree")
            .child(Element::new(Namespace::Ddf, "VerDTD").text("1.2"));
        let mut out = b"prefix:".to_vec();
        encode_fragment(&tree, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "prefix:<MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD></MgmtTree>"
        );
        let decoded = decode_fragment(&out[7..], Namespace::SyncMl, &Limits::default()).unwrap();
        assert_eq!(decoded, tree);
        let undeclared =
            decode_fragment(b"<Type>t</Type>", Namespace::MetInf, &Limits::default()).unwrap();
        assert_eq!(undeclared.ns, Namespace::MetInf);
        let tnds = decode_fragment(
            b"<MgmtTree><Node/></MgmtTree>",
            Namespace::SyncMl,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(path(&tnds, &["Node"]).ns, Namespace::Ddf);
    }

    #[test]
    fn encode_allocates_about_once() {
        let root = decode(PACKAGE1, &Limits::default()).unwrap();
        let out = encode(&root);
        assert!(
            out.capacity() <= out.len() * 2,
            "estimate {} for {}",
            out.capacity(),
            out.len()
        );
    }

    // ---------------------------------------------------------------- properties

    fn arb_ns() -> impl Strategy<Value = Namespace> {
        prop_oneof![
            Just(Namespace::SyncMl),
            Just(Namespace::MetInf),
            Just(Namespace::Ddf)
        ]
    }

    fn arb_name() -> impl Strategy<Value = Cow<'static, str>> {
        prop::sample::select(vec![
            "SyncML",
            "Meta",
            "Type",
            "Data",
            "MgmtTree",
            "Node",
            "Item",
            "x-Vendor.1",
            "\u{dc}n\u{ef}",
            "_u",
        ])
        .prop_map(intern)
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9 <>&\"'\\]\t\r\n]{0,12}",
            Just("]]>".to_owned()),
            Just("  \n".to_owned()),
            "\\PC{0,8}",
            "[\\x00-\\x1f\u{fffe}\u{ffff}a]{1,4}",
        ]
    }

    fn arb_leaf_node() -> impl Strategy<Value = Node> {
        prop_oneof![
            3 => arb_text().prop_map(Node::Text),
            1 => "\\PC{0,8}".prop_map(|s| Node::Opaque(s.into_bytes())),
            1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(Node::Opaque),
        ]
    }

    fn arb_element() -> impl Strategy<Value = Element> {
        let leaf = (
            arb_ns(),
            arb_name(),
            prop::collection::vec(arb_leaf_node(), 0..3),
        )
            .prop_map(|(ns, name, content)| Element { ns, name, content });
        leaf.prop_recursive(4, 48, 5, |inner| {
            (
                arb_ns(),
                arb_name(),
                prop::collection::vec(
                    prop_oneof![3 => inner.prop_map(Node::Element), 1 => arb_leaf_node()],
                    0..5,
                ),
            )
                .prop_map(|(ns, name, content)| Element { ns, name, content })
        })
    }

    /// What the decoder gives back for `el`: opaque as text, forbidden characters replaced,
    /// adjacent text merged, empty text and whitespace between child elements dropped.
    fn normalize(el: &Element) -> Element {
        let has_children = el.has_children();
        let mut content: Vec<Node> = Vec::new();
        let mut run = String::new();
        let flush = |run: &mut String, content: &mut Vec<Node>| {
            if !(run.is_empty() || has_children && is_xml_whitespace(run)) {
                content.push(Node::Text(std::mem::take(run)));
            }
            run.clear();
        };
        for node in &el.content {
            match node {
                Node::Element(child) => {
                    flush(&mut run, &mut content);
                    content.push(Node::Element(normalize(child)));
                }
                Node::Text(t) => run.extend(
                    t.chars()
                        .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' }),
                ),
                Node::Opaque(b) => run.push_str(&opaque_as_text(b)),
            }
        }
        flush(&mut run, &mut content);
        Element {
            ns: el.ns,
            name: el.name.clone(),
            content,
        }
    }

    proptest! {
        #[test]
        fn round_trip_through_both_encoders(el in arb_element()) {
            let expected = normalize(&el);
            let compact = encode(&el);
            prop_assert_eq!(decode(&compact, &Limits::default()).unwrap(), expected.clone());
            let pretty = encode_pretty(&el);
            prop_assert_eq!(decode(pretty.as_bytes(), &Limits::default()).unwrap(), expected.clone());
            let mut fragment = Vec::new();
            encode_fragment(&el, &mut fragment);
            prop_assert_eq!(decode_fragment(&fragment, Namespace::MetInf, &Limits::default()).unwrap(), expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_respect_limits(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            check_bounded(&bytes);
        }

        #[test]
        fn xml_like_soup_never_panics_and_respects_limits(
            soup in "(<[a-zA-Z:]{1,3}( xmlns(:[a-z])?=\"[a-zA-Z:.0-9]{0,16}\")?/?>|</[a-zA-Z:]{1,3}>|[a-z &;#x0-9]{0,5}|<!\\[CDATA\\[[a-z\\]>]{0,5}\\]\\]>|<!--[a-z-]{0,4}-->|<\\?[a-z ]{0,5}\\?>|&[a-z#x0-9]{0,5};|<!DOCTYPE a( \\[\\])?>){0,40}"
        ) {
            check_bounded(soup.as_bytes());
        }

        #[test]
        fn mutated_documents_never_panic_and_respect_limits(
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..8)
        ) {
            let mut doc = PACKAGE1.to_vec();
            for (at, op, byte) in edits {
                let i = at.index(doc.len() + 1);
                match op {
                    0 if i < doc.len() => doc[i] = byte,
                    1 if i < doc.len() => { doc.remove(i); }
                    _ => doc.insert(i, byte),
                }
            }
            let _ = decode(&doc, &Limits::default());
            check_bounded(&doc);
        }
    }

    /// Decode under tiny limits; a success must be within them.
    fn check_bounded(bytes: &[u8]) {
        let limits = Limits {
            max_message_bytes: 8192,
            ..tiny_limits()
        };
        if let Ok(root) = decode(bytes, &limits) {
            assert!(root.count_elements() <= limits.max_elements);
            assert!(depth(&root) <= limits.max_depth);
            assert!(max_text(&root) <= limits.max_string_bytes);
        }
    }

    #[test]
    fn xmllint_accepts_generated_documents() {
        if Command::new("xmllint").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("DMGW_REQUIRE_TOOLS").is_none(),
                "xmllint is required (DMGW_REQUIRE_TOOLS is set)"
            );
            println!("xmllint not installed (Debian: libxml2-utils); skipping");
            return;
        }
        let mut runner = TestRunner::deterministic();
        let strategy = arb_element();
        let mut documents = vec![PACKAGE1.to_vec(), encode(&sample())];
        for _ in 0..24 {
            let el = strategy.new_tree(&mut runner).unwrap().current();
            documents.push(encode(&el));
            documents.push(encode_pretty(&el).into_bytes());
        }
        for doc in documents {
            let mut child = Command::new("xmllint")
                .args(["--noout", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&doc).unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success() && output.stderr.is_empty(),
                "xmllint refused {}:\n{}",
                String::from_utf8_lossy(&doc),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
