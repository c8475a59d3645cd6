//! The dm-server's traces, in a process of their own (one global subscriber): a DM session whose
//! requests carry a caller's `traceparent` becomes spans of that trace, with no credential in them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::*;
use dm_server::config::MasterKey;
use omadm::alert::DEVICE_ATTACHED;
use omadm::auth::AuthScheme;
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::session::{ClientSession, ClientStep};
use telemetry::receiver::{CollectedSpan, Receiver};
use telemetry::{ExporterConfig, LogFormat, Options};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const MASTER_KEY: &str = "master-key-that-must-never-show-9d1f";
const WRONG_PASSWORD: &str = "wrong battery staple";

/// Drive a client session, every request carrying `traceparent`; returns the header codes of the
/// replies and the credential data the client sent (to look for in the spans).
async fn traced_session(
    s: &TestServer,
    client: &mut ClientSession,
    traceparent: &str,
) -> (Vec<u16>, Vec<String>) {
    let mut tree = device_tree();
    let mut codes = Vec::new();
    let mut creds = Vec::new();
    let mut out = client.start().unwrap();
    for _ in 0..10 {
        if let Some(c) = &out.hdr.cred {
            creds.push(c.data.clone());
        }
        let body = codec::encode(&out, Encoding::Xml).unwrap();
        let resp = s
            .http
            .post(client.config().server_uri.clone())
            .header("content-type", Encoding::Xml.mime())
            .header("traceparent", traceparent)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let bytes = resp.bytes().await.unwrap();
        let reply = codec::decode_as(&bytes, Encoding::Xml, &Limits::default()).unwrap();
        codes.extend(reply.header_status().map(|s| s.code));
        match client.receive(&reply, &mut tree) {
            Ok(ClientStep::Send(m)) => out = *m,
            Ok(ClientStep::Finished) | Err(_) => return (codes, creds),
        }
    }
    panic!("session did not end");
}

async fn flush_and_collect(
    telemetry: telemetry::Telemetry,
    receiver: &Receiver,
    enough: impl Fn(&[CollectedSpan]) -> bool,
) -> Vec<CollectedSpan> {
    let t = std::thread::spawn(move || {
        telemetry.flush();
        drop(telemetry);
    });
    tokio::task::spawn_blocking(move || t.join().unwrap())
        .await
        .unwrap();
    for _ in 0..200 {
        let spans = receiver.collected.spans();
        if enough(&spans) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("spans missing: {:#?}", receiver.collected.spans());
}

fn attr<'a>(s: &'a CollectedSpan, key: &str) -> Option<&'a str> {
    s.attributes.get(key).map(String::as_str)
}

