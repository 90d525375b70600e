//! A user's devices on the admin API: the devices that fetched the user's
//! subscription, forgetting one, and the user's device limit.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{JsonBody, user_id};
use super::plans::{UserAnswer, UserDetails};
use super::responses::AdminErrors;
use super::state::ApiState;
use crate::domain::Device;
use crate::manager::ManagerError;

/// One device, times in Unix seconds.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeviceView {
    hwid: String,
    os: String,
    os_version: String,
    model: String,
    user_agent: String,
    first_seen: i64,
    last_seen: i64,
}

impl From<Device> for DeviceView {
    fn from(d: Device) -> Self {
        Self {
            hwid: d.hwid,
            os: d.os,
            os_version: d.os_version,
            model: d.model,
            user_agent: d.user_agent,
            first_seen: d.first_seen.0.div_euclid(1000),
            last_seen: d.last_seen.0.div_euclid(1000),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct DevicesAnswer {
    devices: Vec<DeviceView>,
}

#[utoipa::path(
    get,
    path = "/users/{id}/devices",
    tag = "admin",
    summary = "The devices (x-hwid) that fetched a user's subscription, oldest first",
    params(("id" = String, Path, description = "The user id")),
    responses(
        (status = 200, body = DevicesAnswer),
        (status = 400, description = "`user not exists`", body = super::error::ErrorBody),
        AdminErrors
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_devices(
    State(st): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<DevicesAnswer>, ApiError> {
    let Path(raw) = path.map_err(|_| ApiError::Manager(ManagerError::UserNotFound))?;
    let devices = st.manager.list_devices(user_id(&raw)?).await?;
    Ok(Json(DevicesAnswer {
        devices: devices.into_iter().map(DeviceView::from).collect(),
    }))
}

/// `POST /user/device/delete`.
#[derive(Deserialize, ToSchema)]
pub(super) struct DeviceDeleteBody {
    #[serde(rename = "userID", alias = "user_id", alias = "userId")]
    user_id: String,
    hwid: String,
}

#[utoipa::path(
    post,
    path = "/user/device/delete",
    tag = "admin",
    summary = "Forget one of a user's devices: its next fetch counts as a new device",
    request_body = DeviceDeleteBody,
    responses(
        (status = 200, description = "`{}`", body = Object),
        (status = 400, description = "`user not exists`, `device not exists` or `bad request`", body = super::error::ErrorBody),
        AdminErrors
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_device_delete(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<DeviceDeleteBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    st.manager
        .delete_device(user_id(&body.user_id)?, &body.hwid)
        .await?;
    Ok(Json(serde_json::json!({})))
}

/// `POST /user/device-limit`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeviceLimitBody {
    #[serde(rename = "userID", alias = "user_id", alias = "userId")]
    user_id: String,
    /// Devices that may fetch the subscription; 0: no limit; `null`: the
    /// settings' default.
    #[serde(alias = "device_limit")]
    device_limit: Option<u32>,
}

#[utoipa::path(
    post,
    path = "/user/device-limit",
    tag = "admin",
    summary = "Set how many devices may fetch a user's subscription (null: the settings' default; 0: no limit)",
    request_body = DeviceLimitBody,
    responses(
        (status = 200, description = "the user after the change", body = UserAnswer),
        (status = 400, description = "`user not exists` or `bad request`", body = super::error::ErrorBody),
        AdminErrors
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_device_limit(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<DeviceLimitBody>,
) -> Result<Json<UserAnswer>, ApiError> {
    let user = st
        .manager
        .set_device_limit(user_id(&body.user_id)?, body.device_limit)
        .await?;
    Ok(Json(UserAnswer {
        user: UserDetails::from(&user),
    }))
}
