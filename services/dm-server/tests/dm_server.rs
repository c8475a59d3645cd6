//! End-to-end tests of the dm-server: the real actix server in-process on a free port, real HTTP through
//! reqwest, and `omadm`'s ClientSession as the DM client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::*;
use dm_server::derive_password;
use omadm::alert::{DEVICE_ATTACHED, DEVICE_DETACHED};
use omadm::auth::AuthScheme;
use omadm::codec::{self, Encoding, MIME_WBXML, MIME_XML};
use omadm::element::Limits;
use omadm::session::SessionError;
use serde_json::{Value, json};

fn alert_status(client: &omadm::session::ClientSession, correlator: &str) -> u16 {
    client
        .outcomes()
        .iter()
        .find(|o| o.tag.as_deref() == Some(correlator))
        .unwrap_or_else(|| panic!("no status for {correlator}: {:?}", client.outcomes()))
        .code
}

#[actix_web::test]
async fn md5_session_records_alerts_once() {
    let s = spawn(config());
    let mut c = client(
        &s,
        "1",
        AuthScheme::Md5,
        ACCOUNT,
        PASSWORD,
        b"",
        vec![
            generic_alert("corr-1", DEVICE_ATTACHED, "dev one"),
            generic_alert("corr-2", DEVICE_DETACHED, "dev two"),
        ],
    );
    let replies = s.session(&mut c, Encoding::Xml).await.unwrap();
    // First contact: 407 with a NextNonce, then 212.
    assert_eq!(header_codes(&replies), vec![407, 212]);
    let replies_first_resp_uri = replies[1].hdr.resp_uri.clone();
    assert_eq!(replies[0].hdr.resp_uri, replies_first_resp_uri);
    assert!(c.authenticated());
    assert_eq!(alert_status(&c, "corr-1"), 200);
    assert_eq!(alert_status(&c, "corr-2"), 200);
    let nonce = c.next_nonce().unwrap().to_vec();
    assert_eq!(nonce.len(), 16);

    let page = s.alerts("").await;
    assert_eq!(page["total"], 2);
    let a = &page["items"][0];
    assert_eq!(a["alert_type"], DEVICE_ATTACHED);
    assert_eq!(a["dev_id"], DEV);
    assert_eq!(a["account"], ACCOUNT);
    assert_eq!(a["correlator"], "corr-1");
    assert_eq!(a["data"], "dev one");
    assert_eq!(a["format"], "chr");
    assert_eq!(a["mark"], "informational");
    assert_eq!(a["source"], "./DeviceInventory/d1");
    assert_eq!(a["session_id"], "1");
    assert!(
        time::OffsetDateTime::parse(
            a["received_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    let filtered = s
        .alerts("?type=URN:OMA:AT:OMA-GWMO:DEVICEDETACHED:1.0&dev_id=IMEI:356938035643809")
        .await;
    assert_eq!(filtered["total"], 1);
    assert_eq!(filtered["items"][0]["correlator"], "corr-2");

    // A new session repeats corr-1 (at-least-once delivery): answered, not recorded again. The nonce
    // from the last session authenticates at once.
    let mut c = client(
        &s,
        "2",
        AuthScheme::Md5,
        ACCOUNT,
        PASSWORD,
        &nonce,
        vec![
            generic_alert("corr-1", DEVICE_ATTACHED, "dev one"),
            generic_alert("corr-3", DEVICE_ATTACHED, "dev three"),
        ],
    );
    let replies = s.session(&mut c, Encoding::Xml).await.unwrap();
    assert_eq!(header_codes(&replies), vec![212]);
    assert_eq!(alert_status(&c, "corr-1"), 200);
    assert_eq!(alert_status(&c, "corr-3"), 200);
    let page = s.alerts("").await;
    assert_eq!(page["total"], 3);
    assert_eq!(s.alerts("?correlator=corr-1").await["total"], 1);
    assert_eq!(
        s.alerts("?limit=1&offset=2").await["items"][0]["correlator"],
        "corr-3"
    );

    let sessions = s.get_json("/api/v1/sessions").await;
    assert_eq!(sessions["total"], 2);
    let first = &sessions["items"][0];
    assert_eq!(first["auth"], "authenticated");
    assert_eq!(first["final_status"], "completed");
    assert_eq!(first["messages"], 2);
    assert_eq!(first["encoding"], "xml");
    assert_eq!(first["alerts_recorded"], 2);
    // Every reply carried the RespURI with this session's token, and the client followed it.
    let token = first["id"].as_str().unwrap();
    assert_eq!(
        replies_first_resp_uri.as_deref(),
        Some(format!("{}?s={token}", s.dm_url()).as_str())
    );
    assert_eq!(sessions["items"][1]["alerts_duplicate"], 1);
    assert_eq!(s.get_json("/healthz").await["status"], "ok");
    s.stop().await;
}

#[actix_web::test]
async fn wrong_password_is_refused_and_nothing_recorded() {
    let s = spawn(config());
    let mut c = client(
        &s,
        "1",
        AuthScheme::Md5,
        ACCOUNT,
        "wrong",
        b"",
        vec![generic_alert("c", DEVICE_ATTACHED, "x")],
    );
    let err = s.session(&mut c, Encoding::Xml).await.unwrap_err();
    assert!(
        matches!(err, SessionError::AuthFailed { code: 401, .. }),
        "{err:?}"
    );
    assert_eq!(s.alerts("").await["total"], 0);
    let sessions = s.get_json("/api/v1/sessions").await;
    assert_eq!(sessions["items"][0]["auth"], "failed");
    assert_eq!(sessions["items"][0]["final_status"], "auth_failed");
    // Unknown account name: refused the same way.
    let mut c = client(&s, "2", AuthScheme::Md5, "nobody", PASSWORD, b"", vec![]);
    assert!(s.session(&mut c, Encoding::Xml).await.is_err());
    s.stop().await;
}

#[actix_web::test]
async fn derived_credentials_are_accepted() {
    let key = b"0123456789abcdef0123456789abcdef";
    let mut cfg = config();
    cfg.accounts.clear();
    cfg.master_key = Some(dm_server::config::MasterKey::new(key).unwrap());
    let s = spawn(cfg);
    let pw = derive_password(key, SERVER_ID, "gw-derived");
    let mut c = client(
        &s,
        "1",
        AuthScheme::Md5,
        "gw-derived",
        pw.expose(),
        b"",
        vec![generic_alert("d-1", DEVICE_ATTACHED, "x")],
    );
    s.session(&mut c, Encoding::Xml).await.unwrap();
    assert_eq!(alert_status(&c, "d-1"), 200);
    assert_eq!(s.alerts("").await["items"][0]["account"], "gw-derived");
    // The password derived for another server is not accepted here.
    let other = derive_password(key, "another-server", "gw-derived");
    let mut c = client(
        &s,
        "2",
        AuthScheme::Md5,
        "gw-derived",
        other.expose(),
        b"",
        vec![],
    );
    assert!(s.session(&mut c, Encoding::Xml).await.is_err());
    s.stop().await;
}

#[actix_web::test]
async fn malformed_bodies_get_400_not_a_crash() {
    let s = spawn(config());
    for (ct, body, enc) in [
        (
            MIME_XML,
            b"<SyncML><SyncHdr><VerDTD>1.2".to_vec(),
            Encoding::Xml,
        ),
        (MIME_XML, b"<Other/>".to_vec(), Encoding::Xml),
        (MIME_XML, vec![0xff, 0xfe, 0x00], Encoding::Xml),
        (
            MIME_WBXML,
            vec![0x03, 0x01, 0x6a, 0x00, 0x6d, 0x6c, 0x71],
            Encoding::Wbxml,
        ),
        (MIME_WBXML, vec![0x02], Encoding::Wbxml),
        (MIME_WBXML, Vec::new(), Encoding::Wbxml),
    ] {
        let resp = s.post_dm(ct, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body:?}");
        assert_eq!(resp.headers()["content-type"].to_str().unwrap(), enc.mime());
        let bytes = resp.bytes().await.unwrap();
        let msg = codec::decode_as(&bytes, enc, &Limits::default()).unwrap();
        assert_eq!(msg.header_status().unwrap().code, 400);
    }
    // Well-formed but not a session opener: 400 and no session left behind.
    let mut m = omadm::model::SyncMl::new(omadm::model::SyncHdr::new(
        "9",
        1,
        omadm::model::Location::new(s.dm_url()),
        omadm::model::Location::new(DEV),
    ));
    m.push(omadm::model::Command::get("./X"));
    let resp = s
        .post_dm(MIME_XML, codec::encode(&m.finish(), Encoding::Xml).unwrap())
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(s.get_json("/healthz").await["open_sessions"], 0);
    s.stop().await;
}

#[actix_web::test]
async fn content_type_and_size_are_checked() {
    let mut cfg = config();
    cfg.max_body = 2048;
    let s = spawn(cfg);
    let resp = s.post_dm("text/plain", b"hello".to_vec()).await;
    assert_eq!(resp.status(), 415);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("text/plain"));
    let resp = s
        .post_dm("application/vnd.syncml.dmtnds+xml", b"<x/>".to_vec())
        .await;
    assert_eq!(resp.status(), 415);
    let resp = s.post_dm(MIME_XML, vec![b' '; 4096]).await;
    assert_eq!(resp.status(), 413);
    let resp = s.http.get(s.url("/dm")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    s.stop().await;
}

#[actix_web::test]
async fn queued_commands_are_delivered_in_the_next_session() {
    let s = spawn(config());
    let post = |body: Value| {
        let http = s.http.clone();
        let url = s.url("/api/v1/commands");
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    let resp = post(json!({"dev_id": DEV, "command": "get", "uri": "./DevInfo/Mod"})).await;
    assert_eq!(resp.status(), 201);
    let get: Value = resp.json().await.unwrap();
    assert_eq!(get["state"], "pending");
    let resp =
        post(json!({"dev_id": DEV, "command": "replace", "uri": "./Ext/Note", "value": "new"}))
            .await;
    assert_eq!(resp.status(), 201);
    let resp = post(json!({"dev_id": DEV, "command": "get", "uri": "./Nope"})).await;
    assert_eq!(resp.status(), 201);
    // Refused: bad command, bad URI, replace without value.
    for bad in [
        json!({"dev_id": DEV, "command": "delete", "uri": "./X"}),
        json!({"dev_id": DEV, "command": "get", "uri": "../X"}),
        json!({"dev_id": DEV, "command": "replace", "uri": "./X"}),
        json!({"dev_id": "", "command": "get", "uri": "./X"}),
    ] {
        let resp = post(bad.clone()).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"].is_string());
    }
    // Another device's command stays queued.
    post(json!({"dev_id": "IMEI:other", "command": "get", "uri": "./DevInfo/Man"})).await;

    let mut tree = device_tree();
    let mut c = client(&s, "1", AuthScheme::Md5, ACCOUNT, PASSWORD, b"", vec![]);
    let replies = common::run_session(&s.http, &mut c, &mut tree, Encoding::Xml)
        .await
        .unwrap();
    // 407, then 212 with the commands, then the client's results end the session.
    assert_eq!(header_codes(&replies), vec![407, 212, 200]);
    let note = tree
        .get(&omadm::uri::DmUri::try_from("./Ext/Note").unwrap())
        .unwrap();
    assert_eq!(note.value, b"new");

    let cmds = s.get_json(&format!("/api/v1/commands?dev_id={DEV}")).await;
    assert_eq!(cmds["total"], 3);
    let by_uri = |uri: &str| {
        cmds["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["uri"] == uri)
            .unwrap()
            .clone()
    };
    let get = by_uri("./DevInfo/Mod");
    assert_eq!(get["state"], "completed");
    assert_eq!(get["status"], 200);
    assert_eq!(get["attempts"], 1);
    assert_eq!(get["results"][0]["uri"], "./DevInfo/Mod");
    assert_eq!(get["results"][0]["data"], "Thermo 3");
    assert_eq!(by_uri("./Ext/Note")["status"], 200);
    assert_eq!(by_uri("./Nope")["status"], 404);
    let all = s.get_json("/api/v1/commands").await;
    let other = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dev_id"] == "IMEI:other")
        .unwrap();
    assert_eq!(other["state"], "pending");
    s.stop().await;
}

#[actix_web::test]
async fn wbxml_session() {
    let mut cfg = config();
    cfg.accept_status = 202;
    let s = spawn(cfg);
    let mut c = client(
        &s,
        "7",
        AuthScheme::Md5,
        ACCOUNT,
        PASSWORD,
        b"",
        vec![generic_alert(
            "w-1",
            DEVICE_ATTACHED,
            "<Dev><Id>1</Id></Dev>",
        )],
    );
    let replies = s.session(&mut c, Encoding::Wbxml).await.unwrap();
    assert_eq!(header_codes(&replies), vec![407, 212]);
    assert_eq!(alert_status(&c, "w-1"), 202);
    let page = s.alerts("").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["data"], "<Dev><Id>1</Id></Dev>");
    assert_eq!(
        s.get_json("/api/v1/sessions").await["items"][0]["encoding"],
        "wbxml"
    );
    s.stop().await;
}

#[actix_web::test]
async fn restart_with_data_file_keeps_alerts_and_deduplication() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dms.jsonl");
    let mut cfg = config();
    cfg.data_file = Some(data.clone());
    let s = spawn(cfg.clone());
    let mut c = client(
        &s,
        "1",
        AuthScheme::Md5,
        ACCOUNT,
        PASSWORD,
        b"",
        vec![generic_alert("r-1", DEVICE_ATTACHED, "x")],
    );
    s.session(&mut c, Encoding::Xml).await.unwrap();
    let nonce = c.next_nonce().unwrap().to_vec();
    s.stop().await;

    let s = spawn(cfg);
    assert_eq!(s.alerts("").await["total"], 1);
    assert_eq!(s.get_json("/api/v1/sessions").await["total"], 1);
    // The nonce survived too: the client authenticates at once, and its repeated alert is not recorded.
    let mut c = client(
        &s,
        "2",
        AuthScheme::Md5,
        ACCOUNT,
        PASSWORD,
        &nonce,
        vec![
            generic_alert("r-1", DEVICE_ATTACHED, "x"),
            generic_alert("r-2", DEVICE_ATTACHED, "y"),
        ],
    );
    let replies = s.session(&mut c, Encoding::Xml).await.unwrap();
    assert_eq!(header_codes(&replies), vec![212]);
    assert_eq!(alert_status(&c, "r-1"), 200);
    let page = s.alerts("").await;
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][1]["correlator"], "r-2");
    assert_eq!(page["items"][1]["id"], 2);
    s.stop().await;
    let text = std::fs::read_to_string(&data).unwrap();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );
    assert!(!text.contains(PASSWORD));
}

