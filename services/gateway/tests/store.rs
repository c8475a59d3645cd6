//! Integration tests of the gateway store: each test opens its own fresh SQLite file in a
//! temporary folder (no shared state, no sleeps) and drives `Store` as the actors and API will.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::domain::{
    AlertFilter, AlertState, DeviceFilter, DeviceUpsert, JobFilter, JobState, JobUpdate, Millis,
    NewAlert, NewEvent, NewJob, Origin, Page, ServerReport, StateChange, Workflow, WriteOutcome,
};
use gateway::store::{MIGRATOR, Store, StoreError, StoreOptions, devices, events, outbox};
use omadm::mo::{
    AddrType, AppAddr, AppAuth, AuthLevel, AuthType, DevInfo, DeviceRecord, DeviceState, DmAcc,
    Port,
};
use omadm::secret::Secret;
use omadm::tree::{Tree, TreeError};
use omadm::uri::DmUri;
use sqlx::Row;
use sqlx::migrate::MigrateError;
use tempfile::TempDir;

const CLIENT_PW: &str = "client-password-1234";
const SERVER_PW: &str = "server-password-5678";
const NONCE: &str = "bm9uY2UtMQ==";

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("state").join("nested").join("dmgw.db")
}

async fn fresh() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir), &StoreOptions::default())
        .await
        .unwrap();
    (dir, store)
}

fn account(server_id: &str) -> DmAcc {
    DmAcc {
        server_id: server_id.into(),
        name: Some(format!("{server_id} DM")),
        pref_con_ref: None,
        app_addr: vec![AppAddr {
            key: "1".into(),
            addr: format!("https://{server_id}/dm"),
            addr_type: AddrType::Uri,
            ports: vec![Port {
                key: "1".into(),
                port_nbr: 443,
            }],
        }],
        aauth_pref: Some(AuthType::Digest),
        app_auth: vec![
            AppAuth {
                key: "1".into(),
                level: AuthLevel::Clcred,
                auth_type: AuthType::Digest,
                name: Some("gw-1".into()),
                secret: Some(Secret::new(CLIENT_PW)),
                data: Some(Secret::new(NONCE)),
            },
            AppAuth {
                key: "2".into(),
                level: AuthLevel::Srvcred,
                auth_type: AuthType::Digest,
                name: Some(server_id.into()),
                secret: Some(Secret::new(SERVER_PW)),
                data: None,
            },
        ],
        bootstrap_server_url: Some("https://bs.example.com/bootstrap".into()),
    }
}

fn device(i: usize, at: Millis) -> DeviceUpsert {
    DeviceUpsert {
        dev_id: format!("IMEI:35000000000{i:04}"),
        man: Some("ACME".into()),
        model: Some("Sensor 3".into()),
        dev_type: Some("sensor".into()),
        dm_v: Some("1.2".into()),
        lang: Some("en-US".into()),
        address: Some(format!("10.0.{}.{}", i / 256, i % 256)),
        state: None,
        seen_at: at,
    }
}

fn alert(dev_id: &str, server_id: &str, correlator: &str, at: Millis) -> NewAlert {
    NewAlert {
        dev_id: dev_id.into(),
        server_id: server_id.into(),
        alert_type: "urn:oma:at:gwmo:1.0:deviceattached".into(),
        correlator: correlator.into(),
        data: Some(format!("<DevId>{dev_id}</DevId>")),
        next_attempt_at: at,
    }
}

fn devinfo() -> DevInfo {
    DevInfo {
        dev_id: "dmgw:gw-1".into(),
        man: "dmgw".into(),
        model: "gateway".into(),
        dm_v: "1.2".into(),
        lang: "en".into(),
        ext: Default::default(),
    }
}

fn uri(s: &str) -> DmUri {
    s.parse().unwrap()
}

async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn applied_migrations(path: &Path) -> Vec<(i64, String)> {
    let store = Store::open(path, &StoreOptions::default()).await.unwrap();
    let rows = sqlx::query("SELECT version, installed_on FROM _sqlx_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
        .collect();
    store.close().await;
    rows
}

// ---------------------------------------------------------------------------------------------
// Opening, pragmas, migrations

#[tokio::test]
async fn open_creates_folder_and_schema_and_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    assert!(!path.parent().unwrap().exists());
    let store = Store::open(&path, &StoreOptions::default()).await.unwrap();
    assert!(path.exists());
    store.ping().await.unwrap();
    for table in [
        "accounts",
        "account_addrs",
        "account_ports",
        "account_auths",
        "account_secrets",
        "devices",
        "device_servers",
        "alert_outbox",
        "bootstrap_jobs",
        "events",
    ] {
        assert_eq!(count(&store, table).await, 0, "{table}");
    }
    store
        .insert_account(&account("s1"), None, Origin::Factory)
        .await
        .unwrap();
    store.close().await;

    let first = applied_migrations(&path).await;
    assert_eq!(first.len(), MIGRATOR.iter().count());
    // Re-opening applies nothing again (same versions, same install times) and keeps the data.
    let again = applied_migrations(&path).await;
    assert_eq!(first, again);
    let store = Store::open(&path, &StoreOptions::default()).await.unwrap();
    assert_eq!(store.account("s1").await.unwrap().server_id, "s1");
}

