//! `xmctl token create|list|revoke` and `xmctl audit` against a real
//! manager served in-process: a token made with its role and expiry, used,
//! listed without its text, refused for a call above its role (exit 2),
//! revoked (exit 3 after), and the audit log filtered by actor and call.

mod common;

use common::{Harness, run_xmctl, start_manager};

/// `xmctl` with this manager's URL and `token`.
async fn as_token(h: &Harness, token: &str, args: &[&str]) -> common::Run {
    run_xmctl(
        h.home.path(),
        args,
        &[("XMCTL_URL", &h.url), ("XMCTL_TOKEN", token)],
    )
    .await
}

#[tokio::test]
async fn a_token_is_made_used_listed_refused_above_its_role_and_revoked() {
    let h = start_manager().await;
    let run = h
        .xmctl(&[
            "token",
            "create",
            "ops",
            "--role",
            "users",
            "--expires",
            "+30d",
        ])
        .await;
    run.assert_code(0);
    let text = run
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("xmt_"))
        .expect("the token is printed")
        .to_owned();
    assert!(run.stdout.contains("cannot be shown again"), "{run:?}");

    let made = as_token(&h, &text, &["user", "add", "erin", "--json"]).await;
    made.assert_code(0);
    let user = made.json()["user"]["id"].as_str().unwrap().to_owned();
    let forbidden = as_token(&h, &text, &["node", "add", "http://n1"]).await;
    forbidden.assert_code(2);
    assert!(forbidden.stderr.contains("forbidden"), "{forbidden:?}");

    let list = h.xmctl(&["token", "list", "--json"]).await;
    list.assert_code(0);
    let tokens = list.json()["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        (&tokens[0]["name"], &tokens[0]["role"]),
        (&"ops".into(), &"users".into())
    );
    let expires = tokens[0]["expires"].as_i64().unwrap() - tokens[0]["created"].as_i64().unwrap();
    assert!(
        (30 * 86_400 - 5..=30 * 86_400 + 5).contains(&expires),
        "{expires}"
    );
    assert!(!list.stdout.contains("xmt_"), "{list:?}");
    let table = h.xmctl(&["token", "list"]).await;
    assert!(
        table.stdout.contains("ops") && table.stdout.contains("active"),
        "{table:?}"
    );

    let id = tokens[0]["tokenID"].as_str().unwrap();
    h.xmctl(&["token", "revoke", id]).await.assert_code(0);
    as_token(&h, &text, &["user", "list"]).await.assert_code(3);
    let table = h.xmctl(&["token", "list"]).await;
    assert!(table.stdout.contains("revoked"), "{table:?}");

    let audit = h
        .xmctl(&[
            "audit",
            "--actor",
            "ops",
            "--call",
            "POST /user/new",
            "--json",
        ])
        .await;
    audit.assert_code(0);
    let entries = audit.json()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (&entries[0]["target"], &entries[0]["result"]),
        (&user.into(), &200.into())
    );
    let denied = h.xmctl(&["audit", "--actor", "ops", "--json"]).await.json();
    let results: Vec<_> = denied["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["result"].clone())
        .collect();
    assert_eq!(results, [403, 200], "newest first");
    let table = h
        .xmctl(&["audit", "--actor", "bootstrap", "--from", "-1h"])
        .await;
    table.assert_code(0);
    assert!(table.stdout.contains("POST /token/revoke"), "{table:?}");
}

#[tokio::test]
async fn bad_token_requests_fail_with_the_reason_and_make_nothing() {
    let h = start_manager().await;
    let bad_role = h.xmctl(&["token", "create", "x", "--role", "root"]).await;
    bad_role.assert_code(1);
    let past = h
        .xmctl(&[
            "token",
            "create",
            "x",
            "--role",
            "admin",
            "--expires",
            "1000",
        ])
        .await;
    past.assert_code(2);
    assert!(past.stderr.contains("invalid token"), "{past:?}");
    let reserved = h
        .xmctl(&["token", "create", "bootstrap", "--role", "admin"])
        .await;
    reserved.assert_code(2);
    let unknown = h
        .xmctl(&["token", "revoke", "6f1c7f3e-9a59-4c1a-9d8e-4f0c2b7a1d22"])
        .await;
    unknown.assert_code(2);
    assert!(unknown.stderr.contains("token not exists"), "{unknown:?}");
    let list = h.xmctl(&["token", "list"]).await;
    assert_eq!(list.stdout.trim(), "no tokens");
}
