//! The node HTTP API (axum): `POST /start`, `POST /stop`, `GET /status`,
//! `POST /users/edit`, `POST /usage`, `POST /key`, each inside the JWE
//! envelope of [`crate::envelope`] (opened under the current key, or the
//! previous one during a rotation's grace: [`crate::keyring`]).
//!
//! Where each part lives (imports run down this list, never back up):
//! - [`error`]: the one table from agent errors to status and stable text,
//!   and the bare 401 every refused call gets;
//! - `state`: [`AppState`], what every route reads;
//! - `auth`: opening each call's envelope (header before body, replay,
//!   the body as announced) and sealing its answer;
//! - `handlers`: the calls;
//! - `responses` and `schemas`: what the OpenAPI document shares between
//!   operations, and the JSON bodies' schemas;
//! - [`openapi`]: the document generated from the handlers, and its
//!   private docs listener's routes;
//! - `router`: [`router`] and [`ROUTES`].

mod auth;
pub mod error;
mod handlers;
pub mod openapi;
mod responses;
mod router;
mod schemas;
mod state;

pub use error::error_answer;
pub use router::{ROUTES, router};
pub use state::{AppState, DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT};
