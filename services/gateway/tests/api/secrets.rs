//! Secrets (AAuthSecret, AAuthData, the admin token) never appear in any response of a full walk
//! of the API, in the CLI's output, nor in any log line this test binary captured.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use gateway::cli::{self, ClientArgs, ClientCommand};
use omadm::secret::Secret;
use serde_json::json;

use crate::helpers::{
    CLIENT_SECRET, NONCE, SERVER_SECRET, TOKEN, account, captured_logs, json_of, seg, spawn_app,
};

/// Every form of a secret that would betray it.
fn forms() -> Vec<String> {
    let mut out = Vec::new();
    for s in [CLIENT_SECRET, SERVER_SECRET, NONCE, TOKEN] {
        out.push(s.to_owned());
        out.push(B64.encode(s));
    }
    out.push(B64.encode(format!("gateway-1:{CLIENT_SECRET}")));
    out
}

fn assert_clean(what: &str, text: &str) {
    for f in forms() {
        assert!(
            !text.contains(&f),
            "{what} contains a secret ({} chars)",
            f.len()
        );
    }
}

#[actix_web::test]
async fn no_secret_in_any_response_or_log_line() {
    let app = spawn_app().await;
    let mut bodies: Vec<(String, String)> = Vec::new();
    let mut keep = |what: &str, text: String| bodies.push((what.to_owned(), text));

    // Write paths, including failures that carry the secrets in their request.
    let resp = app.post_account(&account("dms-s1")).await;
    keep("POST account", resp.text().await.unwrap());
    let resp = app.post_account(&account("dms-s1")).await;
    keep("POST duplicate", resp.text().await.unwrap());
    let mut bad = account("dms-s2");
    bad["port"] = json!(CLIENT_SECRET);
    let resp = app.post_account(&bad).await;
    keep(
        "POST secret in a wrongly typed field",
        resp.text().await.unwrap(),
    );
    let mut bad = account("dms-s2");
    bad["auth_secret"] = json!(12_345_678_901_u64);
    keep(
        "POST numeric secret",
        app.post_account(&bad).await.text().await.unwrap(),
    );
    let mut bad = account("dms-s2");
    bad["addr"] = json!(format!("ftp://{CLIENT_SECRET}/dm"));
    let (_, body) = json_of(app.post_account(&bad).await).await;
    assert_eq!(body["field"], "addr");
    let raw = format!("{{\"auth_secret\": \"{CLIENT_SECRET}\" ,,}}");
    keep(
        "POST malformed",
        app.post_raw(raw.into_bytes(), "application/json")
            .await
            .text()
            .await
            .unwrap(),
    );
    app.state
        .store
        .update_auth_data("dms-s1", "CLCRED", Some(&Secret::new(NONCE)))
        .await
        .unwrap();

    // A device onboarding against it: matching, an alert delivery attempt with the credentials.
    let dev = "IMEI:350000000000042";
    app.announce(dev).await;
    app.report(dev, &["dms-s1", "dms-missing"]).await;
    app.wait_for(
        "/api/v1/alerts?server_id=dms-s1",
        "a delivery attempt",
        |b| {
            b["items"][0]["attempts"].as_u64().unwrap_or(0) >= 1
                || b["items"][0]["state"] != "pending"
        },
    )
    .await;

    // Every read path.
    let dev_path = format!("/api/v1/devices/{}", seg(dev));
    for path in [
        "/api/v1/devices",
        dev_path.as_str(),
        "/api/v1/accounts",
        "/api/v1/accounts/dms-s1",
        "/api/v1/alerts",
        "/api/v1/bootstraps",
        "/api/v1/tree",
        "/api/v1/tree?uri=./DMAcc",
        "/api/v1/tree?uri=./DMAcc/dms-s1/AppAuth/CLCRED/AAuthData",
        "/api/v1/tree?uri=./DMAcc/dms-s1/AppAuth/SRVCRED/AAuthSecret",
        "/metrics",
        "/api-docs/openapi.json",
        "/healthz",
        "/readyz",
        "/api/v1/nope",
    ] {
        let resp = app.get(path).await;
        assert!(resp.status().as_u16() < 500, "{path}");
        keep(path, resp.text().await.unwrap());
    }
    // Failed authentication.
    let resp = app
        .client
        .get(app.url("/api/v1/accounts"))
        .bearer_auth(format!("{TOKEN}-wrong"))
        .send()
        .await
        .unwrap();
    for (name, value) in resp.headers() {
        keep(name.as_str(), value.to_str().unwrap_or_default().to_owned());
    }
    keep("401", resp.text().await.unwrap());

    // The CLI, tables and JSON.
    for json in [false, true] {
        let args = ClientArgs {
            url: app.address.clone(),
            token: Some(TOKEN.to_owned()),
            ca_cert: None,
            json,
        };
        for cmd in [
            ClientCommand::Accounts,
            ClientCommand::Devices {
                dev_id: None,
                state: None,
            },
            ClientCommand::Devices {
                dev_id: Some(dev.to_owned()),
                state: None,
            },
            ClientCommand::Alerts { state: None },
        ] {
            keep(
                &format!("cli {cmd:?}"),
                cli::run(&args, &cmd).await.unwrap(),
            );
        }
    }

    // Detach and delete (the last writes).
    keep(
        "DELETE device",
        app.delete(&dev_path).await.text().await.unwrap(),
    );
    keep(
        "DELETE account",
        app.delete("/api/v1/accounts/dms-s1")
            .await
            .text()
            .await
            .unwrap(),
    );

    for (what, text) in &bodies {
        assert_clean(what, text);
    }
    // The account really was there (the walk saw it).
    assert!(bodies.iter().any(|(_, b)| b.contains("dms-s1")));

    let logs = captured_logs();
    assert!(
        logs.contains("account added by an operator"),
        "log capture works"
    );
    assert_clean("the captured logs", &logs);
    app.stop().await.unwrap();
}