#[tokio::test]
async fn wal_foreign_keys_and_timeouts_are_on() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        busy_timeout: Duration::from_millis(1234),
        max_connections: 2,
        ..StoreOptions::default()
    };
    let store = Store::open(&db_path(&dir), &opts).await.unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(busy, 1234);
    // Foreign keys are enforced: a secret for an auth entry that does not exist is refused.
    let orphan =
        sqlx::query("INSERT INTO account_secrets (account_id, node_name) VALUES (99, 'x')")
            .execute(&mut *conn)
            .await;
    assert!(orphan.is_err());
    drop(conn);
    assert!(matches!(
        Store::open(
            &db_path(&dir),
            &StoreOptions {
                max_connections: 0,
                ..StoreOptions::default()
            }
        )
        .await,
        Err(StoreError::Invalid {
            field: "max_connections",
            ..
        })
    ));
}

/// A database that already holds data and only some of the migrations (here: an older gateway's
/// file) gets the missing ones applied, and its data is kept.
#[tokio::test]
async fn migrations_apply_to_an_existing_database_with_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // The older gateway knew every migration but the last one.
    let all = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect::<Vec<_>>();
    assert_eq!(all.len(), MIGRATOR.iter().count());
    let mut sorted = all.clone();
    sorted.sort();
    let older = dir.path().join("older-migrations");
    std::fs::create_dir_all(&older).unwrap();
    for p in &sorted[..sorted.len() - 1] {
        std::fs::copy(p, older.join(p.file_name().unwrap())).unwrap();
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(older.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // Data the older gateway wrote (a table of its own, so the test holds whatever the
    // older schema is).
    sqlx::query("CREATE TABLE legacy_notes (note TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO legacy_notes VALUES ('kept')")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = Store::open(&path, &StoreOptions::default()).await.unwrap();
    let note: String = sqlx::query_scalar("SELECT note FROM legacy_notes")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(note, "kept");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let expected: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(versions, expected);
    store
        .insert_account(&account("s1"), None, Origin::Factory)
        .await
        .unwrap();
}

/// A database from a newer gateway (a migration this one does not know) or with an applied
/// migration that was edited afterwards is refused, not silently used.
#[tokio::test]
async fn unknown_or_edited_migrations_are_refused() {
    let (dir, store) = fresh().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, \
                                       execution_time) \
         VALUES (99990101000000, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    assert!(matches!(
        Store::open(&db_path(&dir), &StoreOptions::default()).await,
        Err(StoreError::Migrate(MigrateError::VersionMissing(
            99990101000000
        )))
    ));

    let (dir, store) = fresh().await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00'")
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    assert!(matches!(
        Store::open(&db_path(&dir), &StoreOptions::default()).await,
        Err(StoreError::Migrate(MigrateError::VersionMismatch(_)))
    ));
}

// ---------------------------------------------------------------------------------------------
// Accounts

#[tokio::test]
async fn accounts_insert_list_get_delete() {
    let (_dir, store) = fresh().await;
    let view = store
        .insert_account(&account("dm.example.com"), None, Origin::Operator)
        .await
        .unwrap();
    assert_eq!(view.node_name, "dm_2Eexample_2Ecom");
    assert_eq!(view.origin, Origin::Operator);
    assert_eq!(view.addresses[0].ports[0].port_nbr, 443);
    assert!(view.auths.iter().all(|a| a.has_secret));
    assert_eq!(
        view.auths.iter().map(|a| a.has_data).collect::<Vec<_>>(),
        [true, false]
    );
    store
        .insert_account(&account("s2"), Some("Two"), Origin::Factory)
        .await
        .unwrap();

    // Reading back: the view equals what insert returned; the full account round-trips.
    assert_eq!(store.account("dm.example.com").await.unwrap(), view);
    let full = store.load_account("dm.example.com").await.unwrap();
    assert_eq!(full.account, account("dm.example.com"));
    assert_eq!(full.node_name, "dm_2Eexample_2Ecom");
    assert_eq!(store.load_accounts().await.unwrap().len(), 2);
    assert_eq!(
        store
            .server_ids()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["dm.example.com", "s2"]
    );

    // Pagination.
    let page1 = store
        .list_accounts(&Page::new(1, None).unwrap())
        .await
        .unwrap();
    assert_eq!(page1.items.len(), 1);
    assert_eq!(page1.items[0].server_id, "dm.example.com");
    let page2 = store
        .list_accounts(&Page::new(1, page1.next_after).unwrap())
        .await
        .unwrap();
    assert_eq!(page2.items[0].server_id, "s2");
    assert_eq!(page2.items[0].node_name, "Two");
    let page3 = store
        .list_accounts(&Page::new(1, page2.next_after).unwrap())
        .await
        .unwrap();
    assert!(page3.items.is_empty() && page3.next_after.is_none());

    // Secrets never reach a view, its JSON or its Debug.
    let all = store.list_accounts(&Page::first()).await.unwrap();
    let json = serde_json::to_string(&all).unwrap();
    let debug = format!("{all:?} {full:?}");
    for secret in [CLIENT_PW, SERVER_PW, NONCE] {
        assert!(!json.contains(secret), "{secret} in {json}");
        assert!(!debug.contains(secret), "{secret} in debug");
    }
    assert!(json.contains("\"has_secret\":true"));

    // The nonce is updated after a session.
    store
        .update_auth_data("dm.example.com", "1", Some(&Secret::new("bmV3LW5vbmNl")))
        .await
        .unwrap();
    let full = store.load_account("dm.example.com").await.unwrap();
    assert_eq!(
        full.account.client_credentials().unwrap().data,
        Some(Secret::new("bmV3LW5vbmNl"))
    );
    assert!(matches!(
        store
            .update_auth_data("dm.example.com", "1", Some(&Secret::new("not base64!")))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.update_auth_data("dm.example.com", "9", None).await,
        Err(StoreError::NotFound { .. })
    ));

    // Delete cascades to addresses, ports, auths and secrets.
    store.delete_account("dm.example.com").await.unwrap();
    assert!(matches!(
        store.account("dm.example.com").await,
        Err(StoreError::NotFound {
            what: "account",
            ..
        })
    ));
    assert!(matches!(
        store.delete_account("dm.example.com").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(count(&store, "account_addrs").await, 1);
    assert_eq!(count(&store, "account_ports").await, 1);
    assert_eq!(count(&store, "account_auths").await, 2);
    assert_eq!(count(&store, "account_secrets").await, 2);
}

#[tokio::test]
async fn account_conflicts_and_validation() {
    let (_dir, store) = fresh().await;
    store
        .insert_account(&account("s1"), Some("A"), Origin::Factory)
        .await
        .unwrap();
    let dup = store
        .insert_account(&account("s1"), Some("B"), Origin::Operator)
        .await
        .unwrap_err();
    assert!(
        matches!(&dup, StoreError::Conflict { what: "account", key } if key == "s1"),
        "{dup:?}"
    );
    let node = store
        .insert_account(&account("s2"), Some("A"), Origin::Operator)
        .await
        .unwrap_err();
    assert!(matches!(
        node,
        StoreError::Conflict {
            what: "account node",
            ..
        }
    ));
    // Nothing of the refused accounts was written.
    assert_eq!(count(&store, "accounts").await, 1);
    assert_eq!(count(&store, "account_auths").await, 2);

    let mut bad = account("s3");
    bad.app_auth[0].data = Some(Secret::new("%%% not base64"));
    let e = store
        .insert_account(&bad, None, Origin::Operator)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid { .. }));
    assert!(!e.to_string().contains(CLIENT_PW));
    let mut bad = account("s3");
    bad.app_addr.push(bad.app_addr[0].clone());
    assert!(matches!(
        store.insert_account(&bad, None, Origin::Operator).await,
        Err(StoreError::Invalid {
            field: "app_addr key",
            ..
        })
    ));
}

#[tokio::test]
async fn insert_or_replace_follows_the_policy() {
    let (_dir, store) = fresh().await;
    let first = store
        .insert_or_replace_account(&account("s1"), Some("S1"), Origin::Bootstrap, false)
        .await
        .unwrap();
    assert_eq!(first.outcome, WriteOutcome::Inserted);
    let mut changed = account("s1");
    changed.name = Some("changed".into());
    changed.app_auth.truncate(1);
    let skipped = store
        .insert_or_replace_account(&changed, Some("Other"), Origin::Bootstrap, false)
        .await
        .unwrap();
    assert_eq!(skipped.outcome, WriteOutcome::Skipped);
    assert_eq!(skipped.account, first.account);
    let replaced = store
        .insert_or_replace_account(&changed, Some("Other"), Origin::Operator, true)
        .await
        .unwrap();
    assert_eq!(replaced.outcome, WriteOutcome::Replaced);
    assert_eq!(replaced.account.node_name, "S1");
    assert_eq!(replaced.account.created_at, first.account.created_at);
    assert_eq!(replaced.account.origin, Origin::Operator);
    let stored = store.load_account("s1").await.unwrap();
    assert_eq!(stored.account, changed);
    assert_eq!(count(&store, "account_secrets").await, 1);
    // A new ServerID whose wanted node name is taken lands at its escaped ServerID.
    let other = store
        .insert_or_replace_account(&account("s.2"), Some("S1"), Origin::Bootstrap, false)
        .await
        .unwrap();
    assert_eq!(other.outcome, WriteOutcome::Inserted);
    assert_eq!(other.account.node_name, "s_2E2");
}

// ---------------------------------------------------------------------------------------------
// Devices

#[tokio::test]
async fn thousand_devices_in_one_batch() {
    let (_dir, store) = fresh().await;
    let t0 = Millis(1_714_564_800_000);
    let batch: Vec<DeviceUpsert> = (0..1000).map(|i| device(i, t0)).collect();
    let out = store.upsert_devices(&batch).await.unwrap();
    assert_eq!(out.len(), 1000);
    assert!(out.iter().all(|d| d.created));
    assert!(
        out.iter()
            .all(|d| d.device.state == DeviceState::Discovered && d.device.first_seen == t0)
    );
    assert_eq!(out[999].device.dev_id, batch[999].dev_id);
    assert_eq!(count(&store, "devices").await, 1000);

    // Seen again: last_seen moves, first_seen stays, absent fields are kept, state is set.
    let t1 = t0.saturating_add(Duration::from_secs(60));
    let mut again: Vec<DeviceUpsert> = (0..1000)
        .map(|i| DeviceUpsert::seen(device(i, t1).dev_id, t1))
        .collect();
    again[0].state = Some(DeviceState::Consented);
    again[0].address = Some("10.9.9.9".into());
    let out = store.upsert_devices(&again).await.unwrap();
    assert!(out.iter().all(|d| !d.created));
    let d0 = &out[0].device;
    assert_eq!((d0.first_seen, d0.last_seen), (t0, t1));
    assert_eq!(d0.state, DeviceState::Consented);
    assert_eq!(d0.address.as_deref(), Some("10.9.9.9"));
    assert_eq!(d0.man.as_deref(), Some("ACME"));
    assert_eq!(out[1].device.state, DeviceState::Discovered);
    // An older sighting does not move last_seen back.
    let out = store
        .upsert_devices(&[DeviceUpsert::seen(batch[1].dev_id.clone(), t0)])
        .await
        .unwrap();
    assert_eq!(out[0].device.last_seen, t1);

    // Batch state change; unknown devices are skipped.
    let changes: Vec<StateChange> = (0..10)
        .map(|i| StateChange {
            dev_id: batch[i].dev_id.clone(),
            state: DeviceState::Attached,
        })
        .chain([StateChange {
            dev_id: "IMEI:unknown".into(),
            state: DeviceState::Attached,
        }])
        .collect();
    assert_eq!(store.set_device_states(&changes).await.unwrap(), 10);

    // Pagination with a state filter, then over everything.
    let attached = DeviceFilter {
        state: Some(DeviceState::Attached),
    };
    let page = store
        .list_devices(&attached, &Page::new(4, None).unwrap())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 4);
    assert!(page.items.iter().all(|d| d.state == DeviceState::Attached));
    let mut seen = 0;
    let mut after = None;
    loop {
        let page = store
            .list_devices(&DeviceFilter::default(), &Page::new(500, after).unwrap())
            .await
            .unwrap();
        seen += page.items.len();
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, 1000);

    // Invalid input writes nothing.
    let mut bad = batch[..3].to_vec();
    bad[2].dev_id = ":".repeat(40);
    assert!(matches!(
        store.upsert_devices(&bad).await,
        Err(StoreError::Invalid {
            field: "dev_id",
            ..
        })
    ));

    store.delete_device(&batch[0].dev_id).await.unwrap();
    assert!(matches!(
        store.device(&batch[0].dev_id).await,
        Err(StoreError::NotFound { what: "device", .. })
    ));
    assert_eq!(count(&store, "devices").await, 999);
}

