//! Point reads of users and of nodes, grouped (see [`crate::grouped`]),
//! for backends to build `get_user` and `get_node` on: the user-node-list
//! call reads one user row per request, a push to the whole fleet reads each
//! node's cursor under its lock, and each statement costs a round trip (to
//! SQLite's connection thread, or over the network to PostgreSQL) that
//! dwarfs the lookup itself.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

use crate::domain::{Node, NodeId, User, UserId};
pub use crate::grouped::Grouped;
use crate::storage::{Entity, StorageError, StorageResult};

/// The most ids one grouped read takes.
pub const MAX_GROUP: usize = 256;

/// What [`GroupedReads`] reads: a stored entity found by its id.
pub trait PointRead: Clone + Send + 'static {
    type Id: Copy + Ord + Hash + Send + Sync + 'static;
    /// What a missing id is not found as.
    const ENTITY: Entity;
    fn id(&self) -> Self::Id;
}

impl PointRead for User {
    type Id = UserId;
    const ENTITY: Entity = Entity::User;
    fn id(&self) -> UserId {
        self.id
    }
}

impl PointRead for Node {
    type Id = NodeId;
    const ENTITY: Entity = Entity::Node;
    fn id(&self) -> NodeId {
        self.id
    }
}

/// Point reads, grouped: see the module's doc.
#[derive(Clone, Debug)]
pub struct GroupedReads<T: PointRead = User> {
    reads: Grouped<T::Id, StorageResult<T>>,
}

impl<T: PointRead> GroupedReads<T> {
    /// Starts the task on the current Tokio runtime. `read` gets 1 to
    /// [`MAX_GROUP`] distinct ids and answers the ones it finds (in any
    /// order; the missing ones are not found); at most `concurrent` reads
    /// run at once.
    pub fn spawn<F, Fut>(concurrent: usize, read: F) -> Self
    where
        F: Fn(Vec<T::Id>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StorageResult<Vec<T>>> + Send + 'static,
    {
        let reads = Grouped::spawn(concurrent, MAX_GROUP, move |asked: Vec<T::Id>| {
            let mut ids = asked.clone();
            ids.sort_unstable();
            ids.dedup();
            let reading = read(ids);
            async move { answer(&asked, reading.await) }
        });
        Self { reads }
    }

    /// The entity `id`, or [`StorageError::NotFound`].
    pub async fn get(&self, id: T::Id) -> StorageResult<T> {
        self.reads.call(id).await.unwrap_or_else(|| Err(stopped()))
    }
}

/// The error a caller gets when the storage's task is gone.
pub fn stopped() -> StorageError {
    StorageError::Unavailable("the storage was closed".into())
}

/// One answer per asked id, in order, from one read's result.
fn answer<T: PointRead>(asked: &[T::Id], read: StorageResult<Vec<T>>) -> Vec<StorageResult<T>> {
    let found = match read {
        Ok(found) => found,
        Err(error) => return asked.iter().map(|_| Err(copy_of(&error))).collect(),
    };
    let found: HashMap<T::Id, T> = found.into_iter().map(|t| (t.id(), t)).collect();
    asked
        .iter()
        .map(|id| {
            found
                .get(id)
                .cloned()
                .ok_or(StorageError::NotFound(T::ENTITY))
        })
        .collect()
}

/// The same error for another caller of a group (errors hold boxed sources,
/// which do not clone): same kind, same text.
pub fn copy_of(error: &StorageError) -> StorageError {
    match error {
        StorageError::NotFound(entity) => StorageError::NotFound(*entity),
        StorageError::AlreadyExists(entity) => StorageError::AlreadyExists(*entity),
        StorageError::Unavailable(source) => StorageError::Unavailable(source.to_string().into()),
        StorageError::Corrupt(text) => StorageError::Corrupt(text.clone()),
        other => StorageError::Other(other.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::domain::{Timestamp, UserSecret, UserStatus};
    use crate::grouped::tests::until;

    fn user(id: UserId) -> User {
        User {
            id,
            name: format!("u{id}"),
            status: UserStatus::Enabled,
            secret: UserSecret::random(),
            change_seq: 0,
            created_at: Timestamp(0),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_together_share_one_read_and_each_gets_their_answer() {
        let known: Vec<UserId> = (0..50).map(|_| UserId::random()).collect();
        let groups = Arc::new(Mutex::new(Vec::<usize>::new()));
        let (release, released) = tokio::sync::watch::channel(false);
        let (k, g) = (known.clone(), groups.clone());
        // One slot, and every read waits for `release`: everyone queued
        // while the first read waits goes next, together.
        let reads = GroupedReads::spawn(1, move |ids: Vec<UserId>| {
            g.lock().unwrap().push(ids.len());
            let found: Vec<User> = ids
                .iter()
                .filter(|id| k.contains(id))
                .map(|id| user(*id))
                .collect();
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                Ok(found)
            }
        });
        let unknown = UserId::random();
        let mut tasks = tokio::task::JoinSet::new();
        let mut callers = known.iter().copied().chain([unknown, known[0]]);
        let first = callers.next().unwrap();
        let r = reads.clone();
        tasks.spawn(async move { (first, r.get(first).await) });
        until(|| groups.lock().unwrap().len() == 1).await;
        for id in callers {
            let reads = reads.clone();
            tasks.spawn(async move { (id, reads.get(id).await) });
        }
        until(|| reads.reads.queued() == 51).await;
        release.send(true).unwrap();
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (id, Ok(u)) => assert_eq!(u.id, id),
                (id, Err(StorageError::NotFound(Entity::User))) => assert_eq!(id, unknown),
                (id, other) => panic!("{id}: {other:?}"),
            }
        }
        let groups = groups.lock().unwrap();
        assert!(
            groups.iter().any(|&n| n > 1),
            "some reads were grouped: {groups:?}"
        );
        assert!(groups.len() < 52, "fewer reads than callers: {groups:?}");
        assert!(
            groups.iter().sum::<usize>() <= 52,
            "no id read twice for one caller: {groups:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_read_fails_every_caller_in_its_group_with_the_same_kind() {
        let reads = GroupedReads::<User>::spawn(2, |_ids: Vec<UserId>| async {
            Err(StorageError::Unavailable("database is down".into()))
        });
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let reads = reads.clone();
            tasks.spawn(async move { reads.get(UserId::random()).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                Err(StorageError::Unavailable(e)) => assert!(e.to_string().contains("down")),
                other => panic!("{other:?}"),
            }
        }
    }
}
