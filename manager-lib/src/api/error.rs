//! The one table from errors to an HTTP status and a stable error text, and
//! the error answer's shape: `{"error": "<stable text>", "message": "<details>"}`.
//! Every other part of the API answers failures through [`ApiError`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::manager::ManagerError;
use crate::storage::StorageError;
use crate::transport::TransportError;

/// Everything the API answers with other than success.
#[derive(Debug)]
pub enum ApiError {
    Manager(ManagerError),
    BadRequest(String),
    Unauthorized,
    /// The caller's token is valid but its role is below the one needed.
    Forbidden(crate::domain::Role),
    NotFound,
    MethodNotAllowed,
    TooManyRequests,
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        Self::Manager(e)
    }
}

/// Every error answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ErrorBody {
    /// A short stable text, e.g. `node not exists`.
    pub error: String,
    /// Details, when safe to show.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
}

impl ApiError {
    /// The one table from errors to status and stable error text.
    pub fn status_and_text(&self) -> (StatusCode, &str) {
        use ManagerError as S;
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            Self::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too many requests"),
            Self::Manager(e) => match e {
                S::InvalidEndpoint(_) => (StatusCode::BAD_REQUEST, "invalid endpoint"),
                S::InvalidUserName(_) => (StatusCode::BAD_REQUEST, "invalid user name"),
                S::InvalidPlan(_) => (StatusCode::BAD_REQUEST, "invalid plan"),
                S::InvalidMultiplier(_) => (StatusCode::BAD_REQUEST, "invalid multiplier"),
                S::InvalidProfile(_) => (StatusCode::BAD_REQUEST, "invalid profile"),
                S::InvalidCursor(_) => (StatusCode::BAD_REQUEST, "invalid cursor"),
                S::InvalidGrace(_) => (StatusCode::BAD_REQUEST, "invalid grace period"),
                S::KeyRotationPending => (StatusCode::CONFLICT, "key rotation pending"),
                S::SubscriptionNotFound | S::NodeListOff => (StatusCode::NOT_FOUND, "not found"),
                S::TokenNotFound => (StatusCode::BAD_REQUEST, "token not exists"),
                S::TokenNameTaken => (StatusCode::CONFLICT, "token name taken"),
                S::InvalidToken(_) => (StatusCode::BAD_REQUEST, "invalid token"),
                S::DeviceNotFound => (StatusCode::BAD_REQUEST, "device not exists"),
                S::NodeNotFound => (StatusCode::BAD_REQUEST, "node not exists"),
                S::UserNotFound => (StatusCode::BAD_REQUEST, "user not exists"),
                S::UserMismatch => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "user id and name do not match",
                ),
                S::Node(TransportError::Node { status, error, .. }) => (
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                    error.as_str(),
                ),
                S::Node(TransportError::Unreachable(_)) => {
                    (StatusCode::BAD_GATEWAY, "node unreachable")
                }
                S::Node(_) => (StatusCode::BAD_GATEWAY, "bad node answer"),
                S::Storage(StorageError::Unavailable(_)) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "database unavailable")
                }
                S::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal server error"),
            },
        }
    }

    /// Details safe to show the caller; internal errors only go to the log.
    pub(crate) fn message(&self) -> Option<String> {
        use ManagerError as S;
        match self {
            Self::BadRequest(m) => Some(m.clone()),
            Self::Forbidden(role) => Some(format!("this call needs the {role} role")),
            Self::Manager(S::InvalidToken(e)) => Some(e.to_string()),
            Self::Manager(S::InvalidEndpoint(e)) => Some(e.to_string()),
            Self::Manager(S::InvalidPlan(e)) => Some(e.to_string()),
            Self::Manager(S::InvalidGrace(_)) => {
                Some("graceSecs is 0 to 2592000 (30 days)".into())
            }
            Self::Manager(S::KeyRotationPending) => Some(
                "a new key for this node waits to be delivered to its agent; the heartbeat delivers it"
                    .into(),
            ),
            Self::Manager(S::InvalidProfile(e)) => Some(e.to_string()),
            Self::Manager(S::InvalidMultiplier(_)) => {
                Some("a traffic multiplier is a number above 0 and at most 1000".into())
            }
            Self::Manager(S::InvalidUserName(_)) => {
                Some("a user name must be 1 to 1024 bytes and not blank".into())
            }
            Self::Manager(S::Node(TransportError::Node { message, .. })) => message.clone(),
            Self::Manager(S::Node(e @ TransportError::Unreachable(_))) => Some(e.to_string()),
            // Not the answer's details (attacker-chosen on a plain-HTTP
            // channel), just what the operator must fix.
            Self::Manager(S::Node(TransportError::KeyMismatch(_))) => {
                Some("node key mismatch".into())
            }
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, text) = self.status_and_text();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let body = ErrorBody {
            error: text.to_owned(),
            message: self.message(),
        };
        (status, Json(body)).into_response()
    }
}
