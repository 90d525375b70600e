//! The start-up step that seals what is not sealed under the current master
//! key: clear values of a database from before sealing, and values under a
//! previous key during a rotation. Idempotent: rows already sealed under
//! the current key are not selected.

use manager_lib::seal::{Column, Resealed, SEALED_PREFIX};
use manager_lib::storage::StorageResult;

use crate::PgStorage;
use crate::error::map_err;

/// Rows read (and re-sealed in one statement) at a time.
const CHUNK: i64 = 500;

pub(crate) async fn reseal(s: &PgStorage) -> StorageResult<u64> {
    // Sealing: every row not under the current key. Clear: every sealed row,
    // which the clear sealer refuses (the database needs its master key).
    let (prefix, op) = match s.seal.current_prefix() {
        Some(prefix) => (prefix, "<>"),
        None => (SEALED_PREFIX.to_owned(), "="),
    };
    let mut resealed = 0;
    for kind in Column::ALL {
        let (table, column, entity) = kind.place();
        let select = format!(
            "SELECT id::text, {column} FROM {table} \
             WHERE id > $1::uuid AND left({column}, length($2)) {op} $2 ORDER BY id LIMIT $3"
        );
        // Only a value still as read is replaced: a row written meanwhile
        // was sealed by its writer.
        let update = format!(
            "UPDATE {table} t SET {column} = i.sealed \
             FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]) AS i(id, stored, sealed) \
             WHERE t.id = i.id AND t.{column} = i.stored"
        );
        let mut after = "00000000-0000-0000-0000-000000000000".to_owned();
        loop {
            let rows: Vec<(String, String)> = sqlx::query_as(&select)
                .bind(&after)
                .bind(&prefix)
                .bind(CHUNK)
                .fetch_all(&s.pool)
                .await
                .map_err(|e| map_err(entity, e))?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            after = last.clone();
            let (mut ids, mut stored, mut sealed) = (Vec::new(), Vec::new(), Vec::new());
            for (id, value) in rows {
                if let Resealed::Replace(new) = s.seal.reseal(kind, &id, &value)? {
                    ids.push(id);
                    stored.push(value);
                    sealed.push(new);
                }
            }
            if ids.is_empty() {
                continue;
            }
            resealed += sqlx::query(&update)
                .bind(ids)
                .bind(stored)
                .bind(sealed)
                .execute(&s.pool)
                .await
                .map_err(|e| map_err(entity, e))?
                .rows_affected();
        }
    }
    Ok(resealed)
}
