//! The `dmgw devices|accounts|alerts` commands against a running gateway: tables and JSON.

use gateway::cli::{self, CliError, ClientArgs, ClientCommand};
use serde_json::Value;

use crate::helpers::{TOKEN, seg, spawn_app};

fn args(url: &str, json: bool) -> ClientArgs {
    ClientArgs {
        url: url.to_owned(),
        token: Some(TOKEN.to_owned()),
        ca_cert: None,
        json,
    }
}

#[actix_web::test]
async fn the_cli_prints_tables_and_json() {
    let app = spawn_app().await;
    app.add_account("dms-cli").await;
    let dev = "IMEI:350000000000099";
    app.announce(dev).await;
    app.report(dev, &["dms-cli"]).await;
    app.wait_for(&format!("/api/v1/devices/{}", seg(dev)), "attached", |b| {
        b["state"] == "attached"
    })
    .await;
    app.wait_for("/api/v1/alerts", "an alert", |b| {
        !b["items"].as_array().unwrap().is_empty()
    })
    .await;

    let table = cli::run(&args(&app.address, false), &ClientCommand::Accounts)
        .await
        .unwrap();
    for text in [
        "server_id",
        "origin",
        "dms-cli",
        "operator",
        "http://127.0.0.1:9/dm",
    ] {
        assert!(table.contains(text), "{text} in\n{table}");
    }
    let json = cli::run(&args(&app.address, true), &ClientCommand::Accounts)
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["items"][0]["server_id"], "dms-cli");
    assert!(v.get("next").is_some());

    let list = ClientCommand::Devices {
        dev_id: None,
        state: Some("attached".into()),
    };
    let table = cli::run(&args(&app.address, false), &list).await.unwrap();
    assert!(table.contains(dev), "{table}");
    assert!(table.contains("dms-cli✓"), "{table}");
    let none = ClientCommand::Devices {
        dev_id: None,
        state: Some("lost".into()),
    };
    let table = cli::run(&args(&app.address, false), &none).await.unwrap();
    assert!(!table.contains(dev), "{table}");

    let one = ClientCommand::Devices {
        dev_id: Some(dev.into()),
        state: None,
    };
    let table = cli::run(&args(&app.address, false), &one).await.unwrap();
    for text in [dev, "attached", "ACME", "Sensor 9", "dms-cli✓"] {
        assert!(table.contains(text), "{text} in\n{table}");
    }
    let json = cli::run(&args(&app.address, true), &one).await.unwrap();
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["dev_id"], dev);
    assert!(v["events"].as_array().is_some_and(|e| !e.is_empty()));

    let alerts = ClientCommand::Alerts { state: None };
    let table = cli::run(&args(&app.address, false), &alerts).await.unwrap();
    assert!(table.contains("dms-cli"), "{table}");
    assert!(table.contains("deviceattached"), "{table}");
    let json = cli::run(
        &args(&app.address, true),
        &ClientCommand::Alerts {
            state: Some("pending".into()),
        },
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&json).unwrap();
    assert!(v["items"].is_array());
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn the_cli_reports_api_errors() {
    let app = spawn_app().await;
    let mut bad = args(&app.address, false);
    bad.token = Some("wrong-token".into());
    match cli::run(&bad, &ClientCommand::Accounts).await {
        Err(CliError::Api { status, message }) => {
            assert_eq!(status, 401);
            assert!(message.contains("bearer token"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let unknown = ClientCommand::Devices {
        dev_id: Some("IMEI:nobody".into()),
        state: None,
    };
    match cli::run(&args(&app.address, false), &unknown).await {
        Err(CliError::Api { status, message }) => {
            assert_eq!(status, 404);
            assert!(message.contains("IMEI:nobody"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let bad_state = ClientCommand::Alerts {
        state: Some("stuck".into()),
    };
    match cli::run(&args(&app.address, false), &bad_state).await {
        Err(CliError::Api { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("pending, delivered, failed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    app.stop().await.unwrap();
}
