//! The in-memory OMA DM management tree that a device or the gateway exposes, with DM command
//! semantics (Get/Add/Replace/Delete), ACLs with inheritance, "no Get" secrets and memory bounds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::uri::{DmUri, UriError, UriLimits, excerpt};

/// Leaf names whose value DM Get never returns (DM 1.2 DMAcc: AAuthSecret and AAuthData have no Get).
pub const DEFAULT_NO_GET: [&str; 2] = ["AAuthSecret", "AAuthData"];

/// The ACL of the root when none is set: `Add=*&Get=*` (DM 1.2 TND; libdmclient's root plug-in).
pub const DEFAULT_ROOT_ACL: &str = "Add=*&Get=*";

/// Longest accepted MIME type / DDF name of a node, in bytes.
pub const MAX_TYPE_LEN: usize = 255;

/// A node's DM Format (`Meta/Format`, DDF `Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Format {
    /// `b64`: binary data carried base64-encoded; the tree keeps the decoded bytes.
    B64,
    /// `bin`: binary data; the tree keeps the bytes.
    Bin,
    /// `bool`: `true` / `false`.
    Bool,
    /// `chr`: text (the DM default).
    #[default]
    Chr,
    /// `int`: an integer as text.
    Int,
    /// `node`: an interior node.
    Node,
    /// `null`: a leaf without value.
    Null,
    /// `xml`: XML text.
    Xml,
    /// `date`: ISO 8601 date as text.
    Date,
    /// `time`: ISO 8601 time as text.
    Time,
    /// `float`: a floating point number as text.
    Float,
}

impl Format {
    /// Every format, in DDF order.
    pub const ALL: [Format; 11] = [
        Format::B64,
        Format::Bin,
        Format::Bool,
        Format::Chr,
        Format::Int,
        Format::Node,
        Format::Null,
        Format::Xml,
        Format::Date,
        Format::Time,
        Format::Float,
    ];

    /// The name written in Meta Format and as the DDF element name (`b64`, `node`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::B64 => "b64",
            Format::Bin => "bin",
            Format::Bool => "bool",
            Format::Chr => "chr",
            Format::Int => "int",
            Format::Node => "node",
            Format::Null => "null",
            Format::Xml => "xml",
            Format::Date => "date",
            Format::Time => "time",
            Format::Float => "float",
        }
    }

    /// Recognise a format name, case-insensitively, ignoring surrounding whitespace.
    pub fn parse(s: &str) -> Option<Format> {
        let t = s.trim();
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(t))
    }

    /// True for `b64` and `bin`: values are bytes, carried as base64 text in XML and TNDS.
    pub fn is_binary(self) -> bool {
        matches!(self, Format::B64 | Format::Bin)
    }

    /// True for the formats whose value is UTF-8 text.
    pub fn is_text(self) -> bool {
        !matches!(
            self,
            Format::B64 | Format::Bin | Format::Node | Format::Null
        )
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a DM Format name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown DM format {found:?}")]
pub struct UnknownFormat {
    /// The offending input (excerpt).
    pub found: String,
}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::parse(s).ok_or_else(|| UnknownFormat { found: excerpt(s) })
    }
}

/// A command an ACL grants (DM 1.2 TND: Add, Delete, Exec, Get, Replace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclCommand {
    /// `Add`: checked on the parent of the node being added.
    Add,
    /// `Delete`.
    Delete,
    /// `Exec`.
    Exec,
    /// `Get`.
    Get,
    /// `Replace`.
    Replace,
}

impl AclCommand {
    /// Every command, in canonical order.
    pub const ALL: [AclCommand; 5] = [
        AclCommand::Add,
        AclCommand::Delete,
        AclCommand::Exec,
        AclCommand::Get,
        AclCommand::Replace,
    ];

    /// The name in ACL syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            AclCommand::Add => "Add",
            AclCommand::Delete => "Delete",
            AclCommand::Exec => "Exec",
            AclCommand::Get => "Get",
            AclCommand::Replace => "Replace",
        }
    }

    /// Recognise a command name, case-insensitively.
    pub fn parse(s: &str) -> Option<AclCommand> {
        AclCommand::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for AclCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who an ACL entry grants a command to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclServers {
    /// `*`: every server.
    Any,
    /// These ServerIDs (in the order given, without duplicates, never empty).
    Only(Vec<String>),
}

/// Why a string is not DM ACL syntax.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AclError {
    /// Longer than [`Acl::MAX_LEN`].
    #[error("ACL of {len} bytes, the limit is {limit}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A control character.
    #[error("ACL has a control character at byte {position}")]
    ControlCharacter {
        /// Byte offset.
        position: usize,
    },
    /// An empty entry (`&&`, leading or trailing `&`).
    #[error("ACL has an empty entry at position {position}")]
    EmptyEntry {
        /// Index of the entry.
        position: usize,
    },
    /// An entry without `=`.
    #[error("ACL entry {entry:?} has no `=`")]
    MissingEquals {
        /// The entry (excerpt).
        entry: String,
    },
    /// A command other than Add, Delete, Exec, Get, Replace.
    #[error("ACL names unknown command {command:?}")]
    UnknownCommand {
        /// The command (excerpt).
        command: String,
    },
    /// The same command twice.
    #[error("ACL names {command} twice")]
    DuplicateCommand {
        /// The command.
        command: AclCommand,
    },
    /// An empty server identifier (`Get=`, `Get=a++b`).
    #[error("ACL entry for {command} has an empty server identifier")]
    EmptyServerId {
        /// The command.
        command: AclCommand,
    },
    /// A server identifier containing `=` (or another reserved character).
    #[error("ACL entry for {command} has an invalid server identifier {server_id:?}")]
    InvalidServerId {
        /// The command.
        command: AclCommand,
        /// The identifier (excerpt).
        server_id: String,
    },
}

/// A DM ACL: `Add=*&Get=srv1+srv2&Replace=*`. An empty ACL grants nothing and, on a node,
/// means "inherit the parent's".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    entries: BTreeMap<AclCommand, AclServers>,
}

impl Acl {
    /// Longest accepted ACL string, in bytes.
    pub const MAX_LEN: usize = 4096;

    /// An ACL that grants nothing.
    pub fn empty() -> Acl {
        Acl::default()
    }

