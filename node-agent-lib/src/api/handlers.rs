//! The six calls of the node API, each inside the JWE envelope: the
//! payload is opened by `AppState::receive` (module `auth`), handed to the
//! agent, and its result sealed by `AppState::seal`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::responses::{HeaderToken, Initializing, Refused};
use super::state::AppState;
use crate::agent::AgentError;
use crate::envelope::NodeKey;
use crate::keyring::{RotateError, Rotated};
use crate::wire::{
    KeyRequest, KeyResponse, StartRequest, StartResponse, UsageRequest, UsersEditRequest,
    UsersEditResponse,
};

fn parse<T: DeserializeOwned>(payload: &[u8]) -> Result<T, AgentError> {
    serde_json::from_slice(payload).map_err(|e| AgentError::BadRequest(e.to_string()))
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, AgentError> {
    serde_json::to_vec(value).map_err(|e| AgentError::Internal(e.to_string()))
}

#[utoipa::path(
    post,
    path = "/start",
    summary = "Run the core with exactly these users",
    params(HeaderToken),
    request_body(content = String, content_type = "application/jose", description = "The payload sealed on its own: a compact JWE (`dir`, `A256GCM`) whose plaintext is a `StartRequest`, sent with `Content-Length` equal to the header token's `bln`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is a `StartResponse`.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (not the expected JSON, or a body that is not the one the header token announced: length, digest, too slow, too large).", content_type = "application/jose", body = String),
        Initializing,
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service error`.", content_type = "application/jose", body = String),
        Refused,
    ),
    security(("node_jwe" = []))
)]
pub(super) async fn start(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (request, payload) = match s.receive(&Method::POST, "/start", &headers, body).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = async {
        let StartRequest { users } = parse(&payload)?;
        drop(payload);
        s.agent.start(users).await?;
        to_json(&StartResponse {
            user_config_template: s.agent.user_config_template().to_owned(),
            inbounds: s.agent.inbounds(),
        })
    }
    .await;
    s.seal(&request, "/start", result)
}

#[utoipa::path(
    post,
    path = "/stop",
    summary = "Stop the core",
    params(HeaderToken),
    request_body(content = String, content_type = "application/jose", description = "Empty (`bln` 0), or a compact JWE (`dir`, `A256GCM`) whose plaintext is `{}`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is empty.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (the body is not the one the header token announced).", content_type = "application/jose", body = String),
        Initializing,
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service error`.", content_type = "application/jose", body = String),
        Refused,
    ),
    security(("node_jwe" = []))
)]
pub(super) async fn stop(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (request, _) = match s.receive(&Method::POST, "/stop", &headers, body).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = s.agent.stop().await.map(|()| Vec::new());
    s.seal(&request, "/stop", result)
}

