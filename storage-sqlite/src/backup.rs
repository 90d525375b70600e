//! Online backup and restore of the manager's SQLite database.
//!
//! `backup` writes a consistent copy while the manager runs (`VACUUM INTO`
//! reads one snapshot, so writes going on meanwhile are either wholly in the
//! copy or not at all). `restore` puts a copy back while the manager is
//! stopped, after checking it really is a manager database; the database it
//! replaces is kept beside it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use manager_lib::domain::{Page, PageRequest};
use manager_lib::seal::Sealer;
use manager_lib::storage::{Storage, StorageError, StorageResult};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection as _, SqliteConnection};

use crate::SqliteStorage;
use crate::error::db_error;
use crate::private_file;

/// How many nodes and users a database holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inventory {
    pub nodes: u64,
    pub users: u64,
}

fn other(msg: String) -> StorageError {
    StorageError::Other(msg.into())
}

/// The database file a `sqlite://` URL names.
pub fn database_path(url: &str) -> StorageResult<PathBuf> {
    let options = SqliteConnectOptions::from_str(url).map_err(|e| db_error(e, None))?;
    Ok(options.get_filename().to_owned())
}

/// Writes a consistent copy of the database at `url` to `to`, which must not
/// exist yet. Safe while the manager runs.
pub async fn backup(url: &str, to: &Path, seal: &Sealer) -> StorageResult<Inventory> {
    if to.exists() {
        return Err(other(format!("{} exists already", to.display())));
    }
    let source = database_path(url)?;
    if !source.exists() {
        return Err(other(format!("no database at {}", source.display())));
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| db_error(e, None))?
        .read_only(true);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| db_error(e, None))?;
    sqlx::query("VACUUM INTO ?")
        .bind(to.to_string_lossy().as_ref())
        .execute(&mut conn)
        .await
        .map_err(|e| db_error(e, None))?;
    conn.close().await.map_err(|e| db_error(e, None))?;
    // The copy holds node keys and user secrets: only its owner may read it.
    private_file::restrict_to_owner(to).map_err(|e| StorageError::Other(e.into()))?;
    inventory_of(to, seal).await
}

/// Counts what a database file holds, through the `Storage` reads (which
/// also proves it is a manager database of a known schema whose secrets
/// `seal` opens).
pub async fn inventory_of(path: &Path, seal: &Sealer) -> StorageResult<Inventory> {
    let storage =
        SqliteStorage::connect_sealed(&format!("sqlite://{}", path.display()), seal.clone())
            .await?;
    let s = &storage;
    let count = async {
        Ok::<_, StorageError>(Inventory {
            nodes: count_all(|req| async move { s.list_nodes(&req).await }).await?,
            users: count_all(|req| async move { s.list_users(&req).await }).await?,
        })
    }
    .await;
    storage.close().await;
    count
}

/// Walks every page of a list and counts its items.
async fn count_all<T, F, Fut>(mut list: F) -> StorageResult<u64>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = StorageResult<Page<T>>>,
{
    let mut total = 0;
    let mut req = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let page = list(req.clone()).await?;
        total += page.items.len() as u64;
        match page.next {
            Some(next) => req.after = Some(next),
            None => return Ok(total),
        }
    }
}

/// Replaces the database at `url` with the backup `from`. The manager must
/// be stopped. An existing database is renamed to `<file>.before-restore`
/// (refused when that name is taken, so no copy is ever overwritten).
pub async fn restore(from: &Path, url: &str, seal: &Sealer) -> StorageResult<Inventory> {
    // Check the backup before touching anything: a copy of it, opened through
    // the storage, must read back.
    let checked = inventory_of_copy(from, seal).await?;
    let target = database_path(url)?;
    if target.exists() {
        let aside = target.with_extension("db.before-restore");
        if aside.exists() {
            return Err(other(format!(
                "{} exists: move it away first",
                aside.display()
            )));
        }
        std::fs::rename(&target, &aside).map_err(|e| StorageError::Other(e.into()))?;
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = target.clone().into_os_string();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Other(e.into()))?;
    }
    std::fs::copy(from, &target).map_err(|e| StorageError::Other(e.into()))?;
    // `copy` gives the backup's mode; the database is the owner's alone.
    private_file::restrict_to_owner(&target).map_err(|e| StorageError::Other(e.into()))?;
    let restored = inventory_of(&target, seal).await?;
    if restored != checked {
        return Err(other(format!(
            "restored database holds {restored:?}, the backup {checked:?}"
        )));
    }
    Ok(restored)
}

/// Inventory of a backup without writing to it (opening runs migrations, so
/// work on a temporary copy).
async fn inventory_of_copy(from: &Path, seal: &Sealer) -> StorageResult<Inventory> {
    if !from.is_file() {
        return Err(other(format!("no backup file at {}", from.display())));
    }
    // A directory of our own (0700, refused if the name is taken), since the
    // copy holds secrets and the temporary directory is shared.
    let dir = std::env::temp_dir().join(format!("xm-restore-check-{}", std::process::id()));
    private_file::create_private_dir(&dir).map_err(|e| other(format!("{}: {e}", dir.display())))?;
    let copy = dir.join("check.db");
    std::fs::copy(from, &copy).map_err(|e| StorageError::Other(e.into()))?;
    let inv = inventory_of(&copy, seal).await;
    let _ = std::fs::remove_dir_all(&dir);
    inv
}
