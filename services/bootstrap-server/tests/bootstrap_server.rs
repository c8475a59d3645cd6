//! End-to-end tests of the bootstrap server: the real actix server in-process on a free port, real
//! HTTP(S) through reqwest, certificates from rcgen, `omadm`'s ClientSession as the End Device, a small
//! HTTPS receiver as the gateway's push endpoint, and a real dm-server to accept the credentials.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::*;
use dm_server::derive_password;
use omadm::auth::{AuthScheme, PushKeyMaterial};
use omadm::bootstrap::{Bootstrap, verify_push};
use omadm::codec::{self, Encoding, MIME_WBXML, MIME_XML};
use omadm::element::Limits;
use omadm::mo::{AuthType, DmAcc};
use omadm::secret::Secret;
use omadm::session::{Credentials, SessionError};
use serde_json::Value;

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The single DMAcc of a bootstrap body.
fn account_of(body: &[u8]) -> DmAcc {
    let b = Bootstrap::decode(body, &Limits::default()).unwrap();
    let mut accounts = b.accounts().unwrap();
    assert_eq!(accounts.len(), 1);
    accounts.remove(0)
}

fn tls_server(pki: &Pki, client_ca: bool, profiles_text: &str) -> TestServer {
    let mut cfg = config(profiles(profiles_text));
    let mut files = pki.server_cert("bootstrap-server");
    if client_ca {
        files.client_ca = Some(pki.ca_path.clone());
    }
    cfg.tls = Some(files);
    cfg.push.ca_cert = Some(pki.ca_path.clone());
    TestServer::start(cfg, pki.client(None))
}

