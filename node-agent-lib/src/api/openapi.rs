//! The node API's OpenAPI 3 document, generated from the handlers'
//! annotations, served by [`docs_router`] at
//! `GET /openapi.json` with a Swagger UI at `/docs` (assets built into the
//! binary). They are not on the node API's port: a document titled
//! `xray-node-agent` would name the node to anyone who asks, and censors
//! probe suspected proxy hosts. The binary serves them on `docs_listen`
//! only (off by default; keep it private, e.g. `127.0.0.1:9102`).
//!
//! Every request carries a sealed header token in `Authorization: JWE
//! <token>` (binding method, path, time, `jti` and the body's length and
//! digest); a request body is the compact serialisation of a JWE (`dir` +
//! `A256GCM`, content type `application/jose`) whose plaintext is the JSON
//! described by a component schema (`StartRequest`, `UsersEditRequest`,
//! `UsageRequest`). Answers other than the
//! bare 401 are sealed the same way around `StartResponse`,
//! `StatusResponse`, `UsersEditResponse`, `UsageResponse` or `ErrorBody`. Each operation names its plaintext
//! schemas in the `x-jwe-request` and `x-jwe-response` extensions.
//!
//! ```
//! let doc = node_agent_lib::api::openapi::document();
//! assert!(doc.paths.paths.contains_key("/start"));
//! ```

use axum::Router;
use serde_json::json;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

// Named `api` here: each operation's default tag is the module path given in
// `paths(...)`, and the document has always tagged them `api`.
use super::handlers as api;
use super::schemas::wire_schemas;
use crate::openapi::serve_document;
use crate::wire::ErrorBody;

/// The name of the JWE envelope's security scheme.
pub const JWE_SCHEME: &str = "node_jwe";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "xray-node-agent",
        description = "The node agent's API, called by the manager. **Every request is sealed with the node's key** (compact JWE, `dir` + `A256GCM`): a header token in `Authorization: JWE <token>` whose authenticated header binds the method, path, time (`iat` in ms), a single-use `jti` and the body's exact length and SHA-256 digest, checked before any body byte is read; the body (content type `application/jose`, `Content-Length` as announced) is a JWE whose plaintext is the JSON described by the schema named in the operation's `x-jwe-request`. Answers are sealed the same way (plaintext schema in `x-jwe-response`, errors as `ErrorBody`), except the bare `401 {\"error\":\"unauthorized\"}` for any refused envelope. Every call is idempotent."
    ),
    paths(
        api::start,
        api::stop,
        api::status,
        api::edit_users,
        api::usage,
        api::rotate_key
    ),
    components(schemas(ErrorBody)),
    modifiers(&Envelope)
)]
struct ApiDoc;

/// The node API's OpenAPI document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// `GET /openapi.json` and the Swagger UI under `/docs`, for any router
/// state: the agent serves it on its own private listener, never on the
/// node API's.
pub fn docs_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    serve_document(document())
}

/// The envelope's security scheme, the plaintext schemas and the links
/// from each operation to them. The documentation's own routes are not in
/// the document: they are not on the node API's port.
struct Envelope;

impl Modify for Envelope {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            JWE_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`JWE <header token>` on every call: a compact JWE (empty plaintext) binding method, path, time, `jti` and the sealed body's length (`bln`) and SHA-256 digest (`bsh`). Sealed with the node's key.",
            ))),
        );
        for (name, schema) in wire_schemas() {
            components.schemas.insert(name.to_owned(), schema);
        }
        let links: [(&str, HttpMethod, Option<&str>, Option<&str>); 6] = [
            (
                "/start",
                HttpMethod::Post,
                Some("StartRequest"),
                Some("StartResponse"),
            ),
            ("/stop", HttpMethod::Post, None, None),
            ("/status", HttpMethod::Get, None, Some("StatusResponse")),
            (
                "/users/edit",
                HttpMethod::Post,
                Some("UsersEditRequest"),
                Some("UsersEditResponse"),
            ),
            (
                "/usage",
                HttpMethod::Post,
                Some("UsageRequest"),
                Some("UsageResponse"),
            ),
            (
                "/key",
                HttpMethod::Post,
                Some("KeyRequest"),
                Some("KeyResponse"),
            ),
        ];
        let ref_of = |name: Option<&str>| match name {
            Some(name) => json!({"$ref": format!("#/components/schemas/{name}")}),
            None => json!(null),
        };
        for (path, method, request, response) in links {
            let Some(item) = doc.paths.paths.get_mut(path) else {
                continue;
            };
            let operation = match method {
                HttpMethod::Get => item.get.as_mut(),
                _ => item.post.as_mut(),
            };
            if let Some(operation) = operation {
                operation.extensions = Some(
                    ExtensionsBuilder::new()
                        .add("x-jwe-request", ref_of(request))
                        .add("x-jwe-response", ref_of(response))
                        .add("x-jwe-error", ref_of(Some("ErrorBody")))
                        .build(),
                );
            }
        }
    }
}
