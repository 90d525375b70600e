//! The tokens and audit part of the `Storage` conformance suite: tokens
//! stored with their verifier, unique names, idempotent revocation; audit
//! entries listed newest first, filtered, paged and purged.

use std::collections::HashSet;

use crate::domain::{
    AuditQuery, IssuedToken, NewAuditEntry, NewToken, PresentedToken, Role, Timestamp, TokenId,
};
use crate::storage::{Entity, Storage, StorageError};

use super::assert_not_found;

fn issue(name: &str, role: Role, created: i64) -> IssuedToken {
    IssuedToken::issue(
        NewToken::new(name, role, Some(Timestamp(created + 1000))).unwrap(),
        Timestamp(created),
    )
}

fn entry(at: i64, actor: &str, call: &str, target: Option<&str>, result: u16) -> NewAuditEntry {
    NewAuditEntry {
        at: Timestamp(at),
        actor: actor.into(),
        call: call.into(),
        target: target.map(Into::into),
        result,
    }
}

pub async fn tokens_round_trip_with_their_verifier(s: &dyn Storage) {
    let b = issue("b-token", Role::Users, 20);
    let a = issue("a-token", Role::ReadOnly, 10);
    s.create_token(&b.token, &b.verifier).await.unwrap();
    s.create_token(&a.token, &a.verifier).await.unwrap();
    let (got, verifier) = s.get_token(a.token.id).await.unwrap();
    assert_eq!(got, a.token);
    assert_eq!(verifier, a.verifier);
    let presented = PresentedToken::parse(&a.text()).unwrap();
    assert!(verifier.verifies(&presented));
    assert!(
        !s.get_token(b.token.id)
            .await
            .unwrap()
            .1
            .verifies(&presented)
    );
    let listed = s.list_tokens().await.unwrap();
    assert_eq!(listed, [a.token, b.token], "oldest first");
}

pub async fn token_names_and_ids_are_unique_and_a_clash_writes_nothing(s: &dyn Storage) {
    let first = issue("ops", Role::Admin, 10);
    s.create_token(&first.token, &first.verifier).await.unwrap();
    s.revoke_token(first.token.id, Timestamp(11)).await.unwrap();
    let same_name = issue("ops", Role::ReadOnly, 12);
    let clash = s.create_token(&same_name.token, &same_name.verifier).await;
    assert!(
        matches!(clash, Err(StorageError::AlreadyExists(Entity::Token))),
        "a revoked token's name stays taken: {clash:?}"
    );
    assert_not_found(s.get_token(same_name.token.id).await, Entity::Token);
    let mut same_id = issue("other", Role::ReadOnly, 13);
    same_id.token.id = first.token.id;
    let clash = s.create_token(&same_id.token, &same_id.verifier).await;
    assert!(matches!(
        clash,
        Err(StorageError::AlreadyExists(Entity::Token))
    ));
    assert_eq!(s.list_tokens().await.unwrap().len(), 1);
    assert_eq!(s.get_token(first.token.id).await.unwrap().0.name, "ops");
}

pub async fn revoking_a_token_is_idempotent_and_keeps_the_first_time(s: &dyn Storage) {
    let t = issue("ci", Role::Users, 10);
    s.create_token(&t.token, &t.verifier).await.unwrap();
    let revoked = s.revoke_token(t.token.id, Timestamp(50)).await.unwrap();
    assert_eq!(revoked.revoked, Some(Timestamp(50)));
    let again = s.revoke_token(t.token.id, Timestamp(90)).await.unwrap();
    assert_eq!(again.revoked, Some(Timestamp(50)));
    assert_eq!(s.get_token(t.token.id).await.unwrap().0, again);
    assert!(!again.is_usable(Timestamp(51)));
    assert_not_found(
        s.revoke_token(TokenId::random(), Timestamp(1)).await,
        Entity::Token,
    );
    assert_not_found(s.get_token(TokenId::random()).await, Entity::Token);
}

