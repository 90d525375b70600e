//! The start-up step that seals what is not sealed under the current master
//! key: clear values of a database from before sealing, and values under a
//! previous key during a rotation. Idempotent: rows already sealed under
//! the current key are not selected. After re-sealing, the file is rewritten
//! (`VACUUM`) so the replaced values are not left in free pages.

use std::time::{Duration, Instant};

use manager_lib::seal::{Column, Resealed, SEALED_PREFIX};
use manager_lib::storage::{StorageError, StorageResult};

use crate::error::db_error;
use crate::{BUSY_TIMEOUT, SqliteStorage};

/// Rows read (and re-sealed in one write) at a time.
const CHUNK: i64 = 500;
/// How long to wait before asking a busy checkpoint again.
const RETRY: Duration = Duration::from_millis(10);

pub(crate) async fn reseal(s: &SqliteStorage) -> StorageResult<u64> {
    // Sealing: every row not under the current key. Clear: every sealed row,
    // which the clear sealer refuses (the database needs its master key).
    let (prefix, op) = match s.seal.current_prefix() {
        Some(prefix) => (prefix, "<>"),
        None => (SEALED_PREFIX.to_owned(), "="),
    };
    let mut resealed = 0;
    for kind in Column::ALL {
        let (table, column, entity) = match kind.place() {
            // This backend's nodes table names the node key `key`.
            (table, _, entity) if kind == Column::NodeKey => (table, "key", entity),
            place => place,
        };
        let select = format!(
            "SELECT id, {column} FROM {table} \
             WHERE id > ?1 AND substr({column}, 1, length(?2)) {op} ?2 ORDER BY id LIMIT ?3"
        );
        let mut after = String::new();
        loop {
            let rows: Vec<(String, String)> = sqlx::query_as(&select)
                .bind(&after)
                .bind(&prefix)
                .bind(CHUNK)
                .fetch_all(&s.reader)
                .await
                .map_err(|e| db_error(e, Some(entity)))?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            after = last.clone();
            let mut updates = Vec::new();
            for (id, stored) in rows {
                if let Resealed::Replace(sealed) = s.seal.reseal(kind, &id, &stored)? {
                    updates.push((id, stored, sealed));
                }
            }
            let update =
                format!("UPDATE {table} SET {column} = ?3 WHERE id = ?1 AND {column} = ?2");
            resealed += s
                .write(move |conn| {
                    Box::pin(async move {
                        let mut done = 0;
                        // Only a value still as read is replaced: a row
                        // written meanwhile was sealed by its writer.
                        for (id, stored, sealed) in updates {
                            done += sqlx::query(&update)
                                .bind(id)
                                .bind(stored)
                                .bind(sealed)
                                .execute(&mut *conn)
                                .await
                                .map_err(|e| db_error(e, Some(entity)))?
                                .rows_affected();
                        }
                        Ok(done)
                    })
                })
                .await?;
        }
    }
    if resealed > 0 {
        // The replaced values stay in freed pages and WAL frames until they
        // are reused: rewrite the file and empty the WAL so that no copy of
        // it holds them.
        sqlx::query("VACUUM")
            .execute(&s.writer)
            .await
            .map_err(|e| db_error(e, None))?;
        empty_wal(s).await?;
    }
    Ok(resealed)
}

/// Copies every WAL frame into the database file and truncates the WAL.
///
/// A `TRUNCATE` checkpoint does not fail when it cannot finish: it answers
/// `busy` in its row, as it does whenever another connection is running a
/// checkpoint (the checkpoint task's `PASSIVE` one, nudged by the re-seal's
/// own last commit). The WAL would then still hold the re-seal's frames,
/// and the file the values the `VACUUM` replaced, until later checkpoints:
/// so it is asked again until it finishes, for at most [`BUSY_TIMEOUT`].
async fn empty_wal(s: &SqliteStorage) -> StorageResult<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&s.writer)
            .await
            .map_err(|e| db_error(e, None))?;
        if busy == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StorageError::Unavailable(
                "the WAL stayed busy: re-sealed values may keep old copies in it".into(),
            ));
        }
        tokio::time::sleep(RETRY).await;
    }
}
