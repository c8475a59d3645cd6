//! The LAN face (southbound, End Devices): announce and heartbeat (1-1), consent (1-2), the
//! one-time provisioning file (1-3) and the gateway's local DM server (1-4). See ARCHITECTURE.md.

pub mod dm;
pub mod provisioning;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use omadm::mo::DeviceState;
use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;
use tracing::Instrument;

use crate::actors::discovery::{Announce, Heartbeat, Via};
use crate::actors::inventory::SetState;
use crate::actors::{ActorAddrs, ActorError, TracedExt};
use crate::config::Settings;
use crate::domain::{DeviceView, Millis, NewEvent};
use crate::store::{Store, StoreError, events, lan};

/// What the LAN handlers share.
#[derive(Clone)]
pub struct LanState {
    /// The store.
    pub store: Store,
    /// The actors.
    pub actors: ActorAddrs,
    /// Settings.
    pub settings: Arc<Settings>,
    /// HTTP client for consent callbacks to devices.
    pub http: reqwest::Client,
    /// Open DM sessions with devices.
    pub sessions: Arc<dm::Sessions>,
}

impl std::fmt::Debug for LanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LanState")
    }
}

/// A LAN request failed; each variant's doc names its HTTP status.
#[derive(Debug, Error)]
pub enum LanError {
    /// 400: the request is malformed or a field is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 403: a consent answer with a wrong or stale token.
    #[error("no open consent request matches that token")]
    Forbidden,
    /// 404: the device is not known.
    #[error("unknown device")]
    UnknownDevice,
    /// 410: the provisioning URL was used or has expired.
    #[error("this provisioning URL was used or has expired")]
    Gone,
    /// 406: the Accept header names no encoding the gateway writes.
    #[error("acceptable types: application/vnd.syncml.dm+xml, application/vnd.syncml.dm+wbxml")]
    NotAcceptable,
    /// 503: the gateway is busy or stopping.
    #[error("temporarily unavailable")]
    Unavailable,
    /// 500: an internal failure (logged; never detailed to the device).
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for LanError {
    fn from(e: StoreError) -> LanError {
        match e {
            StoreError::Invalid { field, reason } => {
                LanError::BadRequest(format!("{field}: {reason}"))
            }
            other => LanError::Internal(other.to_string()),
        }
    }
}

impl From<ActorError> for LanError {
    fn from(e: ActorError) -> LanError {
        match e {
            ActorError::Invalid { field, reason } => {
                LanError::BadRequest(format!("{field}: {reason}"))
            }
            ActorError::UnknownDevice { .. } => LanError::UnknownDevice,
            ActorError::Store(s) => s.into(),
            ActorError::Unavailable(_) => LanError::Unavailable,
            other => LanError::Internal(other.to_string()),
        }
    }
}

impl ResponseError for LanError {
    fn status_code(&self) -> StatusCode {
        match self {
            LanError::BadRequest(_) => StatusCode::BAD_REQUEST,
            LanError::Forbidden => StatusCode::FORBIDDEN,
            LanError::UnknownDevice => StatusCode::NOT_FOUND,
            LanError::Gone => StatusCode::GONE,
            LanError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            LanError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            LanError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let LanError::Internal(cause) = self {
            tracing::error!(cause = %cause, "LAN request failed");
        }
        HttpResponse::build(self.status_code()).json(json!({ "error": self.to_string() }))
    }
}

/// `POST /lan/v1/announce` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceBody {
    /// DevId.
    pub dev_id: String,
    /// Manufacturer.
    #[serde(default)]
    pub man: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Device type.
    #[serde(default)]
    pub dev_type: Option<String>,
    /// Where the gateway reaches the device.
    pub callback_url: String,
    /// The device's heartbeat interval (informational).
    #[serde(default)]
    pub heartbeat_secs: Option<u64>,
}

/// `POST /lan/v1/heartbeat` body.
#[derive(Debug, Deserialize)]
pub struct HeartbeatBody {
    /// DevId.
    pub dev_id: String,
}

/// `POST /lan/v1/consent` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    /// DevId.
    pub dev_id: String,
    /// The token the gateway sent with its request.
    pub consent_token: String,
    /// The user's decision.
    pub allow: bool,
}

/// What the gateway sends to a device's consent callback.
#[derive(Debug, Serialize)]
pub struct ConsentRequest<'a> {
    /// The gateway's DevId.
    pub gateway_id: &'a str,
    /// A name to show the user.
    pub gateway_name: &'a str,
    /// The token to answer with.
    pub consent_token: &'a str,
}

/// Ask a device for consent (step 1-2): store a token, call its callback.
pub async fn ask_consent(lan: LanState, device: DeviceView) {
    let span = tracing::info_span!("consent", dev_id = %device.dev_id);
    async move {
        let Some(callback) = device.address.clone() else {
            return;
        };
        let token = lan::new_token();
        let now = Millis::now();
        let stored: Result<(), StoreError> = async {
            let mut tx = lan.store.begin().await?;
            lan::ask_consent(
                &mut tx,
                &device.dev_id,
                &token,
                now,
                now.saturating_add(lan.settings.consent_ttl),
            )
            .await?;
            events::log(
                &mut tx,
                &[NewEvent {
                    dev_id: Some(device.dev_id.clone()),
                    kind: "consent_asked".into(),
                    detail: json!({}),
                    at: now,
                }],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "cannot record the consent request");
            return;
        }
        let url = format!("{}/consent", callback.trim_end_matches('/'));
        let body = ConsentRequest {
            gateway_id: &lan.settings.dev_id,
            gateway_name: "dmgw",
            consent_token: &token,
        };
        match telemetry::http::send(lan.http.post(&url).json(&body)).await {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("dmgw_consent_requests_total", "outcome" => "sent").increment(1);
            }
            Ok(r) => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    "device refused the consent request"
                );
                metrics::counter!("dmgw_consent_requests_total", "outcome" => "rejected")
                    .increment(1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "device unreachable for consent");
                metrics::counter!("dmgw_consent_requests_total", "outcome" => "unreachable")
                    .increment(1);
            }
        }
    }
    .instrument(span)
    .await
}

