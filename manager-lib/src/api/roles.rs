//! Which role each admin route needs. One table, [`ADMIN_ROLES`]: a route
//! that is not in it needs `admin` (nothing new is open to a scoped token
//! by mistake), and a test walks [`ROUTES`](super::ROUTES) to check that
//! every admin route is in it.
//!
//! - `read-only`: every admin read, except the token list and a user's
//!   subscription URL (it is the user's credential: whoever has it can
//!   use the user's nodes).
//! - `users`: that, and every change to users: create, enable, disable,
//!   delete, edit (their plans), reset usage, their subscription (read and
//!   rotate) and devices (forget one, set the limit). These are changes to
//!   one user; none touches a node.
//! - `admin`: everything, nodes and tokens included.

use crate::domain::Role;

/// (method, route template, role needed) of every admin route.
pub const ADMIN_ROLES: &[(&str, &str, Role)] = &[
    ("GET", "/nodes", Role::ReadOnly),
    ("GET", "/nodes/usage", Role::ReadOnly),
    ("GET", "/nodes/{id}", Role::ReadOnly),
    ("GET", "/users", Role::ReadOnly),
    ("GET", "/users/{id}", Role::ReadOnly),
    ("GET", "/users/{id}/usage", Role::ReadOnly),
    ("GET", "/users/{id}/devices", Role::ReadOnly),
    ("GET", "/metrics", Role::ReadOnly),
    ("GET", "/audit", Role::ReadOnly),
    ("GET", "/users/{id}/subscription", Role::Users),
    ("POST", "/user/new", Role::Users),
    ("POST", "/user/enable", Role::Users),
    ("POST", "/user/disable", Role::Users),
    ("POST", "/user/delete", Role::Users),
    ("POST", "/user/edit", Role::Users),
    ("POST", "/user/reset-usage", Role::Users),
    ("POST", "/user/subscription/rotate", Role::Users),
    ("POST", "/user/device/delete", Role::Users),
    ("POST", "/user/device-limit", Role::Users),
    ("POST", "/node/new", Role::Admin),
    ("POST", "/node/start", Role::Admin),
    ("POST", "/node/stop", Role::Admin),
    ("POST", "/node/delete", Role::Admin),
    ("POST", "/node/key/rotate", Role::Admin),
    ("POST", "/node/edit", Role::Admin),
    ("POST", "/node/profile", Role::Admin),
    ("GET", "/tokens", Role::Admin),
    ("POST", "/token/new", Role::Admin),
    ("POST", "/token/revoke", Role::Admin),
];

/// The role `method route` is listed with, or `None` when it is not.
pub fn listed_role(method: &str, route: &str) -> Option<Role> {
    ADMIN_ROLES
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map(|(_, _, role)| *role)
}

/// The role a call to `method route` needs: as listed, else `admin`.
pub fn required_role(method: &str, route: &str) -> Role {
    listed_role(method, route).unwrap_or(Role::Admin)
}