#[actix_web::test]
async fn workflow1_basic_over_tls_and_the_dm_server_accepts_the_credentials() {
    let pki = Pki::new("w1");
    let s = tls_server(&pki, false, &profiles_toml(None, None));
    assert_eq!(s.server.scheme(), "https");
    assert!(
        s.server
            .listening_line()
            .starts_with("bootstrap-server listening on https://127.0.0.1:")
    );
    let expected = derive_password(MASTER_KEY.as_bytes(), DMS1, GW);
    for (accept, enc) in [(MIME_XML, Encoding::Xml), (MIME_WBXML, Encoding::Wbxml)] {
        for path in [
            format!("/bootstrap/{DMS1}"),
            format!("/bootstrap?server_id={DMS1}"),
        ] {
            let resp = s
                .http
                .get(s.url(&path))
                .header("accept", accept)
                .header("authorization", basic(GW_USER, GW_PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path} {accept}");
            assert_eq!(resp.headers()["content-type"], enc.mime());
            assert_eq!(resp.headers()["cache-control"], "no-store");
            let body = resp.bytes().await.unwrap();
            assert_eq!(Encoding::sniff(&body), enc);
            let msg = codec::decode_as(&body, enc, &Limits::default()).unwrap();
            assert_eq!(msg.hdr.target.loc_uri, GW);
            assert_eq!(msg.hdr.source.loc_uri, s.server.public_url());
            let acc = account_of(&body);
            assert_eq!(acc.server_id, DMS1);
            assert_eq!(acc.name.as_deref(), Some("DM Server One"));
            assert_eq!(acc.server_url(), Some(DMS1_ADDR));
            let c = acc.client_credentials().unwrap();
            assert_eq!(c.auth_type, AuthType::Digest);
            assert_eq!(c.name.as_deref(), Some(GW));
            assert_eq!(c.secret.as_ref().unwrap(), &expected);
        }
    }
    // The BASIC profile has its own key and auth type.
    let resp = s
        .http
        .get(s.url(&format!("/bootstrap/{DMS2}")))
        .header("authorization", basic(GW_USER, GW_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], MIME_XML, "no Accept: XML");
    let acc = account_of(&resp.bytes().await.unwrap());
    let c = acc.client_credentials().unwrap();
    assert_eq!(c.auth_type, AuthType::Basic);
    assert_eq!(
        c.secret.as_ref().unwrap(),
        &derive_password(b"another key for dms-2", DMS2, GW)
    );

    // A real dm-server sharing dms-1's master key accepts the handed-out credentials (md5 = DIGEST).
    let mut dms_cfg = dm_server::Config::new(DMS1);
    dms_cfg.master_key = Some(dm_server::config::MasterKey::new(MASTER_KEY).unwrap());
    dms_cfg.handle_signals = false;
    let dms = dm_server::start(dms_cfg).unwrap();
    let c = {
        let resp = s
            .http
            .get(s.url(&format!("/bootstrap/{DMS1}")))
            .header("authorization", basic(GW_USER, GW_PASSWORD))
            .send()
            .await
            .unwrap();
        account_of(&resp.bytes().await.unwrap())
    };
    let cred = c.client_credentials().unwrap();
    let mut cfg = omadm::session::ClientConfig::new(dms.dm_url(), DMS1, GW, "1");
    cfg.credentials = Some(Credentials {
        scheme: AuthScheme::from_aauth_type(cred.auth_type.as_str()).unwrap(),
        name: cred.name.clone().unwrap(),
        secret: cred.secret.clone().unwrap(),
    });
    let mut gw = omadm::session::ClientSession::new(cfg, &[("./DevInfo/DevId", GW)], vec![]);
    run_session(&reqwest::Client::new(), &mut gw, Encoding::Xml)
        .await
        .unwrap();
    assert!(gw.authenticated());
    dms.stop().await.unwrap();

    let page = s.get_json("/api/v1/bootstraps?workflow=1").await;
    assert_eq!(page["total"], 6);
    let first = &page["items"][0];
    assert_eq!(first["workflow"], 1);
    assert_eq!(first["gateway_id"], GW);
    assert_eq!(first["server_id"], DMS1);
    assert_eq!(first["client_auth"], "basic");
    assert_eq!(first["encoding"], "xml");
    assert_eq!(page["items"][2]["encoding"], "wbxml");
    let text = page.to_string();
    assert!(!text.contains(expected.expose()) && !text.contains(GW_PASSWORD));
    s.stop().await;
}

#[actix_web::test]
async fn workflow1_refusals() {
    let pki = Pki::new("w1r");
    let s = tls_server(&pki, false, &profiles_toml(None, None));
    let get = |path: String, auth: Option<String>, accept: Option<&'static str>| {
        let mut req = s.http.get(s.url(&path));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        req.send()
    };
    let ok = Some(basic(GW_USER, GW_PASSWORD));
    // No credentials, wrong password, unknown user, another scheme, garbage: 401 with a challenge.
    for auth in [
        None,
        Some(basic(GW_USER, "wrong")),
        Some(basic("nobody", GW_PASSWORD)),
        Some("Bearer abc".to_owned()),
        Some("Basic !!!".to_owned()),
        Some("Basic".to_owned()),
    ] {
        let resp = get(format!("/bootstrap/{DMS1}"), auth.clone(), None)
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let www = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(www.starts_with("Basic realm="), "{www}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"].is_string());
    }
    // Unknown ServerID, and one this gateway may not receive (the other gateway is limited to dms-2).
    let resp = get("/bootstrap/nope".into(), ok.clone(), None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = get(
        format!("/bootstrap/{DMS1}"),
        Some(basic("gw-other", "other password")),
        None,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 404);
    // Accept allows no DM type: 406.
    let resp = get(format!("/bootstrap/{DMS1}"), ok.clone(), Some("text/html"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 406);
    // Query form without the parameter: 400.
    let resp = get("/bootstrap".into(), ok.clone(), None).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(s.get_json("/api/v1/bootstraps").await["total"], 0);
    s.stop().await;
}

#[actix_web::test]
async fn workflow1_mutual_tls() {
    let pki = Pki::new("mtls");
    let trusted = pki.client_cert("gateway");
    let untrusted = pki.client_cert("someone else");
    let stranger_pki = Pki::new("stranger");
    let stranger = stranger_pki.client_cert("stranger");
    let s = tls_server(&pki, true, &profiles_toml(None, Some(&trusted.fingerprint)));

    let with = |id: Option<&ClientCert>| pki.client(id);
    let url = s.url(&format!("/bootstrap/{DMS1}"));
    // The trusted certificate alone is enough.
    let resp = with(Some(&trusted))
        .get(&url)
        .header("accept", MIME_WBXML)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let acc = account_of(&resp.bytes().await.unwrap());
    assert_eq!(
        acc.client_credentials().unwrap().secret.as_ref().unwrap(),
        &derive_password(MASTER_KEY.as_bytes(), DMS1, GW)
    );
    // A certificate of the same CA whose fingerprint is not trusted: 401.
    let resp = with(Some(&untrusted)).get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // ... unless Basic credentials are valid too.
    let resp = with(Some(&untrusted))
        .get(&url)
        .header("authorization", basic(GW_USER, GW_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // No certificate: 401; Basic alone still works.
    assert_eq!(with(None).get(&url).send().await.unwrap().status(), 401);
    // A certificate from another CA fails the TLS handshake.
    assert!(with(Some(&stranger)).get(&url).send().await.is_err());

    let page = s.get_json("/api/v1/bootstraps").await;
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["client_auth"], "certificate");
    assert_eq!(page["items"][0]["encoding"], "wbxml");
    assert_eq!(page["items"][1]["client_auth"], "basic");
    s.stop().await;
}

fn association_data(gateway: &str, address: &str, servers: &[&str]) -> String {
    bootstrap_server::assoc::format(&bootstrap_server::assoc::Association {
        gateway_id: gateway.into(),
        gateway_address: address.into(),
        server_ids: servers.iter().map(|s| s.to_string()).collect(),
    })
}

#[actix_web::test]
async fn workflow2_push_after_associated_gateway() {
    let pki = Pki::new("w2");
    let receiver = Receiver::start(&pki, free_listener(), 204);
    let s = tls_server(&pki, false, &profiles_toml(Some(&receiver.url), None));

    let data = association_data(GW, &receiver.url, &[DMS1, "dms-unknown"]);
    let mut dev = device(&s, "1", None, vec![associated_gateway("ag-1", &data)]);
    let replies = run_session(&s.http, &mut dev, Encoding::Xml).await.unwrap();
    assert_eq!(header_codes(&replies), vec![212]);
    assert_eq!(status_of(&dev, "ag-1"), 200);

    let assoc = s.get_json("/api/v1/associations").await;
    assert_eq!(assoc["total"], 1);
    let a = &assoc["items"][0];
    assert_eq!(a["outcome"], "accepted");
    assert_eq!(a["status"], 200);
    assert_eq!(a["dev_id"], DEV);
    assert_eq!(a["account"], Value::Null);
    assert_eq!(a["correlator"], "ag-1");
    assert_eq!(a["gateway_id"], GW);
    assert_eq!(a["gateway_address"], receiver.url.as_str());
    assert_eq!(a["server_ids"], serde_json::json!([DMS1, "dms-unknown"]));
    assert_eq!(a["unknown_server_ids"], serde_json::json!(["dms-unknown"]));
    let id = a["bootstraps"][0].as_u64().unwrap();

    let r = s
        .wait_bootstrap(id, |r| r["delivery"]["state"] == "delivered")
        .await;
    assert_eq!(r["workflow"], 2);
    assert_eq!(r["server_id"], DMS1);
    assert_eq!(r["association"], a["id"]);
    assert_eq!(r["delivery"]["attempts"], 1);
    assert_eq!(r["delivery"]["last_http_status"], 204);
    assert_eq!(r["delivery"]["sec"], "USERPIN");
    assert_eq!(r["delivery"]["url"], receiver.url.as_str());

    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let push = &got[0];
    assert!(
        push.content_type
            .starts_with("application/vnd.syncml.dm+wbxml; SEC=USERPIN; MAC="),
        "{}",
        push.content_type
    );
    let material = PushKeyMaterial::pin(Secret::new(GW_PIN));
    verify_push(&push.content_type, &material, &push.body).unwrap();
    assert!(
        verify_push(
            &push.content_type,
            &PushKeyMaterial::pin(Secret::new("0000")),
            &push.body
        )
        .is_err()
    );
    assert_eq!(Encoding::sniff(&push.body), Encoding::Wbxml);
    let acc = account_of(&push.body);
    assert_eq!(acc.server_id, DMS1);
    assert_eq!(acc.server_url(), Some(DMS1_ADDR));
    let c = acc.client_credentials().unwrap();
    assert_eq!(c.name.as_deref(), Some(GW));
    assert_eq!(
        c.secret.as_ref().unwrap(),
        &derive_password(MASTER_KEY.as_bytes(), DMS1, GW)
    );

    // The same alert again (same correlator): answered the same, nothing pushed again.
    let mut dev = device(&s, "2", None, vec![associated_gateway("ag-1", &data)]);
    run_session(&s.http, &mut dev, Encoding::Wbxml)
        .await
        .unwrap();
    assert_eq!(status_of(&dev, "ag-1"), 200);
    assert_eq!(s.get_json("/api/v1/associations").await["total"], 1);

    // A workflow-1 GET too: the list shows both workflows.
    let resp = s
        .http
        .get(s.url(&format!("/bootstrap/{DMS1}")))
        .header("authorization", basic(GW_USER, GW_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let all = s.get_json("/api/v1/bootstraps").await;
    assert_eq!(all["total"], 2);
    let workflows: Vec<u64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["workflow"].as_u64().unwrap())
        .collect();
    assert_eq!(workflows, vec![2, 1]);
    assert_eq!(all["items"][1]["delivery"], Value::Null);
    assert_eq!(
        s.get_json(&format!("/api/v1/bootstraps?workflow=2&gateway_id={GW}"))
            .await["total"],
        1
    );
    let text = all.to_string() + &s.get_json("/api/v1/associations").await.to_string();
    assert!(!text.contains(GW_PIN) && !text.contains(GW_PASSWORD));
    assert_eq!(receiver.received().len(), 1);
    let health = s.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["pending_pushes"], 0);
    s.stop().await;
    receiver.stop().await;
}

#[actix_web::test]
async fn workflow2_refusals_push_nothing() {
    let pki = Pki::new("w2r");
    let receiver = Receiver::start(&pki, free_listener(), 204);
    let s = tls_server(&pki, false, &profiles_toml(Some(&receiver.url), None));
    let cases: Vec<(String, u16, &str)> = vec![
        // Untrusted gateway.
        (
            association_data("IMEI:999", &receiver.url, &[DMS1]),
            403,
            "not trusted",
        ),
        // Address not in the allow-list.
        (
            association_data(GW, "https://evil.example.com/push", &[DMS1]),
            403,
            "push_urls",
        ),
        // Not https.
        (
            association_data(GW, "http://localhost/push", &[DMS1]),
            403,
            "https",
        ),
        // Trusted, but no push key.
        (
            association_data(OTHER_GW, &receiver.url, &[DMS2]),
            403,
            "push key",
        ),
        // No known ServerID.
        (
            association_data(GW, &receiver.url, &["dms-unknown"]),
            404,
            "no profile",
        ),
        // Malformed data.
        ("GatewayID only".to_owned(), 400, "Key=Value"),
        (
            format!("GatewayID={GW}\nServerID={DMS1}"),
            412,
            "GatewayAddress",
        ),
    ];
    for (i, (data, code, reason)) in cases.iter().enumerate() {
        let corr = format!("c-{i}");
        let mut dev = device(
            &s,
            &format!("{i}"),
            None,
            vec![associated_gateway(&corr, data)],
        );
        run_session(&s.http, &mut dev, Encoding::Xml).await.unwrap();
        assert_eq!(status_of(&dev, &corr), *code, "{data}");
        let page = s.get_json("/api/v1/associations").await;
        let rec = &page["items"][i];
        assert_ne!(rec["outcome"], "accepted");
        assert_eq!(rec["status"], *code);
        assert!(
            rec["reason"].as_str().unwrap().contains(reason),
            "{rec} should mention {reason}"
        );
        assert_eq!(rec["bootstraps"], serde_json::json!([]));
    }
    // Refusals are decided in the session: nothing was issued, so nothing can be pushed.
    assert_eq!(s.get_json("/api/v1/bootstraps").await["total"], 0);
    assert!(receiver.received().is_empty());
    s.stop().await;
    receiver.stop().await;
}

#[actix_web::test]
async fn workflow2_push_is_retried_until_the_gateway_is_up() {
    let pki = Pki::new("retry");
    // Reserve a port, then free it: the gateway is down.
    let port = free_listener().local_addr().unwrap().port();
    let url = format!("https://localhost:{port}/push");
    let mut cfg = config(profiles(&profiles_toml(Some(&url), None)));
    cfg.push.encoding = Encoding::Xml;
    cfg.push.ca_cert = Some(pki.ca_path.clone());
    let s = TestServer::start(cfg, reqwest::Client::new());
    assert_eq!(s.server.scheme(), "http");

    let data = association_data(GW, &url, &[DMS1]);
    let mut dev = device(&s, "1", None, vec![associated_gateway("r-1", &data)]);
    run_session(&s.http, &mut dev, Encoding::Xml).await.unwrap();
    assert_eq!(status_of(&dev, "r-1"), 200);
    let id = s.get_json("/api/v1/associations").await["items"][0]["bootstraps"][0]
        .as_u64()
        .unwrap();
    let failing = s
        .wait_bootstrap(id, |r| {
            r["delivery"]["state"] == "retrying" && r["delivery"]["attempts"].as_u64() >= Some(1)
        })
        .await;
    assert!(failing["delivery"]["last_error"].as_str().unwrap().len() > 5);
    assert!(failing["delivery"]["next_attempt_at"].is_string());

    // The gateway comes up on that port.
    let receiver = Receiver::start(
        &pki,
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        200,
    );
    let done = s
        .wait_bootstrap(id, |r| r["delivery"]["state"] == "delivered")
        .await;
    assert!(
        done["delivery"]["attempts"].as_u64().unwrap() >= 2,
        "{done}"
    );
    assert_eq!(done["delivery"]["last_error"], Value::Null);
    assert!(done["delivery"]["delivered_at"].is_string());
    assert_eq!(done["encoding"], "xml");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].content_type.starts_with(MIME_XML));
    verify_push(
        &got[0].content_type,
        &PushKeyMaterial::pin(Secret::new(GW_PIN)),
        &got[0].body,
    )
    .unwrap();
    assert_eq!(account_of(&got[0].body).server_id, DMS1);
    s.stop().await;
    receiver.stop().await;
}

