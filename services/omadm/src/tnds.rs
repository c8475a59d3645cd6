//! TNDS (`application/vnd.syncml.dmtnds+xml` / `+wbxml`): the `MgmtTree` document a DM bootstrap
//! carries. Converts to and from the generic `Element` tree (DDF namespace) and to and from a `Tree`.
//!
//! Element names are those of the DM DDF 1.2 DTD (WBXML code page 2 in libwbxml's
//! `sv_syncml_dmddf12_tag_table`): `MgmtTree (VerDTD, Man?, Mod?, Node*)`,
//! `Node (NodeName, Path?, RTProperties?, DFProperties?, (Node* | Value?))`,
//! `RTProperties (ACL?, Format?, Name?, Size?, Title?, TStamp?, Type, VerNo?)`,
//! `Format (b64 | bin | bool | chr | int | node | null | xml | date | time | float)` and
//! `Type (MIME | DDFName)`. The decoder accepts children in any order (as AOSP's TNDS decoder
//! does), ignores `DFProperties`, and refuses unknown elements.
//!
//! Values are text. For Format `b64` and `bin` the Value is the base64 text of the bytes the tree
//! holds (WBXML OPAQUE that is not UTF-8 is base64-encoded on decode). A Node without Format is a
//! `chr` leaf when it has a Value, else an interior node (possibly continued elsewhere via `Path`).

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use thiserror::Error;

use crate::element::{Budget, Element, LimitError, Limits, Namespace, Node};
use crate::tree::{Acl, AclError, DEFAULT_NO_GET, Format, NewNode, Tree, TreeError};
use crate::uri::{DEPTH_CEILING, DmUri, UriError, UriLimits, excerpt};

/// MIME type of a TNDS object in XML.
pub const TNDS_XML_MIME: &str = "application/vnd.syncml.dmtnds+xml";
/// MIME type of a TNDS object in WBXML.
pub const TNDS_WBXML_MIME: &str = "application/vnd.syncml.dmtnds+wbxml";
/// The `VerDTD` dmgw writes.
pub const TNDS_VER_DTD: &str = "1.2";
/// Longest accepted `NodeName`, in bytes (the tree's own, usually tighter, limits apply later).
pub const MAX_NODE_NAME_LEN: usize = 255;

/// Why a TNDS document was refused, or could not be applied or exported.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TndsError {
    /// The root element is not `MgmtTree`.
    #[error("expected <MgmtTree>, found <{found}>")]
    NotMgmtTree {
        /// The root's name (excerpt).
        found: String,
    },
    /// `VerDTD` is missing.
    #[error("<MgmtTree> has no <VerDTD>")]
    MissingVerDtd,
    /// A `Node` without `NodeName`.
    #[error("a <Node> under {parent:?} has no <NodeName>")]
    MissingNodeName {
        /// Where: the names of its ancestors joined by `/` (excerpt).
        parent: String,
    },
    /// A `NodeName` that cannot name a node.
    #[error("node name {name:?} is invalid: {reason}")]
    InvalidNodeName {
        /// The name (excerpt).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An element the DTD does not allow there.
    #[error("unexpected <{element}> in <{parent}> at {node:?}")]
    UnexpectedElement {
        /// The element's name (excerpt).
        element: String,
        /// Its parent's name.
        parent: String,
        /// Where (node location, excerpt).
        node: String,
    },
    /// An element that may occur once occurs twice.
    #[error("<{element}> twice in <{parent}> at {node:?}")]
    DuplicateElement {
        /// The element's name.
        element: String,
        /// Its parent's name.
        parent: String,
        /// Where (node location, excerpt).
        node: String,
    },
    /// Character data where only elements may be.
    #[error("unexpected text in <{element}> at {node:?}")]
    UnexpectedText {
        /// The element holding it.
        element: String,
        /// Where (node location, excerpt).
        node: String,
    },
    /// Text that is not UTF-8 (WBXML OPAQUE) in a text element.
    #[error("<{element}> at {node:?} is not UTF-8")]
    NotUtf8 {
        /// The element.
        element: String,
        /// Where (node location, excerpt).
        node: String,
    },
    /// A `Format` that is not one of the DDF formats.
    #[error("unknown format {found:?} at {node:?}")]
    UnknownFormat {
        /// Where (node location, excerpt).
        node: String,
        /// What was found (excerpt).
        found: String,
    },
    /// A `Size` that is not a number.
    #[error("invalid <Size> {found:?} at {node:?}")]
    InvalidSize {
        /// Where (node location, excerpt).
        node: String,
        /// What was found (excerpt).
        found: String,
    },
    /// An `ACL` that is not DM ACL syntax.
    #[error("invalid <ACL> at {node:?}: {source}")]
    InvalidAcl {
        /// Where (node location, excerpt).
        node: String,
        /// The ACL error.
        source: AclError,
    },
    /// A `Node` with both a `Value` and child `Node`s.
    #[error("node {node:?} has both a <Value> and child nodes")]
    ValueAndChildren {
        /// Where (node location, excerpt).
        node: String,
    },
    /// A `Path` that is not a management-tree URI.
    #[error("invalid <Path> {path:?}: {source}")]
    InvalidPath {
        /// The path (excerpt).
        path: String,
        /// The URI error.
        source: UriError,
    },
    /// A node's URI breaks the target tree's URI limits.
    #[error("node {name:?} under {parent} cannot be placed: {source}")]
    InvalidUri {
        /// The parent URI.
        parent: DmUri,
        /// The node name (excerpt).
        name: String,
        /// The URI error.
        source: UriError,
    },
    /// An interior node (Format `node`) with a Value.
    #[error("{uri} is an interior node but has a value")]
    ValueOnInterior {
        /// The node's URI.
        uri: DmUri,
    },
    /// A leaf with child nodes.
    #[error("{uri} is a leaf ({format}) but has child nodes")]
    ChildrenOnLeaf {
        /// The node's URI.
        uri: DmUri,
        /// Its format.
        format: Format,
    },
    /// A `b64`/`bin` value that is not base64.
    #[error("value of {uri} is not base64")]
    InvalidBase64 {
        /// The node's URI.
        uri: DmUri,
    },
    /// A decoding bound was exceeded.
    #[error("limit: {source}")]
    Limit {
        /// The bound.
        #[from]
        source: LimitError,
    },
    /// The tree refused a node (418 exists, 405 under a leaf, 420 full ...).
    #[error("tree: {source}")]
    Tree {
        /// The tree's error.
        #[from]
        source: TreeError,
    },
}

impl TndsError {
    /// The DM status code for answering the command that carried the document: the tree's code
    /// for tree errors, 413 for exceeded bounds, 415 for values that do not fit their Format,
    /// 414 for URIs over the tree's limits, 400 for a malformed document.
    pub fn status_code(&self) -> u16 {
        match self {
            TndsError::Tree { source } => source.status_code(),
            TndsError::Limit { .. } => 413,
            TndsError::NotUtf8 { .. }
            | TndsError::UnknownFormat { .. }
            | TndsError::InvalidBase64 { .. }
            | TndsError::ValueOnInterior { .. }
            | TndsError::ChildrenOnLeaf { .. } => 415,
            TndsError::InvalidUri { source, .. } | TndsError::InvalidPath { source, .. }
                if source.is_limit() =>
            {
                414
            }
            _ => 400,
        }
    }
}

