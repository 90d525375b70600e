//! The node API's OpenAPI 3 document, generated from the handlers'
//! annotations in [`crate::api`], served by [`docs_router`] at
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
//! described by a component schema (`StartRequest`, `UsersEditRequest`).
//! Answers other than the
//! bare 401 are sealed the same way around `StartResponse`,
//! `StatusResponse` or `ErrorBody`. Each operation names its plaintext
//! schemas in the `x-jwe-request` and `x-jwe-response` extensions.
//!
//! ```
//! let doc = node_agent_lib::openapi::document();
//! assert!(doc.paths.paths.contains_key("/start"));
//! ```

use std::borrow::Cow;

use axum::Router;
use serde_json::json;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::api;
use crate::wire::ErrorBody;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where the Swagger UI is served.
pub const UI_PATH: &str = "/docs";
/// The name of the JWE envelope's security scheme.
pub const JWE_SCHEME: &str = "node_jwe";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "xray-node-agent",
        description = "The node agent's API, called by the manager. **Every request is sealed with the node's key** (compact JWE, `dir` + `A256GCM`): a header token in `Authorization: JWE <token>` whose authenticated header binds the method, path, time (`iat` in ms), a single-use `jti` and the body's exact length and SHA-256 digest, checked before any body byte is read; the body (content type `application/jose`, `Content-Length` as announced) is a JWE whose plaintext is the JSON described by the schema named in the operation's `x-jwe-request`. Answers are sealed the same way (plaintext schema in `x-jwe-response`, errors as `ErrorBody`), except the bare `401 {\"error\":\"unauthorized\"}` for any refused envelope. Every call is idempotent."
    ),
    paths(api::start, api::stop, api::status, api::edit_users),
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

/// `doc` at [`DOCUMENT_PATH`] with the Swagger UI under [`UI_PATH`]; the
/// manager serves its own document through it too.
pub fn serve_document<S: Clone + Send + Sync + 'static>(doc: Document) -> Router<S> {
    SwaggerUi::new(UI_PATH).url(DOCUMENT_PATH, doc).into()
}

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some("Every error answer."))
            .property(
                "error",
                string("A short stable text, e.g. `xray service error`."),
            )
            .required("error")
            .property("message", string("Details, when safe to show."))
            .into()
    }
}

impl ToSchema for ErrorBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorBody")
    }
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn integer(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(0))
        .description(Some(description))
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

fn array_of(items: impl Into<RefOr<Schema>>, description: &str) -> ArrayBuilder {
    let items: RefOr<Schema> = items.into();
    ArrayBuilder::new()
        .items(items)
        .description(Some(description))
}

/// The plaintext schemas of the envelope (the types of [`crate::wire`]),
/// in their answer spelling; requests also accept the snake_case spellings.
pub fn wire_schemas() -> Vec<(&'static str, RefOr<Schema>)> {
    vec![
        (
            "WireUser",
            ObjectBuilder::new()
                .description(Some("One user as the manager sends it (`userID`/`user_id` and `userName`/`user_name` are accepted too)."))
                .property("id", string("The VLESS/VMess id (a UUID when such an inbound is managed) and the core's key for the user."))
                .required("id")
                .property("name", string("The user's name."))
                .required("name")
                .property("secret", string("The Trojan/Shadowsocks password; never logged."))
                .required("secret")
                .into(),
        ),
        (
            "StartRequest",
            ObjectBuilder::new()
                .description(Some("`POST /start`: run the core with exactly these users."))
                .property("users", array_of(reference("WireUser"), "Every user the core must have."))
                .required("users")
                .into(),
        ),
        (
            "StartResponse",
            ObjectBuilder::new()
                .description(Some("The answer to `POST /start`."))
                .property(
                    "userConfigTemplate",
                    string("The node's share-link pattern for one user (`{{.UserID}}`, `{{.UserName}}`, `{{.UserSecret}}`), filled by the manager."),
                )
                .required("userConfigTemplate")
                .into(),
        ),
        (
            "StatusResponse",
            ObjectBuilder::new()
                .description(Some("The answer to `GET /status`."))
                .property(
                    "nodeStatus",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["Running", "Stopped"])),
                )
                .required("nodeStatus")
                .property("users", integer("How many users the core really has."))
                .property("coreUptimeSecs", integer("Seconds since the core started (0 when stopped)."))
                .property("coreRestarts", integer("How many times the agent saw the core restart behind its back."))
                .into(),
        ),
        (
            "UsersEditRequest",
            ObjectBuilder::new()
                .description(Some("`POST /users/edit`: removals, then additions, on the running core (`add_users`/`del_users` are accepted too)."))
                .property("addUsers", array_of(reference("WireUser"), "Users to add (adding one the core has is success)."))
                .property("delUsers", array_of(string("A user id."), "Ids of users to remove (removing a missing one is success)."))
                .into(),
        ),
    ]
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
        let links: [(&str, HttpMethod, Option<&str>, Option<&str>); 4] = [
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
                None,
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

/// Adds [`DOCUMENT_PATH`] and [`UI_PATH`] themselves to `doc` (no handler
/// annotation describes them), under `tag` when given, for a document
/// served on the same port as its API (the manager's).
pub fn describe_docs_routes(doc: &mut Document, tag: Option<&str>, document_summary: &str) {
    let operation = || {
        let builder = OperationBuilder::new();
        match tag {
            Some(tag) => builder.tag(tag),
            None => builder,
        }
    };
    doc.paths.add_path_operation(
        DOCUMENT_PATH,
        vec![HttpMethod::Get],
        operation().summary(Some(document_summary)).response(
            "200",
            ResponseBuilder::new().description("the document").content(
                "application/json",
                Content::new(Some(ObjectBuilder::new().schema_type(Type::Object))),
            ),
        ),
    );
    doc.paths.add_path_operation(
        UI_PATH,
        vec![HttpMethod::Get],
        operation()
            .summary(Some(
                "Swagger UI over this document (assets under `/docs/`)",
            ))
            .response(
                "303",
                ResponseBuilder::new().description("redirect to `/docs/`, the UI's page"),
            ),
    );
}
