//! The calls made many at a time, grouped (see
//! [`manager_lib::storage::grouped`]): the user calls that every client and
//! every admin tool makes (point reads, creations and status changes), and
//! the point reads of nodes that a push to the whole fleet makes, one per
//! node under its lock.
//!
//! Each statement costs PostgreSQL a parse, a plan, an executor start and a
//! commit, several times what touching one user row costs: one user change
//! per statement tops out near 4,000 changes per second on two cores, with
//! the server's CPU spent on statement overhead. Grouped, the callers queued
//! while the slots are busy share one statement and one commit.
//!
//! A group is one statement, so it commits or fails as a whole; a failure
//! (the database gone, most likely) is every caller's failure, and none of
//! the group's changes is made. A change that failed that way may be retried
//! by its caller like any other.

use std::collections::{HashMap, HashSet};

use manager_lib::domain::usage::storable;
use manager_lib::domain::{NewUser, Node, NodeId, Timestamp, User, UserId, UserStatus};
use manager_lib::seal::Sealer;
use manager_lib::storage::grouped::{Grouped, GroupedReads, copy_of, stopped};
use manager_lib::storage::{Entity, StorageError, StorageResult, kit};
use sqlx::postgres::PgPool;

use crate::error::{node_err, user_err};
use crate::rows::{self, free_stripe, node_columns, user_columns};

/// Point reads in flight at once (each holds a pooled connection).
const CONCURRENT_READS: usize = 2;
/// Groups of creations, and of status changes, in flight at once: two, so
/// one group runs while the other waits for its commit, and callers queue
/// behind them into large groups. Measured with 64 callers on two cores
/// (`bench_manager writes`): 8, 4 and 2 slots gave 4,600, 6,700 and 8,800
/// users/s, the server's CPU going to per-statement work with small groups.
const CONCURRENT_WRITES: usize = 2;
/// The most changes one statement makes.
const MAX_WRITE_GROUP: usize = 128;

type Answers = Vec<StorageResult<User>>;

/// What the grouped calls read and write with.
#[derive(Clone)]
struct Db {
    pool: PgPool,
    seal: Sealer,
}

/// The grouped calls of one pool; started on first use.
#[derive(Debug)]
pub(crate) struct Calls {
    pub(crate) user_reads: GroupedReads<User>,
    pub(crate) node_reads: GroupedReads<Node>,
    creates: Grouped<NewUser, StorageResult<User>>,
    statuses: Grouped<(UserId, UserStatus), StorageResult<User>>,
}

impl Calls {
    /// Starts the tasks on the current Tokio runtime.
    pub(crate) fn spawn(pool: &PgPool, seal: &Sealer) -> Self {
        let db = Db {
            pool: pool.clone(),
            seal: seal.clone(),
        };
        let (p1, p2, p3, p4) = (db.clone(), db.clone(), db.clone(), db);
        Self {
            user_reads: GroupedReads::spawn(CONCURRENT_READS, move |ids| {
                read_users(p1.clone(), ids)
            }),
            node_reads: GroupedReads::spawn(CONCURRENT_READS, move |ids| {
                read_nodes(p4.clone(), ids)
            }),
            creates: Grouped::spawn(CONCURRENT_WRITES, MAX_WRITE_GROUP, move |asked| {
                let taken = || StorageError::AlreadyExists(Entity::User);
                in_rounds(p2.clone(), asked, |u: &NewUser| u.id, taken, create_users)
            }),
            statuses: Grouped::spawn(CONCURRENT_WRITES, MAX_WRITE_GROUP, move |asked| {
                let gone = || StorageError::NotFound(Entity::User);
                in_rounds(
                    p3.clone(),
                    asked,
                    |c: &(UserId, UserStatus)| c.0,
                    gone,
                    set_statuses,
                )
            }),
        }
    }

    pub(crate) async fn create(&self, new: NewUser) -> StorageResult<User> {
        self.creates
            .call(new)
            .await
            .unwrap_or_else(|| Err(stopped()))
    }

    pub(crate) async fn set_status(&self, id: UserId, status: UserStatus) -> StorageResult<User> {
        (self.statuses.call((id, status)).await).unwrap_or_else(|| Err(stopped()))
    }
}

/// Reads the nodes among `ids` in one statement. A push to the whole fleet
/// reads each node's cursor under that node's lock, up to the reconciler's
/// concurrency at once: one statement per node was a thousand statements
/// per push on a fleet of a thousand, run next to the changes being pushed.
async fn read_nodes(db: Db, ids: Vec<NodeId>) -> StorageResult<Vec<Node>> {
    let ids: Vec<String> = ids.iter().map(NodeId::to_string).collect();
    let rows = sqlx::query(concat!(
        "SELECT ",
        node_columns!(),
        " FROM nodes WHERE id = ANY($1::text[]::uuid[])"
    ))
    .bind(ids)
    .fetch_all(&db.pool)
    .await
    .map_err(node_err)?;
    rows.iter().map(|r| rows::node(r, &db.seal)).collect()
}

