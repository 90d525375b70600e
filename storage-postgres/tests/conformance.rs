//! The shared `Storage` conformance suite on PostgreSQL, one fresh database
//! per test. Run with:
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo nextest run -p storage-postgres`

use storage_postgres::testing::PgFixture;

async fn fresh_fixture() -> PgFixture {
    PgFixture::new().await
}

manager_lib::storage_conformance_tests!(fresh_fixture().await);
