//! `GET /api/v1/bootstraps`: the bootstrap jobs the gateway runs for ServerIDs it has no account
//! for (workflow 1 or 2), with their state, attempts and last error.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::{List, id_filter, page, state_filter};
use crate::domain::{BootstrapJob, JobFilter, JobState};
use crate::state::AppState;

/// `GET /api/v1/bootstraps` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BootstrapListQuery {
    /// Most items to return (1..=500, default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The cursor: `next` of the previous page.
    #[param(value_type = Option<i64>)]
    pub after: Option<String>,
    /// Only jobs in this state (pending, in_progress, awaiting_push, done, failed).
    #[param(value_type = Option<String>)]
    pub state: Option<String>,
    /// Only jobs for this ServerID.
    pub server_id: Option<String>,
}

/// List the bootstrap jobs, in creation order.
#[utoipa::path(
    get,
    path = "/api/v1/bootstraps",
    tag = "bootstraps",
    params(BootstrapListQuery),
    responses(
        (status = 200, description = "a page of bootstrap jobs", body = List<BootstrapJob>),
        (status = 400, description = "bad paging or filter parameter", body = ErrorBody),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn list_bootstraps(
    state: web::Data<AppState>,
    q: web::Query<BootstrapListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page(q.limit.as_deref(), q.after.as_deref())?;
    let filter = JobFilter {
        state: state_filter(q.state.as_deref(), JobState::ALL, JobState::as_str)?,
        server_id: id_filter("server_id", q.server_id.as_deref())?,
    };
    let jobs = state.store.list_jobs(&filter, &page).await?;
    Ok(HttpResponse::Ok().json(List::from(jobs)))
}