    /// Parse DM ACL syntax: entries joined by `&`, each `Command=ids`, ids joined by `+`, `*` = any.
    pub fn parse(s: &str) -> Result<Acl, AclError> {
        if s.len() > Acl::MAX_LEN {
            return Err(AclError::TooLong {
                len: s.len(),
                limit: Acl::MAX_LEN,
            });
        }
        if let Some((position, _)) = s.char_indices().find(|(_, c)| c.is_control()) {
            return Err(AclError::ControlCharacter { position });
        }
        let mut acl = Acl::empty();
        if s.is_empty() {
            return Ok(acl);
        }
        for (position, entry) in s.split('&').enumerate() {
            if entry.is_empty() {
                return Err(AclError::EmptyEntry { position });
            }
            let Some((name, ids)) = entry.split_once('=') else {
                return Err(AclError::MissingEquals {
                    entry: excerpt(entry),
                });
            };
            let command = AclCommand::parse(name).ok_or_else(|| AclError::UnknownCommand {
                command: excerpt(name),
            })?;
            if acl.entries.contains_key(&command) {
                return Err(AclError::DuplicateCommand { command });
            }
            let mut any = false;
            let mut list: Vec<String> = Vec::new();
            for id in ids.split('+') {
                if id.is_empty() {
                    return Err(AclError::EmptyServerId { command });
                }
                if id.contains('=') {
                    return Err(AclError::InvalidServerId {
                        command,
                        server_id: excerpt(id),
                    });
                }
                if id == "*" {
                    any = true;
                } else if !list.iter().any(|x| x == id) {
                    list.push(id.to_owned());
                }
            }
            let servers = if any {
                AclServers::Any
            } else {
                AclServers::Only(list)
            };
            acl.entries.insert(command, servers);
        }
        Ok(acl)
    }

    /// Builder: grant `command` to every server.
    pub fn allow_any(mut self, command: AclCommand) -> Acl {
        self.entries.insert(command, AclServers::Any);
        self
    }

    /// Builder: grant `command` to `server_id` (in addition to those already granted). Identifiers
    /// holding `&`, `+`, `=`, `*` or control characters cannot be written in ACL syntax and are
    /// ignored.
    pub fn allow(mut self, command: AclCommand, server_id: &str) -> Acl {
        if server_id.is_empty()
            || server_id
                .chars()
                .any(|c| matches!(c, '&' | '+' | '=' | '*') || c.is_control())
        {
            return self;
        }
        match self.entries.get_mut(&command) {
            Some(AclServers::Any) => {}
            Some(AclServers::Only(list)) => {
                if !list.iter().any(|x| x == server_id) {
                    list.push(server_id.to_owned());
                }
            }
            None => {
                self.entries
                    .insert(command, AclServers::Only(vec![server_id.to_owned()]));
            }
        }
        self
    }

    /// True when `server_id` may run `command`.
    pub fn allows(&self, command: AclCommand, server_id: &str) -> bool {
        match self.entries.get(&command) {
            Some(AclServers::Any) => true,
            Some(AclServers::Only(list)) => list.iter().any(|x| x == server_id),
            None => false,
        }
    }

    /// True when the ACL grants nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in canonical command order.
    pub fn entries(&self) -> impl Iterator<Item = (AclCommand, &AclServers)> {
        self.entries.iter().map(|(c, s)| (*c, s))
    }
}

impl fmt::Display for Acl {
    /// Canonical ACL syntax (commands in `AclCommand::ALL` order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (command, servers)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write!(f, "{command}=")?;
            match servers {
                AclServers::Any => f.write_str("*")?,
                AclServers::Only(list) => f.write_str(&list.join("+"))?,
            }
        }
        Ok(())
    }
}

impl FromStr for Acl {
    type Err = AclError;

    fn from_str(s: &str) -> Result<Acl, AclError> {
        Acl::parse(s)
    }
}

/// One node of the tree. Interior nodes have `format == Format::Node` and no value.
#[derive(Clone, PartialEq, Eq)]
pub struct Node {
    /// The DM Format.
    pub format: Format,
    /// The Type: a MIME type for a leaf, the MO identifier (DDF name) for an interior node.
    pub mime_type: Option<String>,
    /// The node's own ACL; `None` (or empty) inherits the nearest ancestor's.
    pub acl: Option<Acl>,
    /// The value of a leaf (bytes; for text formats valid UTF-8). `None` for interior and null nodes.
    pub value: Option<Vec<u8>>,
    /// A permanent node cannot be deleted.
    pub permanent: bool,
    /// Children of an interior node, by name.
    pub children: BTreeMap<String, Node>,
}

impl Node {
    fn interior() -> Node {
        Node {
            format: Format::Node,
            mime_type: None,
            acl: None,
            value: None,
            permanent: false,
            children: BTreeMap::new(),
        }
    }

    /// True for an interior node.
    pub fn is_interior(&self) -> bool {
        self.format == Format::Node
    }

    /// True for a leaf.
    pub fn is_leaf(&self) -> bool {
        !self.is_interior()
    }

    /// The value as text, when it is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl fmt::Debug for Node {
    /// Values are never printed (they may be secrets), only their size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("format", &self.format)
            .field("mime_type", &self.mime_type)
            .field("acl", &self.acl.as_ref().map(ToString::to_string))
            .field(
                "value",
                &self.value.as_ref().map(|v| format!("<{} bytes>", v.len())),
            )
            .field("permanent", &self.permanent)
            .field("children", &self.children)
            .finish()
    }
}

/// What `Tree::add` / `Tree::replace` are given: a node without children.
#[derive(Clone, PartialEq, Eq)]
pub struct NewNode {
    /// The DM Format (`Format::Node` for an interior node).
    pub format: Format,
    /// The Type (MIME type of a leaf, MO identifier of an interior node).
    pub mime_type: Option<String>,
    /// The node's ACL; `None` inherits (on Replace: keeps the current ACL).
    pub acl: Option<Acl>,
    /// The value of a leaf; `None` is taken as empty for text and binary formats.
    pub value: Option<Vec<u8>>,
    /// Mark the node permanent (never deletable). Ignored by Replace.
    pub permanent: bool,
}

impl NewNode {
    /// An interior node.
    pub fn interior() -> NewNode {
        NewNode {
            format: Format::Node,
            mime_type: None,
            acl: None,
            value: None,
            permanent: false,
        }
    }

    /// A leaf of `format` holding `value`.
    pub fn leaf(format: Format, value: impl Into<Vec<u8>>) -> NewNode {
        NewNode {
            format,
            mime_type: None,
            acl: None,
            value: Some(value.into()),
            permanent: false,
        }
    }

    /// A `chr` leaf (MIME `text/plain`).
    pub fn chr(value: &str) -> NewNode {
        NewNode::leaf(Format::Chr, value.as_bytes()).with_type("text/plain")
    }

    /// Builder: set the Type.
    pub fn with_type(mut self, mime_type: &str) -> NewNode {
        self.mime_type = Some(mime_type.to_owned());
        self
    }

    /// Builder: set the ACL.
    pub fn with_acl(mut self, acl: Acl) -> NewNode {
        self.acl = Some(acl);
        self
    }

    /// Builder: mark permanent.
    pub fn permanent(mut self) -> NewNode {
        self.permanent = true;
        self
    }
}

impl fmt::Debug for NewNode {
    /// Values are never printed, only their size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewNode")
            .field("format", &self.format)
            .field("mime_type", &self.mime_type)
            .field("acl", &self.acl.as_ref().map(ToString::to_string))
            .field(
                "value",
                &self.value.as_ref().map(|v| format!("<{} bytes>", v.len())),
            )
            .field("permanent", &self.permanent)
            .finish()
    }
}

