//! A typed client for the manager's HTTP API: one method per call.

use std::fmt;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::{Settings, Token};
use super::error::CliError;

/// A node as `GET /nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub id: String,
    pub endpoint: String,
    pub actual_status: String,
    pub required_status: String,
}

/// One page of `GET /nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodesPage {
    pub nodes: Vec<NodeView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The answer to `POST /node/new`. Its `Debug` hides the key.
#[derive(Clone, Serialize, Deserialize)]
pub struct NodeCreated {
    #[serde(rename = "nodeID")]
    pub node_id: String,
    #[serde(rename = "nodeKey")]
    pub node_key: String,
}

impl fmt::Debug for NodeCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCreated")
            .field("node_id", &self.node_id)
            .field("node_key", &"<redacted>")
            .finish()
    }
}

/// A user as the API shows it; `status` and the plan and usage fields are
/// absent in `POST /user/new`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// active, limited, expired, on_hold or disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_up: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_down: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_limit: Option<u64>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_day: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_hold_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_reset_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset_at: Option<i64>,
    /// Devices that may fetch the subscription (0: no limit); absent: the
    /// manager's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_limit: Option<u32>,
}

/// An answer holding one user (`user edit`, `user show`, `user reset-usage`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserAnswer {
    pub user: UserView,
}

/// Bytes in a day (`day`, Unix seconds of its start) or through a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<i64>,
    #[serde(default, rename = "nodeID", skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    pub up: u64,
    pub down: u64,
}

/// The answer of the usage reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageAnswer {
    pub usage: Vec<UsageEntry>,
}

/// The answer to `POST /user/new`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCreated {
    pub user: UserView,
}

/// One page of `GET /users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsersPage {
    pub users: Vec<UserView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message: Option<String>,
}

/// The certificates of a PEM file (`--ca-file`): at least one.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, CliError> {
    let bad = |why: String| CliError::Usage(format!("CA file {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|_| bad("not a PEM certificate file".into()))?;
    if certificates.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certificates)
}

