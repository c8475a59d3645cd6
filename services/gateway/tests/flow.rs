//! The gateway with real peers on ephemeral ports over TLS from a test CA: alert delivery to a real
//! DM Server that is down for a while, delivery after a gateway restart, and what a device gets for
//! wrong credentials and malformed SyncML on the LAN face.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dm_server::config::{Account, Config as DmsConfig, TlsFiles};
use gateway::actors::TracedExt;
use gateway::actors::discovery::Via;
use gateway::actors::inventory::{DeviceDiscovered, DeviceReady};
use gateway::config::ServeArgs;
use gateway::domain::{DeviceUpsert, Millis, ServerReport};
use gateway::startup::Application;
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::model::{Command, Cred, Location, Meta, SyncHdr, SyncMl};
use omadm::secret::Secret;

mod common;

use common::{Pki, free_port, pki, wait_for};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const TOKEN: &str = "flow-test-token-0123456789";

/// A port for a DM Server that is down at first: one it had, so no other test's server holds it
/// (tests in this binary run in parallel).
async fn down_server_port(pki: &Pki, data: &Path) -> u16 {
    let dms = dm_server(pki, 0, data);
    let port = dms.addr().port();
    dms.stop().await.unwrap();
    // Not reused by the OS for another listener before the restart: checked by binding it again.
    drop(TcpListener::bind(("127.0.0.1", port)).unwrap());
    port
}

fn dm_server(pki: &Pki, port: u16, data: &Path) -> dm_server::http::RunningServer {
    let mut cfg = DmsConfig::new("dms-1");
    cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.tls = Some(TlsFiles {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
    });
    cfg.accounts = vec![Account {
        name: "gw-1".into(),
        password: Secret::new("gw-secret-1"),
        dev_id: None,
    }];
    cfg.data_file = Some(data.to_owned());
    cfg.handle_signals = false;
    dm_server::http::start(cfg).unwrap()
}

fn gateway_args(dir: &Path, pki: &Pki, dms_port: u16) -> ServeArgs {
    let accounts = dir.join("accounts.toml");
    std::fs::write(
        &accounts,
        format!(
            "[[account]]\nserver_id = \"dms-1\"\naddr = \"https://127.0.0.1:{dms_port}/dm\"\n\
             auth_type = \"DIGEST\"\nauth_name = \"gw-1\"\nauth_secret = \"gw-secret-1\"\n"
        ),
    )
    .unwrap();
    ServeArgs {
        database: Some(dir.join("gw.db")),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_token: Some(TOKEN.into()),
        lan_listen: Some("127.0.0.1:0".parse().unwrap()),
        lan_tls_cert: Some(pki.cert.clone()),
        lan_tls_key: Some(pki.key.clone()),
        wan_listen: Some("127.0.0.1:0".parse().unwrap()),
        wan_tls_cert: Some(pki.cert.clone()),
        wan_tls_key: Some(pki.key.clone()),
        ca_cert: Some(pki.ca.clone()),
        accounts_file: Some(accounts),
        dev_id: Some("urn:dmgw:flow-gw".into()),
        alert_backoff_ms: Some(100),
        alert_backoff_max_ms: Some(300),
        shutdown_timeout: Some(5),
        ..ServeArgs::default()
    }
}

/// A device that reported `dms-1` (the LAN steps are covered by the demo's end-to-end test; here
/// the inventory is fed directly so the test is about delivery).
async fn attach(app: &Running, dev_id: &str) {
    report(app, dev_id, "dms-1", None).await;
}

/// Feed the inventory a device that reported `server_id` (with a bootstrap-server URL or not).
async fn report(app: &Running, dev_id: &str, server_id: &str, bootstrap_url: Option<String>) {
    let actors = &app.state.actors;
    actors
        .inventory
        .send(
            DeviceDiscovered {
                traceparent: None,
                upsert: DeviceUpsert {
                    address: Some("https://127.0.0.1:9/devices/x".into()),
                    ..DeviceUpsert::seen(dev_id, Millis::now())
                },
                via: Via::Http,
            }
            .traced(),
        )
        .await
        .unwrap()
        .unwrap();
    actors
        .inventory
        .send(
            DeviceReady {
                dev_id: dev_id.into(),
                devinfo: None,
                servers: vec![ServerReport {
                    server_id: server_id.into(),
                    bootstrap_url,
                }],
            }
            .traced(),
        )
        .await
        .unwrap()
        .unwrap();
}

