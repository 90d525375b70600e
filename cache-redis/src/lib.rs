//! `Cache` on Redis for the manager's hot user-node-list call, shared by all
//! manager replicas that point at the same Redis: an invalidation by one
//! replica is seen by every other at once.
//!
//! ```no_run
//! # async fn run() -> Result<(), manager_lib::cache::CacheError> {
//! use std::sync::Arc;
//! use manager_lib::cache::Cache;
//! let cache: Arc<dyn Cache> = Arc::new(cache_redis::RedisCache::connect("redis://127.0.0.1:6379").await?);
//! # let _ = cache; Ok(()) }
//! ```
//!
//! Every key is prefixed with a namespace (`xm:` by default), values are
//! stored with `SET key value PX ttl`, and every call has a timeout: the
//! cache is an optimisation, so a slow or dead Redis must cost little. The
//! connection is a [`ConnectionManager`], which reconnects by itself.
//!
//! Each stored value starts with a 21-byte header: `v` (a value) or `m` (a
//! mark of [`Cache::mark_changed`]), then its version with its sign bit
//! flipped as 20 decimal digits, so that comparing two headers as strings
//! compares the versions as numbers (digits only: Lua compares strings with
//! the server's collation, which orders digits alike in every locale). A versioned write is one Lua
//! script (`EVAL`) that compares and sets in one step on the server.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use manager_lib::cache::{Cache, CacheError, CacheResult};
use manager_lib::storage::grouped::Grouped;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError};

/// How a [`RedisCache`] talks to Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisCacheSettings {
    /// Prepended to every key, so several deployments (or tests) can share
    /// one Redis.
    pub namespace: String,
    /// The longest a `get`, `put` or `invalidate` may take once connected;
    /// after it the call fails with [`CacheError::Unavailable`].
    pub timeout: Duration,
    /// The longest one connection attempt may take.
    pub connect_timeout: Duration,
    /// After a failed first connection, calls fail at once for this long
    /// instead of each trying to connect again.
    pub retry_after: Duration,
}

impl Default for RedisCacheSettings {
    fn default() -> Self {
        Self {
            namespace: "xm:".to_owned(),
            timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Redis refuses an expiry past its clock's range; ten years is "forever"
/// for a cache, and a shorter ttl keeps the contract ("at most `ttl`").
const MAX_TTL_MILLIS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// A [`Cache`] on Redis.
///
/// Gets and puts are grouped (see [`manager_lib::storage::grouped`]): the calls
/// queued while earlier ones are on the wire go together, the gets as one
/// `MGET`, the puts as one pipeline of `SET … PX`, so under load one round
/// trip and one read on each side serve many callers. A lone call goes at
/// once. A put's call returns once its group was stored.
pub struct RedisCache {
    link: Arc<Link>,
    gets: OnceLock<Gets>,
    puts: OnceLock<Puts>,
}

/// Keys to get; each answer is the value or nothing.
type Gets = Grouped<String, CacheResult<Option<Vec<u8>>>>;
/// Values (header included) to store; see [`Write`].
type Puts = Grouped<Write, CacheResult<()>>;

/// One write of a put group.
struct Write {
    key: String,
    /// Header and value.
    entry: Vec<u8>,
    millis: u64,
    /// Through [`VERSIONED_SET`] rather than a plain `SET`.
    versioned: bool,
}

/// The header's first byte for a value, and for a mark.
const VALUE: u8 = b'v';
const MARK: u8 = b'm';
const HEADER_LEN: usize = 21;

/// Sets `KEYS[1]` to `ARGV[1]` (header and value) for `ARGV[2]` ms unless
/// the key holds a newer entry: a larger version, or the same version when
/// the key holds a value or the new entry is a mark (the rule of
/// `manager_lib::cache::newer`). Headers compare as strings.
const VERSIONED_SET: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and string.len(cur) >= 21 then
  local cur_v = string.sub(cur, 2, 21)
  local new_v = string.sub(ARGV[1], 2, 21)
  local cur_mark = string.sub(cur, 1, 1) == 'm'
  local new_mark = string.sub(ARGV[1], 1, 1) == 'm'
  if cur_v > new_v or (cur_v == new_v and not (cur_mark and not new_mark)) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// `kind`, then `version` with its sign bit flipped as 20 decimal digits,
/// then `value`.
fn entry(kind: u8, version: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.len());
    out.push(kind);
    let ordered = (version as u64) ^ (1 << 63);
    out.extend_from_slice(format!("{ordered:020}").as_bytes());
    out.extend_from_slice(value);
    out
}

/// The value of a stored entry; `None` for a mark or an entry this cache
/// did not write.
fn value_of(stored: Vec<u8>) -> Option<Vec<u8>> {
    (stored.len() >= HEADER_LEN && stored[0] == VALUE).then(|| stored[HEADER_LEN..].to_vec())
}

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MILLIS)
}

