//! A node key rotation row as both SQL backends store it, keys sealed: the
//! columns as stored, opened into a [`KeyRotation`] in one place.

use std::time::Duration;

use super::{Column, Sealer};
use crate::domain::{KeyRotation, Timestamp};
use crate::storage::{StorageError, StorageResult};

/// A `node_key_rotations` row: keys still sealed, times in milliseconds.
#[derive(Debug)]
pub struct StoredRotation {
    /// The node's id, as text.
    pub id: String,
    pub pending_key: Option<String>,
    pub grace_ms: i64,
    pub requested_at: i64,
    pub previous_key: Option<String>,
    pub previous_until: Option<i64>,
}

impl StoredRotation {
    /// The rotation, its keys opened with `seal` (each bound to the node
    /// and its column); a node id that does not parse is
    /// [`StorageError::Corrupt`].
    pub fn open(self, seal: &Sealer) -> StorageResult<KeyRotation> {
        let id = &self.id;
        let open = |column, stored: Option<String>| {
            stored
                .map(|stored| seal.open_key_in(column, id, &stored))
                .transpose()
        };
        let pending = open(Column::PendingNodeKey, self.pending_key)?;
        let previous = open(Column::PreviousNodeKey, self.previous_key)?;
        Ok(KeyRotation {
            node: id
                .parse()
                .map_err(|e: crate::domain::ParseError| StorageError::Corrupt(e.to_string()))?,
            pending,
            grace: Duration::from_millis(u64::try_from(self.grace_ms).unwrap_or(0)),
            requested_at: Timestamp(self.requested_at),
            previous: previous.zip(self.previous_until.map(Timestamp)),
        })
    }
}