#[actix_web::test]
async fn push_refused_by_the_gateway_fails_without_retry() {
    let pki = Pki::new("refused");
    let receiver = Receiver::start(&pki, free_listener(), 401);
    let mut cfg = config(profiles(&profiles_toml(Some(&receiver.url), None)));
    cfg.push.ca_cert = Some(pki.ca_path.clone());
    let s = TestServer::start(cfg, reqwest::Client::new());
    let data = association_data(GW, &receiver.url, &[DMS1]);
    let mut dev = device(&s, "1", None, vec![associated_gateway("x-1", &data)]);
    run_session(&s.http, &mut dev, Encoding::Xml).await.unwrap();
    let id = s.get_json("/api/v1/associations").await["items"][0]["bootstraps"][0]
        .as_u64()
        .unwrap();
    let r = s
        .wait_bootstrap(id, |r| r["delivery"]["state"] == "failed")
        .await;
    assert_eq!(r["delivery"]["attempts"], 1);
    assert_eq!(r["delivery"]["last_http_status"], 401);
    assert_eq!(receiver.received().len(), 1);
    s.stop().await;
    receiver.stop().await;
}

#[actix_web::test]
async fn push_to_an_untrusted_certificate_is_not_delivered() {
    // The receiver's certificate is from a CA the bootstrap server does not trust.
    let pki = Pki::new("trusted");
    let other = Pki::new("untrusted");
    let receiver = Receiver::start(&other, free_listener(), 204);
    let mut cfg = config(profiles(&profiles_toml(Some(&receiver.url), None)));
    cfg.push.ca_cert = Some(pki.ca_path.clone());
    cfg.push.max_attempts = 2;
    let s = TestServer::start(cfg, reqwest::Client::new());
    let data = association_data(GW, &receiver.url, &[DMS1]);
    let mut dev = device(&s, "1", None, vec![associated_gateway("u-1", &data)]);
    run_session(&s.http, &mut dev, Encoding::Xml).await.unwrap();
    let id = s.get_json("/api/v1/associations").await["items"][0]["bootstraps"][0]
        .as_u64()
        .unwrap();
    let r = s
        .wait_bootstrap(id, |r| r["delivery"]["state"] == "failed")
        .await;
    assert_eq!(r["delivery"]["attempts"], 2);
    assert!(
        r["delivery"]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 2 attempts")
    );
    assert!(receiver.received().is_empty());
    s.stop().await;
    receiver.stop().await;
}

