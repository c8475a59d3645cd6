//! `/metrics`: Prometheus text with the request histogram (route patterns, not paths) and the
//! gauges refreshed at scrape time.

use reqwest::StatusCode;

use crate::helpers::{seg, spawn_app};

#[actix_web::test]
async fn metrics_have_the_expected_names() {
    let app = spawn_app().await;
    app.add_account("dms-metrics").await;
    app.announce("IMEI:metrics-1").await;
    let _ = app
        .get(&format!("/api/v1/devices/{}", seg("IMEI:metrics-1")))
        .await;
    let _ = app.get("/api/v1/devices?limit=oops").await;
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.unwrap();
    for name in [
        "# TYPE http_server_request_duration_seconds histogram",
        "http_server_request_duration_seconds_bucket{",
        "route=\"/api/v1/devices/{dev_id}\"",
        "route=\"/api/v1/devices\"",
        "status=\"400\"",
        "status=\"201\"",
        "method=\"POST\"",
        "dmgw_devices{state=\"discovered\"}",
        "dmgw_devices{state=\"attached\"}",
        "dmgw_alerts{state=\"pending\"}",
        "dmgw_alerts{state=\"failed\"}",
        "dmgw_bootstrap_jobs{state=\"awaiting_push\"}",
        "dmgw_accounts",
        "dmgw_store_up 1",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    // Paths with ids never become labels.
    assert!(!text.contains("IMEI"), "{text}");
    app.stop().await.unwrap();
}
