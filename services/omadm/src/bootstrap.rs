//! DM-profile bootstrap messages (OMA-TS-DM_Bootstrap 1.2): build, parse, check and apply them, and
//! sign or verify a pushed bootstrap with the ProvBoot `SEC`/`MAC` content-type parameters.

use thiserror::Error;

use crate::auth::{self, AuthError, PushKeyMaterial, PushParams, Sec};
use crate::codec::{self, Encoding, MIME_TNDS_WBXML, MIME_TNDS_XML};
use crate::element::{Element, Limits};
use crate::mo::{DmAcc, MoError};
use crate::model::*;
use crate::tnds::{MgmtTree, TndsError};
use crate::tree::{Format, NewNode, Tree, TreeError};
use crate::uri::DmUri;

/// The Inbox URI that DM 1.2 bootstraps Add their TNDS object to.
pub const INBOX: &str = "./Inbox";

/// A bootstrap message that cannot be used.
#[derive(Debug, Error)]
pub enum BootstrapError {
    /// The bytes are not a SyncML DM message.
    #[error("not a DM message: {0}")]
    Decode(#[from] codec::DecodeError),
    /// The message carries no bootstrap command.
    #[error("the message carries no Add to ./Inbox or ./DMAcc")]
    Empty,
    /// A command other than Add/Replace (possibly inside Atomic/Sequence) appeared.
    #[error("{cmd} is not allowed in a bootstrap message")]
    UnexpectedCommand {
        /// The command's name.
        cmd: &'static str,
    },
    /// An Add targets a node outside `./Inbox` and `./DMAcc`.
    #[error("bootstrap may not write {uri}")]
    ForbiddenTarget {
        /// The URI (truncated).
        uri: String,
    },
    /// The TNDS object inside `./Inbox` is malformed.
    #[error("TNDS: {0}")]
    Tnds(#[from] TndsError),
    /// An embedded TNDS object could not be decoded.
    #[error("embedded TNDS object: {reason}")]
    Embedded {
        /// Why.
        reason: String,
    },
    /// A direct Add could not be applied.
    #[error("tree: {0}")]
    Tree(#[from] TreeError),
    /// The accounts in the bootstrap are invalid.
    #[error("account: {0}")]
    Account(#[from] MoError),
    /// The push security parameters are missing or wrong.
    #[error("push security: {0}")]
    Security(#[from] AuthError),
}

/// One node written by a direct (pre-TNDS) Add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectAdd {
    /// The node's URI.
    pub uri: DmUri,
    /// Its Format (`node` for interior nodes).
    pub format: Format,
    /// Its value (decoded bytes for b64/bin).
    pub value: Vec<u8>,
}

/// The content of a bootstrap message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// DM 1.2: a TNDS `MgmtTree` added to `./Inbox`.
    Tnds(MgmtTree),
    /// Older senders: the `./DMAcc/...` nodes added one by one.
    Direct(Vec<DirectAdd>),
}

impl Bootstrap {
    /// Decode and check a bootstrap message (XML or WBXML, sniffed).
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Bootstrap, BootstrapError> {
        let msg = codec::decode(bytes, limits)?;
        Bootstrap::from_message(&msg, limits)
    }

    /// Read the bootstrap out of a decoded message. Only Add and Replace (also inside Atomic or
    /// Sequence) are allowed, only to `./Inbox` (with TNDS) or under `./DMAcc`.
    pub fn from_message(msg: &SyncMl, limits: &Limits) -> Result<Bootstrap, BootstrapError> {
        let mut tnds: Option<MgmtTree> = None;
        let mut direct = Vec::new();
        collect(&msg.body.commands, limits, &mut tnds, &mut direct)?;
        match tnds {
            Some(t) if direct.is_empty() => Ok(Bootstrap::Tnds(t)),
            Some(_) => Err(BootstrapError::UnexpectedCommand { cmd: "Add" }),
            None if direct.is_empty() => Err(BootstrapError::Empty),
            None => Ok(Bootstrap::Direct(direct)),
        }
    }

    /// Apply to a tree, all or nothing; returns the URIs created.
    pub fn apply(&self, tree: &mut Tree) -> Result<Vec<DmUri>, BootstrapError> {
        match self {
            Bootstrap::Tnds(t) => Ok(t.apply(tree)?),
            Bootstrap::Direct(adds) => tree.atomic(|t| {
                let mut out = Vec::with_capacity(adds.len());
                for a in adds {
                    let node = if a.format == Format::Node {
                        NewNode::interior()
                    } else {
                        NewNode::leaf(a.format, a.value.clone())
                    };
                    if t.exists(&a.uri) {
                        t.replace(&a.uri, node)?;
                    } else {
                        t.add(&a.uri, node)?;
                        out.push(a.uri.clone());
                    }
                }
                Ok(out)
            }),
        }
    }

    /// The DM accounts the bootstrap carries, read from a scratch tree (the receiver's own tree is
    /// not touched), so that policy can be checked before applying.
    pub fn accounts(&self) -> Result<Vec<DmAcc>, BootstrapError> {
        let mut scratch = Tree::new();
        self.apply(&mut scratch)?;
        Ok(DmAcc::all(&scratch)?.into_iter().map(|(_, a)| a).collect())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(96).collect()
}

fn embedded_tnds(data: &Data, limits: &Limits) -> Result<Element, BootstrapError> {
    let embedded = |reason: String| BootstrapError::Embedded { reason };
    match data {
        Data::Xml(e) => Ok(e.clone()),
        // XML carried as text (often in CDATA).
        Data::Text(t) => {
            crate::xml::decode(t.trim().as_bytes(), limits).map_err(|e| embedded(e.to_string()))
        }
        Data::Binary(b) => codec::decode_element(b, Encoding::sniff(b), limits)
            .map_err(|e| embedded(e.to_string())),
    }
}

fn collect(
    cmds: &[Command],
    limits: &Limits,
    tnds: &mut Option<MgmtTree>,
    direct: &mut Vec<DirectAdd>,
) -> Result<(), BootstrapError> {
    for c in cmds {
        match c {
            Command::Add(k) | Command::Replace(k) => {
                for item in &k.items {
                    let raw = item.target_uri().unwrap_or("");
                    let uri = DmUri::try_from(raw)
                        .map_err(|_| BootstrapError::ForbiddenTarget { uri: truncate(raw) })?;
                    let meta = item.meta.as_ref().or(k.meta.as_ref());
                    if uri.as_str() == INBOX {
                        let data = item.data.as_ref().ok_or(BootstrapError::Empty)?;
                        let root = embedded_tnds(data, limits)?;
                        let tree = MgmtTree::from_element(&root, limits)?;
                        match tnds {
                            Some(existing) => existing.nodes.extend(tree.nodes),
                            None => *tnds = Some(tree),
                        }
                    } else if uri.segments().next() == Some("DMAcc") {
                        direct.push(direct_add(uri, meta, item.data.as_ref())?);
                    } else {
                        return Err(BootstrapError::ForbiddenTarget { uri: truncate(raw) });
                    }
                }
            }
            Command::Atomic(k) | Command::Sequence(k) => {
                collect(&k.commands, limits, tnds, direct)?
            }
            // A bootstrap message may carry the server's Status answers (none expected) and nothing else.
            Command::Status(_) => {}
            other => return Err(BootstrapError::UnexpectedCommand { cmd: other.name() }),
        }
    }
    Ok(())
}

fn direct_add(
    uri: DmUri,
    meta: Option<&Meta>,
    data: Option<&Data>,
) -> Result<DirectAdd, BootstrapError> {
    let format = meta
        .and_then(|m| m.format.as_deref())
        .and_then(Format::parse)
        .unwrap_or(if data.is_some() {
            Format::Chr
        } else {
            Format::Node
        });
    let value = match data {
        None => Vec::new(),
        Some(Data::Xml(_)) => {
            return Err(BootstrapError::Embedded {
                reason: format!("{}: markup where a value was expected", uri.as_str()),
            });
        }
        Some(d) => d
            .value_bytes(format.is_binary())
            .map_err(|e| BootstrapError::Embedded {
                reason: format!("{}: {e}", uri.as_str()),
            })?,
    };
    Ok(DirectAdd { uri, format, value })
}

/// Build a DM-profile bootstrap message: SessionID 0, MsgID 0, no Cred, CmdID 1 an Add to `./Inbox`
/// carrying `tree` as TNDS (XML inline, or nested WBXML in a WBXML message).
pub fn build_tnds(target: &str, source: &str, tree: &MgmtTree, encoding: Encoding) -> SyncMl {
    let (mime, format) = match encoding {
        Encoding::Xml => (MIME_TNDS_XML, "xml"),
        Encoding::Wbxml => (MIME_TNDS_WBXML, "bin"),
    };
    let add = Command::Add(ItemCmd {
        items: vec![Item {
            target: Some(Location::new(INBOX)),
            meta: Some(Meta::typed(mime, format)),
            data: Some(Data::Xml(tree.to_element())),
            ..Item::default()
        }],
        ..ItemCmd::default()
    });
    SyncMl::new(SyncHdr::new(
        "0",
        0,
        Location::new(target),
        Location::new(source),
    ))
    .with(add)
    .finish()
}

/// Build an older-style bootstrap: one Add per node of the subtree at `uri` (e.g. `./DMAcc/srv1`), in
/// depth-first order, inside one Atomic.
pub fn build_direct(
    target: &str,
    source: &str,
    tree: &Tree,
    uri: &DmUri,
) -> Result<SyncMl, BootstrapError> {
    use base64::Engine as _;
    let mut adds = Vec::new();
    for (u, node) in tree.walk(uri)? {
        let mut item = Item::target(u.as_str());
        if node.is_interior() {
            item.meta = Some(Meta::format("node"));
        } else {
            let value = node.value.as_deref().unwrap_or_default();
            let data = if node.format.is_binary() {
                base64::engine::general_purpose::STANDARD.encode(value)
            } else {
                String::from_utf8_lossy(value).into_owned()
            };
            let format = if node.format.is_binary() {
                Format::B64
            } else {
                node.format
            };
            item.meta = Some(Meta::format(format.as_str()));
            item.data = Some(Data::Text(data));
        }
        adds.push(Command::Add(ItemCmd {
            items: vec![item],
            ..ItemCmd::default()
        }));
    }
    Ok(SyncMl::new(SyncHdr::new(
        "0",
        0,
        Location::new(target),
        Location::new(source),
    ))
    .with(Command::Atomic(Container {
        commands: adds,
        ..Container::default()
    }))
    .finish())
}

/// The Content-Type for a pushed bootstrap body signed with `sec`: `mime; SEC=...; MAC=...`.
pub fn sign_push(
    mime: &str,
    sec: Sec,
    material: &PushKeyMaterial,
    body: &[u8],
) -> Result<String, BootstrapError> {
    let mac = auth::push_mac(sec, material, body)?;
    Ok(auth::format_content_type(mime, sec, &mac))
}

/// Verify a pushed bootstrap: `content_type` must carry `SEC` and a `MAC` that matches `body` under
/// the key `material` gives. Returns the SEC method used.
pub fn verify_push(
    content_type: &str,
    material: &PushKeyMaterial,
    body: &[u8],
) -> Result<Sec, BootstrapError> {
    let params = PushParams::parse(content_type)?;
    Ok(params.verify(material, body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mo::{AuthLevel, AuthType};
    use crate::secret::Secret;

    fn server_tree() -> Tree {
        let mut t = Tree::new();
        let xml = br#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>
          <Node><NodeName>DMAcc</NodeName>
            <Node><NodeName>dms2</NodeName>
              <Node><NodeName>AppID</NodeName><Value>w7</Value></Node>
              <Node><NodeName>ServerID</NodeName><Value>dms-2</Value></Node>
              <Node><NodeName>Name</NodeName><Value>Second server</Value></Node>
              <Node><NodeName>AppAddr</NodeName>
                <Node><NodeName>A</NodeName>
                  <Node><NodeName>Addr</NodeName><Value>https://dms2.example.com/dm</Value></Node>
                  <Node><NodeName>AddrType</NodeName><Value>URI</Value></Node>
                </Node>
              </Node>
              <Node><NodeName>AAuthPref</NodeName><Value>DIGEST</Value></Node>
              <Node><NodeName>AppAuth</NodeName>
                <Node><NodeName>C</NodeName>
                  <Node><NodeName>AAuthLevel</NodeName><Value>CLCRED</Value></Node>
                  <Node><NodeName>AAuthType</NodeName><Value>DIGEST</Value></Node>
                  <Node><NodeName>AAuthName</NodeName><Value>gw-1</Value></Node>
                  <Node><NodeName>AAuthSecret</NodeName><Value>pa55</Value></Node>
                </Node>
              </Node>
            </Node>
          </Node></MgmtTree>"#;
        let root = crate::xml::decode(xml, &Limits::default()).unwrap();
        MgmtTree::from_element(&root, &Limits::default())
            .unwrap()
            .apply(&mut t)
            .unwrap();
        t
    }

    fn check_account(accounts: &[DmAcc]) {
        assert_eq!(accounts.len(), 1);
        let a = &accounts[0];
        assert_eq!(a.server_id, "dms-2");
        assert_eq!(a.server_url(), Some("https://dms2.example.com/dm"));
        let c = a.client_credentials().unwrap();
        assert_eq!(c.level, AuthLevel::Clcred);
        assert_eq!(c.auth_type, AuthType::Digest);
        assert_eq!(c.secret.as_ref().map(Secret::expose), Some("pa55"));
    }

    #[test]
    fn tnds_bootstrap_round_trips_in_both_encodings() {
        let source = server_tree();
        let acc = DmUri::try_from("./DMAcc/dms2").unwrap();
        let tnds = MgmtTree::from_subtree(&source, &acc).unwrap();
        for enc in [Encoding::Xml, Encoding::Wbxml] {
            let msg = build_tnds("gw-1", "https://bs.example.com", &tnds, enc);
            assert!(crate::validate::validate(&msg).is_empty());
            let bytes = codec::encode(&msg, enc).unwrap();
            let b = Bootstrap::decode(&bytes, &Limits::default()).unwrap();
            assert!(matches!(b, Bootstrap::Tnds(_)));
            check_account(&b.accounts().unwrap());
            let mut gw = Tree::new();
            let added = b.apply(&mut gw).unwrap();
            assert!(added.iter().any(|u| u.as_str() == "./DMAcc/dms2/ServerID"));
        }
    }

    #[test]
    fn direct_adds_bootstrap() {
        let source = server_tree();
        let acc = DmUri::try_from("./DMAcc/dms2").unwrap();
        let msg = build_direct("gw-1", "bs", &source, &acc).unwrap();
        let bytes = codec::encode(&msg, Encoding::Xml).unwrap();
        let b = Bootstrap::decode(&bytes, &Limits::default()).unwrap();
        assert!(matches!(b, Bootstrap::Direct(_)));
        check_account(&b.accounts().unwrap());
    }

    #[test]
    fn tnds_as_cdata_text_is_accepted() {
        let msg = br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>
          <SessionID>0</SessionID><MsgID>0</MsgID><Target><LocURI>gw</LocURI></Target><Source><LocURI>bs</LocURI></Source></SyncHdr>
          <SyncBody><Add><CmdID>1</CmdID><Item><Target><LocURI>./Inbox</LocURI></Target>
          <Meta><Type xmlns="syncml:metinf">application/vnd.syncml.dmtnds+xml</Type><Format xmlns="syncml:metinf">xml</Format></Meta>
          <Data><![CDATA[<MgmtTree><VerDTD>1.2</VerDTD><Node><NodeName>DMAcc</NodeName><Node><NodeName>x</NodeName>
          <Node><NodeName>AppID</NodeName><Value>w7</Value></Node><Node><NodeName>ServerID</NodeName><Value>dms-9</Value></Node>
          </Node></Node></MgmtTree>]]></Data></Item></Add><Final/></SyncBody></SyncML>"#;
        let b = Bootstrap::decode(msg, &Limits::default()).unwrap();
        let accounts = b.accounts().unwrap();
        assert_eq!(accounts[0].server_id, "dms-9");
    }

    #[test]
    fn forbidden_commands_and_targets_are_refused() {
        let hdr = SyncHdr::new("0", 0, Location::new("gw"), Location::new("bs"));
        let m = SyncMl::new(hdr.clone()).with(Command::get("./DMAcc"));
        assert!(matches!(
            Bootstrap::from_message(&m, &Limits::default()),
            Err(BootstrapError::UnexpectedCommand { cmd: "Get" })
        ));
        let m = SyncMl::new(hdr.clone()).with(Command::replace_chr("./DevInfo/DevId", "x"));
        assert!(matches!(
            Bootstrap::from_message(&m, &Limits::default()),
            Err(BootstrapError::ForbiddenTarget { .. })
        ));
        let m = SyncMl::new(hdr);
        assert!(matches!(
            Bootstrap::from_message(&m, &Limits::default()),
            Err(BootstrapError::Empty)
        ));
        assert!(matches!(
            Bootstrap::decode(b"<SyncML>", &Limits::default()),
            Err(BootstrapError::Decode(_))
        ));
    }

    #[test]
    fn malformed_tnds_leaves_the_tree_unchanged() {
        let hdr = SyncHdr::new("0", 0, Location::new("gw"), Location::new("bs"));
        let bad = Element::new(crate::element::Namespace::Ddf, "MgmtTree")
            .child(Element::new(crate::element::Namespace::Ddf, "Bogus").text("x"));
        let m = SyncMl::new(hdr).with(Command::Add(ItemCmd {
            items: vec![Item::target(INBOX).with_data(Data::Xml(bad))],
            ..ItemCmd::default()
        }));
        assert!(matches!(
            Bootstrap::from_message(&m, &Limits::default()),
            Err(BootstrapError::Tnds(_))
        ));
    }

    #[test]
    fn push_signature_is_checked() {
        let body = b"bootstrap body";
        let material = PushKeyMaterial::pin(Secret::new("1234"));
        let ct = sign_push(codec::MIME_WBXML, Sec::UserPin, &material, body).unwrap();
        assert_eq!(verify_push(&ct, &material, body).unwrap(), Sec::UserPin);
        assert!(verify_push(&ct, &material, b"tampered").is_err());
        assert!(verify_push(&ct, &PushKeyMaterial::pin(Secret::new("9999")), body).is_err());
        assert!(verify_push(codec::MIME_WBXML, &material, body).is_err());
    }
}
