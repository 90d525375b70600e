//! Secrets sealed at rest on PostgreSQL: a `pg_dump` of the database holds
//! no node key, user secret or subscription key in any form, a value moved
//! to another row does not open, and a wrong master key is refused at start.
//! Run with:
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo nextest run -p storage-postgres --test sealed`

use manager_lib::conformance::sealed::{
    assert_no_key_in, assert_no_secret_in, assert_reads_back, assert_rotations_read_back, fill,
    fill_rotations, sealer,
};
use manager_lib::seal::{MasterKey, Sealer};
use manager_lib::storage::{Storage, StorageError};
use storage_postgres::PgStorage;
use storage_postgres::testing::TestDatabase;

fn pg_dump(db: &TestDatabase) -> String {
    let out = std::process::Command::new("pg_dump")
        .arg(db.url())
        .output()
        .expect("pg_dump runs (install the PostgreSQL client tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_pg_dump_holds_no_node_key_or_user_secret_in_any_form() {
    let db = TestDatabase::new().await;
    let key = MasterKey::random();
    let s = PgStorage::connect_sealed(db.url(), sealer(&key))
        .await
        .unwrap();
    let (mut nodes, users) = fill(&s).await;
    let rotation_keys = fill_rotations(&s, &mut nodes).await;
    let dump = pg_dump(&db);
    assert!(dump.contains("user-11"), "the dump holds the users' rows");
    let prefix = sealer(&key).current_prefix().unwrap();
    assert!(
        dump.matches(&prefix).count() >= nodes.len() + 2 * users.len(),
        "the dump holds the sealed values"
    );
    assert_no_secret_in(dump.as_bytes(), &nodes, &users);
    assert_no_key_in(dump.as_bytes(), &rotation_keys);
    // And they read back, through every path that reads them.
    assert_reads_back(&s, &nodes, &users).await;
    assert_rotations_read_back(&s, &nodes, &rotation_keys).await;
    let pending = s.pending_operations(nodes[0].id, 100).await.unwrap();
    assert_eq!(pending.operations.len(), 6);
    for op in &pending.operations {
        let user = users.iter().find(|u| u.id == op.user.id).unwrap();
        assert_eq!(op.user.secret, user.secret);
    }
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_row_does_not_open() {
    let db = TestDatabase::new().await;
    let s = PgStorage::connect_sealed(db.url(), sealer(&MasterKey::random()))
        .await
        .unwrap();
    let (nodes, users) = fill(&s).await;
    for (table, column, from, to) in [
        (
            "nodes",
            "node_key",
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
            "UPDATE {table} SET {column} = (SELECT {column} FROM {table} WHERE id = $1::uuid) \
             WHERE id = $2::uuid"
        ))
        .bind(from)
        .bind(to)
        .execute(s.pool())
        .await
        .unwrap();
    }
    let node = s.get_node(nodes[1].id).await.unwrap_err();
    assert!(
        matches!(&node, StorageError::Corrupt(m) if m.contains("another row")),
        "{node}"
    );
    for moved in [users[1].id, users[3].id] {
        assert!(matches!(
            s.get_user(moved).await,
            Err(StorageError::Corrupt(_))
        ));
    }
    assert_eq!(s.get_node(nodes[0].id).await.unwrap().key, nodes[0].key);
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_and_a_rotation_reseals_everything() {
    let db = TestDatabase::new().await;
    let old = MasterKey::random();
    let s = PgStorage::connect_sealed(db.url(), sealer(&old))
        .await
        .unwrap();
    let (mut nodes, users) = fill(&s).await;
    let rotation_keys = fill_rotations(&s, &mut nodes).await;
    s.close().await;

    let new = MasterKey::random();
    let wrong = PgStorage::connect_sealed(db.url(), sealer(&new))
        .await
        .unwrap();
    let err = wrong.reseal().await.unwrap_err().to_string();
    assert!(err.contains(old.id()) && err.contains(new.id()), "{err}");
    wrong.close().await;

    let rotating = PgStorage::connect_sealed(db.url(), Sealer::new(new.clone(), vec![old]))
        .await
        .unwrap();
    assert_eq!(
        rotating.reseal().await.unwrap(),
        (nodes.len() + 2 * users.len() + rotation_keys.len()) as u64
    );
    assert_eq!(rotating.reseal().await.unwrap(), 0, "idempotent");
    rotating.close().await;

    let s = PgStorage::connect_sealed(db.url(), sealer(&new))
        .await
        .unwrap();
    assert_eq!(s.reseal().await.unwrap(), 0);
    assert_reads_back(&s, &nodes, &users).await;
    assert_eq!(s.get_node(nodes[2].id).await.unwrap().key, nodes[2].key);
    assert_rotations_read_back(&s, &nodes, &rotation_keys).await;
}
