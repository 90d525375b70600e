//! The web dashboard under `/ui/`: server-rendered HTML the manager serves
//! itself, for an operator's browser. It calls the [`Manager`] (the service
//! the API's handlers call), never the API over HTTP.
//!
//! Written with `maud` rather than `askama`: the crate already renders the
//! subscription page with it, so no second template engine; templates are
//! Rust checked at compile time and every value is escaped unless wrapped in
//! `PreEscaped` (only our own SVG is). No front-end toolchain and nothing
//! from outside the server: one CSS and one script file of our own, built in
//! ([`assets`]).
//!
//! Where each part lives (imports run down this list, never back up):
//! - [`assets`]: the style sheet and the script, with their hashed URLs;
//! - `format`: numbers in human units (GiB, ages, dates);
//! - `layout`: the page shell (navigation, log-out form) and error pages;
//! - `csrf`: the form token and the Origin check;
//! - `session`: the `xm_session` cookie, login and logout, and the
//!   `Session` every page takes;
//! - `change`: one dashboard change = the API call's role check and audit;
//! - `charts`: bar charts as SVG;
//! - `node_events`: a node's recent heartbeat events as a table;
//! - `jobs`: bulk jobs over a whole filter result, run in the process;
//! - `overview`, `nodes`, `users` (the table, bulk actions on a
//!   selection), `bulk_all` (a bulk action on a filter result: its
//!   confirmation and the job's page), `user` (a user's page): the pages.

pub mod assets;
mod bulk_all;
mod change;
mod charts;
mod csrf;
mod format;
mod jobs;
mod layout;
mod node_events;
mod nodes;
mod overview;
mod session;
mod user;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::api::ApiState;
use crate::api::admin_auth::AdminAuth;
use crate::manager::Manager;

/// Every dashboard route (method, path template). Not API routes: they are
/// kept out of the OpenAPI document and [`crate::api::ROUTES`], and
/// [`route_of`] maps a path to one of these for logs and metrics.
pub const UI_ROUTES: &[(&str, &str)] = &[
    ("GET", "/ui/"),
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
    ("POST", "/ui/logout"),
    ("GET", "/ui/overview/fragment"),
    ("GET", "/ui/nodes"),
    ("GET", "/ui/nodes/new"),
    ("POST", "/ui/nodes/new"),
    ("GET", "/ui/nodes/{id}"),
    ("POST", "/ui/nodes/{id}/start"),
    ("POST", "/ui/nodes/{id}/stop"),
    ("GET", "/ui/nodes/{id}/delete"),
    ("POST", "/ui/nodes/{id}/delete"),
    ("GET", "/ui/users"),
    ("GET", "/ui/users/new"),
    ("POST", "/ui/users/new"),
    ("POST", "/ui/users/bulk"),
    ("GET", "/ui/users/all"),
    ("POST", "/ui/users/all"),
    ("GET", "/ui/jobs/{id}"),
    ("GET", "/ui/jobs/{id}/fragment"),
    ("POST", "/ui/jobs/{id}/cancel"),
    ("GET", "/ui/users/{id}"),
    ("POST", "/ui/users/{id}/enable"),
    ("POST", "/ui/users/{id}/disable"),
    ("GET", "/ui/users/{id}/delete"),
    ("POST", "/ui/users/{id}/delete"),
    ("POST", "/ui/users/{id}/rotate"),
    ("POST", "/ui/users/{id}/plan"),
    ("POST", "/ui/users/{id}/devices/forget"),
    ("GET", "/ui/assets/{file}"),
];

/// The route template of [`UI_ROUTES`] that `path` names (a placeholder
/// matches one non-empty segment), or `None`.
pub fn route_of(path: &str) -> Option<&'static str> {
    crate::api::template_of(path, UI_ROUTES.iter().map(|(_, template)| *template))
}

/// What every dashboard handler reads.
#[derive(Clone)]
pub(crate) struct UiState {
    manager: Arc<Manager>,
    auth: Arc<AdminAuth>,
    csrf: Arc<csrf::CsrfKey>,
    subscriptions: Arc<crate::subscription::Subscriptions>,
    /// The bulk jobs over filter results.
    jobs: Arc<jobs::Jobs>,
    /// The manager serves HTTPS: the session cookie is `Secure`.
    secure: bool,
}

impl std::fmt::Debug for UiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiState")
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

/// The dashboard's routes, checking sessions with `auth` (the API's admin
/// check, shared with the API's routes); `secure` when the manager serves
/// HTTPS.
pub(crate) fn router(api: &ApiState, auth: Arc<AdminAuth>, secure: bool) -> Router<ApiState> {
    let state = UiState {
        manager: api.manager.clone(),
        auth,
        csrf: Arc::new(csrf::CsrfKey::random()),
        subscriptions: api.subscriptions(),
        jobs: Arc::default(),
        secure,
    };
    Router::new()
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::to("/ui/") }),
        )
        .route("/ui/", get(overview::page))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/overview/fragment", get(overview::fragment))
        .route("/ui/nodes", get(nodes::list))
        .route("/ui/nodes/new", get(nodes::new_form).post(nodes::create))
        .route("/ui/nodes/{id}", get(nodes::page))
        .route("/ui/nodes/{id}/start", post(nodes::start))
        .route("/ui/nodes/{id}/stop", post(nodes::stop))
        .route(
            "/ui/nodes/{id}/delete",
            get(nodes::confirm_delete).post(nodes::delete),
        )
        .route("/ui/users", get(users::list))
        .route("/ui/users/new", get(users::new_form).post(users::create))
        .route("/ui/users/bulk", post(users::bulk))
        .route(
            "/ui/users/all",
            get(bulk_all::confirm).post(bulk_all::start),
        )
        .route("/ui/jobs/{id}", get(bulk_all::page))
        .route("/ui/jobs/{id}/fragment", get(bulk_all::fragment))
        .route("/ui/jobs/{id}/cancel", post(bulk_all::cancel))
        .route("/ui/users/{id}", get(user::page))
        .route("/ui/users/{id}/enable", post(user::enable))
        .route("/ui/users/{id}/disable", post(user::disable))
        .route(
            "/ui/users/{id}/delete",
            get(user::confirm_delete).post(user::delete),
        )
        .route("/ui/users/{id}/rotate", post(user::rotate))
        .route("/ui/users/{id}/plan", post(user::plan))
        .route("/ui/users/{id}/devices/forget", post(user::forget_device))
        .route("/ui/assets/{file}", get(assets::serve))
        // brotli or gzip, as the browser asks: pages shrink about 6 to 10
        // times (the token in them is masked, see `csrf`).
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}
