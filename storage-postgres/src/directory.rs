//! The user directory: the kit's query over the users table, each order
//! served by its index (migration 20261211000000), paged by key.

use manager_lib::domain::{Page, StateCounts, User, UserQuery};
use manager_lib::storage::StorageResult;
use manager_lib::storage::kit::directory::{self, Arg, Dialect};

use crate::PgStorage;
use crate::error::user_err;
use crate::rows::{self, user_columns};

const POSTGRES: Dialect = Dialect {
    param: |n| format!("${n}"),
    id_param: |n| format!("${n}::uuid"),
    // Byte order whatever the database's locale: a prefix is a range.
    name: "name COLLATE \"C\"",
    live: "NOT deleted",
    // The select list renames `id` to its text.
    id: "users.id",
    usage: (directory::USAGE_SQL, "users.id"),
};

pub(crate) async fn find_users(s: &PgStorage, query: &UserQuery) -> StorageResult<Page<User>> {
    let (tail, args) = directory::query_sql(query, &POSTGRES)?;
    let sql = format!(concat!("SELECT ", user_columns!(), " FROM users {}"), tail);
    let mut q = sqlx::query(&sql);
    for arg in args {
        q = match arg {
            Arg::Text(t) => q.bind(t),
            Arg::Int(n) => q.bind(n),
        };
    }
    let rows = q.fetch_all(&s.pool).await.map_err(user_err)?;
    let users = rows
        .iter()
        .map(|r| rows::user(r, &s.seal))
        .collect::<StorageResult<Vec<User>>>()?;
    Ok(directory::into_page(query, users))
}

/// The striped counters migration 20261214000000's trigger keeps, added up.
pub(crate) async fn count_users_by_state(s: &PgStorage) -> StorageResult<StateCounts> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, sum(users)::BIGINT FROM user_state_stripes GROUP BY state")
            .fetch_all(&s.pool)
            .await
            .map_err(user_err)?;
    directory::counts_from(rows)
}
