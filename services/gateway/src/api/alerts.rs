//! `GET /api/v1/alerts`: the alert outbox (one row per device x DM Server x alert type) with its
//! delivery state, attempts and last error, filtered by state, server or device.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::{List, id_filter, page, state_filter};
use crate::domain::{AlertFilter, AlertRow, AlertState};
use crate::state::AppState;

/// `GET /api/v1/alerts` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertListQuery {
    /// Most items to return (1..=500, default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The cursor: `next` of the previous page.
    #[param(value_type = Option<i64>)]
    pub after: Option<String>,
    /// Only alerts in this state (pending, delivered, failed).
    #[param(value_type = Option<String>)]
    pub state: Option<String>,
    /// Only alerts to this DM Server.
    pub server_id: Option<String>,
    /// Only alerts about this device.
    pub dev_id: Option<String>,
}

/// List the alert outbox, in enqueue order.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertListQuery),
    responses(
        (status = 200, description = "a page of alerts", body = List<AlertRow>),
        (status = 400, description = "bad paging or filter parameter", body = ErrorBody),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn list_alerts(
    state: web::Data<AppState>,
    q: web::Query<AlertListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page(q.limit.as_deref(), q.after.as_deref())?;
    let filter = AlertFilter {
        state: state_filter(q.state.as_deref(), AlertState::ALL, AlertState::as_str)?,
        server_id: id_filter("server_id", q.server_id.as_deref())?,
        dev_id: id_filter("dev_id", q.dev_id.as_deref())?,
    };
    let alerts = state.store.list_alerts(&filter, &page).await?;
    Ok(HttpResponse::Ok().json(List::from(alerts)))
}
