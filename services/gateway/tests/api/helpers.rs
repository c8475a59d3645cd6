//! `spawn_app()`: the real `Application` on port 0 with a fresh SQLite file in a temporary folder
//! and an admin token; `TestApp` carries typed request helpers. Logs go to a buffer the secrecy
//! tests search (and to stderr too with `TEST_LOG=1`).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gateway::actors::TracedExt;
use gateway::actors::discovery::{Announce, Via};
use gateway::actors::inventory::DeviceReady;
use gateway::config::ServeArgs;
use gateway::domain::{DeviceView, ServerReport};
use gateway::startup::{Application, StartupError};
use gateway::state::AppState;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The admin token every test app runs with.
pub const TOKEN: &str = "test-admin-token-3f9a8c7e51d2";
/// The client password (AAuthSecret) of the accounts tests add.
pub const CLIENT_SECRET: &str = "client-s3cret-9e1f2d7a";
/// The server password (SRVCRED AAuthSecret) of the accounts tests add.
pub const SERVER_SECRET: &str = "server-s3cret-4b8c0e6f";
/// A nonce (AAuthData) tests store on an account.
pub const NONCE: &str = "bm9uY2UtdGVzdC1zZWNyZXQ=";

// ---------------------------------------------------------------------------------------------
// Log capture

/// Everything logged by this test binary.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

/// One write into the buffer (and to stderr with `TEST_LOG`).
pub struct LogWriter {
    buf: Arc<Mutex<Vec<u8>>>,
    echo: bool,
}

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.buf.lock() {
            b.extend_from_slice(data);
        }
        if self.echo {
            std::io::stderr().write_all(data)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter {
            buf: self.0.clone(),
            echo: std::env::var_os("TEST_LOG").is_some(),
        }
    }
}

fn log_buffer() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuffer::default();
        // Verbose on purpose: the secrecy test searches every line, debug and trace included.
        let filter = EnvFilter::new("debug,gateway=trace,omadm=trace,actix_server=info,h2=info");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(buf.clone())
            .with_ansi(false)
            .try_init();
        buf
    })
}

/// Everything logged so far by every test of this binary.
pub fn captured_logs() -> String {
    let b = log_buffer();
    let bytes = b.0.lock().map(|v| v.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The app

/// A running gateway and a client for its admin API.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The shared state (store, actors, settings).
    pub state: AppState,
    /// The SQLite file.
    pub db: PathBuf,
    /// A plain HTTP client (no token by default; the helpers add it).
    pub client: reqwest::Client,
    handle: gateway::startup::StopHandle,
    join: JoinHandle<Result<(), StartupError>>,
    _dir: Option<TempDir>,
}

/// Serve-arguments for a test gateway on `db`: port 0, the test token, short timeouts.
pub fn test_args(db: &Path) -> ServeArgs {
    ServeArgs {
        database: Some(db.to_owned()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_token: Some(TOKEN.to_owned()),
        dev_id: Some("urn:dmgw:test-gateway".to_owned()),
        shutdown_timeout: Some(5),
        lan_listen: Some("127.0.0.1:0".parse().unwrap()),
        wan_listen: Some("127.0.0.1:0".parse().unwrap()),
        allow_plain_http: true,
        ..ServeArgs::default()
    }
}

/// A gateway on a fresh database in its own temporary folder.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("dmgw.db");
    let mut app = spawn_with(test_args(&db)).await;
    app._dir = Some(dir);
    app
}

/// A gateway with these arguments (the caller keeps the database folder).
pub async fn spawn_with(args: ServeArgs) -> TestApp {
    log_buffer();
    let settings = args.resolve().unwrap();
    let db = settings.database.clone();
    let app = Application::build(settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.admin_port());
    let state = app.state().clone();
    let handle = app.handle();
    let join = actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        state,
        db,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        handle,
        join,
        _dir: None,
    }
}

impl TestApp {
    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// GET with the token.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// GET with the token and query parameters.
    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Response {
        self.client
            .get(self.url(path))
            .query(query)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// GET with the token; the status and the JSON body.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.get(path).await).await
    }

    /// DELETE with the token.
    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// POST a JSON account with the token.
    pub async fn post_account(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/api/v1/accounts"))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POST raw bytes as `content_type` to the accounts endpoint, with the token.
    pub async fn post_raw(&self, body: Vec<u8>, content_type: &str) -> Response {
        self.client
            .post(self.url("/api/v1/accounts"))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Add `account(server_id)` and check it was created.
    pub async fn add_account(&self, server_id: &str) -> Value {
        let (status, body) = json_of(self.post_account(&account(server_id)).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// A device announces itself (step 1-1) through the Discovery actor.
    pub async fn announce(&self, dev_id: &str) -> DeviceView {
        self.state
            .actors
            .discovery
            .send(
                Announce {
                    dev_id: dev_id.to_owned(),
                    man: Some("ACME".to_owned()),
                    model: Some("Sensor 9".to_owned()),
                    dev_type: Some("sensor".to_owned()),
                    callback_url: "http://127.0.0.1:9/cb".to_owned(),
                    via: Via::Http,
                }
                .traced(),
            )
            .await
            .unwrap()
            .unwrap()
    }

    /// The device reports the ServerIDs of its accounts (step 1-4) through Inventory; matching
    /// then runs on its own.
    pub async fn report(&self, dev_id: &str, servers: &[&str]) -> DeviceView {
        self.state
            .actors
            .inventory
            .send(
                DeviceReady {
                    dev_id: dev_id.to_owned(),
                    devinfo: None,
                    servers: servers
                        .iter()
                        .map(|s| ServerReport {
                            server_id: (*s).to_owned(),
                            bootstrap_url: Some(format!("https://bootstrap.example/{s}")),
                        })
                        .collect(),
                }
                .traced(),
            )
            .await
            .unwrap()
            .unwrap()
    }

    /// Poll `GET path` until `check` accepts the body (bounded: 10 s).
    pub async fn wait_for(&self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(what, || async {
            let (status, body) = self.get_json(path).await;
            (status == StatusCode::OK && check(&body)).then_some(body)
        })
        .await
    }

    /// Stop as SIGTERM would and wait for the shutdown to finish.
    pub async fn stop(self) -> Result<(), StartupError> {
        self.handle.stop(true).await;
        self.join.await.unwrap()
    }
}

/// Poll `f` until it gives a value; fails after 10 s. Actor effects are awaited this way.
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status and JSON body of a response (`Null` when the body is not JSON).
pub async fn json_of(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A valid `POST /api/v1/accounts` body for `server_id` (a DM Server on a closed local port).
pub fn account(server_id: &str) -> Value {
    json!({
        "server_id": server_id,
        "name": format!("{server_id} DM Server"),
        "addr": "http://127.0.0.1:9/dm",
        "allow_plain_http": true,
        "auth_type": "DIGEST",
        "auth_name": "gateway-1",
        "auth_secret": CLIENT_SECRET,
        "server_auth_name": format!("{server_id}-srv"),
        "server_auth_secret": SERVER_SECRET,
    })
}

/// `text` as a URL path segment.
pub fn seg(text: &str) -> String {
    gateway::api::extract::path_segment(text)
}
