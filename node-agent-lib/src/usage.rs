//! Traffic accounting on the node: the durable [`journal`] of usage batches
//! the manager pulls with `POST /usage`.

pub mod journal;

pub use journal::{Journal, JournalError};