/// The answer to a DM Get: a leaf's value, or for an interior node its child names joined by `/`
/// (DM 1.2) with Format `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's Format.
    pub format: Format,
    /// The node's Type.
    pub mime_type: Option<String>,
    /// The data returned: the leaf value, or the child names joined by `/`.
    pub value: Vec<u8>,
    /// For an interior node, its child names in order; `None` for a leaf.
    pub children: Option<Vec<String>>,
}

/// Bounds on the tree's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Most nodes in the tree, the root included.
    pub max_nodes: usize,
    /// Largest leaf value, in bytes.
    pub max_value_bytes: usize,
    /// Bounds on every URI the tree accepts.
    pub uri: UriLimits,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_nodes: 10_000,
            max_value_bytes: 64 * 1024,
            uri: UriLimits::default(),
        }
    }
}

/// A tree operation that failed; each variant maps to a DM status code (`status_code`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TreeError {
    /// 404: no node at `uri`.
    #[error("no node at {uri}")]
    NotFound {
        /// The URI.
        uri: DmUri,
    },
    /// 418: a node already exists at `uri`.
    #[error("a node already exists at {uri}")]
    AlreadyExists {
        /// The URI.
        uri: DmUri,
    },
    /// 405: `parent` is a leaf, nothing can be added under it.
    #[error("cannot add {uri}: {parent} is a leaf")]
    ParentIsLeaf {
        /// The URI being added.
        uri: DmUri,
        /// The leaf ancestor.
        parent: DmUri,
    },
    /// 405: Replace cannot turn an interior node into a leaf or back.
    #[error("cannot change {uri} between interior node and leaf")]
    KindChange {
        /// The URI.
        uri: DmUri,
        /// True when the existing node is interior.
        was_interior: bool,
    },
    /// 405: the root cannot be deleted, nor left without ACL.
    #[error("the root cannot be deleted or left without ACL")]
    RootImmutable {
        /// The URI (always `.`).
        uri: DmUri,
    },
    /// 405: `permanent` (= `uri` or a node below it) is permanent.
    #[error("cannot delete {uri}: {permanent} is permanent")]
    PermanentNode {
        /// The URI being deleted.
        uri: DmUri,
        /// The permanent node found.
        permanent: DmUri,
    },
    /// 405: the node's value is never returned by Get (AAuthSecret, AAuthData, ...).
    #[error("Get is not allowed on {uri}")]
    GetNotAllowed {
        /// The URI.
        uri: DmUri,
    },
    /// 425: the ACL does not grant `command` to `server_id`.
    #[error("{server_id:?} may not {command} {uri}")]
    PermissionDenied {
        /// The URI.
        uri: DmUri,
        /// The command refused.
        command: AclCommand,
        /// The server (excerpt).
        server_id: String,
    },
    /// 415: the value does not fit the Format (interior node with value, non-UTF-8 text, over-long
    /// Type ...).
    #[error("{uri}: {reason}")]
    FormatMismatch {
        /// The URI.
        uri: DmUri,
        /// The Format given.
        format: Format,
        /// What is wrong.
        reason: &'static str,
    },
    /// 413: the value is larger than `TreeLimits::max_value_bytes`.
    #[error("value of {size} bytes for {uri}, the limit is {limit}")]
    ValueTooLarge {
        /// The URI.
        uri: DmUri,
        /// The value's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// 420: the tree would hold more than `TreeLimits::max_nodes` nodes.
    #[error("adding {uri} would exceed {limit} nodes")]
    TooManyNodes {
        /// The URI.
        uri: DmUri,
        /// The limit.
        limit: usize,
    },
    /// 414: the URI breaks the tree's URI limits (length, depth, segment length), or is invalid.
    #[error("URI {uri} rejected: {source}")]
    Uri {
        /// The URI (or the base it was joined to).
        uri: DmUri,
        /// The rule broken.
        source: UriError,
    },
}

impl TreeError {
    /// The DM status code for the error.
    pub fn status_code(&self) -> u16 {
        match self {
            TreeError::NotFound { .. } => 404,
            TreeError::AlreadyExists { .. } => 418,
            TreeError::ParentIsLeaf { .. }
            | TreeError::KindChange { .. }
            | TreeError::RootImmutable { .. }
            | TreeError::PermanentNode { .. }
            | TreeError::GetNotAllowed { .. } => 405,
            TreeError::PermissionDenied { .. } => 425,
            TreeError::FormatMismatch { .. } => 415,
            TreeError::ValueTooLarge { .. } => 413,
            TreeError::TooManyNodes { .. } => 420,
            TreeError::Uri { source, .. } => {
                if source.is_limit() {
                    414
                } else {
                    400
                }
            }
        }
    }

    /// The URI the error is about.
    pub fn uri(&self) -> &DmUri {
        match self {
            TreeError::NotFound { uri }
            | TreeError::AlreadyExists { uri }
            | TreeError::ParentIsLeaf { uri, .. }
            | TreeError::KindChange { uri, .. }
            | TreeError::RootImmutable { uri }
            | TreeError::PermanentNode { uri, .. }
            | TreeError::GetNotAllowed { uri }
            | TreeError::PermissionDenied { uri, .. }
            | TreeError::FormatMismatch { uri, .. }
            | TreeError::ValueTooLarge { uri, .. }
            | TreeError::TooManyNodes { uri, .. }
            | TreeError::Uri { uri, .. } => uri,
        }
    }
}

