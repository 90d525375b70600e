//! Group commit: one task owns the write connection and runs every write
//! waiting for it in one transaction.
//!
//! A caller hands the task its write (one statement with its arguments, or a
//! closure over the connection for writes of several statements) and a
//! oneshot for the answer. The task takes every write queued at that moment
//! (at most [`MAX_BATCH`]; it never waits for more to arrive), opens one
//! `BEGIN IMMEDIATE` transaction, runs each write inside its own
//! `SAVEPOINT` (a write that fails is rolled back to it, alone, and its caller
//! gets its error; a single statement is sent together with its `SAVEPOINT`,
//! so a write costs one round trip to the connection's thread), `COMMIT`s once and only then answers every caller. A
//! failed `COMMIT`, or a failure that may have ended the transaction (an
//! error that [`StorageError::is_temporary`]), answers every caller of the
//! batch with that error: nothing of the batch was committed.
//!
//! A caller that gives up (drops its future) once its write is queued may
//! still have it committed, as with a connection lost after a commit; a write
//! whose caller is gone before the batch starts is skipped.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use manager_lib::storage::{BoxError, Entity, StorageError, StorageResult};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments as _, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::Checkpoints;
use crate::error::db_error;

/// A boxed future borrowing the write connection.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The most writes one transaction takes.
pub const MAX_BATCH: usize = 256;

/// How many writes may wait for the writer before callers wait to queue.
const QUEUE: usize = 4 * MAX_BATCH;

/// What the writer did so far: see [`crate::SqliteStorage::write_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Batches taken from the queue (committed, failed or running).
    pub batches: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Writes run in those transactions, the ones undone alone included.
    pub writes: u64,
    /// Writes waiting for the writer right now.
    pub queued: usize,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    commits: AtomicU64,
    writes: AtomicU64,
}

/// The handle callers write through; the task stops when every handle is gone.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts the writer task on the current Tokio runtime. It takes a
    /// connection from `pool` for each batch, and nudges `checkpoints`, if
    /// given, after each.
    pub(crate) fn spawn(pool: SqlitePool, checkpoints: Option<Checkpoints>) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(pool, queue, counters.clone(), checkpoints));
        Self { jobs, counters }
    }

    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            queued: self.jobs.max_capacity() - self.jobs.capacity(),
        }
    }

    /// Runs `work` in the next batch and answers once that batch committed.
    /// `work` must leave no statement half done on error: the savepoint
    /// around it undoes whatever it wrote.
    pub(crate) async fn write<T, F>(&self, work: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StorageResult<T>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(Write { work, reply }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs one statement (`sql` with `args`; errors are about `entity`) in
    /// the next batch and hands its first row, if any, to `then`; answers
    /// once that batch committed. Write `RETURNING` to learn whether a row
    /// was touched: the count of changes is not reliable when the statement
    /// is sent with its savepoint.
    pub(crate) async fn statement<T, F>(
        &self,
        sql: String,
        args: Args,
        entity: Option<Entity>,
        then: F,
    ) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Option<SqliteRow>) -> StorageResult<T> + Send + 'static,
    {
        if let Some(e) = args.error {
            return Err(StorageError::Other(e));
        }
        let (reply, answer) = oneshot::channel();
        let job = Statement {
            sql,
            args: args.args,
            entity,
            then,
            reply,
        };
        self.jobs.send(Box::new(job)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A statement's arguments, owned so that they can travel to the writer.
#[derive(Default)]
pub(crate) struct Args {
    args: SqliteArguments<'static>,
    error: Option<BoxError>,
}

impl Args {
    pub(crate) fn bind<T>(mut self, value: T) -> Self
    where
        T: sqlx::Encode<'static, Sqlite> + sqlx::Type<Sqlite> + Send + 'static,
    {
        if self.error.is_none() {
            if let Err(e) = self.args.add(value) {
                self.error = Some(e);
            }
        }
        self
    }
}

/// The writer task is gone (its runtime shut down).
fn stopped() -> StorageError {
    StorageError::Unavailable("the SQLite writer task has stopped".into())
}

/// One queued write, its result type erased.
trait Job: Send {
    /// Whether its caller stopped waiting before it ran.
    fn abandoned(&self) -> bool;
    /// Runs `lead` (statements the writer needs first: the transaction's
    /// `BEGIN` or the write's `SAVEPOINT`), then the write; the answer waits
    /// for the batch's end.
    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        lead: &'static str,
    ) -> BoxFuture<'c, Ran>;
    /// Answers without running (the batch failed before reaching it).
    fn fail(self: Box<Self>, err: StorageError);
}

/// A write that ran, and how.
struct Ran {
    outcome: Outcome,
    /// Sends the write's own result, or the batch's error when given and the
    /// write itself succeeded.
    answer: Box<dyn FnOnce(Option<StorageError>) + Send>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// Failed alone: its savepoint undoes it.
    Failed,
    /// Failed in a way that may have ended the transaction.
    Broke,
}

struct Write<T, F> {
    work: F,
    reply: oneshot::Sender<StorageResult<T>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StorageResult<T>> + Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        lead: &'static str,
    ) -> BoxFuture<'c, Ran> {
        let Write { work, reply } = *self;
        Box::pin(async move {
            let lead = match lead {
                "" => Ok(()),
                lead => sqlx::query(lead).execute(&mut *conn).await.map(drop),
            };
            let result = match lead {
                Ok(()) => work(conn).await,
                Err(e) => Err(db_error(e, None)),
            };
            ran(result, reply)
        })
    }

    fn fail(self: Box<Self>, err: StorageError) {
        let _ = self.reply.send(Err(err));
    }
}

