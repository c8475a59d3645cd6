//! The errors of the dm-server, one enum per layer, and the single place where a request error becomes
//! an HTTP response (`impl ResponseError for ServiceError`): SyncML bodies on the DM endpoint, JSON elsewhere.

use std::net::SocketAddr;
use std::path::PathBuf;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use omadm::codec::Encoding;
use omadm::model::SyncMl;
use thiserror::Error;

/// A setting is wrong or a file it names cannot be read.
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
    /// The accounts file is not valid.
    #[error("accounts file {path}: {reason}")]
    Accounts {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's text: it holds passwords).
        reason: String,
    },
    /// The master key is empty.
    #[error("the master key is empty")]
    EmptyMasterKey,
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

/// The data file could not be read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    /// An I/O error on the data file.
    #[error("data file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A record could not be serialised.
    #[error("data file {path}: cannot serialise a record: {source}")]
    Serialize {
        /// The file.
        path: PathBuf,
        /// The serde error.
        source: serde_json::Error,
    },
}

/// The server could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS {path}: {reason}")]
    Tls {
        /// The file.
        path: PathBuf,
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
    /// The data file could not be loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a DM error answer goes: enough of the request to write a SyncML reply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmReplyTo {
    /// The encoding of the request (the answer uses the same).
    pub encoding: Encoding,
    /// This server's URI (SyncHdr Source).
    pub server_uri: String,
    /// The request's SessionID, when it could be read.
    pub session_id: String,
    /// The request's MsgID (0 when unknown).
    pub msg_ref: u32,
    /// The request's Source LocURI (empty when unknown).
    pub client: String,
}

/// A request failed. Each variant's doc names its HTTP status.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// 415: the DM endpoint takes only `application/vnd.syncml.dm+xml` and `+wbxml`.
    #[error("unsupported content type {content_type:?}")]
    UnsupportedMediaType {
        /// The Content-Type received.
        content_type: String,
    },
    /// 413: the body is larger than the configured limit.
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
        /// The request's encoding.
        encoding: Encoding,
        /// This server's URI.
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
    /// 400: a well-formed message that breaks the session protocol (no session alert, wrong session,
    /// session over, too many messages).
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
    /// 400: an API request with a bad parameter or body.
    #[error("bad request: {what}")]
    BadRequest {
        /// What was wrong.
        what: String,
    },
    /// 500 (opaque): the data file could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500 (opaque): the system random generator failed.
    #[error("cannot generate a nonce: {source}")]
    Nonce {
        /// The cause.
        source: omadm::auth::NonceError,
    },
    /// 500 (opaque): a reply could not be encoded.
    #[error("cannot encode the reply: {source}")]
    Encode {
        /// The cause.
        source: omadm::codec::EncodeError,
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
    /// for errors answered as JSON).
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

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_REASON) {
        Some((i, _)) => s.get(..i).unwrap_or(s).to_owned(),
        None => s.to_owned(),
    }
}

/// A SyncML message answering the request's header with `code`, and `reason` as the Status item data.
pub fn dm_error_message(to: &DmReplyTo, code: u16, reason: &str) -> SyncMl {
    omadm::session::error_message(
        &to.session_id,
        to.msg_ref,
        &to.client,
        &to.server_uri,
        code,
        reason,
    )
}

fn dm_response(status: StatusCode, to: &DmReplyTo, code: u16, reason: &str) -> HttpResponse {
    let msg = dm_error_message(to, code, reason);
    match omadm::codec::encode(&msg, to.encoding) {
        Ok(body) => HttpResponse::build(status)
            .content_type(to.encoding.mime())
            .body(body),
        Err(_) => json_response(status, reason),
    }
}

fn json_response(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": truncate(message) }))
}

impl ResponseError for ServiceError {
    fn status_code(&self) -> StatusCode {
        match self {
            ServiceError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServiceError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::MalformedMessage { code: 413, .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Payload { .. }
            | ServiceError::MalformedMessage { .. }
            | ServiceError::Session { .. }
            | ServiceError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ServiceError::TooManySessions { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Store(_)
            | ServiceError::Nonce { .. }
            | ServiceError::Encode { .. }
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
                reply_to,
                reason,
            } => dm_response(status, reply_to, *code, reason),
            ServiceError::Session {
                code,
                reply_to,
                reason,
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
    use omadm::element::Limits;

    fn to(encoding: Encoding) -> DmReplyTo {
        DmReplyTo {
            encoding,
            server_uri: "http://127.0.0.1/dm".into(),
            session_id: String::new(),
            msg_ref: 0,
            client: String::new(),
        }
    }

    #[test]
    fn dm_error_bodies_decode() {
        for enc in [Encoding::Xml, Encoding::Wbxml] {
            let msg = dm_error_message(&to(enc), 400, &"x".repeat(1000));
            let bytes = omadm::codec::encode(&msg, enc).unwrap();
            let back = omadm::codec::decode_as(&bytes, enc, &Limits::default()).unwrap();
            assert_eq!(back.header_status().unwrap().code, 400);
            assert_eq!(back.hdr.session_id, "0");
        }
    }

    #[test]
    fn statuses() {
        let e = ServiceError::MalformedMessage {
            code: 413,
            reason: "big".into(),
            reply_to: Box::new(to(Encoding::Xml)),
        };
        assert_eq!(e.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
        let e = ServiceError::Blocking {
            reason: "secret detail".into(),
        };
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            e.error_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
