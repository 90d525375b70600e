//! The user directory: the kit's query over the users table, each order
//! served by its index (migration 0008; the usage order by the totals
//! table's, migration 0014), paged by key.

use async_trait::async_trait;
use manager_lib::domain::{Page, StateCounts, User, UserQuery, UserSort};
use manager_lib::storage::kit::directory::{self, Arg, Dialect};
use manager_lib::storage::{Entity, StorageResult, UserDirectory};

use crate::SqliteStorage;
use crate::error::db_error;
use crate::rows::{USER_COLUMNS, user_from_row};

const SQLITE: Dialect = Dialect {
    param: |n| format!("?{n}"),
    id_param: |n| format!("?{n}"),
    name: "name",
    live: "deleted = 0",
    id: "id",
    // The totals table's index expression (migration 0014), as written
    // there: `up` and `down` name no column of `users`.
    usage: (
        "(CASE WHEN up > 9223372036854775807 - down \
         THEN 9223372036854775807 ELSE up + down END)",
        "user_id",
    ),
};

pub(crate) async fn find_users(s: &SqliteStorage, query: &UserQuery) -> StorageResult<Page<User>> {
    let (tail, args) = directory::query_sql(query, &SQLITE)?;
    // Usage order walks the totals' index and joins each user; the other
    // orders walk an index of users.
    let from = match query.sort {
        UserSort::Usage => "user_totals JOIN users ON users.id = user_totals.user_id",
        UserSort::Name | UserSort::Created => "users",
    };
    let sql = format!("SELECT {USER_COLUMNS} FROM {from} {tail}");
    let mut q = sqlx::query(&sql);
    for arg in args {
        q = match arg {
            Arg::Text(t) => q.bind(t),
            Arg::Int(n) => q.bind(n),
        };
    }
    let rows = q
        .fetch_all(&s.reader)
        .await
        .map_err(|e| db_error(e, Some(Entity::User)))?;
    let users = rows
        .iter()
        .map(|r| user_from_row(r, &s.seal))
        .collect::<StorageResult<Vec<User>>>()?;
    Ok(directory::into_page(query, users))
}

/// The counters migration 0011's triggers keep.
pub(crate) async fn count_users_by_state(s: &SqliteStorage) -> StorageResult<StateCounts> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, users FROM user_states")
        .fetch_all(&s.reader)
        .await
        .map_err(|e| db_error(e, None))?;
    directory::counts_from(rows)
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl UserDirectory for SqliteStorage {
    async fn find_users(&self, query: &UserQuery) -> StorageResult<Page<User>> {
        crate::directory::find_users(self, query).await
    }

    async fn count_users_by_state(&self) -> StorageResult<StateCounts> {
        crate::directory::count_users_by_state(self).await
    }
}
