//! The admin API's one error type: every failure of a handler, extractor or middleware, mapped to
//! its HTTP status in one place. 4xx bodies say what was wrong; 5xx bodies are opaque, causes logged.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt::Write as _;

use actix::MailboxError;
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use omadm::tree::TreeError;
use omadm::uri::UriError;
use serde::Serialize;
use thiserror::Error;
use utoipa::ToSchema;

use crate::actors::ActorError;
use crate::provision::InputError;
use crate::store::StoreError;

/// Longest client-supplied text (a field name, a parser message) echoed in an error body.
const MAX_ECHO: usize = 200;

/// The body of every error response: `{"error": "...", "field": "..."}` (`field` when one is to
/// blame). 5xx bodies carry only `"internal error"` or `"service unavailable"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
    /// The query parameter, path parameter or body field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Why the admin API refused or failed a request. Each variant's doc gives its HTTP status; the
/// mapping is [`ApiError::status_code`]. No variant ever holds a secret.
#[derive(Debug, Error)]
pub enum ApiError {
    /// 400: a query or path parameter is malformed or out of range.
    #[error("{field}: {reason}")]
    BadParameter {
        /// The parameter, e.g. `limit`.
        field: Cow<'static, str>,
        /// What is wrong with it.
        reason: String,
    },
    /// 400: the query string cannot be read (no single parameter to blame).
    #[error("query string: {reason}")]
    BadQuery {
        /// What is wrong.
        reason: String,
    },
    /// 400: the body is not well-formed JSON (or could not be read to its end).
    #[error("malformed JSON body: {reason}")]
    MalformedJson {
        /// What is wrong, with the line and column.
        reason: String,
    },
    /// 413: the body is larger than the configured limit (`max_body_bytes`).
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// 415: the body is not declared `application/json`.
    #[error("the body must be sent as Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: the body is JSON but a field is missing, unknown, of the wrong type, or breaks a rule.
    #[error("{}{reason}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    InvalidField {
        /// The field, when known.
        field: Option<Cow<'static, str>>,
        /// What is wrong (never the value: it may be a secret).
        reason: String,
    },
    /// 401: no bearer token, or not the right one.
    #[error("{}", if *.invalid_token { "the bearer token is not valid" } else { "a bearer token is required (Authorization: Bearer <token>)" })]
    Unauthorized {
        /// True when a token was given but is wrong (or malformed); false when none was given.
        invalid_token: bool,
    },
    /// 404: the keyed item does not exist.
    #[error("{what} {key:?} not found")]
    NotFound {
        /// What was looked for, e.g. `device`.
        what: &'static str,
        /// Its key (a bounded excerpt).
        key: String,
    },
    /// 404: no endpoint at this path.
    #[error("no such endpoint")]
    NoSuchEndpoint,
    /// 405: the endpoint exists but not with this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// 409: the keyed item already exists.
    #[error("{what} {key:?} already exists")]
    Conflict {
        /// What collided, e.g. `account`.
        what: &'static str,
        /// The key that is taken.
        key: String,
    },
    /// 503: an actor cannot answer now (the gateway is stopping, or the actor is restarting).
    #[error("{what}: actor unavailable")]
    Unavailable {
        /// What was being done.
        what: &'static str,
        /// The mailbox failure.
        #[source]
        source: MailboxError,
    },
    /// 500: anything else; the cause is logged, never sent.
    #[error("{what}")]
    Internal {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// A failure without a richer cause, for `ApiError::Internal`.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct Fault(pub &'static str);

impl ApiError {
    /// A 400 for parameter `field`.
    pub fn bad_parameter(field: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::BadParameter {
            field: Cow::Borrowed(field),
            reason: reason.into(),
        }
    }

    /// A 500 while doing `what`, caused by `source`.
    pub fn internal(what: &'static str, source: impl StdError + Send + Sync + 'static) -> ApiError {
        ApiError::Internal {
            what,
            source: Box::new(source),
        }
    }

    /// The field to blame, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadParameter { field, .. } => Some(field),
            ApiError::InvalidField { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The body sent to the client (opaque for 5xx).
    pub fn body(&self) -> ErrorBody {
        let status = self.status_code();
        if status.is_server_error() {
            let error = if status == StatusCode::SERVICE_UNAVAILABLE {
                "service unavailable"
            } else {
                "internal error"
            };
            return ErrorBody {
                error: error.to_owned(),
                field: None,
            };
        }
        ErrorBody {
            error: self.to_string(),
            field: self.field().map(str::to_owned),
        }
    }

    /// Map a JSON body error (the `ApiJson` extractor).
    pub fn from_json(e: JsonPayloadError) -> ApiError {
        match e {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit },
            JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
            JsonPayloadError::Deserialize(e) => from_serde_json(&e),
            JsonPayloadError::Payload(PayloadError::Overflow) => {
                ApiError::PayloadTooLarge { limit: 0 }
            }
            JsonPayloadError::Payload(e) => ApiError::MalformedJson {
                reason: format!("the body could not be read: {e}"),
            },
            other => ApiError::internal("reading a JSON body", other),
        }
    }

    /// Map a query string error (`QueryConfig::error_handler`).
    pub fn from_query(e: &QueryPayloadError) -> ApiError {
        let QueryPayloadError::Deserialize(inner) = e else {
            return ApiError::BadQuery {
                reason: "cannot be read".into(),
            };
        };
        let (field, reason) = describe_serde(&inner.to_string());
        match field {
            Some(field) => ApiError::BadParameter {
                field: Cow::Owned(field),
                reason,
            },
            None => ApiError::BadQuery { reason },
        }
    }

    /// Map a path parameter error (`PathConfig::error_handler`).
    pub fn from_path(e: &PathError) -> ApiError {
        let PathError::Deserialize(inner) = e else {
            return ApiError::bad_parameter("path", "cannot be read");
        };
        let (_, reason) = describe_serde(&inner.to_string());
        ApiError::bad_parameter("path", reason)
    }

    /// Log a server error with its whole cause chain (the client sees none of it). Client errors
    /// are not logged here: the request span (`TracingLogger`) records every error response with
    /// its message already.
    fn log(&self) {
        if self.status_code().is_server_error() {
            let status = self.status_code().as_u16();
            tracing::error!(status, error = %self, cause = %cause_chain(self), "request failed");
        }
    }
}

/// `self: cause: cause ...` for the log.
fn cause_chain(e: &dyn StdError) -> String {
    let mut out = String::new();
    let mut next = e.source();
    while let Some(cause) = next {
        if !out.is_empty() {
            out.push_str(": ");
        }
        let _ = write!(out, "{cause}");
        next = cause.source();
    }
    out
}

/// `text` cut to `MAX_ECHO` characters, control characters replaced.
fn echo(text: &str) -> String {
    crate::domain::truncate_text(text, MAX_ECHO)
}

/// The field a serde message names (``missing field `x` ``, ``unknown field `x`, ...``,
/// ``duplicate field `x` ``) and the message with any echoed value removed: serde's
/// `invalid type: string "hunter2", expected u16` would otherwise repeat a secret typed in the
/// wrong field.
fn describe_serde(msg: &str) -> (Option<String>, String) {
    for prefix in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(rest) = msg.strip_prefix(prefix)
            && let Some((name, _)) = rest.split_once('`')
        {
            return (Some(echo(name)), echo(msg));
        }
    }
    for (prefix, what) in [
        ("invalid type: ", "invalid type"),
        ("invalid value: ", "invalid value"),
        ("unknown variant ", "unknown variant"),
    ] {
        if msg.starts_with(prefix) {
            let expected = msg
                .split_once(", expected ")
                .map(|(_, exp)| format!(", expected {}", strip_position(exp)))
                .unwrap_or_default();
            return (None, echo(&format!("{what}{expected}")));
        }
    }
    (None, echo(strip_position(msg)))
}

