//! A minimal LAN gateway for device-sim's tests only: the contract's endpoints on actix-web (port 0),
//! a real `omadm` provisioning bootstrap and a real md5 `ServerSession`, and a recorder of all it saw.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use device_sim::lan::{Announce, ConsentAnswer, ConsentRequest, Heartbeat};
use omadm::alert;
use omadm::auth::{AuthScheme, Nonce};
use omadm::bootstrap;
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::mo::{AppAuth, AuthLevel, AuthType, DmAcc};
use omadm::model::{Command, Data, Item, ItemCmd, Meta};
use omadm::secret::Secret;
use omadm::session::{ClientDirectory, ServerConfig, ServerEvent, ServerSession};
use omadm::tnds::MgmtTree;
use omadm::tree::Tree;
use omadm::uri::DmUri;
use serde::Deserialize;
use url::Url;

/// The fake gateway's DevId (= the ServerID of the account it provisions).
pub const GW_ID: &str = "GW:fake-0001";
/// The bearer token of its admin API.
pub const ADMIN_TOKEN: &str = "test-token";

/// How the fake behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Answer the first heartbeat of each device with 404 and forget the device.
    pub forget_on_first_heartbeat: bool,
    /// Items per admin API page (default 500).
    pub page_size: Option<usize>,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Send the consent callback with the announcement's `traceparent` (continue the device's
    /// trace, as the real gateway does) instead of a trace of the fake's own.
    pub continue_trace: bool,
}

#[derive(Debug, Clone)]
struct Creds {
    name: String,
    password: String,
}

#[derive(Debug)]
struct DeviceRec {
    callback_url: String,
    consent_token: String,
    creds: Option<Creds>,
    nonce: Option<Vec<u8>>,
    heartbeats: usize,
}

/// What the fake saw.
#[derive(Debug, Default)]
pub struct State {
    /// Every announcement.
    pub announces: Vec<Announce>,
    /// Consent requests sent: (dev_id, when sent, callback status; 0 until it answered).
    pub consent_requests: Vec<(String, Instant, u16)>,
    /// Consent answers: (answer, when).
    pub consent_answers: Vec<(ConsentAnswer, Instant)>,
    /// Provisioning fetches: (dev_id, Accept).
    pub provisioning_fetches: Vec<(String, String)>,
    /// Heartbeats: (dev_id, status answered).
    pub heartbeats: Vec<(String, u16)>,
    /// Content-Types of DM requests.
    pub dm_content_types: Vec<String>,
    /// BootstrappedDMSList alerts: (dev_id, ServerIDs).
    pub dms_lists: Vec<(String, Vec<String>)>,
    /// Results of the fake's Gets: (dev_id, uri, value).
    pub results: Vec<(String, String, String)>,
    /// Statuses of the fake's commands: (dev_id, tag, code).
    pub statuses: Vec<(String, String, u16)>,
    /// Failed authentications: (dev_id, code).
    pub auth_failures: Vec<(String, u16)>,
    /// DevIds whose DM session ended, in order; they count as attached.
    pub attached: Vec<String>,
    /// The `traceparent` of every LAN request: (path, header).
    pub traceparents: Vec<(String, Option<String>)>,
    /// The trace IDs the fake started with its consent requests.
    pub consent_traces: Vec<String>,
    devices: HashMap<String, DeviceRec>,
    provisioning: HashMap<String, (String, bool)>,
    sessions: HashMap<(String, String), ServerSession>,
    counter: u64,
}

impl State {
    /// The value a device returned for `uri`.
    pub fn result(&self, dev_id: &str, uri: &str) -> Option<String> {
        self.results
            .iter()
            .find(|(d, u, _)| d == dev_id && u == uri)
            .map(|(_, _, v)| v.clone())
    }

    /// The status a device gave the command tagged `tag`.
    pub fn status(&self, dev_id: &str, tag: &str) -> Option<u16> {
        self.statuses
            .iter()
            .find(|(d, t, _)| d == dev_id && t == tag)
            .map(|(_, _, c)| *c)
    }
}

type Shared = Arc<Mutex<State>>;

struct Ctx {
    state: Shared,
    base: Url,
    opts: Options,
    http: reqwest::Client,
}

/// A running fake gateway.
pub struct FakeGateway {
    /// Its LAN base URL.
    pub base: Url,
    /// What it saw.
    pub state: Shared,
    handle: ServerHandle,
}

