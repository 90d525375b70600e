//! Serving an OpenAPI document: the document at [`DOCUMENT_PATH`] and a
//! Swagger UI under [`UI_PATH`] (its assets built into the binary; nothing
//! is fetched from the network). The agent serves its own document through
//! it on a private listener (`api::openapi::docs_router`), the manager its
//! own on its API's port.

use axum::Router;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, OpenApi as Document};
use utoipa_swagger_ui::SwaggerUi;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where the Swagger UI is served.
pub const UI_PATH: &str = "/docs";

/// `doc` at [`DOCUMENT_PATH`] with the Swagger UI under [`UI_PATH`], for
/// any router state.
pub fn serve_document<S: Clone + Send + Sync + 'static>(doc: Document) -> Router<S> {
    SwaggerUi::new(UI_PATH).url(DOCUMENT_PATH, doc).into()
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
