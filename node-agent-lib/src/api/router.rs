//! [`router`]: the node API's routes, and [`ROUTES`], the list the OpenAPI
//! document must match.

use std::sync::Arc;

use axum::Router;
use axum::response::Response;
use axum::routing::any;

use super::error::unauthorized;
use super::handlers::{edit_users, rotate_key, start, status, stop, usage};
use super::state::AppState;

/// Every route of [`router`] (method, path), in one place: the OpenAPI
/// document must list exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/start"),
    ("POST", "/stop"),
    ("GET", "/status"),
    ("POST", "/users/edit"),
    ("POST", "/usage"),
    ("POST", "/key"),
];

/// The node API's routes; every call is JWE-only. Whatever else a peer asks
/// (another path, another method) gets the very answer of a refused
/// envelope, so an unauthenticated peer learns nothing, not even that this
/// is an agent. The API's documentation is served elsewhere
/// ([`super::openapi::docs_router`], on `docs_listen`).
pub fn router(state: Arc<AppState>) -> Router {
    // The handlers stream the body themselves, up to the length the header
    // token announced (at most `body_limit`), so no body-limit layer.
    // `any(refused)` first: a wrong method gets the bare 401, without the
    // `Allow` header a 405 would add.
    Router::new()
        .route("/start", any(refused).post(start))
        .route("/stop", any(refused).post(stop))
        .route("/status", any(refused).get(status))
        .route("/users/edit", any(refused).post(edit_users))
        .route("/usage", any(refused).post(usage))
        .route("/key", any(refused).post(rotate_key))
        .fallback(refused)
        .with_state(state)
}

/// An unknown path or method: the same bare 401 as a refused envelope.
async fn refused() -> Response {
    unauthorized()
}
