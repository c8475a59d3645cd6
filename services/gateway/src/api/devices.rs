//! `/api/v1/devices`: the Device Inventory as operators see it (list, one device with its reported
//! servers and latest events) and the operator's detach, which goes through the Inventory actor.

use actix_web::{HttpResponse, web};
use omadm::mo::DeviceState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{List, page, state_filter};
use crate::domain::{DeviceFilter, DeviceView, Event};
use crate::state::AppState;

/// Events shown with one device.
pub const DEVICE_EVENTS: u32 = 50;

/// `GET /api/v1/devices` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceListQuery {
    /// Most items to return (1..=500, default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The cursor: `next` of the previous page.
    #[param(value_type = Option<i64>)]
    pub after: Option<String>,
    /// Only devices in this state (discovered, consented, provisioned, attached, detached,
    /// refused, lost, waiting_bootstrap).
    #[param(value_type = Option<String>)]
    pub state: Option<String>,
}

/// One device: its inventory record, the ServerIDs it reported with their match state, and its
/// latest events (newest first).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceDetail {
    /// The inventory record.
    #[serde(flatten)]
    pub device: DeviceView,
    /// The latest 50 events, newest first.
    pub events: Vec<Event>,
}

/// List the End Devices, in first-seen order.
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    tag = "devices",
    params(DeviceListQuery),
    responses(
        (status = 200, description = "a page of devices", body = List<DeviceView>),
        (status = 400, description = "bad paging or state parameter", body = ErrorBody),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn list_devices(
    state: web::Data<AppState>,
    q: web::Query<DeviceListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page(q.limit.as_deref(), q.after.as_deref())?;
    let filter = DeviceFilter {
        state: state_filter(q.state.as_deref(), DeviceState::ALL, DeviceState::as_str)?,
    };
    let devices = state.store.list_devices(&filter, &page).await?;
    Ok(HttpResponse::Ok().json(List::from(devices)))
}

/// One device with its reported servers (and whether each is matched) and its latest events.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{dev_id}",
    tag = "devices",
    params(("dev_id" = String, Path, description = "the device's DevId (URL-encoded)")),
    responses(
        (status = 200, description = "the device", body = DeviceDetail),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
        (status = 404, description = "no such device", body = ErrorBody),
    )
)]
pub async fn get_device(
    state: web::Data<AppState>,
    dev_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let device = state.store.device(&dev_id).await?;
    let events = state.store.device_events(&dev_id, DEVICE_EVENTS).await?;
    Ok(HttpResponse::Ok().json(DeviceDetail { device, events }))
}

/// Detach a device (operator): it becomes `detached` and each DM Server it was attached to is
/// sent `devicedetached`. Returns the device as detached.
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{dev_id}",
    tag = "devices",
    params(("dev_id" = String, Path, description = "the device's DevId (URL-encoded)")),
    responses(
        (status = 200, description = "the detached device", body = DeviceView),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
        (status = 404, description = "no such device", body = ErrorBody),
        (status = 503, description = "the gateway is stopping; retry", body = ErrorBody),
    )
)]
pub async fn detach_device(
    state: web::Data<AppState>,
    dev_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let device = state.actors.detach(&dev_id).await?;
    tracing::info!(dev_id = %device.dev_id, "device detached by an operator");
    Ok(HttpResponse::Ok().json(device))
}
