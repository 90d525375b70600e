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
use crate::envelope::{self, BodyCheck, BodyError, OpenedRequest, Rejection};
use crate::wire::ErrorBody;

impl AppState {
    /// Opens the request's header token and records its `jti`; any failure
    /// is a bare 401 (the reason goes to the rate-limited log only). Reads
    /// nothing of the body.
    fn open(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<OpenedRequest, Rejection> {
        let now = SystemTime::now();
        let opened = token(headers)
            .and_then(|token| envelope::open_request(&self.key, token, method.as_str(), path, now))
            .and_then(|opened| {
                // Not `<=`: a request sealed in the very millisecond the
                // agent started was not sent to an earlier process.
                if opened.iat_ms < self.started_ms {
                    return Err(Rejection::BeforeStart);
                }
                self.replay.check_and_insert(&opened.jti, opened.exp, now)?;
                Ok(opened)
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
    ) -> Result<(OpenedRequest, Vec<u8>), Response> {
        let request = self
            .open(method, path, headers)
            .map_err(|_| unauthorized())?;
        match self.read_body(&request, headers, body).await {
            Ok(payload) => Ok((request, payload)),
            Err(e) => Err(self.seal(&request, path, Err(AgentError::BadRequest(e.to_string())))),
        }
    }

    /// Reads exactly the announced length (as `Content-Length` must say),
    /// within [`super::DEFAULT_BODY_TIMEOUT`] (or the set one), checking the
    /// digest as it streams in; decrypts only a body that matches.
    async fn read_body(
        &self,
        request: &OpenedRequest,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Vec<u8>, BodyError> {
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
        check.open(&self.key, &bytes)
    }

    /// Seals the answer to `request`: the payload on success, else the error
    /// body from [`error_answer`].
    pub(super) fn seal(
        &self,
        request: &OpenedRequest,
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
        match envelope::seal_response(&self.key, &request.jti, status.as_u16(), &payload) {
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
