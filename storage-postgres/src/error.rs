//! The one place where sqlx errors become [`StorageError`]s.

use manager_lib::storage::{Entity, StorageError};

/// Maps a driver error to the port's error. `entity` is what a missing row or
/// a unique violation is about.
pub(crate) fn map_err(entity: Entity, err: sqlx::Error) -> StorageError {
    use sqlx::Error as E;
    match err {
        E::RowNotFound => StorageError::NotFound(entity),
        E::Database(ref db) => {
            let code = db.code().unwrap_or_default();
            if code == "23505" {
                StorageError::AlreadyExists(entity)
            } else if is_unavailable_code(&code) {
                StorageError::Unavailable(Box::new(err))
            } else {
                StorageError::Other(Box::new(err))
            }
        }
        // Connection refused ends up here (a direct connect) or as
        // PoolTimedOut (the pool retries a refused connect until its acquire
        // timeout): both mean "the database is not there right now".
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            StorageError::Unavailable(Box::new(err))
        }
        E::Decode(_)
        | E::ColumnDecode { .. }
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. } => StorageError::Corrupt(err.to_string()),
        _ => StorageError::Other(Box::new(err)),
    }
}

/// SQLSTATEs that say the server cannot serve us now but may later.
fn is_unavailable_code(code: &str) -> bool {
    // 08xxx: connection exceptions; 57P01 admin_shutdown, 57P02 crash_shutdown,
    // 57P03 cannot_connect_now (starting up or in recovery); 53300
    // too_many_connections.
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// Maps a migration failure: a failing statement goes through [`map_err`];
/// anything else (a changed or missing migration) is reported as is.
pub(crate) fn map_migrate_err(err: sqlx::migrate::MigrateError) -> StorageError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => map_err(Entity::Node, e),
        other => StorageError::Other(Box::new(other)),
    }
}

pub(crate) fn node_err(e: sqlx::Error) -> StorageError {
    map_err(Entity::Node, e)
}

pub(crate) fn user_err(e: sqlx::Error) -> StorageError {
    map_err(Entity::User, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_io_failures_are_temporary() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(map_err(Entity::Node, sqlx::Error::Io(refused)).is_temporary());
        assert!(map_err(Entity::Node, sqlx::Error::PoolTimedOut).is_temporary());
        assert!(map_err(Entity::Node, sqlx::Error::PoolClosed).is_temporary());
    }

    #[test]
    fn missing_rows_are_not_found_for_the_entity() {
        assert!(matches!(
            map_err(Entity::User, sqlx::Error::RowNotFound),
            StorageError::NotFound(Entity::User)
        ));
    }

    #[test]
    fn decode_failures_are_corrupt() {
        let err = sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: "bad".into(),
        };
        assert!(matches!(
            map_err(Entity::Node, err),
            StorageError::Corrupt(_)
        ));
        assert!(matches!(
            map_err(Entity::Node, sqlx::Error::Protocol("x".into())),
            StorageError::Other(_)
        ));
    }

    #[test]
    fn connection_sqlstates_are_unavailable() {
        for code in ["08006", "08001", "57P01", "57P03"] {
            assert!(is_unavailable_code(code), "{code}");
        }
        for code in ["23505", "42P01", "40001"] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }
}