/// Reads the live users among `ids` in one statement.
async fn read_users(db: Db, ids: Vec<UserId>) -> StorageResult<Vec<User>> {
    let ids: Vec<String> = ids.iter().map(UserId::to_string).collect();
    let rows = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = ANY($1::text[]::uuid[]) AND NOT deleted"
    ))
    .bind(ids)
    .fetch_all(&db.pool)
    .await
    .map_err(user_err)?;
    rows.iter().map(|r| rows::user(r, &db.seal)).collect()
}

/// Serves `asked` with `serve`, which takes requests for distinct users and
/// answers the users it changed or created (a request whose user is not in
/// the answer gets `missing()`): a user asked twice in one group (two
/// callers at once) is served in a later round, in the order asked.
async fn in_rounds<T, F, Fut>(
    db: Db,
    asked: Vec<T>,
    user: impl Fn(&T) -> UserId,
    missing: impl Fn() -> StorageError,
    serve: F,
) -> Answers
where
    F: Fn(Db, Vec<T>) -> Fut,
    Fut: Future<Output = StorageResult<Vec<User>>>,
{
    let ids: Vec<UserId> = asked.iter().map(&user).collect();
    let mut answers: Vec<Option<StorageResult<User>>> = asked.iter().map(|_| None).collect();
    let mut rest: Vec<(usize, T)> = asked.into_iter().enumerate().collect();
    while !rest.is_empty() {
        let mut seen = HashSet::new();
        let (round, later): (Vec<_>, Vec<_>) =
            rest.into_iter().partition(|(_, t)| seen.insert(user(t)));
        rest = later;
        let (at, requests): (Vec<usize>, Vec<T>) = round.into_iter().unzip();
        match serve(db.clone(), requests).await {
            Ok(users) => {
                let mut users: HashMap<UserId, User> =
                    users.into_iter().map(|u| (u.id, u)).collect();
                for i in at {
                    answers[i] = Some(users.remove(&ids[i]).ok_or_else(&missing));
                }
            }
            Err(error) => {
                for i in at {
                    answers[i] = Some(Err(copy_of(&error)));
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(stopped())))
        .collect()
}

/// Creates the users (distinct ids) in one statement; a user whose id is
/// taken is not in the answer, which reads as `AlreadyExists`.
///
/// A user whose plan has already expired is created blocked, without a
/// change (it is disabled and on no node).
async fn create_users(db: Db, new: Vec<NewUser>) -> StorageResult<Vec<User>> {
    let now = Timestamp::now();
    let ids: Vec<String> = new.iter().map(|u| u.id.to_string()).collect();
    let names: Vec<&str> = new.iter().map(|u| u.name.as_str()).collect();
    let secrets: Vec<String> = new
        .iter()
        .map(|u| db.seal.seal_user_secret(u.id, &u.secret))
        .collect();
    let keys: Vec<String> = new
        .iter()
        .map(|u| db.seal.seal_subscription_key(u.id, &u.subscription_key))
        .collect();
    let plans: Vec<_> = new.iter().map(|u| u.plan).collect();
    let limits: Vec<Option<i64>> = plans.iter().map(|p| p.data_limit.map(storable)).collect();
    let expiries: Vec<Option<i64>> = plans.iter().map(|p| p.expire_at.map(|t| t.0)).collect();
    let periods: Vec<&str> = plans.iter().map(|p| p.reset.period()).collect();
    let days: Vec<i16> = plans.iter().map(|p| p.reset.month_day().into()).collect();
    let holds: Vec<Option<i64>> = plans.iter().map(|p| p.on_hold.map(storable)).collect();
    let blocked: Vec<Option<&str>> = plans
        .iter()
        .map(|p| kit::usage::plan_block(p, 0, now).map(|b| b.as_str()))
        .collect();
    let resets: Vec<Option<i64>> = plans
        .iter()
        .map(|p| p.reset.next_reset_after(now).map(|t| t.0))
        .collect();
    sqlx::query(concat!(
        "INSERT INTO users (id, name, status, secret, change_seq, deleted, created_at, \
             data_limit, expire_at, reset_period, reset_day, on_hold, blocked, next_reset_at, \
             subscription_key) \
         SELECT i.id, i.name, 'Disabled', i.secret, 0, FALSE, $4, \
             i.data_limit, i.expire_at, i.reset_period, i.reset_day, i.on_hold, i.blocked, \
             i.next_reset_at, i.subscription_key \
         FROM unnest($1::text[]::uuid[], $2::text[], $3::text[], $5::bigint[], $6::bigint[], \
             $7::text[], $8::smallint[], $9::bigint[], $10::text[], $11::bigint[], \
             $12::text[]) \
             AS i(id, name, secret, data_limit, expire_at, reset_period, reset_day, on_hold, \
                  blocked, next_reset_at, subscription_key) \
         ON CONFLICT (id) DO NOTHING RETURNING ",
        user_columns!()
    ))
    .bind(ids)
    .bind(names)
    .bind(secrets)
    .bind(now.0)
    .bind(limits)
    .bind(expiries)
    .bind(periods)
    .bind(days)
    .bind(holds)
    .bind(blocked)
    .bind(resets)
    .bind(keys)
    .fetch_all(&db.pool)
    .await
    .map_err(user_err)
    .and_then(|rows| rows.iter().map(|r| rows::user(r, &db.seal)).collect())
}

/// The status change statement, with `$source` giving the users to change
/// and the status each one is wanted in (`i(id, want)`):
/// - `target` takes the shared change lock (xm_change_lock() in the filter,
///   before any row lock: see the migration) and locks the live users in id
///   order, so two groups never wait for each other in a cycle, reading
///   each user's newest version;
/// - `changed` gives the users whose status really changes the new status
///   and the next numbers;
/// - `delta`, `pick` and `counted` add the net change of the on-node count
///   (blocked users do not count) to one free stripe, only when something
///   changed (see `free_stripe!`).
///
/// The answer holds every live user asked for: changed or as it was.
macro_rules! set_statuses_sql {
    ($source:literal) => {
        concat!(
            "WITH target AS ( \
               SELECT u.*, i.want \
               FROM users u JOIN ",
            $source,
            " ON u.id = i.id \
               WHERE NOT u.deleted AND xm_change_lock() \
               ORDER BY u.id FOR UPDATE OF u \
             ), changed AS ( \
               UPDATE users u SET status = t.want, change_seq = xm_next_change_seq() \
               FROM target t WHERE u.id = t.id AND t.status <> t.want \
               RETURNING u.* \
             ), delta AS ( \
               SELECT sum(CASE WHEN blocked IS NOT NULL THEN 0 \
                               WHEN status = 'Enabled' THEN 1 ELSE -1 END) AS d \
               FROM changed \
               HAVING count(*) > 0 \
             ), pick AS ( \
               SELECT d, ",
            free_stripe!(),
            " FROM delta \
             ), counted AS ( \
               UPDATE enabled_stripes s SET enabled = s.enabled + p.d \
               FROM pick p WHERE s.stripe = p.stripe \
             ) SELECT ",
            user_columns!(),
            " FROM changed UNION ALL SELECT ",
            user_columns!(),
            " FROM target t WHERE NOT EXISTS (SELECT 1 FROM changed c WHERE c.id = t.id)"
        )
    };
}

/// Sets each live user's status (distinct ids) in one statement (see
/// `set_statuses_sql!`).
///
/// A group of one, what every change made one after another is, goes as a
/// prepared statement on the user's primary key: its plan is made once per
/// connection and, with one key equal to a parameter on a unique index,
/// is an index lookup whatever the table's size when it was made. Measured
/// (`bench_manager burst --nodes 1 --users 3000`, one change at a time):
/// 0.48 ms per change against 0.90 ms planned each time. A larger group
/// joins the arrays and is planned each time with its own arrays, never from
/// a plan cached on the connection: a generic plan made while `users` was
/// small joins by scanning the whole table, and stays on that connection as
/// the table grows (seen: half the throughput on a fresh database).
async fn set_statuses(db: Db, asked: Vec<(UserId, UserStatus)>) -> StorageResult<Vec<User>> {
    let query = if let [(id, status)] = asked.as_slice() {
        sqlx::query(set_statuses_sql!(
            "(SELECT $1::uuid AS id, $2::text AS want) AS i"
        ))
        .bind(id.to_string())
        .bind(status.as_str())
    } else {
        let ids: Vec<String> = asked.iter().map(|(id, _)| id.to_string()).collect();
        let statuses: Vec<&str> = asked.iter().map(|(_, s)| s.as_str()).collect();
        sqlx::query(set_statuses_sql!(
            "unnest($1::text[]::uuid[], $2::text[]) AS i(id, want)"
        ))
        .bind(ids)
        .bind(statuses)
        .persistent(false)
    };
    query
        .fetch_all(&db.pool)
        .await
        .map_err(user_err)
        .and_then(|rows| rows.iter().map(|r| rows::user(r, &db.seal)).collect())
}
