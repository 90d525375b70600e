//! Plans and usage on the API: the plan fields `POST /user/new` and
//! `POST /user/edit` read, the usage fields of the user views, and the
//! calls that edit a plan, reset a user's usage, read a user, and set a
//! node's traffic multiplier.
//!
//! Times are Unix seconds; byte counts are integers (u64, never floats).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{JsonBody, node_id, user_id};
use super::responses::AdminErrors;
use super::state::ApiState;
use crate::domain::plan::{FieldEdit, PlanEdit, ResetEdit, ResetStrategy, UserState};
use crate::domain::{Timestamp, User};
use crate::manager::ManagerError;

/// `Some(value)` for a field that is present, `null` included: a patch
/// tells "clear it" (`null`) from "leave it" (absent).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn secs(t: Timestamp) -> i64 {
    t.0.div_euclid(1000)
}

/// The plan fields of `POST /user/new` and `POST /user/edit`. In an edit an
/// absent field is left as it is and `null` clears it; snake_case spellings
/// are accepted too.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlanFields {
    /// Bytes (up + down, after node multipliers) per period; `null`: unlimited.
    #[serde(default, deserialize_with = "present", alias = "data_limit")]
    #[schema(value_type = Option<u64>)]
    data_limit: Option<Option<u64>>,
    /// Unix seconds after which the user is off every node; `null`: never.
    #[serde(default, deserialize_with = "present", alias = "expire_at")]
    #[schema(value_type = Option<i64>)]
    expire_at: Option<Option<i64>>,
    /// `none`, `day`, `week`, `month` or `year` (UTC, calendar-aligned).
    #[serde(default, alias = "reset_strategy")]
    reset_strategy: Option<String>,
    /// With `month`: the day of the month, 1 to 28.
    #[serde(default, alias = "reset_day")]
    reset_day: Option<i64>,
    /// Seconds of service that start at the user's first byte (no
    /// `expireAt` meanwhile); `null`: no hold.
    #[serde(default, deserialize_with = "present", alias = "on_hold_secs")]
    #[schema(value_type = Option<u64>)]
    on_hold_secs: Option<Option<u64>>,
}

impl PlanFields {
    /// The edit these fields make: absent leaves a field, `null` clears it;
    /// a reset day alone is a new day for the monthly reset the stored plan
    /// has. A reset strategy that is no strategy is refused here.
    pub(super) fn edit(self) -> Result<PlanEdit, ApiError> {
        let reset = match (self.reset_strategy, self.reset_day) {
            (Some(period), day) => ResetEdit::Set(
                ResetStrategy::from_parts(&period, day.unwrap_or(1))
                    .map_err(|e| ApiError::Manager(ManagerError::InvalidPlan(e)))?,
            ),
            (None, Some(day)) => ResetEdit::MonthDay(day),
            (None, None) => ResetEdit::Leave,
        };
        Ok(PlanEdit {
            data_limit: FieldEdit::from_patch(self.data_limit),
            expire_at: FieldEdit::from_patch(
                self.expire_at
                    .map(|e| e.map(|s| Timestamp(s.saturating_mul(1000)))),
            ),
            reset,
            on_hold: FieldEdit::from_patch(self.on_hold_secs),
        })
    }
}

/// The plan and usage fields of a user view.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageFields {
    /// `active`, `limited`, `expired`, `on_hold` or `disabled`: the admin's
    /// switch (`status`) and the plan together.
    #[schema(value_type = String)]
    state: UserState,
    /// Bytes sent by the user since the last reset (after node multipliers).
    used_up: u64,
    /// Bytes received by the user since the last reset.
    used_down: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_at: Option<i64>,
    reset_strategy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset_day: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_hold_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_reset_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_reset_at: Option<i64>,
}

impl From<&User> for UsageFields {
    fn from(u: &User) -> Self {
        Self {
            state: u.state(),
            used_up: u.used_up,
            used_down: u.used_down,
            data_limit: u.plan.data_limit,
            expire_at: u.plan.expire_at.map(secs),
            reset_strategy: u.plan.reset.period(),
            reset_day: match u.plan.reset {
                ResetStrategy::Month { day } => Some(day),
                _ => None,
            },
            on_hold_secs: u.plan.on_hold,
            next_reset_at: u.next_reset_at.map(secs),
            last_reset_at: u.last_reset_at.map(secs),
        }
    }
}

