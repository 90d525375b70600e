//! Run with: cargo +nightly fuzz run node_api   (from the repo's fuzz/ folder)
//!
//! Feeds the node agent's real router (the in-memory service backend and a
//! core that accepts everything) either an arbitrary token, or an arbitrary body sealed with
//! the node's own key, on an arbitrary method and path. Checks what the
//! node's property tests check: an unsealed or foreign token is a bare 401;
//! a sealed request gets a documented status whose answer opens for that
//! request; nothing panics.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arbitrary::Arbitrary;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use libfuzzer_sys::fuzz_target;
use node_agent_lib::agent::{Agent, AgentOptions};
use node_agent_lib::api::{AppState, router};
use node_agent_lib::config::CoreConfig;
use node_agent_lib::core::{CoreApi, CoreError, CoreUser, Flavor};
use node_agent_lib::envelope::{self, NodeKey};
use node_agent_lib::service::memory::MemoryService;
use tower::ServiceExt as _;

#[derive(Debug)]
struct AcceptAll;

#[async_trait::async_trait]
impl CoreApi for AcceptAll {
    async fn add_user(&self, _: &str, _: &CoreUser) -> Result<(), CoreError> {
        Ok(())
    }
    async fn remove_user(&self, _: &str, _: &str) -> Result<(), CoreError> {
        Ok(())
    }
    async fn users_count(&self, _: &str) -> Result<Option<u64>, CoreError> {
        Ok(None)
    }
    async fn uptime_secs(&self) -> Result<u32, CoreError> {
        Ok(1)
    }

    async fn take_user_traffic(&self) -> Result<Vec<(String, u64, u64)>, CoreError> {
        Ok(Vec::new())
    }
}

const BASE_CONFIG: &str = r#"{"api":{"tag":"api","services":["HandlerService","StatsService"]},
 "stats":{},"inbounds":[
 {"tag":"api","listen":"127.0.0.1","port":9,"protocol":"dokodemo-door","settings":{"address":"127.0.0.1"}},
 {"tag":"vless-in","listen":"127.0.0.1","port":1,"protocol":"vless","settings":{"decryption":"none"}}],
 "outbounds":[{"protocol":"freedom"}]}"#;

struct World {
    rt: tokio::runtime::Runtime,
    router: Router,
    key: NodeKey,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = CoreConfig::parse(BASE_CONFIG, Flavor::Xray, "").unwrap();
        let mut options = AgentOptions::new(dir.path().join("core.json"));
        options.user_config_template = "vless://{{.UserID}}@n:443".into();
        let agent = Arc::new(Agent::new(Arc::new(MemoryService::new()), Arc::new(AcceptAll), config, options));
        let key = NodeKey::random();
        let router = router(Arc::new(AppState::new(agent, key.clone())));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        World { rt, router, key, _dir: dir }
    })
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any text as the token.
    Token { method: u8, path: String, token: String },
    /// Any body, sealed with the node's key for `method path`.
    Sealed { method: u8, path: String, body: Vec<u8> },
}

const METHODS: [&str; 3] = ["GET", "POST", "PUT"];
const PATHS: [&str; 4] = ["/start", "/stop", "/status", "/users/edit"];

/// The header token in `Authorization`, the sealed body (if any) with its
/// exact `Content-Length`.
fn request(method: &str, path: &str, token: &str, body: Vec<u8>) -> Option<Request<Body>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("JWE {token}"))
        .header(header::CONTENT_TYPE, "application/jose")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .ok()
}

fn pick_path(path: &str) -> String {
    // Mostly the real routes, sometimes the fuzzer's own path.
    match path.len() % 5 {
        n @ 0..=3 => PATHS[n].to_owned(),
        _ => format!("/{}", path.trim_start_matches('/')),
    }
}

fuzz_target!(|input: Input| {
    let w = world();
    match input {
        Input::Token { method, path, token } => {
            let method = METHODS[usize::from(method) % METHODS.len()];
            let path = pick_path(&path);
            let Some(req) = request(method, &path, &token, Vec::new()) else { return };
            let response = w.rt.block_on(w.router.clone().oneshot(req)).unwrap();
            let status = response.status().as_u16();
            // Random text is never a valid token: 401, or 404/405 for routes
            // that do not exist.
            assert!([401, 404, 405].contains(&status), "status {status} for a random token");
        }
        Input::Sealed { method, path, body } => {
            let method = METHODS[usize::from(method) % METHODS.len()];
            let path = pick_path(&path);
            // Only paths that reach the node as written (no query, nothing
            // the URI parser rewrites): the token is bound to the path.
            if path
                .parse::<axum::http::Uri>()
                .map_or(true, |uri| uri.path() != path || uri.query().is_some())
            {
                return;
            }
            let sealed =
                envelope::seal_request(&w.key, method, &path, &body, SystemTime::now()).unwrap();
            let Some(req) = request(method, &path, &sealed.token, sealed.body) else { return };
            let response = w.rt.block_on(w.router.clone().oneshot(req)).unwrap();
            let status = response.status().as_u16();
            assert!(
                [200, 400, 404, 405, 500, 503].contains(&status),
                "undocumented status {status} for {method} {path:?} body {} bytes",
                body.len()
            );
            if PATHS.contains(&path.as_str()) && [200, 400, 500, 503].contains(&status) {
                let raw = w
                    .rt
                    .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
                    .unwrap();
                let text = std::str::from_utf8(&raw).expect("a sealed answer is text");
                envelope::open_response(&w.key, text, &sealed.jti, status)
                    .expect("the answer is sealed for this request");
            }
        }
    }
});