/// Groups of gets, and of puts, on the wire at once.
const CONCURRENT_GROUPS: usize = 2;
/// The most keys one group takes.
const MAX_GROUP: usize = 256;

/// The connection, shared by the calls and the grouping tasks.
struct Link {
    client: redis::Client,
    settings: RedisCacheSettings,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    /// When the last first-connection attempt failed.
    failed_at: std::sync::Mutex<Option<Instant>>,
}

impl RedisCache {
    /// Connects to `url` (`redis://[:password@]host[:port][/db]`) with the
    /// default settings.
    ///
    /// # Errors
    /// [`CacheError::Unavailable`] when Redis cannot be reached,
    /// [`CacheError::Other`] for a URL that is not a Redis URL.
    pub async fn connect(url: &str) -> Result<Self, CacheError> {
        Self::connect_with(url, RedisCacheSettings::default()).await
    }

    /// Connects to `url` now, with `settings`.
    ///
    /// # Errors
    /// As [`RedisCache::connect`].
    pub async fn connect_with(url: &str, settings: RedisCacheSettings) -> Result<Self, CacheError> {
        let cache = Self::lazy(url, settings)?;
        cache.connection().await?;
        Ok(cache)
    }

    /// A cache that connects on its first call (and, after a failure, on the
    /// first call after `retry_after`): a manager can start while Redis is
    /// down and answer from its storage meanwhile.
    ///
    /// # Errors
    /// [`CacheError::Other`] for a URL that is not a Redis URL.
    pub fn lazy(url: &str, settings: RedisCacheSettings) -> Result<Self, CacheError> {
        // The driver's error may quote the URL, which can hold a password.
        let client = redis::Client::open(url)
            .map_err(|_| CacheError::Other("not a valid redis:// URL".into()))?;
        Ok(Self {
            link: Arc::new(Link {
                client,
                settings,
                conn: tokio::sync::OnceCell::new(),
                failed_at: std::sync::Mutex::new(None),
            }),
            gets: OnceLock::new(),
            puts: OnceLock::new(),
        })
    }

    pub fn settings(&self) -> &RedisCacheSettings {
        &self.link.settings
    }

    async fn connection(&self) -> CacheResult<ConnectionManager> {
        self.link.connection().await
    }

    /// The get groups, started on first use (on the caller's runtime).
    fn gets(&self) -> &Gets {
        self.gets.get_or_init(|| {
            let link = self.link.clone();
            Grouped::spawn(CONCURRENT_GROUPS, MAX_GROUP, move |keys: Vec<String>| {
                let link = link.clone();
                async move {
                    let n = keys.len();
                    let got = link
                        .run(|mut conn| async move {
                            redis::cmd("MGET")
                                .arg(&keys)
                                .query_async::<Vec<Option<Vec<u8>>>>(&mut conn)
                                .await
                        })
                        .await;
                    match got {
                        Ok(values) if values.len() == n => values
                            .into_iter()
                            .map(|v| Ok(v.and_then(value_of)))
                            .collect(),
                        Ok(values) => each(
                            n,
                            &CacheError::Other(
                                format!("MGET of {n} keys answered {} values", values.len()).into(),
                            ),
                        ),
                        Err(e) => each(n, &e),
                    }
                }
            })
        })
    }

    /// The put groups, started on first use.
    fn puts(&self) -> &Puts {
        self.puts.get_or_init(|| {
            let link = self.link.clone();
            Grouped::spawn(CONCURRENT_GROUPS, MAX_GROUP, move |writes: Vec<Write>| {
                let link = link.clone();
                async move {
                    let n = writes.len();
                    let mut pipe = redis::pipe();
                    for w in writes {
                        if w.versioned {
                            pipe.cmd("EVAL")
                                .arg(VERSIONED_SET)
                                .arg(1)
                                .arg(w.key)
                                .arg(w.entry)
                                .arg(w.millis)
                                .ignore();
                        } else {
                            pipe.cmd("SET")
                                .arg(w.key)
                                .arg(w.entry)
                                .arg("PX")
                                .arg(w.millis)
                                .ignore();
                        }
                    }
                    match link
                        .run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
                        .await
                    {
                        Ok(()) => (0..n).map(|_| Ok(())).collect(),
                        Err(e) => each(n, &e),
                    }
                }
            })
        })
    }
}