/// The manager's API over HTTP. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<Token>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client for the manager at `settings.url`; each call waits at most
    /// `settings.timeout` for its answer.
    pub fn new(settings: &Settings) -> Result<Self, CliError> {
        let mut base = Url::parse(&settings.url)
            .map_err(|e| CliError::Usage(format!("invalid manager URL {:?}: {e}", settings.url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(CliError::Usage(format!(
                "invalid manager URL {:?}: must be http:// or https://",
                settings.url
            )));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(CliError::Usage(format!(
                "invalid manager URL {:?}: no query or fragment allowed",
                settings.url
            )));
        }
        // Credentials in the URL would end up in error messages.
        if !base.username().is_empty() || base.password().is_some() {
            return Err(CliError::Usage(
                "invalid manager URL: credentials in the URL are not supported; use --token".into(),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("xmctl/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            http = http.tls_built_in_root_certs(false);
            for ca in read_ca_file(path)? {
                http = http.add_root_certificate(ca);
            }
        }
        let http = http
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            token: settings.token.clone(),
        })
    }

    /// The manager's base URL (never holds credentials).
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The manager's base URL, parsed (ends with `/`).
    pub(super) fn base(&self) -> &Url {
        &self.base
    }

    /// Whether an admin token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new: the URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        admin: bool,
    ) -> Result<T, CliError> {
        let shown = url.to_string();
        let mut req = self.http.request(method, url);
        if admin {
            let token = self.token.as_ref().ok_or_else(|| {
                CliError::Usage(
                    "no admin token: pass --token, set XMCTL_TOKEN, or put `token` in the config file"
                        .into(),
                )
            })?;
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    CliError::Usage("the admin token holds characters a header cannot carry".into())
                })?;
            value.set_sensitive(true);
            req = req.header(AUTHORIZATION, value);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| transport_error(&shown, e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport_error(&shown, e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                CliError::BadAnswer(format!(
                    "{status} from {shown} with a body that is not the API's: {e}"
                ))
            });
        }
        Err(status_error(status, &bytes))
    }

    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        path: &[&str],
        body: Value,
    ) -> Result<T, CliError> {
        self.call(Method::POST, self.url(path), Some(body), true)
            .await
    }

    /// `GET /health`, no token needed.
    pub async fn health(&self) -> Result<Value, CliError> {
        self.call(Method::GET, self.url(&["health"]), None, false)
            .await
    }

    /// `POST /node/new`: registers the node at `endpoint` (or returns the one
    /// already there).
    pub async fn node_new(&self, endpoint: &str) -> Result<NodeCreated, CliError> {
        self.post(&["node", "new"], json!({ "endpoint": endpoint }))
            .await
    }

    /// `POST /node/start`.
    pub async fn node_start(&self, id: &str) -> Result<Value, CliError> {
        self.post(&["node", "start"], json!({ "nodeID": id })).await
    }

    /// `POST /node/stop`.
    pub async fn node_stop(&self, id: &str) -> Result<Value, CliError> {
        self.post(&["node", "stop"], json!({ "nodeID": id })).await
    }

    /// `POST /node/delete`.
    pub async fn node_delete(&self, id: &str) -> Result<Value, CliError> {
        self.post(&["node", "delete"], json!({ "nodeID": id }))
            .await
    }

    /// One page of `GET /nodes`.
    pub async fn nodes_page(&self, limit: u32, after: Option<&str>) -> Result<NodesPage, CliError> {
        let url = page_url(self.url(&["nodes"]), limit, after);
        self.call(Method::GET, url, None, true).await
    }

    /// Every node, following `next` until the last page.
    pub async fn all_nodes(&self, page_size: u32) -> Result<Vec<NodeView>, CliError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.nodes_page(page_size, after.as_deref()).await?;
            all.extend(page.nodes);
            match next_cursor(after.as_deref(), page.next)? {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// `POST /user/new`: a new, disabled user, with the plan `fields`
    /// (see `plan::PlanArgs::fields`).
    pub async fn user_new(
        &self,
        name: &str,
        fields: serde_json::Map<String, Value>,
    ) -> Result<UserCreated, CliError> {
        let mut body = fields;
        body.insert("userName".into(), json!(name));
        self.post(&["user", "new"], Value::Object(body)).await
    }

    /// `POST /user/edit`: changes the plan `fields` given.
    pub async fn user_edit(
        &self,
        id: &str,
        fields: serde_json::Map<String, Value>,
    ) -> Result<UserAnswer, CliError> {
        let mut body = fields;
        body.insert("userID".into(), json!(id));
        self.post(&["user", "edit"], Value::Object(body)).await
    }

    /// `GET /users/{id}`.
    pub async fn user_get(&self, id: &str) -> Result<UserAnswer, CliError> {
        self.call(Method::GET, self.url(&["users", id]), None, true)
            .await
    }

    /// `POST /user/reset-usage`.
    pub async fn user_reset_usage(&self, id: &str) -> Result<UserAnswer, CliError> {
        self.post(&["user", "reset-usage"], json!({ "userID": id }))
            .await
    }

    /// `GET /users/{id}/usage?<range>&group=<by>`.
    pub async fn user_usage(
        &self,
        id: &str,
        range: &str,
        by: &str,
    ) -> Result<UsageAnswer, CliError> {
        let mut url = self.url(&["users", id, "usage"]);
        url.set_query(Some(&join_query(range, &format!("group={by}"))));
        self.call(Method::GET, url, None, true).await
    }

    /// `GET /nodes/usage?<range>`.
    pub async fn nodes_usage(&self, range: &str) -> Result<UsageAnswer, CliError> {
        let mut url = self.url(&["nodes", "usage"]);
        if !range.is_empty() {
            url.set_query(Some(range));
        }
        self.call(Method::GET, url, None, true).await
    }

    /// `POST /node/edit` with a traffic multiplier.
    pub async fn node_multiplier(&self, id: &str, value: f64) -> Result<Value, CliError> {
        self.post(
            &["node", "edit"],
            json!({ "nodeID": id, "trafficMultiplier": value }),
        )
        .await
    }

    /// `POST /user/enable`.
    pub async fn user_enable(&self, id: &str) -> Result<Value, CliError> {
        self.post(&["user", "enable"], json!({ "userID": id }))
            .await
    }

    /// `POST /user/disable`.
    pub async fn user_disable(&self, id: &str) -> Result<Value, CliError> {
        self.post(&["user", "disable"], json!({ "userID": id }))
            .await
    }

    /// `POST /user/delete`.
    pub async fn user_delete(&self, id: &str) -> Result<Value, CliError> {
        self.post(&["user", "delete"], json!({ "userID": id }))
            .await
    }

    /// One page of `GET /users`.
    pub async fn users_page(&self, limit: u32, after: Option<&str>) -> Result<UsersPage, CliError> {
        let url = page_url(self.url(&["users"]), limit, after);
        self.call(Method::GET, url, None, true).await
    }

    /// Every user, following `next` until the last page.
    pub async fn all_users(&self, page_size: u32) -> Result<Vec<UserView>, CliError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.users_page(page_size, after.as_deref()).await?;
            all.extend(page.users);
            match next_cursor(after.as_deref(), page.next)? {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// `GET /user/{id}-{name}/nodes`: the user's connection links. Needs no
    /// token: knowing the id–name pair is the authorisation.
    pub async fn user_nodes(&self, id: &str, name: &str) -> Result<Vec<String>, CliError> {
        let id_name = format!("{id}-{name}");
        let url = self.url(&["user", &id_name, "nodes"]);
        self.call(Method::GET, url, None, false).await
    }
}

fn join_query(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}&{b}"),
    }
}