impl FakeGateway {
    /// Start on 127.0.0.1, port 0.
    pub async fn start(opts: Options) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let host = if opts.tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let base = Url::parse(&format!("{scheme}://{host}:{port}/")).unwrap();
        let state: Shared = Arc::new(Mutex::new(State::default()));
        let ctx = web::Data::new(Ctx {
            state: state.clone(),
            base: base.clone(),
            opts: opts.clone(),
            http: reqwest::Client::new(),
        });
        let server = HttpServer::new(move || {
            let recorder = ctx.clone();
            App::new()
                .app_data(ctx.clone())
                .wrap_fn(move |req, srv| {
                    let tp = req
                        .headers()
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    if req.path().starts_with("/lan/") {
                        recorder
                            .state
                            .lock()
                            .unwrap()
                            .traceparents
                            .push((req.path().to_owned(), tp));
                    }
                    actix_web::dev::Service::call(srv, req)
                })
                .route("/lan/v1/announce", web::post().to(announce))
                .route("/lan/v1/heartbeat", web::post().to(heartbeat))
                .route("/lan/v1/consent", web::post().to(consent))
                .route("/lan/v1/provisioning/{token}", web::get().to(provisioning))
                .route("/lan/v1/dm", web::post().to(dm))
                .route("/api/v1/devices", web::get().to(devices))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);
        let server = match &opts.tls {
            Some((cert, key)) => {
                let cfg = device_sim::tls::load_server_config(cert, key).unwrap();
                server.listen_rustls_0_23(listener, cfg).unwrap()
            }
            None => server.listen(listener).unwrap(),
        }
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeGateway {
            base,
            state,
            handle,
        }
    }

    /// Stop the server.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }

