//! One change made from the dashboard is the API call it stands for: the
//! same role from [`crate::api::roles`], the same audit entry (the call as
//! the API names it, e.g. `POST /node/start`, the caller's token name, the
//! target id and the status); before either, the form's token and origin.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::session::Session;
use super::{UiState, csrf, layout};
use crate::api::ApiError;
use crate::api::audit::record;
use crate::api::roles::required_role;
use crate::manager::ManagerError;

/// A change that passed its checks; [`Change::finish`] audits its result.
pub(super) struct Change<'a> {
    st: &'a UiState,
    session: &'a Session,
    route: &'static str,
}

/// Whether the session's role may make the API call `POST route` (pages
/// leave out the buttons it may not use).
pub(super) fn may(session: &Session, route: &str) -> bool {
    session.caller.role.allows(required_role("POST", route))
}

impl<'a> Change<'a> {
    /// Checks the form (`csrf` is its hidden field; the `Origin`) and the
    /// role `POST route` needs, on `target`. A refused form is 403 and not
    /// audited (nobody's call); a refused role is 403 and audited, as the
    /// API's.
    pub(super) async fn begin(
        st: &'a UiState,
        session: &'a Session,
        headers: &HeaderMap,
        csrf_token: &str,
        route: &'static str,
        target: Option<String>,
    ) -> Result<Change<'a>, Response> {
        if !csrf::same_origin(headers) || !st.csrf.verify(&session.token, csrf_token) {
            return Err(layout::error(
                StatusCode::FORBIDDEN,
                "Refused",
                "This form is stale or came from another site; reload the page and try again. \
                 Nothing was changed.",
                Some(&session.chrome),
            ));
        }
        let needed = required_role("POST", route);
        if !session.caller.role.allows(needed) {
            let status = StatusCode::FORBIDDEN;
            record(
                &st.manager,
                &session.caller,
                format!("POST {route}"),
                target,
                status,
            )
            .await;
            return Err(layout::error(
                status,
                "Not allowed",
                &format!("This change needs the {needed} role. Nothing was changed."),
                Some(&session.chrome),
            ));
        }
        Ok(Change { st, session, route })
    }

    /// Audits the change's `result` on `target`; answers the error page
    /// when it failed.
    pub(super) async fn finish<T>(
        &self,
        result: Result<T, ManagerError>,
        target: Option<String>,
    ) -> Result<T, Response> {
        match result {
            Ok(value) => {
                self.record(StatusCode::OK, target).await;
                Ok(value)
            }
            Err(e) => {
                let e = ApiError::from(e);
                self.record(e.status_and_text().0, target).await;
                Err(failed(&e, self.session))
            }
        }
    }

    /// Audits one call of the change (a bulk action makes one per user).
    pub(super) async fn record(&self, status: StatusCode, target: Option<String>) {
        record(
            &self.st.manager,
            &self.session.caller,
            format!("POST {}", self.route),
            target,
            status,
        )
        .await;
    }
}

/// The page of a failed call: the API's status, stable text and details.
pub(super) fn failed(e: &ApiError, session: &Session) -> Response {
    let (status, text) = e.status_and_text();
    if status.is_server_error() {
        tracing::error!(error = ?e, "dashboard call failed");
    }
    let message = match e.message() {
        Some(details) => format!("{text}: {details}"),
        None => text.to_owned(),
    };
    layout::error(status, "Failed", &message, Some(&session.chrome))
}
