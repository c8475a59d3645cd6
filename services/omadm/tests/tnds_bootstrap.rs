//! A realistic DM 1.2 bootstrap TNDS (two DM servers, AppAddr with Port, CLCRED and SRVCRED
//! AppAuth) decoded, applied to a tree and read back as typed DMAcc accounts.
#![cfg(test)]

use std::borrow::Cow;

use omadm::element::{Element, Limits, Namespace, Node};
use omadm::mo::{AddrType, AuthLevel, AuthType, DmAcc};
use omadm::tnds::MgmtTree;
use omadm::tree::{AclCommand, Format, Tree, TreeError};
use omadm::uri::DmUri;
use quick_xml::Reader;
use quick_xml::events::Event;

const FIXTURE: &str = include_str!("fixtures/tnds/dmacc_bootstrap.xml");

/// A minimal XML to `Element` reader for the fixture (the crate's own XML codec lives elsewhere).
fn parse_xml(xml: &str) -> Element {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let new = |name: &str| Element::new(Namespace::Ddf, Cow::Owned(name.to_owned()));
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) => stack.push(new(e.local_name().as_ref())),
            Event::Empty(e) => {
                let el = new(e.local_name().as_ref());
                stack.last_mut().unwrap().push(el);
            }
            Event::End(_) => {
                let done = stack.pop().unwrap();
                match stack.last_mut() {
                    Some(parent) => parent.push(done),
                    None => return done,
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.content.push(Node::Text(t.xml10_content().into_owned()));
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().unwrap() {
                    Some(c) => c,
                    None => match &*r {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => panic!("unknown entity {other}"),
                    },
                };
                stack
                    .last_mut()
                    .unwrap()
                    .content
                    .push(Node::Text(c.to_string()));
            }
            Event::Eof => panic!("unterminated document"),
            _ => {}
        }
    }
}

fn uri(s: &str) -> DmUri {
    s.parse().unwrap()
}

fn decoded() -> MgmtTree {
    MgmtTree::from_element(&parse_xml(FIXTURE), &Limits::default()).unwrap()
}

#[test]
fn fixture_decodes() {
    let m = decoded();
    assert_eq!(m.ver_dtd, "1.2");
    assert_eq!(m.man.as_deref(), Some("dmgw"));
    assert_eq!(m.mod_.as_deref(), Some("bootstrap-server"));
    assert_eq!(m.nodes.len(), 2);
    assert_eq!(m.nodes[0].name, "dmsrv1");
    assert_eq!(m.nodes[0].path.as_deref(), Some("./DMAcc"));
    assert_eq!(
        m.nodes[0].props.ddf_name.as_deref(),
        Some("urn:oma:mo:oma-dm-dmacc:1.0")
    );
    assert_eq!(m.nodes[1].name, "DMAcc");
    assert_eq!(m.nodes[1].path, None);
    // Secrets never show in Debug.
    let debug = format!("{m:?}");
    assert!(!debug.contains("c1ient-s3cret"), "{debug}");
    assert!(!debug.contains("AAECAwQF"), "{debug}");
    // The typed document survives a trip through the element tree.
    let again = MgmtTree::from_element(&m.to_element(), &Limits::default()).unwrap();
    assert_eq!(again, m);
}

