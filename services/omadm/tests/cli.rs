//! The `omadm` binary end to end: decode, encode and check on files and standard input, and the
//! one-line errors and exit codes that operators' scripts rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::Write;
use std::process::{Command, Output, Stdio};

const PACKAGE1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/package1.xml");

fn omadm(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_omadm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn encode_then_decode_gives_the_same_message() {
    let wb = omadm(&["encode", PACKAGE1], b"");
    assert!(wb.status.success());
    assert_eq!(wb.stdout.first(), Some(&0x02), "WBXML 1.2 version byte");
    let xml = omadm(&["decode", "-"], &wb.stdout);
    assert!(xml.status.success());
    let limits = omadm::element::Limits::default();
    let original = omadm::codec::decode(&std::fs::read(PACKAGE1).unwrap(), &limits).unwrap();
    let decoded = omadm::codec::decode(&xml.stdout, &limits).unwrap();
    assert_eq!(decoded, original);
    let text = String::from_utf8(xml.stdout).unwrap();
    assert!(text.contains("\n  <SyncHdr>"), "indented output");
}

#[test]
fn check_accepts_a_valid_message_and_lists_problems_of_an_invalid_one() {
    let ok = omadm(&["check", PACKAGE1], b"");
    assert!(ok.status.success());
    let bad = br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>
      <SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>s</LocURI></Target><Source><LocURI>c</LocURI></Source></SyncHdr>
      <SyncBody><Get><CmdID>1</CmdID></Get><Alert><CmdID>1</CmdID><Data>1226</Data><Item><Data>x</Data></Item></Alert></SyncBody></SyncML>"#;
    let out = omadm(&["check", "-"], bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("Get#1: command has no Item"), "{err}");
    assert!(err.contains("not unique"), "{err}");
    assert!(err.contains("Meta/Type"), "{err}");
}

#[test]
fn bad_input_gets_one_line_and_a_failure_exit() {
    for (args, input) in [
        (&["decode", "-"][..], &b"<SyncML><unclosed>"[..]),
        (&["decode", "-"][..], &[0x02, 0x00, 0x00][..]),
        (&["encode", "-"][..], &b"\x00\x01binary"[..]),
        (&["decode", "/nonexistent/file.xml"][..], &b""[..]),
        (&["check", "-"][..], &b"not xml at all"[..]),
    ] {
        let out = omadm(args, input);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("omadm: "), "{err}");
    }
}

#[test]
fn oversized_input_is_refused() {
    let big = vec![b' '; 2048];
    let out = omadm(&["--max-bytes", "1024", "decode", "-"], &big);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than 1024"));
}
