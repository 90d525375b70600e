//! The manager's HTTP API (axum), exactly as the SPEC's table, plus delete
//! calls, paging and bearer-token admin authentication.
//!
//! Every error answer is `{"error": "<stable text>", "message": "<details>"}`
//! and comes from one table, [`ApiError::status_and_text`].
//!
//! Where each part lives (imports run down this list, never back up):
//! - [`error`]: the one table from errors to status and stable text;
//! - [`client_addr`]: who a request comes from (the peer, or what trusted
//!   proxies forwarded);
//! - [`ratelimit`]: per-client token buckets and the one 429 answer (needs
//!   only [`error`] and [`client_addr`]);
//! - [`admin_auth`]: the admin bearer token and scoped tokens, and the
//!   failure budget; [`roles`]: the role each admin route needs; `audit`:
//!   the role check and the audit entry of every change;
//! - `state`: [`ApiState`], what every route reads; `extract`: the JSON
//!   body and ids a handler takes;
//! - `responses`: the error answers many routes share, described once;
//! - `handlers` (with their bodies and views) and `schemas`; `plans` (plan
//!   fields, user details, plan edits) and `usage` (usage reads);
//!   `subscription` (the user's subscription call and its headers) and
//!   `profiles` (node details and profiles, subscription URLs) and
//!   `devices` (a user's devices and device limit); `tokens` (scoped
//!   tokens and the audit log's listing); `node_keys` (node key rotation);
//! - [`openapi`]: the document generated from the handlers, and `/docs`;
//! - `router`: [`router`], [`serve`], [`serve_with`], [`ROUTES`].

pub mod admin_auth;
pub(crate) mod audit;
pub mod client_addr;
mod devices;
pub mod error;
mod extract;
mod handlers;
mod node_keys;
pub mod openapi;
mod plans;
mod profiles;
pub mod ratelimit;
mod responses;
pub mod roles;
mod router;
mod schemas;
mod state;
mod subscription;
mod tokens;
mod usage;

pub use error::{ApiError, ErrorBody};
pub use extract::JsonBody;
pub use handlers::DEFAULT_PAGE;
pub(crate) use router::router_with;
pub use router::{MAX_BODY_BYTES, ROUTES, route_of, router, serve, serve_with, template_of};
pub use state::ApiState;