/// `error` for each of `n` callers of a group (errors do not clone): same
/// kind, same text.
fn each<T>(n: usize, error: &CacheError) -> Vec<CacheResult<T>> {
    (0..n)
        .map(|_| {
            Err(match error {
                CacheError::Unavailable(e) => CacheError::Unavailable(e.to_string().into()),
                other => CacheError::Other(other.to_string().into()),
            })
        })
        .collect()
}

impl Link {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.settings.namespace)
    }

    /// A grouped call's answer, waiting no longer than a call alone could:
    /// a connection attempt and the call timeout, whatever the queue.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Option<CacheResult<T>>>,
    ) -> CacheResult<T> {
        let limit = self.settings.connect_timeout + self.settings.timeout;
        match tokio::time::timeout(limit, call).await {
            Ok(Some(answer)) => answer,
            Ok(None) => Err(CacheError::Unavailable(
                "the cache's task has stopped".into(),
            )),
            Err(_) => Err(CacheError::Unavailable("redis call timed out".into())),
        }
    }

    /// The connection, made on first use. Only one caller connects at a
    /// time; the others wait for its result.
    async fn connection(&self) -> CacheResult<ConnectionManager> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let recently_failed = self
            .failed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < self.settings.retry_after);
        if recently_failed {
            return Err(CacheError::Unavailable(
                "redis unreachable at the last attempt".into(),
            ));
        }
        let connect = async {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(self.settings.connect_timeout)
                .set_response_timeout(self.settings.timeout)
                // One attempt per (re)connection, no backoff sleeps: a
                // refused connection fails the call at once, and the next
                // call after a failure starts a new attempt.
                .set_number_of_retries(0);
            match tokio::time::timeout(
                self.settings.connect_timeout,
                ConnectionManager::new_with_config(self.client.clone(), config),
            )
            .await
            {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(e)) => Err(map_error(e)),
                Err(_) => Err(CacheError::Unavailable(
                    "connecting to redis timed out".into(),
                )),
            }
        };
        match self.conn.get_or_try_init(|| connect).await {
            Ok(conn) => Ok(conn.clone()),
            Err(e) => {
                *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Runs one command with the call timeout.
    async fn run<T, F, Fut>(&self, call: F) -> CacheResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.settings.timeout, call(conn)).await {
            Ok(result) => result.map_err(map_error),
            Err(_) => Err(CacheError::Unavailable("redis call timed out".into())),
        }
    }
}

/// Connection trouble (refused, dropped, timed out, a server still loading
/// or failing over) is [`CacheError::Unavailable`]; anything else, such as a
/// command the server refused, is [`CacheError::Other`].
fn map_error(e: RedisError) -> CacheError {
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::MasterDown
                | ErrorKind::ClusterDown
        );
    if unavailable {
        CacheError::Unavailable(Box::new(e))
    } else {
        CacheError::Other(Box::new(e))
    }
}

impl std::fmt::Debug for RedisCache {
    // The client is left out: its connection info holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("settings", &self.link.settings)
            .field("connected", &self.link.conn.initialized())
            .finish()
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        let key = self.link.key(key);
        self.link.bounded(self.gets().call(key)).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> CacheResult<()> {
        self.write(key, entry(VALUE, i64::MIN, &value), ttl, false)
            .await
    }

    async fn invalidate(&self, key: &str) -> CacheResult<()> {
        let key = self.link.key(key);
        self.link
            .run(|mut conn| async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    async fn put_versioned(
        &self,
        key: &str,
        value: Vec<u8>,
        version: i64,
        ttl: Duration,
    ) -> CacheResult<()> {
        self.write(key, entry(VALUE, version, &value), ttl, true)
            .await
    }

    async fn mark_changed(&self, key: &str, version: i64, ttl: Duration) -> CacheResult<()> {
        self.write(key, entry(MARK, version, &[]), ttl, true).await
    }
}

impl RedisCache {
    /// One write through the put groups.
    async fn write(
        &self,
        key: &str,
        entry: Vec<u8>,
        ttl: Duration,
        versioned: bool,
    ) -> CacheResult<()> {
        if ttl.is_zero() {
            // `PX 0` is an error in Redis; an entry that is already expired
            // is no entry. (A versioned write with no time to live leaves
            // nothing either way.)
            return if versioned {
                Ok(())
            } else {
                self.invalidate(key).await
            };
        }
        let write = Write {
            key: self.link.key(key),
            entry,
            millis: ttl_millis(ttl),
            versioned,
        };
        self.link.bounded(self.puts().call(write)).await
    }
}
