//! Test helpers (feature `testing`): a fresh PostgreSQL database per test,
//! dropped when the test is done. Usable from any crate's tests:
//!
//! ```no_run
//! # async fn demo() {
//! let db = storage_postgres::testing::TestDatabase::new().await;
//! let storage = db.storage().await; // migrated, empty
//! # let _ = (storage, db.url());
//! # }
//! ```
//!
//! Where the database comes from:
//! - `TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`):
//!   a server this role may create databases on; each test gets
//!   `xm_test_<random>` there;
//! - otherwise a PostgreSQL container started with testcontainers (Docker).
//!
//! When neither works, [`TestDatabase::new`] panics with the reason: a test
//! that needs a database never passes by skipping. With `CI=true` the message
//! says so explicitly.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use manager_lib::storage::Storage;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::oneshot;

use crate::PgStorage;

/// The variable naming the server tests create their databases on.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// Prefix of every test database's name, for finding leftovers.
pub const DATABASE_PREFIX: &str = "xm_test_";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CREATE_RETRY_FOR: Duration = Duration::from_secs(10);

/// A database of its own for one test; dropped (`WITH (FORCE)`, so open
/// connections do not keep it alive) when this value is dropped.
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
    container: Option<Container>,
}

impl std::fmt::Debug for TestDatabase {
    // The URLs may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .field("in_container", &self.container.is_some())
            .finish()
    }
}

impl TestDatabase {
    /// Creates a fresh, empty database (no schema yet).
    ///
    /// # Panics
    /// When no PostgreSQL is reachable, with the reason and what to set.
    pub async fn new() -> Self {
        match Self::try_new().await {
            Ok(db) => db,
            Err(reason) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                panic!(
                    "no PostgreSQL for the tests: {reason}.\n\
                     Set {TEST_DATABASE_URL} (e.g. postgres://postgres@127.0.0.1:5432/postgres) \
                     to a server where this role can CREATE DATABASE, or make Docker \
                     available for testcontainers.{}",
                    if ci {
                        "\nCI=true: these tests must run here, so a missing database is a failure."
                    } else {
                        ""
                    }
                );
            }
        }
    }

    /// Like [`TestDatabase::new`], but says why instead of panicking.
    pub async fn try_new() -> Result<Self, String> {
        let (admin_url, container) = match std::env::var(TEST_DATABASE_URL) {
            Ok(url) if !url.trim().is_empty() => (url.trim().to_owned(), None),
            _ => {
                let container = Container::start().await.map_err(|e| {
                    format!("{TEST_DATABASE_URL} is not set and no container could start: {e}")
                })?;
                (container.url.clone(), Some(container))
            }
        };
        let name = format!("{DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let url = database_url(&admin_url, &name)?;
        create_database(&admin_url, &name).await?;
        Ok(Self {
            name,
            url,
            admin_url,
            container,
        })
    }

    /// The database's URL, for anything that connects by URL (a manager
    /// process, another backend's settings).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`xm_test_…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new [`PgStorage`] on this database, migrated. Each call gives its own
    /// pool, as another manager replica would have.
    ///
    /// # Panics
    /// When the database cannot be reached or migrated.
    pub async fn storage(&self) -> PgStorage {
        PgStorage::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("test database {}: {e}", self.name))
    }

    /// Whether a database with this name exists on the test server (to check
    /// that a dropped `TestDatabase` really removed its database).
    pub async fn exists_on_server(admin_url: &str, name: &str) -> Result<bool, String> {
        let mut conn = admin_connection(admin_url).await?;
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await
            .map_err(|e| format!("cannot list databases: {e}"))?;
        let _ = conn.close().await;
        Ok(found.is_some())
    }

    /// The URL of the server's maintenance database this one was created from.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside (or outside) a runtime: do the
        // work on a thread with its own runtime and wait for it, so the
        // database is gone when the test returns.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(drop_database(&admin_url, &name))
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test database {} was not dropped: {e}", self.name),
            Err(_) => eprintln!("test database {} was not dropped: panic", self.name),
        }
        // The container (if any) goes after its database.
        self.container.take();
    }
}