#[tokio::test]
async fn reported_servers_and_matching() {
    let (_dir, store) = fresh().await;
    store
        .insert_account(&account("s1"), None, Origin::Factory)
        .await
        .unwrap();
    let now = Millis::now();
    let dev = device(1, now);
    let other = device(2, now);
    store
        .upsert_devices(&[dev.clone(), other.clone()])
        .await
        .unwrap();
    let reports = [
        ServerReport {
            server_id: "s2".into(),
            bootstrap_url: Some("https://bs.example.com/s2".into()),
        },
        ServerReport {
            server_id: "s1".into(),
            bootstrap_url: None,
        },
        ServerReport {
            server_id: "s2".into(),
            bootstrap_url: None,
        },
    ];
    let view = store.report_servers(&dev.dev_id, &reports).await.unwrap();
    let got: Vec<(&str, bool)> = view
        .servers
        .iter()
        .map(|s| (s.server_id.as_str(), s.matched))
        .collect();
    assert_eq!(got, [("s2", false), ("s1", true)]);
    assert_eq!(
        view.servers[0].bootstrap_url.as_deref(),
        Some("https://bs.example.com/s2")
    );
    store
        .report_servers(&other.dev_id, &reports[..1])
        .await
        .unwrap();
    assert_eq!(
        store.devices_waiting_on("s2").await.unwrap(),
        [dev.dev_id.clone(), other.dev_id.clone()]
    );
    assert!(store.devices_waiting_on("s1").await.unwrap().is_empty());

    // Re-reporting replaces the set.
    let view = store
        .report_servers(&other.dev_id, &reports[1..2])
        .await
        .unwrap();
    assert_eq!(view.servers.len(), 1);
    assert!(view.servers[0].matched);
    assert_eq!(
        store.devices_waiting_on("s2").await.unwrap(),
        [dev.dev_id.as_str()]
    );

    // Re-match after a bootstrap brought s2.
    assert!(store.rematch_server("s2").await.unwrap().is_empty());
    store
        .insert_account(&account("s2"), None, Origin::Bootstrap)
        .await
        .unwrap();
    assert_eq!(
        store.rematch_server("s2").await.unwrap(),
        [dev.dev_id.as_str()]
    );
    assert!(store.devices_waiting_on("s2").await.unwrap().is_empty());
    assert!(
        store
            .device(&dev.dev_id)
            .await
            .unwrap()
            .servers
            .iter()
            .all(|s| s.matched)
    );

    // Deleting an account unmatches its reports; set_matched marks them again.
    store.delete_account("s1").await.unwrap();
    assert_eq!(
        store.devices_waiting_on("s1").await.unwrap(),
        [dev.dev_id.clone(), other.dev_id.clone()]
    );
    assert_eq!(
        store
            .set_matched(&dev.dev_id, &["s1".into(), "nope".into()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.devices_waiting_on("s1").await.unwrap(),
        [other.dev_id.as_str()]
    );
    assert!(matches!(
        store.report_servers("IMEI:nobody", &reports).await,
        Err(StoreError::NotFound { .. })
    ));
    // Deleting a device removes its reports.
    store.delete_device(&dev.dev_id).await.unwrap();
    assert_eq!(count(&store, "device_servers").await, 1);
}

// ---------------------------------------------------------------------------------------------
// Outbox

#[tokio::test]
async fn outbox_enqueue_is_idempotent_and_delivery_is_tracked() {
    let (_dir, store) = fresh().await;
    let t0 = Millis(1_714_564_800_000);
    let a1 = alert("IMEI:1", "s1", "c-1", t0);
    let a2 = alert(
        "IMEI:2",
        "s1",
        "c-2",
        t0.saturating_add(Duration::from_secs(5)),
    );
    let a3 = alert("IMEI:1", "s2", "c-3", t0);
    let first = store
        .enqueue_alerts(&[a1.clone(), a2.clone(), a3.clone()])
        .await
        .unwrap();
    assert!(first.iter().all(|e| e.created));
    assert!(
        first
            .iter()
            .all(|e| e.alert.state == AlertState::Pending && e.alert.attempts == 0)
    );
    // Enqueueing again is a no-op returning the stored rows.
    let again = store
        .enqueue_alerts(&[a1.clone(), a2.clone()])
        .await
        .unwrap();
    assert!(again.iter().all(|e| !e.created));
    assert_eq!(again[0].alert, first[0].alert);
    assert_eq!(count(&store, "alert_outbox").await, 3);
    // The same correlator for something else is a conflict, and the batch writes nothing.
    let clash = alert("IMEI:9", "s1", "c-1", t0);
    let fresh_one = alert("IMEI:9", "s1", "c-9", t0);
    assert!(matches!(
        store.enqueue_alerts(&[fresh_one, clash]).await,
        Err(StoreError::Conflict {
            what: "alert correlator",
            ..
        })
    ));
    assert_eq!(count(&store, "alert_outbox").await, 3);

    // Due: by next_attempt_at.
    let due = store.due_alerts(t0, 10).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|a| a.correlator.as_str())
            .collect::<Vec<_>>(),
        ["c-1", "c-3"]
    );
    let later = t0.saturating_add(Duration::from_secs(10));
    assert_eq!(store.due_alerts(later, 10).await.unwrap().len(), 3);
    assert_eq!(store.due_alerts(later, 1).await.unwrap().len(), 1);
    assert!(store.due_alerts(later, 0).await.is_err());
    let for_s1 = store.due_alerts_for_server("s1", later, 10).await.unwrap();
    assert_eq!(for_s1.len(), 2);
    assert_eq!(store.earliest_pending().await.unwrap(), Some(t0));

    // A failure: one more attempt, backoff, error kept.
    let ids = [first[0].alert.id, first[2].alert.id];
    let retry_at = t0.saturating_add(Duration::from_secs(30));
    assert_eq!(
        store
            .record_failure(&ids, "server said 503\n", retry_at, false)
            .await
            .unwrap(),
        2
    );
    let a = store.alert(ids[0]).await.unwrap();
    assert_eq!(a.attempts, 1);
    assert_eq!(a.state, AlertState::Pending);
    assert_eq!(a.next_attempt_at, retry_at);
    assert_eq!(a.last_error.as_deref(), Some("server said 503 "));
    assert_eq!(store.due_alerts(later, 10).await.unwrap().len(), 1);
    assert_eq!(
        store.earliest_pending().await.unwrap(),
        Some(t0.saturating_add(Duration::from_secs(5)))
    );

    // Delivered exactly once; giving up marks failed.
    let delivered_at = t0.saturating_add(Duration::from_secs(31));
    assert_eq!(
        store
            .mark_delivered(&[ids[0], first[1].alert.id], delivered_at)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.mark_delivered(&[ids[0]], later).await.unwrap(), 0);
    let a = store.alert(ids[0]).await.unwrap();
    assert_eq!(
        (a.state, a.delivered_at),
        (AlertState::Delivered, Some(delivered_at))
    );
    assert_eq!(
        store
            .record_failure(&[ids[0], ids[1]], "gone", retry_at, true)
            .await
            .unwrap(),
        1,
        "a delivered alert is not failed"
    );
    let a = store.alert(ids[1]).await.unwrap();
    assert_eq!((a.state, a.attempts), (AlertState::Failed, 2));
    assert_eq!(store.earliest_pending().await.unwrap(), None);

    let counts = store.alert_counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.failed), (0, 2, 1));

    // Lists with filters.
    let filter = AlertFilter {
        dev_id: Some("IMEI:1".into()),
        ..AlertFilter::default()
    };
    assert_eq!(
        store
            .list_alerts(&filter, &Page::first())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let filter = AlertFilter {
        state: Some(AlertState::Delivered),
        server_id: Some("s1".into()),
        dev_id: None,
    };
    let page = store.list_alerts(&filter, &Page::first()).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.next_after.is_none());
    let json = serde_json::to_value(&page).unwrap();
    assert_eq!(json["items"][0]["state"], "delivered");
    let created = json["items"][0]["created_at"].as_str().unwrap();
    assert!(Millis::parse_rfc3339(created).is_some(), "{created}");
}

