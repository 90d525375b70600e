//! The dashboard through the manager's real router (`oneshot`): a browser's
//! requests (form posts, the session cookie, the form token), shared by
//! the dashboard test files.
#![allow(dead_code)]

pub mod outage;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use manager_lib::manager::Manager;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::Storage;
use manager_lib::transport::simulated::SimulatedFleet;
use tower::ServiceExt as _;

pub const BOOT: &str = "9b1f0c2e7d4a6b8c3e5f7a9d1c3b5e7f";
pub const HOST: &str = "127.0.0.1:8080";

/// One answer: status, headers and the body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    pub fn set_cookie(&self) -> Option<&str> {
        self.headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
    }

    /// The form token of the page (every form of a session carries it).
    pub fn csrf(&self) -> String {
        let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]+)""#).unwrap();
        re.captures(&self.body)
            .unwrap_or_else(|| panic!("no form token on the page: {}", self.body))[1]
            .to_owned()
    }
}

/// A manager wired as `xray-manager` wires it, with a simulated fleet.
pub fn server(storage: Arc<dyn Storage>, tls: bool) -> (Router, Arc<SimulatedFleet>, Arc<Manager>) {
    let fleet = Arc::new(SimulatedFleet::new());
    let mut settings = ServerSettings {
        admin_failure_limit: None,
        push_on_change: false,
        ..ServerSettings::new(BOOT)
    };
    if tls {
        // Only read when serving: `build` just notes that it is HTTPS.
        settings.tls = Some(node_agent_lib::tls::TlsSettings {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            reload_interval_secs: 0,
        });
    }
    let backends = Backends::new(storage, fleet.clone());
    let server = Server::build(backends, settings);
    (server.router, fleet, server.manager)
}

/// Sends `method path` with an optional session `cookie` and form `body`
/// (urlencoded pairs), and `extra` headers.
pub async fn request(
    router: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let body = if method == "POST" {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        let mut encoded = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in form {
            encoded.append_pair(k, v);
        }
        encoded.finish()
    } else {
        String::new()
    };
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub async fn get(router: &Router, path: &str, cookie: Option<&str>) -> Answer {
    request(router, "GET", path, cookie, &[], &[]).await
}

pub async fn post(router: &Router, path: &str, cookie: &str, form: &[(&str, &str)]) -> Answer {
    request(router, "POST", path, Some(cookie), form, &[]).await
}

/// Logs in with `token`; the `Cookie` header value of the session.
pub async fn login(router: &Router, token: &str) -> String {
    let answer = request(router, "POST", "/ui/login", None, &[("token", token)], &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let set = answer.set_cookie().expect("a session cookie");
    set.split(';').next().unwrap().to_owned()
}

/// A session's form token, read from a page.
pub async fn csrf_of(router: &Router, cookie: &str) -> String {
    let page = get(router, "/ui/nodes", Some(cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.csrf()
}
