//! The page shell every dashboard page shares (head, navigation, the
//! log-out form) and the error pages; with the headers every page is sent
//! with: never cached (they show the fleet and, once, a node key), never
//! framed, nothing but our own style and script may load.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use crate::domain::Role;

/// Who is logged in, as the shell shows it, and the token its forms carry.
#[derive(Clone, Debug)]
pub(super) struct Chrome {
    pub(super) actor: String,
    pub(super) role: Role,
    pub(super) csrf: String,
}

impl Chrome {
    /// The hidden field every form of the session carries.
    pub(super) fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(super::csrf::FIELD) value=(self.csrf); }
    }
}

/// The links of the navigation: (label, URL).
const NAV: &[(&str, &str)] = &[
    ("Overview", "/ui/"),
    ("Nodes", "/ui/nodes"),
    ("Users", "/ui/users"),
];

/// `Content-Security-Policy` of every page: our own files only; inline SVG
/// is markup, not a load, so the charts and QR codes need nothing more.
pub(super) const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sends `markup` as an HTML page with `status` and the dashboard's headers.
pub(super) fn send(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A whole page: `title`, the navigation when someone is logged in
/// (`current` is the active link), and `body`.
pub(super) fn page(title: &str, chrome: Option<&Chrome>, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · xray-manager" }
                link rel="icon" type="image/svg+xml" href=(assets::icon_url());
                link rel="stylesheet" href=(assets::style_url());
                script src=(assets::script_url()) defer {}
            }
            body {
                header class="top" {
                    span class="brand" { "xray-manager" }
                    @if let Some(chrome) = chrome {
                        nav aria-label="Main" {
                            @for (label, url) in NAV {
                                @if *label == current {
                                    a href=(url) aria-current="page" { (label) }
                                } @else {
                                    a href=(url) { (label) }
                                }
                            }
                        }
                        form class="logout" method="post" action="/ui/logout" {
                            (chrome.csrf_field())
                            span class="who" { (chrome.actor) " (" (chrome.role.as_str()) ")" }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// An error page: `status`, a heading and what to do.
pub(super) fn error(
    status: StatusCode,
    title: &str,
    message: &str,
    chrome: Option<&Chrome>,
) -> Response {
    let body = html! {
        p class="error" role="alert" { (message) }
        p { a href="/ui/" { "Back to the overview" } }
    };
    send(status, page(title, chrome, "", body))
}

/// What a confirmation page says and where its buttons go.
pub(super) struct Confirm<'a> {
    pub title: &'a str,
    /// The navigation entry the page belongs to.
    pub current: &'a str,
    pub question: Markup,
    /// Where the confirming form posts.
    pub action: String,
    pub cancel: String,
}

/// A page that asks before a destructive change: the question, a form
/// posting to `action` with the session's CSRF field and a "Delete" button,
/// and a "Cancel" link.
pub(super) fn confirm(chrome: &Chrome, c: Confirm<'_>) -> Response {
    let body = html! {
        p { (c.question) }
        form method="post" action=(c.action) {
            (chrome.csrf_field())
            button type="submit" class="danger" { "Delete" }
            " "
            a href=(c.cancel) { "Cancel" }
        }
    };
    send(StatusCode::OK, page(c.title, Some(chrome), c.current, body))
}