#[actix_web::test]
async fn basic_auth_mode() {
    let mut cfg = config();
    cfg.auth = AuthScheme::Basic;
    let s = spawn(cfg);
    let mut c = client(
        &s,
        "1",
        AuthScheme::Basic,
        ACCOUNT,
        PASSWORD,
        b"",
        vec![generic_alert("b-1", DEVICE_ATTACHED, "x")],
    );
    let replies = s.session(&mut c, Encoding::Xml).await.unwrap();
    assert_eq!(header_codes(&replies), vec![212]);
    assert_eq!(alert_status(&c, "b-1"), 200);
    let mut c = client(&s, "2", AuthScheme::Basic, ACCOUNT, "nope", b"", vec![]);
    assert!(matches!(
        s.session(&mut c, Encoding::Xml).await,
        Err(SessionError::AuthFailed { code: 401, .. })
    ));
    // An md5 client is asked for the scheme the server requires, and follows.
    let mut c = client(&s, "3", AuthScheme::Md5, ACCOUNT, PASSWORD, b"", vec![]);
    let replies = s.session(&mut c, Encoding::Xml).await.unwrap();
    assert_eq!(header_codes(&replies), vec![407, 212]);
    assert_eq!(s.alerts("").await["total"], 1);
    s.stop().await;
}

