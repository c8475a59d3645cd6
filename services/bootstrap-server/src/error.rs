//! The errors of the bootstrap server, one enum per layer, and the single place where a request error
//! becomes an HTTP response (`impl ResponseError for ServiceError`): SyncML bodies on `/dm`, JSON elsewhere.

use std::net::SocketAddr;
use std::path::PathBuf;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use dm_server::error::{DmReplyTo, dm_error_message};
use omadm::codec::Encoding;
use thiserror::Error;

/// The realm announced in `WWW-Authenticate` on the bootstrap endpoint.
pub const BASIC_REALM: &str = "dmgw-bootstrap";

/// A setting is wrong, or a file it names cannot be read or is not valid.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The profiles file is not valid TOML or does not have the expected shape.
    #[error("profiles file {path}: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (never the file's text: it holds passwords and PINs).
        reason: String,
    },
    /// An entry of the profiles file is not valid.
    #[error("profiles file {path}: {section} {index} ({id}): {reason}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// `servers`, `gateways` or `devices`.
        section: &'static str,
        /// The entry's position in its section (0-based).
        index: usize,
        /// The entry's id (ServerID, gateway id or device account name), when it has one.
        id: String,
        /// What is wrong (never a secret's value).
        reason: String,
    },
    /// Neither TLS files nor `--plain-http` were given (or both).
    #[error("give --tls-cert and --tls-key, or --plain-http explicitly")]
    TlsOrPlain,
    /// A setting has a value out of range.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The flag.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}

/// The server could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A TLS certificate, key or CA file could not be loaded.
    #[error("TLS {path}: {reason}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The HTTP client that pushes bootstraps could not be built.
    #[error("push client: {reason}")]
    PushClient {
        /// Why.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A bootstrap message could not be built or signed. Always a server fault (500).
#[derive(Debug, Error)]
pub enum IssueError {
    /// The DMAcc could not be written into the scratch tree.
    #[error("cannot build the DM account: {source}")]
    Account {
        /// The cause.
        source: omadm::mo::MoError,
    },
    /// The TNDS object could not be exported.
    #[error("cannot build the TNDS object: {source}")]
    Tnds {
        /// The cause.
        source: omadm::tnds::TndsError,
    },
    /// The message could not be encoded.
    #[error("cannot encode the bootstrap message: {source}")]
    Encode {
        /// The cause.
        source: omadm::codec::EncodeError,
    },
    /// The push MAC could not be computed.
    #[error("cannot sign the push: {source}")]
    Sign {
        /// The cause (never the key material).
        source: omadm::bootstrap::BootstrapError,
    },
}

/// A request failed. Each variant's doc names its HTTP status.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// 401 with `WWW-Authenticate: Basic`: no trusted client certificate and no valid Basic credentials.
    #[error("gateway not authenticated: {reason}")]
    Unauthorized {
        /// Why (never the credentials).
        reason: &'static str,
    },
    /// 404: no DM Server profile for this ServerID (or the gateway may not receive it).
    #[error("no DM Server profile {server_id:?}")]
    UnknownServer {
        /// The ServerID asked for (truncated).
        server_id: String,
    },
    /// 406: the `Accept` header allows neither DM message type.
    #[error("cannot answer in any type the Accept header allows ({accept:?}); offer {xml} or {wbxml}", xml = omadm::codec::MIME_XML, wbxml = omadm::codec::MIME_WBXML)]
    NotAcceptable {
        /// The Accept header (truncated).
        accept: String,
    },
    /// 400: a request parameter is missing or malformed.
    #[error("bad request: {what}")]
    BadRequest {
        /// What was wrong.
        what: String,
    },
    /// 415: the DM endpoint takes only `application/vnd.syncml.dm+xml` and `+wbxml`.
    #[error("unsupported content type {content_type:?}")]
    UnsupportedMediaType {
        /// The Content-Type received (truncated).
        content_type: String,
    },
    /// 413: the body is larger than the configured limit.
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
        /// The request's encoding.
        encoding: Encoding,
        /// This server's DM URI.
        server_uri: String,
    },
    /// 400: the body could not be read from the connection.
    #[error("cannot read the request body: {reason}")]
    Payload {
        /// Why.
        reason: String,
    },
    /// 400 (or 413 for a decoder size limit): the body is not a SyncML DM message.
    #[error("malformed SyncML DM message: {reason}")]
    MalformedMessage {
        /// The DM status code (400 or 413).
        code: u16,
        /// What the decoder said.
        reason: String,
        /// Where the answer goes.
        reply_to: Box<DmReplyTo>,
    },
    /// 400: a well-formed message that breaks the session protocol.
    #[error("DM session error (status {code}): {reason}")]
    Session {
        /// The DM status code of the header Status.
        code: u16,
        /// What was wrong.
        reason: String,
        /// Where the answer goes.
        reply_to: Box<DmReplyTo>,
    },
    /// 503: the session table is full.
    #[error("too many DM sessions open ({limit})")]
    TooManySessions {
        /// The configured cap.
        limit: usize,
        /// Where the answer goes.
        reply_to: Box<DmReplyTo>,
    },
    /// 500 (opaque): a bootstrap message could not be built.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// 500 (opaque): a reply could not be encoded.
    #[error("cannot encode the reply: {source}")]
    Encode {
        /// The cause.
        source: omadm::codec::EncodeError,
    },
    /// 500 (opaque): the system random generator failed.
    #[error("cannot generate a nonce: {source}")]
    Nonce {
        /// The cause.
        source: omadm::auth::NonceError,
    },
    /// 500 (opaque): the blocking worker pool failed.
    #[error("worker pool: {reason}")]
    Blocking {
        /// Why.
        reason: String,
    },
}

