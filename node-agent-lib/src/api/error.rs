//! The one table from an agent error to the answer's status and stable
//! text, and the one answer that is never sealed: the bare 401 every refused
//! call gets.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::agent::AgentError;
use crate::wire::ErrorBody;

/// The one table from an agent error to the answer's status and stable text.
pub fn error_answer(error: &AgentError) -> (StatusCode, &'static str) {
    match error {
        AgentError::Initializing => (StatusCode::SERVICE_UNAVAILABLE, "xray service initializing"),
        AgentError::Service(_) | AgentError::CoreDidNotStart(_) | AgentError::Core(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "xray service error")
        }
        AgentError::ServiceStatus(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "xray service status error",
        ),
        AgentError::CoreUnavailable(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "xray service unavailable",
        ),
        AgentError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal server error"),
    }
}

/// The only answer that is not sealed: the caller may not hold the key.
pub(super) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(ErrorBody::new("unauthorized")),
    )
        .into_response()
}

/// An answer that could not be sealed (should not happen with a valid key).
pub(super) fn internal_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(ErrorBody::new("internal server error")),
    )
        .into_response()
}
