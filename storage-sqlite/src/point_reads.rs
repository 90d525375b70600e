//! `get_user` through [`GroupedReads`]: every id queued while the readers
//! are busy goes in one statement (see `manager_lib::storage::grouped`).

use manager_lib::domain::{User, UserId};
use manager_lib::seal::Sealer;
use manager_lib::storage::grouped::GroupedReads;
use manager_lib::storage::{Entity, StorageResult};
use sqlx::SqlitePool;

use crate::error::db_error;
use crate::rows::{USER_COLUMNS, user_from_row};

/// Statements in flight at once (each holds a reader connection).
const CONCURRENT: usize = 4;

pub(crate) fn spawn(pool: SqlitePool, seal: Sealer) -> GroupedReads {
    GroupedReads::spawn(CONCURRENT, move |ids| read(pool.clone(), seal.clone(), ids))
}

async fn read(pool: SqlitePool, seal: Sealer, ids: Vec<UserId>) -> StorageResult<Vec<User>> {
    let rows = if let [id] = ids.as_slice() {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND deleted = 0"
        ))
        .bind(id.to_string())
        .fetch_all(&pool)
        .await
    } else {
        let ids: Vec<String> = ids.iter().map(UserId::to_string).collect();
        let ids = serde_json::to_string(&ids).expect("strings serialize");
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users \
             WHERE id IN (SELECT value FROM json_each(?1)) AND deleted = 0"
        ))
        .bind(ids)
        .fetch_all(&pool)
        .await
    }
    .map_err(|e| db_error(e, Some(Entity::User)))?;
    rows.iter().map(|r| user_from_row(r, &seal)).collect()
}