#[test]
fn fixture_applies_and_reads_back_as_dmacc() {
    let mut tree = Tree::new();
    let added = decoded().apply(&mut tree).unwrap();
    assert_eq!(added.first(), Some(&uri("./DMAcc")));
    assert!(added.contains(&uri("./DMAcc/dmsrv2/AppAuth/2/AAuthSecret")));
    assert_eq!(added.len() + 1, tree.len());

    let accounts = DmAcc::all(&tree).unwrap();
    assert_eq!(accounts.len(), 2);

    let (at1, one) = &accounts[0];
    assert_eq!(at1, &uri("./DMAcc/dmsrv1"));
    assert_eq!(one.server_id, "dm.example.com");
    assert_eq!(one.name.as_deref(), Some("Example DM Server"));
    assert_eq!(one.server_url(), Some("https://dm.example.com:8443/dm"));
    assert_eq!(one.app_addr.len(), 1);
    assert_eq!(one.app_addr[0].key, "SrvAddr");
    assert_eq!(one.app_addr[0].addr_type, AddrType::Uri);
    assert_eq!(one.app_addr[0].ports[0].port_nbr, 8443);
    assert_eq!(one.aauth_pref, Some(AuthType::Digest));
    let client = one.client_credentials().unwrap();
    assert_eq!(client.level, AuthLevel::Clcred);
    assert_eq!(client.auth_type, AuthType::Digest);
    assert_eq!(client.name.as_deref(), Some("gw-0001"));
    assert_eq!(client.secret.as_ref().unwrap().expose(), "c1ient-s3cret");
    // The bin nonce was decoded into bytes and comes back as the same base64 text.
    assert_eq!(
        client.data.as_ref().unwrap().expose(),
        "AAECAwQFBgcICQoLDA0ODw=="
    );
    let nonce = tree
        .node(&uri("./DMAcc/dmsrv1/AppAuth/ClientSide/AAuthData"))
        .unwrap();
    assert_eq!(nonce.format, Format::Bin);
    assert_eq!(
        nonce.value.as_deref(),
        Some(&(0u8..16).collect::<Vec<_>>()[..])
    );
    let server = one.server_credentials().unwrap();
    assert_eq!(server.name.as_deref(), Some("dm.example.com"));
    assert_eq!(server.secret.as_ref().unwrap().expose(), "s3rver-s3cret");
    assert_eq!(
        one.bootstrap_server_url.as_deref(),
        Some("https://bootstrap.example.com/bootstrap")
    );

    let (at2, two) = &accounts[1];
    assert_eq!(at2, &uri("./DMAcc/dmsrv2"));
    assert_eq!(two.server_id, "other.example.org");
    assert_eq!(two.server_url(), Some("http://other.example.org/omadm"));
    assert_eq!(two.app_addr[0].ports[0].port_nbr, 80);
    assert_eq!(two.client_credentials().unwrap().auth_type, AuthType::Basic);
    assert_eq!(
        two.server_credentials()
            .unwrap()
            .secret
            .as_ref()
            .unwrap()
            .expose(),
        "other-server-pw"
    );
    assert_eq!(two.client_credentials().unwrap().data, None);
    assert_eq!(two.bootstrap_server_url, None);

    let found = DmAcc::find_by_server_id(&tree, "other.example.org").unwrap();
    assert_eq!(found.map(|(u, _)| u), Some(uri("./DMAcc/dmsrv2")));

    // The ACLs came along: each server may read its own account, not the other's.
    assert!(
        tree.get_as(&uri("./DMAcc/dmsrv1/ServerID"), "dm.example.com")
            .is_ok()
    );
    assert!(matches!(
        tree.get_as(&uri("./DMAcc/dmsrv1/ServerID"), "other.example.org"),
        Err(TreeError::PermissionDenied {
            command: AclCommand::Get,
            ..
        })
    ));
    // And the secrets are not readable through Get, even by their own server.
    let secret = uri("./DMAcc/dmsrv2/AppAuth/1/AAuthSecret");
    assert_eq!(
        tree.get_as(&secret, "other.example.org")
            .unwrap_err()
            .status_code(),
        405
    );

    // A second bootstrap of the same accounts is refused as a whole.
    let before = tree.clone();
    assert!(decoded().apply(&mut tree).is_err());
    assert_eq!(tree, before);
}

#[test]
fn exported_account_is_a_bootstrap_for_another_tree() {
    let mut tree = Tree::new();
    decoded().apply(&mut tree).unwrap();
    let at = uri("./DMAcc/dmsrv1");
    let export = MgmtTree::from_subtree(&tree, &at).unwrap();
    let wire = MgmtTree::from_element(&export.to_element(), &Limits::default()).unwrap();
    let mut device = Tree::new();
    wire.apply(&mut device).unwrap();
    assert_eq!(
        DmAcc::read(&device, &at).unwrap(),
        DmAcc::read(&tree, &at).unwrap()
    );
    assert_eq!(device.node(&at).unwrap(), tree.node(&at).unwrap());
}
