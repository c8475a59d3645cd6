//! `/api/v1/accounts`: the gateway's DMAcc accounts (list, add, show, delete), never with their
//! secrets. A change re-matches the devices waiting on that ServerID (Matching actor).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, List, page, path_segment};
use crate::domain::{AccountView, Origin};
use crate::provision::AccountInput;
use crate::state::AppState;
use crate::store::StoreError;

/// `GET /api/v1/accounts` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountListQuery {
    /// Most items to return (1..=500, default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The cursor: `next` of the previous page.
    #[param(value_type = Option<i64>)]
    pub after: Option<String>,
}

/// The path of an account, for `Location`.
fn location(server_id: &str) -> String {
    format!("/api/v1/accounts/{}", path_segment(server_id))
}

/// Tell Matching that the accounts of `server_ids` changed. The change is stored already; a
/// failure here is logged (the devices are matched again at their next report or restart).
async fn rematch(state: &AppState, server_id: &str) {
    match state
        .actors
        .accounts_changed(vec![server_id.to_owned()])
        .await
    {
        Ok(devices) => tracing::info!(server_id, devices, "waiting devices re-matched"),
        Err(e) => {
            tracing::warn!(server_id, error = %e, "re-matching after an account change failed")
        }
    }
}

/// List the gateway's DM accounts, in creation order. Secrets are never shown: each credential
/// says only whether a secret (`has_secret`) and a nonce (`has_data`) are stored.
#[utoipa::path(
    get,
    path = "/api/v1/accounts",
    tag = "accounts",
    params(AccountListQuery),
    responses(
        (status = 200, description = "a page of accounts", body = List<AccountView>),
        (status = 400, description = "bad paging parameter", body = ErrorBody),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn list_accounts(
    state: web::Data<AppState>,
    q: web::Query<AccountListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page(q.limit.as_deref(), q.after.as_deref())?;
    let accounts = state.store.list_accounts(&page).await?;
    Ok(HttpResponse::Ok().json(List::from(accounts)))
}

/// Add a DM account (`./DMAcc/<X>`) for a DM Server. Devices waiting on its ServerID are matched
/// again and, when matched, the server is alerted.
#[utoipa::path(
    post,
    path = "/api/v1/accounts",
    tag = "accounts",
    request_body = AccountInput,
    responses(
        (status = 201, description = "the account as stored (no secrets)", body = AccountView,
            headers(("Location" = String, description = "the account's URL"))),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
        (status = 409, description = "an account with this ServerID exists", body = ErrorBody),
        (status = 413, description = "body larger than max_body_bytes", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "a field is missing or invalid; `field` names it", body = ErrorBody),
    )
)]
pub async fn create_account(
    state: web::Data<AppState>,
    body: ApiJson<AccountInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner();
    let acc = input.to_dmacc()?;
    drop(input);
    let view = match state
        .store
        .insert_account(&acc, None, Origin::Operator)
        .await
    {
        Ok(view) => view,
        // The node name derives from the ServerID, so SQLite may name either unique key: say
        // which one the operator can act on when it is the ServerID.
        Err(StoreError::Conflict { what, key }) => {
            return Err(match state.store.account(&acc.server_id).await {
                Ok(_) => ApiError::Conflict {
                    what: "account",
                    key: acc.server_id.clone(),
                },
                Err(_) => ApiError::Conflict { what, key },
            });
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(server_id = %view.server_id, node = %view.node_name, "account added by an operator");
    rematch(&state, &view.server_id).await;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location(&view.server_id)))
        .json(view))
}

/// One DM account, without its secrets.
#[utoipa::path(
    get,
    path = "/api/v1/accounts/{server_id}",
    tag = "accounts",
    params(("server_id" = String, Path, description = "the account's ServerID (URL-encoded)")),
    responses(
        (status = 200, description = "the account (no secrets)", body = AccountView),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    )
)]
pub async fn get_account(
    state: web::Data<AppState>,
    server_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = state.store.account(&server_id).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Delete a DM account; the devices that reported its ServerID become unmatched for it and are
/// matched again (a bootstrap job is opened for it where the device still needs it).
#[utoipa::path(
    delete,
    path = "/api/v1/accounts/{server_id}",
    tag = "accounts",
    params(("server_id" = String, Path, description = "the account's ServerID (URL-encoded)")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    )
)]
pub async fn delete_account(
    state: web::Data<AppState>,
    server_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.store.delete_account(&server_id).await?;
    tracing::info!(server_id = %server_id, "account deleted by an operator");
    rematch(&state, &server_id).await;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_escaped() {
        assert_eq!(location("dms-1"), "/api/v1/accounts/dms-1");
        assert_eq!(location("a/b c+é"), "/api/v1/accounts/a%2Fb%20c%2B%C3%A9");
    }
}
