//! Maps the typed SyncML model to and from the element tree, and picks the wire format (XML or WBXML).
//! `decode` sniffs the bytes (or trusts a Content-Type), `encode` writes either format.

use std::borrow::Cow;

use thiserror::Error;

use crate::element::{Element, LimitError, Limits, Namespace, Node};
use crate::model::*;
use crate::{wbxml, xml};

/// MIME type of SyncML DM in XML.
pub const MIME_XML: &str = "application/vnd.syncml.dm+xml";
/// MIME type of SyncML DM in WBXML.
pub const MIME_WBXML: &str = "application/vnd.syncml.dm+wbxml";
/// MIME type of a TNDS object in XML.
pub const MIME_TNDS_XML: &str = "application/vnd.syncml.dmtnds+xml";
/// MIME type of a TNDS object in WBXML.
pub const MIME_TNDS_WBXML: &str = "application/vnd.syncml.dmtnds+wbxml";
/// MIME type of a DM notification (package 0).
pub const MIME_NOTIFICATION: &str = "application/vnd.syncml.notification";

/// The two wire formats of SyncML DM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `application/vnd.syncml.dm+xml`.
    Xml,
    /// `application/vnd.syncml.dm+wbxml`.
    Wbxml,
}

impl Encoding {
    /// The MIME type of a DM message in this encoding.
    pub fn mime(self) -> &'static str {
        match self {
            Encoding::Xml => MIME_XML,
            Encoding::Wbxml => MIME_WBXML,
        }
    }

    /// The encoding named by an HTTP Content-Type (parameters ignored, case-insensitive).
    pub fn from_content_type(content_type: &str) -> Option<Encoding> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case(MIME_XML) || mime.eq_ignore_ascii_case(MIME_TNDS_XML) {
            Some(Encoding::Xml)
        } else if mime.eq_ignore_ascii_case(MIME_WBXML)
            || mime.eq_ignore_ascii_case(MIME_TNDS_WBXML)
        {
            Some(Encoding::Wbxml)
        } else {
            None
        }
    }

    /// Guess the encoding from the first bytes: XML starts with `<`, a BOM or whitespace; WBXML with
    /// a version byte 0x01..=0x03.
    pub fn sniff(bytes: &[u8]) -> Encoding {
        match bytes.first() {
            Some(0x01..=0x03) => Encoding::Wbxml,
            _ => Encoding::Xml,
        }
    }
}

