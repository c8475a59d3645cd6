//! The bootstrap server's traces, in a process of their own (one global subscriber): fetches,
//! device requests and pushes continue their callers' traces into the gateway's, no secret shown.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use dm_server::derive_password;
use omadm::alert::ASSOCIATED_GATEWAY;
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::session::{ClientSession, ClientStep};
use omadm::tree::Tree;
use telemetry::receiver::{CollectedSpan, Receiver as OtlpReceiver};
use telemetry::{ExporterConfig, LogFormat, Options};

const FETCH_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const FETCH_PARENT: &str = "b7ad6b7169203331";
const DEVICE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const DEVICE_PARENT: &str = "00f067aa0ba902b7";
const WRONG_PASSWORD: &str = "not the gateway password";
/// A PIN long enough not to show up by chance (in a port number, say).
const PIN: &str = "58203916";

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn attr<'a>(s: &'a CollectedSpan, key: &str) -> Option<&'a str> {
    s.attributes.get(key).map(String::as_str)
}

/// A device session whose every request carries `traceparent`.
async fn traced_session(http: &reqwest::Client, client: &mut ClientSession, traceparent: &str) {
    let mut tree = Tree::new();
    let mut out = client.start().unwrap();
    for _ in 0..10 {
        let body = codec::encode(&out, Encoding::Xml).unwrap();
        let resp = http
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
        match client.receive(&reply, &mut tree).unwrap() {
            ClientStep::Send(m) => out = *m,
            ClientStep::Finished => return,
        }
    }
    panic!("session did not end");
}

