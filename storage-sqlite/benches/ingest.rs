//! Run with: cargo bench -p storage-sqlite --bench ingest
//!
//! Usage ingest on the SQLite backend, in a temporary file; the rounds and
//! sizes are `manager_lib::conformance::ingest_bench`'s.

use std::sync::Arc;

use storage_sqlite::SqliteStorage;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let s = Arc::new(SqliteStorage::connect(&url).await.expect("open"));
    manager_lib::conformance::ingest_bench::ingest_rounds(s).await;
}