fn https(pki: &Pki) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap()
}

/// The alerts `port`'s DM Server recorded about `dev_prefix` devices (this test's).
async fn alerts_at(
    client: &reqwest::Client,
    port: u16,
    dev_prefix: &str,
) -> Option<Vec<serde_json::Value>> {
    let v: serde_json::Value = client
        .get(format!("https://127.0.0.1:{port}/api/v1/alerts?limit=1000"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        v["items"]
            .as_array()?
            .iter()
            .filter(|a| {
                a["data"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(dev_prefix))
            })
            .cloned()
            .collect(),
    )
}

/// A started gateway, served in the background (actix's servers run while their future is polled).
struct Running {
    state: gateway::state::AppState,
    lan_port: u16,
    handle: gateway::startup::StopHandle,
    join: actix_web::rt::task::JoinHandle<Result<(), gateway::startup::StartupError>>,
}

async fn start(args: &ServeArgs) -> Running {
    let app = Application::build(args.resolve().unwrap()).await.unwrap();
    Running {
        state: app.state().clone(),
        lan_port: app.lan_port(),
        handle: app.handle(),
        join: actix_web::rt::spawn(app.run_until_stopped()),
    }
}

async fn stop(app: Running) {
    app.handle.stop(true).await;
    app.join.await.unwrap().unwrap();
}

#[actix_web::test]
async fn alerts_wait_for_a_down_server_and_arrive_once_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let data = dir.path().join("dms.jsonl");
    let port = down_server_port(&pki, &data).await;
    let app = start(&gateway_args(dir.path(), &pki, port)).await;
    attach(&app, "IMEI:100").await;
    // The server is down: the alert is tried and stays pending with an error.
    let store = app.state.store.clone();
    wait_for("a failed attempt", || {
        let store = store.clone();
        async move {
            let page = store
                .list_alerts(&Default::default(), &gateway::domain::Page::first())
                .await
                .unwrap();
            page.items
                .first()
                .is_some_and(|a| a.attempts >= 1 && a.last_error.is_some())
        }
    })
    .await;
    let dms = dm_server(&pki, port, &data);
    let client = https(&pki);
    wait_for("the alert at dms-1", || {
        let c = client.clone();
        async move {
            alerts_at(&c, port, "IMEI:1")
                .await
                .is_some_and(|a| a.len() == 1)
        }
    })
    .await;
    let alerts = alerts_at(&client, port, "IMEI:1").await.unwrap();
    assert_eq!(
        alerts[0]["alert_type"],
        "urn:oma:at:oma-gwmo:deviceattached:1.0"
    );
    assert_eq!(alerts[0]["data"], "IMEI:100");
    // Matching the same device again enqueues nothing new (deterministic correlator).
    attach(&app, "IMEI:100").await;
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(alerts_at(&client, port, "IMEI:1").await.unwrap().len(), 1);
    stop(app).await;
    dms.stop().await.unwrap();
}

#[actix_web::test]
async fn a_restarted_gateway_delivers_what_was_pending_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let data = dir.path().join("dms.jsonl");
    let port = down_server_port(&pki, &data).await;
    let args = gateway_args(dir.path(), &pki, port);
    let app = start(&args).await;
    attach(&app, "IMEI:200").await;
    attach(&app, "IMEI:201").await;
    stop(app).await;
    // Restarted on the same database, with the server now up.
    let dms = dm_server(&pki, port, &data);
    let app = start(&args).await;
    let client = https(&pki);
    wait_for("both alerts at dms-1", || {
        let c = client.clone();
        async move {
            alerts_at(&c, port, "IMEI:2")
                .await
                .is_some_and(|a| a.len() == 2)
        }
    })
    .await;
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    let alerts = alerts_at(&client, port, "IMEI:2").await.unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let counts = app.state.store.alert_counts().await.unwrap();
    assert_eq!(counts.delivered, 2);
    assert_eq!(counts.pending, 0);
    stop(app).await;
    dms.stop().await.unwrap();
}

fn package1(dev_id: &str, cred: Option<Cred>) -> SyncMl {
    let mut hdr = SyncHdr::new(
        "77",
        1,
        Location::new("https://gw/lan/v1/dm"),
        Location::named(dev_id, "dev-unknown"),
    );
    hdr.cred = cred;
    SyncMl::new(hdr)
        .with(Command::alert(1201))
        .with(Command::report_chr("./DevInfo/DevId", dev_id))
        .finish()
}

