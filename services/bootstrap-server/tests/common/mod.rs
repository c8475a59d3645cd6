//! Test helpers: a throw-away PKI (rcgen), the bootstrap server in-process on a free port, a small HTTPS
//! receiver standing in for the gateway's push endpoint, and an End Device DM session over reqwest.
#![allow(dead_code)] // each test binary uses a part of the helpers
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bootstrap_server::config::TlsFiles;
use bootstrap_server::profiles::{LoadOptions, Profiles, parse_profiles};
use bootstrap_server::{Config, RunningServer};
use omadm::alert::{self, ASSOCIATED_GATEWAY, GenericAlert};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::model::{Command, Data, SyncMl};
use omadm::session::{ClientConfig, ClientSession, ClientStep, Credentials, SessionError};
use omadm::tree::Tree;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use serde_json::Value;

pub const GW: &str = "IMEI:490154203237518";
pub const GW_USER: &str = "gw-1";
pub const GW_PASSWORD: &str = "gateway password";
pub const GW_PIN: &str = "4711";
pub const OTHER_GW: &str = "IMEI:000000000000001";
pub const DEV: &str = "IMEI:356938035643809";
pub const MASTER_KEY: &str = "0123456789abcdef0123456789abcdef";
pub const DMS1: &str = "dms-1";
pub const DMS2: &str = "dms-2";
pub const DMS1_ADDR: &str = "https://dms1.example.com/dm";

