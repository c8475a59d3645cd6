//! The bearer token: every route but `/healthz` and `/readyz` refuses a missing or wrong token
//! with 401, a JSON body and `WWW-Authenticate: Bearer`; `--insecure-admin` lets all pass.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TOKEN, account, json_of, spawn_app, spawn_with, test_args};

/// Every protected route (method, path), with parameters where it has some.
pub const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/api/v1/devices"),
    ("GET", "/api/v1/devices?state=attached&limit=5"),
    ("GET", "/api/v1/devices/IMEI%3A350000000000001"),
    ("DELETE", "/api/v1/devices/IMEI%3A350000000000001"),
    ("GET", "/api/v1/accounts"),
    ("POST", "/api/v1/accounts"),
    ("GET", "/api/v1/accounts/dms-auth"),
    ("DELETE", "/api/v1/accounts/dms-auth"),
    ("GET", "/api/v1/alerts?state=pending"),
    ("GET", "/api/v1/bootstraps?state=pending"),
    ("GET", "/api/v1/tree?uri=./DMAcc"),
    ("GET", "/api/v1/no-such-route"),
    ("GET", "/metrics"),
    ("GET", "/api-docs/openapi.json"),
];

async fn assert_refused(resp: reqwest::Response, invalid: bool, what: &str) {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"))
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    assert_eq!(challenge.contains("invalid_token"), invalid, "{what}");
    let (_, body) = json_of(resp).await;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("bearer token"), "{what}: {body}");
}

#[actix_web::test]
async fn every_protected_route_needs_the_token() {
    let app = spawn_app().await;
    for (method, path) in PROTECTED {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let what = format!("{method} {path}");
        let body = account("dms-auth");
        let req = || app.client.request(m.clone(), app.url(path)).json(&body);
        assert_refused(req().send().await.unwrap(), false, &what).await;
        let wrong = format!("{TOKEN}x");
        assert_refused(req().bearer_auth(&wrong).send().await.unwrap(), true, &what).await;
        assert_refused(
            req()
                .bearer_auth(&TOKEN[..TOKEN.len() - 1])
                .send()
                .await
                .unwrap(),
            true,
            &what,
        )
        .await;
        assert_refused(
            req().basic_auth("admin", Some(TOKEN)).send().await.unwrap(),
            true,
            &what,
        )
        .await;
    }
    // The refused POST wrote nothing.
    let (status, _) = app.get_json("/api/v1/accounts/dms-auth").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // And the right token passes.
    let (status, body) = app.get_json("/api/v1/devices").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn insecure_admin_lets_every_request_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = test_args(&dir.path().join("dmgw.db"));
    args.admin_token = None;
    args.insecure_admin = true;
    let app = spawn_with(args).await;
    for path in ["/api/v1/devices", "/api/v1/accounts", "/metrics"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let resp = app
        .client
        .get(app.url("/api/v1/alerts"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, body): (_, Value) = json_of(resp).await;
    assert_eq!(body["items"], Value::Array(vec![]));
    app.stop().await.unwrap();
}
