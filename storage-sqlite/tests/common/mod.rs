//! A fresh SQLite backend in its own temporary directory.
// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::sync::Arc;

use manager_lib::storage::Storage;
use storage_sqlite::SqliteStorage;
use tempfile::TempDir;

/// A backend and the directory holding its file, removed when dropped.
#[derive(Debug)]
pub struct Fixture {
    pub storage: Arc<SqliteStorage>,
    pub dir: TempDir,
}

impl Fixture {
    pub fn url(&self) -> String {
        url_in(&self.dir)
    }
}

impl AsRef<dyn Storage> for Fixture {
    fn as_ref(&self) -> &(dyn Storage + 'static) {
        &*self.storage
    }
}

pub fn url_in(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("manager.db").display())
}

pub async fn fresh_storage() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let storage = SqliteStorage::connect(&url_in(&dir))
        .await
        .expect("open a new database");
    Fixture {
        storage: Arc::new(storage),
        dir,
    }
}

/// [`fresh_storage`] with node keys and user secrets sealed under a random
/// master key.
pub async fn fresh_sealed_storage() -> Fixture {
    use manager_lib::seal::{MasterKey, Sealer};
    let dir = tempfile::tempdir().expect("temporary directory");
    let seal = Sealer::new(MasterKey::random(), Vec::new());
    let storage = SqliteStorage::connect_sealed(&url_in(&dir), seal)
        .await
        .expect("open a new database");
    Fixture {
        storage: Arc::new(storage),
        dir,
    }
}
