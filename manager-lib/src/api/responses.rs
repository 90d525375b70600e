//! The error answers that many routes share, described once for the OpenAPI
//! document (`responses(..., AdminErrors)` in a handler's annotation) instead
//! of copied into every annotation. Each is an [`ErrorBody`].

use std::collections::BTreeMap;

use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, ToSchema};

use super::error::ErrorBody;

/// One error answer: `description`, and an [`ErrorBody`] as JSON.
fn error_answer(description: &str) -> RefOr<Response> {
    let schema = Ref::from_schema_name(ErrorBody::name());
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
        .into()
}

/// 500: what any route that reads the database can answer.
pub(super) struct ServerError;

impl IntoResponses for ServerError {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "500".to_owned(),
            error_answer("`database unavailable` or `internal server error`"),
        )])
    }
}

/// 401, 403, 429 and 500: what every admin route can answer besides its own.
pub(super) struct AdminErrors;

impl IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut answers = ServerError::responses();
        answers.insert(
            "401".to_owned(),
            error_answer("missing, unknown, expired or revoked token"),
        );
        answers.insert(
            "403".to_owned(),
            error_answer("`forbidden`: the token's role does not allow this call"),
        );
        answers.insert(
            "429".to_owned(),
            error_answer(
                "`too many requests`: this client failed the admin token too often; see `Retry-After`",
            ),
        );
        answers
    }
}

/// 502: what a route that calls the node can answer.
pub(super) struct NodeErrors;

impl IntoResponses for NodeErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "502".to_owned(),
            error_answer(
                "`node unreachable` or `bad node answer`; a node's own error answer is passed through with its status",
            ),
        )])
    }
}
