//! What the admin handlers share: the JSON body extractor bounded by `max_body_bytes`, the paged
//! list envelope `{"items": [...], "next": ...}`, and parsing of paging and filter parameters.

use std::borrow::Cow;
use std::fmt;

use actix_web::dev::{JsonBody, Payload};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::domain::{MAX_ID_LEN, Page, PageQuery, Paged, check_id};
use crate::state::AppState;

/// Body limit when the application state is missing (never in the running gateway).
const FALLBACK_LIMIT: usize = 64 * 1024;

/// A JSON request body, limited to `Settings::max_body_bytes` and required to be declared
/// `application/json`. Every failure is an [`ApiError`]: 413 too large, 415 wrong type, 400
/// malformed JSON, 422 a field missing, unknown or of the wrong type.
pub struct ApiJson<T>(pub T);

impl<T> ApiJson<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for ApiJson<T> {
    /// The body is never printed: it may hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiJson(..)")
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<ApiJson<T>, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(FALLBACK_LIMIT, |s| s.settings.max_body_bytes);
        let body = JsonBody::<T>::new(req, payload, None, true).limit(limit);
        Box::pin(async move {
            body.await
                .map(ApiJson)
                .map_err(|e| match ApiError::from_json(e) {
                    // A stream that overflowed without a known length reports no limit.
                    ApiError::PayloadTooLarge { .. } => ApiError::PayloadTooLarge { limit },
                    other => other,
                })
        })
    }
}

/// One page of a list: `{"items": [...], "next": <cursor or null>}`. Pass `next` as `after`
/// to get the following page; `null` on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct List<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// The cursor of the next page (`?after=`), or null on the last page.
    pub next: Option<i64>,
}

impl<T> From<Paged<T>> for List<T> {
    fn from(p: Paged<T>) -> List<T> {
        List {
            items: p.items,
            next: p.next_after,
        }
    }
}

/// Paging parameters as text: `limit` (1..=500, default 50) and `after` (a cursor).
pub fn page(limit: Option<&str>, after: Option<&str>) -> Result<Page, ApiError> {
    let limit = limit
        .map(|l| {
            l.trim()
                .parse::<u32>()
                .map_err(|_| ApiError::bad_parameter("limit", "must be a whole number 1..=500"))
        })
        .transpose()?;
    let after = after
        .map(|a| {
            a.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::bad_parameter("after", "must be the `next` of a page"))
        })
        .transpose()?;
    Page::try_from(PageQuery { limit, after }).map_err(|e| ApiError::BadParameter {
        field: Cow::Borrowed(e.field),
        reason: e.reason,
    })
}

/// A state filter: one of `values` (their text), else 400 listing them.
pub fn state_filter<T: Copy>(
    text: Option<&str>,
    all: &[T],
    as_str: impl Fn(T) -> &'static str,
) -> Result<Option<T>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    all.iter()
        .copied()
        .find(|v| as_str(*v) == text.trim())
        .map(Some)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
            ApiError::bad_parameter("state", format!("must be one of {}", names.join(", ")))
        })
}

/// An identifier filter (`server_id`, `dev_id`): not blank, at most `MAX_ID_LEN` bytes.
pub fn id_filter(field: &'static str, text: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    check_id(field, text).map_err(|e| {
        ApiError::bad_parameter(field, format!("{} (at most {MAX_ID_LEN} bytes)", e.reason))
    })?;
    Ok(Some(text.to_owned()))
}

/// `text` as one URL path segment: every byte but the unreserved ones (RFC 3986) percent-encoded.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AlertState;

    #[test]
    fn paging_parameters() {
        assert_eq!(page(None, None).unwrap(), Page::first());
        assert_eq!(page(Some("10"), Some("7")).unwrap().after(), Some(7));
        for (limit, after, field) in [
            (Some("0"), None, "limit"),
            (Some("501"), None, "limit"),
            (Some("ten"), None, "limit"),
            (Some("-1"), None, "limit"),
            (None, Some("x"), "after"),
        ] {
            assert_eq!(page(limit, after).unwrap_err().field(), Some(field));
        }
    }

    #[test]
    fn filters() {
        assert_eq!(
            state_filter(Some("failed"), AlertState::ALL, AlertState::as_str).unwrap(),
            Some(AlertState::Failed)
        );
        assert_eq!(
            state_filter(None, AlertState::ALL, AlertState::as_str).unwrap(),
            None
        );
        let e = state_filter(Some("nope"), AlertState::ALL, AlertState::as_str).unwrap_err();
        assert!(e.to_string().contains("pending, delivered, failed"), "{e}");
        assert!(id_filter("server_id", Some("")).is_err());
        assert!(id_filter("server_id", Some(&"x".repeat(MAX_ID_LEN + 1))).is_err());
        assert_eq!(
            id_filter("dev_id", Some("IMEI:1")).unwrap().as_deref(),
            Some("IMEI:1")
        );
    }
}
