//! `/api/v1/devices`: the list (paged, filtered by state), one device with its servers and
//! events, and the operator's detach; driven by the real actors (announce, report, match).

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{json_of, seg, spawn_app};

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dev_id"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn an_empty_inventory_is_an_empty_page() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/v1/devices").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"items": [], "next": null}));
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn onboarding_shows_in_devices_alerts_and_bootstraps() {
    let app = spawn_app().await;
    app.add_account("dms-known").await;
    let dev = "IMEI:350000000000001";
    let path = format!("/api/v1/devices/{}", seg(dev));
    app.announce(dev).await;
    let (status, body) = app.get_json(&path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "discovered");
    assert_eq!(body["man"], "ACME");

    app.report(dev, &["dms-known", "dms-new"]).await;
    let body = app
        .wait_for(&path, "the device to wait for a bootstrap", |b| {
            b["state"] == "waiting_bootstrap"
        })
        .await;
    let servers = body["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["server_id"], "dms-known");
    assert_eq!(servers[0]["matched"], true);
    assert_eq!(servers[1]["server_id"], "dms-new");
    assert_eq!(servers[1]["matched"], false);
    let kinds: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in ["discovered", "servers_reported", "matched"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    // Newest first.
    assert_eq!(kinds.first(), Some(&"matched"), "{kinds:?}");

    // The state filter.
    let (_, page) = app
        .get_json("/api/v1/devices?state=waiting_bootstrap")
        .await;
    assert_eq!(ids(&page), [dev]);
    let (_, page) = app.get_json("/api/v1/devices?state=attached").await;
    assert!(ids(&page).is_empty());

    // The unmatched server got a bootstrap job (workflow 1: the device gave a URL).
    let jobs = app
        .wait_for(
            "/api/v1/bootstraps?server_id=dms-new",
            "a bootstrap job",
            |b| !b["items"].as_array().unwrap().is_empty(),
        )
        .await;
    let job = &jobs["items"][0];
    assert_eq!(job["dev_id"], dev);
    assert_eq!(job["workflow"], 1);
    assert_eq!(job["bootstrap_url"], "https://bootstrap.example/dms-new");
    let (_, none) = app.get_json("/api/v1/bootstraps?server_id=dms-known").await;
    assert_eq!(none["items"], Value::Array(vec![]));

    // The matched server got a deviceattached alert in the outbox.
    let alerts = app
        .wait_for("/api/v1/alerts?server_id=dms-known", "an alert", |b| {
            !b["items"].as_array().unwrap().is_empty()
        })
        .await;
    let alert = &alerts["items"][0];
    assert_eq!(alert["dev_id"], dev);
    assert!(
        alert["alert_type"]
            .as_str()
            .unwrap()
            .contains("deviceattached"),
        "{alert}"
    );
    let (_, by_dev) = app
        .get_json(&format!("/api/v1/alerts?dev_id={}", seg(dev)))
        .await;
    assert!(!by_dev["items"].as_array().unwrap().is_empty());

    // The operator adds the missing account: the device is matched again and attached.
    app.add_account("dms-new").await;
    let body = app
        .wait_for(&path, "the device to be attached", |b| {
            b["state"] == "attached"
        })
        .await;
    assert!(
        body["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["matched"] == true)
    );
    app.wait_for(
        "/api/v1/alerts?server_id=dms-new",
        "an alert to dms-new",
        |b| !b["items"].as_array().unwrap().is_empty(),
    )
    .await;

    // Detach.
    let (status, body) = json_of(app.delete(&path).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dev_id"], dev);
    assert_eq!(body["state"], "detached");
    let (_, page) = app.get_json("/api/v1/devices?state=detached").await;
    assert_eq!(ids(&page), [dev]);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn unknown_devices_are_404() {
    let app = spawn_app().await;
    for resp in [
        app.get("/api/v1/devices/IMEI%3A9").await,
        app.delete("/api/v1/devices/IMEI%3A9").await,
    ] {
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "device \"IMEI:9\" not found");
    }
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn ids_with_reserved_characters_round_trip_in_paths() {
    let app = spawn_app().await;
    let dev = "urn:dev/1+a b%2F";
    app.announce(dev).await;
    let (status, body) = app.get_json(&format!("/api/v1/devices/{}", seg(dev))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dev_id"], dev);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn devices_are_paged() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.announce(&format!("IMEI:10{i}")).await;
    }
    let (_, first) = app.get_json("/api/v1/devices?limit=2").await;
    assert_eq!(ids(&first), ["IMEI:100", "IMEI:101"]);
    let next = first["next"].as_i64().unwrap();
    let (_, second) = app
        .get_json(&format!("/api/v1/devices?limit=2&after={next}"))
        .await;
    assert_eq!(ids(&second), ["IMEI:102", "IMEI:103"]);
    let next = second["next"].as_i64().unwrap();
    let (_, last) = app
        .get_json(&format!("/api/v1/devices?limit=2&after={next}"))
        .await;
    assert_eq!(ids(&last), ["IMEI:104"]);
    assert_eq!(last["next"], Value::Null);
    app.stop().await.unwrap();
}
