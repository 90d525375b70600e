//! Secrets sealed at rest on SQLite: the database file holds no node key,
//! user secret or subscription key in any form, a sealed value opens only in its own row and
//! under its master key, clear values of an older database are sealed at
//! start, and a master key rotation leaves nothing under the old key.

mod common;

use common::url_in;
use manager_lib::conformance::sealed::{
    assert_no_key_in, assert_no_secret_in, assert_reads_back, assert_rotations_read_back, fill,
    fill_rotations, sealer,
};
use manager_lib::seal::{MasterKey, Sealer};
use manager_lib::storage::{Storage, StorageError};
use storage_sqlite::SqliteStorage;
use tempfile::TempDir;

fn file_bytes(dir: &TempDir) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["manager.db", "manager.db-wal"] {
        if let Ok(b) = std::fs::read(dir.path().join(name)) {
            bytes.extend(b);
        }
    }
    bytes
}

#[tokio::test]
async fn the_database_file_and_its_wal_hold_no_key_or_secret_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::random();
    let s = SqliteStorage::connect_sealed(&url_in(&dir), sealer(&key))
        .await
        .unwrap();
    let (mut nodes, users) = fill(&s).await;
    let rotation_keys = fill_rotations(&s, &mut nodes).await;
    // While open: the pages are in the WAL.
    let open = file_bytes(&dir);
    let prefix = sealer(&key).current_prefix().unwrap();
    assert!(
        open.windows(prefix.len()).any(|w| w == prefix.as_bytes()),
        "the file holds the sealed values"
    );
    assert_no_secret_in(&open, &nodes, &users);
    assert_no_key_in(&open, &rotation_keys);
    assert_reads_back(&s, &nodes, &users).await;
    assert_rotations_read_back(&s, &nodes, &rotation_keys).await;
    let pending = s.pending_operations(nodes[0].id, 100).await.unwrap();
    assert_eq!(pending.operations.len(), 6);
    for op in &pending.operations {
        let user = users.iter().find(|u| u.id == op.user.id).unwrap();
        assert_eq!(op.user.secret, user.secret);
    }
    s.close().await;
    assert_no_secret_in(&file_bytes(&dir), &nodes, &users);
    assert_no_key_in(&file_bytes(&dir), &rotation_keys);
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_row_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::connect_sealed(&url_in(&dir), sealer(&MasterKey::random()))
        .await
        .unwrap();
    let (nodes, users) = fill(&s).await;
    let raw = sqlx::SqlitePool::connect(&url_in(&dir)).await.unwrap();
    for (table, column, from, to) in [
        (
            "nodes",
            "key",
            nodes[0].id.to_string(),
            nodes[1].id.to_string(),
        ),
        (
            "users",
            "secret",
            users[0].id.to_string(),
            users[1].id.to_string(),
        ),
        (
            "users",
            "subscription_key",
            users[2].id.to_string(),
            users[3].id.to_string(),
        ),
    ] {
        sqlx::query(&format!(
            "UPDATE {table} SET {column} = (SELECT {column} FROM {table} WHERE id = ?1) \
             WHERE id = ?2"
        ))
        .bind(from)
        .bind(to)
        .execute(&raw)
        .await
        .unwrap();
    }
    raw.close().await;
    let node = s.get_node(nodes[1].id).await.unwrap_err();
    assert!(
        matches!(&node, StorageError::Corrupt(m) if m.contains("another row")),
        "{node}"
    );
    for moved in [users[1].id, users[3].id] {
        let user = s.get_user(moved).await.unwrap_err();
        assert!(matches!(user, StorageError::Corrupt(_)), "{user}");
    }
    // The rows the values came from still open.
    assert_eq!(s.get_node(nodes[0].id).await.unwrap().key, nodes[0].key);
    assert_eq!(
        s.get_user(users[0].id).await.unwrap().secret,
        users[0].secret
    );
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_with_both_key_ids_and_no_key_at_all_too() {
    let dir = tempfile::tempdir().unwrap();
    let right = MasterKey::random();
    let s = SqliteStorage::connect_sealed(&url_in(&dir), sealer(&right))
        .await
        .unwrap();
    let (nodes, _) = fill(&s).await;
    s.close().await;

    let wrong = MasterKey::random();
    let s = SqliteStorage::connect_sealed(&url_in(&dir), sealer(&wrong))
        .await
        .unwrap();
    let err = s.reseal().await.unwrap_err().to_string();
    assert!(
        err.contains(right.id()) && err.contains(wrong.id()),
        "the error names both keys: {err}"
    );
    assert!(err.contains("master_key_file"), "{err}");
    // Reads refuse too: never a garbage key.
    assert!(s.get_node(nodes[0].id).await.is_err());
    s.close().await;

    let clear = SqliteStorage::connect(&url_in(&dir)).await.unwrap();
    let err = clear.reseal().await.unwrap_err().to_string();
    assert!(err.contains("no master key was given"), "{err}");
    clear.close().await;

    // Nothing was changed by the refused starts.
    let s = SqliteStorage::connect_sealed(&url_in(&dir), sealer(&right))
        .await
        .unwrap();
    assert_eq!(s.reseal().await.unwrap(), 0);
    assert_eq!(s.get_node(nodes[0].id).await.unwrap().key, nodes[0].key);
}

