//! The envelope around each call, on the agent's side: the header token is
//! opened (and its `jti` recorded) before any body byte is read, the body is
//! then read and checked against what the token announced, and the answer
//! is sealed to the request. Any refused header is the bare 401 of
//! [`super::error`]; a body that is not the announced one is a sealed 400.

use std::time::SystemTime;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use super::error::{error_answer, internal_error, unauthorized};
use super::state::AppState;
use crate::agent::AgentError;
use crate::envelope::{self, BodyCheck, BodyError, NodeKey, OpenedRequest, Rejection};
use crate::wire::ErrorBody;

/// A call whose header token was accepted, and the key it was sealed
/// under: its body is opened and its answer sealed under that key.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) request: OpenedRequest,
    pub(super) key: NodeKey,
}

impl AppState {
    /// Opens the request's header token under the current key, else (a
    /// token that does not decrypt) under the previous key while a
    /// rotation's grace lasts, and records its `jti`; any failure is a bare
    /// 401 (the reason goes to the rate-limited log only). Reads nothing of
    /// the body.
    fn open(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<Call, Rejection> {
        let now = SystemTime::now();
        let opened = token(headers)
            .and_then(|token| {
                let mut refused = Rejection::Decrypt;
                for key in self.keys.accepted(now) {
                    match envelope::open_request(&key, token, method.as_str(), path, now) {
                        Ok(request) => return Ok(Call { request, key }),
                        Err(Rejection::Decrypt) => {}
                        Err(other) => refused = other,
                    }
                }
                Err(refused)
            })
            .and_then(|call| {
                let opened = &call.request;
                // Not `<=`: a request sealed in the very millisecond the
                // agent started was not sent to an earlier process.
                if opened.iat_ms < self.started_ms {
                    return Err(Rejection::BeforeStart);
                }
                self.replay.check_and_insert(&opened.jti, opened.exp, now)?;
                Ok(call)
            });
        opened.inspect_err(|reason| self.refusals.record(method.as_str(), path, reason))
    }

    /// Authenticates the call from its header, then reads and opens its
    /// body. A refused header is a bare 401 before any body byte is read;
    /// a body that is not the one the header announced (length, digest,
    /// too slow, too large) is a sealed 400 `bad request`.
    pub(super) async fn receive(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Call, Vec<u8>), Response> {
        let call = self
            .open(method, path, headers)
            .map_err(|_| unauthorized())?;
        match self.read_body(&call, headers, body).await {
            Ok(payload) => Ok((call, payload)),
            Err(e) => Err(self.seal(&call, path, Err(AgentError::BadRequest(e.to_string())))),
        }
    }

    /// Reads exactly the announced length (as `Content-Length` must say),
    /// within [`super::DEFAULT_BODY_TIMEOUT`] (or the set one), checking the
    /// digest as it streams in; decrypts only a body that matches.
    async fn read_body(
        &self,
        call: &Call,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Vec<u8>, BodyError> {
        let request = &call.request;
        let declared = match headers.get(CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(BodyError::Length)?,
            ),
        };
        if declared.unwrap_or(0) != request.body_len {
            return Err(BodyError::Length);
        }
        let len = usize::try_from(request.body_len).map_err(|_| BodyError::TooLarge)?;
        if len > self.body_limit {
            return Err(BodyError::TooLarge);
        }
        let mut check = BodyCheck::new(request);
        let mut bytes = Vec::with_capacity(len);
        let mut stream = body.into_data_stream();
        let read = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|_| BodyError::Read)?;
                check.update(&chunk)?;
                bytes.extend_from_slice(&chunk);
            }
            Ok::<(), BodyError>(())
        };
        tokio::time::timeout(self.body_timeout, read)
            .await
            .map_err(|_| BodyError::Timeout)??;
        check.open(&call.key, &bytes)
    }

    /// Seals the answer to `call` under the key it came in: the payload on
    /// success, else the error body from [`error_answer`].
    pub(super) fn seal(
        &self,
        call: &Call,
        path: &str,
        result: Result<Vec<u8>, AgentError>,
    ) -> Response {
        let (status, payload) = match result {
            Ok(payload) => (StatusCode::OK, payload),
            Err(error) => {
                let (status, text) = error_answer(&error);
                if status.is_server_error() {
                    tracing::error!(path, error = %error, "request failed");
                } else {
                    tracing::info!(path, error = %error, "request refused");
                }
                let body = serde_json::to_vec(&ErrorBody::new(text)).unwrap_or_default();
                (status, body)
            }
        };
        match envelope::seal_response(&call.key, &call.request.jti, status.as_u16(), &payload) {
            Ok(token) => (
                status,
                [
                    (
                        CONTENT_TYPE,
                        HeaderValue::from_static(envelope::CONTENT_TYPE),
                    ),
                    (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                token,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(path, error = %e, "cannot seal the answer");
                internal_error()
            }
        }
    }
}

/// Every call carries its header token in `Authorization: JWE <token>`.
fn token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let value = headers.get(AUTHORIZATION).ok_or(Rejection::Missing)?;
    let value = value.to_str().map_err(|_| Rejection::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::Malformed)?;
    if !scheme.eq_ignore_ascii_case(envelope::AUTH_SCHEME) {
        return Err(Rejection::Malformed);
    }
    Ok(token)
}