#[actix_web::test]
async fn hmac_auth_mode() {
    let mut cfg = config();
    cfg.auth = AuthScheme::Hmac;
    let s = spawn(cfg);
    let mut c = client(
        &s,
        "1",
        AuthScheme::Hmac,
        ACCOUNT,
        PASSWORD,
        b"",
        vec![generic_alert("h-1", DEVICE_ATTACHED, "x")],
    );
    let replies = s.session(&mut c, Encoding::Wbxml).await.unwrap();
    // An accepted HMAC retry (MsgID 2, no Cred element) is answered 212, like any authentication.
    assert_eq!(header_codes(&replies), vec![407, 212]);
    assert!(c.authenticated());
    assert_eq!(alert_status(&c, "h-1"), 200);
    assert_eq!(
        s.get_json("/api/v1/sessions").await["items"][0]["auth"],
        "authenticated"
    );
    let mut c = client(
        &s,
        "2",
        AuthScheme::Hmac,
        ACCOUNT,
        "nope",
        c.next_nonce().unwrap(),
        vec![],
    );
    assert!(matches!(
        s.session(&mut c, Encoding::Xml).await,
        Err(SessionError::AuthFailed { code: 401, .. })
    ));
    assert_eq!(s.alerts("").await["total"], 1);
    s.stop().await;
}