/// Run-time properties of a TNDS node (`RTProperties`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtProps {
    /// `ACL`.
    pub acl: Option<Acl>,
    /// `Format`.
    pub format: Option<Format>,
    /// `Name`.
    pub name: Option<String>,
    /// `Size`.
    pub size: Option<u64>,
    /// `Title`.
    pub title: Option<String>,
    /// `TStamp`.
    pub tstamp: Option<String>,
    /// `Type/MIME`: a leaf's MIME type.
    pub mime_type: Option<String>,
    /// `Type/DDFName`: an interior node's MO identifier.
    pub ddf_name: Option<String>,
    /// `VerNo`.
    pub verno: Option<String>,
}

/// One `Node` of a TNDS document.
#[derive(Clone, PartialEq, Eq)]
pub struct TndsNode {
    /// `NodeName`.
    pub name: String,
    /// `Path`: the URI of the parent this node is placed under (`./DMAcc`, `.`, or `DMAcc`).
    pub path: Option<String>,
    /// `RTProperties`.
    pub props: RtProps,
    /// `Value` (text; base64 for b64/bin).
    pub value: Option<String>,
    /// Child `Node`s.
    pub children: Vec<TndsNode>,
}

impl TndsNode {
    /// An interior node with `children`.
    pub fn interior(name: impl Into<String>, children: Vec<TndsNode>) -> TndsNode {
        TndsNode {
            name: name.into(),
            path: None,
            props: RtProps {
                format: Some(Format::Node),
                ..RtProps::default()
            },
            value: None,
            children,
        }
    }

    /// A leaf of `format` with text `value`.
    pub fn leaf(name: impl Into<String>, format: Format, value: impl Into<String>) -> TndsNode {
        TndsNode {
            name: name.into(),
            path: None,
            props: RtProps {
                format: Some(format),
                ..RtProps::default()
            },
            value: Some(value.into()),
            children: Vec::new(),
        }
    }

    fn is_secret(&self) -> bool {
        DEFAULT_NO_GET
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&self.name))
    }

    fn to_element(&self) -> Element {
        let mut e = ddf("Node");
        e.push_leaf("NodeName", self.name.clone());
        if let Some(p) = &self.path {
            e.push_leaf("Path", p.clone());
        }
        e.push(self.props.to_element());
        if let Some(v) = &self.value {
            e.push_leaf("Value", v.clone());
        }
        for c in &self.children {
            e.push(c.to_element());
        }
        e
    }
}

impl fmt::Debug for TndsNode {
    /// Values of secret nodes (AAuthSecret, AAuthData) are not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: Option<&str> = match &self.value {
            Some(_) if self.is_secret() => Some("<redacted>"),
            Some(v) => Some(v),
            None => None,
        };
        f.debug_struct("TndsNode")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("props", &self.props)
            .field("value", &value)
            .field("children", &self.children)
            .finish()
    }
}

impl RtProps {
    fn to_element(&self) -> Element {
        let mut e = ddf("RTProperties");
        if let Some(acl) = &self.acl {
            e.push_leaf("ACL", acl.to_string());
        }
        if let Some(format) = self.format {
            e.push(ddf("Format").child(ddf(format.as_str())));
        }
        if let Some(v) = &self.name {
            e.push_leaf("Name", v.clone());
        }
        if let Some(v) = self.size {
            e.push_leaf("Size", v.to_string());
        }
        if let Some(v) = &self.title {
            e.push_leaf("Title", v.clone());
        }
        if let Some(v) = &self.tstamp {
            e.push_leaf("TStamp", v.clone());
        }
        // Type is mandatory in RTProperties (AOSP's encoder requires it): empty when unknown.
        let mut t = ddf("Type");
        if let Some(v) = &self.mime_type {
            t.push_leaf("MIME", v.clone());
        }
        if let Some(v) = &self.ddf_name {
            t.push_leaf("DDFName", v.clone());
        }
        e.push(t);
        if let Some(v) = &self.verno {
            e.push_leaf("VerNo", v.clone());
        }
        e
    }
}

/// A TNDS document: one or more described subtrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MgmtTree {
    /// `VerDTD` (`1.2`).
    pub ver_dtd: String,
    /// `Man`: manufacturer of the device the tree comes from.
    pub man: Option<String>,
    /// `Mod`: model of the device the tree comes from.
    pub mod_: Option<String>,
    /// The top-level `Node`s.
    pub nodes: Vec<TndsNode>,
}

fn ddf(name: &'static str) -> Element {
    Element::new(Namespace::Ddf, name)
}

/// Generous URI limits for checking `Path` syntax while decoding; the tree's limits apply on apply.
fn syntax_limits() -> UriLimits {
    UriLimits {
        max_total_len: 4096,
        max_depth: DEPTH_CEILING,
        max_segment_len: MAX_NODE_NAME_LEN,
    }
}

/// `Path` as a URI: `.`, `./A/B`, and also `A/B` or `/A/B` (taken as `./A/B`); empty is the root.
fn path_uri(path: &str, limits: &UriLimits) -> Result<DmUri, TndsError> {
    let p = path.trim();
    let candidate: Cow<'_, str> = if p.is_empty() || p == "." || p.starts_with("./") {
        Cow::Borrowed(if p.is_empty() { "." } else { p })
    } else if let Some(rest) = p.strip_prefix('/') {
        Cow::Owned(format!("./{rest}"))
    } else {
        Cow::Owned(format!("./{p}"))
    };
    DmUri::parse(&candidate, limits).map_err(|source| TndsError::InvalidPath {
        path: excerpt(path),
        source,
    })
}

