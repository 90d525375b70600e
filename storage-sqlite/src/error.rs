//! The one place where sqlx's errors become [`StorageError`]s.

use manager_lib::storage::{Entity, StorageError};
use sqlx::migrate::MigrateError;

// SQLite's primary result codes (the low byte of an extended code):
// https://www.sqlite.org/rescode.html
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_NOMEM: i64 = 7;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_PROTOCOL: i64 = 15;
const SQLITE_NOTADB: i64 = 26;

/// Maps a driver error. `entity` is what the statement was about: a missing
/// row is that entity not found, a unique violation that entity already
/// existing; `None` for statements on the schema's own rows (a missing one
/// there means the file is not ours).
pub(crate) fn db_error(err: sqlx::Error, entity: Option<Entity>) -> StorageError {
    use sqlx::Error as E;
    match err {
        E::RowNotFound => match entity {
            Some(entity) => StorageError::NotFound(entity),
            None => StorageError::Corrupt("a row the schema always has is missing".to_owned()),
        },
        E::Database(db) => {
            if db.is_unique_violation() {
                if let Some(entity) = entity {
                    return StorageError::AlreadyExists(entity);
                }
            }
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            match primary {
                Some(
                    SQLITE_BUSY | SQLITE_LOCKED | SQLITE_NOMEM | SQLITE_READONLY | SQLITE_IOERR
                    | SQLITE_FULL | SQLITE_CANTOPEN | SQLITE_PROTOCOL,
                ) => StorageError::Unavailable(db.into_error()),
                Some(SQLITE_CORRUPT | SQLITE_NOTADB) => StorageError::Corrupt(db.to_string()),
                _ => StorageError::Other(db.into_error()),
            }
        }
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            StorageError::Unavailable(Box::new(err))
        }
        E::ColumnDecode { .. } | E::Decode(_) | E::ColumnNotFound(_) | E::TypeNotFound { .. } => {
            StorageError::Corrupt(err.to_string())
        }
        E::Migrate(m) => migrate_error(*m),
        other => StorageError::Other(Box::new(other)),
    }
}

/// A migration that could not run: the driver's error when there is one,
/// else the schema on disk does not match this program ([`StorageError::Other`]).
pub(crate) fn migrate_error(err: MigrateError) -> StorageError {
    match err {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => db_error(e, None),
        other => StorageError::Other(Box::new(other)),
    }
}

/// A failed statement about users.
pub(crate) fn user_err(e: sqlx::Error) -> StorageError {
    db_error(e, Some(Entity::User))
}

/// A failed statement about nodes.
pub(crate) fn node_err(e: sqlx::Error) -> StorageError {
    db_error(e, Some(Entity::Node))
}