#[actix_web::test]
async fn tls_with_a_generated_ca() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dm-server test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();

    let mut cfg = config();
    cfg.tls = Some(dm_server::config::TlsFiles { cert, key });
    let server = dm_server::start(cfg).unwrap();
    assert_eq!(server.scheme(), "https");
    assert!(server.dm_url().starts_with("https://127.0.0.1:"));
    assert!(server.listening_line().starts_with(&format!(
        "dm-server {SERVER_ID} listening on https://127.0.0.1:"
    )));
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let s = TestServer { server, http };
    assert_eq!(s.get_json("/healthz").await["server_id"], SERVER_ID);
    let mut c = client(
        &s,
        "1",
        AuthScheme::Md5,
        ACCOUNT,
        PASSWORD,
        b"",
        vec![generic_alert("t-1", DEVICE_ATTACHED, "x")],
    );
    s.session(&mut c, Encoding::Xml).await.unwrap();
    assert_eq!(s.alerts("").await["total"], 1);
    // A client that does not trust the CA cannot connect.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .build()
        .unwrap();
    assert!(untrusting.get(s.url("/healthz")).send().await.is_err());
    s.stop().await;
}

#[actix_web::test]
async fn binary_prints_its_address_and_flushes_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dms.jsonl");
    let accounts = dir.path().join("accounts.toml");
    std::fs::write(
        &accounts,
        format!("[[accounts]]\nname = \"{ACCOUNT}\"\npassword = \"{PASSWORD}\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dm-server"))
        .args([
            "--server-id",
            "dms-bin",
            "--listen",
            "127.0.0.1:0",
            "--plain-http",
        ])
        .arg("--accounts")
        .arg(&accounts)
        .arg("--data")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("dm-server dms-bin listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let http = reqwest::Client::new();
    let health: Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["server_id"], "dms-bin");
    // Open a session (package 1 without credentials: 407) and leave it open.
    let mut c = omadm::session::ClientSession::new(
        omadm::session::ClientConfig::new(format!("{base}/dm"), "dms-bin", DEV, "1"),
        &[],
        vec![],
    );
    let p1 = codec::encode(&c.start().unwrap(), Encoding::Xml).unwrap();
    let resp = http
        .post(format!("{base}/dm"))
        .header("content-type", MIME_XML)
        .body(p1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(st) = child.try_wait().unwrap() {
            exited = Some(st);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let Some(st) = exited else {
        child.kill().unwrap();
        panic!("dm-server did not stop on SIGTERM");
    };
    assert!(st.success(), "{st:?}");
    let text = std::fs::read_to_string(&data).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "session");
    assert_eq!(last["final_status"], "shutdown");
    assert_eq!(last["last_code"], 407);
}