fn check_node_name(name: &str) -> Result<(), TndsError> {
    let invalid = |reason| TndsError::InvalidNodeName {
        name: excerpt(name),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > MAX_NODE_NAME_LEN {
        return Err(invalid("longer than 255 bytes"));
    }
    if name.contains('/') {
        return Err(invalid("contains `/`"));
    }
    if name == "." || name == ".." {
        return Err(invalid("relative segment"));
    }
    if name.contains('?') || name.chars().any(char::is_control) {
        return Err(invalid("contains `?` or a control character"));
    }
    Ok(())
}

/// Decoding state: the budget and where we are, for error messages.
struct Decoder {
    budget: Budget,
}

impl Decoder {
    fn open(&mut self, e: &Element, depth: usize) -> Result<(), TndsError> {
        Ok(self.budget.open(&e.name, depth)?)
    }

    /// The trimmed text of a leaf element (no child elements allowed).
    fn text(&mut self, e: &Element, depth: usize, loc: &str) -> Result<String, TndsError> {
        self.open(e, depth)?;
        let raw = self.raw_text(e, loc, None)?;
        Ok(raw.trim().to_owned())
    }

    /// The untrimmed text of a leaf element; non-UTF-8 opaque data is base64-encoded when
    /// `binary_format` says the value is binary.
    fn raw_text(
        &mut self,
        e: &Element,
        loc: &str,
        binary_format: Option<bool>,
    ) -> Result<String, TndsError> {
        let mut s = String::new();
        for n in &e.content {
            match n {
                Node::Text(t) => s.push_str(t),
                Node::Opaque(b) => match std::str::from_utf8(b) {
                    Ok(t) => s.push_str(t),
                    Err(_) if binary_format == Some(true) => s.push_str(&B64.encode(b)),
                    Err(_) => {
                        return Err(TndsError::NotUtf8 {
                            element: e.name.to_string(),
                            node: excerpt(loc),
                        });
                    }
                },
                Node::Element(c) => {
                    return Err(TndsError::UnexpectedElement {
                        element: excerpt(&c.name),
                        parent: e.name.to_string(),
                        node: excerpt(loc),
                    });
                }
            }
            self.budget.string(&e.name, s.len())?;
        }
        Ok(s)
    }

    fn node(&mut self, e: &Element, depth: usize, parent_loc: &str) -> Result<TndsNode, TndsError> {
        self.open(e, depth)?;
        let child_depth = depth.saturating_add(1);
        // Find the name first so that errors below can say where they are.
        let name_el = e
            .find("NodeName")
            .ok_or_else(|| TndsError::MissingNodeName {
                parent: excerpt(parent_loc),
            })?;
        let name = self.text(name_el, child_depth, parent_loc)?;
        check_node_name(&name)?;
        let loc = if parent_loc.is_empty() {
            name.clone()
        } else {
            format!("{parent_loc}/{name}")
        };
        let mut seen_name = false;
        let mut path = None;
        let mut props: Option<RtProps> = None;
        let mut value_el: Option<&Element> = None;
        let mut children = Vec::new();
        for item in &e.content {
            let c = match item {
                Node::Element(c) => c,
                Node::Text(t) if t.trim().is_empty() => continue,
                Node::Text(_) | Node::Opaque(_) => {
                    return Err(TndsError::UnexpectedText {
                        element: "Node".into(),
                        node: excerpt(&loc),
                    });
                }
            };
            let dup = |present: bool| {
                if present {
                    Err(TndsError::DuplicateElement {
                        element: c.name.to_string(),
                        parent: "Node".into(),
                        node: excerpt(&loc),
                    })
                } else {
                    Ok(())
                }
            };
            match c.name.as_ref() {
                "NodeName" => {
                    dup(seen_name)?;
                    seen_name = true;
                }
                "Path" => {
                    dup(path.is_some())?;
                    let p = self.text(c, child_depth, &loc)?;
                    path_uri(&p, &syntax_limits())?;
                    path = Some(p);
                }
                "RTProperties" => {
                    dup(props.is_some())?;
                    props = Some(self.props(c, child_depth, &loc)?);
                }
                "DFProperties" => self.open(c, child_depth)?,
                "Value" => {
                    dup(value_el.is_some())?;
                    self.open(c, child_depth)?;
                    value_el = Some(c);
                }
                "Node" => children.push(self.node(c, child_depth, &loc)?),
                other => {
                    return Err(TndsError::UnexpectedElement {
                        element: excerpt(other),
                        parent: "Node".into(),
                        node: excerpt(&loc),
                    });
                }
            }
        }
        let props = props.unwrap_or_default();
        if value_el.is_some() && !children.is_empty() {
            return Err(TndsError::ValueAndChildren {
                node: excerpt(&loc),
            });
        }
        let binary = props.format.map(Format::is_binary);
        let value = value_el
            .map(|v| self.raw_text(v, &loc, binary))
            .transpose()?;
        Ok(TndsNode {
            name,
            path,
            props,
            value,
            children,
        })
    }

    fn props(&mut self, e: &Element, depth: usize, loc: &str) -> Result<RtProps, TndsError> {
        self.open(e, depth)?;
        let child_depth = depth.saturating_add(1);
        let mut p = RtProps::default();
        let mut seen: Vec<&str> = Vec::new();
        for item in &e.content {
            let c = match item {
                Node::Element(c) => c,
                Node::Text(t) if t.trim().is_empty() => continue,
                Node::Text(_) | Node::Opaque(_) => {
                    return Err(TndsError::UnexpectedText {
                        element: "RTProperties".into(),
                        node: excerpt(loc),
                    });
                }
            };
            let name = c.name.as_ref();
            if seen.contains(&name) {
                return Err(TndsError::DuplicateElement {
                    element: name.to_owned(),
                    parent: "RTProperties".into(),
                    node: excerpt(loc),
                });
            }
            seen.push(name);
            match name {
                "ACL" => {
                    let text = self.text(c, child_depth, loc)?;
                    let acl = Acl::parse(&text).map_err(|source| TndsError::InvalidAcl {
                        node: excerpt(loc),
                        source,
                    })?;
                    p.acl = Some(acl);
                }
                "Format" => p.format = self.format(c, child_depth, loc)?,
                "Name" => p.name = Some(self.text(c, child_depth, loc)?),
                "Size" => {
                    let text = self.text(c, child_depth, loc)?;
                    let size = text.parse::<u64>().map_err(|_| TndsError::InvalidSize {
                        node: excerpt(loc),
                        found: excerpt(&text),
                    })?;
                    p.size = Some(size);
                }
                "Title" => p.title = Some(self.text(c, child_depth, loc)?),
                "TStamp" => p.tstamp = Some(self.text(c, child_depth, loc)?),
                "VerNo" => p.verno = Some(self.text(c, child_depth, loc)?),
                "Type" => {
                    self.open(c, child_depth)?;
                    let type_depth = child_depth.saturating_add(1);
                    for item in &c.content {
                        match item {
                            Node::Element(t) if t.name == "MIME" && p.mime_type.is_none() => {
                                p.mime_type = Some(self.text(t, type_depth, loc)?);
                            }
                            Node::Element(t) if t.name == "DDFName" && p.ddf_name.is_none() => {
                                p.ddf_name = Some(self.text(t, type_depth, loc)?);
                            }
                            Node::Element(t) => {
                                return Err(TndsError::UnexpectedElement {
                                    element: excerpt(&t.name),
                                    parent: "Type".into(),
                                    node: excerpt(loc),
                                });
                            }
                            Node::Text(t) if t.trim().is_empty() => {}
                            Node::Text(_) | Node::Opaque(_) => {
                                return Err(TndsError::UnexpectedText {
                                    element: "Type".into(),
                                    node: excerpt(loc),
                                });
                            }
                        }
                    }
                }
                other => {
                    return Err(TndsError::UnexpectedElement {
                        element: excerpt(other),
                        parent: "RTProperties".into(),
                        node: excerpt(loc),
                    });
                }
            }
        }
        Ok(p)
    }

    /// `<Format><chr/></Format>`; text content (`<Format>chr</Format>`) is accepted too; empty is
    /// no format.
    fn format(
        &mut self,
        e: &Element,
        depth: usize,
        loc: &str,
    ) -> Result<Option<Format>, TndsError> {
        self.open(e, depth)?;
        let mut kids = e.children();
        match (kids.next(), kids.next()) {
            (Some(k), None) => {
                self.open(k, depth.saturating_add(1))?;
                if k.has_children() || !k.text_content().is_empty() {
                    return Err(TndsError::UnknownFormat {
                        node: excerpt(loc),
                        found: excerpt(&k.name),
                    });
                }
                Format::parse(&k.name)
                    .map(Some)
                    .ok_or_else(|| TndsError::UnknownFormat {
                        node: excerpt(loc),
                        found: excerpt(&k.name),
                    })
            }
            (None, _) => {
                let text = self.raw_text(e, loc, None)?;
                let t = text.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                Format::parse(t)
                    .map(Some)
                    .ok_or_else(|| TndsError::UnknownFormat {
                        node: excerpt(loc),
                        found: excerpt(t),
                    })
            }
            (Some(_), Some(k2)) => Err(TndsError::DuplicateElement {
                element: k2.name.to_string(),
                parent: "Format".into(),
                node: excerpt(loc),
            }),
        }
    }
}

impl MgmtTree {
    /// A document with `VerDTD` 1.2 and these top-level nodes.
    pub fn new(nodes: Vec<TndsNode>) -> MgmtTree {
        MgmtTree {
            ver_dtd: TNDS_VER_DTD.to_owned(),
            man: None,
            mod_: None,
            nodes,
        }
    }

    /// Decode a `MgmtTree` element (from the XML or WBXML codec), under `limits`.
    pub fn from_element(e: &Element, limits: &Limits) -> Result<MgmtTree, TndsError> {
        if e.name != "MgmtTree" {
            return Err(TndsError::NotMgmtTree {
                found: excerpt(&e.name),
            });
        }
        let mut d = Decoder {
            budget: Budget::start(*limits, 0)?,
        };
        d.open(e, 1)?;
        let mut ver_dtd = None;
        let mut man = None;
        let mut mod_ = None;
        let mut nodes = Vec::new();
        for item in &e.content {
            let c = match item {
                Node::Element(c) => c,
                Node::Text(t) if t.trim().is_empty() => continue,
                Node::Text(_) | Node::Opaque(_) => {
                    return Err(TndsError::UnexpectedText {
                        element: "MgmtTree".into(),
                        node: String::new(),
                    });
                }
            };
            let slot = match c.name.as_ref() {
                "VerDTD" => &mut ver_dtd,
                "Man" => &mut man,
                "Mod" => &mut mod_,
                "Node" => {
                    nodes.push(d.node(c, 2, "")?);
                    continue;
                }
                other => {
                    return Err(TndsError::UnexpectedElement {
                        element: excerpt(other),
                        parent: "MgmtTree".into(),
                        node: String::new(),
                    });
                }
            };
            if slot.is_some() {
                return Err(TndsError::DuplicateElement {
                    element: c.name.to_string(),
                    parent: "MgmtTree".into(),
                    node: String::new(),
                });
            }
            *slot = Some(d.text(c, 2, "")?);
        }
        Ok(MgmtTree {
            ver_dtd: ver_dtd.ok_or(TndsError::MissingVerDtd)?,
            man,
            mod_,
            nodes,
        })
    }

    /// Encode as a `MgmtTree` element in the DDF namespace, children in DTD order.
    pub fn to_element(&self) -> Element {
        let mut e = ddf("MgmtTree");
        e.push_leaf("VerDTD", self.ver_dtd.clone());
        if let Some(v) = &self.man {
            e.push_leaf("Man", v.clone());
        }
        if let Some(v) = &self.mod_ {
            e.push_leaf("Mod", v.clone());
        }
        for n in &self.nodes {
            e.push(n.to_element());
        }
        e
    }

    /// Add the described nodes to `tree`, all or nothing. Top-level nodes go under their `Path`
    /// (or the root); existing interior nodes are merged into (their properties kept), an existing
    /// leaf or a kind mismatch is an error. Returns every URI created, implicit parents included,
    /// in creation order.
    pub fn apply(&self, tree: &mut Tree) -> Result<Vec<DmUri>, TndsError> {
        tree.atomic(|t| {
            let mut added = Vec::new();
            for n in &self.nodes {
                apply_node(t, &DmUri::root(), n, &mut added)?;
            }
            Ok(added)
        })
    }

    /// Export the subtree at `uri` (secrets included: this is what a bootstrap server sends).
    /// The subtree's root becomes a top-level node whose `Path` is its parent URI; exporting `.`
    /// gives the root's children without `Path`.
    pub fn from_subtree(tree: &Tree, uri: &DmUri) -> Result<MgmtTree, TndsError> {
        let node = tree.node(uri)?;
        let nodes = match (uri.parent(), uri.name()) {
            (Some(parent), Some(name)) => {
                let mut n = export_node(uri, name, node)?;
                n.path = Some(parent.to_string());
                vec![n]
            }
            _ => node
                .children
                .iter()
                .map(|(name, child)| {
                    let at = uri
                        .join_with_limits(name, &tree.limits().uri)
                        .map_err(|source| TndsError::InvalidUri {
                            parent: uri.clone(),
                            name: excerpt(name),
                            source,
                        })?;
                    export_node(&at, name, child)
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(MgmtTree::new(nodes))
    }
}

fn apply_node(
    t: &mut Tree,
    parent: &DmUri,
    n: &TndsNode,
    added: &mut Vec<DmUri>,
) -> Result<(), TndsError> {
    let limits = t.limits().uri;
    let base = match &n.path {
        Some(p) => path_uri(p, &limits)?,
        None => parent.clone(),
    };
    let uri = base
        .join_with_limits(&n.name, &limits)
        .map_err(|source| TndsError::InvalidUri {
            parent: base.clone(),
            name: excerpt(&n.name),
            source,
        })?;
    let new = new_node(n, &uri)?;
    match t.node(&uri) {
        Ok(existing) if existing.is_interior() && new.format == Format::Node => {}
        Ok(_) => return Err(TreeError::AlreadyExists { uri }.into()),
        Err(TreeError::NotFound { .. }) => {
            let implicit: Vec<DmUri> = (1..uri.depth())
                .map(|k| uri.prefix(k))
                .filter(|p| !t.exists(p))
                .collect();
            t.add(&uri, new)?;
            added.extend(implicit);
            added.push(uri.clone());
        }
        Err(e) => return Err(e.into()),
    }
    for c in &n.children {
        apply_node(t, &uri, c, added)?;
    }
    Ok(())
}

fn new_node(n: &TndsNode, uri: &DmUri) -> Result<NewNode, TndsError> {
    let format = match n.props.format {
        Some(f) => f,
        None if n.value.is_some() => Format::Chr,
        None => Format::Node,
    };
    if format == Format::Node && n.value.is_some() {
        return Err(TndsError::ValueOnInterior { uri: uri.clone() });
    }
    if format != Format::Node && !n.children.is_empty() {
        return Err(TndsError::ChildrenOnLeaf {
            uri: uri.clone(),
            format,
        });
    }
    let value = match (&n.value, format) {
        (None, _) | (_, Format::Node) => None,
        (Some(v), f) if f.is_binary() => {
            let compact: String = v.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            Some(
                B64.decode(compact.as_bytes())
                    .map_err(|_| TndsError::InvalidBase64 { uri: uri.clone() })?,
            )
        }
        (Some(v), _) => Some(v.as_bytes().to_vec()),
    };
    Ok(NewNode {
        format,
        mime_type: n
            .props
            .mime_type
            .clone()
            .or_else(|| n.props.ddf_name.clone()),
        acl: n.props.acl.clone(),
        value,
        permanent: false,
    })
}

fn export_node(uri: &DmUri, name: &str, node: &crate::tree::Node) -> Result<TndsNode, TndsError> {
    let value = match &node.value {
        None => None,
        Some(v) if node.format.is_binary() => Some(B64.encode(v)),
        Some(v) => Some(
            String::from_utf8(v.clone()).map_err(|_| TndsError::NotUtf8 {
                element: "Value".into(),
                node: uri.to_string(),
            })?,
        ),
    };
    let (mime_type, ddf_name) = if node.is_interior() {
        (None, node.mime_type.clone())
    } else {
        (node.mime_type.clone(), None)
    };
    let mut children = Vec::with_capacity(node.children.len());
    for (child_name, child) in &node.children {
        // Child URIs of a valid tree are valid; the ceiling-level limits only guard recursion.
        let at = uri
            .join_with_limits(child_name, &export_limits())
            .map_err(|source| TndsError::InvalidUri {
                parent: uri.clone(),
                name: excerpt(child_name),
                source,
            })?;
        children.push(export_node(&at, child_name, child)?);
    }
    Ok(TndsNode {
        name: name.to_owned(),
        path: None,
        props: RtProps {
            acl: node.acl.clone(),
            format: Some(node.format),
            mime_type,
            ddf_name,
            ..RtProps::default()
        },
        value,
        children,
    })
}

fn export_limits() -> UriLimits {
    UriLimits {
        max_total_len: usize::MAX,
        max_depth: DEPTH_CEILING,
        max_segment_len: usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::TreeLimits;
    use proptest::prelude::*;

    fn uri(s: &str) -> DmUri {
        s.parse().unwrap()
    }

    fn leaf(name: &'static str, text: &str) -> Element {
        ddf(name).text(text)
    }

    fn props(format: &'static str, mime: Option<&str>) -> Element {
        let mut p = ddf("RTProperties").child(ddf("Format").child(ddf(format)));
        let mut t = ddf("Type");
        if let Some(m) = mime {
            t.push(leaf("MIME", m));
        }
        p.push(t);
        p
    }

    fn node(name: &str, p: Element, rest: Vec<Element>) -> Element {
        let mut e = ddf("Node").child(ddf("NodeName").text(name));
        e.push(p);
        for r in rest {
            e.push(r);
        }
        e
    }

    fn doc(nodes: Vec<Element>) -> Element {
        let mut e = ddf("MgmtTree").child(leaf("VerDTD", "1.2"));
        for n in nodes {
            e.push(n);
        }
        e
    }

    fn parse(e: &Element) -> Result<MgmtTree, TndsError> {
        MgmtTree::from_element(e, &Limits::default())
    }

    #[test]
    fn decodes_a_simple_document() {
        let e = doc(vec![
            node(
                "Vendor",
                props("node", None),
                vec![node(
                    "GWName",
                    props("chr", Some("text/plain")),
                    vec![leaf("Value", "gw.yyy.se")],
                )],
            )
            .child(ddf("DFProperties").child(ddf("AccessType").child(ddf("Get")))),
        ]);
        let m = parse(&e).unwrap();
        assert_eq!(m.ver_dtd, "1.2");
        assert_eq!(m.nodes.len(), 1);
        let v = &m.nodes[0];
        assert_eq!(v.name, "Vendor");
        assert_eq!(v.props.format, Some(Format::Node));
        let g = &v.children[0];
        assert_eq!(g.value.as_deref(), Some("gw.yyy.se"));
        assert_eq!(g.props.mime_type.as_deref(), Some("text/plain"));
        // Back to an element: Format as an empty DDF element, Type always present.
        let out = m.to_element();
        let node0 = out.find("Node").unwrap();
        let rt = node0.find("RTProperties").unwrap();
        assert_eq!(
            rt.find("Format").unwrap().find("node").unwrap().content,
            vec![]
        );
        assert!(rt.find("Type").is_some());
        assert_eq!(out.ns, Namespace::Ddf);
        assert_eq!(parse(&out).unwrap(), m);
    }

    #[test]
    fn encodes_in_dtd_order() {
        let n = TndsNode {
            name: "N".into(),
            path: Some("./A".into()),
            props: RtProps {
                acl: Some(Acl::parse("Get=*").unwrap()),
                format: Some(Format::Int),
                name: Some("n".into()),
                size: Some(2),
                title: Some("t".into()),
                tstamp: Some("ts".into()),
                mime_type: Some("text/plain".into()),
                ddf_name: None,
                verno: Some("1".into()),
            },
            value: Some("42".into()),
            children: vec![],
        };
        let mut m = MgmtTree::new(vec![n]);
        m.man = Some("ACME".into());
        m.mod_ = Some("M1".into());
        let e = m.to_element();
        let names = |e: &Element| e.children().map(|c| c.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&e), ["VerDTD", "Man", "Mod", "Node"]);
        let node = e.find("Node").unwrap();
        assert_eq!(names(node), ["NodeName", "Path", "RTProperties", "Value"]);
        assert_eq!(
            names(node.find("RTProperties").unwrap()),
            [
                "ACL", "Format", "Name", "Size", "Title", "TStamp", "Type", "VerNo"
            ]
        );
        assert_eq!(
            names(node.find("RTProperties").unwrap().find("Type").unwrap()),
            ["MIME"]
        );
        assert_eq!(parse(&e).unwrap(), m);
    }

    #[test]
    fn lenient_forms() {
        // Children in any order, whitespace text, Format as text, DDFName, no RTProperties.
        let mut n = ddf("Node")
            .text("\n  ")
            .child(leaf("Value", " keep spaces "))
            .child(
                ddf("RTProperties")
                    .child(leaf("Format", " Chr "))
                    .child(ddf("Type").child(leaf("DDFName", "urn:x"))),
            );
        n.push(leaf("NodeName", " A "));
        let m = parse(&doc(vec![n, node("B", ddf("RTProperties"), vec![])])).unwrap();
        let a = &m.nodes[0];
        assert_eq!(a.name, "A");
        assert_eq!(a.value.as_deref(), Some(" keep spaces "));
        assert_eq!(a.props.format, Some(Format::Chr));
        assert_eq!(a.props.ddf_name.as_deref(), Some("urn:x"));
        assert_eq!(m.nodes[1].props, RtProps::default());
        // Empty Format is no format.
        let m = parse(&doc(vec![node(
            "C",
            ddf("RTProperties").child(ddf("Format")),
            vec![],
        )]))
        .unwrap();
        assert_eq!(m.nodes[0].props.format, None);
        // WBXML opaque: UTF-8 is text, other bytes of a bin value become base64.
        let mut v = ddf("Value");
        v.content.push(Node::Opaque(vec![0xff, 0x00]));
        let m = parse(&doc(vec![node("D", props("bin", None), vec![v.clone()])])).unwrap();
        assert_eq!(m.nodes[0].value.as_deref(), Some("/wA="));
        let err = parse(&doc(vec![node("D", props("chr", None), vec![v])])).unwrap_err();
        assert!(matches!(err, TndsError::NotUtf8 { .. }));
        let mut v = ddf("Value");
        v.content.push(Node::Opaque(b"abc".to_vec()));
        let m = parse(&doc(vec![node("E", props("chr", None), vec![v])])).unwrap();
        assert_eq!(m.nodes[0].value.as_deref(), Some("abc"));
    }

    #[test]
    fn each_decoding_error() {
        let p = |e: Element| parse(&e).unwrap_err();
        assert!(matches!(p(ddf("SyncML")), TndsError::NotMgmtTree { .. }));
        assert_eq!(p(ddf("MgmtTree")), TndsError::MissingVerDtd);
        assert!(matches!(
            p(doc(vec![]).child(leaf("VerDTD", "1.2"))),
            TndsError::DuplicateElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![]).child(ddf("Bogus"))),
            TndsError::UnexpectedElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![]).text("junk")),
            TndsError::UnexpectedText { .. }
        ));
        assert!(matches!(
            p(doc(vec![ddf("Node").child(ddf("RTProperties"))])),
            TndsError::MissingNodeName { .. }
        ));
        for bad in ["", "a/b", "..", ".", "a?b", "a\u{1}"] {
            assert!(
                matches!(
                    p(doc(vec![node(bad, ddf("RTProperties"), vec![])])),
                    TndsError::InvalidNodeName { .. }
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            p(doc(vec![node(
                &"n".repeat(256),
                ddf("RTProperties"),
                vec![]
            )])),
            TndsError::InvalidNodeName { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties"),
                vec![leaf("NodeName", "B")]
            )])),
            TndsError::DuplicateElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties"),
                vec![ddf("RTProperties")]
            )])),
            TndsError::DuplicateElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties"),
                vec![leaf("Value", "1"), leaf("Value", "2")]
            )])),
            TndsError::DuplicateElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties"),
                vec![ddf("Bogus")]
            )])),
            TndsError::UnexpectedElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![node("A", ddf("RTProperties"), vec![]).text("x")])),
            TndsError::UnexpectedText { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties").child(ddf("Bogus")),
                vec![]
            )])),
            TndsError::UnexpectedElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties")
                    .child(leaf("Title", "a"))
                    .child(leaf("Title", "b")),
                vec![]
            )])),
            TndsError::DuplicateElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![node("A", ddf("RTProperties").text("x"), vec![])])),
            TndsError::UnexpectedText { .. }
        ));
        assert!(matches!(
            p(doc(vec![node("A", props("string", None), vec![])])),
            TndsError::UnknownFormat { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties").child(leaf("Format", "text")),
                vec![]
            )])),
            TndsError::UnknownFormat { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties").child(ddf("Format").child(ddf("chr")).child(ddf("int"))),
                vec![]
            )])),
            TndsError::DuplicateElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties").child(ddf("Format").child(leaf("chr", "x"))),
                vec![]
            )])),
            TndsError::UnknownFormat { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties").child(leaf("Size", "-1")),
                vec![]
            )])),
            TndsError::InvalidSize { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties").child(leaf("ACL", "Get")),
                vec![]
            )])),
            TndsError::InvalidAcl {
                source: AclError::MissingEquals { .. },
                ..
            }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties").child(ddf("Type").child(leaf("Other", "x"))),
                vec![]
            )])),
            TndsError::UnexpectedElement { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties").child(ddf("Type").text("x")),
                vec![]
            )])),
            TndsError::UnexpectedText { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties"),
                vec![leaf("Value", "v"), node("B", ddf("RTProperties"), vec![])]
            )])),
            TndsError::ValueAndChildren { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties"),
                vec![leaf("Path", "./a//b")]
            )])),
            TndsError::InvalidPath { .. }
        ));
        assert!(matches!(
            p(doc(vec![node(
                "A",
                ddf("RTProperties"),
                vec![ddf("Value").child(ddf("x"))]
            )])),
            TndsError::UnexpectedElement { .. }
        ));
        // Errors say where they are.
        let err = p(doc(vec![node(
            "A",
            props("node", None),
            vec![node("B", props("bogus", None), vec![])],
        )]));
        assert!(
            matches!(&err, TndsError::UnknownFormat { node, .. } if node == "A/B"),
            "{err:?}"
        );
    }

    #[test]
    fn status_codes() {
        let u = uri("./A");
        assert_eq!(TndsError::MissingVerDtd.status_code(), 400);
        assert_eq!(
            TndsError::Limit {
                source: LimitError::TooManyElements { limit: 1 }
            }
            .status_code(),
            413
        );
        assert_eq!(
            TndsError::InvalidBase64 { uri: u.clone() }.status_code(),
            415
        );
        assert_eq!(
            TndsError::Tree {
                source: TreeError::AlreadyExists { uri: u.clone() }
            }
            .status_code(),
            418
        );
        let long = DmUri::root().join(&"x".repeat(65)).unwrap_err();
        assert_eq!(
            TndsError::InvalidUri {
                parent: u.clone(),
                name: "x".into(),
                source: long
            }
            .status_code(),
            414
        );
        let syntax = DmUri::root().join("a/b").unwrap_err();
        assert_eq!(
            TndsError::InvalidUri {
                parent: u,
                name: "a/b".into(),
                source: syntax
            }
            .status_code(),
            400
        );
    }

    #[test]
    fn decoding_limits() {
        let tight = Limits {
            max_depth: 4,
            max_elements: 12,
            max_string_bytes: 8,
            ..Limits::default()
        };
        let deep = doc(vec![node(
            "A",
            ddf("RTProperties"),
            vec![node(
                "B",
                ddf("RTProperties"),
                vec![node("C", ddf("RTProperties"), vec![])],
            )],
        )]);
        assert!(matches!(
            MgmtTree::from_element(&deep, &tight),
            Err(TndsError::Limit {
                source: LimitError::TooDeep { .. }
            })
        ));
        let many = doc((0..5)
            .map(|i| node(&format!("N{i}"), ddf("RTProperties"), vec![]))
            .collect());
        assert!(matches!(
            MgmtTree::from_element(&many, &tight),
            Err(TndsError::Limit {
                source: LimitError::TooManyElements { .. }
            })
        ));
        let long = doc(vec![node(
            "A",
            ddf("RTProperties"),
            vec![leaf("Value", "123456789")],
        )]);
        assert!(matches!(
            MgmtTree::from_element(&long, &tight),
            Err(TndsError::Limit {
                source: LimitError::StringTooLong { .. }
            })
        ));
    }

    fn dmacc_tnds() -> MgmtTree {
        let mut acc = TndsNode::interior(
            "S1",
            vec![
                TndsNode::leaf("AppID", Format::Chr, "w7"),
                TndsNode::leaf("ServerID", Format::Chr, "s1"),
                TndsNode::interior(
                    "AppAuth",
                    vec![TndsNode::interior(
                        "1",
                        vec![
                            TndsNode::leaf("AAuthSecret", Format::Chr, "pw"),
                            TndsNode::leaf("AAuthData", Format::Bin, "bm9uY2U="),
                        ],
                    )],
                ),
            ],
        );
        acc.path = Some("./DMAcc".into());
        acc.props.ddf_name = Some("urn:oma:mo:oma-dm-dmacc:1.0".into());
        acc.props.acl = Some(Acl::parse("Get=s1&Replace=s1").unwrap());
        MgmtTree::new(vec![acc])
    }

    #[test]
    fn apply_places_nodes_and_reports_them() {
        let mut t = Tree::new();
        let added = dmacc_tnds().apply(&mut t).unwrap();
        let names: Vec<&str> = added.iter().map(DmUri::as_str).collect();
        assert_eq!(
            names,
            [
                "./DMAcc",
                "./DMAcc/S1",
                "./DMAcc/S1/AppID",
                "./DMAcc/S1/ServerID",
                "./DMAcc/S1/AppAuth",
                "./DMAcc/S1/AppAuth/1",
                "./DMAcc/S1/AppAuth/1/AAuthSecret",
                "./DMAcc/S1/AppAuth/1/AAuthData",
            ]
        );
        let acc = t.node(&uri("./DMAcc/S1")).unwrap();
        assert_eq!(
            acc.mime_type.as_deref(),
            Some("urn:oma:mo:oma-dm-dmacc:1.0")
        );
        assert_eq!(acc.acl.as_ref().unwrap().to_string(), "Get=s1&Replace=s1");
        let data = t.node(&uri("./DMAcc/S1/AppAuth/1/AAuthData")).unwrap();
        assert_eq!(
            (data.format, data.value.as_deref()),
            (Format::Bin, Some(&b"nonce"[..]))
        );
        // Applying again: the account's leaves exist, nothing changes.
        let before = t.clone();
        let err = dmacc_tnds().apply(&mut t).unwrap_err();
        assert!(matches!(
            err,
            TndsError::Tree {
                source: TreeError::AlreadyExists { .. }
            }
        ));
        assert_eq!(t, before);
        // A second account merges into the existing ./DMAcc.
        let mut second = dmacc_tnds();
        second.nodes[0].name = "S2".into();
        let added = second.apply(&mut t).unwrap();
        assert_eq!(added.first().map(DmUri::as_str), Some("./DMAcc/S2"));
        assert_eq!(t.children(&uri("./DMAcc")).unwrap(), ["S1", "S2"]);
    }

    #[test]
    fn apply_paths() {
        for (path, expect) in [
            (None, "./X"),
            (Some("."), "./X"),
            (Some(""), "./X"),
            (Some("./A/B"), "./A/B/X"),
            (Some("./A/B/"), "./A/B/X"),
            (Some("A/B"), "./A/B/X"),
            (Some("/A/B"), "./A/B/X"),
        ] {
            let mut n = TndsNode::leaf("X", Format::Chr, "v");
            n.path = path.map(str::to_owned);
            let mut t = Tree::new();
            MgmtTree::new(vec![n]).apply(&mut t).unwrap();
            assert!(t.exists(&uri(expect)), "{path:?}");
        }
        // A nested node with its own Path is placed there.
        let mut inner = TndsNode::leaf("Y", Format::Chr, "v");
        inner.path = Some("./Elsewhere".into());
        let mut t = Tree::new();
        MgmtTree::new(vec![TndsNode::interior("A", vec![inner])])
            .apply(&mut t)
            .unwrap();
        assert!(t.exists(&uri("./Elsewhere/Y")));
        // An interior node without Format and without children ("continued elsewhere").
        let bare = TndsNode {
            name: "Bare".into(),
            path: None,
            props: RtProps::default(),
            value: None,
            children: vec![],
        };
        MgmtTree::new(vec![bare]).apply(&mut t).unwrap();
        assert!(t.node(&uri("./Bare")).unwrap().is_interior());
    }

    #[test]
    fn apply_errors_leave_the_tree_unchanged() {
        let mut t = Tree::new();
        t.add(&uri("./Leaf"), NewNode::chr("x")).unwrap();
        let before = t.clone();
        let check = |t: &mut Tree, m: MgmtTree| {
            let e = m.apply(t).unwrap_err();
            assert_eq!(*t, before, "{e:?}");
            e
        };
        let ok = TndsNode::leaf("Fine", Format::Chr, "v");
        let mut bad_value = TndsNode::interior("I", vec![]);
        bad_value.value = Some("v".into());
        assert!(matches!(
            check(&mut t, MgmtTree::new(vec![ok.clone(), bad_value])),
            TndsError::ValueOnInterior { .. }
        ));
        let mut kids = TndsNode::leaf("L", Format::Chr, "v");
        kids.value = None;
        kids.children.push(TndsNode::leaf("C", Format::Chr, "v"));
        assert!(matches!(
            check(&mut t, MgmtTree::new(vec![ok.clone(), kids])),
            TndsError::ChildrenOnLeaf { .. }
        ));
        assert!(matches!(
            check(
                &mut t,
                MgmtTree::new(vec![ok.clone(), TndsNode::leaf("B", Format::B64, "***")])
            ),
            TndsError::InvalidBase64 { .. }
        ));
        let mut under_leaf = TndsNode::leaf("X", Format::Chr, "v");
        under_leaf.path = Some("./Leaf".into());
        assert!(matches!(
            check(&mut t, MgmtTree::new(vec![ok.clone(), under_leaf])),
            TndsError::Tree {
                source: TreeError::ParentIsLeaf { .. }
            }
        ));
        assert!(matches!(
            check(
                &mut t,
                MgmtTree::new(vec![ok.clone(), TndsNode::interior("Leaf", vec![])])
            ),
            TndsError::Tree {
                source: TreeError::AlreadyExists { .. }
            }
        ));
        let mut bad_path = ok.clone();
        bad_path.path = Some("./a/../b".into());
        assert!(matches!(
            check(&mut t, MgmtTree::new(vec![bad_path])),
            TndsError::InvalidPath { .. }
        ));
        assert!(matches!(
            check(
                &mut t,
                MgmtTree::new(vec![ok.clone(), TndsNode::leaf("a/b", Format::Chr, "v")])
            ),
            TndsError::InvalidUri { .. }
        ));
        assert!(matches!(
            check(
                &mut t,
                MgmtTree::new(vec![
                    ok.clone(),
                    TndsNode::leaf("T", Format::Chr, "x".repeat(70_000))
                ])
            ),
            TndsError::Tree {
                source: TreeError::ValueTooLarge { .. }
            }
        ));
        let mut small = Tree::with_limits(TreeLimits {
            max_nodes: 3,
            ..TreeLimits::default()
        });
        let err = dmacc_tnds().apply(&mut small).unwrap_err();
        assert!(matches!(
            err,
            TndsError::Tree {
                source: TreeError::TooManyNodes { .. }
            }
        ));
        assert!(small.is_empty());
    }

    #[test]
    fn export_subtree() {
        let mut t = Tree::new();
        dmacc_tnds().apply(&mut t).unwrap();
        t.add(
            &uri("./DMAcc/S1/Flag"),
            NewNode::leaf(Format::Null, Vec::new()),
        )
        .unwrap();
        let m = MgmtTree::from_subtree(&t, &uri("./DMAcc/S1")).unwrap();
        assert_eq!(m.ver_dtd, "1.2");
        assert_eq!(m.nodes.len(), 1);
        let acc = &m.nodes[0];
        assert_eq!(acc.name, "S1");
        assert_eq!(acc.path.as_deref(), Some("./DMAcc"));
        assert_eq!(
            acc.props.ddf_name.as_deref(),
            Some("urn:oma:mo:oma-dm-dmacc:1.0")
        );
        assert_eq!(acc.props.mime_type, None);
        assert_eq!(
            acc.props.acl.as_ref().unwrap().to_string(),
            "Get=s1&Replace=s1"
        );
        let names: Vec<&str> = acc.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["AppAuth", "AppID", "Flag", "ServerID"]);
        let auth = &acc.children[0].children[0];
        // Secrets are exported (bootstrap), binary as base64.
        assert_eq!(auth.children[0].name, "AAuthData");
        assert_eq!(auth.children[0].value.as_deref(), Some("bm9uY2U="));
        assert_eq!(auth.children[1].value.as_deref(), Some("pw"));
        assert_eq!(acc.children[2].value, None);
        assert_eq!(acc.children[2].props.format, Some(Format::Null));
        // Debug does not print them.
        let d = format!("{m:?}");
        assert!(!d.contains("\"pw\"") && !d.contains("bm9uY2U="), "{d}");
        assert!(d.contains("w7"));
        // Re-applied on a fresh tree it gives the same subtree.
        let mut fresh = Tree::new();
        m.apply(&mut fresh).unwrap();
        assert_eq!(fresh.node(&uri("./DMAcc/S1")), t.node(&uri("./DMAcc/S1")));
        // The root exports its children without Path.
        let all = MgmtTree::from_subtree(&t, &DmUri::root()).unwrap();
        assert_eq!(all.nodes.len(), 1);
        assert_eq!(all.nodes[0].name, "DMAcc");
        assert_eq!(all.nodes[0].path, None);
        assert!(matches!(
            MgmtTree::from_subtree(&t, &uri("./Nope")),
            Err(TndsError::Tree {
                source: TreeError::NotFound { .. }
            })
        ));
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,8}"
    }

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[!-~]([ -~]{0,10}[!-~])?")
    }

    fn rt_props() -> impl Strategy<Value = RtProps> {
        (
            proptest::option::of(proptest::collection::vec("[a-z0-9]{1,5}", 1..3)),
            proptest::option::of(proptest::sample::select(Format::ALL.to_vec())),
            opt_text(),
            proptest::option::of(any::<u64>()),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
        )
            .prop_map(
                |(acl, format, name, size, title, tstamp, mime_type, ddf_name, verno)| RtProps {
                    acl: acl.map(|ids| {
                        ids.iter().fold(Acl::empty(), |a, id| {
                            a.allow(crate::tree::AclCommand::Get, id)
                        })
                    }),
                    format,
                    name,
                    size,
                    title,
                    tstamp,
                    mime_type,
                    ddf_name,
                    verno,
                },
            )
    }

    fn tnds_node() -> impl Strategy<Value = TndsNode> {
        let leaf = (
            name(),
            proptest::option::of(proptest::sample::select(vec![".", "./A", "./A/B"])),
            rt_props(),
            proptest::option::of("[ -~]{0,12}"),
        )
            .prop_map(|(name, path, props, value)| TndsNode {
                name,
                path: path.map(str::to_owned),
                props,
                value,
                children: vec![],
            });
        leaf.prop_recursive(3, 24, 4, |inner| {
            (name(), rt_props(), proptest::collection::vec(inner, 1..4)).prop_map(
                |(name, props, children)| TndsNode {
                    name,
                    path: None,
                    props,
                    value: None,
                    children,
                },
            )
        })
    }

    /// One generated leaf: its path below `./R`, Format, raw bytes and MIME type.
    type Entry = (Vec<String>, Format, Vec<u8>, Option<String>);

    /// A generated management tree: paths may collide (refused adds are skipped).
    fn tree_entries() -> impl Strategy<Value = Vec<Entry>> {
        proptest::collection::vec(
            (
                proptest::collection::vec("[a-c]{1,2}", 1..4),
                proptest::sample::select(vec![
                    Format::Chr,
                    Format::Bin,
                    Format::B64,
                    Format::Int,
                    Format::Null,
                ]),
                proptest::collection::vec(any::<u8>(), 0..16),
                proptest::option::of("[a-z/+.-]{1,12}"),
            ),
            1..16,
        )
    }

    proptest! {
        #[test]
        fn element_round_trip(nodes in proptest::collection::vec(tnds_node(), 0..4),
                              man in opt_text(), mod_ in opt_text()) {
            let m = MgmtTree { ver_dtd: "1.2".into(), man, mod_, nodes };
            let back = MgmtTree::from_element(&m.to_element(), &Limits::default()).unwrap();
            prop_assert_eq!(back, m);
        }

        #[test]
        fn subtree_apply_round_trip(entries in tree_entries()) {
            let mut t = Tree::new();
            for (segs, format, bytes, mime) in entries {
                let u: DmUri = format!("./R/{}", segs.join("/")).parse().unwrap();
                let value = match format {
                    Format::Chr | Format::Int => bytes.iter().map(|b| char::from(b'a' + b % 26)).collect::<String>().into_bytes(),
                    Format::Null => Vec::new(),
                    _ => bytes,
                };
                let mut n = NewNode::leaf(format, value);
                n.mime_type = mime;
                let _ = t.add(&u, n);
            }
            let _ = t.set_acl(&uri("./R"), Some(Acl::parse("Get=*&Replace=srv").unwrap()));
            let exported = MgmtTree::from_subtree(&t, &uri("./R")).unwrap();
            // Through the element tree as well.
            let decoded = MgmtTree::from_element(&exported.to_element(), &Limits::default()).unwrap();
            prop_assert_eq!(&decoded, &exported);
            let mut fresh = Tree::new();
            let added = decoded.apply(&mut fresh).unwrap();
            prop_assert_eq!(added.len() + 1, fresh.len());
            prop_assert_eq!(fresh.node(&uri("./R")).unwrap(), t.node(&uri("./R")).unwrap());
            prop_assert_eq!(fresh.len(), t.len());
        }

        #[test]
        fn mutated_documents_never_panic(
            nodes in proptest::collection::vec(tnds_node(), 1..3),
            mutations in proptest::collection::vec(
                (0usize..60, any::<u8>(), prop_oneof![
                    "[ -~]{0,8}".prop_map(Node::Text),
                    proptest::collection::vec(any::<u8>(), 0..6).prop_map(Node::Opaque),
                    Just(Node::Element(ddf("Node").child(leaf("NodeName", "Z")))),
                ]),
                1..4,
            ),
        ) {
            let mut e = MgmtTree::new(nodes).to_element();
            for (target, kind, extra) in &mutations {
                mutate(&mut e, *target, *kind, extra, &mut 0);
            }
            if let Ok(m) = MgmtTree::from_element(&e, &Limits::default()) {
                let _ = m.apply(&mut Tree::new());
                let _ = m.to_element();
            }
        }

        #[test]
        fn from_element_never_panics(e in arbitrary_element()) {
            let limits = Limits { max_depth: 8, max_elements: 200, max_string_bytes: 64, ..Limits::default() };
            if let Ok(m) = MgmtTree::from_element(&e, &limits) {
                // Whatever decodes can be applied (or refused) without panicking.
                let _ = m.apply(&mut Tree::new());
            }
        }
    }

    /// Apply mutation `kind` to the element with pre-order index `target` (counting from `*at`).
    fn mutate(e: &mut Element, target: usize, kind: u8, extra: &Node, at: &mut usize) {
        const NAMES: [&str; 8] = ["Node", "Value", "Format", "Type", "ACL", "Path", "chr", "X"];
        if *at == target {
            match kind % 6 {
                0 => e.name = NAMES[usize::from(kind) % NAMES.len()].into(),
                1 => e.content.push(extra.clone()),
                2 => e.content.clear(),
                3 => {
                    if let Some(first) = e.content.first().cloned() {
                        e.content.push(first);
                    }
                }
                4 => e.content.insert(0, extra.clone()),
                _ => e.content.reverse(),
            }
        }
        *at += 1;
        for n in &mut e.content {
            if let Node::Element(c) = n {
                mutate(c, target, kind, extra, at);
            }
        }
    }

    /// Arbitrary elements drawn from the DDF vocabulary, with random text and opaque data.
    fn arbitrary_element() -> impl Strategy<Value = Element> {
        const NAMES: [&str; 24] = [
            "MgmtTree",
            "VerDTD",
            "Man",
            "Mod",
            "Node",
            "NodeName",
            "Path",
            "RTProperties",
            "DFProperties",
            "Value",
            "ACL",
            "Format",
            "Name",
            "Size",
            "Title",
            "TStamp",
            "Type",
            "MIME",
            "DDFName",
            "VerNo",
            "chr",
            "node",
            "b64",
            "Bogus",
        ];
        let text = prop_oneof![
            "[ -~]{0,8}".prop_map(Node::Text),
            Just(Node::Text("Get=*&Add=s".into())),
            Just(Node::Text("./A".into())),
            proptest::collection::vec(any::<u8>(), 0..6).prop_map(Node::Opaque),
        ];
        let base = (
            proptest::sample::select(NAMES.to_vec()),
            proptest::collection::vec(text, 0..2),
        )
            .prop_map(|(name, content)| Element {
                ns: Namespace::Ddf,
                name: name.into(),
                content,
            });
        base.prop_recursive(6, 64, 5, |inner| {
            (
                proptest::sample::select(NAMES.to_vec()),
                proptest::collection::vec(inner.prop_map(Node::Element), 0..5),
            )
                .prop_map(|(name, content)| Element {
                    ns: Namespace::Ddf,
                    name: name.into(),
                    content,
                })
        })
        .prop_map(|e| {
            // Mostly start from a plausible root so the decoder gets past the first check.
            if e.name == "MgmtTree" {
                e
            } else {
                ddf("MgmtTree").child(leaf("VerDTD", "1.2")).child(e)
            }
        })
    }
}
