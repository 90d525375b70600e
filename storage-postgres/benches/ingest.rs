//! Run with: TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench -p storage-postgres --bench ingest
//!
//! Usage ingest on the PostgreSQL backend, in a fresh database dropped at
//! the end; the rounds and sizes are
//! `manager_lib::conformance::ingest_bench`'s.

use storage_postgres::testing::PgFixture;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let fixture = PgFixture::new().await;
    manager_lib::conformance::ingest_bench::ingest_rounds(fixture.storage().clone()).await;
}
