//! Point reads of users, grouped: the user-node-list call reads one user row
//! per request, and each statement costs a round trip to a connection's own
//! thread (two thread switches) that dwarfs the lookup itself. Callers queue
//! their id; a task takes whatever is queued as soon as one of
//! [`CONCURRENT`] slots is free and reads it in one statement. A lone caller
//! goes alone at once; under load the queue fills while the slots are busy,
//! and many rows come back for one round trip.

use std::collections::HashMap;
use std::sync::Arc;

use manager_lib::domain::{User, UserId};
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::SqlitePool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::db_error;
use crate::rows::{USER_COLUMNS, user_from_row};

/// Statements in flight at once (each holds a reader connection).
const CONCURRENT: usize = 4;
/// The most ids one statement takes.
const MAX_GROUP: usize = 256;

type Waiter = (UserId, oneshot::Sender<StorageResult<User>>);

/// The handle callers read through; the task stops when every handle is gone.
#[derive(Clone)]
pub(crate) struct PointReads {
    queue: mpsc::Sender<Waiter>,
}

impl PointReads {
    /// Starts the task on the current Tokio runtime, reading from `pool`.
    pub(crate) fn spawn(pool: SqlitePool) -> Self {
        let (queue, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(pool, rx));
        Self { queue }
    }

    /// The live user `id`, or [`StorageError::NotFound`].
    pub(crate) async fn user(&self, id: UserId) -> StorageResult<User> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((id, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StorageError {
    StorageError::Unavailable("the storage was closed".into())
}

async fn run(pool: SqlitePool, mut queue: mpsc::Receiver<Waiter>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let mut taken = Vec::with_capacity(MAX_GROUP);
    loop {
        // A free slot first, then everything queued by then.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if queue.recv_many(&mut taken, MAX_GROUP).await == 0 {
            return;
        }
        let group: Vec<Waiter> = taken.drain(..).filter(|(_, r)| !r.is_closed()).collect();
        let pool = pool.clone();
        tokio::spawn(async move {
            read_group(&pool, group).await;
            drop(slot);
        });
    }
}

async fn read_group(pool: &SqlitePool, group: Vec<Waiter>) {
    if group.is_empty() {
        return;
    }
    let rows = if let [(id, _)] = group.as_slice() {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND deleted = 0"
        ))
        .bind(id.to_string())
        .fetch_all(pool)
        .await
    } else {
        let ids: Vec<String> = group.iter().map(|(id, _)| id.to_string()).collect();
        let ids = serde_json::to_string(&ids).expect("strings serialize");
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users \
             WHERE id IN (SELECT value FROM json_each(?1)) AND deleted = 0"
        ))
        .bind(ids)
        .fetch_all(pool)
        .await
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            let error = db_error(e, Some(Entity::User));
            for (_, reply) in group {
                let _ = reply.send(Err(copy_of(&error)));
            }
            return;
        }
    };
    let mut found: HashMap<UserId, User> = HashMap::with_capacity(rows.len());
    for row in &rows {
        match user_from_row(row) {
            Ok(user) => {
                found.insert(user.id, user);
            }
            Err(error) => {
                // A row that cannot be read answers the whole group: its id
                // is unknown, so it could be anyone's.
                for (_, reply) in group {
                    let _ = reply.send(Err(copy_of(&error)));
                }
                return;
            }
        }
    }
    for (id, reply) in group {
        let answer = found
            .get(&id)
            .cloned()
            .ok_or(StorageError::NotFound(Entity::User));
        let _ = reply.send(answer);
    }
}

/// The same error for another caller (errors hold boxed sources, which do
/// not clone): same kind, same text.
fn copy_of(error: &StorageError) -> StorageError {
    match error {
        StorageError::NotFound(entity) => StorageError::NotFound(*entity),
        StorageError::AlreadyExists(entity) => StorageError::AlreadyExists(*entity),
        StorageError::Unavailable(source) => StorageError::Unavailable(source.to_string().into()),
        StorageError::Corrupt(text) => StorageError::Corrupt(text.clone()),
        other => StorageError::Other(other.to_string().into()),
    }
}