/// A write of one statement.
struct Statement<T, F> {
    sql: String,
    args: SqliteArguments<'static>,
    entity: Option<Entity>,
    then: F,
    reply: oneshot::Sender<StorageResult<T>>,
}

impl<T, F> Job for Statement<T, F>
where
    T: Send + 'static,
    F: FnOnce(Option<SqliteRow>) -> StorageResult<T> + Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
        lead: &'static str,
    ) -> BoxFuture<'c, Ran> {
        let Statement {
            sql,
            args,
            entity,
            then,
            reply,
        } = *self;
        Box::pin(async move {
            // One round trip: the lead's statements run first, return no
            // row, and a failure of theirs ends the query.
            let sql = if lead.is_empty() {
                sql
            } else {
                format!("{lead}{sql}")
            };
            let result = sqlx::query_with(&sql, args)
                .fetch_optional(conn)
                .await
                .map_err(|e| db_error(e, entity))
                .and_then(then);
            ran(result, reply)
        })
    }

    fn fail(self: Box<Self>, err: StorageError) {
        let _ = self.reply.send(Err(err));
    }
}

fn ran<T: Send + 'static>(
    result: StorageResult<T>,
    reply: oneshot::Sender<StorageResult<T>>,
) -> Ran {
    let outcome = match &result {
        Ok(_) => Outcome::Done,
        Err(e) if e.is_temporary() => Outcome::Broke,
        Err(_) => Outcome::Failed,
    };
    Ran {
        outcome,
        answer: Box::new(move |batch_error| {
            let result = match (result, batch_error) {
                (Ok(_), Some(err)) => Err(err),
                (result, _) => result,
            };
            // The caller may have given up: nothing to tell then.
            let _ = reply.send(result);
        }),
    }
}

async fn run(
    pool: SqlitePool,
    mut queue: mpsc::Receiver<Box<dyn Job>>,
    counters: Arc<Counters>,
    checkpoints: Option<Checkpoints>,
) {
    let mut taken = Vec::with_capacity(MAX_BATCH);
    // Whatever is queued, at once: a lone caller never waits for company.
    while queue.recv_many(&mut taken, MAX_BATCH).await > 0 {
        let batch: VecDeque<_> = taken.drain(..).filter(|job| !job.abandoned()).collect();
        if !batch.is_empty() {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            run_batch(&pool, batch, &counters).await;
            if let Some(checkpoints) = &checkpoints {
                checkpoints.committed();
            }
        }
    }
}

