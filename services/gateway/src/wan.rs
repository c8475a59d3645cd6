//! The WAN face's inbound side: `POST /wan/v1/bootstrap`, where DM Bootstrap Servers push a
//! MAC-protected bootstrap (workflow 2). Anything not signed for and addressed to this gateway is refused.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use omadm::element::Limits;
use serde_json::json;
use tracing::Instrument;

use crate::actors::bootstrap_client::PushReceived;
use crate::actors::{ActorAddrs, TracedExt};
use crate::bootstrap::{GatewayBootstrapError, MAX_BOOTSTRAP_BYTES, decode_for, verify_push};
use crate::config::Settings;

/// What the WAN handlers share.
#[derive(Clone)]
pub struct WanState {
    /// The actors.
    pub actors: ActorAddrs,
    /// Settings (gateway id, push key material).
    pub settings: std::sync::Arc<Settings>,
}

impl std::fmt::Debug for WanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WanState")
    }
}

/// A refused push, with its HTTP status.
#[derive(Debug)]
pub struct PushError(pub GatewayBootstrapError);

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for PushError {
    fn status_code(&self) -> StatusCode {
        match &self.0 {
            GatewayBootstrapError::Security(_) => StatusCode::UNAUTHORIZED,
            GatewayBootstrapError::NotForUs { .. } => StatusCode::FORBIDDEN,
            GatewayBootstrapError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayBootstrapError::Invalid(_) | GatewayBootstrapError::Url(_) => {
                StatusCode::BAD_REQUEST
            }
            GatewayBootstrapError::MissingAccount { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayBootstrapError::Transport(_) | GatewayBootstrapError::Http(_) => {
                StatusCode::BAD_GATEWAY
            }
            GatewayBootstrapError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = if status.is_server_error() {
            tracing::error!(error = %self.0, "pushed bootstrap failed");
            "internal error".to_owned()
        } else {
            self.0.to_string()
        };
        HttpResponse::build(status).json(json!({ "error": message }))
    }
}

/// `POST /wan/v1/bootstrap`.
async fn push(
    wan: web::Data<WanState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, PushError> {
    let span = tracing::info_span!("bootstrap push", bytes = body.len());
    async move {
        let refuse = |e: GatewayBootstrapError| {
            metrics::counter!("dmgw_bootstrap_pushes_total", "outcome" => "refused").increment(1);
            tracing::warn!(error = %e, "pushed bootstrap refused; the tree is unchanged");
            PushError(e)
        };
        let content_type = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        verify_push(
            content_type,
            &body,
            wan.settings.push_pin.as_ref(),
            wan.settings.push_imsi.as_ref(),
        )
        .map_err(refuse)?;
        let bootstrap =
            decode_for(&body, &wan.settings.dev_id, &Limits::default()).map_err(refuse)?;
        let outcome = wan
            .actors
            .bootstrap
            .send(PushReceived { bootstrap }.traced())
            .await
            .map_err(|e| PushError(GatewayBootstrapError::Url(format!("unavailable: {e}"))))?
            .map_err(refuse)?;
        Ok(HttpResponse::Ok().json(json!({
            "added": outcome.added,
            "replaced": outcome.replaced,
            "skipped": outcome.skipped,
        })))
    }
    .instrument(span)
    .await
}

/// Register the WAN routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::default().limit(MAX_BOOTSTRAP_BYTES))
        .route("/wan/v1/bootstrap", web::post().to(push));
}