fn page_url(mut url: Url, limit: u32, after: Option<&str>) -> Url {
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("limit", &limit.to_string());
        if let Some(after) = after {
            q.append_pair("after", after);
        }
    }
    url
}

/// The cursor for the next page, or `None` at the end. A manager that hands
/// back the cursor it was given would loop forever: that is a bad answer.
fn next_cursor(current: Option<&str>, next: Option<String>) -> Result<Option<String>, CliError> {
    match next {
        Some(n) if n.is_empty() => Ok(None),
        Some(n) if Some(n.as_str()) == current => Err(CliError::BadAnswer(format!(
            "the page after {n:?} points back to itself"
        ))),
        other => Ok(other),
    }
}

fn transport_error(url: &str, e: reqwest::Error) -> CliError {
    let reason = if e.is_timeout() {
        "no answer in time (see --timeout)".to_owned()
    } else if e.is_connect() {
        let mut reason = "connection failed".to_owned();
        let mut source = std::error::Error::source(&e);
        // The innermost cause ("Connection refused") is what helps.
        while let Some(s) = source {
            reason = format!("connection failed: {s}");
            source = s.source();
        }
        reason
    } else {
        e.without_url().to_string()
    };
    CliError::Unreachable {
        url: url.to_owned(),
        reason,
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> CliError {
    if status == StatusCode::UNAUTHORIZED {
        return CliError::Unauthorized;
    }
    let (error, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (b.error, b.message),
        Err(_) => (
            status.canonical_reason().unwrap_or("error").to_lowercase(),
            None,
        ),
    };
    let code = status.as_u16();
    if status.is_client_error() {
        CliError::Rejected {
            status: code,
            error,
            message,
        }
    } else if status.is_server_error() {
        CliError::Server {
            status: code,
            error,
            message,
        }
    } else {
        CliError::BadAnswer(format!("unexpected status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<Client, CliError> {
        Client::new(&Settings {
            url: url.into(),
            token: Some(Token::new("secret-token")),
            timeout: Duration::from_secs(1),
            ca_file: None,
        })
    }

    #[test]
    fn urls_keep_a_path_prefix_and_escape_the_user_name() {
        let c = client("http://127.0.0.1:9/prefix").expect("valid");
        assert_eq!(
            c.url(&["node", "new"]).as_str(),
            "http://127.0.0.1:9/prefix/node/new"
        );
        assert_eq!(
            c.url(&["user", "id-1-a b/c?", "nodes"]).as_str(),
            "http://127.0.0.1:9/prefix/user/id-1-a%20b%2Fc%3F/nodes"
        );
        let root = client("http://127.0.0.1:9").expect("valid");
        assert_eq!(root.url(&["health"]).as_str(), "http://127.0.0.1:9/health");
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        for bad in [
            "not a url",
            "ftp://x/",
            "mailto:a@b",
            "http://u:p@host/",
            "http://h/?q=1",
        ] {
            let err = client(bad).expect_err(bad);
            assert_eq!(err.exit_code(), 1, "{bad}");
        }
    }

    #[test]
    fn client_debug_hides_the_token() {
        let c = client("http://127.0.0.1:9").expect("valid");
        assert!(!format!("{c:?}").contains("secret-token"));
    }

    #[test]
    fn error_answers_map_by_status() {
        let body = br#"{"error":"user not exists"}"#;
        let e = status_error(StatusCode::BAD_REQUEST, body);
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.api_error(), Some("user not exists"));
        assert_eq!(status_error(StatusCode::UNAUTHORIZED, body).exit_code(), 3);
        let e = status_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(e.exit_code(), 5);
        assert_eq!(e.api_error(), Some("bad gateway"));
    }

    #[test]
    fn a_cursor_pointing_to_itself_is_refused() {
        assert!(next_cursor(Some("a"), Some("a".into())).is_err());
        assert_eq!(
            next_cursor(Some("a"), Some("b".into())).ok().flatten(),
            Some("b".into())
        );
        assert_eq!(next_cursor(Some("a"), None).ok().flatten(), None);
    }
}
