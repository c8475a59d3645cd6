//! Cross-check of whole SyncML DM messages built with the typed model against Debian's libwbxml:
//! our WBXML read by `wbxml2xml`, and `xml2wbxml`'s reading of our XML, must give back the same model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;
use common::tool;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command as Process;

use omadm::alert::{self, GenericAlert};
use omadm::bootstrap::{self, Bootstrap};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::model::*;
use omadm::tnds::MgmtTree;

/// Run a libwbxml tool on `input`, returning its output file's bytes.
fn run(tool: &PathBuf, extra: &[&str], input: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in");
    let out = dir.path().join("out");
    std::fs::File::create(&inp)
        .unwrap()
        .write_all(input)
        .unwrap();
    let status = Process::new(tool)
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(&inp)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}: {}",
        tool.display(),
        String::from_utf8_lossy(&status.stderr)
    );
    std::fs::read(&out).unwrap()
}

fn package1() -> SyncMl {
    let mut hdr = SyncHdr::new(
        "7",
        1,
        Location::new("https://dms.example.com/dm"),
        Location::named("IMEI:493005100592800", "gw"),
    );
    hdr.cred = Some(Cred {
        meta: Meta::typed("syncml:auth-md5", "b64"),
        data: "q1ZTxbeLqCxm3JGTrkRn8A==".into(),
    });
    let mut m = SyncMl::new(hdr).with(Command::alert(alert_code::CLIENT_INITIATED));
    m.push(Command::report_chr(
        "./DevInfo/DevId",
        "IMEI:493005100592800",
    ));
    for i in 0..3 {
        m.push(alert::build(
            Some(&format!("corr-{i}")),
            &[GenericAlert {
                alert_type: alert::DEVICE_ATTACHED.into(),
                format: Some("chr".into()),
                mark: Some("informational".into()),
                source: Some(format!("./DeviceInventory/d{i}")),
                target: None,
                data: Some(Data::Text(format!("IMEI:35{i}"))),
            }],
        ));
    }
    m.finish()
}

fn server_package() -> SyncMl {
    let hdr = SyncHdr::new(
        "7",
        1,
        Location::new("IMEI:493005100592800"),
        Location::new("https://dms.example.com/dm"),
    );
    SyncMl::new(hdr)
        .with(Command::Status(Status {
            msg_ref: 1,
            cmd_ref: 0,
            cmd: "SyncHdr".into(),
            target_refs: vec!["https://dms.example.com/dm".into()],
            source_refs: vec!["IMEI:493005100592800".into()],
            chal: Some(Chal {
                meta: Meta {
                    type_: Some("syncml:auth-md5".into()),
                    format: Some("b64".into()),
                    next_nonce: Some("ZG1ndy1ub25jZQ==".into()),
                    ..Meta::default()
                },
            }),
            code: 212,
            ..Status::default()
        }))
        .with(Command::get("./DevInfo/Mod"))
        .with(Command::replace_chr("./DevDetail/Ext/Note", "a < b & c"))
        .with(Command::Exec(ItemCmd {
            correlator: Some("fumo-1".into()),
            items: vec![Item::target("./FUMO/Update")],
            ..ItemCmd::default()
        }))
        .with(Command::Atomic(Container {
            commands: vec![
                Command::get("./DMAcc"),
                Command::Delete(ItemCmd {
                    items: vec![Item::target("./Ext/Old")],
                    ..ItemCmd::default()
                }),
            ],
            ..Container::default()
        }))
        .with(Command::Results(Results {
            msg_ref: 1,
            cmd_ref: 2,
            items: vec![Item {
                source: Some(Location::new("./DevInfo/Man")),
                meta: Some(Meta::format("chr")),
                data: Some(Data::Text("Acme".into())),
                ..Item::default()
            }],
            ..Results::default()
        }))
        .finish()
}

fn bootstrap_tree() -> MgmtTree {
    let xml = br#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>
      <Node><NodeName>DMAcc</NodeName><Node><NodeName>dms2</NodeName>
        <Node><NodeName>AppID</NodeName><Value>w7</Value></Node>
        <Node><NodeName>ServerID</NodeName><Value>dms-2</Value></Node>
        <Node><NodeName>AppAddr</NodeName><Node><NodeName>A</NodeName>
          <Node><NodeName>Addr</NodeName><Value>https://dms2.example.com/dm</Value></Node>
          <Node><NodeName>AddrType</NodeName><Value>URI</Value></Node></Node></Node>
      </Node></Node></MgmtTree>"#;
    let root = omadm::xml::decode(xml, &Limits::default()).unwrap();
    MgmtTree::from_element(&root, &Limits::default()).unwrap()
}

#[test]
fn libwbxml_reads_our_wbxml_as_the_same_message() {
    let Some(w2x) = tool("wbxml2xml") else { return };
    for msg in [package1(), server_package()] {
        let ours = codec::encode(&msg, Encoding::Wbxml).unwrap();
        let xml = run(&w2x, &[], &ours);
        let back = codec::decode_as(&xml, Encoding::Xml, &Limits::default()).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn we_read_libwbxml_encoding_of_our_xml_as_the_same_message() {
    let Some(x2w) = tool("xml2wbxml") else { return };
    for msg in [package1(), server_package()] {
        let xml = codec::encode(&msg, Encoding::Xml).unwrap();
        for version in ["1.1", "1.2", "1.3"] {
            let wb = run(&x2w, &["-v", version], &xml);
            let back = codec::decode_as(&wb, Encoding::Wbxml, &Limits::default()).unwrap();
            assert_eq!(back, msg, "WBXML {version}");
        }
    }
}

#[test]
fn bootstrap_with_tnds_survives_libwbxml_both_ways() {
    let (Some(w2x), Some(x2w)) = (tool("wbxml2xml"), tool("xml2wbxml")) else {
        return;
    };
    let tree = bootstrap_tree();
    let expect = Bootstrap::Tnds(tree.clone());
    // Ours (nested WBXML TNDS) read by libwbxml.
    let msg = bootstrap::build_tnds("gw-1", "https://bs.example.com", &tree, Encoding::Wbxml);
    let xml = run(&w2x, &[], &codec::encode(&msg, Encoding::Wbxml).unwrap());
    assert_eq!(Bootstrap::decode(&xml, &Limits::default()).unwrap(), expect);
    // libwbxml's encoding of our XML bootstrap read by us.
    let msg = bootstrap::build_tnds("gw-1", "https://bs.example.com", &tree, Encoding::Xml);
    let wb = run(&x2w, &[], &codec::encode(&msg, Encoding::Xml).unwrap());
    assert_eq!(Bootstrap::decode(&wb, &Limits::default()).unwrap(), expect);
}
