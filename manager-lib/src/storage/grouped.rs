//! Grouped calls, for backends whose every statement costs far more than
//! the row it touches.
//!
//! The user-node-list call reads one user row per request, and a write
//! changes one user; each statement costs a round trip (to SQLite's
//! connection thread, or over the network to PostgreSQL) and, on
//! PostgreSQL, a parse, plan and commit that dwarf the row itself. Callers
//! queue their request; a task takes whatever is queued as soon as one of
//! `concurrent` slots is free and hands it all to the backend, which serves
//! it in one statement. A lone caller goes alone at once; under load the
//! queue fills while the slots are busy, and many requests share one trip.
//!
//! [`Grouped`] is the general form; [`GroupedReads`] the point reads of
//! users built on it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::domain::{User, UserId};
use crate::storage::{Entity, StorageError, StorageResult};

/// The most ids one grouped read takes.
pub const MAX_GROUP: usize = 256;

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

impl<Req, Out> std::fmt::Debug for Grouped<Req, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouped")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
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

/// Point reads of users, grouped: see the module's doc.
#[derive(Clone, Debug)]
pub struct GroupedReads {
    reads: Grouped<UserId, StorageResult<User>>,
}

impl GroupedReads {
    /// Starts the task on the current Tokio runtime. `read` gets 1 to
    /// [`MAX_GROUP`] distinct ids and answers the live users among them (in
    /// any order; the missing ones are not found); at most `concurrent`
    /// reads run at once.
    pub fn spawn<F, Fut>(concurrent: usize, read: F) -> Self
    where
        F: Fn(Vec<UserId>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StorageResult<Vec<User>>> + Send + 'static,
    {
        let reads = Grouped::spawn(concurrent, MAX_GROUP, move |asked: Vec<UserId>| {
            let mut ids = asked.clone();
            ids.sort_unstable();
            ids.dedup();
            let reading = read(ids);
            async move { answer(&asked, reading.await) }
        });
        Self { reads }
    }

    /// The live user `id`, or [`StorageError::NotFound`].
    pub async fn user(&self, id: UserId) -> StorageResult<User> {
        self.reads.call(id).await.unwrap_or_else(|| Err(stopped()))
    }
}

/// The error a caller gets when the storage's task is gone.
pub fn stopped() -> StorageError {
    StorageError::Unavailable("the storage was closed".into())
}

/// One answer per asked id, in order, from one read's result.
fn answer(asked: &[UserId], read: StorageResult<Vec<User>>) -> Vec<StorageResult<User>> {
    let users = match read {
        Ok(users) => users,
        Err(error) => return asked.iter().map(|_| Err(copy_of(&error))).collect(),
    };
    let found: HashMap<UserId, User> = users.into_iter().map(|u| (u.id, u)).collect();
    asked
        .iter()
        .map(|id| {
            found
                .get(id)
                .cloned()
                .ok_or(StorageError::NotFound(Entity::User))
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
            change_seq: 0,
            created_at: Timestamp(0),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_together_share_one_read_and_each_gets_their_answer() {
        let known: Vec<UserId> = (0..50).map(|_| UserId::random()).collect();
        let groups = Arc::new(Mutex::new(Vec::<usize>::new()));
        let (k, g) = (known.clone(), groups.clone());
        // One slot and a slow read: everyone queued meanwhile goes next, together.
        let reads = GroupedReads::spawn(1, move |ids: Vec<UserId>| {
            g.lock().unwrap().push(ids.len());
            let found: Vec<User> = ids
                .iter()
                .filter(|id| k.contains(id))
                .map(|id| user(*id))
                .collect();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(found)
            }
        });
        let unknown = UserId::random();
        let mut tasks = tokio::task::JoinSet::new();
        for id in known.iter().copied().chain([unknown, known[0]]) {
            let reads = reads.clone();
            tasks.spawn(async move { (id, reads.user(id).await) });
        }
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
        let gave_up = tokio::spawn({
            let grouped = grouped.clone();
            async move { grouped.call(2).await }
        });
        let mut waiting = Vec::new();
        for n in [3, 4] {
            let grouped = grouped.clone();
            waiting.push(tokio::spawn(async move { grouped.call(n).await }));
        }
        until(|| grouped.queue.max_capacity() - grouped.queue.capacity() == 3).await;
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

    #[tokio::test]
    async fn a_failed_read_fails_every_caller_in_its_group_with_the_same_kind() {
        let reads = GroupedReads::spawn(2, |_ids: Vec<UserId>| async {
            Err(StorageError::Unavailable("database is down".into()))
        });
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let reads = reads.clone();
            tasks.spawn(async move { reads.user(UserId::random()).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                Err(StorageError::Unavailable(e)) => assert!(e.to_string().contains("down")),
                other => panic!("{other:?}"),
            }
        }
    }
}