impl ServiceError {
    /// The DM status code of the SyncHdr Status a DM answer to this error carries (the HTTP status
    /// for errors answered otherwise).
    pub fn dm_status(&self) -> u16 {
        match self {
            ServiceError::MalformedMessage { code, .. } | ServiceError::Session { code, .. } => {
                *code
            }
            ServiceError::TooManySessions { .. } => 503,
            other => other.status_code().as_u16(),
        }
    }
}

/// The longest error reason put into a response.
const MAX_REASON: usize = 200;

/// `s` cut to at most `max` characters.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s).to_owned(),
        None => s.to_owned(),
    }
}

fn dm_response(status: StatusCode, to: &DmReplyTo, code: u16, reason: &str) -> HttpResponse {
    let msg = dm_error_message(to, code, &truncate(reason, MAX_REASON));
    match omadm::codec::encode(&msg, to.encoding) {
        Ok(body) => HttpResponse::build(status)
            .content_type(to.encoding.mime())
            .body(body),
        Err(_) => json_response(status, reason),
    }
}

fn json_response(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": truncate(message, MAX_REASON) }))
}

impl ResponseError for ServiceError {
    fn status_code(&self) -> StatusCode {
        match self {
            ServiceError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ServiceError::UnknownServer { .. } => StatusCode::NOT_FOUND,
            ServiceError::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            ServiceError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServiceError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::MalformedMessage { code: 413, .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::BadRequest { .. }
            | ServiceError::Payload { .. }
            | ServiceError::MalformedMessage { .. }
            | ServiceError::Session { .. } => StatusCode::BAD_REQUEST,
            ServiceError::TooManySessions { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Issue(_)
            | ServiceError::Encode { .. }
            | ServiceError::Nonce { .. }
            | ServiceError::Blocking { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "request refused");
        }
        match self {
            ServiceError::Unauthorized { .. } => {
                let mut resp = json_response(status, &self.to_string());
                let challenge = format!("Basic realm=\"{BASIC_REALM}\", charset=\"UTF-8\"");
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                resp
            }
            ServiceError::PayloadTooLarge {
                encoding,
                server_uri,
                ..
            } => {
                let to = DmReplyTo {
                    encoding: *encoding,
                    server_uri: server_uri.clone(),
                    session_id: String::new(),
                    msg_ref: 0,
                    client: String::new(),
                };
                dm_response(status, &to, 413, &self.to_string())
            }
            ServiceError::MalformedMessage {
                code,
                reason,
                reply_to,
            }
            | ServiceError::Session {
                code,
                reason,
                reply_to,
            } => dm_response(status, reply_to, *code, reason),
            ServiceError::TooManySessions { reply_to, .. } => {
                let mut resp = dm_response(status, reply_to, 503, &self.to_string());
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                resp
            }
            // 5xx bodies stay opaque; the cause is in the log line above.
            _ if status.is_server_error() => json_response(status, "internal error"),
            _ => json_response(status, &self.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_challenge() {
        let e = ServiceError::Unauthorized { reason: "x" };
        let resp = e.error_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let www = resp.headers().get(header::WWW_AUTHENTICATE).unwrap();
        assert!(
            www.to_str()
                .unwrap()
                .starts_with("Basic realm=\"dmgw-bootstrap\"")
        );
        assert_eq!(
            ServiceError::UnknownServer {
                server_id: "s".into()
            }
            .status_code(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ServiceError::NotAcceptable {
                accept: "text/html".into()
            }
            .status_code(),
            StatusCode::NOT_ACCEPTABLE
        );
        let e = ServiceError::Blocking {
            reason: "secret detail".into(),
        };
        assert_eq!(
            e.error_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn truncation_is_by_characters() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
