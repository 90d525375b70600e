//! Who is logged in: the `xm_session` cookie holds the token the operator
//! typed (the bootstrap admin token or a scoped one), base64url so any
//! visible character survives the cookie's syntax; `HttpOnly` (no script
//! reads it), `SameSite=Strict` (no other site's request carries it),
//! `Path=/ui`, `Secure` when the manager serves HTTPS. Every page checks it
//! again with the API's admin check (a revoked or expired token ends the
//! session at once); no session store to keep or expire.

use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maud::html;
use serde::Deserialize;

use super::layout::{self, Chrome};
use super::{UiState, csrf};
use crate::api::admin_auth::Rejected;
use crate::api::audit::Caller;
use crate::api::client_addr::{ClientAddr, client_in};

/// The cookie's name.
pub const COOKIE: &str = "xm_session";

/// A logged-in request: who, with which token, and the page shell's view.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) caller: Caller,
    pub(super) token: String,
    pub(super) chrome: Chrome,
}

/// The session token in the request's cookies, decoded.
fn token_in(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| URL_SAFE_NO_PAD.decode(value.trim_matches('"')).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|t| !t.is_empty())
}

fn cookie(st: &UiState, value: &str, max_age: Option<u32>) -> HeaderValue {
    let mut text = format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict");
    if let Some(secs) = max_age {
        text.push_str(&format!("; Max-Age={secs}"));
    }
    if st.secure {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).expect("base64url and fixed attributes are a valid header")
}

/// The answer to a refused check: where a person can go on from it.
fn refused(st: &UiState, why: Rejected, had_cookie: bool) -> Response {
    match why {
        Rejected::Wrong => {
            let mut to_login = Redirect::to("/ui/login").into_response();
            if had_cookie {
                to_login
                    .headers_mut()
                    .insert(header::SET_COOKIE, cookie(st, "", Some(0)));
            }
            to_login
        }
        Rejected::Unavailable(e) => {
            tracing::error!(error = ?e, "dashboard session not checked");
            unavailable()
        }
        Rejected::Throttled(retry_after) => throttled(retry_after),
    }
}

fn unavailable() -> Response {
    layout::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Cannot check the token now",
        "The server cannot check tokens at the moment (its database does not answer). \
         Your token was not refused; try again in a moment.",
        None,
    )
}

fn throttled(retry_after: std::time::Duration) -> Response {
    let mut page = layout::error(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        "Too many wrong tokens came from your address; wait a minute and try again.",
        None,
    );
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    page.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    page
}

impl FromRequestParts<UiState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &UiState) -> Result<Self, Response> {
        // No cookie is someone not logged in yet, not a guess: straight to
        // the form, without spending the address's failure budget.
        let Some(token) = token_in(&parts.headers) else {
            return Err(Redirect::to("/ui/login").into_response());
        };
        let address = client_in(&parts.extensions);
        match st
            .auth
            .identify(Some(&token), address, parts.uri.path())
            .await
        {
            Ok(caller) => {
                let chrome = Chrome {
                    actor: caller.actor.clone(),
                    role: caller.role,
                    csrf: st.csrf.token(&token),
                };
                Ok(Session {
                    caller,
                    token,
                    chrome,
                })
            }
            Err(why) => Err(refused(st, why, true)),
        }
    }
}

fn login_form(message: Option<&str>) -> maud::Markup {
    let body = html! {
        @if let Some(message) = message {
            p class="error" role="alert" { (message) }
        }
        form class="login" method="post" action="/ui/login" {
            label for="token" { "Token" }
            input id="token" name="token" type="password" autocomplete="current-password" required;
            p class="hint" { "The admin token, or a scoped token (xmt_…)." }
            button type="submit" { "Log in" }
        }
    };
    layout::page("Log in", None, "", body)
}

/// `GET /ui/login`: the form.
pub(super) async fn login_page() -> Response {
    layout::send(StatusCode::OK, login_form(None))
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/login`: a right token sets the cookie and goes to the
/// overview; a wrong one is 401 ("wrong token"), a token that cannot be
/// checked now 503, too many wrong ones from the address 429.
pub(super) async fn login(
    State(st): State<UiState>,
    headers: HeaderMap,
    client: Option<Extension<ClientAddr>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !csrf::same_origin(&headers) {
        return layout::error(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was sent from another site.",
            None,
        );
    }
    let token = form.map(|Form(f)| f.token).ok().unwrap_or_default();
    let token = token.trim();
    let address = client.map(|Extension(ClientAddr(ip))| ip);
    match st.auth.identify(Some(token), address, "/ui/login").await {
        Ok(_) => {
            let mut to_overview = Redirect::to("/ui/").into_response();
            let value = URL_SAFE_NO_PAD.encode(token.as_bytes());
            to_overview
                .headers_mut()
                .insert(header::SET_COOKIE, cookie(&st, &value, None));
            to_overview
        }
        Err(Rejected::Wrong) => layout::send(
            StatusCode::UNAUTHORIZED,
            login_form(Some(
                "Wrong token: it is not the admin token nor a valid scoped token.",
            )),
        ),
        Err(why) => refused(&st, why, false),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/logout`: clears the cookie and goes to the login form. A
/// session's form token is needed (another site cannot log one out).
pub(super) async fn logout(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).ok().unwrap_or_default();
    if !csrf::same_origin(&headers) || !st.csrf.verify(&session.token, &csrf) {
        return layout::error(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form is stale or came from another site; reload the page and try again.",
            Some(&session.chrome),
        );
    }
    let mut to_login = Redirect::to("/ui/login").into_response();
    to_login
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&st, "", Some(0)));
    to_login
}