#[tokio::test]
async fn claims_lease_alerts_and_jobs() {
    let (_dir, store) = fresh().await;
    let t0 = Millis(1_714_564_800_000);
    let lease = t0.saturating_add(Duration::from_secs(30));
    store
        .enqueue_alerts(&[
            alert("IMEI:1", "s1", "c-1", t0),
            alert("IMEI:2", "s2", "c-2", t0),
            alert(
                "IMEI:3",
                "s1",
                "c-3",
                lease.saturating_add(Duration::from_secs(1)),
            ),
        ])
        .await
        .unwrap();
    let claimed = store
        .claim_due_alerts(Some("s1"), t0, lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].correlator, "c-1");
    assert_eq!(claimed[0].next_attempt_at, lease);
    // Claimed alerts are not handed out again while leased ...
    let rest = store.claim_due_alerts(None, t0, lease, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].correlator, "c-2");
    assert!(
        store
            .claim_due_alerts(None, t0, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // ... and come back when the lease ends (the worker crashed).
    let after = store.due_alerts(lease, 10).await.unwrap();
    assert_eq!(after.len(), 2);
    assert!(matches!(
        store.claim_due_alerts(None, lease, t0, 10).await,
        Err(StoreError::Invalid {
            field: "lease_until",
            ..
        })
    ));

    for dev in ["IMEI:1", "IMEI:2"] {
        store
            .create_or_get_job(&NewJob {
                server_id: "s9".into(),
                dev_id: dev.into(),
                workflow: Workflow::One,
                bootstrap_url: None,
                next_attempt_at: t0,
            })
            .await
            .unwrap();
    }
    let jobs = store.claim_due_jobs(t0, lease, 1).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (
            jobs[0].state,
            jobs[0].next_attempt_at,
            jobs[0].dev_id.as_str()
        ),
        (JobState::InProgress, lease, "IMEI:1")
    );
    let jobs = store.claim_due_jobs(t0, lease, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].dev_id, "IMEI:2");
    assert!(
        store
            .claim_due_jobs(t0, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_due_jobs(lease, lease.saturating_add(Duration::from_secs(30)), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|j| j.state == JobState::InProgress));
}

