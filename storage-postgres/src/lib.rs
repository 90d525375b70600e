//! `Storage` on PostgreSQL. Being written.