/// A CA and the certificates it signs, as files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and key.
pub struct ClientCert {
    /// Certificate then key, PEM (what `reqwest::Identity::from_pem` takes).
    pub identity_pem: String,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Pki {
            dir,
            ca_pem: ca.pem(),
            ca_path,
            issuer: Issuer::new(params, ca_key),
        }
    }

    /// A server certificate for localhost / 127.0.0.1: (cert file, key file).
    pub fn server_cert(&self, name: &str) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        TlsFiles {
            cert: cert_path,
            key: key_path,
            client_ca: None,
        }
    }

    /// A client certificate.
    pub fn client_cert(&self, cn: &str) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientCert {
            identity_pem: format!("{}{}", cert.pem(), key.serialize_pem()),
            fingerprint: hex::encode(bootstrap_server::tls::fingerprint(cert.der())),
        }
    }

    pub fn ca_certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()
    }

    /// An HTTP client trusting only this CA, optionally presenting a client certificate.
    pub fn client(&self, identity: Option<&ClientCert>) -> reqwest::Client {
        let mut b = reqwest::Client::builder().tls_certs_only([self.ca_certificate()]);
        if let Some(id) = identity {
            b = b.identity(reqwest::Identity::from_pem(id.identity_pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }
}

/// The profiles file used by most tests: two DM Server profiles, the trusted gateway (Basic, PIN,
/// optional certificate fingerprint and push URL), a second gateway without push key.
pub fn profiles_toml(push_url: Option<&str>, cert_sha256: Option<&str>) -> String {
    let mut t = format!(
        r#"
        [[servers]]
        server_id = "{DMS1}"
        address = "{DMS1_ADDR}"
        auth_type = "DIGEST"
        name = "DM Server One"
        master_key_env = "DMS1_KEY"

        [[servers]]
        server_id = "{DMS2}"
        address = "https://dms2.example.com/dm"
        auth_type = "BASIC"
        master_key_env = "DMS2_KEY"

        [[gateways]]
        gateway_id = "{GW}"
        pin = "{GW_PIN}"
        username = "{GW_USER}"
        password = "{GW_PASSWORD}"
        "#
    );
    if let Some(u) = push_url {
        t.push_str(&format!("push_urls = [\"{u}\"]\n"));
    }
    if let Some(fp) = cert_sha256 {
        t.push_str(&format!("cert_sha256 = \"{fp}\"\n"));
    }
    t.push_str(&format!(
        r#"
        [[gateways]]
        gateway_id = "{OTHER_GW}"
        username = "gw-other"
        password = "other password"
        servers = ["{DMS2}"]

        [[devices]]
        name = "device-1"
        password = "device password"
        dev_id = "{DEV}"
        "#
    ));
    t
}

pub fn env(var: &str) -> Option<String> {
    match var {
        "DMS1_KEY" => Some(MASTER_KEY.to_owned()),
        "DMS2_KEY" => Some("another key for dms-2".to_owned()),
        _ => None,
    }
}

pub fn profiles(text: &str) -> Profiles {
    parse_profiles(
        text,
        Path::new("profiles.toml"),
        &LoadOptions {
            base_dir: Path::new("."),
            env: &env,
            allow_http_push: false,
        },
    )
    .unwrap()
}

/// A server config over these profiles; fast pushes for tests.
pub fn config(profiles: Profiles) -> Config {
    let mut cfg = Config::new(profiles);
    cfg.handle_signals = false;
    cfg.push.backoff_initial = Duration::from_millis(20);
    cfg.push.backoff_max = Duration::from_millis(100);
    cfg.push.timeout = Duration::from_secs(5);
    cfg.push.max_attempts = 60;
    cfg
}

/// A running bootstrap server and an HTTP client for it.
pub struct TestServer {
    pub server: RunningServer,
    pub http: reqwest::Client,
}

impl TestServer {
    pub fn start(cfg: Config, http: reqwest::Client) -> TestServer {
        TestServer {
            server: bootstrap_server::start(cfg).unwrap(),
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.base_url(), path)
    }

    pub fn dm_url(&self) -> String {
        self.server.dm_url().to_owned()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    /// Poll `GET /api/v1/bootstraps/` until `done` holds for the record `id` (bounded, no fixed sleep
    /// before asserting).
    pub async fn wait_bootstrap(&self, id: u64, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..500 {
            let page = self.get_json("/api/v1/bootstraps?limit=1000").await;
            if let Some(r) = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == id)
            {
                if done(r) {
                    return r.clone();
                }
                last = r.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("bootstrap {id} did not reach the expected state: {last}");
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A bootstrap pushed to the receiver.
#[derive(Debug, Clone)]
pub struct Received {
    pub content_type: String,
    pub body: Vec<u8>,
    /// The W3C `traceparent` header, when the push carried one.
    pub traceparent: Option<String>,
}

/// The gateway's push endpoint stand-in: HTTPS, `POST /push`, answers `status`, keeps what it got.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    /// Start on `listener` with a certificate from `pki`.
    pub fn start(pki: &Pki, listener: TcpListener, status: u16) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        let files = pki.server_cert(&format!("receiver-{port}"));
        let tls = bootstrap_server::tls::server_config(&files).unwrap();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = got.clone();
        let server = HttpServer::new(move || {
            let store = store.clone();
            App::new().route(
                "/push",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let store = store.clone();
                    async move {
                        let content_type = req
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let traceparent = req
                            .headers()
                            .get("traceparent")
                            .map(|v| v.to_str().unwrap().to_owned());
                        store.lock().unwrap().push(Received {
                            content_type,
                            body: body.to_vec(),
                            traceparent,
                        });
                        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                            .finish()
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen_rustls_0_23(listener, tls)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Receiver {
            url: format!("https://localhost:{port}/push"),
            got,
            handle,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// A free loopback port, bound.
pub fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// The AssociatedGateway Generic Alert, tagged with its correlator.
pub fn associated_gateway(correlator: &str, data: &str) -> (Command, Option<String>) {
    let ga = GenericAlert {
        alert_type: ASSOCIATED_GATEWAY.into(),
        format: Some("chr".into()),
        mark: Some("informational".into()),
        source: Some("./DMAcc/dms-1/Ext/AssociatedGateway".into()),
        target: None,
        data: Some(Data::Text(data.into())),
    };
    (
        alert::build(Some(correlator), &[ga]),
        Some(correlator.into()),
    )
}

/// An End Device's DM session to the bootstrap server.
pub fn device(
    server: &TestServer,
    session_id: &str,
    credentials: Option<Credentials>,
    commands: Vec<(Command, Option<String>)>,
) -> ClientSession {
    let mut cfg = ClientConfig::new(server.dm_url(), "bootstrap", DEV, session_id);
    cfg.credentials = credentials;
    ClientSession::new(
        cfg,
        &[
            ("./DevInfo/DevId", DEV),
            ("./DevInfo/Man", "Acme"),
            ("./DevInfo/Mod", "Thermo 3"),
        ],
        commands,
    )
}

/// Drive a client session to the end over HTTP; returns the server's messages.
pub async fn run_session(
    http: &reqwest::Client,
    client: &mut ClientSession,
    enc: Encoding,
) -> Result<Vec<SyncMl>, SessionError> {
    let mut tree = Tree::new();
    let mut replies = Vec::new();
    let mut out = client.start()?;
    for _ in 0..20 {
        let body = codec::encode(&out, enc).unwrap();
        let mut req = http
            .post(client.config().server_uri.clone())
            .header("content-type", enc.mime());
        if let Some(mac) = client.transport_mac(&body) {
            req = req.header("x-syncml-hmac", mac.unwrap());
        }
        let resp = req.body(body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "DM POST answered {}", resp.status());
        let bytes = resp.bytes().await.unwrap();
        let reply = codec::decode_as(&bytes, enc, &Limits::default()).unwrap();
        replies.push(reply.clone());
        match client.receive(&reply, &mut tree)? {
            ClientStep::Send(m) => out = *m,
            ClientStep::Finished => return Ok(replies),
        }
    }
    panic!("session did not end in 20 rounds");
}

/// The status the server gave to the command tagged `tag`.
pub fn status_of(client: &ClientSession, tag: &str) -> u16 {
    client
        .outcomes()
        .iter()
        .find(|o| o.tag.as_deref() == Some(tag))
        .unwrap_or_else(|| panic!("no status for {tag}: {:?}", client.outcomes()))
        .code
}

/// The header status codes of the server's messages, in order.
pub fn header_codes(replies: &[SyncMl]) -> Vec<u16> {
    replies
        .iter()
        .filter_map(|r| r.header_status().map(|s| s.code))
        .collect()
}
