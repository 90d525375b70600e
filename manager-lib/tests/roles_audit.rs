//! Scoped tokens through the real router: every admin route × every role
//! is allowed or 403 (and a 403 changes nothing), the route list and the
//! role table agree, every change is audited without secrets, and an
//! unknown, expired or revoked token is a 401 that spends the failure
//! budget.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use manager_lib::api::admin_auth::FailureLimit;
use manager_lib::api::{ROUTES, roles};
use manager_lib::domain::Role;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::{Value, json};

use common::{admin, new_user, running_node, send};

const BOOT: &str = "9b1f0c2e7d4a6b8c3e5f7a9d1c3b5e7f";

struct Fixture {
    router: Router,
    user: String,
    node: String,
    /// A token no call of the matrix uses, for `/token/revoke`.
    spare: String,
    /// (role, token text) for every role.
    tokens: Vec<(Role, String)>,
}

fn router(failures: Option<FailureLimit>, fleet: Arc<SimulatedFleet>) -> Router {
    let settings = ServerSettings {
        admin_failure_limit: failures,
        push_on_change: false,
        ..ServerSettings::new(BOOT)
    };
    Server::build(
        Backends::new(Arc::new(MemoryStorage::new()), fleet),
        settings,
    )
    .router
}

async fn make_token(router: &Router, name: &str, role: &str, expires: Option<i64>) -> Value {
    let mut body = json!({"name": name, "role": role});
    if let Some(at) = expires {
        body["expiresAt"] = json!(at);
    }
    let (status, created) = admin(router, BOOT, "POST", "/token/new", body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created
}

async fn fixture() -> Fixture {
    let fleet = Arc::new(SimulatedFleet::new());
    let router = router(None, fleet.clone());
    let node = running_node(&router, BOOT, &fleet, "http://n1").await;
    let user = new_user(&router, BOOT, "alice").await;
    let spare = make_token(&router, "spare", "read-only", None).await["tokenID"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tokens = Vec::new();
    for role in Role::ALL {
        let created = make_token(&router, role.as_str(), role.as_str(), None).await;
        tokens.push((role, created["token"].as_str().unwrap().to_owned()));
    }
    Fixture {
        router,
        user,
        node,
        spare,
        tokens,
    }
}

/// The policy, stated apart from the role table it checks: reads are
/// read-only's except the token list (admin's) and a user's subscription
/// URL (a credential: users'); user changes are users'; the rest admin's.
fn expected_role(method: &str, route: &str) -> Role {
    match (method, route) {
        (_, "/tokens") => Role::Admin,
        (_, "/users/{id}/subscription") => Role::Users,
        ("GET", _) => Role::ReadOnly,
        (_, r) if r.starts_with("/user/") => Role::Users,
        _ => Role::Admin,
    }
}

fn path_of(f: &Fixture, route: &str) -> String {
    route
        .replace("/users/{id}", &format!("/users/{}", f.user))
        .replace("/nodes/{id}", &format!("/nodes/{}", f.node))
}

/// A body every admin change reads something from.
fn body_of(f: &Fixture) -> Value {
    json!({
        "userID": f.user, "nodeID": f.node, "tokenID": f.spare,
        "userName": "bob", "endpoint": "http://n2", "name": "fresh", "role": "admin",
        "hwid": "hw-1", "deviceLimit": 3, "trafficMultiplier": 2.0, "dataLimit": 1000,
    })
}

/// Everything an admin call can change, read with the bootstrap token.
async fn snapshot(f: &Fixture) -> Vec<Value> {
    let mut all = Vec::new();
    for path in [
        "/nodes".to_owned(),
        "/users".to_owned(),
        "/tokens".to_owned(),
        format!("/users/{}", f.user),
        format!("/users/{}/subscription", f.user),
        format!("/users/{}/devices", f.user),
        format!("/nodes/{}", f.node),
    ] {
        let (status, body) = admin(&f.router, BOOT, "GET", &path, Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        all.push(body);
    }
    all
}

/// The routes behind the admin check: the ones that answer 401 without a token.
async fn admin_routes() -> Vec<(&'static str, &'static str)> {
    let f = fixture().await;
    let mut out = Vec::new();
    for &(method, route) in ROUTES {
        let (status, _) = send(&f.router, method, &path_of(&f, route), "{}", None).await;
        if status == StatusCode::UNAUTHORIZED {
            out.push((method, route));
        }
    }
    out
}

#[tokio::test]
async fn every_admin_route_has_the_role_the_policy_gives_it() {
    let routes = admin_routes().await;
    assert!(routes.len() >= 27, "{routes:?}");
    for (method, route) in routes {
        assert_eq!(
            roles::listed_role(method, route),
            Some(expected_role(method, route)),
            "{method} {route}: missing from api::roles::ADMIN_ROLES or with another role"
        );
    }
    for (method, route, _) in roles::ADMIN_ROLES {
        assert!(
            ROUTES.contains(&(*method, *route)),
            "{method} {route} has a role but is no route"
        );
    }
}

#[tokio::test]
async fn every_admin_route_and_role_is_allowed_or_forbidden_and_forbidden_changes_nothing() {
    let routes = admin_routes().await;
    let mut forbidden = 0;
    for (method, route) in routes {
        for role in Role::ALL {
            // A fresh manager per call: an allowed change must not shape the next.
            let f = fixture().await;
            let token = &f.tokens.iter().find(|(r, _)| *r == role).unwrap().1;
            let before = snapshot(&f).await;
            let body = if method == "POST" {
                body_of(&f).to_string()
            } else {
                String::new()
            };
            let (status, answer) =
                send(&f.router, method, &path_of(&f, route), &body, Some(token)).await;
            let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            let allowed = role.allows(expected_role(method, route));
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {route} as {role}"
            );
            if allowed {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {route} as {role}: {answer}"
                );
            } else {
                forbidden += 1;
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {route} as {role}");
                assert_eq!(answer["error"], "forbidden");
                let needed = expected_role(method, route).as_str();
                assert!(
                    answer["message"].as_str().unwrap().contains(needed),
                    "{answer}"
                );
                assert_eq!(
                    snapshot(&f).await,
                    before,
                    "{method} {route} as {role} changed state"
                );
            }
        }
    }
    assert!(forbidden > 20, "{forbidden}");
}

/// The audit entries of `call` by `actor`, newest first.
async fn audit_of(router: &Router, actor: &str, call: &str) -> Vec<Value> {
    let path = format!(
        "/audit?actor={actor}&call={}",
        call.replace(' ', "%20").replace('/', "%2F")
    );
    let (status, body) = admin(router, BOOT, "GET", &path, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_change_is_audited_with_its_actor_target_and_result_and_no_secret() {
    let f = fixture().await;
    let admin_token = &f.tokens[2].1;
    let changes: Vec<_> = admin_routes()
        .await
        .into_iter()
        .filter(|(m, _)| *m != "GET")
        .collect();
    assert!(changes.len() >= 17, "{changes:?}");
    for (method, route) in changes {
        let (status, _) = send(
            &f.router,
            method,
            route,
            &body_of(&f).to_string(),
            Some(admin_token),
        )
        .await;
        let call = format!("{method} {route}");
        let entries = audit_of(&f.router, "admin", &call).await;
        assert_eq!(entries.len(), 1, "{call}: {entries:?}");
        assert_eq!(entries[0]["result"], status.as_u16(), "{call}");
        assert!(entries[0]["at"].as_i64().unwrap() > 1_700_000_000, "{call}");
    }
    // Reads are not changes.
    assert!(audit_of(&f.router, "admin", "GET /users").await.is_empty());
    admin(&f.router, admin_token, "GET", "/users", Value::Null).await;
    assert!(audit_of(&f.router, "admin", "GET /users").await.is_empty());

    // The target: the id in the body, else the created object's.
    let (_, created) = admin(
        &f.router,
        BOOT,
        "POST",
        "/user/new",
        json!({"userName": "c"}),
    )
    .await;
    let id = created["user"]["id"].as_str().unwrap();
    let entries = audit_of(&f.router, "bootstrap", "POST /user/new").await;
    assert_eq!(entries[0]["target"], id);
    admin(
        &f.router,
        BOOT,
        "POST",
        "/user/enable",
        json!({"userID": id}),
    )
    .await;
    let entries = audit_of(&f.router, "bootstrap", "POST /user/enable").await;
    assert_eq!(
        (&entries[0]["target"], &entries[0]["result"]),
        (&json!(id), &json!(200))
    );
    let token = make_token(&f.router, "fresh-2", "users", None).await;
    let entries = audit_of(&f.router, "bootstrap", "POST /token/new").await;
    assert_eq!(entries[0]["target"], token["tokenID"]);

    // A forbidden change is recorded as such, with the caller's name.
    let read_only = &f.tokens[0].1;
    let (status, _) = admin(
        &f.router,
        read_only,
        "POST",
        "/user/enable",
        json!({"userID": id}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let entries = audit_of(&f.router, "read-only", "POST /user/enable").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (&entries[0]["result"], &entries[0]["target"]),
        (&json!(403), &json!(id))
    );

    // No token text, node key or subscription URL anywhere in the log.
    let (_, all) = admin(&f.router, BOOT, "GET", "/audit?limit=10000", Value::Null).await;
    let text = all.to_string();
    let (_, node) = admin(
        &f.router,
        BOOT,
        "POST",
        "/node/new",
        json!({"endpoint": "http://n1"}),
    )
    .await;
    let (_, sub) = admin(
        &f.router,
        BOOT,
        "GET",
        &format!("/users/{id}/subscription"),
        Value::Null,
    )
    .await;
    let mut secrets: Vec<String> = f.tokens.iter().map(|(_, t)| t.clone()).collect();
    secrets.push(token["token"].as_str().unwrap().to_owned());
    secrets.push(node["nodeKey"].as_str().unwrap().to_owned());
    secrets.push(BOOT.to_owned());
    for s in secrets {
        assert!(!text.contains(&s[4..]), "a secret is in the audit log");
    }
    assert!(sub.to_string().len() > 10 && !text.contains("/sub/"));
}

#[tokio::test]
async fn audit_entries_are_filtered_by_target_and_time_and_paged() {
    let f = fixture().await;
    let other = new_user(&f.router, BOOT, "carol").await;
    for id in [&f.user, &other, &f.user] {
        admin(
            &f.router,
            BOOT,
            "POST",
            "/user/enable",
            json!({"userID": id}),
        )
        .await;
    }
    let path = format!("/audit?target={}&call=POST%20%2Fuser%2Fenable", f.user);
    let (_, body) = admin(&f.router, BOOT, "GET", &path, Value::Null).await;
    assert_eq!(body["entries"].as_array().unwrap().len(), 2);
    let (_, page) = admin(&f.router, BOOT, "GET", "/audit?limit=2", Value::Null).await;
    let next = page["next"].as_i64().unwrap();
    assert!(page["entries"][0]["id"].as_i64().unwrap() > next - 1);
    let (_, older) = admin(
        &f.router,
        BOOT,
        "GET",
        &format!("/audit?limit=2&before={next}"),
        Value::Null,
    )
    .await;
    assert!(older["entries"][0]["id"].as_i64().unwrap() < next);
    let (_, future) = admin(
        &f.router,
        BOOT,
        "GET",
        "/audit?from=4000000000",
        Value::Null,
    )
    .await;
    assert!(future["entries"].as_array().unwrap().is_empty());
    let (status, _) = admin(&f.router, BOOT, "GET", "/audit?from=soon", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn unknown_expired_and_revoked_tokens_are_401_and_spend_the_failure_budget() {
    let failures = FailureLimit {
        failures: 4,
        refill_every: Duration::from_secs(3600),
        ..FailureLimit::default()
    };
    let router = router(Some(failures), Arc::new(SimulatedFleet::new()));
    let get = |token: String| {
        let router = router.clone();
        async move { send(&router, "GET", "/users", "", Some(&token)).await.0 }
    };
    let revoked = make_token(&router, "gone", "admin", None).await;
    let text = revoked["token"].as_str().unwrap().to_owned();
    assert_eq!(get(text.clone()).await, StatusCode::OK);
    admin(
        &router,
        BOOT,
        "POST",
        "/token/revoke",
        json!({"tokenID": revoked["tokenID"]}),
    )
    .await;
    assert_eq!(get(text.clone()).await, StatusCode::UNAUTHORIZED);

    let short = make_token(&router, "short", "read-only", Some(now_secs() + 2)).await;
    let short = short["token"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut polls = 0;
    while get(short.clone()).await == StatusCode::OK {
        polls += 1;
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(polls > 0, "refused before its expiry");

    // Another id with the same secret, and the right id with another secret.
    let live = make_token(&router, "live", "admin", None).await;
    let live = live["token"].as_str().unwrap().to_owned();
    let other_id = format!("xmt_{}{}", "0".repeat(32), &live[36..]);
    let mut other_secret = live.clone();
    let last = if other_secret.ends_with('A') {
        "B"
    } else {
        "A"
    };
    other_secret.replace_range(other_secret.len() - 1.., last);
    assert_eq!(get(other_id).await, StatusCode::UNAUTHORIZED);
    // Four failures so far (revoked, expired, unknown id): the fourth spends the budget.
    assert_eq!(get(other_secret).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get(live).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get(BOOT.to_owned()).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn bad_token_requests_are_refused_and_make_nothing() {
    let f = fixture().await;
    let in_past = now_secs() - 10;
    for body in [
        json!({"name": "bootstrap", "role": "admin"}),
        json!({"name": "", "role": "admin"}),
        json!({"name": "x y", "role": "admin"}),
        json!({"name": "ok", "role": "root"}),
        json!({"name": "ok", "role": "admin", "expiresAt": in_past}),
    ] {
        let (status, answer) = admin(&f.router, BOOT, "POST", "/token/new", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["error"], "invalid token", "{body}");
    }
    let (status, answer) = admin(
        &f.router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": "spare", "role": "admin"}),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]),
        (StatusCode::CONFLICT, &json!("token name taken"))
    );
    let (status, answer) = admin(
        &f.router,
        BOOT,
        "POST",
        "/token/revoke",
        json!({"tokenID": "nope"}),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]),
        (StatusCode::BAD_REQUEST, &json!("token not exists"))
    );
    let (_, listed) = admin(&f.router, BOOT, "GET", "/tokens", Value::Null).await;
    let mut names: Vec<&str> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // Made within the same millisecond, they are in id order among themselves.
    names.sort_unstable();
    assert_eq!(names, ["admin", "read-only", "spare", "users"]);
    assert!(
        !listed.to_string().contains("xmt_"),
        "the list shows no token text"
    );
}

#[tokio::test]
async fn the_heartbeat_prunes_audit_entries_past_the_retention() {
    use manager_lib::domain::{AuditQuery, NewAuditEntry, Timestamp};
    use manager_lib::manager::{Manager, ManagerSettings};
    use manager_lib::reconcile::{Reconciler, ReconcilerSettings};

    let settings = ManagerSettings {
        audit_days_kept: 2,
        ..ManagerSettings::default()
    };
    let manager = Arc::new(Manager::new(
        Arc::new(MemoryStorage::new()),
        Arc::new(SimulatedFleet::new()),
        settings,
    ));
    let day = 24 * 3600 * 1000;
    let now = Timestamp::now().0;
    for (age_days, actor) in [(3, "old"), (1, "recent")] {
        let entry = NewAuditEntry {
            at: Timestamp(now - age_days * day),
            actor: actor.into(),
            call: "POST /user/new".into(),
            target: None,
            result: 200,
        };
        manager.record_audit(&entry).await.unwrap();
    }
    Reconciler::new(manager.clone(), ReconcilerSettings::default())
        .heartbeat()
        .await;
    let left = manager
        .list_audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actors: Vec<&str> = left.items.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, ["recent"]);
}
