//! What the handlers take from a request: a JSON body whose every failure
//! is a 400 in the API's error shape, and ids from bodies and paths.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::{NodeId, UserId};
use crate::manager::ManagerError;

/// A JSON body whose every failure (not JSON, wrong fields, too large) is a
/// 400 `bad request` in the API's error shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// An id in a bad form names nothing that exists.
pub(super) fn node_id(raw: &str) -> Result<NodeId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::Manager(ManagerError::NodeNotFound))
}

pub(super) fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::Manager(ManagerError::UserNotFound))
}