#[actix_web::test]
async fn dm_spans_continue_the_callers_trace_and_hold_no_secret() {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let lines = telemetry::receiver::LogLines::default();
    let telemetry = telemetry::init_with(
        Options {
            service_name: "dm-server",
            service_version: env!("CARGO_PKG_VERSION"),
            log_format: LogFormat::Json,
            filter: "info".into(),
        },
        Some(ExporterConfig::endpoint(receiver.endpoint())),
        lines.make_writer(),
    )
    .unwrap()
    .expect("the first subscriber of this process");

    let mut cfg = config();
    cfg.master_key = Some(MasterKey::new(MASTER_KEY).unwrap());
    let s = spawn(cfg);
    let derived = dm_server::derive_password(MASTER_KEY.as_bytes(), SERVER_ID, "gw-derived");
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");

    // md5, first contact: 407 with a nonce, then 212; one Generic Alert.
    let mut c = client(
        &s,
        "1",
        AuthScheme::Md5,
        ACCOUNT,
        PASSWORD,
        b"",
        vec![generic_alert("corr-1", DEVICE_ATTACHED, "dev one")],
    );
    let (codes, mut creds) = traced_session(&s, &mut c, &traceparent).await;
    assert_eq!(codes, vec![407, 212]);
    let nonce = c.next_nonce().unwrap().to_vec();
    // A wrong password with the right nonce: 401 until the session ends.
    let mut bad = client(
        &s,
        "2",
        AuthScheme::Md5,
        ACCOUNT,
        WRONG_PASSWORD,
        &nonce,
        vec![],
    );
    let (codes, more) = traced_session(&s, &mut bad, &traceparent).await;
    assert_eq!(codes.first(), Some(&401));
    creds.extend(more);
    // A derived account.
    let mut d = client(
        &s,
        "3",
        AuthScheme::Md5,
        "gw-derived",
        derived.expose(),
        b"",
        vec![],
    );
    let (_, more) = traced_session(&s, &mut d, &traceparent).await;
    creds.extend(more);
    assert!(!creds.is_empty());
    s.stop().await;

    let spans = flush_and_collect(telemetry, &receiver, |spans| {
        spans.iter().filter(|s| s.name == "dm session").count() >= 4
            && spans.iter().any(|s| s.name == "Alert")
    })
    .await;

    // Every request's server span is a child of the caller's span, in the caller's trace.
    let served: Vec<&CollectedSpan> = spans.iter().filter(|s| s.name == "POST /dm").collect();
    assert!(served.len() >= 4, "{served:#?}");
    for s in &served {
        assert_eq!(s.service, "dm-server");
        assert_eq!(s.kind, 2);
        assert_eq!(s.trace_id, TRACE_ID);
        assert_eq!(s.parent_span_id, PARENT_ID);
    }
    // Each DM message: a `dm session` span under its request's span.
    let messages: Vec<&CollectedSpan> = spans.iter().filter(|s| s.name == "dm session").collect();
    for m in &messages {
        assert_eq!(m.trace_id, TRACE_ID);
        assert!(
            served.iter().any(|s| s.span_id == m.parent_span_id),
            "{m:#?}"
        );
        assert_eq!(attr(m, "server_id"), Some(SERVER_ID));
        assert_eq!(attr(m, "dev_id"), Some(DEV));
    }
    let first = |session: &str, status: &str| {
        messages
            .iter()
            .find(|m| {
                attr(m, "session_id") == Some(session) && attr(m, "dm.status") == Some(status)
            })
            .unwrap_or_else(|| panic!("session {session} status {status}: {messages:#?}"))
    };
    let challenged = first("1", "407");
    assert_eq!(attr(challenged, "auth"), Some("challenge"));
    assert_eq!(attr(challenged, "msg_id"), Some("1"));
    assert_eq!(challenged.status, 0);
    let accepted = first("1", "212");
    assert_eq!(attr(accepted, "auth"), Some("ok"));
    assert_eq!(attr(accepted, "account"), Some(ACCOUNT));
    assert_eq!(attr(accepted, "session.end"), Some("completed"));
    let refused = first("2", "401");
    assert_eq!(attr(refused, "auth"), Some("failed"));
    assert!(
        messages.iter().any(|m| attr(m, "session_id") == Some("2")
            && attr(m, "session.end") == Some("auth_failed")
            && m.status == 2),
        "the refused session ends in error: {messages:#?}"
    );
    assert_eq!(attr(first("3", "212"), "account"), Some("gw-derived"));

    // The Generic Alert: a command span under its message's span, with its type and answer (sent
    // twice: package 1 was challenged, then accepted).
    let alerts: Vec<&CollectedSpan> = spans
        .iter()
        .filter(|s| s.name == "Alert" && attr(s, "alert.code") == Some("1226"))
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    let alert = alerts
        .iter()
        .find(|a| attr(a, "dm.status") == Some("200"))
        .unwrap_or_else(|| panic!("{alerts:#?}"));
    assert_eq!(alert.parent_span_id, accepted.span_id);
    assert_eq!(attr(alert, "alert.type"), Some(DEVICE_ATTACHED));
    assert!(alert.events.iter().any(|e| e == "generic alert recorded"));
    assert!(
        spans
            .iter()
            .any(|s| s.name == "Alert" && attr(s, "alert.code") == Some("1201")),
        "the session alert has a span too"
    );

    // No credential in any attribute, event attribute or log line.
    let mut secrets = vec![
        PASSWORD.to_owned(),
        WRONG_PASSWORD.to_owned(),
        MASTER_KEY.to_owned(),
        derived.expose().to_owned(),
    ];
    secrets.extend(creds);
    let logs = lines.text();
    for secret in &secrets {
        for s in &spans {
            for (k, v) in &s.attributes {
                assert!(!v.contains(secret.as_str()), "{k} of {} leaks", s.name);
            }
            for e in &s.event_attributes {
                assert!(!e.contains(secret.as_str()), "an event of {} leaks", s.name);
            }
        }
        assert!(!logs.contains(secret.as_str()), "a log line leaks");
    }
    // Log lines written while a request was served carry its trace.
    let opened: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["fields"]["message"] == "session opened")
        .collect();
    assert_eq!(opened.len(), 3);
    for l in opened {
        assert_eq!(l["trace_id"], TRACE_ID);
    }
    receiver.stop().await;
}
