//! Grouped calls, for backends whose every call costs far more than the
//! item it touches: a statement's round trip, parse, plan and commit on
//! PostgreSQL, a command's round trip to Redis.
//!
//! Callers queue their request; a task takes whatever is queued as soon as
//! one of `concurrent` slots is free and hands it all to the backend, which
//! serves it in one call. A lone caller goes alone at once; under load the
//! queue fills while the slots are busy, and many requests share one trip.
//! Fewer slots make larger groups: less work per request, a little more
//! waiting.
//!
//! On top of it, [`GroupedReads`]: point reads of users and of nodes, for
//! backends to build `get_user` and `get_node` on. The user-node-list call
//! reads one user row per request, a push to the whole fleet reads each
//! node's cursor under its lock, and each statement costs a round trip (to
//! SQLite's connection thread, or over the network to PostgreSQL) that
//! dwarfs the lookup itself.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::domain::{Node, NodeId, User, UserId};
use crate::storage::{Entity, StorageError, StorageResult};

type Waiter<Req, Out> = (Req, oneshot::Sender<Out>);

/// Requests of many callers, served a group at a time by one function. The
/// task stops when every handle is gone.
pub struct Grouped<Req, Out> {
    queue: mpsc::Sender<Waiter<Req, Out>>,
}

impl<Req, Out> Clone for Grouped<Req, Out> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<Req, Out> Grouped<Req, Out> {
    /// Requests queued and not yet taken into a group.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

impl<Req, Out> std::fmt::Debug for Grouped<Req, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouped")
            .field("queued", &self.queued())
            .finish()
    }
}

impl<Req: Send + 'static, Out: Send + 'static> Grouped<Req, Out> {
    /// Starts the task on the current Tokio runtime. `serve` gets 1 to
    /// `max_group` requests, in the order they were queued, and answers each,
    /// in the same order; at most `concurrent` groups are served at once. A
    /// caller that gave up before its group was taken is left out of it.
    pub fn spawn<F, Fut>(concurrent: usize, max_group: usize, serve: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Out>> + Send + 'static,
    {
        let max_group = max_group.max(1);
        let (queue, rx) = mpsc::channel(4 * max_group);
        tokio::spawn(run(concurrent.max(1), max_group, Arc::new(serve), rx));
        Self { queue }
    }

    /// The answer to `request`, or `None` when the task has stopped (the
    /// runtime is shutting down) or `serve` gave no answer for it.
    pub async fn call(&self, request: Req) -> Option<Out> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((request, reply)).await.ok()?;
        answer.await.ok()
    }
}

async fn run<Req, Out, F, Fut>(
    concurrent: usize,
    max_group: usize,
    serve: Arc<F>,
    mut queue: mpsc::Receiver<Waiter<Req, Out>>,
) where
    Req: Send + 'static,
    Out: Send + 'static,
    F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<Out>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrent));
    let mut taken = Vec::with_capacity(max_group);
    loop {
        // A free slot first, then everything queued by then.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if queue.recv_many(&mut taken, max_group).await == 0 {
            return;
        }
        let (requests, replies): (Vec<Req>, Vec<oneshot::Sender<Out>>) =
            taken.drain(..).filter(|(_, r)| !r.is_closed()).unzip();
        if requests.is_empty() {
            continue;
        }
        let serving = serve(requests);
        tokio::spawn(async move {
            for (reply, out) in replies.into_iter().zip(serving.await) {
                let _ = reply.send(out);
            }
            drop(slot);
        });
    }
}

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
    use std::sync::Mutex;

    use super::*;
    use crate::domain::{Timestamp, UserSecret, UserStatus};

    fn user(id: UserId) -> User {
        User {
            id,
            name: format!("u{id}"),
            status: UserStatus::Enabled,
            secret: UserSecret::random(),
            subscription_key: crate::domain::SubscriptionKey::random(),
            device_limit: None,
            change_seq: 0,
            created_at: Timestamp(0),
            plan: Default::default(),
            used_up: 0,
            used_down: 0,
            blocked: None,
            next_reset_at: None,
            last_reset_at: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_go_back_in_order_and_a_caller_that_gave_up_is_left_out() {
        let (release, released) = tokio::sync::watch::channel(false);
        let groups = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let g = groups.clone();
        // One slot; every group waits for `release`, so callers queue.
        let grouped = Grouped::spawn(1, 16, move |asked: Vec<u32>| {
            g.lock().unwrap().push(asked.clone());
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                asked.iter().map(|n| n * 10).collect::<Vec<u32>>()
            }
        });
        let first = tokio::spawn({
            let grouped = grouped.clone();
            async move { grouped.call(1).await }
        });
        until(|| groups.lock().unwrap().len() == 1).await;
        // Queued behind the first group: 2 gives up, 3 and 4 wait.
        // Each caller is queued before the next is spawned: on a runtime
        // with several threads, spawned tasks may otherwise queue in any order.
        let gave_up = tokio::spawn({
            let grouped = grouped.clone();
            async move { grouped.call(2).await }
        });
        until(|| grouped.queued() == 1).await;
        let mut waiting = Vec::new();
        for n in [3, 4] {
            let caller = grouped.clone();
            waiting.push(tokio::spawn(async move { caller.call(n).await }));
            until(|| grouped.queued() == n as usize - 1).await;
        }
        gave_up.abort();
        let _ = gave_up.await;
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some(10));
        for (task, want) in waiting.into_iter().zip([30, 40]) {
            assert_eq!(task.await.unwrap(), Some(want));
        }
        assert_eq!(*groups.lock().unwrap(), vec![vec![1], vec![3, 4]]);
    }

    async fn until(condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not reached in 10 s"
            );
            tokio::task::yield_now().await;
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