#[actix_web::test]
async fn wrong_credentials_and_malformed_syncml_get_dm_statuses_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let app = start(&gateway_args(dir.path(), &pki, 9)).await;
    let url = format!("https://127.0.0.1:{}/lan/v1/dm", app.lan_port);
    let client = https(&pki);
    let post = |body: Vec<u8>, enc: Encoding| {
        let c = client.clone();
        let url = url.clone();
        async move {
            let r = c
                .post(&url)
                .header("Content-Type", enc.mime())
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        }
    };
    let header_code = |bytes: &[u8]| {
        codec::decode(bytes, &Limits::default())
            .unwrap()
            .header_status()
            .unwrap()
            .code
    };
    // No credentials: 407 with a challenge.
    let msg = package1("IMEI:999", None);
    let (http, body) = post(codec::encode(&msg, Encoding::Xml).unwrap(), Encoding::Xml).await;
    assert_eq!(http, 200);
    assert_eq!(header_code(&body), 407);
    // Credentials of a device that was never provisioned: 401.
    let cred = Cred {
        meta: Meta::typed("syncml:auth-md5", "b64"),
        data: omadm::auth::md5_credential("dev-unknown", &Secret::new("guess"), b""),
    };
    let msg = package1("IMEI:999", Some(cred));
    let (_, body) = post(
        codec::encode(&msg, Encoding::Wbxml).unwrap(),
        Encoding::Wbxml,
    )
    .await;
    assert_eq!(header_code(&body), 401);
    assert!(matches!(
        app.state.store.device("IMEI:999").await,
        Err(gateway::store::StoreError::NotFound { .. })
    ));
    // Malformed SyncML, XML and WBXML: HTTP 400 with a SyncML body carrying status 400.
    for (bytes, enc) in [
        (b"<SyncML><SyncHdr>".to_vec(), Encoding::Xml),
        (
            vec![0x02, 0x00, 0x00, 0x6a, 0x00, 0x6d, 0x6c, 0xff],
            Encoding::Wbxml,
        ),
    ] {
        let (http, body) = post(bytes, enc).await;
        assert_eq!(http, 400);
        assert_eq!(header_code(&body), 400);
    }
    // The gateway still answers.
    let (_, body) = post(
        codec::encode(&package1("IMEI:998", None), Encoding::Xml).unwrap(),
        Encoding::Xml,
    )
    .await;
    assert_eq!(header_code(&body), 407);
    stop(app).await;
}

/// A signed bootstrap push body for `target`, carrying the DMAcc of `server_id`.
fn pushed(target: &str, server_id: &str) -> Vec<u8> {
    let mut t = omadm::tree::Tree::new();
    let acc = omadm::mo::DmAcc::new(server_id, "https://127.0.0.1:9/dm");
    let uri = omadm::mo::DmAcc::account_uri(&t, server_id).unwrap();
    acc.write(&mut t, &uri).unwrap();
    let tnds = omadm::tnds::MgmtTree::from_subtree(&t, &uri).unwrap();
    codec::encode(
        &omadm::bootstrap::build_tnds(target, "https://bs", &tnds, Encoding::Wbxml),
        Encoding::Wbxml,
    )
    .unwrap()
}

fn sign(body: &[u8], pin: &str) -> String {
    omadm::bootstrap::sign_push(
        Encoding::Wbxml.mime(),
        omadm::auth::Sec::UserPin,
        &omadm::auth::PushKeyMaterial::pin(Secret::new(pin)),
        body,
    )
    .unwrap()
}