#[actix_web::test]
async fn device_authentication_modes() {
    let pki = Pki::new("devauth");
    let receiver = Receiver::start(&pki, free_listener(), 204);
    let creds = |scheme, password: &str| {
        Some(Credentials {
            scheme,
            name: "device-1".into(),
            secret: Secret::new(password),
        })
    };
    let data = association_data(GW, &receiver.url, &[DMS1]);
    for (mode, scheme, codes) in [
        (
            bootstrap_server::config::DeviceAuth::Basic,
            AuthScheme::Basic,
            vec![212],
        ),
        (
            bootstrap_server::config::DeviceAuth::Md5,
            AuthScheme::Md5,
            vec![401, 212],
        ),
    ] {
        let mut cfg = config(profiles(&profiles_toml(Some(&receiver.url), None)));
        cfg.device_auth = mode;
        cfg.push.ca_cert = Some(pki.ca_path.clone());
        let s = TestServer::start(cfg, reqwest::Client::new());
        // Wrong password: refused, nothing recorded.
        let mut dev = device(
            &s,
            "1",
            creds(scheme, "wrong"),
            vec![associated_gateway("d-0", &data)],
        );
        let err = run_session(&s.http, &mut dev, Encoding::Xml)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SessionError::AuthFailed { code: 401, .. }),
            "{mode:?}: {err:?}"
        );
        // No credentials at all: refused too.
        let mut dev = device(&s, "2", None, vec![associated_gateway("d-0", &data)]);
        assert!(run_session(&s.http, &mut dev, Encoding::Xml).await.is_err());
        assert_eq!(s.get_json("/api/v1/associations").await["total"], 0);
        // The right password.
        let mut dev = device(
            &s,
            "3",
            creds(scheme, "device password"),
            vec![associated_gateway("d-1", &data)],
        );
        let replies = run_session(&s.http, &mut dev, Encoding::Xml).await.unwrap();
        // md5: the client does not know the nonce the earlier sessions issued, so it is challenged
        // once (401 with a NextNonce) before 212.
        assert_eq!(header_codes(&replies), codes, "{mode:?}");
        assert_eq!(status_of(&dev, "d-1"), 200);
        let a = s.get_json("/api/v1/associations").await;
        assert_eq!(a["items"][0]["account"], "device-1");
        let id = a["items"][0]["bootstraps"][0].as_u64().unwrap();
        s.wait_bootstrap(id, |r| r["delivery"]["state"] == "delivered")
            .await;
        s.stop().await;
    }
    assert_eq!(receiver.received().len(), 2);
    receiver.stop().await;
}

