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

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

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

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;

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
        until(|| grouped.queued() == 3).await;
        gave_up.abort();
        let _ = gave_up.await;
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some(10));
        for (task, want) in waiting.into_iter().zip([30, 40]) {
            assert_eq!(task.await.unwrap(), Some(want));
        }
        assert_eq!(*groups.lock().unwrap(), vec![vec![1], vec![3, 4]]);
    }

    pub(crate) async fn until(condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not reached in 10 s"
            );
            tokio::task::yield_now().await;
        }
    }
}