/// A fresh migrated [`PgStorage`] with the database it lives in, for the
/// storage conformance suite: `storage_conformance_tests!(PgFixture::new().await)`.
/// The database is dropped with the fixture.
#[derive(Debug)]
pub struct PgFixture {
    storage: Arc<PgStorage>,
    // Declared after the storage so the pool goes first.
    database: TestDatabase,
}

impl PgFixture {
    pub async fn new() -> Self {
        let database = TestDatabase::new().await;
        let storage = Arc::new(database.storage().await);
        Self { storage, database }
    }

    /// [`PgFixture::new`] with node keys and user secrets sealed under a
    /// random master key.
    pub async fn sealed() -> Self {
        use manager_lib::seal::{MasterKey, Sealer};
        let database = TestDatabase::new().await;
        let seal = Sealer::new(MasterKey::random(), Vec::new());
        let storage = PgStorage::connect_sealed(database.url(), seal)
            .await
            .unwrap_or_else(|e| panic!("test database {}: {e}", database.name()));
        Self {
            storage: Arc::new(storage),
            database,
        }
    }

    pub fn storage(&self) -> &Arc<PgStorage> {
        &self.storage
    }

    pub fn database(&self) -> &TestDatabase {
        &self.database
    }
}

impl AsRef<dyn Storage> for PgFixture {
    fn as_ref(&self) -> &(dyn Storage + 'static) {
        self.storage.as_ref()
    }
}

/// `admin_url` with its database replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> Result<String, String> {
    let mut url =
        url::Url::parse(admin_url).map_err(|e| format!("{TEST_DATABASE_URL} is not a URL: {e}"))?;
    url.set_path(name);
    Ok(url.into())
}

async fn admin_connection(admin_url: &str) -> Result<PgConnection, String> {
    let options: PgConnectOptions = admin_url
        .parse()
        .map_err(|e| format!("bad PostgreSQL URL: {e}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!(
            "cannot connect to {}:{}: {e}",
            options.get_host(),
            options.get_port()
        )),
        Err(_) => Err(format!(
            "connecting to {}:{} timed out after {CONNECT_TIMEOUT:?}",
            options.get_host(),
            options.get_port()
        )),
    }
}

async fn create_database(admin_url: &str, name: &str) -> Result<(), String> {
    let mut conn = admin_connection(admin_url).await?;
    // `name` is ours (a prefix and hex digits), so quoting it is enough.
    let sql = format!("CREATE DATABASE \"{name}\"");
    let deadline = Instant::now() + CREATE_RETRY_FOR;
    let result = loop {
        match sqlx::raw_sql(&sql).execute(&mut conn).await {
            Ok(_) => break Ok(()),
            // 55006: the template is being copied by a concurrent CREATE
            // DATABASE (tests run in parallel); it is free again shortly.
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("55006") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => break Err(format!("cannot create database {name}: {e}")),
        }
    };
    let _ = conn.close().await;
    result
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let mut conn = admin_connection(admin_url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.close().await;
    Ok(())
}

/// A PostgreSQL container owned by a thread with its own runtime, so it
/// outlives whatever runtime the test uses and is removed (not leaked) when
/// this value is dropped.
struct Container {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Container {
    async fn start() -> Result<Self, String> {
        use testcontainers_modules::postgres::Postgres;
        use testcontainers_modules::testcontainers::runners::AsyncRunner;

        let (ready_tx, ready_rx) = oneshot::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                let container = match Postgres::default().with_host_auth().start().await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let address = async {
                    let host = container.get_host().await?;
                    let port = container.get_host_port_ipv4(5432).await?;
                    Ok::<_, testcontainers_modules::testcontainers::TestcontainersError>(format!(
                        "postgres://postgres@{host}:{port}/postgres"
                    ))
                }
                .await
                .map_err(|e| e.to_string());
                let ok = address.is_ok();
                let _ = ready_tx.send(address);
                if ok {
                    // Until the owner drops the sender (or signals).
                    let _ = stop_rx.await;
                }
                if let Err(e) = container.rm().await {
                    eprintln!("test container not removed: {e}");
                }
            });
        });
        let container = |url| Self {
            url,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.await {
            Ok(Ok(url)) => Ok(container(url)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the container thread died".to_owned()),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