#[actix_web::test]
async fn dm_endpoint_rejects_bad_input() {
    let mut cfg = config(profiles(&profiles_toml(None, None)));
    cfg.max_body = 2048;
    let s = TestServer::start(cfg, reqwest::Client::new());
    let post = |ct: &'static str, body: Vec<u8>| {
        s.http
            .post(s.dm_url())
            .header("content-type", ct)
            .body(body)
            .send()
    };
    for (body, enc, ct) in [
        (b"<SyncML><SyncHdr>".to_vec(), Encoding::Xml, MIME_XML),
        (vec![0xff, 0x00, 0x01], Encoding::Xml, MIME_XML),
        (
            vec![0x03, 0x01, 0x6a, 0x00, 0x6d],
            Encoding::Wbxml,
            MIME_WBXML,
        ),
        (Vec::new(), Encoding::Wbxml, MIME_WBXML),
    ] {
        let resp = post(ct, body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{body:?}");
        let bytes = resp.bytes().await.unwrap();
        let msg = codec::decode_as(&bytes, enc, &Limits::default()).unwrap();
        assert_eq!(msg.header_status().unwrap().code, 400);
    }
    assert_eq!(
        post("text/plain", b"x".to_vec()).await.unwrap().status(),
        415
    );
    assert_eq!(
        post(MIME_XML, vec![b' '; 4096]).await.unwrap().status(),
        413
    );
    // A well-formed message that opens no session.
    let mut m = omadm::model::SyncMl::new(omadm::model::SyncHdr::new(
        "9",
        1,
        omadm::model::Location::new(s.dm_url()),
        omadm::model::Location::new(DEV),
    ));
    m.push(omadm::model::Command::get("./X"));
    let resp = post(MIME_XML, codec::encode(&m.finish(), Encoding::Xml).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(s.get_json("/healthz").await["open_sessions"], 0);
    // Bad API queries.
    let resp = s
        .http
        .get(s.url("/api/v1/bootstraps?workflow=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    s.stop().await;
}

#[actix_web::test]
async fn binary_prints_its_address() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dms1.key"), MASTER_KEY).unwrap();
    let profiles = dir.path().join("profiles.toml");
    std::fs::write(
        &profiles,
        format!(
            "[[servers]]\nserver_id = \"{DMS1}\"\naddress = \"{DMS1_ADDR}\"\nmaster_key_file = \"dms1.key\"\n\
             [[gateways]]\ngateway_id = \"gw\"\npassword = \"pw\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bootstrap-server"))
        .args(["--listen", "127.0.0.1:0", "--plain-http"])
        .arg("--profiles")
        .arg(&profiles)
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
        .strip_prefix("bootstrap-server listening on ")
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
    assert_eq!(health["profiles"], 1);
    let resp = http
        .get(format!("{base}/bootstrap/{DMS1}"))
        .header("authorization", basic("gw", "pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let acc = account_of(&resp.bytes().await.unwrap());
    assert_eq!(
        acc.client_credentials().unwrap().secret.as_ref().unwrap(),
        &derive_password(MASTER_KEY.as_bytes(), DMS1, "gw")
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // A bad profiles file: exit code 2 and a message naming the problem.
    std::fs::write(&profiles, "[[servers]]\nserver_id = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bootstrap-server"))
        .args(["--plain-http"])
        .arg("--profiles")
        .arg(&profiles)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("address"));
}

#[actix_web::test]
async fn metrics_count_jobs_and_requests() {
    let pki = Pki::new("metrics");
    let receiver = Receiver::start(&pki, free_listener(), 204);
    let s = tls_server(&pki, false, &profiles_toml(Some(&receiver.url), None));
    for password in [GW_PASSWORD, "wrong"] {
        s.http
            .get(s.url(&format!("/bootstrap/{DMS1}")))
            .header("authorization", basic(GW_USER, password))
            .send()
            .await
            .unwrap();
    }
    let data = association_data(GW, &receiver.url, &[DMS1]);
    let mut dev = device(&s, "1", None, vec![associated_gateway("m-1", &data)]);
    run_session(&s.http, &mut dev, Encoding::Xml).await.unwrap();
    let id = s.get_json("/api/v1/associations").await["items"][0]["bootstraps"][0]
        .as_u64()
        .unwrap();
    s.wait_bootstrap(id, |r| r["delivery"]["state"] == "delivered")
        .await;
    let resp = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    let has = |name: &str, labels: &[&str]| {
        text.lines()
            .any(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
    };
    assert!(
        has(
            "bootstrap_server_jobs_total{",
            &["workflow=\"1\"", "outcome=\"issued\""]
        ),
        "{text}"
    );
    assert!(has(
        "bootstrap_server_jobs_total{",
        &["workflow=\"1\"", "outcome=\"unauthorized\""]
    ));
    assert!(has(
        "bootstrap_server_jobs_total{",
        &["workflow=\"2\"", "outcome=\"delivered\""]
    ));
    assert!(has(
        "bootstrap_server_associations_total{",
        &["outcome=\"accepted\""]
    ));
    assert!(has(
        "http_server_request_duration_seconds_bucket{",
        &["route=\"/bootstrap/{server_id}\"", "status=\"401\""]
    ));
    assert!(has(
        "http_server_request_duration_seconds_bucket{",
        &["method=\"POST\"", "route=\"/dm\""]
    ));
    s.stop().await;
    receiver.stop().await;
}