    /// Wait (at most 10 s) until `cond` holds for what the fake saw.
    pub async fn wait_until(&self, cond: impl Fn(&State) -> bool) {
        for _ in 0..1000 {
            if cond(&self.state.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the fake gateway never saw what the test waits for");
    }

    /// Lock the recorder.
    pub fn seen(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

fn json_error(status: u16, text: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(serde_json::json!({ "error": text }))
}

async fn announce(
    ctx: web::Data<Ctx>,
    http_req: HttpRequest,
    body: web::Json<Announce>,
) -> HttpResponse {
    let a = body.into_inner();
    let announce_tp = http_req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (token, trace_id) = {
        let mut s = ctx.state.lock().unwrap();
        s.announces.push(a.clone());
        s.counter += 1;
        let token = format!("consent-{}", s.counter);
        let trace_id = format!("{:032x}", 0xfeed_0000 + s.counter);
        s.consent_traces.push(trace_id.clone());
        s.devices.insert(
            a.dev_id.clone(),
            DeviceRec {
                callback_url: a.callback_url.clone(),
                consent_token: token.clone(),
                creds: None,
                nonce: None,
                heartbeats: 0,
            },
        );
        (token, trace_id)
    };
    // Ask for consent a moment later, as a real gateway's actor would.
    let req = ConsentRequest {
        gateway_id: GW_ID.to_owned(),
        gateway_name: Some("Fake gateway".to_owned()),
        consent_token: token,
    };
    let state = ctx.state.clone();
    let http = ctx.http.clone();
    let url = format!("{}/consent", a.callback_url);
    let index = {
        let mut s = ctx.state.lock().unwrap();
        s.consent_requests
            .push((a.dev_id.clone(), Instant::now(), 0));
        s.consent_requests.len() - 1
    };
    let traceparent = match announce_tp {
        Some(tp) if ctx.opts.continue_trace => tp,
        _ => format!("00-{trace_id}-00000000000000a1-01"),
    };
    tokio::spawn(async move {
        let status = match http
            .post(&url)
            .header("traceparent", traceparent)
            .json(&req)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            // Not an HTTP status: the callback could not be reached.
            Err(_) => 1,
        };
        state.lock().unwrap().consent_requests[index].2 = status;
    });
    HttpResponse::Accepted().json(serde_json::json!({"dev_id": a.dev_id, "state": "discovered"}))
}

async fn heartbeat(ctx: web::Data<Ctx>, body: web::Json<Heartbeat>) -> HttpResponse {
    let mut s = ctx.state.lock().unwrap();
    let dev_id = body.dev_id.clone();
    let status = match s.devices.get_mut(&dev_id) {
        None => 404,
        Some(d) => {
            d.heartbeats += 1;
            if ctx.opts.forget_on_first_heartbeat && d.heartbeats == 1 {
                s.devices.remove(&dev_id);
                404
            } else {
                204
            }
        }
    };
    s.heartbeats.push((dev_id, status));
    if status == 404 {
        json_error(404, "unknown device")
    } else {
        HttpResponse::NoContent().finish()
    }
}

async fn consent(ctx: web::Data<Ctx>, body: web::Json<ConsentAnswer>) -> HttpResponse {
    let a = body.into_inner();
    let mut s = ctx.state.lock().unwrap();
    s.consent_answers.push((a.clone(), Instant::now()));
    s.counter += 1;
    let n = s.counter;
    let Some(d) = s.devices.get_mut(&a.dev_id) else {
        return json_error(404, "unknown device");
    };
    if d.consent_token != a.consent_token {
        return json_error(403, "wrong consent token");
    }
    if !a.allow {
        return HttpResponse::Ok().json(serde_json::json!({}));
    }
    d.creds = Some(Creds {
        name: format!("dev-{n}"),
        password: format!("secret-{n}-for-{}", a.dev_id),
    });
    d.nonce = None;
    let token = format!("prov-{n}");
    s.provisioning
        .insert(token.clone(), (a.dev_id.clone(), false));
    let url = ctx
        .base
        .join(&format!("lan/v1/provisioning/{token}"))
        .unwrap();
    HttpResponse::Ok().json(serde_json::json!({ "provisioning_url": url.as_str() }))
}

fn provisioning_bytes(base: &Url, dev_id: &str, creds: &Creds, enc: Encoding) -> Vec<u8> {
    let mut t = Tree::new();
    let mut acc = DmAcc::new(GW_ID, base.join("lan/v1/dm").unwrap().as_str());
    acc.name = Some("Fake gateway".into());
    acc.aauth_pref = Some(AuthType::Digest);
    acc.app_auth = vec![
        AppAuth {
            key: "CL".into(),
            level: AuthLevel::Clcred,
            auth_type: AuthType::Digest,
            name: Some(creds.name.clone()),
            secret: Some(Secret::new(creds.password.clone())),
            data: None,
        },
        AppAuth {
            key: "SR".into(),
            level: AuthLevel::Srvcred,
            auth_type: AuthType::Digest,
            name: Some(GW_ID.into()),
            secret: Some(Secret::new("gateway-secret")),
            data: None,
        },
    ];
    let at = DmAcc::account_uri(&t, GW_ID).unwrap();
    acc.write(&mut t, &at).unwrap();
    let tnds = MgmtTree::from_subtree(&t, &DmUri::try_from("./DMAcc").unwrap()).unwrap();
    let msg = bootstrap::build_tnds(dev_id, GW_ID, &tnds, enc);
    codec::encode(&msg, enc).unwrap()
}

async fn provisioning(
    ctx: web::Data<Ctx>,
    token: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut s = ctx.state.lock().unwrap();
    let Some((dev_id, used)) = s.provisioning.get_mut(token.as_str()) else {
        return json_error(404, "no such provisioning");
    };
    if *used {
        return json_error(410, "already used");
    }
    *used = true;
    let dev_id = dev_id.clone();
    s.provisioning_fetches
        .push((dev_id.clone(), accept.clone()));
    let creds = s.devices[&dev_id].creds.clone().unwrap();
    let enc = Encoding::from_content_type(&accept).unwrap_or(Encoding::Xml);
    let body = provisioning_bytes(&ctx.base, &dev_id, &creds, enc);
    HttpResponse::Ok().content_type(enc.mime()).body(body)
}

struct Dir {
    dev_id: String,
    creds: Option<Creds>,
    nonce: Option<Vec<u8>>,
}

impl ClientDirectory for Dir {
    fn password(&self, dev_id: &str, name: &str) -> Option<Secret> {
        let c = self.creds.as_ref()?;
        (dev_id == self.dev_id && name == c.name).then(|| Secret::new(c.password.clone()))
    }
    fn nonce(&self, _dev_id: &str) -> Option<Vec<u8>> {
        self.nonce.clone()
    }
}

/// Queue, for every account of the device except the gateway's, a Get of its ServerID and
/// bootstrap-server URL and a Replace of its AssociatedGateway.
fn queue_account_commands(session: &mut ServerSession, listing: &str, base: &Url) {
    let own = omadm::mo::escape_name(GW_ID).unwrap();
    for name in listing.split('/').filter(|n| !n.is_empty() && *n != own) {
        let at = format!("./DMAcc/{name}");
        session.queue(
            Command::get(format!("{at}/ServerID")),
            Some(format!("sid:{name}")),
        );
        session.queue(
            Command::get(format!("{at}/Ext/BootstrapServerURL")),
            Some(format!("bsu:{name}")),
        );
        session.queue(
            Command::Replace(ItemCmd {
                items: vec![
                    Item::target(format!("{at}/Ext/AssociatedGateway"))
                        .with_meta(Meta::format("chr"))
                        .with_data(Data::Text(format!("{GW_ID} {base}"))),
                ],
                ..ItemCmd::default()
            }),
            Some(format!("ag:{name}")),
        );
    }
}

async fn dm(ctx: web::Data<Ctx>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let enc = Encoding::from_content_type(&content_type).unwrap_or(Encoding::sniff(&body));
    let msg = match codec::decode(&body, &Limits::default()) {
        Ok(m) => m,
        Err(e) => return json_error(400, &e.to_string()),
    };
    let dev_id = msg.hdr.source.loc_uri.clone();
    let key = (dev_id.clone(), msg.hdr.session_id.clone());
    let mut s = ctx.state.lock().unwrap();
    s.dm_content_types.push(content_type);
    let dm_url = ctx.base.join("lan/v1/dm").unwrap();
    let mut session = s.sessions.remove(&key).unwrap_or_else(|| {
        let mut session = ServerSession::new(ServerConfig::new(dm_url.as_str(), AuthScheme::Md5));
        session.queue(Command::get("./DMAcc"), Some("list".into()));
        session
    });
    if session.state() == omadm::session::ServerState::Open {
        for cmd in &msg.body.commands {
            if let Command::Results(r) = cmd {
                for item in &r.items {
                    if item.source_uri() == Some("./DMAcc")
                        && let Some(text) = item.data.as_ref().and_then(Data::as_text)
                    {
                        queue_account_commands(&mut session, &text, &ctx.base);
                    }
                }
            }
        }
    }
    let dir = {
        let d = s.devices.get(&dev_id);
        Dir {
            dev_id: dev_id.clone(),
            creds: d.and_then(|d| d.creds.clone()),
            nonce: d.and_then(|d| d.nonce.clone()),
        }
    };
    let nonce = Nonce::generate().unwrap();
    let step = match session.receive(&msg, &dir, None, nonce) {
        Ok(step) => step,
        Err(e) => return json_error(400, &e.to_string()),
    };
    if let Some(n) = &step.issued_nonce
        && let Some(d) = s.devices.get_mut(&dev_id)
    {
        d.nonce = Some(n.clone());
    }
    for ev in &step.events {
        match ev {
            ServerEvent::AuthFailed { code, .. } => s.auth_failures.push((dev_id.clone(), *code)),
            ServerEvent::Alert(a) if a.code == 1226 => {
                let ga = alert::parse(a).unwrap();
                for item in ga.alerts {
                    if alert::same_type(&item.alert_type, alert::BOOTSTRAPPED_DMS_LIST) {
                        let data = item
                            .data
                            .as_ref()
                            .and_then(Data::as_text)
                            .map(|t| t.into_owned())
                            .unwrap_or_default();
                        s.dms_lists
                            .push((dev_id.clone(), alert::parse_server_id_list(&data)));
                    }
                }
            }
            ServerEvent::Results { results, .. } => {
                for item in &results.items {
                    let value = item
                        .data
                        .as_ref()
                        .and_then(Data::as_text)
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let uri = item.source_uri().unwrap_or("").to_owned();
                    s.results.push((dev_id.clone(), uri, value));
                }
            }
            ServerEvent::Status {
                tag: Some(tag),
                code,
                ..
            } => s.statuses.push((dev_id.clone(), tag.clone(), *code)),
            _ => {}
        }
    }
    if step.ends {
        if step
            .events
            .iter()
            .any(|e| !matches!(e, ServerEvent::AuthFailed { .. }))
        {
            s.attached.push(dev_id.clone());
        }
    } else {
        s.sessions.insert(key, session);
    }
    drop(s);
    let bytes = codec::encode(&step.reply, enc).unwrap();
    HttpResponse::Ok().content_type(enc.mime()).body(bytes)
}

#[derive(Debug, Deserialize)]
struct Query {
    state: Option<String>,
    limit: Option<usize>,
    after: Option<usize>,
}

async fn devices(ctx: web::Data<Ctx>, q: web::Query<Query>, req: HttpRequest) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {ADMIN_TOKEN}") {
        return json_error(401, "bad token");
    }
    assert_eq!(q.state.as_deref(), Some("attached"));
    let page = q.limit.unwrap_or(50).min(ctx.opts.page_size.unwrap_or(500));
    let start = q.after.unwrap_or(0);
    let s = ctx.state.lock().unwrap();
    let items: Vec<_> = s
        .attached
        .iter()
        .skip(start)
        .take(page)
        .map(|d| serde_json::json!({"dev_id": d, "state": "attached"}))
        .collect();
    let end = start + items.len();
    let next = (items.len() == page).then_some(end);
    HttpResponse::Ok().json(serde_json::json!({ "items": items, "next": next }))
}
