//! Test helpers: start a dm-server in-process on a free port, and drive an `omadm` ClientSession
//! against it over real HTTP with reqwest.
#![allow(dead_code)] // each test binary uses a part of the helpers
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use dm_server::config::Account;
use dm_server::{Config, RunningServer};
use omadm::alert::{self, GenericAlert};
use omadm::auth::AuthScheme;
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::model::{Command, Data, SyncMl};
use omadm::secret::Secret;
use omadm::session::{ClientConfig, ClientSession, ClientStep, Credentials, SessionError};
use omadm::tree::{Acl, AclCommand, NewNode, Tree};
use omadm::uri::DmUri;
use serde_json::Value;

pub const SERVER_ID: &str = "dms-test";
pub const DEV: &str = "IMEI:356938035643809";
pub const ACCOUNT: &str = "gw-1";
pub const PASSWORD: &str = "correct horse";

/// A running server and an HTTP client for it.
pub struct TestServer {
    pub server: RunningServer,
    pub http: reqwest::Client,
}

impl TestServer {
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

    pub async fn alerts(&self, query: &str) -> Value {
        self.get_json(&format!("/api/v1/alerts{query}")).await
    }

    pub async fn post_dm(&self, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.dm_url())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Run a whole client session (see [`run_session`]).
    pub async fn session(
        &self,
        client: &mut ClientSession,
        enc: Encoding,
    ) -> Result<Vec<SyncMl>, SessionError> {
        run_session(&self.http, client, &mut device_tree(), enc).await
    }

    pub async fn stop(self) {
        self.server.stop().await.unwrap();
    }
}

/// A config with the test account; plain HTTP on a free loopback port.
pub fn config() -> Config {
    let mut cfg = Config::new(SERVER_ID);
    cfg.accounts = vec![Account {
        name: ACCOUNT.into(),
        password: Secret::new(PASSWORD),
        dev_id: None,
    }];
    cfg.handle_signals = false;
    cfg
}

pub fn spawn(cfg: Config) -> TestServer {
    let server = dm_server::start(cfg).unwrap();
    TestServer {
        server,
        http: reqwest::Client::new(),
    }
}

/// The End Device's (or gateway's) management tree.
pub fn device_tree() -> Tree {
    let mut t = Tree::new();
    for (uri, v) in [
        ("./DevInfo/DevId", DEV),
        ("./DevInfo/Man", "Acme"),
        ("./DevInfo/Mod", "Thermo 3"),
    ] {
        t.add(&DmUri::try_from(uri).unwrap(), NewNode::chr(v))
            .unwrap();
    }
    let acl = Acl::empty()
        .allow_any(AclCommand::Get)
        .allow_any(AclCommand::Replace);
    t.add(
        &DmUri::try_from("./Ext/Note").unwrap(),
        NewNode::chr("old").with_acl(acl),
    )
    .unwrap();
    t
}

pub fn generic_alert(correlator: &str, alert_type: &str, data: &str) -> (Command, Option<String>) {
    let ga = GenericAlert {
        alert_type: alert_type.into(),
        format: Some("chr".into()),
        mark: Some("informational".into()),
        source: Some("./DeviceInventory/d1".into()),
        target: None,
        data: Some(Data::Text(data.into())),
    };
    (
        alert::build(Some(correlator), &[ga]),
        Some(correlator.into()),
    )
}

/// A client session of `DEV` with credentials and package-1 commands.
pub fn client(
    server: &TestServer,
    session_id: &str,
    scheme: AuthScheme,
    name: &str,
    password: &str,
    nonce: &[u8],
    commands: Vec<(Command, Option<String>)>,
) -> ClientSession {
    let mut cfg = ClientConfig::new(server.dm_url(), SERVER_ID, DEV, session_id);
    cfg.credentials = Some(Credentials {
        scheme,
        name: name.into(),
        secret: Secret::new(password),
    });
    cfg.server_nonce = nonce.to_vec();
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

/// Drive `client` to the end over HTTP; returns the server's messages.
pub async fn run_session(
    http: &reqwest::Client,
    client: &mut ClientSession,
    tree: &mut Tree,
    enc: Encoding,
) -> Result<Vec<SyncMl>, SessionError> {
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
        assert_eq!(resp.headers()["content-type"].to_str().unwrap(), enc.mime());
        let bytes = resp.bytes().await.unwrap();
        let reply = codec::decode_as(&bytes, enc, &Limits::default()).unwrap();
        replies.push(reply.clone());
        match client.receive(&reply, tree)? {
            ClientStep::Send(m) => out = *m,
            ClientStep::Finished => return Ok(replies),
        }
    }
    panic!("session did not end in 20 rounds");
}

/// The header status codes of the server's messages, in order.
pub fn header_codes(replies: &[SyncMl]) -> Vec<u16> {
    replies
        .iter()
        .filter_map(|r| r.header_status().map(|s| s.code))
        .collect()
}