/// A message could not be decoded.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The XML layer refused the bytes.
    #[error("XML: {0}")]
    Xml(#[from] xml::XmlError),
    /// The WBXML layer refused the bytes.
    #[error("WBXML: {0}")]
    Wbxml(#[from] wbxml::WbxmlError),
    /// The document is well-formed but not a valid SyncML DM message.
    #[error("SyncML: {0}")]
    Model(#[from] ModelError),
}

impl DecodeError {
    /// The DM status code that answers a message refused with this error (400, or 413 for size).
    pub fn status_code(&self) -> u16 {
        let limit = match self {
            DecodeError::Xml(xml::XmlError::Limit(l)) => Some(l),
            DecodeError::Wbxml(wbxml::WbxmlError::Limit(l)) => Some(l),
            _ => None,
        };
        match limit {
            Some(LimitError::MessageTooLarge { .. }) => status_code::TOO_LARGE,
            _ => status_code::BAD_REQUEST,
        }
    }
}

/// A message could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The WBXML encoder refused the tree.
    #[error("WBXML: {0}")]
    Wbxml(#[from] wbxml::WbxmlError),
}

/// The element tree is not a valid SyncML DM message; `path` names the element.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// The root element is not `SyncML`.
    #[error("root element is <{found}>, expected <SyncML>")]
    WrongRoot {
        /// The root element found.
        found: String,
    },
    /// A required element is missing.
    #[error("{path}: missing <{element}>")]
    Missing {
        /// Where.
        path: String,
        /// Which element.
        element: &'static str,
    },
    /// A numeric element does not hold a number in range.
    #[error("{path}: <{element}> is not a valid number: {value:?}")]
    BadNumber {
        /// Where.
        path: String,
        /// Which element.
        element: &'static str,
        /// The value found (truncated).
        value: String,
    },
    /// An embedded document inside `Data` could not be decoded.
    #[error("{path}: embedded document: {reason}")]
    Embedded {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Decode a message, sniffing XML or WBXML from the bytes.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<SyncMl, DecodeError> {
    decode_as(bytes, Encoding::sniff(bytes), limits)
}

/// Decode a message in a known encoding.
pub fn decode_as(bytes: &[u8], encoding: Encoding, limits: &Limits) -> Result<SyncMl, DecodeError> {
    let root = decode_element(bytes, encoding, limits)?;
    Ok(from_element(&root, limits)?)
}

/// Decode bytes to the generic element tree.
pub fn decode_element(
    bytes: &[u8],
    encoding: Encoding,
    limits: &Limits,
) -> Result<Element, DecodeError> {
    Ok(match encoding {
        Encoding::Xml => xml::decode(bytes, limits)?,
        Encoding::Wbxml => wbxml::decode(bytes, limits)?,
    })
}

/// Encode a message. In WBXML, markup embedded in `Data` (a TNDS MgmtTree) travels as OPAQUE holding a
/// nested WBXML document, as libwbxml and the devices built on it expect.
pub fn encode(msg: &SyncMl, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
    let mut root = to_element(msg);
    if encoding == Encoding::Wbxml {
        nest_embedded_wbxml(&mut root)?;
    }
    encode_element(&root, encoding)
}

/// Replace element content of every `Data` by OPAQUE nested WBXML.
fn nest_embedded_wbxml(e: &mut Element) -> Result<(), EncodeError> {
    let is_data = e.name == "Data";
    for node in &mut e.content {
        if let Node::Element(child) = node {
            if is_data {
                *node = Node::Opaque(wbxml::encode(child)?);
            } else {
                nest_embedded_wbxml(child)?;
            }
        }
    }
    Ok(())
}

/// Encode an element tree.
pub fn encode_element(root: &Element, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
    Ok(match encoding {
        Encoding::Xml => xml::encode(root),
        Encoding::Wbxml => wbxml::encode(root)?,
    })
}

// ---------------------------------------------------------------------------------------------
// model -> element

fn leaf(name: &'static str, text: impl Into<String>) -> Element {
    Element::syncml(name).text(text)
}

fn num_leaf(name: &'static str, n: impl std::fmt::Display) -> Element {
    Element::syncml(name).text(n.to_string())
}

fn location_el(name: &'static str, loc: &Location) -> Element {
    let mut e = Element::syncml(name).child(leaf("LocURI", loc.loc_uri.as_str()));
    if let Some(n) = &loc.loc_name {
        e.push(leaf("LocName", n.as_str()));
    }
    e
}

fn meta_el(meta: &Meta) -> Element {
    let mut e = Element::syncml("Meta");
    let mut put = |name: &'static str, v: Option<Cow<'_, str>>| {
        if let Some(v) = v {
            e.push(Element::metinf(name).text(v.into_owned()));
        }
    };
    put("Format", meta.format.as_deref().map(Cow::Borrowed));
    put("Type", meta.type_.as_deref().map(Cow::Borrowed));
    put("Mark", meta.mark.as_deref().map(Cow::Borrowed));
    put("Size", meta.size.map(|n| Cow::Owned(n.to_string())));
    put("NextNonce", meta.next_nonce.as_deref().map(Cow::Borrowed));
    put("Version", meta.version.as_deref().map(Cow::Borrowed));
    put(
        "MaxMsgSize",
        meta.max_msg_size.map(|n| Cow::Owned(n.to_string())),
    );
    put(
        "MaxObjSize",
        meta.max_obj_size.map(|n| Cow::Owned(n.to_string())),
    );
    put("EMI", meta.emi.as_deref().map(Cow::Borrowed));
    e
}

fn cred_el(cred: &Cred) -> Element {
    Element::syncml("Cred")
        .child(meta_el(&cred.meta))
        .child(leaf("Data", cred.data.as_str()))
}

fn data_el(data: &Data) -> Element {
    let mut e = Element::syncml("Data");
    match data {
        Data::Text(t) => e.content.push(Node::Text(t.clone())),
        Data::Binary(b) => e.content.push(Node::Opaque(b.clone())),
        Data::Xml(x) => e.content.push(Node::Element(x.clone())),
    }
    e
}

fn item_el(item: &Item) -> Element {
    let mut e = Element::syncml("Item");
    if let Some(t) = &item.target {
        e.push(location_el("Target", t));
    }
    if let Some(s) = &item.source {
        e.push(location_el("Source", s));
    }
    if let Some(m) = &item.meta {
        e.push(meta_el(m));
    }
    if let Some(d) = &item.data {
        e.push(data_el(d));
    }
    if item.more_data {
        e.push(Element::syncml("MoreData"));
    }
    e
}

fn push_common(e: &mut Element, cmd_id: u32, no_resp: bool) {
    e.push(num_leaf("CmdID", cmd_id));
    if no_resp {
        e.push(Element::syncml("NoResp"));
    }
}

fn item_cmd_el(name: &'static str, c: &ItemCmd) -> Element {
    let mut e = Element::syncml(name);
    push_common(&mut e, c.cmd_id, c.no_resp);
    if let Some(cred) = &c.cred {
        e.push(cred_el(cred));
    }
    if let Some(m) = &c.meta {
        e.push(meta_el(m));
    }
    if let Some(corr) = &c.correlator {
        e.push(leaf("Correlator", corr.as_str()));
    }
    for i in &c.items {
        e.push(item_el(i));
    }
    e
}

fn command_el(cmd: &Command) -> Element {
    match cmd {
        Command::Alert(a) => {
            let mut e = Element::syncml("Alert");
            push_common(&mut e, a.cmd_id, a.no_resp);
            e.push(num_leaf("Data", a.code));
            if let Some(c) = &a.correlator {
                e.push(leaf("Correlator", c.as_str()));
            }
            for i in &a.items {
                e.push(item_el(i));
            }
            e
        }
        Command::Add(c) => item_cmd_el("Add", c),
        Command::Replace(c) => item_cmd_el("Replace", c),
        Command::Delete(c) => item_cmd_el("Delete", c),
        Command::Get(c) => item_cmd_el("Get", c),
        Command::Exec(c) => item_cmd_el("Exec", c),
        Command::Copy(c) => item_cmd_el("Copy", c),
        Command::Atomic(c) => container_el("Atomic", c),
        Command::Sequence(c) => container_el("Sequence", c),
        Command::Status(s) => {
            let mut e = Element::syncml("Status");
            e.push(num_leaf("CmdID", s.cmd_id));
            e.push(num_leaf("MsgRef", s.msg_ref));
            e.push(num_leaf("CmdRef", s.cmd_ref));
            e.push(leaf("Cmd", s.cmd.as_str()));
            for t in &s.target_refs {
                e.push(leaf("TargetRef", t.as_str()));
            }
            for t in &s.source_refs {
                e.push(leaf("SourceRef", t.as_str()));
            }
            if let Some(c) = &s.cred {
                e.push(cred_el(c));
            }
            if let Some(ch) = &s.chal {
                e.push(Element::syncml("Chal").child(meta_el(&ch.meta)));
            }
            e.push(num_leaf("Data", s.code));
            for i in &s.items {
                e.push(item_el(i));
            }
            e
        }
        Command::Results(r) => {
            let mut e = Element::syncml("Results");
            e.push(num_leaf("CmdID", r.cmd_id));
            e.push(num_leaf("MsgRef", r.msg_ref));
            e.push(num_leaf("CmdRef", r.cmd_ref));
            if let Some(m) = &r.meta {
                e.push(meta_el(m));
            }
            for t in &r.target_refs {
                e.push(leaf("TargetRef", t.as_str()));
            }
            for t in &r.source_refs {
                e.push(leaf("SourceRef", t.as_str()));
            }
            for i in &r.items {
                e.push(item_el(i));
            }
            e
        }
    }
}

fn container_el(name: &'static str, c: &Container) -> Element {
    let mut e = Element::syncml(name);
    push_common(&mut e, c.cmd_id, c.no_resp);
    if let Some(m) = &c.meta {
        e.push(meta_el(m));
    }
    for k in &c.commands {
        e.push(command_el(k));
    }
    e
}

/// The element tree of a message (root `SyncML`).
pub fn to_element(msg: &SyncMl) -> Element {
    let h = &msg.hdr;
    let mut hdr = Element::syncml("SyncHdr")
        .child(leaf("VerDTD", h.ver_dtd.as_str()))
        .child(leaf("VerProto", h.ver_proto.as_str()))
        .child(leaf("SessionID", h.session_id.as_str()))
        .child(num_leaf("MsgID", h.msg_id))
        .child(location_el("Target", &h.target))
        .child(location_el("Source", &h.source));
    if let Some(r) = &h.resp_uri {
        hdr.push(leaf("RespURI", r.as_str()));
    }
    if h.no_resp {
        hdr.push(Element::syncml("NoResp"));
    }
    if let Some(c) = &h.cred {
        hdr.push(cred_el(c));
    }
    if let Some(m) = &h.meta {
        hdr.push(meta_el(m));
    }
    let mut body = Element::syncml("SyncBody");
    for c in &msg.body.commands {
        body.push(command_el(c));
    }
    if msg.body.final_ {
        body.push(Element::syncml("Final"));
    }
    Element::syncml("SyncML").child(hdr).child(body)
}

// ---------------------------------------------------------------------------------------------
// element -> model (lenient: unknown elements are ignored, namespaces are not required)

/// Where the mapper is, for error messages; the path string is only built when an error occurs.
struct Ctx<'a> {
    parent: &'a str,
    name: &'a str,
}

impl Ctx<'_> {
    fn path(&self) -> String {
        if self.name.is_empty() {
            self.parent.to_owned()
        } else {
            format!("{}/{}", self.parent, self.name)
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_num<T: std::str::FromStr>(
    ctx: &Ctx<'_>,
    element: &'static str,
    text: &str,
) -> Result<T, ModelError> {
    text.trim().parse().map_err(|_| ModelError::BadNumber {
        path: ctx.path(),
        element,
        value: truncate(text),
    })
}

fn req<'e>(ctx: &Ctx<'_>, e: &'e Element, name: &'static str) -> Result<&'e Element, ModelError> {
    e.find(name).ok_or_else(|| ModelError::Missing {
        path: ctx.path(),
        element: name,
    })
}

fn opt_text(e: &Element, name: &str) -> Option<String> {
    e.find(name).map(Element::text_content)
}

fn req_num<T: std::str::FromStr>(
    ctx: &Ctx<'_>,
    e: &Element,
    name: &'static str,
) -> Result<T, ModelError> {
    parse_num(ctx, name, &req(ctx, e, name)?.text_content())
}

fn location(ctx: &Ctx<'_>, e: &Element) -> Result<Location, ModelError> {
    Ok(Location {
        loc_uri: req(ctx, e, "LocURI")?.text_content(),
        loc_name: opt_text(e, "LocName"),
    })
}

fn meta(ctx: &Ctx<'_>, e: &Element) -> Result<Meta, ModelError> {
    // Some encoders wrap the fields in <MetInf>.
    let e = e.find("MetInf").unwrap_or(e);
    let num = |name: &'static str| -> Result<Option<u64>, ModelError> {
        e.find(name)
            .map(|x| parse_num(ctx, name, &x.text_content()))
            .transpose()
    };
    Ok(Meta {
        format: opt_text(e, "Format"),
        type_: opt_text(e, "Type"),
        mark: opt_text(e, "Mark"),
        size: num("Size")?,
        next_nonce: opt_text(e, "NextNonce"),
        max_msg_size: num("MaxMsgSize")?,
        max_obj_size: num("MaxObjSize")?,
        version: opt_text(e, "Version"),
        emi: opt_text(e, "EMI"),
    })
}

fn opt_meta(ctx: &Ctx<'_>, e: &Element) -> Result<Option<Meta>, ModelError> {
    e.find("Meta").map(|m| meta(ctx, m)).transpose()
}

fn cred(ctx: &Ctx<'_>, e: &Element) -> Result<Cred, ModelError> {
    Ok(Cred {
        meta: opt_meta(ctx, e)?.unwrap_or_default(),
        data: req(ctx, e, "Data")?.text_content(),
    })
}

fn data(ctx: &Ctx<'_>, e: &Element, limits: &Limits) -> Result<Data, ModelError> {
    if let Some(child) = e.children().next() {
        return Ok(Data::Xml(child.clone()));
    }
    let opaque: Vec<&[u8]> = e
        .content
        .iter()
        .filter_map(|n| match n {
            Node::Opaque(b) => Some(b.as_slice()),
            _ => None,
        })
        .collect();
    if let [single] = opaque.as_slice() {
        if wbxml::looks_like_wbxml(single) {
            let nested = wbxml::decode(single, limits).map_err(|err| ModelError::Embedded {
                path: ctx.path(),
                reason: err.to_string(),
            })?;
            return Ok(Data::Xml(nested));
        }
        return Ok(match std::str::from_utf8(single) {
            Ok(s) => Data::Text(s.to_owned()),
            Err(_) => Data::Binary(single.to_vec()),
        });
    }
    // Leaf text is kept exactly: values may legitimately start or end with spaces.
    Ok(Data::Text(e.raw_text()))
}

fn item(ctx: &Ctx<'_>, e: &Element, limits: &Limits) -> Result<Item, ModelError> {
    Ok(Item {
        target: e.find("Target").map(|t| location(ctx, t)).transpose()?,
        source: e.find("Source").map(|t| location(ctx, t)).transpose()?,
        meta: opt_meta(ctx, e)?,
        data: e.find("Data").map(|d| data(ctx, d, limits)).transpose()?,
        more_data: e.find("MoreData").is_some(),
    })
}

fn items(ctx: &Ctx<'_>, e: &Element, limits: &Limits) -> Result<Vec<Item>, ModelError> {
    e.children()
        .filter(|c| c.name == "Item")
        .map(|c| item(ctx, c, limits))
        .collect()
}

fn texts(e: &Element, name: &str) -> Vec<String> {
    e.children()
        .filter(|c| c.name == name)
        .map(Element::text_content)
        .collect()
}

fn item_cmd(ctx: &Ctx<'_>, e: &Element, limits: &Limits) -> Result<ItemCmd, ModelError> {
    Ok(ItemCmd {
        cmd_id: req_num(ctx, e, "CmdID")?,
        no_resp: e.find("NoResp").is_some(),
        cred: e.find("Cred").map(|c| cred(ctx, c)).transpose()?,
        meta: opt_meta(ctx, e)?,
        correlator: opt_text(e, "Correlator"),
        items: items(ctx, e, limits)?,
    })
}

fn container(ctx: &Ctx<'_>, e: &Element, limits: &Limits) -> Result<Container, ModelError> {
    let path = ctx.path();
    let inner = Ctx {
        parent: &path,
        name: "",
    };
    Ok(Container {
        cmd_id: req_num(ctx, e, "CmdID")?,
        no_resp: e.find("NoResp").is_some(),
        meta: opt_meta(ctx, e)?,
        commands: commands(&inner, e, limits)?,
    })
}

fn command(ctx: &Ctx<'_>, e: &Element, limits: &Limits) -> Result<Option<Command>, ModelError> {
    let ctx = &Ctx {
        parent: ctx.parent,
        name: e.name.as_ref(),
    };
    Ok(Some(match e.name.as_ref() {
        "Alert" => Command::Alert(Alert {
            cmd_id: req_num(ctx, e, "CmdID")?,
            no_resp: e.find("NoResp").is_some(),
            code: req_num(ctx, e, "Data")?,
            correlator: opt_text(e, "Correlator"),
            items: items(ctx, e, limits)?,
        }),
        "Add" => Command::Add(item_cmd(ctx, e, limits)?),
        "Replace" => Command::Replace(item_cmd(ctx, e, limits)?),
        "Delete" => Command::Delete(item_cmd(ctx, e, limits)?),
        "Get" => Command::Get(item_cmd(ctx, e, limits)?),
        "Exec" => Command::Exec(item_cmd(ctx, e, limits)?),
        "Copy" => Command::Copy(item_cmd(ctx, e, limits)?),
        "Atomic" => Command::Atomic(container(ctx, e, limits)?),
        "Sequence" => Command::Sequence(container(ctx, e, limits)?),
        "Status" => Command::Status(Status {
            cmd_id: req_num(ctx, e, "CmdID")?,
            msg_ref: req_num(ctx, e, "MsgRef")?,
            cmd_ref: req_num(ctx, e, "CmdRef")?,
            cmd: req(ctx, e, "Cmd")?.text_content(),
            target_refs: texts(e, "TargetRef"),
            source_refs: texts(e, "SourceRef"),
            cred: e.find("Cred").map(|c| cred(ctx, c)).transpose()?,
            chal: e
                .find("Chal")
                .map(|c| {
                    Ok::<_, ModelError>(Chal {
                        meta: opt_meta(ctx, c)?.unwrap_or_default(),
                    })
                })
                .transpose()?,
            code: req_num(ctx, e, "Data")?,
            items: items(ctx, e, limits)?,
        }),
        "Results" => Command::Results(Results {
            cmd_id: req_num(ctx, e, "CmdID")?,
            msg_ref: e
                .find("MsgRef")
                .map(|x| parse_num(ctx, "MsgRef", &x.text_content()))
                .transpose()?
                .unwrap_or(0),
            cmd_ref: req_num(ctx, e, "CmdRef")?,
            meta: opt_meta(ctx, e)?,
            target_refs: texts(e, "TargetRef"),
            source_refs: texts(e, "SourceRef"),
            items: items(ctx, e, limits)?,
        }),
        _ => return Ok(None),
    }))
}

fn commands(ctx: &Ctx<'_>, e: &Element, limits: &Limits) -> Result<Vec<Command>, ModelError> {
    let mut out = Vec::new();
    for c in e.children() {
        if let Some(cmd) = command(ctx, c, limits)? {
            out.push(cmd);
        }
    }
    Ok(out)
}

/// Read a message from its element tree. Unknown elements are ignored (forward compatibility);
/// missing required ones and bad numbers are errors naming the element's path.
pub fn from_element(root: &Element, limits: &Limits) -> Result<SyncMl, ModelError> {
    if root.name != "SyncML" {
        return Err(ModelError::WrongRoot {
            found: truncate(&root.name),
        });
    }
    let top = Ctx {
        parent: "SyncML",
        name: "",
    };
    let h = req(&top, root, "SyncHdr")?;
    let ctx = &Ctx {
        parent: "SyncML/SyncHdr",
        name: "",
    };
    let hdr = SyncHdr {
        ver_dtd: req(ctx, h, "VerDTD")?.text_content(),
        ver_proto: req(ctx, h, "VerProto")?.text_content(),
        session_id: req(ctx, h, "SessionID")?.text_content(),
        msg_id: req_num(ctx, h, "MsgID")?,
        target: location(ctx, req(ctx, h, "Target")?)?,
        source: location(ctx, req(ctx, h, "Source")?)?,
        resp_uri: opt_text(h, "RespURI"),
        no_resp: h.find("NoResp").is_some(),
        cred: h.find("Cred").map(|c| cred(ctx, c)).transpose()?,
        meta: opt_meta(ctx, h)?,
    };
    let b = req(&top, root, "SyncBody")?;
    let ctx = &Ctx {
        parent: "SyncML/SyncBody",
        name: "",
    };
    Ok(SyncMl {
        hdr,
        body: SyncBody {
            commands: commands(ctx, b, limits)?,
            final_: b.find("Final").is_some(),
        },
    })
}

/// True when the element is in the DDF namespace (a TNDS document).
pub fn is_tnds(e: &Element) -> bool {
    e.ns == Namespace::Ddf || e.name == "MgmtTree"
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SyncMl {
        let mut hdr = SyncHdr::new(
            "4f2a",
            1,
            Location::new("https://dms.example.com/dm"),
            Location::named("IMEI:493005100592800", "gw-user"),
        );
        hdr.cred = Some(Cred {
            meta: Meta::typed("syncml:auth-md5", "b64"),
            data: "Zm9vYmFy".into(),
        });
        hdr.meta = Some(Meta {
            max_msg_size: Some(16_000),
            ..Meta::default()
        });
        SyncMl::new(hdr)
            .with(Command::alert(alert_code::CLIENT_INITIATED))
            .with(Command::replace_chr(
                "./DevInfo/DevId",
                "IMEI:493005100592800",
            ))
            .with(Command::Alert(Alert {
                code: alert_code::GENERIC,
                correlator: Some("c-1".into()),
                items: vec![
                    Item::source("./DeviceInventory/d1")
                        .with_meta(Meta {
                            type_: Some("urn:oma:at:oma-gwmo:deviceattached:1.0".into()),
                            format: Some("chr".into()),
                            mark: Some("informational".into()),
                            ..Meta::default()
                        })
                        .with_data("IMEI:1 "),
                ],
                ..Alert::default()
            }))
            .with(Command::Atomic(Container {
                commands: vec![
                    Command::get("./DevInfo"),
                    Command::Exec(ItemCmd {
                        correlator: Some("x".into()),
                        items: vec![Item::target("./FUMO/Update")],
                        ..ItemCmd::default()
                    }),
                ],
                ..Container::default()
            }))
            .with(Command::Status(Status {
                msg_ref: 1,
                cmd_ref: 0,
                cmd: "SyncHdr".into(),
                target_refs: vec!["IMEI:1".into()],
                source_refs: vec!["https://dms".into()],
                chal: Some(Chal {
                    meta: Meta {
                        type_: Some("syncml:auth-md5".into()),
                        format: Some("b64".into()),
                        next_nonce: Some("AAEC".into()),
                        ..Meta::default()
                    },
                }),
                code: 407,
                ..Status::default()
            }))
            .with(Command::Results(Results {
                msg_ref: 2,
                cmd_ref: 3,
                items: vec![Item {
                    source: Some(Location::new("./DevInfo/Mod")),
                    meta: Some(Meta::format("chr")),
                    data: Some(Data::Text("X1".into())),
                    ..Item::default()
                }],
                ..Results::default()
            }))
            .finish()
    }

    #[test]
    fn element_round_trip() {
        let m = sample();
        let back = from_element(&to_element(&m), &Limits::default()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn wrong_root_and_missing_fields_are_named() {
        let err = from_element(&Element::syncml("Foo"), &Limits::default()).unwrap_err();
        assert!(matches!(err, ModelError::WrongRoot { .. }));
        let root = Element::syncml("SyncML").child(Element::syncml("SyncHdr"));
        let err = from_element(&root, &Limits::default()).unwrap_err();
        assert_eq!(
            err,
            ModelError::Missing {
                path: "SyncML/SyncHdr".into(),
                element: "VerDTD"
            }
        );
    }

    #[test]
    fn bad_numbers_are_named() {
        let mut e = to_element(&sample());
        // Corrupt the first CmdID in the body.
        if let Some(Node::Element(body)) = e.content.get_mut(1)
            && let Some(Node::Element(alert)) = body.content.get_mut(0)
        {
            alert.content[0] = Node::Element(Element::syncml("CmdID").text("x1"));
        }
        let err = from_element(&e, &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, ModelError::BadNumber { element: "CmdID", path, .. } if path == "SyncML/SyncBody/Alert"),
            "{err:?}"
        );
    }

    #[test]
    fn encoding_from_content_type_and_sniffing() {
        assert_eq!(
            Encoding::from_content_type("application/vnd.syncml.dm+WBXML; charset=x"),
            Some(Encoding::Wbxml)
        );
        assert_eq!(Encoding::from_content_type(MIME_XML), Some(Encoding::Xml));
        assert_eq!(Encoding::from_content_type("text/plain"), None);
        assert_eq!(Encoding::sniff(&[0x02, 0x00]), Encoding::Wbxml);
        assert_eq!(Encoding::sniff(b"<?xml"), Encoding::Xml);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn word() -> impl Strategy<Value = String> {
            "[A-Za-z0-9:./_-]{1,12}"
        }

        fn text() -> impl Strategy<Value = String> {
            "[ -~\u{a0}-\u{2000}]{0,24}"
        }

        fn meta() -> impl Strategy<Value = Meta> {
            (
                proptest::option::of(word()),
                proptest::option::of(word()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(word()),
            )
                .prop_map(|(format, type_, size, next_nonce)| Meta {
                    format,
                    type_,
                    size: size.map(u64::from),
                    next_nonce,
                    ..Meta::default()
                })
        }

        fn data() -> impl Strategy<Value = Data> {
            prop_oneof![
                text().prop_map(Data::Text),
                Just(Data::Xml(
                    Element::new(Namespace::Ddf, "MgmtTree")
                        .child(Element::new(Namespace::Ddf, "VerDTD").text("1.2"))
                )),
            ]
        }

        fn item() -> impl Strategy<Value = Item> {
            (
                proptest::option::of(word()),
                proptest::option::of(word()),
                proptest::option::of(meta()),
                proptest::option::of(data()),
                any::<bool>(),
            )
                .prop_map(|(t, s, meta, data, more_data)| Item {
                    target: t.map(Location::new),
                    source: s.map(Location::new),
                    meta,
                    data,
                    more_data,
                })
        }

        fn item_cmd() -> impl Strategy<Value = ItemCmd> {
            (
                any::<bool>(),
                proptest::option::of(meta()),
                proptest::option::of(word()),
                proptest::collection::vec(item(), 0..3),
            )
                .prop_map(|(no_resp, meta, correlator, items)| ItemCmd {
                    no_resp,
                    meta,
                    correlator,
                    items,
                    ..ItemCmd::default()
                })
        }

        fn command() -> impl Strategy<Value = Command> {
            let leaf = prop_oneof![
                (
                    1000u16..1300,
                    proptest::option::of(word()),
                    proptest::collection::vec(item(), 0..2)
                )
                    .prop_map(|(code, correlator, items)| Command::Alert(Alert {
                        code,
                        correlator,
                        items,
                        ..Alert::default()
                    })),
                item_cmd().prop_map(Command::Add),
                item_cmd().prop_map(Command::Replace),
                item_cmd().prop_map(Command::Delete),
                item_cmd().prop_map(Command::Get),
                item_cmd().prop_map(Command::Exec),
                (
                    any::<u32>(),
                    any::<u32>(),
                    word(),
                    100u16..600,
                    proptest::collection::vec(word(), 0..2)
                )
                    .prop_map(|(msg_ref, cmd_ref, cmd, code, target_refs)| {
                        Command::Status(Status {
                            msg_ref,
                            cmd_ref,
                            cmd,
                            code,
                            target_refs,
                            ..Status::default()
                        })
                    }),
                (
                    any::<u32>(),
                    any::<u32>(),
                    proptest::collection::vec(item(), 0..3)
                )
                    .prop_map(|(msg_ref, cmd_ref, items)| Command::Results(
                        Results {
                            msg_ref,
                            cmd_ref,
                            items,
                            ..Results::default()
                        }
                    )),
            ];
            leaf.prop_recursive(2, 8, 3, |inner| {
                proptest::collection::vec(inner, 0..3).prop_map(|commands| {
                    Command::Atomic(Container {
                        commands,
                        ..Container::default()
                    })
                })
            })
        }

        fn message() -> impl Strategy<Value = SyncMl> {
            (
                word(),
                any::<u32>(),
                word(),
                word(),
                proptest::option::of(word()),
                proptest::collection::vec(command(), 0..6),
                any::<bool>(),
            )
                .prop_map(|(sid, msg_id, target, source, name, cmds, fin)| {
                    let mut source = Location::new(source);
                    source.loc_name = name;
                    let mut m =
                        SyncMl::new(SyncHdr::new(sid, msg_id, Location::new(target), source));
                    for c in cmds {
                        m.push(c);
                    }
                    m.body.final_ = fin;
                    m
                })
        }

        proptest! {
            #[test]
            fn model_xml_model(m in message()) {
                let bytes = encode(&m, Encoding::Xml).unwrap();
                prop_assert_eq!(decode(&bytes, &Limits::default()).unwrap(), m);
            }

            #[test]
            fn model_wbxml_model(m in message()) {
                let bytes = encode(&m, Encoding::Wbxml).unwrap();
                prop_assert_eq!(decode(&bytes, &Limits::default()).unwrap(), m);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = decode(&bytes, &Limits::default());
                let mut wb = vec![0x02, 0x00, 0x12, 0x01, 0x6a, 0x00];
                wb.extend_from_slice(&bytes);
                let _ = decode(&wb, &Limits::default());
            }
        }
    }
}
