//! Point reads of users, grouped, for backends to build `get_user` on.
//!
//! The user-node-list call reads one user row per request, and each
//! statement costs a round trip (to SQLite's connection thread, or over the
//! network to PostgreSQL) that dwarfs the lookup itself. Callers queue their
//! id; a task takes whatever is queued as soon as one of `concurrent` slots
//! is free and hands it to the backend's `read`, which looks every id up in
//! one statement. A lone caller goes alone at once; under load the queue
//! fills while the slots are busy, and many rows come back for one trip.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::domain::{User, UserId};
use crate::storage::{Entity, StorageError, StorageResult};

/// The most ids one statement takes.
pub const MAX_GROUP: usize = 256;

type Waiter = (UserId, oneshot::Sender<StorageResult<User>>);

/// The handle callers read through; the task stops when every handle is gone.
#[derive(Clone)]
pub struct GroupedReads {
    queue: mpsc::Sender<Waiter>,
}

impl std::fmt::Debug for GroupedReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupedReads")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .finish()
    }
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
        let (queue, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(concurrent.max(1), Arc::new(read), rx));
        Self { queue }
    }

    /// The live user `id`, or [`StorageError::NotFound`].
    pub async fn user(&self, id: UserId) -> StorageResult<User> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((id, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StorageError {
    StorageError::Unavailable("the storage was closed".into())
}

async fn run<F, Fut>(concurrent: usize, read: Arc<F>, mut queue: mpsc::Receiver<Waiter>)
where
    F: Fn(Vec<UserId>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = StorageResult<Vec<User>>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrent));
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
        if group.is_empty() {
            continue;
        }
        let mut ids: Vec<UserId> = group.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let reading = read(ids);
        tokio::spawn(async move {
            answer(group, reading.await);
            drop(slot);
        });
    }
}

fn answer(group: Vec<Waiter>, read: StorageResult<Vec<User>>) {
    let users = match read {
        Ok(users) => users,
        Err(error) => {
            for (_, reply) in group {
                let _ = reply.send(Err(copy_of(&error)));
            }
            return;
        }
    };
    let found: HashMap<UserId, User> = users.into_iter().map(|u| (u.id, u)).collect();
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