#[actix_web::test]
async fn session_cap_and_idle_expiry() {
    let mut cfg = config();
    cfg.max_sessions = 1;
    let s = spawn(cfg);
    let package1 = |session_id: &str| {
        let mut c = omadm::session::ClientSession::new(
            omadm::session::ClientConfig::new(s.dm_url(), SERVER_ID, DEV, session_id),
            &[],
            vec![],
        );
        codec::encode(&c.start().unwrap(), Encoding::Xml).unwrap()
    };
    // Without credentials: 407, and the session stays open waiting for them.
    let resp = s.post_dm(MIME_XML, package1("1")).await;
    assert_eq!(resp.status(), 200);
    let resp = s.post_dm(MIME_XML, package1("2")).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    // Idle past the timeout, the session is swept (no sleeping: the sweep is told the time).
    s.server
        .engine()
        .sweep(std::time::Instant::now() + std::time::Duration::from_secs(61))
        .unwrap();
    let sessions = s.get_json("/api/v1/sessions").await;
    assert_eq!(sessions["items"][0]["final_status"], "expired");
    assert_eq!(sessions["items"][0]["auth"], "pending");
    let resp = s.post_dm(MIME_XML, package1("2")).await;
    assert_eq!(resp.status(), 200);
    s.stop().await;
}

#[actix_web::test]
async fn metrics_count_messages_alerts_and_requests() {
    let s = spawn(config());
    let mut c = client(
        &s,
        "1",
        AuthScheme::Md5,
        ACCOUNT,
        PASSWORD,
        b"",
        vec![generic_alert("m-1", DEVICE_ATTACHED, "dev one")],
    );
    s.session(&mut c, Encoding::Xml).await.unwrap();
    let resp = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    for expected in [
        "dm_server_sessions_total{status=\"407\"}",
        "dm_server_sessions_total{status=\"212\"}",
        "http_server_request_duration_seconds_bucket{method=\"POST\",route=\"/dm\",status=\"200\"",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("dm_server_alerts_total{")
                && l.contains(&format!("type=\"{DEVICE_ATTACHED}\""))
                && l.contains("outcome=\"recorded\"")),
        "{text}"
    );
    s.stop().await;
}
