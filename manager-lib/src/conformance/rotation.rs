//! The node key rotation part of the `Storage` conformance suite: a key is
//! pending until confirmed, then becomes the node's key with the old one
//! kept as previous until its grace ends; one pending key at a time; a
//! confirmation of another key (or a repeated one) changes nothing.

use std::time::Duration;

use crate::domain::{NewNode, NodeId, NodeKey, Timestamp};
use crate::storage::{Entity, Storage, StorageError};

const GRACE: Duration = Duration::from_secs(3600);

async fn node(s: &dyn Storage, n: u32) -> crate::domain::Node {
    let new = NewNode::new(format!("http://10.8.0.{n}:8443")).expect("valid endpoint");
    s.create_node(new).await.expect("create node")
}

pub async fn key_rotation_is_pending_until_confirmed(s: &dyn Storage) {
    let stored = node(s, 1).await;
    let other = node(s, 2).await;
    let new = NodeKey::random();
    let asked = s
        .request_key_rotation(stored.id, &new, GRACE, Timestamp(1_000))
        .await
        .unwrap();
    assert_eq!(asked.pending.as_ref(), Some(&new));
    assert_eq!(asked.grace, GRACE);
    assert_eq!(asked.requested_at, Timestamp(1_000));
    assert_eq!(asked.previous, None);
    assert_eq!(
        s.key_rotation(stored.id).await.unwrap(),
        Some(asked.clone())
    );
    assert_eq!(s.pending_key_rotations().await.unwrap(), vec![asked]);
    assert_eq!(s.key_rotation(other.id).await.unwrap(), None);
    assert_eq!(s.get_node(stored.id).await.unwrap().key, stored.key);

    let switched = s
        .confirm_key_rotation(stored.id, &new, Timestamp(2_000))
        .await
        .unwrap()
        .expect("the pending key is confirmed");
    assert_eq!(switched.key, new);
    assert_eq!(s.get_node(stored.id).await.unwrap().key, new);
    let after = s.key_rotation(stored.id).await.unwrap().unwrap();
    assert_eq!(after.pending, None);
    assert_eq!(
        after.previous,
        Some((stored.key.clone(), Timestamp(2_000 + 3_600_000)))
    );
    assert!(s.pending_key_rotations().await.unwrap().is_empty());
    assert_eq!(s.get_node(other.id).await.unwrap().key, other.key);
}

pub async fn a_second_rotation_while_one_is_pending_is_refused_and_writes_nothing(s: &dyn Storage) {
    let stored = node(s, 1).await;
    let first = NodeKey::random();
    let asked = s
        .request_key_rotation(stored.id, &first, GRACE, Timestamp(1))
        .await
        .unwrap();
    let refused = s
        .request_key_rotation(stored.id, &NodeKey::random(), GRACE, Timestamp(2))
        .await;
    assert!(
        matches!(
            refused,
            Err(StorageError::AlreadyExists(Entity::KeyRotation))
        ),
        "{refused:?}"
    );
    assert_eq!(s.key_rotation(stored.id).await.unwrap(), Some(asked));

    // Once confirmed, the next rotation may start; the previous key stays.
    s.confirm_key_rotation(stored.id, &first, Timestamp(3))
        .await
        .unwrap()
        .unwrap();
    let second = NodeKey::random();
    let next = s
        .request_key_rotation(stored.id, &second, Duration::ZERO, Timestamp(4))
        .await
        .unwrap();
    assert_eq!(next.pending, Some(second));
    assert_eq!(next.grace, Duration::ZERO);
    assert_eq!(next.previous, Some((stored.key, Timestamp(3 + 3_600_000))));
}

pub async fn confirming_another_key_or_twice_changes_nothing(s: &dyn Storage) {
    let stored = node(s, 1).await;
    let new = NodeKey::random();
    assert_eq!(
        s.confirm_key_rotation(stored.id, &new, Timestamp(1))
            .await
            .unwrap(),
        None,
        "nothing pending"
    );
    s.request_key_rotation(stored.id, &new, GRACE, Timestamp(1))
        .await
        .unwrap();
    assert_eq!(
        s.confirm_key_rotation(stored.id, &NodeKey::random(), Timestamp(2))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.get_node(stored.id).await.unwrap().key, stored.key);
    assert!(
        s.confirm_key_rotation(stored.id, &new, Timestamp(3))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        s.confirm_key_rotation(stored.id, &new, Timestamp(4))
            .await
            .unwrap(),
        None,
        "a repeated confirmation"
    );
    let after = s.key_rotation(stored.id).await.unwrap().unwrap();
    assert_eq!(after.previous, Some((stored.key, Timestamp(3 + 3_600_000))));
}

pub async fn key_rotations_of_missing_nodes_are_not_found_and_go_with_the_node(s: &dyn Storage) {
    let missing = s
        .request_key_rotation(NodeId::random(), &NodeKey::random(), GRACE, Timestamp(1))
        .await;
    assert!(
        matches!(missing, Err(StorageError::NotFound(Entity::Node))),
        "{missing:?}"
    );
    let stored = node(s, 1).await;
    s.request_key_rotation(stored.id, &NodeKey::random(), GRACE, Timestamp(1))
        .await
        .unwrap();
    s.delete_node(stored.id).await.unwrap();
    assert_eq!(s.key_rotation(stored.id).await.unwrap(), None);
    assert!(s.pending_key_rotations().await.unwrap().is_empty());
}

pub async fn concurrent_confirmations_switch_the_key_once(s: &dyn Storage) {
    let stored = node(s, 1).await;
    let new = NodeKey::random();
    s.request_key_rotation(stored.id, &new, GRACE, Timestamp(1))
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        s.confirm_key_rotation(stored.id, &new, Timestamp(2)),
        s.confirm_key_rotation(stored.id, &new, Timestamp(2)),
    );
    let confirmed = [a.unwrap(), b.unwrap()];
    assert_eq!(confirmed.iter().filter(|c| c.is_some()).count(), 1);
    let after = s.key_rotation(stored.id).await.unwrap().unwrap();
    assert_eq!(after.previous.map(|(key, _)| key), Some(stored.key));
    assert_eq!(s.get_node(stored.id).await.unwrap().key, new);
}