/// Runs one batch and answers its callers. A commit is counted before its
/// callers hear of it, so a caller that reads the counters after its write
/// sees the write counted.
async fn run_batch(pool: &SqlitePool, mut batch: VecDeque<Box<dyn Job>>, counters: &Counters) {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return fail_all(Vec::new(), batch, db_error(e, None)),
    };
    let mut ran = Vec::with_capacity(batch.len());
    if batch.len() == 1 {
        // Alone, the transaction is the write's savepoint, and its BEGIN
        // travels with the write.
        if let Some(job) = batch.pop_front() {
            let done = job.run(&mut conn, "BEGIN IMMEDIATE; ").await;
            if done.outcome != Outcome::Done {
                // Whether or not the BEGIN went through: end the transaction.
                rollback(&mut conn).await;
                (done.answer)(None);
                return;
            }
            ran.push(done);
        }
    } else {
        if let Err(e) = exec(&mut conn, "BEGIN IMMEDIATE").await {
            // Not in a transaction we could use: make sure none is left open.
            rollback(&mut conn).await;
            return fail_all(Vec::new(), batch, db_error(e, None));
        }
        // Each write gets a savepoint, released by the next write's lead
        // once it succeeded (so SQLite's statement journal stays small).
        // Names alternate: should a lead fail half way, the failed write's
        // `ROLLBACK TO` finds no savepoint of its name (the batch then fails
        // whole) rather than undoing the write before it.
        let mut open = false;
        let mut turn = 0;
        while let Some(job) = batch.pop_front() {
            turn ^= 1;
            let lead = match open {
                false => SAVEPOINT[turn],
                true => RELEASE_SAVEPOINT[turn],
            };
            let done = job.run(&mut conn, lead).await;
            let outcome = done.outcome;
            ran.push(done);
            match outcome {
                Outcome::Done => open = true,
                Outcome::Failed => {
                    open = false;
                    if let Err(e) = exec(&mut conn, ROLLBACK_TO[turn]).await {
                        rollback(&mut conn).await;
                        return fail_all(ran, batch, db_error(e, None));
                    }
                }
                Outcome::Broke => {
                    rollback(&mut conn).await;
                    let err = StorageError::Unavailable(
                        "a write in the same transaction failed; nothing was committed".into(),
                    );
                    return fail_all(ran, batch, err);
                }
            }
        }
    }
    if let Err(e) = exec(&mut conn, "COMMIT").await {
        rollback(&mut conn).await;
        return fail_all(ran, batch, db_error(e, None));
    }
    drop(conn);
    let writes = ran.len() as u64;
    counters.commits.fetch_add(1, Ordering::Relaxed);
    counters.writes.fetch_add(writes, Ordering::Relaxed);
    for done in ran {
        (done.answer)(None);
    }
}

/// The lead of a write after none or after a failed one, by name.
const SAVEPOINT: [&str; 2] = ["SAVEPOINT a; ", "SAVEPOINT b; "];
/// The lead of a write after one that succeeded (whose savepoint had the
/// other name).
const RELEASE_SAVEPOINT: [&str; 2] = ["RELEASE b; SAVEPOINT a; ", "RELEASE a; SAVEPOINT b; "];
/// Undoes a failed write.
const ROLLBACK_TO: [&str; 2] = ["ROLLBACK TO a; RELEASE a", "ROLLBACK TO b; RELEASE b"];

async fn exec(conn: &mut PoolConnection<Sqlite>, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(&mut **conn).await.map(drop)
}

/// Ends any open transaction. An error here means there was none (SQLite
/// already rolled it back) or the connection is broken; the next batch's
/// `BEGIN` reports the latter.
async fn rollback(conn: &mut PoolConnection<Sqlite>) {
    if let Err(e) = exec(conn, "ROLLBACK").await {
        tracing::debug!(error = %e, "rollback of a failed write batch");
    }
}

/// Answers every caller of a batch that did not commit with `err`; a write
/// that failed on its own keeps its own error. Nothing of the batch was
/// committed.
fn fail_all(ran: Vec<Ran>, rest: VecDeque<Box<dyn Job>>, err: StorageError) {
    tracing::warn!(error = %err, writes = ran.len() + rest.len(), "write batch not committed");
    let copies = Copies::new(err);
    for done in ran {
        (done.answer)(Some(copies.get()));
    }
    for job in rest {
        job.fail(copies.get());
    }
}

/// One error told to many callers: the same kind and message for each.
enum Copies {
    NotFound(Entity),
    AlreadyExists(Entity),
    Corrupt(String),
    Unavailable(Shared),
    Other(Shared),
}

impl Copies {
    fn new(err: StorageError) -> Self {
        match err {
            StorageError::NotFound(e) => Copies::NotFound(e),
            StorageError::AlreadyExists(e) => Copies::AlreadyExists(e),
            StorageError::Corrupt(s) => Copies::Corrupt(s),
            StorageError::Unavailable(e) => Copies::Unavailable(Shared(Arc::new(e))),
            StorageError::Other(e) => Copies::Other(Shared(Arc::new(e))),
            other => Copies::Other(Shared(Arc::new(Box::new(other)))),
        }
    }

    fn get(&self) -> StorageError {
        match self {
            Copies::NotFound(e) => StorageError::NotFound(*e),
            Copies::AlreadyExists(e) => StorageError::AlreadyExists(*e),
            Copies::Corrupt(s) => StorageError::Corrupt(s.clone()),
            Copies::Unavailable(e) => StorageError::Unavailable(Box::new(e.clone())),
            Copies::Other(e) => StorageError::Other(Box::new(e.clone())),
        }
    }
}

/// A driver error shared by the callers of one batch.
#[derive(Clone)]
struct Shared(Arc<BoxError>);

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