/// serde_json's ` at line L column C` suffix removed (it is added back from the error itself).
fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ")
        .map_or(msg, |i| msg.get(..i).unwrap_or(msg))
}

fn from_serde_json(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let at = format!(" (line {}, column {})", e.line(), e.column());
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedJson {
            reason: format!("{}{at}", echo(strip_position(&e.to_string()))),
        },
        Category::Data => {
            let (field, reason) = describe_serde(&e.to_string());
            ApiError::InvalidField {
                field: field.map(Cow::Owned),
                reason: format!("{reason}{at}"),
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound { what, key } => ApiError::NotFound { what, key },
            StoreError::Conflict { what, key } => ApiError::Conflict { what, key },
            StoreError::Invalid { field, reason } => ApiError::InvalidField {
                field: Some(Cow::Borrowed(field)),
                reason,
            },
            other @ (StoreError::Corrupt { .. }
            | StoreError::Database(_)
            | StoreError::Migrate(_)) => ApiError::internal("store", other),
        }
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> ApiError {
        match e {
            ActorError::Store(e) => e.into(),
            ActorError::Invalid { field, reason } => ApiError::InvalidField {
                field: Some(Cow::Borrowed(field)),
                reason,
            },
            ActorError::UnknownDevice { dev_id } => ApiError::NotFound {
                what: "device",
                key: echo(&dev_id),
            },
            ActorError::Unavailable(source) => ApiError::Unavailable {
                what: "actor",
                source,
            },
            other @ ActorError::Batch { .. } => ApiError::internal("actor batch", other),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> ApiError {
        ApiError::InvalidField {
            field: Some(Cow::Borrowed(e.field)),
            reason: e.reason,
        }
    }
}

impl From<TreeError> for ApiError {
    fn from(e: TreeError) -> ApiError {
        match e {
            TreeError::NotFound { uri } => ApiError::NotFound {
                what: "node",
                key: uri.as_str().to_owned(),
            },
            TreeError::Uri { source, .. } => uri_error(&source),
            other => ApiError::internal("management tree", other),
        }
    }
}

/// A 400 for a `uri` parameter that is not a management-tree URI.
pub fn uri_error(e: &UriError) -> ApiError {
    ApiError::bad_parameter("uri", e.to_string())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. }
            | ApiError::BadQuery { .. }
            | ApiError::MalformedJson { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } | ApiError::NoSuchEndpoint => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        let mut resp = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized { invalid_token } = self {
            let challenge = if *invalid_token {
                "Bearer realm=\"dmgw\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"dmgw\""
            };
            resp.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            ));
        }
        resp.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_status() {
        let cases: Vec<(ApiError, u16)> = vec![
            (ApiError::bad_parameter("limit", "x"), 400),
            (ApiError::BadQuery { reason: "x".into() }, 400),
            (ApiError::MalformedJson { reason: "x".into() }, 400),
            (ApiError::PayloadTooLarge { limit: 1 }, 413),
            (ApiError::UnsupportedMediaType, 415),
            (
                ApiError::InvalidField {
                    field: None,
                    reason: "x".into(),
                },
                422,
            ),
            (
                ApiError::Unauthorized {
                    invalid_token: true,
                },
                401,
            ),
            (
                ApiError::NotFound {
                    what: "device",
                    key: "d".into(),
                },
                404,
            ),
            (ApiError::NoSuchEndpoint, 404),
            (ApiError::MethodNotAllowed, 405),
            (
                ApiError::Conflict {
                    what: "account",
                    key: "s".into(),
                },
                409,
            ),
            (
                ApiError::Unavailable {
                    what: "actor",
                    source: MailboxError::Closed,
                },
                503,
            ),
            (ApiError::internal("x", Fault("boom")), 500),
        ];
        for (e, status) in cases {
            assert_eq!(e.status_code().as_u16(), status, "{e}");
            assert_eq!(e.error_response().status().as_u16(), status);
        }
    }

    #[test]
    fn server_errors_are_opaque() {
        let e = ApiError::internal("store", Fault("database is locked at /secret/path"));
        let body = serde_json::to_string(&e.body()).unwrap();
        assert_eq!(body, r#"{"error":"internal error"}"#);
        let e: ApiError = StoreError::corrupt("devices.state", "unknown value").into();
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn client_errors_name_the_field() {
        let e: ApiError = InputError {
            field: "addr",
            reason: "must be https".into(),
        }
        .into();
        let body = e.body();
        assert_eq!(body.field.as_deref(), Some("addr"));
        assert_eq!(body.error, "addr: must be https");
        let e: ApiError = StoreError::Conflict {
            what: "account",
            key: "s1".into(),
        }
        .into();
        assert_eq!(e.status_code(), StatusCode::CONFLICT);
    }

    #[test]
    fn serde_messages_never_echo_values() {
        let e = serde_json::from_str::<crate::provision::AccountInput>(
            r#"{"server_id": "s", "addr": "https://a", "auth_name": "n", "auth_secret": 1234567}"#,
        )
        .unwrap_err();
        let api = from_serde_json(&e);
        let text = api.to_string();
        assert!(!text.contains("1234567"), "{text}");
        assert!(text.contains("expected a string"), "{text}");
        assert_eq!(api.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        let e = serde_json::from_str::<crate::provision::AccountInput>(r#"{"server_id": "s"}"#)
            .unwrap_err();
        assert_eq!(from_serde_json(&e).field(), Some("addr"));
        let e = serde_json::from_str::<crate::provision::AccountInput>(r#"{"server_id": "#)
            .unwrap_err();
        let api = from_serde_json(&e);
        assert_eq!(api.status_code(), StatusCode::BAD_REQUEST);
        assert!(api.to_string().contains("line 1"), "{api}");
        let (field, _) = describe_serde("unknown field `colour`, expected one of `limit`");
        assert_eq!(field.as_deref(), Some("colour"));
        let (_, reason) = describe_serde("unknown variant `hunter2`, expected `a` or `b`");
        assert!(!reason.contains("hunter2"), "{reason}");
    }

    #[test]
    fn unauthorized_carries_a_challenge() {
        let r = ApiError::Unauthorized {
            invalid_token: false,
        }
        .error_response();
        assert_eq!(
            r.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"dmgw\""
        );
    }

    #[test]
    fn causes_are_chained_for_the_log() {
        let e: ApiError = ActorError::Store(StoreError::Database(sqlx::Error::PoolClosed)).into();
        assert!(matches!(e, ApiError::Internal { .. }));
        assert!(cause_chain(&e).contains("database"), "{}", cause_chain(&e));
    }
}