/// An in-memory management tree. Lookups walk the URI's segments: O(depth) map lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    root: Node,
    count: usize,
    limits: TreeLimits,
    no_get: BTreeSet<String>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// An empty tree (the root only, ACL `Add=*&Get=*`) with default limits.
    pub fn new() -> Tree {
        Tree::with_limits(TreeLimits::default())
    }

    /// An empty tree with the given limits.
    pub fn with_limits(limits: TreeLimits) -> Tree {
        let mut root = Node::interior();
        root.permanent = true;
        root.acl = Some(
            Acl::empty()
                .allow_any(AclCommand::Add)
                .allow_any(AclCommand::Get),
        );
        Tree {
            root,
            count: 1,
            limits,
            no_get: DEFAULT_NO_GET.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &TreeLimits {
        &self.limits
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the tree holds only the root.
    pub fn is_empty(&self) -> bool {
        self.count <= 1
    }

    /// Replace the set of leaf names whose value Get never returns (default [`DEFAULT_NO_GET`]).
    pub fn set_no_get<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.no_get = names.into_iter().map(Into::into).collect();
    }

    /// True when Get must not return the value at `uri` (a leaf named in the "no Get" set). Also
    /// what an admin view uses to redact secrets.
    pub fn is_no_get(&self, uri: &DmUri) -> bool {
        match (uri.name(), self.lookup(uri)) {
            (Some(name), Some(node)) => node.is_leaf() && self.no_get.contains(name),
            (Some(name), None) => self.no_get.contains(name),
            _ => false,
        }
    }

    fn lookup(&self, uri: &DmUri) -> Option<&Node> {
        let mut node = &self.root;
        for segment in uri.segments() {
            node = node.children.get(segment)?;
        }
        Some(node)
    }

    fn lookup_mut(&mut self, uri: &DmUri) -> Option<&mut Node> {
        let mut node = &mut self.root;
        for segment in uri.segments() {
            node = node.children.get_mut(segment)?;
        }
        Some(node)
    }

    /// Reject URIs that break this tree's URI limits (they may have been parsed under others).
    fn check_uri(&self, uri: &DmUri) -> Result<(), TreeError> {
        DmUri::parse(uri.as_str(), &self.limits.uri)
            .map(|_| ())
            .map_err(|source| TreeError::Uri {
                uri: uri.clone(),
                source,
            })
    }

    /// Raw access to a node, for trusted local code (MO views, TNDS export): no ACL, no "no Get".
    pub fn node(&self, uri: &DmUri) -> Result<&Node, TreeError> {
        self.lookup(uri)
            .ok_or_else(|| TreeError::NotFound { uri: uri.clone() })
    }

    /// True when a node exists at `uri`.
    pub fn exists(&self, uri: &DmUri) -> bool {
        self.lookup(uri).is_some()
    }

    /// The child names of the node at `uri`, in order (none for a leaf).
    pub fn children(&self, uri: &DmUri) -> Result<Vec<&str>, TreeError> {
        Ok(self
            .node(uri)?
            .children
            .keys()
            .map(String::as_str)
            .collect())
    }

    /// DM Get: a leaf's value, or an interior node's child names joined by `/`. Refused (405) for
    /// "no Get" leaves.
    pub fn get(&self, uri: &DmUri) -> Result<NodeView, TreeError> {
        let node = self.node(uri)?;
        if node.is_interior() {
            let names: Vec<String> = node.children.keys().cloned().collect();
            return Ok(NodeView {
                format: Format::Node,
                mime_type: node.mime_type.clone(),
                value: names.join("/").into_bytes(),
                children: Some(names),
            });
        }
        if self.is_no_get(uri) {
            return Err(TreeError::GetNotAllowed { uri: uri.clone() });
        }
        Ok(NodeView {
            format: node.format,
            mime_type: node.mime_type.clone(),
            value: node.value.clone().unwrap_or_default(),
            children: None,
        })
    }

    /// The ACL in force at `uri`: its own when non-empty, else the nearest ancestor's. For a URI
    /// that does not exist, the nearest existing ancestor's.
    pub fn effective_acl(&self, uri: &DmUri) -> &Acl {
        let mut node = &self.root;
        let mut acl = self.root.acl.as_ref();
        for segment in uri.segments() {
            match node.children.get(segment) {
                Some(child) => {
                    node = child;
                    if let Some(a) = child.acl.as_ref().filter(|a| !a.is_empty()) {
                        acl = Some(a);
                    }
                }
                None => break,
            }
        }
        // The root always holds a non-empty ACL; the fallback only keeps this total.
        static EMPTY: Acl = Acl {
            entries: BTreeMap::new(),
        };
        acl.unwrap_or(&EMPTY)
    }

    /// Check that the ACL in force at `uri` grants `command` to `server_id` (425 otherwise).
    pub fn check_access(
        &self,
        uri: &DmUri,
        command: AclCommand,
        server_id: &str,
    ) -> Result<(), TreeError> {
        if self.effective_acl(uri).allows(command, server_id) {
            Ok(())
        } else {
            Err(TreeError::PermissionDenied {
                uri: uri.clone(),
                command,
                server_id: excerpt(server_id),
            })
        }
    }

    /// DM Get on behalf of `server_id`: 404, then the ACL (Get on the node), then "no Get".
    pub fn get_as(&self, uri: &DmUri, server_id: &str) -> Result<NodeView, TreeError> {
        self.node(uri)?;
        self.check_access(uri, AclCommand::Get, server_id)?;
        self.get(uri)
    }

    /// Turn a `NewNode` into a childless `Node`, checking it against the Format and the limits.
    fn validate(&self, uri: &DmUri, new: NewNode) -> Result<Node, TreeError> {
        let mismatch = |reason| TreeError::FormatMismatch {
            uri: uri.clone(),
            format: new.format,
            reason,
        };
        if new
            .mime_type
            .as_ref()
            .is_some_and(|m| m.len() > MAX_TYPE_LEN || m.chars().any(char::is_control))
        {
            return Err(mismatch("Type too long or with control characters"));
        }
        let value = match new.format {
            Format::Node => {
                if new.value.is_some() {
                    return Err(mismatch("an interior node has no value"));
                }
                None
            }
            Format::Null => {
                if new.value.as_ref().is_some_and(|v| !v.is_empty()) {
                    return Err(mismatch("a null node has no value"));
                }
                None
            }
            format => {
                let value = new.value.clone().unwrap_or_default();
                if value.len() > self.limits.max_value_bytes {
                    return Err(TreeError::ValueTooLarge {
                        uri: uri.clone(),
                        size: value.len(),
                        limit: self.limits.max_value_bytes,
                    });
                }
                if format.is_text() && std::str::from_utf8(&value).is_err() {
                    return Err(mismatch("text value is not UTF-8"));
                }
                Some(value)
            }
        };
        Ok(Node {
            format: new.format,
            mime_type: new.mime_type,
            acl: new.acl,
            value,
            permanent: new.permanent,
            children: BTreeMap::new(),
        })
    }

    /// DM Add. Missing interior ancestors are created (DM 1.2 allows it); 418 when the node exists,
    /// 405 under a leaf, 420 when the tree is full.
    pub fn add(&mut self, uri: &DmUri, new: NewNode) -> Result<(), TreeError> {
        self.check_uri(uri)?;
        let segments: Vec<&str> = uri.segments().collect();
        let Some((last, parents)) = segments.split_last() else {
            return Err(TreeError::AlreadyExists { uri: uri.clone() });
        };
        let node = self.validate(uri, new)?;
        // Pass 1: find what exists, without touching the tree.
        let mut existing = Some(&self.root);
        let mut missing = 0usize;
        for (i, segment) in parents.iter().enumerate() {
            existing = match existing.map(|p| p.children.get(*segment)) {
                Some(Some(child)) if child.is_leaf() => {
                    return Err(TreeError::ParentIsLeaf {
                        uri: uri.clone(),
                        parent: uri.prefix(i.saturating_add(1)),
                    });
                }
                Some(Some(child)) => Some(child),
                _ => {
                    missing = missing.saturating_add(1);
                    None
                }
            };
        }
        if existing.is_some_and(|p| p.children.contains_key(*last)) {
            return Err(TreeError::AlreadyExists { uri: uri.clone() });
        }
        let needed = missing.saturating_add(1);
        if self.count.saturating_add(needed) > self.limits.max_nodes {
            return Err(TreeError::TooManyNodes {
                uri: uri.clone(),
                limit: self.limits.max_nodes,
            });
        }
        // Pass 2: create.
        let mut parent = &mut self.root;
        for segment in parents {
            parent = parent
                .children
                .entry((*segment).to_owned())
                .or_insert_with(Node::interior);
        }
        parent.children.insert((*last).to_owned(), node);
        self.count = self.count.saturating_add(needed);
        Ok(())
    }

    /// DM Add on behalf of `server_id`: Add must be granted by the ACL in force at the parent
    /// (the nearest existing ancestor).
    pub fn add_as(&mut self, uri: &DmUri, new: NewNode, server_id: &str) -> Result<(), TreeError> {
        let parent = uri
            .parent()
            .ok_or_else(|| TreeError::AlreadyExists { uri: uri.clone() })?;
        if !self
            .effective_acl(&parent)
            .allows(AclCommand::Add, server_id)
        {
            return Err(TreeError::PermissionDenied {
                uri: uri.clone(),
                command: AclCommand::Add,
                server_id: excerpt(server_id),
            });
        }
        self.add(uri, new)
    }

    /// DM Replace: a leaf's Format, Type and value, or an interior node's Type; the ACL too when
    /// `new.acl` is set. 404 when missing, 405 when it would change the node's kind.
    pub fn replace(&mut self, uri: &DmUri, new: NewNode) -> Result<(), TreeError> {
        self.check_uri(uri)?;
        let node = self.validate(uri, new)?;
        if uri.is_root() && node.acl.as_ref().is_some_and(Acl::is_empty) {
            return Err(TreeError::RootImmutable { uri: uri.clone() });
        }
        let target = self
            .lookup_mut(uri)
            .ok_or_else(|| TreeError::NotFound { uri: uri.clone() })?;
        if target.is_interior() != node.is_interior() {
            return Err(TreeError::KindChange {
                uri: uri.clone(),
                was_interior: target.is_interior(),
            });
        }
        target.format = node.format;
        target.mime_type = node.mime_type;
        target.value = node.value;
        if node.acl.is_some() {
            target.acl = node.acl;
        }
        Ok(())
    }

    /// Replace only a leaf's value, keeping its Format and Type.
    pub fn replace_value(
        &mut self,
        uri: &DmUri,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), TreeError> {
        let node = self.node(uri)?;
        let new = NewNode {
            format: node.format,
            mime_type: node.mime_type.clone(),
            acl: None,
            value: Some(value.into()),
            permanent: false,
        };
        self.replace(uri, new)
    }

    /// DM Replace on behalf of `server_id` (Replace granted on the node).
    pub fn replace_as(
        &mut self,
        uri: &DmUri,
        new: NewNode,
        server_id: &str,
    ) -> Result<(), TreeError> {
        self.node(uri)?;
        self.check_access(uri, AclCommand::Replace, server_id)?;
        self.replace(uri, new)
    }

    /// Set or clear a node's own ACL (`Replace ...?prop=ACL`). The root keeps a non-empty ACL.
    pub fn set_acl(&mut self, uri: &DmUri, acl: Option<Acl>) -> Result<(), TreeError> {
        if uri.is_root() && acl.as_ref().is_none_or(Acl::is_empty) {
            return Err(TreeError::RootImmutable { uri: uri.clone() });
        }
        let node = self
            .lookup_mut(uri)
            .ok_or_else(|| TreeError::NotFound { uri: uri.clone() })?;
        node.acl = acl;
        Ok(())
    }

    /// DM Delete, recursive. The root and subtrees holding a permanent node are refused (405).
    pub fn delete(&mut self, uri: &DmUri) -> Result<(), TreeError> {
        let (Some(parent_uri), Some(name)) = (uri.parent(), uri.name()) else {
            return Err(TreeError::RootImmutable { uri: uri.clone() });
        };
        let target = self.node(uri)?;
        if let Some(permanent) = find_permanent(uri, target) {
            return Err(TreeError::PermanentNode {
                uri: uri.clone(),
                permanent,
            });
        }
        let parent = self
            .lookup_mut(&parent_uri)
            .ok_or_else(|| TreeError::NotFound { uri: uri.clone() })?;
        let removed = parent
            .children
            .remove(name)
            .ok_or_else(|| TreeError::NotFound { uri: uri.clone() })?;
        self.count = self.count.saturating_sub(count_nodes(&removed));
        Ok(())
    }

    /// DM Delete on behalf of `server_id` (Delete granted on the node).
    pub fn delete_as(&mut self, uri: &DmUri, server_id: &str) -> Result<(), TreeError> {
        self.node(uri)?;
        self.check_access(uri, AclCommand::Delete, server_id)?;
        self.delete(uri)
    }

    /// Every node of the subtree at `uri`, depth-first, parents before children, children in name
    /// order (the order TNDS export uses).
    pub fn walk(&self, uri: &DmUri) -> Result<Vec<(DmUri, &Node)>, TreeError> {
        let start = self.node(uri)?;
        let mut out = Vec::new();
        let mut stack = vec![(uri.clone(), start)];
        while let Some((at, node)) = stack.pop() {
            for (name, child) in node.children.iter().rev() {
                let child_uri = at
                    .join_with_limits(name, &self.limits.uri)
                    .map_err(|source| TreeError::Uri {
                        uri: at.clone(),
                        source,
                    })?;
                stack.push((child_uri, child));
            }
            out.push((at, node));
        }
        Ok(out)
    }

    /// Run `f` on a copy of the tree and keep the result only if `f` succeeds: all or nothing.
    pub fn atomic<T, E>(&mut self, f: impl FnOnce(&mut Tree) -> Result<T, E>) -> Result<T, E> {
        let mut work = self.clone();
        let out = f(&mut work)?;
        *self = work;
        Ok(out)
    }
}

/// Number of nodes in a subtree, itself included (iterative).
fn count_nodes(node: &Node) -> usize {
    let mut n = 0usize;
    let mut stack = vec![node];
    while let Some(next) = stack.pop() {
        n = n.saturating_add(1);
        stack.extend(next.children.values());
    }
    n
}

/// The first permanent node of a subtree (iterative), as a URI built on `uri`.
fn find_permanent(uri: &DmUri, node: &Node) -> Option<DmUri> {
    let mut stack = vec![(uri.as_str().to_owned(), node)];
    while let Some((at, next)) = stack.pop() {
        if next.permanent {
            // Built from valid segments of a valid tree; fall back to the requested URI.
            return Some(
                DmUri::parse(
                    &at,
                    &UriLimits {
                        max_total_len: usize::MAX,
                        max_depth: usize::MAX,
                        max_segment_len: usize::MAX,
                    },
                )
                .unwrap_or_else(|_| uri.clone()),
            );
        }
        for (name, child) in &next.children {
            stack.push((format!("{at}/{name}"), child));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uri(s: &str) -> DmUri {
        s.parse().unwrap()
    }

    #[test]
    fn format_names() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
            assert_eq!(f.as_str().to_uppercase().parse::<Format>(), Ok(f));
            assert_eq!(f.to_string(), f.as_str());
        }
        assert_eq!(Format::parse(" Chr "), Some(Format::Chr));
        assert!(matches!(
            "text".parse::<Format>(),
            Err(UnknownFormat { .. })
        ));
        assert_eq!(Format::default(), Format::Chr);
        assert!(Format::Bin.is_binary() && !Format::Bin.is_text());
        assert!(Format::Int.is_text() && !Format::Node.is_text());
    }

    #[test]
    fn acl_parse_format_allows() {
        let acl = Acl::parse("Add=*&Get=srv1+srv2&Replace=*").unwrap();
        assert!(acl.allows(AclCommand::Add, "anyone"));
        assert!(acl.allows(AclCommand::Get, "srv2"));
        assert!(!acl.allows(AclCommand::Get, "srv3"));
        assert!(!acl.allows(AclCommand::Delete, "srv1"));
        assert_eq!(acl.to_string(), "Add=*&Get=srv1+srv2&Replace=*");
        // Case-insensitive commands, canonical order, duplicates and '*' folded.
        let acl = Acl::parse("get=a+a&add=b+*").unwrap();
        assert_eq!(acl.to_string(), "Add=*&Get=a");
        assert!(Acl::parse("").unwrap().is_empty());
        let built = Acl::empty()
            .allow(AclCommand::Get, "s1")
            .allow(AclCommand::Get, "s2")
            .allow(AclCommand::Get, "s1")
            .allow(AclCommand::Get, "bad+id")
            .allow_any(AclCommand::Exec);
        assert_eq!(built.to_string(), "Exec=*&Get=s1+s2");
        assert_eq!(built.entries().count(), 2);
        assert_eq!("Delete=x".parse::<Acl>().unwrap().to_string(), "Delete=x");
    }

    #[test]
    fn acl_errors() {
        let e = |s: &str| Acl::parse(s).unwrap_err();
        assert!(matches!(
            e(&"Get=a+".repeat(1000)),
            AclError::TooLong { limit: 4096, .. }
        ));
        assert!(matches!(
            e("Get=a\n"),
            AclError::ControlCharacter { position: 5 }
        ));
        assert!(matches!(
            e("Get=a&&Add=*"),
            AclError::EmptyEntry { position: 1 }
        ));
        assert!(matches!(e("Get=a&"), AclError::EmptyEntry { .. }));
        assert!(matches!(e("Get"), AclError::MissingEquals { .. }));
        assert!(matches!(e("Copy=*"), AclError::UnknownCommand { .. }));
        assert!(matches!(
            e("Get=*&Get=a"),
            AclError::DuplicateCommand {
                command: AclCommand::Get
            }
        ));
        assert!(matches!(e("Get="), AclError::EmptyServerId { .. }));
        assert!(matches!(e("Get=a++b"), AclError::EmptyServerId { .. }));
        assert!(matches!(e("Get=a=b"), AclError::InvalidServerId { .. }));
    }

    #[test]
    fn add_get_children() {
        let mut t = Tree::new();
        assert!(t.is_empty());
        t.add(&uri("./DevInfo/DevId"), NewNode::chr("IMEI:1"))
            .unwrap();
        // The parent was created implicitly as an interior node.
        assert!(t.node(&uri("./DevInfo")).unwrap().is_interior());
        assert_eq!(t.len(), 3);
        t.add(&uri("./DevInfo/Man"), NewNode::chr("ACME")).unwrap();
        let v = t.get(&uri("./DevInfo/DevId")).unwrap();
        assert_eq!(v.value, b"IMEI:1");
        assert_eq!(v.format, Format::Chr);
        assert_eq!(v.mime_type.as_deref(), Some("text/plain"));
        assert_eq!(v.children, None);
        let v = t.get(&uri("./DevInfo")).unwrap();
        assert_eq!(v.format, Format::Node);
        assert_eq!(v.value, b"DevId/Man");
        assert_eq!(v.children, Some(vec!["DevId".to_owned(), "Man".to_owned()]));
        assert_eq!(t.get(&DmUri::root()).unwrap().value, b"DevInfo");
        assert_eq!(t.children(&uri("./DevInfo")).unwrap(), ["DevId", "Man"]);
        assert!(t.children(&uri("./DevInfo/Man")).unwrap().is_empty());
        assert!(t.exists(&uri("./DevInfo/Man")));
        assert!(!t.exists(&uri("./DevInfo/Mod")));
        assert_eq!(t.node(&uri("./DevInfo/Man")).unwrap().text(), Some("ACME"));
    }

    #[test]
    fn add_errors() {
        let mut t = Tree::new();
        t.add(&uri("./A/leaf"), NewNode::chr("x")).unwrap();
        let e = t.add(&uri("./A/leaf"), NewNode::chr("y")).unwrap_err();
        assert_eq!(
            e,
            TreeError::AlreadyExists {
                uri: uri("./A/leaf")
            }
        );
        assert_eq!(e.status_code(), 418);
        let e = t.add(&DmUri::root(), NewNode::interior()).unwrap_err();
        assert_eq!(e.status_code(), 418);
        let e = t.add(&uri("./A/leaf/x/y"), NewNode::chr("y")).unwrap_err();
        assert_eq!(
            e,
            TreeError::ParentIsLeaf {
                uri: uri("./A/leaf/x/y"),
                parent: uri("./A/leaf")
            }
        );
        assert_eq!(e.status_code(), 405);
        let mut bad = NewNode::interior();
        bad.value = Some(b"v".to_vec());
        let e = t.add(&uri("./B"), bad).unwrap_err();
        assert!(matches!(e, TreeError::FormatMismatch { .. }));
        assert_eq!(e.status_code(), 415);
        let e = t
            .add(&uri("./B"), NewNode::leaf(Format::Chr, vec![0xff, 0xfe]))
            .unwrap_err();
        assert!(matches!(e, TreeError::FormatMismatch { .. }));
        let e = t
            .add(&uri("./B"), NewNode::leaf(Format::Null, b"x".to_vec()))
            .unwrap_err();
        assert!(matches!(e, TreeError::FormatMismatch { .. }));
        let e = t
            .add(&uri("./B"), NewNode::chr("x").with_type(&"m".repeat(300)))
            .unwrap_err();
        assert!(matches!(e, TreeError::FormatMismatch { .. }));
        // Binary values need not be UTF-8; null leaves keep no value.
        t.add(&uri("./B"), NewNode::leaf(Format::Bin, vec![0xff]))
            .unwrap();
        t.add(&uri("./N"), NewNode::leaf(Format::Null, Vec::new()))
            .unwrap();
        assert_eq!(t.node(&uri("./N")).unwrap().value, None);
        assert_eq!(t.get(&uri("./N")).unwrap().value, b"");
        // A leaf without value is an empty value.
        let mut empty = NewNode::chr("");
        empty.value = None;
        t.add(&uri("./E"), empty).unwrap();
        assert_eq!(t.node(&uri("./E")).unwrap().value, Some(Vec::new()));
    }

    #[test]
    fn limits_bound_memory() {
        let mut t = Tree::with_limits(TreeLimits {
            max_nodes: 4,
            max_value_bytes: 8,
            uri: UriLimits {
                max_depth: 3,
                ..UriLimits::default()
            },
        });
        let e = t.add(&uri("./A"), NewNode::chr("123456789")).unwrap_err();
        assert!(matches!(
            e,
            TreeError::ValueTooLarge {
                size: 9,
                limit: 8,
                ..
            }
        ));
        assert_eq!(e.status_code(), 413);
        t.add(&uri("./A/B"), NewNode::chr("x")).unwrap(); // root + A + B
        let e = t.add(&uri("./C/D"), NewNode::chr("x")).unwrap_err();
        assert!(matches!(e, TreeError::TooManyNodes { limit: 4, .. }));
        assert_eq!(e.status_code(), 420);
        assert_eq!(t.len(), 3);
        t.add(&uri("./C"), NewNode::chr("x")).unwrap();
        let e = t.add(&uri("./A/B2"), NewNode::chr("x")).unwrap_err();
        assert!(matches!(e, TreeError::TooManyNodes { .. }));
        // A URI valid under the default limits but deeper than this tree accepts.
        let e = t.add(&uri("./A/x/y/z"), NewNode::chr("x")).unwrap_err();
        assert!(matches!(e, TreeError::Uri { .. }));
        assert_eq!(e.status_code(), 414);
        // Deleting frees room.
        t.delete(&uri("./A")).unwrap();
        assert_eq!(t.len(), 2);
        t.add(&uri("./A/B2"), NewNode::chr("x")).unwrap();
    }

    #[test]
    fn replace_rules() {
        let mut t = Tree::new();
        t.add(&uri("./A/L"), NewNode::chr("x")).unwrap();
        t.replace(&uri("./A/L"), NewNode::leaf(Format::Int, b"42".to_vec()))
            .unwrap();
        let v = t.get(&uri("./A/L")).unwrap();
        assert_eq!((v.format, v.value), (Format::Int, b"42".to_vec()));
        t.replace_value(&uri("./A/L"), b"43".to_vec()).unwrap();
        assert_eq!(t.get(&uri("./A/L")).unwrap().format, Format::Int);
        assert_eq!(t.get(&uri("./A/L")).unwrap().value, b"43");
        let e = t.replace(&uri("./A/M"), NewNode::chr("x")).unwrap_err();
        assert_eq!(e, TreeError::NotFound { uri: uri("./A/M") });
        assert_eq!(e.status_code(), 404);
        let e = t.replace(&uri("./A"), NewNode::chr("x")).unwrap_err();
        assert_eq!(
            e,
            TreeError::KindChange {
                uri: uri("./A"),
                was_interior: true
            }
        );
        assert_eq!(e.status_code(), 405);
        let e = t.replace(&uri("./A/L"), NewNode::interior()).unwrap_err();
        assert!(matches!(
            e,
            TreeError::KindChange {
                was_interior: false,
                ..
            }
        ));
        // Replace on an interior node sets its Type and keeps its children.
        t.replace(&uri("./A"), NewNode::interior().with_type("urn:x"))
            .unwrap();
        assert_eq!(
            t.node(&uri("./A")).unwrap().mime_type.as_deref(),
            Some("urn:x")
        );
        assert!(t.exists(&uri("./A/L")));
        // The ACL is kept unless given.
        t.set_acl(&uri("./A/L"), Some(Acl::parse("Get=s").unwrap()))
            .unwrap();
        t.replace_value(&uri("./A/L"), b"1".to_vec()).unwrap();
        assert_eq!(
            t.node(&uri("./A/L")).unwrap().acl,
            Some(Acl::parse("Get=s").unwrap())
        );
    }

    #[test]
    fn delete_rules() {
        let mut t = Tree::new();
        t.add(&uri("./A/B/C"), NewNode::chr("x")).unwrap();
        t.add(&uri("./A/D"), NewNode::chr("x")).unwrap();
        t.add(&uri("./P/Keep"), NewNode::chr("x").permanent())
            .unwrap();
        assert_eq!(t.len(), 7);
        t.delete(&uri("./A/B")).unwrap();
        assert!(!t.exists(&uri("./A/B/C")));
        assert_eq!(t.len(), 5);
        let e = t.delete(&uri("./A/B")).unwrap_err();
        assert_eq!(e.status_code(), 404);
        let e = t.delete(&DmUri::root()).unwrap_err();
        assert_eq!(e, TreeError::RootImmutable { uri: DmUri::root() });
        assert_eq!(e.status_code(), 405);
        let e = t.delete(&uri("./P")).unwrap_err();
        assert_eq!(
            e,
            TreeError::PermanentNode {
                uri: uri("./P"),
                permanent: uri("./P/Keep")
            }
        );
        assert_eq!(e.status_code(), 405);
        assert!(t.exists(&uri("./P/Keep")));
        t.delete(&uri("./A")).unwrap();
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn acl_inheritance_and_checked_commands() {
        let mut t = Tree::new();
        let acc = uri("./DMAcc/S1");
        t.add(
            &acc,
            NewNode::interior()
                .with_acl(Acl::parse("Get=srv1&Replace=srv1&Add=srv1&Delete=srv1").unwrap()),
        )
        .unwrap();
        t.add(&uri("./DMAcc/S1/Name"), NewNode::chr("one")).unwrap();
        t.add(&uri("./DMAcc/S1/AAuthSecret"), NewNode::chr("pw"))
            .unwrap();
        t.add(
            &uri("./DMAcc/S1/Open"),
            NewNode::chr("o").with_acl(Acl::parse("Get=*").unwrap()),
        )
        .unwrap();
        // Inherited from S1.
        assert_eq!(
            t.effective_acl(&uri("./DMAcc/S1/Name")).to_string(),
            "Add=srv1&Delete=srv1&Get=srv1&Replace=srv1"
        );
        // ./DMAcc has none: the root's.
        assert_eq!(
            t.effective_acl(&uri("./DMAcc")).to_string(),
            DEFAULT_ROOT_ACL
        );
        // A missing node: the nearest existing ancestor's.
        assert_eq!(
            t.effective_acl(&uri("./DMAcc/S1/Nope/Deeper")).to_string(),
            "Add=srv1&Delete=srv1&Get=srv1&Replace=srv1"
        );
        assert!(t.get_as(&uri("./DMAcc/S1/Name"), "srv1").is_ok());
        let e = t.get_as(&uri("./DMAcc/S1/Name"), "srv2").unwrap_err();
        assert!(matches!(
            e,
            TreeError::PermissionDenied {
                command: AclCommand::Get,
                ..
            }
        ));
        assert_eq!(e.status_code(), 425);
        assert!(t.get_as(&uri("./DMAcc/S1/Open"), "srv2").is_ok());
        assert_eq!(
            t.get_as(&uri("./DMAcc/S1/Missing"), "srv1")
                .unwrap_err()
                .status_code(),
            404
        );
        // No Get on secrets, whoever asks.
        let e = t
            .get_as(&uri("./DMAcc/S1/AAuthSecret"), "srv1")
            .unwrap_err();
        assert_eq!(
            e,
            TreeError::GetNotAllowed {
                uri: uri("./DMAcc/S1/AAuthSecret")
            }
        );
        assert_eq!(e.status_code(), 405);
        assert!(t.is_no_get(&uri("./DMAcc/S1/AAuthSecret")));
        assert!(t.is_no_get(&uri("./X/AAuthData")));
        assert!(!t.is_no_get(&uri("./DMAcc/S1/Name")));
        // Raw access still reads it (for the MO views).
        assert_eq!(
            t.node(&uri("./DMAcc/S1/AAuthSecret")).unwrap().text(),
            Some("pw")
        );
        // Add is checked on the parent.
        assert!(
            t.add_as(&uri("./DMAcc/S1/New"), NewNode::chr("n"), "srv1")
                .is_ok()
        );
        assert!(matches!(
            t.add_as(&uri("./DMAcc/S1/New2"), NewNode::chr("n"), "srv2"),
            Err(TreeError::PermissionDenied {
                command: AclCommand::Add,
                ..
            })
        ));
        // The root grants Add to all.
        assert!(t.add_as(&uri("./Other"), NewNode::chr("n"), "srv2").is_ok());
        assert!(
            t.add_as(&DmUri::root(), NewNode::interior(), "srv2")
                .is_err()
        );
        assert!(
            t.replace_as(&uri("./DMAcc/S1/Name"), NewNode::chr("1"), "srv1")
                .is_ok()
        );
        assert!(matches!(
            t.replace_as(&uri("./DMAcc/S1/Name"), NewNode::chr("1"), "srv2"),
            Err(TreeError::PermissionDenied {
                command: AclCommand::Replace,
                ..
            })
        ));
        assert!(matches!(
            t.delete_as(&uri("./DMAcc/S1/Name"), "srv2"),
            Err(TreeError::PermissionDenied {
                command: AclCommand::Delete,
                ..
            })
        ));
        assert!(t.delete_as(&uri("./DMAcc/S1/Name"), "srv1").is_ok());
        // A configurable no-Get set.
        t.set_no_get(["Open"]);
        assert!(t.get(&uri("./DMAcc/S1/Open")).is_err());
        assert!(t.get(&uri("./DMAcc/S1/AAuthSecret")).is_ok());
    }

    #[test]
    fn root_acl_is_kept() {
        let mut t = Tree::new();
        assert_eq!(
            t.node(&DmUri::root())
                .unwrap()
                .acl
                .as_ref()
                .unwrap()
                .to_string(),
            DEFAULT_ROOT_ACL
        );
        assert!(matches!(
            t.set_acl(&DmUri::root(), None),
            Err(TreeError::RootImmutable { .. })
        ));
        assert!(matches!(
            t.set_acl(&DmUri::root(), Some(Acl::empty())),
            Err(TreeError::RootImmutable { .. })
        ));
        assert!(matches!(
            t.replace(&DmUri::root(), NewNode::interior().with_acl(Acl::empty())),
            Err(TreeError::RootImmutable { .. })
        ));
        t.set_acl(&DmUri::root(), Some(Acl::parse("Get=*").unwrap()))
            .unwrap();
        assert!(matches!(
            t.set_acl(&uri("./none"), None),
            Err(TreeError::NotFound { .. })
        ));
    }

    #[test]
    fn walk_is_depth_first_in_name_order() {
        let mut t = Tree::new();
        for p in ["./B/y", "./A/z", "./A/b/c", "./A/a"] {
            t.add(&uri(p), NewNode::chr("v")).unwrap();
        }
        let order: Vec<String> = t
            .walk(&DmUri::root())
            .unwrap()
            .into_iter()
            .map(|(u, _)| u.to_string())
            .collect();
        assert_eq!(
            order,
            [
                ".", "./A", "./A/a", "./A/b", "./A/b/c", "./A/z", "./B", "./B/y"
            ]
        );
        let sub: Vec<String> = t
            .walk(&uri("./A/b"))
            .unwrap()
            .into_iter()
            .map(|(u, _)| u.to_string())
            .collect();
        assert_eq!(sub, ["./A/b", "./A/b/c"]);
        assert!(t.walk(&uri("./Z")).is_err());
    }

    #[test]
    fn atomic_is_all_or_nothing() {
        let mut t = Tree::new();
        let before = t.clone();
        let r: Result<(), TreeError> = t.atomic(|w| {
            w.add(&uri("./A"), NewNode::chr("x"))?;
            w.add(&uri("./A"), NewNode::chr("x"))
        });
        assert!(r.is_err());
        assert_eq!(t, before);
        t.atomic(|w| w.add(&uri("./A"), NewNode::chr("x"))).unwrap();
        assert!(t.exists(&uri("./A")));
    }

    #[test]
    fn debug_never_prints_values() {
        let mut t = Tree::new();
        t.add(&uri("./DMAcc/S/AAuthSecret"), NewNode::chr("hunter2"))
            .unwrap();
        let d = format!("{t:?} {:?}", NewNode::chr("hunter2"));
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("<7 bytes>"));
    }

    #[test]
    fn error_uri_accessor() {
        let e = TreeError::NotFound { uri: uri("./A") };
        assert_eq!(e.uri(), &uri("./A"));
        assert!(e.to_string().contains("./A"));
    }

    proptest! {
        #[test]
        fn add_get_round_trip(
            entries in proptest::collection::btree_map(
                proptest::collection::vec("[a-z]{1,3}", 1..5),
                proptest::collection::vec(any::<u8>(), 0..32),
                1..20,
            )
        ) {
            let mut t = Tree::new();
            let mut added = Vec::new();
            for (segs, value) in &entries {
                let u: DmUri = format!("./{}", segs.join("/")).parse().unwrap();
                // Paths that collide with an existing leaf or interior node are refused, never panic.
                if t.add(&u, NewNode::leaf(Format::Bin, value.clone())).is_ok() {
                    added.push((u, value.clone()));
                }
            }
            prop_assert!(!added.is_empty());
            for (u, value) in &added {
                let v = t.get(u).unwrap();
                prop_assert_eq!(&v.value, value);
                prop_assert_eq!(v.format, Format::Bin);
            }
            // The walk visits every node once and the count matches.
            prop_assert_eq!(t.walk(&DmUri::root()).unwrap().len(), t.len());
            for (u, _) in &added {
                if t.exists(u) {
                    t.delete(u).unwrap();
                }
            }
            prop_assert_eq!(t.walk(&DmUri::root()).unwrap().len(), t.len());
        }

        #[test]
        fn acl_round_trip(
            entries in proptest::collection::btree_map(
                0usize..5,
                proptest::option::of(proptest::collection::vec("[A-Za-z0-9.:_-]{1,8}", 1..4)),
                0..5,
            )
        ) {
            let mut acl = Acl::empty();
            for (i, servers) in &entries {
                let cmd = AclCommand::ALL[*i];
                match servers {
                    None => acl = acl.allow_any(cmd),
                    Some(list) => for s in list { acl = acl.allow(cmd, s) },
                }
            }
            let text = acl.to_string();
            prop_assert_eq!(Acl::parse(&text).unwrap(), acl);
        }

        #[test]
        fn acl_parse_never_panics(s in any::<String>()) {
            let _ = Acl::parse(&s);
        }

        #[test]
        fn acl_parse_never_panics_on_acl_like_input(s in "[AddGetRplc=*&+a-z\\x00]{0,60}") {
            if let Ok(acl) = Acl::parse(&s) {
                prop_assert_eq!(Acl::parse(&acl.to_string()).unwrap(), acl);
            }
        }
    }
}
