//! Bearer-token middleware of the admin API: every route but `/healthz` and `/readyz` wraps it.
//! The token is compared in constant time; with no token configured (`--insecure-admin`) all pass.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use omadm::secret::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{ApiError, Fault};
use crate::state::AppState;

/// Check an `Authorization` header against the expected token. Both sides are hashed first so
/// that neither the content nor the length of the token leaks through timing.
pub fn check(header: Option<&HeaderValue>, expected: &Secret) -> Result<(), ApiError> {
    let Some(value) = header else {
        return Err(ApiError::Unauthorized {
            invalid_token: false,
        });
    };
    let invalid = ApiError::Unauthorized {
        invalid_token: true,
    };
    let Ok(text) = value.to_str() else {
        return Err(invalid);
    };
    let Some((scheme, token)) = text.trim().split_once(' ') else {
        return Err(invalid);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid);
    }
    let given = Sha256::digest(token.trim().as_bytes());
    let wanted = Sha256::digest(expected.expose().as_bytes());
    if bool::from(given.ct_eq(&wanted)) {
        Ok(())
    } else {
        Err(invalid)
    }
}

/// The middleware (`actix_web::middleware::from_fn(require_token)`): 401 with a JSON body and
/// `WWW-Authenticate: Bearer` when the token is missing or wrong.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        // Fail closed: without the settings there is no way to tell who may pass.
        let e = ApiError::internal("authentication", Fault("application state missing"));
        return Ok(req.error_response(e));
    };
    if let Some(expected) = &state.settings.admin_token
        && let Err(e) = check(req.headers().get(header::AUTHORIZATION), expected)
    {
        return Ok(req.error_response(e));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn tokens_are_checked() {
        let t = Secret::new("0123456789abcdef-token");
        assert!(check(Some(&hv("Bearer 0123456789abcdef-token")), &t).is_ok());
        assert!(check(Some(&hv("bearer  0123456789abcdef-token ")), &t).is_ok());
        assert!(matches!(
            check(None, &t),
            Err(ApiError::Unauthorized {
                invalid_token: false
            })
        ));
        for bad in [
            "Bearer 0123456789abcdef-toke",
            "Bearer 0123456789abcdef-token2",
            "Basic 0123456789abcdef-token",
            "0123456789abcdef-token",
            "Bearer",
            "",
        ] {
            assert!(
                matches!(
                    check(Some(&hv(bad)), &t),
                    Err(ApiError::Unauthorized {
                        invalid_token: true
                    })
                ),
                "{bad}"
            );
        }
        let non_ascii = HeaderValue::from_bytes(b"Bearer \xff").unwrap();
        assert!(check(Some(&non_ascii), &t).is_err());
    }
}
