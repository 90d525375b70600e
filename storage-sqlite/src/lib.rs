//! `Storage` on SQLite. Being written.
