use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use async_trait::async_trait;

use super::*;
use crate::core::CoreUser;
use crate::wire::UserUsage;

const A: &str = "6f1c2a5e-0000-4000-8000-00000000000a";
const B: &str = "6f1c2a5e-0000-4000-8000-00000000000b";

/// A core whose per-user counters the test raises; `take_user_traffic`
/// answers and zeroes them, or fails while `down`.
#[derive(Debug, Default)]
struct Counters {
    counts: StdMutex<HashMap<String, (u64, u64)>>,
    down: AtomicBool,
}

impl Counters {
    fn add(&self, email: &str, up: u64, down: u64) {
        let mut counts = self.counts.lock().unwrap();
        let slot = counts.entry(email.to_owned()).or_default();
        slot.0 += up;
        slot.1 += down;
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl CoreApi for Counters {
    async fn add_user(&self, _: &str, _: &CoreUser) -> Result<(), CoreError> {
        Ok(())
    }
    async fn remove_user(&self, _: &str, _: &str) -> Result<(), CoreError> {
        Ok(())
    }
    async fn users_count(&self, _: &str) -> Result<Option<u64>, CoreError> {
        Ok(None)
    }
    async fn uptime_secs(&self) -> Result<u32, CoreError> {
        Ok(1)
    }
    async fn take_user_traffic(&self) -> Result<Vec<(String, u64, u64)>, CoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(CoreError::Unavailable("connection refused".into()));
        }
        let taken = std::mem::take(&mut *self.counts.lock().unwrap());
        Ok(taken.into_iter().map(|(e, (u, d))| (e, u, d)).collect())
    }
}

fn setup() -> (tempfile::TempDir, Arc<Counters>, Usage) {
    let dir = tempfile::tempdir().unwrap();
    let core = Arc::new(Counters::default());
    let journal = Journal::open(dir.path(), 720).unwrap();
    let usage = Usage::new(core.clone(), journal);
    (dir, core, usage)
}

async fn everything(usage: &Usage) -> HashMap<String, (u64, u64)> {
    let page = usage.pull(UsageRequest::default()).await.unwrap();
    let mut sums = HashMap::new();
    for b in page.batches {
        for u in b.users {
            let slot: &mut (u64, u64) = sums.entry(u.id).or_default();
            slot.0 += u.up;
            slot.1 += u.down;
        }
    }
    sums
}

#[tokio::test]
async fn a_read_becomes_one_batch_of_the_users_deltas() {
    let (_dir, core, usage) = setup();
    core.add(A, 10, 20);
    core.add(B, 0, 5);
    core.add("admin@example.com", 99, 99);
    assert_eq!(usage.collect().await.unwrap(), Some(1));
    let page = usage.pull(UsageRequest::default()).await.unwrap();
    assert_eq!(page.batches.len(), 1);
    let mut users = page.batches[0].users.clone();
    users.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        users,
        vec![
            UserUsage {
                id: A.into(),
                up: 10,
                down: 20
            },
            UserUsage {
                id: B.into(),
                up: 0,
                down: 5
            },
        ],
        "the operator's own clients are not journaled"
    );
    assert!(page.batches[0].from <= page.batches[0].to);
    assert_eq!(usage.counters().batches_appended.load(Ordering::Relaxed), 1);
    assert_eq!(usage.counters().user_deltas.load(Ordering::Relaxed), 2);
    assert_eq!(
        usage.collect().await.unwrap(),
        None,
        "nothing moved: no batch"
    );
}

#[tokio::test]
async fn a_failed_append_keeps_the_read_for_the_next() {
    let (_dir, core, usage) = setup();
    core.add(A, 1, 2);
    lock(&usage.journal).fail_next_append = true;
    assert!(matches!(
        usage.collect().await,
        Err(CollectError::Journal(_))
    ));
    core.add(A, 10, 20);
    assert_eq!(usage.collect().await.unwrap(), Some(1));
    assert_eq!(everything(&usage).await[A], (11, 22));
    assert_eq!(usage.counters().append_errors.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_core_that_does_not_answer_loses_nothing_already_read() {
    let (_dir, core, usage) = setup();
    core.add(A, 1, 2);
    lock(&usage.journal).fail_next_append = true;
    assert!(usage.collect().await.is_err());
    core.down.store(true, Ordering::SeqCst);
    // The core is down, but what was read before still reaches the journal.
    assert!(matches!(usage.collect().await, Err(CollectError::Core(_))));
    assert_eq!(everything(&usage).await[A], (1, 2));
}

#[tokio::test]
async fn without_reads_the_core_is_never_read() {
    let (_dir, core, usage) = setup();
    let usage = usage.without_reads();
    core.add(A, 1, 2);
    assert_eq!(usage.collect().await.unwrap(), None);
    assert_eq!(core.counts.lock().unwrap()[A], (1, 2));
}

#[tokio::test]
async fn pulls_are_capped() {
    let (_dir, core, usage) = setup();
    for _ in 0..(MAX_PULL_BATCHES + 5) {
        core.add(A, 1, 1);
        usage.collect().await.unwrap();
    }
    let all = usage
        .pull(UsageRequest {
            max_batches: Some(10_000),
            ..UsageRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(all.batches.len(), MAX_PULL_BATCHES as usize);
    assert!(all.more);
    let default = usage.pull(UsageRequest::default()).await.unwrap();
    assert_eq!(default.batches.len(), DEFAULT_PULL_BATCHES as usize);
}

#[tokio::test]
async fn the_loop_appends_every_interval() {
    let (_dir, core, usage) = setup();
    let usage = Arc::new(usage);
    let stop = CancellationToken::new();
    let task = tokio::spawn(usage.clone().run(Duration::from_millis(20), stop.clone()));
    for round in 1..=3 {
        core.add(A, 1, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while usage.counters().batches_appended.load(Ordering::Relaxed) < round {
            assert!(Instant::now() < deadline, "no batch {round}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(everything(&usage).await[A], (3, 0));
}

#[tokio::test]
async fn the_loop_reads_once_more_when_stopped() {
    let (_dir, core, usage) = setup();
    let usage = Arc::new(usage);
    let stop = CancellationToken::new();
    // No tick comes within the test: only the last read can take it.
    let task = tokio::spawn(usage.clone().run(Duration::from_secs(3600), stop.clone()));
    core.add(A, 0, 7);
    stop.cancel();
    task.await.unwrap();
    assert_eq!(everything(&usage).await[A], (0, 7));
}