#[actix_web::test]
async fn fetches_requests_and_pushes_are_one_trace_each_without_secrets() {
    let otlp = OtlpReceiver::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let lines = telemetry::receiver::LogLines::default();
    let telemetry = telemetry::init_with(
        Options {
            service_name: "bootstrap-server",
            service_version: env!("CARGO_PKG_VERSION"),
            log_format: LogFormat::Json,
            filter: "info".into(),
        },
        Some(ExporterConfig::endpoint(otlp.endpoint())),
        lines.make_writer(),
    )
    .unwrap()
    .expect("the first subscriber of this process");

    let pki = Pki::new("traces");
    let gateway = Receiver::start(&pki, free_listener(), 204);
    let text = profiles_toml(Some(&gateway.url), None)
        .replace(&format!("pin = \"{GW_PIN}\""), &format!("pin = \"{PIN}\""));
    assert!(text.contains(PIN));
    let mut cfg = config(profiles(&text));
    cfg.tls = Some(pki.server_cert("bootstrap-server"));
    cfg.push.ca_cert = Some(pki.ca_path.clone());
    let s = TestServer::start(cfg, pki.client(None));

    // Workflow 1: a fetch with good credentials, one with a wrong password.
    let fetch_tp = format!("00-{FETCH_TRACE}-{FETCH_PARENT}-01");
    for (password, status) in [(GW_PASSWORD, 200), (WRONG_PASSWORD, 401)] {
        let resp = s
            .http
            .get(s.url(&format!("/bootstrap/{DMS1}")))
            .header("authorization", basic(GW_USER, password))
            .header("traceparent", &fetch_tp)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
    }

    // Workflow 2: a device's AssociatedGateway, then the push to the gateway.
    let data = bootstrap_server::assoc::format(&bootstrap_server::assoc::Association {
        gateway_id: GW.into(),
        gateway_address: gateway.url.clone(),
        server_ids: vec![DMS1.into()],
    });
    let mut dev = device(&s, "1", None, vec![associated_gateway("ag-1", &data)]);
    let device_tp = format!("00-{DEVICE_TRACE}-{DEVICE_PARENT}-01");
    traced_session(&s.http, &mut dev, &device_tp).await;
    assert_eq!(status_of(&dev, "ag-1"), 200);
    let id = s.get_json("/api/v1/associations").await["items"][0]["bootstraps"][0]
        .as_u64()
        .unwrap();
    s.wait_bootstrap(id, |r| r["delivery"]["state"] == "delivered")
        .await;
    let pushed = gateway.received();
    let gateway_url = gateway.url.clone();
    assert_eq!(pushed.len(), 1);
    s.stop().await;
    gateway.stop().await;

    let t = std::thread::spawn(move || {
        telemetry.flush();
        drop(telemetry);
    });
    tokio::task::spawn_blocking(move || t.join().unwrap())
        .await
        .unwrap();
    let mut spans = Vec::new();
    for _ in 0..200 {
        spans = otlp.collected.spans();
        if spans.iter().any(|s| s.name == "bootstrap push")
            && spans.iter().filter(|s| s.name == "bootstrap fetch").count() == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let find =
        |name: &str| -> Vec<&CollectedSpan> { spans.iter().filter(|s| s.name == name).collect() };
    let one = |name: &str| -> &CollectedSpan {
        let found = find(name);
        assert_eq!(found.len(), 1, "{name}: {spans:#?}");
        found[0]
    };
    assert!(spans.iter().all(|s| s.service == "bootstrap-server"));

    // Workflow 1: server span under the caller's span, `bootstrap fetch` under it.
    let served = find("GET /bootstrap/{server_id}");
    assert_eq!(served.len(), 2);
    for s in &served {
        assert_eq!(
            (s.trace_id.as_str(), s.parent_span_id.as_str()),
            (FETCH_TRACE, FETCH_PARENT)
        );
    }
    let fetches = find("bootstrap fetch");
    assert_eq!(fetches.len(), 2);
    for f in &fetches {
        assert_eq!(f.trace_id, FETCH_TRACE);
        assert!(served.iter().any(|s| s.span_id == f.parent_span_id));
        assert_eq!(attr(f, "workflow"), Some("1"));
        assert_eq!(attr(f, "server_id"), Some(DMS1));
    }
    let issued = fetches
        .iter()
        .find(|f| attr(f, "outcome") == Some("issued"))
        .unwrap();
    assert_eq!(attr(issued, "gateway_id"), Some(GW));
    assert_eq!(attr(issued, "auth"), Some("basic"));
    assert_eq!(attr(issued, "http.response.status_code"), Some("200"));
    assert_eq!(issued.status, 0);
    let refused = fetches
        .iter()
        .find(|f| attr(f, "outcome") == Some("unauthorized"))
        .unwrap();
    assert_eq!(attr(refused, "auth"), Some("failed"));
    assert_eq!(attr(refused, "http.response.status_code"), Some("401"));
    assert_eq!(attr(refused, "gateway_id"), None);
    assert_eq!(refused.status, 2);

    // Workflow 2: request → Alert → association → push → attempt → HTTP client → the gateway.
    let dm_served = find("POST /dm");
    assert!(!dm_served.is_empty());
    for s in &dm_served {
        assert_eq!(
            (s.trace_id.as_str(), s.parent_span_id.as_str()),
            (DEVICE_TRACE, DEVICE_PARENT)
        );
    }
    let requests = find("bootstrap request");
    assert_eq!(requests.len(), dm_served.len());
    for r in &requests {
        assert_eq!(attr(r, "dev_id"), Some(DEV));
        assert_eq!(attr(r, "workflow"), Some("2"));
        assert_eq!(attr(r, "session_id"), Some("1"));
        assert_eq!(attr(r, "auth"), Some("none"));
        assert!(dm_served.iter().any(|s| s.span_id == r.parent_span_id));
    }
    let request = requests
        .iter()
        .find(|r| attr(r, "pushes") == Some("1"))
        .unwrap();
    assert_eq!(attr(request, "dm.status"), Some("212"));
    let alert = spans
        .iter()
        .find(|s| s.name == "Alert" && attr(s, "alert.code") == Some("1226"))
        .unwrap();
    assert_eq!(alert.parent_span_id, request.span_id);
    assert_eq!(attr(alert, "alert.type"), Some(ASSOCIATED_GATEWAY));
    assert_eq!(attr(alert, "dm.status"), Some("200"));
    let association = one("association");
    assert_eq!(association.parent_span_id, alert.span_id);
    assert_eq!(attr(association, "gateway_id"), Some(GW));
    assert_eq!(attr(association, "server_ids"), Some(DMS1));
    assert_eq!(attr(association, "outcome"), Some("accepted"));
    let push = one("bootstrap push");
    assert_eq!(push.trace_id, DEVICE_TRACE);
    assert_eq!(push.parent_span_id, association.span_id);
    assert_eq!(attr(push, "server_id"), Some(DMS1));
    assert_eq!(attr(push, "gateway_id"), Some(GW));
    assert_eq!(attr(push, "attempts"), Some("1"));
    assert_eq!(attr(push, "outcome"), Some("delivered"));
    assert_eq!(attr(push, "url"), Some(gateway_url.as_str()));
    let attempt = one("push attempt");
    assert_eq!(attempt.parent_span_id, push.span_id);
    assert_eq!(attr(attempt, "attempt"), Some("1"));
    assert_eq!(attr(attempt, "http.response.status_code"), Some("204"));
    let client = one("POST");
    assert_eq!(client.kind, 3);
    assert_eq!(client.parent_span_id, attempt.span_id);
    // The gateway got the client span as its parent: its spans continue the device's trace.
    assert_eq!(
        pushed[0].traceparent.as_deref(),
        Some(format!("00-{DEVICE_TRACE}-{}-01", client.span_id).as_str())
    );

    // No credential, PIN, key or MAC anywhere.
    let mac = pushed[0]
        .content_type
        .split("MAC=")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    assert!(!mac.is_empty());
    let secrets = [
        GW_PASSWORD.to_owned(),
        WRONG_PASSWORD.to_owned(),
        PIN.to_owned(),
        MASTER_KEY.to_owned(),
        "device password".to_owned(),
        basic(GW_USER, GW_PASSWORD),
        basic(GW_USER, WRONG_PASSWORD),
        derive_password(MASTER_KEY.as_bytes(), DMS1, GW)
            .expose()
            .to_owned(),
        mac,
    ];
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
    // The push's log lines carry the device's trace.
    let pushed_line = logs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["fields"]["message"] == "bootstrap pushed")
        .unwrap();
    assert_eq!(pushed_line["trace_id"], DEVICE_TRACE);
    assert_eq!(pushed_line["span_id"], attempt.span_id.as_str());
    otlp.stop().await;
}