#[tokio::test]
async fn clear_values_of_an_older_database_are_sealed_at_start_once() {
    let dir = tempfile::tempdir().unwrap();
    let before = SqliteStorage::connect(&url_in(&dir)).await.unwrap();
    let (nodes, users) = fill(&before).await;
    before.close().await;
    let clear = file_bytes(&dir);
    let first = nodes[0].key.expose_base64url();
    assert!(
        clear.windows(first.len()).any(|w| w == first.as_bytes()),
        "without a master key the file holds the key in clear"
    );

    let key = MasterKey::random();
    let s = SqliteStorage::connect_sealed(&url_in(&dir), sealer(&key))
        .await
        .unwrap();
    assert_eq!(
        s.reseal().await.unwrap(),
        (nodes.len() + 2 * users.len()) as u64
    );
    assert_eq!(s.reseal().await.unwrap(), 0, "idempotent");
    assert_reads_back(&s, &nodes, &users).await;
    // No copy left in freed pages or the WAL, even while open.
    assert_no_secret_in(&file_bytes(&dir), &nodes, &users);
    s.close().await;
    assert_no_secret_in(&file_bytes(&dir), &nodes, &users);
}

#[tokio::test]
async fn a_master_key_rotation_reseals_everything_and_the_old_key_is_then_not_needed() {
    let dir = tempfile::tempdir().unwrap();
    let old = MasterKey::random();
    let s = SqliteStorage::connect_sealed(&url_in(&dir), sealer(&old))
        .await
        .unwrap();
    let (mut nodes, users) = fill(&s).await;
    let rotation_keys = fill_rotations(&s, &mut nodes).await;
    s.close().await;

    let new = MasterKey::random();
    let rotating = Sealer::new(new.clone(), vec![old.clone()]);
    let s = SqliteStorage::connect_sealed(&url_in(&dir), rotating)
        .await
        .unwrap();
    // Readable before the re-seal (previous keys open), then all moved.
    assert_reads_back(&s, &nodes, &users).await;
    assert_eq!(
        s.reseal().await.unwrap(),
        (nodes.len() + 2 * users.len() + rotation_keys.len()) as u64
    );
    s.close().await;

    let s = SqliteStorage::connect_sealed(&url_in(&dir), sealer(&new))
        .await
        .unwrap();
    assert_eq!(s.reseal().await.unwrap(), 0);
    assert_reads_back(&s, &nodes, &users).await;
    assert_rotations_read_back(&s, &nodes, &rotation_keys).await;
    s.close().await;

    let s = SqliteStorage::connect_sealed(&url_in(&dir), sealer(&old))
        .await
        .unwrap();
    let err = s.reseal().await.unwrap_err().to_string();
    assert!(err.contains(new.id()), "{err}");
}
