//! Start, stop and start again: data survives a restart on the same SQLite file, migrations apply
//! to an existing database, shutdown is graceful, and `dmgw serve` refuses to run without a token.

use std::process::Command;

use gateway::config::ServeArgs;
use gateway::store::{MIGRATOR, Store, StoreOptions};
use reqwest::StatusCode;

use crate::helpers::{seg, spawn_with, test_args};

#[actix_web::test]
async fn data_survives_a_restart_on_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("dmgw.db");
    let app = spawn_with(test_args(&db)).await;
    assert_eq!(app.db, db);
    app.add_account("dms-restart").await;
    app.announce("IMEI:restart-1").await;
    let state = app.state.clone();
    app.stop().await.unwrap();
    assert!(
        state.store.pool().is_closed(),
        "the store is closed at shutdown"
    );
    assert!(db.exists());

    let app = spawn_with(test_args(&db)).await;
    let (status, acc) = app.get_json("/api/v1/accounts/dms-restart").await;
    assert_eq!(status, StatusCode::OK, "{acc}");
    assert_eq!(acc["origin"], "operator");
    let (status, dev) = app
        .get_json(&format!("/api/v1/devices/{}", seg("IMEI:restart-1")))
        .await;
    assert_eq!(status, StatusCode::OK, "{dev}");
    assert_eq!(dev["man"], "ACME");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(usize::try_from(applied).unwrap(), MIGRATOR.iter().count());
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn migrations_apply_to_an_existing_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dmgw.db");
    // A database created (and migrated) before the gateway first starts, e.g. by an older build.
    let store = Store::open(&db, &StoreOptions::default()).await.unwrap();
    sqlx::query(
        "INSERT INTO events (dev_id, kind, detail, at) VALUES (NULL, 'preexisting', '{}', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    let app = spawn_with(test_args(&db)).await;
    let (status, _) = app.get_json("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE kind = 'preexisting'")
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(kept, 1);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn shutdown_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(test_args(&dir.path().join("dmgw.db"))).await;
    let state = app.state.clone();
    let url = app.url("/healthz");
    let client = app.client.clone();
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    app.stop().await.unwrap();
    assert!(state.store.pool().is_closed());
    assert!(!state.is_ready());
    assert!(
        client.get(&url).send().await.is_err(),
        "no longer listening"
    );
}

#[test]
fn serve_refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dmgw.db");
    let err = ServeArgs {
        database: Some(db.clone()),
        ..ServeArgs::default()
    }
    .resolve()
    .unwrap_err();
    assert!(err.to_string().contains("admin_token"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_dmgw"))
        .args(["serve", "--database"])
        .arg(&db)
        .args(["--admin-listen", "127.0.0.1:0"])
        .env_remove("DMGW_ADMIN_TOKEN")
        .env_remove("DMGW_ADMIN_TOKEN_FILE")
        .env_remove("DMGW_INSECURE_ADMIN")
        .env_remove("DMGW_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin_token"), "{stderr}");
    assert!(!db.exists(), "nothing was opened");
}