#[actix_web::test]
async fn pushed_bootstraps_are_checked_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut args = gateway_args(dir.path(), &pki, 9);
    args.push_pin = Some("4321".into());
    let app = start(&args).await;
    let url = format!("{}/wan/v1/bootstrap", app.state.settings.wan_public_url);
    let client = https(&pki);
    let post = |body: Vec<u8>, content_type: String| {
        let c = client.clone();
        let url = url.clone();
        async move {
            c.post(&url)
                .header("Content-Type", content_type)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let good = pushed("urn:dmgw:flow-gw", "dms-9");
    let truncated = good.get(..good.len() / 2).unwrap().to_vec();
    let other = pushed("urn:dmgw:another-gw", "dms-9");
    let malformed_tnds = {
        let hdr = SyncHdr::new(
            "0",
            0,
            Location::new("urn:dmgw:flow-gw"),
            Location::new("bs"),
        );
        let bad = omadm::element::Element::new(omadm::element::Namespace::Ddf, "MgmtTree")
            .child(omadm::element::Element::new(omadm::element::Namespace::Ddf, "Bogus").text("x"));
        let msg = SyncMl::new(hdr).with(Command::Add(omadm::model::ItemCmd {
            items: vec![
                omadm::model::Item::target("./Inbox").with_data(omadm::model::Data::Xml(bad)),
            ],
            ..Default::default()
        }));
        codec::encode(&msg, Encoding::Wbxml).unwrap()
    };
    let oversized = vec![0u8; gateway::bootstrap::MAX_BOOTSTRAP_BYTES + 1];
    let refused = [
        (
            "no MAC",
            good.clone(),
            Encoding::Wbxml.mime().to_owned(),
            401,
        ),
        ("wrong PIN", good.clone(), sign(&good, "0000"), 401),
        ("truncated", truncated.clone(), sign(&good, "4321"), 401),
        (
            "truncated, signed",
            truncated.clone(),
            sign(&truncated, "4321"),
            400,
        ),
        (
            "for another gateway",
            other.clone(),
            sign(&other, "4321"),
            403,
        ),
        (
            "malformed TNDS",
            malformed_tnds.clone(),
            sign(&malformed_tnds, "4321"),
            400,
        ),
        (
            "oversized",
            oversized.clone(),
            sign(&oversized, "4321"),
            413,
        ),
    ];
    for (what, body, ct, want) in refused {
        assert_eq!(post(body, ct).await, want, "{what}");
    }
    let ids = app.state.store.server_ids().await.unwrap();
    assert!(
        !ids.contains("dms-9"),
        "the tree is unchanged after refusals"
    );
    // The genuine push is applied.
    assert_eq!(post(good.clone(), sign(&good, "4321")).await, 200);
    assert!(
        app.state
            .store
            .server_ids()
            .await
            .unwrap()
            .contains("dms-9")
    );
    // Pushed again: nothing is overwritten.
    assert_eq!(post(good.clone(), sign(&good, "4321")).await, 200);
    stop(app).await;
}

/// A certificate for `names`, signed by the test CA in `dir` (made again from its key there),
/// optionally already expired.
fn leaf(dir: &Path, names: &[&str], expired: bool, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dmgw test CA 2");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join(format!("{tag}-ca.pem")),
        dir.join(format!("{tag}-cert.pem")),
        dir.join(format!("{tag}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

const BS_PASSWORD: &str = "bs-password-for-flow-gw";

fn bootstrap_server(
    dir: &Path,
    cert: &Path,
    key: &Path,
    port: u16,
) -> bootstrap_server::http::RunningServer {
    let profiles = dir.join("profiles.toml");
    std::fs::write(dir.join("dms2.key"), "dms-2 master key").unwrap();
    std::fs::write(
        &profiles,
        format!(
            "[[servers]]\nserver_id = \"dms-2\"\naddress = \"https://127.0.0.1:9/dm\"\n\
             master_key_file = \"dms2.key\"\n\n[[gateways]]\ngateway_id = \"urn:dmgw:flow-gw\"\n\
             username = \"flow-gw\"\npassword = \"{BS_PASSWORD}\"\n"
        ),
    )
    .unwrap();
    let p = bootstrap_server::profiles::load_profiles(&profiles, &|_| None, false).unwrap();
    let mut cfg = bootstrap_server::config::Config::new(p);
    cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.tls = Some(bootstrap_server::config::TlsFiles {
        cert: cert.to_owned(),
        key: key.to_owned(),
        client_ca: None,
    });
    cfg.handle_signals = false;
    bootstrap_server::http::start(cfg).unwrap()
}

fn fetcher(ca: &Path) -> gateway::bootstrap::Fetcher {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .build()
        .unwrap();
    gateway::bootstrap::Fetcher::new(
        http,
        "urn:dmgw:flow-gw".into(),
        Some(("flow-gw".into(), Secret::new(BS_PASSWORD))),
        false,
    )
}

#[actix_web::test]
async fn workflow_1_refuses_wrong_host_and_expired_certificates() {
    let dir = tempfile::tempdir().unwrap();
    for (names, expired, tag, ok) in [
        (&["localhost", "127.0.0.1"][..], false, "good", true),
        (&["bootstrap.example.com"][..], false, "wronghost", false),
        (&["localhost", "127.0.0.1"][..], true, "expired", false),
    ] {
        let (ca, cert, key) = leaf(dir.path(), names, expired, tag);
        let bs = bootstrap_server(dir.path(), &cert, &key, 0);
        let url = format!("https://127.0.0.1:{}", bs.addr().port());
        let result = fetcher(&ca).fetch(&url, "dms-2").await;
        assert_eq!(result.is_ok(), ok, "{tag}: {result:?}");
        if !ok {
            assert!(
                matches!(
                    result,
                    Err(gateway::bootstrap::GatewayBootstrapError::Transport(_))
                ),
                "{tag}: {result:?}"
            );
        }
        bs.stop().await;
    }
}

#[actix_web::test]
async fn a_workflow_1_job_waits_for_a_down_bootstrap_server() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let bs = bootstrap_server(dir.path(), &pki.cert, &pki.key, 0);
    let bs_port = bs.addr().port();
    bs.stop().await;
    let mut args = gateway_args(dir.path(), &pki, 9);
    args.bootstrap_auth_name = Some("flow-gw".into());
    args.bootstrap_auth_secret = Some(BS_PASSWORD.into());
    let app = start(&args).await;
    report(
        &app,
        "IMEI:300",
        "dms-2",
        Some(format!("https://127.0.0.1:{bs_port}")),
    )
    .await;
    let store = app.state.store.clone();
    let job = || {
        let store = store.clone();
        async move { store.jobs_for_server("dms-2").await.unwrap().pop() }
    };
    wait_for("a failed first attempt", || async {
        job()
            .await
            .is_some_and(|j| j.attempts >= 1 && j.last_error.is_some())
    })
    .await;
    assert!(!store.server_ids().await.unwrap().contains("dms-2"));
    let bs = bootstrap_server(dir.path(), &pki.cert, &pki.key, bs_port);
    wait_for("the job done", || async {
        job()
            .await
            .is_some_and(|j| j.state == gateway::domain::JobState::Done)
    })
    .await;
    assert!(store.server_ids().await.unwrap().contains("dms-2"));
    stop(app).await;
    bs.stop().await;
}

#[actix_web::test]
async fn detached_and_lost_devices_are_announced_to_their_servers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let dms = dm_server(&pki, 0, &dir.path().join("dms.jsonl"));
    let port = dms.addr().port();
    let mut args = gateway_args(dir.path(), &pki, port);
    args.heartbeat_timeout = Some(1);
    let app = start(&args).await;
    let client = https(&pki);
    let types = |c: reqwest::Client, prefix: &'static str| async move {
        alerts_at(&c, port, prefix)
            .await
            .unwrap_or_default()
            .iter()
            .map(|a| a["alert_type"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    // An operator detaches an attached device.
    attach(&app, "IMEI:400").await;
    wait_for("the attach alert", || {
        let c = client.clone();
        async move { types(c, "IMEI:400").await.len() == 1 }
    })
    .await;
    app.state.actors.detach("IMEI:400").await.unwrap();
    wait_for("the detach alert", || {
        let c = client.clone();
        async move {
            types(c, "IMEI:400").await
                == vec![
                    "urn:oma:at:oma-gwmo:deviceattached:1.0".to_owned(),
                    "urn:oma:at:oma-gwmo:devicedetached:1.0".to_owned(),
                ]
        }
    })
    .await;
    // A device that announced itself and then fell silent is lost and detached.
    app.state
        .actors
        .discovery
        .send(
            gateway::actors::discovery::Announce {
                dev_id: "IMEI:401".into(),
                man: None,
                model: None,
                dev_type: None,
                callback_url: "https://127.0.0.1:9/devices/y".into(),
                via: Via::Http,
            }
            .traced(),
        )
        .await
        .unwrap()
        .unwrap();
    report(&app, "IMEI:401", "dms-1", None).await;
    wait_for("attach then detach of the silent device", || {
        let c = client.clone();
        async move { types(c, "IMEI:401").await.len() == 2 }
    })
    .await;
    let device = app.state.store.device("IMEI:401").await.unwrap();
    assert_eq!(device.state, omadm::mo::DeviceState::Lost);
    stop(app).await;
    dms.stop().await.unwrap();
}

fn spawn_dmgw(dir: &Path, pki: &Pki, dms_port: u16, ports: (u16, u16, u16)) -> std::process::Child {
    let args = gateway_args(dir, pki, dms_port);
    let path = |p: &Option<PathBuf>| p.clone().unwrap().display().to_string();
    std::process::Command::new(env!("CARGO_BIN_EXE_dmgw"))
        .args(["serve", "--database", &path(&args.database)])
        .args(["--admin-listen", &format!("127.0.0.1:{}", ports.0)])
        .args(["--admin-token", TOKEN])
        .args(["--lan-listen", &format!("127.0.0.1:{}", ports.1)])
        .args(["--lan-tls-cert", &path(&args.lan_tls_cert)])
        .args(["--lan-tls-key", &path(&args.lan_tls_key)])
        .args(["--wan-listen", &format!("127.0.0.1:{}", ports.2)])
        .args(["--wan-tls-cert", &path(&args.wan_tls_cert)])
        .args(["--wan-tls-key", &path(&args.wan_tls_key)])
        .args(["--ca-cert", &path(&args.ca_cert)])
        .args(["--accounts-file", &path(&args.accounts_file)])
        .args(["--dev-id", "urn:dmgw:flow-gw"])
        .args(["--alert-backoff-ms", "100", "--alert-backoff-max-ms", "300"])
        .args(["--log", "error"])
        .env_remove("DMGW_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

async fn attached_count(admin_port: u16) -> usize {
    let Ok(resp) = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{admin_port}/api/v1/devices?state=attached&limit=500"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
    else {
        return 0;
    };
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    v["items"].as_array().map_or(0, Vec::len)
}

#[actix_web::test]
async fn a_killed_gateway_delivers_every_pending_alert_once_after_restart() {
    use device_sim::scenario::{AccountSpec, ConsentPolicy, DeviceSpec};

    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let data = dir.path().join("dms.jsonl");
    let dms_port = down_server_port(&pki, &data).await;
    let ports = (free_port(), free_port(), free_port());
    let mut gw = spawn_dmgw(dir.path(), &pki, dms_port, ports);
    wait_for("the gateway up", || async {
        reqwest::get(format!("http://127.0.0.1:{}/readyz", ports.0))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    // Five real simulated devices onboard over the LAN face (TLS); the DM Server is down, so their
    // deviceattached alerts wait in the outbox.
    let specs: Vec<DeviceSpec> = (0..5)
        .map(|i| DeviceSpec {
            dev_id: format!("IMEI:50{i}"),
            man: "Acme".into(),
            model: "K".into(),
            dev_type: None,
            consent: ConsentPolicy::Allow,
            heartbeat: Duration::from_secs(30),
            provisioning_encoding: Encoding::Xml,
            dm_encoding: Encoding::Wbxml,
            accounts: vec![AccountSpec {
                server_id: "dms-1".into(),
                addr: "https://dms1.example.com/dm".into(),
                bootstrap_server_url: None,
                node_name: "dms-1".into(),
                hide_bootstrap_url: false,
            }],
        })
        .collect();
    let (fleet, callback) = common::devices(&pki, ports.1, specs).await;
    wait_for("five devices attached", || async {
        attached_count(ports.0).await == 5
    })
    .await;
    // Killed (SIGKILL: no drain, no clean close), the server comes up, the gateway restarts.
    gw.kill().unwrap();
    gw.wait().unwrap();
    let dms = dm_server(&pki, dms_port, &data);
    let mut gw = spawn_dmgw(dir.path(), &pki, dms_port, ports);
    let client = https(&pki);
    wait_for("five alerts at dms-1", || {
        let c = client.clone();
        async move {
            alerts_at(&c, dms_port, "IMEI:50")
                .await
                .is_some_and(|a| a.len() == 5)
        }
    })
    .await;
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    let alerts = alerts_at(&client, dms_port, "IMEI:50").await.unwrap();
    let mut devs: Vec<&str> = alerts.iter().filter_map(|a| a["data"].as_str()).collect();
    devs.sort_unstable();
    devs.dedup();
    assert_eq!((alerts.len(), devs.len()), (5, 5), "{alerts:?}");
    fleet.shutdown().await;
    callback.stop().await;
    gw.kill().unwrap();
    gw.wait().unwrap();
    dms.stop().await.unwrap();
}
