//! One process, one subscriber: spans reach a real OTLP/HTTP receiver with their parent links and
//! resource, a stored `traceparent` re-parents a later span, and JSON log lines carry the IDs.

use std::time::Duration;

use telemetry::receiver::Receiver;
use telemetry::{ExporterConfig, LogFormat, Options};

#[actix_rt::test]
async fn spans_and_log_lines_carry_one_trace() {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let lines = telemetry::receiver::LogLines::default();
    let telemetry = telemetry::init_with(
        Options {
            service_name: "telemetry-test",
            service_version: "1.2.3",
            log_format: LogFormat::Json,
            filter: "info".into(),
        },
        Some(ExporterConfig::endpoint(receiver.endpoint())),
        lines.make_writer(),
    )
    .unwrap()
    .expect("first subscriber of this process");

    let root = tracing::info_span!("onboard device", dev_id = "IMEI:1");
    let stored = telemetry::traceparent_of(&root).expect("a valid context");
    {
        let _g = root.enter();
        let child = tracing::info_span!("discovery");
        child.in_scope(|| tracing::info!(answer = 42, "found it"));
    }
    drop(root);
    // Later, elsewhere: a span re-parented from the stored traceparent.
    let later = tracing::info_span!(parent: None, "alert", server_id = "dms-1");
    telemetry::parent_from_traceparent(&later, Some(&stored));
    later.in_scope(|| tracing::warn!("attempt failed"));
    drop(later);

    // One hop over real HTTP: the client span carries `traceparent`, the server span nests.
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(telemetry::http::server))
            .route(
                "/x/{id}",
                actix_web::web::get()
                    .to(|| async { actix_web::HttpResponse::NoContent().finish() }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    let hop = tracing::info_span!("hop");
    let status = tracing::Instrument::instrument(
        telemetry::http::send(
            reqwest::Client::new().get(format!("http://127.0.0.1:{port}/x/7?pin=1234")),
        ),
        hop.clone(),
    )
    .await
    .unwrap()
    .status();
    assert_eq!(status, 204);
    drop(hop);
    handle.stop(true).await;

    let t = std::thread::spawn(move || {
        telemetry.flush();
        drop(telemetry);
    });
    tokio::task::spawn_blocking(move || t.join().unwrap())
        .await
        .unwrap();
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = receiver.collected.spans();
        if spans.len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let find = |n: &str| {
        spans
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("{n} in {spans:?}"))
            .clone()
    };
    let root = find("onboard device");
    let discovery = find("discovery");
    let alert = find("alert");
    assert_eq!(root.service, "telemetry-test");
    assert_eq!(root.parent_span_id, "");
    assert_eq!(
        root.attributes.get("dev_id").map(String::as_str),
        Some("IMEI:1")
    );
    assert_eq!(discovery.trace_id, root.trace_id);
    assert_eq!(discovery.parent_span_id, root.span_id);
    assert_eq!(alert.trace_id, root.trace_id);
    assert_eq!(alert.parent_span_id, root.span_id);
    assert_eq!(
        alert.attributes.get("server_id").map(String::as_str),
        Some("dms-1")
    );

    let hop = find("hop");
    let client = find("GET");
    let served = find("GET /x/{id}");
    assert_eq!(client.parent_span_id, hop.span_id);
    assert_eq!(client.kind, 3, "client kind");
    assert_eq!(served.trace_id, hop.trace_id);
    assert_eq!(served.parent_span_id, client.span_id);
    assert_eq!(served.kind, 2, "server kind");
    assert_eq!(
        served.attributes.get("http.route").map(String::as_str),
        Some("/x/{id}")
    );
    assert_eq!(
        served
            .attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("204")
    );
    assert_eq!(
        client.attributes.get("url.full").map(String::as_str),
        Some(format!("http://127.0.0.1:{port}/x/7").as_str())
    );
    assert!(
        !format!("{spans:?}").contains("1234"),
        "a query string leaked into a span"
    );

    let text = lines.text();
    let logged: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found = logged
        .iter()
        .find(|l| l["fields"]["message"] == "found it")
        .expect("the info line");
    assert_eq!(found["trace_id"], root.trace_id.as_str());
    assert_eq!(found["span_id"], discovery.span_id.as_str());
    assert_eq!(found["fields"]["answer"], 42);
    assert_eq!(
        found["spans"],
        serde_json::json!(["onboard device", "discovery"])
    );
    let warned = logged
        .iter()
        .find(|l| l["fields"]["message"] == "attempt failed")
        .expect("the warn line");
    assert_eq!(warned["trace_id"], root.trace_id.as_str());
    assert_eq!(warned["span"]["server_id"], "dms-1");
    receiver.stop().await;
}