/// One user, with plan and usage.
#[derive(Serialize, ToSchema)]
pub(super) struct UserDetails {
    id: String,
    name: String,
    #[schema(value_type = String)]
    status: &'static str,
    #[serde(flatten)]
    usage: UsageFields,
    /// Devices that may fetch the subscription (0: no limit); absent: the
    /// settings' default.
    #[serde(rename = "deviceLimit", skip_serializing_if = "Option::is_none")]
    device_limit: Option<u32>,
}

impl From<&User> for UserDetails {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            name: u.name.clone(),
            status: u.status.as_str(),
            usage: UsageFields::from(u),
            device_limit: u.device_limit,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct UserAnswer {
    pub(super) user: UserDetails,
}

/// `POST /user/edit`: the user and the plan fields to change.
#[derive(Deserialize, ToSchema)]
pub(super) struct UserEditBody {
    #[serde(rename = "userID", alias = "user_id", alias = "userId")]
    user_id: String,
    #[serde(flatten)]
    plan: PlanFields,
}

#[utoipa::path(
    post,
    path = "/user/edit",
    tag = "admin",
    summary = "Change a user's plan: limit, expiry, reset, hold",
    description = "A user whose limit is raised above the used bytes, or whose expiry moves into the future, is back on the nodes at once; one pushed past them leaves at once.",
    request_body = UserEditBody,
    responses(
        (status = 200, description = "the user after the change", body = UserAnswer),
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_edit(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<UserEditBody>,
) -> Result<Json<UserAnswer>, ApiError> {
    let id = user_id(&body.user_id)?;
    let edit = match body.plan.edit() {
        Ok(edit) => edit,
        Err(e) => {
            // An unknown user is told before a bad strategy, as the storage
            // tells it before a bad plan.
            st.manager.get_user(id).await?;
            return Err(e);
        }
    };
    if edit.is_empty() {
        return Err(ApiError::BadRequest("no plan field to change".into()));
    }
    let user = st.manager.edit_user_plan(id, edit).await?;
    Ok(Json(UserAnswer {
        user: UserDetails::from(&user),
    }))
}

/// `userID`, as in the other user calls.
#[derive(Deserialize, ToSchema)]
pub(super) struct UserResetBody {
    #[serde(rename = "userID", alias = "user_id", alias = "userId")]
    user_id: String,
}

#[utoipa::path(
    post,
    path = "/user/reset-usage",
    tag = "admin",
    summary = "Zero a user's used bytes (a user blocked by the limit comes back)",
    request_body = UserResetBody,
    responses(
        (status = 200, description = "the user after the reset", body = UserAnswer),
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_reset_usage(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<UserResetBody>,
) -> Result<Json<UserAnswer>, ApiError> {
    let user = st.manager.reset_user_usage(user_id(&body.user_id)?).await?;
    Ok(Json(UserAnswer {
        user: UserDetails::from(&user),
    }))
}

#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "admin",
    summary = "One user, with plan and usage",
    params(("id" = String, Path, description = "the user's id")),
    responses(
        (status = 200, description = "the user", body = UserAnswer),
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_get(
    State(st): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserAnswer>, ApiError> {
    let Path(raw) = path.map_err(|_| ApiError::Manager(ManagerError::UserNotFound))?;
    let user = st.manager.get_user(user_id(&raw)?).await?;
    Ok(Json(UserAnswer {
        user: UserDetails::from(&user),
    }))
}

/// `POST /node/edit`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NodeEditBody {
    #[serde(rename = "nodeID", alias = "node_id", alias = "nodeId")]
    node_id: String,
    /// What a byte through this node counts in users' totals (default 1.0;
    /// above 0).
    #[serde(alias = "traffic_multiplier")]
    traffic_multiplier: f64,
}

#[utoipa::path(
    post,
    path = "/node/edit",
    tag = "admin",
    summary = "Set a node's traffic multiplier (applied to bytes stored from now on)",
    request_body = NodeEditBody,
    responses(
        (status = 200, description = "`{}`", body = Object),
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn node_edit(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<NodeEditBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    st.manager
        .set_node_multiplier(node_id(&body.node_id)?, body.traffic_multiplier)
        .await?;
    Ok(Json(serde_json::json!({})))
}
