//! The router: which route answers where, behind which guard (admin token,
//! rate limit, metrics), and the listener it is served on.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use super::admin_auth::{self, AdminAuth};
use super::error::ApiError;
use super::handlers::*;
use super::state::ApiState;
use super::{client_addr, ratelimit};
use super::{devices, node_keys, plans, profiles, subscription, tokens, usage};
use crate::metrics;

/// The largest request body the manager reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route of [`router`] (method, path template), in one place: the
/// OpenAPI document must list exactly these. `/metrics` is routed only with
/// [`ApiState::with_metrics`]; `/docs` also serves the UI's assets below it.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/node/new"),
    ("POST", "/node/start"),
    ("POST", "/node/stop"),
    ("POST", "/node/delete"),
    ("POST", "/node/key/rotate"),
    ("GET", "/nodes"),
    ("POST", "/node/edit"),
    ("GET", "/nodes/usage"),
    ("POST", "/user/new"),
    ("POST", "/user/enable"),
    ("POST", "/user/disable"),
    ("POST", "/user/delete"),
    ("GET", "/users"),
    ("POST", "/user/edit"),
    ("POST", "/user/reset-usage"),
    ("GET", "/users/{id}"),
    ("GET", "/users/{id}/usage"),
    ("GET", "/users/{id}/subscription"),
    ("POST", "/user/subscription/rotate"),
    ("GET", "/users/{id}/devices"),
    ("POST", "/user/device/delete"),
    ("POST", "/user/device-limit"),
    ("GET", "/nodes/{id}"),
    ("POST", "/node/profile"),
    ("POST", "/token/new"),
    ("GET", "/tokens"),
    ("POST", "/token/revoke"),
    ("GET", "/audit"),
    ("GET", "/user/{id_name}/nodes"),
    ("GET", "/sub/{token}"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
];

/// The route template of [`ROUTES`] that `path` names (placeholders match
/// one non-empty segment; everything under `/docs/` is `/docs`), or `None`.
/// For logs and labels: the raw path may hold a user's id and name, and
/// anyone can invent paths.
pub fn route_of(path: &str) -> Option<&'static str> {
    if path.starts_with("/docs/") {
        return Some("/docs");
    }
    template_of(path, ROUTES.iter().map(|(_, template)| *template))
}

/// The first of `templates` (paths whose `{placeholder}` segments match
/// one non-empty segment) that `path` names, or `None`.
pub fn template_of<'a>(
    path: &str,
    templates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let matches = |template: &str| {
        let (mut want, mut got) = (template.split('/'), path.split('/'));
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                    if g.is_empty() {
                        return false;
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    };
    templates.into_iter().find(|template| matches(template))
}

/// The manager's router, without the dashboard's pages (the server adds them).
pub fn router(state: ApiState) -> Router {
    router_with(state, |_| Router::new())
}

/// The manager's router: admin calls behind a bearer token (the bootstrap
/// one or a scoped one whose role allows the call; changes are audited), the user's
/// node-list call, the health check and the API's documentation open;
/// plus the routes `pages` makes with the router's admin check (the
/// dashboard: it shares the failure budget, the client address, the
/// metrics and the fallbacks).
pub(crate) fn router_with(
    state: ApiState,
    pages: impl FnOnce(Arc<AdminAuth>) -> Router<ApiState>,
) -> Router {
    let mut admin = Router::new()
        .route("/node/new", post(node_new))
        .route("/node/start", post(node_start))
        .route("/node/stop", post(node_stop))
        .route("/node/delete", post(node_delete))
        .route("/node/key/rotate", post(node_keys::node_key_rotate))
        .route("/nodes", get(nodes))
        .route("/node/edit", post(plans::node_edit))
        .route("/nodes/usage", get(usage::nodes_usage))
        .route("/user/new", post(user_new))
        .route("/user/enable", post(user_enable))
        .route("/user/disable", post(user_disable))
        .route("/user/delete", post(user_delete))
        .route("/users", get(users))
        .route("/user/edit", post(plans::user_edit))
        .route("/user/reset-usage", post(plans::user_reset_usage))
        .route("/users/{id}", get(plans::user_get))
        .route("/users/{id}/usage", get(usage::user_usage))
        .route("/users/{id}/subscription", get(profiles::user_subscription))
        .route(
            "/user/subscription/rotate",
            post(profiles::user_subscription_rotate),
        )
        .route("/users/{id}/devices", get(devices::user_devices))
        .route("/user/device/delete", post(devices::user_device_delete))
        .route("/user/device-limit", post(devices::user_device_limit))
        .route("/nodes/{id}", get(profiles::node_get))
        .route("/node/profile", post(profiles::node_profile))
        .route("/token/new", post(tokens::token_new))
        .route("/tokens", get(tokens::tokens))
        .route("/token/revoke", post(tokens::token_revoke))
        .route("/audit", get(tokens::audit));
    if let Some(m) = &state.metrics {
        admin = admin.route("/metrics", get(metrics::scrape).with_state(m.clone()));
    }
    let auth = Arc::new(state.admin_auth());
    let admin = admin.route_layer(middleware::from_fn_with_state(
        auth.clone(),
        admin_auth::require_admin,
    ));
    // The user calls share one per-client budget.
    let mut node_list = get(user_nodes);
    let mut sub = get(subscription::subscription);
    if let Some(limiter) = &state.rate_limiter {
        node_list = node_list.route_layer(middleware::from_fn_with_state(
            limiter.clone(),
            ratelimit::limit_by_client,
        ));
        sub = sub.route_layer(middleware::from_fn_with_state(
            limiter.clone(),
            ratelimit::limit_by_client,
        ));
    }
    let mut app = Router::new()
        .merge(admin)
        .merge(pages(auth))
        .route("/user/{id_name}/nodes", node_list)
        .route("/sub/{token}", sub)
        .route("/health", get(health))
        .merge(super::openapi::docs_router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    if let Some(m) = &state.metrics {
        app = app.layer(middleware::from_fn_with_state(
            m.clone(),
            metrics::track_requests,
        ));
    }
    // Outermost: every layer and route within sees the client's address.
    app.layer(middleware::from_fn_with_state(
        state.trusted_proxies.clone(),
        client_addr::resolve_client,
    ))
    .with_state(state)
}

/// Serves the router on `listener` until `shutdown` resolves, with each
/// peer's address known to the node-list rate limit.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = node_agent_lib::listener::ListenerSettings::default();
    serve_with(listener, router, &settings, shutdown).await
}

/// [`serve`] with the listener limits of `settings` (timeouts, connection
/// cap, header bytes, HTTP/2 limits: [`node_agent_lib::listener`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    settings: &node_agent_lib::listener::ListenerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    node_agent_lib::listener::serve(listener, router, settings, None, shutdown).await
}
