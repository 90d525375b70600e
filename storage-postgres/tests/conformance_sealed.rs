//! The shared `Storage` conformance suite on PostgreSQL with node keys and
//! user secrets sealed: sealing changes no behaviour. Run with:
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo nextest run -p storage-postgres --test conformance_sealed`

use storage_postgres::testing::PgFixture;

manager_lib::storage_conformance_tests!(PgFixture::sealed().await);