pub async fn audit_entries_are_listed_newest_first_and_filtered(s: &dyn Storage) {
    let u = "6f1c7f3e-9a59-4c1a-9d8e-4f0c2b7a1d22";
    let stored = [
        entry(100, "bootstrap", "POST /user/new", Some(u), 200),
        entry(200, "ci", "POST /user/enable", Some(u), 200),
        entry(300, "ci", "POST /node/start", None, 403),
        entry(400, "ops", "POST /user/enable", Some(u), 400),
    ];
    let mut ids = Vec::new();
    for e in &stored {
        let got = s.append_audit(e).await.unwrap();
        assert_eq!((got.at, &got.actor, got.result), (e.at, &e.actor, e.result));
        ids.push(got.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    let list = |q: AuditQuery| async move {
        let page = s.list_audit(&AuditQuery { limit: 100, ..q }).await.unwrap();
        assert_eq!(page.next, None);
        page.items.iter().map(|e| e.at.0).collect::<Vec<_>>()
    };
    assert_eq!(list(AuditQuery::default()).await, [400, 300, 200, 100]);
    let actor = Some("ci".to_owned());
    assert_eq!(
        list(AuditQuery {
            actor,
            ..Default::default()
        })
        .await,
        [300, 200]
    );
    let call = Some("POST /user/enable".to_owned());
    assert_eq!(
        list(AuditQuery {
            call,
            ..Default::default()
        })
        .await,
        [400, 200]
    );
    let target = Some(u.to_owned());
    assert_eq!(
        list(AuditQuery {
            target,
            ..Default::default()
        })
        .await,
        [400, 200, 100]
    );
    let (from, to) = (Some(Timestamp(200)), Some(Timestamp(400)));
    assert_eq!(
        list(AuditQuery {
            from,
            to,
            ..Default::default()
        })
        .await,
        [300, 200]
    );
    let everything = list(AuditQuery {
        actor: Some("ci".into()),
        call: Some("POST /node/start".into()),
        ..Default::default()
    });
    assert_eq!(everything.await, [300]);
    let nobody = Some("nobody".to_owned());
    assert!(
        list(AuditQuery {
            actor: nobody,
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

pub async fn audit_pages_visit_every_entry_once(s: &dyn Storage) {
    for at in 0..25 {
        let actor = if at % 2 == 0 { "even" } else { "odd" };
        s.append_audit(&entry(at, actor, "POST /user/new", None, 200))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut query = AuditQuery {
        actor: Some("even".into()),
        limit: 4,
        ..Default::default()
    };
    loop {
        let page = s.list_audit(&query).await.unwrap();
        assert!(page.items.len() <= 4);
        seen.extend(page.items.iter().map(|e| e.at.0));
        match page.next {
            Some(next) => query.before = Some(next.parse().unwrap()),
            None => break,
        }
    }
    let want: Vec<i64> = (0..25).rev().filter(|at| at % 2 == 0).collect();
    assert_eq!(seen, want);
}

pub async fn audit_purge_drops_only_older_entries(s: &dyn Storage) {
    for at in [10, 20, 30] {
        s.append_audit(&entry(at, "a", "POST /user/new", None, 200))
            .await
            .unwrap();
    }
    assert_eq!(s.purge_audit(Timestamp(20)).await.unwrap(), 1);
    assert_eq!(s.purge_audit(Timestamp(20)).await.unwrap(), 0);
    let left = s
        .list_audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ats: Vec<i64> = left.items.iter().map(|e| e.at.0).collect();
    assert_eq!(ats, [30, 20]);
}

pub async fn concurrent_audit_appends_all_land_with_distinct_ids(s: &dyn Storage) {
    let entries: Vec<_> = (0..40)
        .map(|n| entry(n, "c", "POST /user/new", None, 200))
        .collect();
    let stored = futures::future::join_all(entries.iter().map(|e| s.append_audit(e))).await;
    let ids: HashSet<i64> = stored.into_iter().map(|e| e.unwrap().id).collect();
    assert_eq!(ids.len(), 40);
    let page = s
        .list_audit(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 40);
}
