//! What every operation of the node API shares in the OpenAPI document,
//! described once (`params(HeaderToken)`, `responses(..., Refused)` in a
//! handler's annotation) instead of copied into every annotation.

use std::collections::BTreeMap;

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use crate::wire::ErrorBody;

/// `Authorization: JWE <header token>`, on every call.
pub(super) struct HeaderToken;

impl IntoParams for HeaderToken {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("Authorization")
                .parameter_in(ParameterIn::Header)
                .description(Some("`JWE <header token>`: a compact JWE (`dir`, `A256GCM`) with an empty plaintext whose authenticated protected header binds method (`htm`), path (`htu`), time (`iat` with millisecond precision, `exp`), a single-use `jti`, and the body's exact length (`bln`) and SHA-256 digest (`bsh`, base64url). Checked before any body byte is read."))
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ]
    }
}

/// A sealed answer: a compact JWE (`application/jose`) described by
/// `description`.
fn sealed(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::envelope::CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        )
        .build()
        .into()
}

/// 401, the one answer that is not sealed: what every call can get.
pub(super) struct Refused;

impl IntoResponses for Refused {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let refused = ResponseBuilder::new()
            .description("Not sealed: the header token is missing, invalid, expired, issued before the agent started, or replayed; no body byte was read.")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                    .build(),
            )
            .build();
        BTreeMap::from([("401".to_owned(), refused.into())])
    }
}

/// 503, sealed: a start or stop is in progress.
pub(super) struct Initializing;

impl IntoResponses for Initializing {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "503".to_owned(),
            sealed(
                "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service initializing` (a start or stop is in progress).",
            ),
        )])
    }
}
