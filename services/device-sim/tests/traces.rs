//! device-sim's traces, in a process of their own (one global subscriber): an onboarding is one
//! trace under the device's `device onboarding` span, the gateway's callback and the relay included.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod fake_gateway;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use device_sim::callback::{CallbackConfig, CallbackServer};
use device_sim::client::{GatewayClient, HttpSettings, TargetPolicy, Transport};
use device_sim::fleet::{FleetContext, Outcome, RunOptions, run_scenario};
use device_sim::scenario::Scenario;
use fake_gateway::{FakeGateway, GW_ID, Options};
use omadm::element::Limits;
use telemetry::receiver::{CollectedSpan, Receiver};
use telemetry::{ExporterConfig, LogFormat};

const DEV: &str = "IMEI:356938035643809";

fn attr<'a>(s: &'a CollectedSpan, key: &str) -> Option<&'a str> {
    s.attributes.get(key).map(String::as_str)
}

/// A stand-in bootstrap server: `POST /dm` answers 404 and keeps the `traceparent` it got.
fn bootstrap_stand_in() -> (
    u16,
    Arc<Mutex<Vec<Option<String>>>>,
    actix_web::dev::ServerHandle,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let store = seen.clone();
    let server = HttpServer::new(move || {
        let store = store.clone();
        App::new().route(
            "/dm",
            web::post().to(move |req: HttpRequest| {
                let store = store.clone();
                async move {
                    let tp = req
                        .headers()
                        .get("traceparent")
                        .map(|v| v.to_str().unwrap().to_owned());
                    store.lock().unwrap().push(tp);
                    HttpResponse::NotFound().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (port, seen, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarding_is_one_trace() {
    let otlp = Receiver::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let lines = telemetry::receiver::LogLines::default();
    let telemetry = telemetry::init_with(
        telemetry::Options {
            service_name: "device-sim",
            service_version: env!("CARGO_PKG_VERSION"),
            log_format: LogFormat::Json,
            filter: "info".into(),
        },
        Some(ExporterConfig::endpoint(otlp.endpoint())),
        lines.make_writer(),
    )
    .unwrap()
    .expect("the first subscriber of this process");

    // The fake gateway continues the device's trace in its consent callback, as the gateway does.
    let gw = FakeGateway::start(Options {
        continue_trace: true,
        ..Options::default()
    })
    .await;
    let (bs_port, bs_seen, bs) = bootstrap_stand_in();
    let scenario = Scenario::parse(&format!(
        r#"
        [[device]]
        dev_id = "{DEV}"
        man = "Acme"
        model = "Thermo 3"
        consent = {{ allow_after = "50ms" }}
        heartbeat = "30s"
        [[device.account]]
        server_id = "dms-1"
        addr = "https://dms1.example.com/dm"
        bootstrap_server_url = "http://127.0.0.1:{bs_port}/bootstrap"
        "#
    ))
    .unwrap();
    let transport = Transport::new(&HttpSettings {
        policy: TargetPolicy {
            plain_http: true,
            loopback_only: true,
        },
        timeout: Duration::from_secs(10),
        ..HttpSettings::default()
    })
    .unwrap();
    let callback = CallbackServer::start(CallbackConfig::default())
        .await
        .unwrap();
    let summary = run_scenario(
        scenario.devices,
        FleetContext {
            client: GatewayClient::new(transport, &gw.base).unwrap(),
            limits: Limits::default(),
        },
        &callback,
        RunOptions {
            exit_when_settled: true,
            timeout: Some(Duration::from_secs(20)),
        },
        |_| {},
        std::future::pending(),
    )
    .await
    .unwrap();
    let report = &summary.first_reports[0];
    assert_eq!(report.outcome, Outcome::Done, "{report:?}");
    let password = format!("secret-1-for-{DEV}");
    assert!(
        gw.seen()
            .traceparents
            .iter()
            .any(|(p, _)| p.ends_with("/dm")),
        "a DM session ran"
    );

    // The callback server's /metrics after the onboarding.
    let metrics = reqwest::get(callback.base_url().join("metrics").unwrap())
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("device_sim_onboardings_total{outcome=\"done\"} 1"),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_bucket{")
                && l.contains("route=\"/devices/{name}/consent\"")
                && l.contains("status=\"202\"")
        ),
        "{text}"
    );
    callback.stop().await;
    let lan_traceparents = gw.seen().traceparents.clone();
    gw.stop().await;
    bs.stop(true).await;

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
        if spans.iter().any(|s| s.name == "device onboarding")
            && spans.iter().any(|s| s.name == "bootstrap relay")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let one = |name: &str| -> CollectedSpan {
        let found: Vec<&CollectedSpan> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "{name}: {spans:#?}");
        found[0].clone()
    };
    let root = one("device onboarding");
    assert_eq!(root.service, "device-sim");
    assert_eq!(root.parent_span_id, "");
    assert_eq!(attr(&root, "dev_id"), Some(DEV));
    assert_eq!(attr(&root, "gateway_id"), Some(GW_ID));
    assert_eq!(attr(&root, "outcome"), Some("done"));
    assert_eq!(attr(&root, "resumed"), None);
    let trace = root.trace_id.clone();
    let in_trace: Vec<&CollectedSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let client = |path: &str| -> Vec<&CollectedSpan> {
        in_trace
            .iter()
            .copied()
            .filter(|s| s.kind == 3 && attr(s, "url.full").is_some_and(|u| u.ends_with(path)))
            .collect()
    };

    // announce → (gateway) → consent callback → consent prompt → consent answer.
    let announce = client("/lan/v1/announce");
    assert_eq!(announce.len(), 1);
    assert_eq!(announce[0].parent_span_id, root.span_id);
    let served = one("POST /devices/{name}/consent");
    assert_eq!(served.kind, 2);
    assert_eq!(served.trace_id, trace);
    assert_eq!(served.parent_span_id, announce[0].span_id);
    let prompt = one("consent prompt");
    assert_eq!(prompt.parent_span_id, served.span_id);
    assert_eq!(attr(&prompt, "decision"), Some("allow"));
    assert_eq!(attr(&prompt, "gateway_id"), Some(GW_ID));
    let answer = client("/lan/v1/consent");
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].parent_span_id, prompt.span_id);

    // provisioning, the DM session, the relay: children of the onboarding.
    let provisioning = one("provisioning");
    assert_eq!(provisioning.parent_span_id, root.span_id);
    assert_eq!(attr(&provisioning, "gateway_id"), Some(GW_ID));
    let fetch = in_trace
        .iter()
        .find(|s| s.kind == 3 && s.parent_span_id == provisioning.span_id)
        .expect("the provisioning GET");
    assert_eq!(fetch.name, "GET");
    let session = one("dm session");
    assert_eq!(session.parent_span_id, root.span_id);
    assert_eq!(attr(&session, "server_id"), Some(GW_ID));
    assert_eq!(attr(&session, "alert.status"), Some("200"));
    assert_eq!(attr(&session, "challenged"), Some("true"));
    let dm_posts = client("/lan/v1/dm");
    assert!(dm_posts.len() >= 2, "{dm_posts:#?}");
    assert!(dm_posts.iter().all(|s| s.parent_span_id == session.span_id));
    let relay = one("bootstrap relay");
    assert_eq!(relay.parent_span_id, root.span_id);
    assert_eq!(attr(&relay, "server_id"), Some("dms-1"));
    assert_eq!(attr(&relay, "workflow"), Some("2"));
    assert_eq!(relay.status, 2, "the stand-in answered 404");
    let relay_post = client("/dm")
        .into_iter()
        .find(|s| s.parent_span_id == relay.span_id)
        .expect("the relay's POST");
    assert_eq!(
        bs_seen.lock().unwrap().clone(),
        vec![Some(format!("00-{trace}-{}-01", relay_post.span_id))]
    );

    // Every LAN request but heartbeats carried the onboarding's trace.
    for (path, tp) in lan_traceparents
        .iter()
        .filter(|(p, _)| !p.ends_with("heartbeat"))
    {
        assert_eq!(
            tp.as_deref().and_then(|t| t.split('-').nth(1)),
            Some(trace.as_str()),
            "{path}"
        );
    }

    // No credential of the provisioned account in a span or a log line; the device's step lines
    // carry the onboarding's trace.
    let logs = lines.text();
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(!v.contains(&password), "{k} of {} leaks", s.name);
        }
        for e in &s.event_attributes {
            assert!(!e.contains(&password), "an event of {} leaks", s.name);
        }
    }
    assert!(!logs.contains(&password));
    let steps: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["fields"]["message"] == "step")
        .collect();
    assert_eq!(steps.len(), report.steps.len());
    for l in &steps {
        assert_eq!(l["trace_id"], trace.as_str(), "{l}");
        assert_eq!(l["span"]["dev_id"], DEV);
    }
    otlp.stop().await;
}