#[utoipa::path(
    get,
    path = "/status",
    summary = "Whether the core runs, and its users",
    params(HeaderToken),
    request_body(content = String, content_type = "application/jose", description = "None: `bln` is 0."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is a `StatusResponse`.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (a body the header token did not announce).", content_type = "application/jose", body = String),
        Initializing,
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service status error`.", content_type = "application/jose", body = String),
        Refused,
    ),
    security(("node_jwe" = []))
)]
pub(super) async fn status(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (request, _) = match s.receive(&Method::GET, "/status", &headers, body).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = match s.agent.status().await {
        Ok(status) => to_json(&status),
        Err(e) => Err(e),
    };
    s.seal(&request, "/status", result)
}

#[utoipa::path(
    post,
    path = "/users/edit",
    summary = "Add and remove users on the running core",
    params(HeaderToken),
    request_body(content = String, content_type = "application/jose", description = "The payload sealed on its own: a compact JWE (`dir`, `A256GCM`) whose plaintext is a `UsersEditRequest`, sent with `Content-Length` equal to the header token's `bln`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is a `UsersEditResponse`.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (not the expected JSON, or a body that is not the one the header token announced: length, digest, too slow, too large).", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service unavailable` (the core's API does not answer) or `xray service error`.", content_type = "application/jose", body = String),
        Refused,
    ),
    security(("node_jwe" = []))
)]
pub(super) async fn edit_users(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (request, payload) = match s
        .receive(&Method::POST, "/users/edit", &headers, body)
        .await
    {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = async {
        let edit: UsersEditRequest = parse(&payload)?;
        let added: Vec<String> = edit.add_users.iter().map(|u| u.id.clone()).collect();
        s.agent.edit_users(edit).await?;
        to_json(&UsersEditResponse {
            user_ports: s.agent.user_ports(added.iter().map(String::as_str)),
        })
    }
    .await;
    s.seal(&request, "/users/edit", result)
}

#[utoipa::path(
    post,
    path = "/usage",
    summary = "Usage batches after the manager's cursor (and confirm it)",
    description = "Answers the journal's batches after `after` when `journal` names this node's journal, else from its first batch (the node's state was wiped, or the manager never pulled); at most `maxBatches` (default 64, capped at 256), `more` when others wait. Naming this journal confirms `after`: the node may forget the batches up to it. Works whether the core runs or not.",
    params(HeaderToken),
    request_body(content = String, content_type = "application/jose", description = "The payload sealed on its own: a compact JWE (`dir`, `A256GCM`) whose plaintext is a `UsageRequest` (or empty: from the first batch), sent with `Content-Length` equal to the header token's `bln`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is a `UsageResponse`.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (not the expected JSON, or a body that is not the one the header token announced).", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `internal server error` (the usage journal could not be read or written; details in the agent's log).", content_type = "application/jose", body = String),
        Refused,
    ),
    security(("node_jwe" = []))
)]
pub(super) async fn usage(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (request, payload) = match s.receive(&Method::POST, "/usage", &headers, body).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = async {
        // An empty body is the empty request: from the first batch.
        let pull: UsageRequest = if payload.is_empty() {
            UsageRequest::default()
        } else {
            parse(&payload)?
        };
        s.agent.usage_after_json(pull).await
    }
    .await;
    s.seal(&request, "/usage", result)
}

#[utoipa::path(
    post,
    path = "/key",
    summary = "Rotate the node key (the old one stays accepted for a grace period)",
    description = "Makes `key` the node's key, persisted in the state directory (`node-key`, mode 0600) before it answers; the key this request was sealed under stays accepted for `graceSecs` (at most 30 days), then only the new key opens a call. Every call is answered under the key it came in. Delivering the current key again changes nothing (`rotated` false), so the manager may repeat it under either key; any other key must come under the current key (under the previous one it is a `bad request`: the old key cannot take the node over during the grace).",
    params(HeaderToken),
    request_body(content = String, content_type = "application/jose", description = "The payload sealed on its own: a compact JWE (`dir`, `A256GCM`) whose plaintext is a `KeyRequest`, sent with `Content-Length` equal to the header token's `bln`."),
    responses(
        (status = 200, description = "Sealed (under the key the request came in): a compact JWE whose plaintext is a `KeyResponse`.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (not the expected JSON, not a key, a grace period above 30 days, or a body that is not the one the header token announced). Nothing changed.", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `internal server error` (the key could not be written to the state directory; nothing changed).", content_type = "application/jose", body = String),
        Refused,
    ),
    security(("node_jwe" = []))
)]
pub(super) async fn rotate_key(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (call, payload) = match s.receive(&Method::POST, "/key", &headers, body).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = (|| {
        let request: KeyRequest = parse(&payload)?;
        let new: NodeKey = request
            .key
            .parse()
            .map_err(|e: crate::envelope::InvalidKey| AgentError::BadRequest(e.to_string()))?;
        let grace = std::time::Duration::from_secs(request.grace_secs);
        let rotated = s
            .keys
            .rotate(&call.key, new, grace, std::time::SystemTime::now())
            .map_err(|e| match e {
                RotateError::Grace | RotateError::NotCurrent => {
                    AgentError::BadRequest(e.to_string())
                }
                other => AgentError::Internal(other.to_string()),
            })?;
        let answer = match rotated {
            Rotated::Changed { grace_until } => {
                tracing::info!(grace_until, "node key rotated");
                KeyResponse {
                    rotated: true,
                    grace_until: Some(grace_until),
                }
            }
            Rotated::Unchanged { grace_until } => KeyResponse {
                rotated: false,
                grace_until,
            },
        };
        to_json(&answer)
    })();
    s.seal(&call, "/key", result)
}
