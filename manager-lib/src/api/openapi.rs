//! The manager API's OpenAPI 3 document, generated from the handlers'
//! annotations in the API's handlers, and the routes that serve it:
//! `GET /openapi.json` and a Swagger UI at `/docs` (its assets are built into
//! the binary; nothing is fetched from the network). Both are open: they
//! describe the API and reveal no data.
//!
//! ```
//! let doc = manager_lib::api::openapi::document();
//! assert!(doc.paths.paths.contains_key("/node/new"));
//! ```

use axum::Router;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document};

use super::handlers as api;

/// Where the document and the Swagger UI are served: the same places as
/// on the node agent.
pub use node_agent_lib::openapi::{DOCUMENT_PATH, UI_PATH};
use node_agent_lib::openapi::{describe_docs_routes, serve_document};
/// The name of the admin bearer token's security scheme.
pub const ADMIN_SCHEME: &str = "admin_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "xray-manager",
        description = "The control plane of a fleet of Xray/V2Ray nodes: nodes, users, and each user's usable node configs.\n\nAdmin calls need `Authorization: Bearer <token>`: the bootstrap admin token, or a scoped token (`POST /token/new`) whose role (`read-only`, `users`, `admin`) allows the call, else 403 `forbidden`; every change is recorded in the audit log (`GET /audit`); a client that fails it too often gets 429 `too many requests` on every admin call until its budget refills (`Retry-After`). Every error answer is `{\"error\": \"<stable text>\", \"message\": \"<details, optional>\"}`; a body that is not the expected JSON gets 400 `bad request`."
    ),
    paths(
        api::node_new,
        api::node_start,
        api::node_stop,
        api::node_delete,
        super::node_keys::node_key_rotate,
        api::nodes,
        super::plans::node_edit,
        super::usage::nodes_usage,
        api::user_new,
        api::user_enable,
        api::user_disable,
        api::user_delete,
        api::users,
        super::plans::user_edit,
        super::plans::user_reset_usage,
        super::plans::user_get,
        super::usage::user_usage,
        super::profiles::user_subscription,
        super::profiles::user_subscription_rotate,
        super::devices::user_devices,
        super::devices::user_device_delete,
        super::devices::user_device_limit,
        super::profiles::node_get,
        super::profiles::node_profile,
        super::tokens::token_new,
        super::tokens::tokens,
        super::tokens::token_revoke,
        super::tokens::audit,
        api::user_nodes,
        super::subscription::subscription,
        api::health,
    ),
    modifiers(&Operations),
    tags(
        (name = "admin", description = "Nodes and users; bearer token required"),
        (name = "user", description = "The call a user's client makes"),
        (name = "operations", description = "Health, metrics and this documentation"),
    )
)]
struct ApiDoc;

/// The manager API's OpenAPI document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// `GET /openapi.json` and the Swagger UI under `/docs`, for any router state.
pub fn docs_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    serve_document(document())
}

/// The admin token's scheme, and the routes that no handler annotation
/// describes: `/metrics` and the documentation itself.
struct Operations;

impl Modify for Operations {
    fn modify(&self, doc: &mut Document) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                ADMIN_SCHEME,
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        let text = |description: &str, content_type: &str| {
            ResponseBuilder::new().description(description).content(
                content_type,
                Content::new(Some(ObjectBuilder::new().schema_type(Type::String))),
            )
        };
        doc.paths.add_path_operation(
            "/metrics",
            vec![HttpMethod::Get],
            OperationBuilder::new()
                .tag("operations")
                .summary(Some("Prometheus metrics"))
                .description(Some(
                    "OpenMetrics text. Needs the admin token here; with `metrics_listen` set, also served without a token on that address.",
                ))
                .response(
                    "200",
                    text("the metrics", crate::metrics::CONTENT_TYPE),
                )
                .response("401", ResponseBuilder::new().description("missing, unknown, expired or revoked token"))
                .response("403", ResponseBuilder::new().description("`forbidden`: the token's role does not allow this call"))
                .response(
                    "429",
                    ResponseBuilder::new().description(
                        "this client failed the admin token too often; see `Retry-After`",
                    ),
                )
                .security(SecurityRequirement::new(ADMIN_SCHEME, Vec::<String>::new())),
        );
        describe_docs_routes(doc, Some("operations"), "This OpenAPI document");
    }
}