// ---------------------------------------------------------------------------------------------
// Bootstrap jobs

#[tokio::test]
async fn jobs_are_created_once_and_move_through_states() {
    let (_dir, store) = fresh().await;
    let t0 = Millis(1_714_564_800_000);
    let new = NewJob {
        server_id: "s9".into(),
        dev_id: "IMEI:1".into(),
        workflow: Workflow::One,
        bootstrap_url: None,
        next_attempt_at: t0,
    };
    let created = store.create_or_get_job(&new).await.unwrap();
    assert!(created.created);
    assert_eq!(created.job.state, JobState::Pending);
    let again = store.create_or_get_job(&new).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.job, created.job);
    let other = store
        .create_or_get_job(&NewJob {
            dev_id: "IMEI:2".into(),
            workflow: Workflow::Two,
            ..new.clone()
        })
        .await
        .unwrap();
    assert!(other.created);
    let id = created.job.id;

    assert_eq!(store.due_jobs(t0, 10).await.unwrap().len(), 2);
    // Taken by a worker with a lease of one minute.
    let lease_end = t0.saturating_add(Duration::from_secs(60));
    let job = store
        .update_job(
            id,
            &JobUpdate {
                state: JobState::InProgress,
                count_attempt: true,
                last_error: None,
                next_attempt_at: lease_end,
                bootstrap_url: Some("https://bs.example.com/bootstrap".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!((job.state, job.attempts), (JobState::InProgress, 1));
    assert_eq!(
        job.bootstrap_url.as_deref(),
        Some("https://bs.example.com/bootstrap")
    );
    assert_eq!(store.due_jobs(t0, 10).await.unwrap().len(), 1);
    // The worker crashed: when the lease ends the job is due again.
    let due = store.due_jobs(lease_end, 10).await.unwrap();
    assert!(
        due.iter()
            .any(|j| j.id == id && j.state == JobState::InProgress)
    );

    let failed_try = store
        .update_job(
            id,
            &JobUpdate {
                state: JobState::Pending,
                count_attempt: false,
                last_error: Some("TLS handshake failed".into()),
                next_attempt_at: lease_end,
                bootstrap_url: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        failed_try.last_error.as_deref(),
        Some("TLS handshake failed")
    );
    assert_eq!(
        failed_try.bootstrap_url.as_deref(),
        Some("https://bs.example.com/bootstrap")
    );
    let done = store
        .update_job(
            id,
            &JobUpdate {
                state: JobState::Done,
                count_attempt: false,
                last_error: None,
                next_attempt_at: lease_end,
                bootstrap_url: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((done.state, done.last_error), (JobState::Done, None));
    assert!(matches!(
        store
            .update_job(
                id,
                &JobUpdate {
                    state: JobState::Pending,
                    count_attempt: false,
                    last_error: None,
                    next_attempt_at: t0,
                    bootstrap_url: None,
                }
            )
            .await,
        Err(StoreError::Invalid { field: "state", .. })
    ));
    // Done jobs are never due; create_or_get returns the done job unchanged.
    assert!(
        store
            .due_jobs(lease_end, 10)
            .await
            .unwrap()
            .iter()
            .all(|j| j.id != id)
    );
    let got = store.create_or_get_job(&new).await.unwrap();
    assert_eq!((got.created, got.job.state), (false, JobState::Done));

    let for_server = store.jobs_for_server("s9").await.unwrap();
    assert_eq!(for_server.len(), 2);
    let counts = store.job_counts().await.unwrap();
    assert_eq!((counts.pending, counts.done), (1, 1));
    let list = store
        .list_jobs(
            &JobFilter {
                state: Some(JobState::Pending),
                server_id: Some("s9".into()),
            },
            &Page::first(),
        )
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].workflow, Workflow::Two);
    assert!(matches!(
        store.job(gateway::domain::JobId(12345)).await,
        Err(StoreError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Events and composed transactions

#[tokio::test]
async fn events_are_logged_and_read_newest_first() {
    let (_dir, store) = fresh().await;
    let events: Vec<NewEvent> = (0..5)
        .map(|i| NewEvent {
            dev_id: Some("IMEI:1".into()),
            kind: "device.seen".into(),
            detail: serde_json::json!({ "n": i }),
            at: Millis(1_000 + i),
        })
        .chain([NewEvent {
            dev_id: None,
            kind: "gateway.started".into(),
            detail: serde_json::json!({}),
            at: Millis(1),
        }])
        .collect();
    let ids = store.log_events(&events).await.unwrap();
    assert_eq!(ids.len(), 6);
    let got = store.device_events("IMEI:1", 3).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|e| e.detail["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [4, 3, 2]
    );
    assert_eq!(got[0].at, Millis(1_004));
    let bad = NewEvent {
        dev_id: None,
        kind: "Not Valid".into(),
        detail: serde_json::json!({}),
        at: Millis(0),
    };
    assert!(matches!(
        store.log_events(&[events[0].clone(), bad]).await,
        Err(StoreError::Invalid { field: "kind", .. })
    ));
    assert_eq!(count(&store, "events").await, 6);
}

#[tokio::test]
async fn many_writes_commit_together_or_not_at_all() {
    let (_dir, store) = fresh().await;
    let now = Millis::now();
    let batch: Vec<DeviceUpsert> = (0..20).map(|i| device(i, now)).collect();
    let alerts: Vec<NewAlert> = batch
        .iter()
        .map(|d| alert(&d.dev_id, "s1", &format!("attach-{}", d.dev_id), now))
        .collect();
    let log: Vec<NewEvent> = batch
        .iter()
        .map(|d| NewEvent {
            dev_id: Some(d.dev_id.clone()),
            kind: "device.attached".into(),
            detail: serde_json::json!({ "server_id": "s1" }),
            at: now,
        })
        .collect();

    // Rolled back when dropped without commit.
    {
        let mut tx = store.begin().await.unwrap();
        devices::upsert(&mut tx, &batch).await.unwrap();
        outbox::enqueue(&mut tx, &alerts).await.unwrap();
        events::log(&mut tx, &log).await.unwrap();
    }
    assert_eq!(count(&store, "devices").await, 0);
    assert_eq!(count(&store, "alert_outbox").await, 0);

    let mut tx = store.begin().await.unwrap();
    devices::upsert(&mut tx, &batch).await.unwrap();
    outbox::enqueue(&mut tx, &alerts).await.unwrap();
    events::log(&mut tx, &log).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(&store, "devices").await, 20);
    assert_eq!(count(&store, "alert_outbox").await, 20);
    assert_eq!(count(&store, "events").await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_wait_for_each_other() {
    let (_dir, store) = fresh().await;
    let now = Millis::now();
    let mut tasks = Vec::new();
    for w in 0..4usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..5usize {
                let batch: Vec<DeviceUpsert> = (0..10)
                    .map(|i| device(w * 1000 + round * 10 + i, now))
                    .collect();
                store.upsert_devices(&batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count(&store, "devices").await, 200);
}

// ---------------------------------------------------------------------------------------------
// The management tree

#[tokio::test]
async fn management_tree_shows_accounts_and_devices() {
    let (_dir, store) = fresh().await;
    store
        .insert_account(&account("s1"), Some("S1"), Origin::Factory)
        .await
        .unwrap();
    store
        .insert_account(&account("s2"), None, Origin::Operator)
        .await
        .unwrap();
    let now = Millis(1_714_564_800_000);
    let dev = device(7, now);
    store
        .upsert_devices(std::slice::from_ref(&dev))
        .await
        .unwrap();
    store
        .report_servers(
            &dev.dev_id,
            &[ServerReport {
                server_id: "s1".into(),
                bootstrap_url: None,
            }],
        )
        .await
        .unwrap();

    let tree = store.management_tree(&devinfo()).await.unwrap();
    assert_eq!(DevInfo::read(&tree).unwrap(), devinfo());
    let accounts = DmAcc::all(&tree).unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].0, uri("./DMAcc/S1"));
    assert_eq!(accounts[0].1, account("s1"));
    let rec = DeviceRecord::find(&tree, &dev.dev_id).unwrap().unwrap();
    assert_eq!(rec.address, dev.address.clone().unwrap());
    assert_eq!(rec.state, DeviceState::Discovered);
    assert_eq!(rec.first_seen, "2024-05-01T12:00:00Z");
    assert_eq!(rec.server_ids.len(), 1);
    assert!(rec.server_ids[0].matched);

    // DM Get reads the ServerID but never a secret or a nonce.
    let server_id = tree.get(&uri("./DMAcc/S1/ServerID")).unwrap();
    assert_eq!(server_id.value, b"s1");
    for secret in [
        "./DMAcc/S1/AppAuth/1/AAuthSecret",
        "./DMAcc/S1/AppAuth/1/AAuthData",
    ] {
        assert!(matches!(
            tree.get(&uri(secret)),
            Err(TreeError::GetNotAllowed { .. })
        ));
    }
    let inventory = tree.get(&uri("./DeviceInventory")).unwrap();
    assert_eq!(inventory.children.unwrap(), ["IMEI_3A350000000000007"]);
}

#[tokio::test]
async fn apply_dmacc_adds_new_and_skips_or_overwrites_existing() {
    let (_dir, store) = fresh().await;
    store
        .insert_account(&account("s1"), Some("Mine"), Origin::Factory)
        .await
        .unwrap();
    // What a bootstrap produces: s1 (known) and s2 (new).
    let mut boot = Tree::new();
    let mut s1 = account("s1");
    s1.name = Some("from bootstrap".into());
    s1.write(&mut boot, &uri("./DMAcc/Boot1")).unwrap();
    account("s2")
        .write(&mut boot, &uri("./DMAcc/Boot2"))
        .unwrap();

    let out = store
        .apply_dmacc(&boot, Origin::Bootstrap, false)
        .await
        .unwrap();
    assert_eq!(out.added, ["s2"]);
    assert_eq!(out.skipped, ["s1"]);
    assert!(out.replaced.is_empty());
    assert_eq!(
        store
            .load_account("s1")
            .await
            .unwrap()
            .account
            .name
            .as_deref(),
        Some("s1 DM")
    );
    let s2 = store.load_account("s2").await.unwrap();
    assert_eq!(
        (s2.node_name.as_str(), s2.origin),
        ("Boot2", Origin::Bootstrap)
    );
    assert_eq!(s2.account, account("s2"));

    let out = store
        .apply_dmacc(&boot, Origin::Bootstrap, true)
        .await
        .unwrap();
    assert_eq!(out.replaced, ["s1", "s2"]);
    let s1_now = store.load_account("s1").await.unwrap();
    assert_eq!(s1_now.account, s1);
    assert_eq!(s1_now.node_name, "Mine");

    // A malformed bootstrap writes nothing.
    let mut bad = boot.clone();
    account("s3")
        .write(&mut bad, &uri("./DMAcc/Boot3"))
        .unwrap();
    bad.replace_value(&uri("./DMAcc/Boot3/AppAuth/1/AAuthLevel"), b"NOPE".to_vec())
        .unwrap();
    assert!(matches!(
        store.apply_dmacc(&bad, Origin::Bootstrap, false).await,
        Err(StoreError::Invalid { field: "dmacc", .. })
    ));
    assert!(matches!(
        store.account("s3").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn store_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(Store::open(&db_path(&dir), &StoreOptions::default()))
        .unwrap();
    let acc = account("s1");
    let batch = vec![device(1, Millis(0))];
    let tree = Tree::new();
    assert_send(&store.insert_account(&acc, None, Origin::Factory));
    assert_send(&store.upsert_devices(&batch));
    assert_send(&store.management_tree(&devinfo()));
    assert_send(&store.apply_dmacc(&tree, Origin::Bootstrap, false));
    assert_send(&store.due_alerts(Millis(0), 1));
}