async fn announce(
    lan: web::Data<LanState>,
    body: web::Json<AnnounceBody>,
) -> Result<HttpResponse, LanError> {
    let b = body.into_inner();
    let span = tracing::info_span!(
        "onboard device",
        dev_id = %b.dev_id,
        via = "http",
        outcome = tracing::field::Empty
    );
    let device = async {
        lan.actors
            .discovery
            .send(
                Announce {
                    dev_id: b.dev_id.clone(),
                    man: b.man,
                    model: b.model,
                    dev_type: b.dev_type,
                    callback_url: b.callback_url,
                    via: Via::Http,
                }
                .traced(),
            )
            .await
            .map_err(ActorError::from)?
    }
    .instrument(span.clone())
    .await?;
    if device.state == DeviceState::Discovered {
        // A new onboarding: its span stays open until matching settles the device.
        crate::onboarding::open(&device.dev_id, span.clone());
        let lan = lan.get_ref().clone();
        let d = device.clone();
        actix_web::rt::spawn(ask_consent(lan, d).instrument(span));
    }
    Ok(HttpResponse::Accepted().json(json!({ "dev_id": device.dev_id, "state": device.state })))
}

async fn heartbeat(
    lan: web::Data<LanState>,
    body: web::Json<HeartbeatBody>,
) -> Result<HttpResponse, LanError> {
    lan.actors
        .discovery
        .send(
            Heartbeat {
                dev_id: body.into_inner().dev_id,
            }
            .traced(),
        )
        .await
        .map_err(ActorError::from)??;
    Ok(HttpResponse::NoContent().finish())
}

async fn consent(
    lan: web::Data<LanState>,
    body: web::Json<ConsentBody>,
) -> Result<HttpResponse, LanError> {
    let b = body.into_inner();
    let span = tracing::info_span!(
        "consent answer",
        dev_id = %b.dev_id,
        decision = if b.allow { "allow" } else { "refuse" },
        otel.status_code = tracing::field::Empty
    );
    crate::onboarding::adopt(&lan.store, &span, &b.dev_id).await;
    let result = consent_answer(&lan, b).instrument(span.clone()).await;
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    result
}

async fn consent_answer(lan: &LanState, b: ConsentBody) -> Result<HttpResponse, LanError> {
    let now = Millis::now();
    let mut tx = lan.store.begin().await?;
    let answer = match lan::answer_consent(&mut tx, &b.dev_id, &b.consent_token, b.allow, now).await
    {
        Ok(a) => a,
        Err(StoreError::NotFound { .. }) => return Err(LanError::Forbidden),
        Err(e) => return Err(e.into()),
    };
    let provisioning = if answer == lan::ConsentAnswer::Allowed {
        let token = lan::new_token();
        lan::create_provisioning_token(
            &mut tx,
            &b.dev_id,
            &token,
            now,
            now.saturating_add(lan.settings.consent_ttl),
        )
        .await?;
        Some(format!(
            "{}/lan/v1/provisioning/{token}",
            lan.settings.lan_public_url
        ))
    } else {
        None
    };
    tx.commit().await.map_err(StoreError::from)?;
    let (state, kind) = match answer {
        lan::ConsentAnswer::Allowed => (DeviceState::Consented, "consent_allowed"),
        lan::ConsentAnswer::Refused => (DeviceState::Refused, "consent_refused"),
    };
    lan.actors
        .inventory
        .send(
            SetState {
                dev_id: b.dev_id.clone(),
                state,
                event: kind,
                detail: json!({}),
            }
            .traced(),
        )
        .await
        .map_err(ActorError::from)??;
    metrics::counter!("dmgw_consent_answers_total", "answer" => kind).increment(1);
    if state == DeviceState::Refused {
        crate::onboarding::close(&b.dev_id, "refused");
    }
    Ok(HttpResponse::Ok().json(match provisioning {
        Some(url) => json!({ "provisioning_url": url }),
        None => json!({}),
    }))
}

/// Register the LAN routes; `max_body` bounds every request body.
pub fn configure(cfg: &mut web::ServiceConfig, max_body: usize) {
    let json_cfg = web::JsonConfig::default()
        .limit(max_body)
        .error_handler(|err, _| {
            let msg = err.to_string();
            actix_web::error::InternalError::from_response(
                err,
                HttpResponse::BadRequest().json(json!({ "error": msg })),
            )
            .into()
        });
    cfg.app_data(json_cfg)
        .route("/lan/v1/announce", web::post().to(announce))
        .route("/lan/v1/heartbeat", web::post().to(heartbeat))
        .route("/lan/v1/consent", web::post().to(consent))
        .route(
            "/lan/v1/provisioning/{token}",
            web::get().to(provisioning::provision),
        )
        .route("/lan/v1/dm", web::post().to(dm::dm));
}

/// How long an idle DM session with a device is kept.
pub const DM_SESSION_IDLE: Duration = Duration::from_secs(60);
