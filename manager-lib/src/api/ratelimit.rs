//! A per-client token bucket for the one call that needs no token: the
//! user's node list (`GET /user/{id}-{name}/nodes`).
//!
//! That call is authorised only by knowing an unguessable id–name pair, so
//! the limit is what turns "unguessable" into "not worth trying": a client
//! gets [`RateLimit::per_second`] calls a second with bursts of
//! [`RateLimit::burst`], then `429 {"error":"too many requests"}`.
//!
//! Clients are told apart by address ([`client_of`]: the peer's, or the
//! one trusted proxies forwarded, see [`super::client_addr`]): IPv4 by the
//! whole address, IPv6 by its /64 (one host usually owns a whole /64, so
//! per-address buckets would be free for it to multiply). Requests without a
//! known address (a router called in-process, or served without connect
//! info) share one bucket.
//!
//! The same buckets, refilling slower ([`RateLimiter::refilling_every`]) and
//! charged only for failures ([`RateLimiter::peek`], then
//! [`RateLimiter::check`]), are the per-client budget of failed admin calls
//! (the admin authentication uses them).
//!
//! The map of buckets is bounded ([`RateLimit::max_clients`]) so a flood of
//! addresses cannot grow memory: a bucket that has refilled carries no state
//! and is dropped when room is needed; when every tracked client is still
//! being limited, the one closest to full is forgotten.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use manager_lib::api::ratelimit::{ClientKey, RateLimit, RateLimiter};
//! let limiter = RateLimiter::new(RateLimit { per_second: 1, burst: 2, ..RateLimit::default() });
//! let client = ClientKey::from_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
//! assert!(limiter.check(client).is_allowed());
//! assert!(limiter.check(client).is_allowed());
//! assert!(!limiter.check(client).is_allowed());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
// Tokio's clock, so tests can pause and advance time instead of sleeping;
// outside a paused test runtime it is the system's monotonic clock.
use tokio::time::Instant;

pub use super::client_addr::client_of;
use super::error::ApiError;

/// Shards of the bucket map: a lock per shard keeps concurrent clients from
/// queueing on one mutex.
const SHARDS: usize = 16;

/// How fast one client may call, and how many clients are remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added to a client's bucket each second (at least 1 is used).
    pub per_second: u32,
    /// The bucket's size: calls a fresh client may make at once (at least 1).
    pub burst: u32,
    /// Clients tracked at most; more are handled by forgetting idle ones.
    pub max_clients: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 20,
            burst: 40,
            max_clients: 100_000,
        }
    }
}

/// Who a request is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address, or an IPv6 address cut to its /64.
    Ip(IpAddr),
    /// No peer address is known.
    Unknown,
}

impl ClientKey {
    pub fn from_ip(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(prefix))
                }
            },
            v4 => v4,
        };
        Self::Ip(ip)
    }

    /// The key of a client address, [`ClientKey::Unknown`] without one.
    pub fn from_client(client: Option<IpAddr>) -> Self {
        client.map_or(Self::Unknown, Self::from_ip)
    }
}

/// The limiter's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit; a token will be there after `retry_after`.
    Limited {
        retry_after: Duration,
    },
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Self::Allowed
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn tokens_at(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

/// Token buckets per client, in a bounded sharded map.
pub struct RateLimiter {
    /// Tokens added per second.
    rate: f64,
    burst: f64,
    per_shard: usize,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<ClientKey, Bucket>>]>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Addresses stay out of Debug: they are the users' and too many.
        f.debug_struct("RateLimiter")
            .field("per_second", &self.rate)
            .field("burst", &self.burst)
            .field("tracked_clients", &self.tracked_clients())
            .finish()
    }
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self::build(
            f64::from(limit.per_second.max(1)),
            limit.burst,
            limit.max_clients,
        )
    }

    /// Buckets of `burst` tokens that regain one token every `every`: for
    /// budgets slower than one a second (e.g. failed logins). A zero
    /// `every` counts as one millisecond.
    pub fn refilling_every(every: Duration, burst: u32, max_clients: usize) -> Self {
        Self::build(
            1.0 / every.max(Duration::from_millis(1)).as_secs_f64(),
            burst,
            max_clients,
        )
    }

    fn build(rate: f64, burst: u32, max_clients: usize) -> Self {
        Self {
            rate,
            burst: f64::from(burst.max(1)),
            per_shard: max_clients.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes one token from `client`'s bucket, if it has one.
    pub fn check(&self, client: ClientKey) -> Decision {
        self.check_at(client, Instant::now())
    }

    /// What [`RateLimiter::check`] would answer, without taking a token (and
    /// without remembering a client that has no bucket yet): for budgets
    /// charged only after the call, e.g. by failures.
    pub fn peek(&self, client: ClientKey) -> Decision {
        self.peek_at(client, Instant::now())
    }

    fn peek_at(&self, client: ClientKey, now: Instant) -> Decision {
        let buckets = lock(self.shard(client));
        match buckets.get(&client) {
            Some(b) => self.decide(b.tokens_at(now, self.rate, self.burst)),
            None => Decision::Allowed,
        }
    }

    fn decide(&self, tokens: f64) -> Decision {
        if tokens >= 1.0 {
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after: Duration::from_secs_f64((1.0 - tokens) / self.rate),
            }
        }
    }

    fn shard(&self, client: ClientKey) -> &Mutex<HashMap<ClientKey, Bucket>> {
        &self.shards[self.hasher.hash_one(client) as usize % SHARDS]
    }

    /// Clients remembered now (never more than about `max_clients`).
    pub fn tracked_clients(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    fn check_at(&self, client: ClientKey, now: Instant) -> Decision {
        let mut buckets = lock(self.shard(client));
        if !buckets.contains_key(&client) && buckets.len() >= self.per_shard {
            self.make_room(&mut buckets, now);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = bucket.tokens_at(now, self.rate, self.burst);
        *bucket = Bucket { tokens, at: now };
        let decision = self.decide(tokens);
        if decision.is_allowed() {
            bucket.tokens -= 1.0;
        }
        decision
    }

    /// Drops every bucket that has refilled (it is the same as a new one);
    /// if none has, forgets the one nearest to full, which loses the least.
    fn make_room(&self, buckets: &mut HashMap<ClientKey, Bucket>, now: Instant) {
        let mut fullest: Option<(ClientKey, f64)> = None;
        buckets.retain(|key, b| {
            let tokens = b.tokens_at(now, self.rate, self.burst);
            if fullest.is_none_or(|(_, t)| tokens > t) {
                fullest = Some((*key, tokens));
            }
            tokens < self.burst
        });
        if let Some((key, _)) = fullest.filter(|_| buckets.len() >= self.per_shard) {
            buckets.remove(&key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a bucket half-written in a
    // way that matters: at worst a client gets a token more or less.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Axum middleware: counts the request against its client's address
/// ([`client_of`]); over the limit it answers 429 with a `Retry-After` in
/// whole seconds.
pub async fn limit_by_client(
    State(limiter): State<Arc<RateLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    match limiter.check(ClientKey::from_client(client_of(&req))) {
        Decision::Allowed => next.run(req).await,
        Decision::Limited { retry_after } => too_many_requests(retry_after),
    }
}

/// The limiters' one answer: 429 `too many requests` in the API's error
/// shape, with a `Retry-After` in whole seconds (at least 1).
pub fn too_many_requests(retry_after: Duration) -> Response {
    let mut resp = ApiError::TooManyRequests.into_response();
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v4(last: u8) -> ClientKey {
        ClientKey::from_ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    fn limiter(per_second: u32, burst: u32, max_clients: usize) -> RateLimiter {
        RateLimiter::new(RateLimit {
            per_second,
            burst,
            max_clients,
        })
    }

    #[test]
    fn a_burst_is_allowed_then_limited_then_refilled_at_the_rate() {
        let l = limiter(10, 3, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at(v4(1), t0).is_allowed());
        }
        let Decision::Limited { retry_after } = l.check_at(v4(1), t0) else {
            panic!("the fourth call in a burst of three must be limited");
        };
        assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}");
        assert!(
            !l.check_at(v4(1), t0 + Duration::from_millis(50))
                .is_allowed()
        );
        assert!(
            l.check_at(v4(1), t0 + Duration::from_millis(160))
                .is_allowed()
        );
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(l.check_at(v4(1), later).is_allowed());
        }
        assert!(!l.check_at(v4(1), later).is_allowed());
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let l = limiter(1, 1, 100);
        let t0 = Instant::now();
        assert!(l.check_at(v4(1), t0).is_allowed());
        assert!(!l.check_at(v4(1), t0).is_allowed());
        assert!(l.check_at(v4(2), t0).is_allowed());
        assert!(l.check_at(ClientKey::Unknown, t0).is_allowed());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_slash_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::from_ip(a), ClientKey::from_ip(b));
        assert_ne!(ClientKey::from_ip(a), ClientKey::from_ip(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::from_ip(mapped), v4(7));
    }

    #[test]
    fn a_flood_of_addresses_stays_within_the_bound() {
        let l = limiter(1, 5, 64);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let key = ClientKey::from_ip(IpAddr::V4(Ipv4Addr::from(i)));
            // All at one instant: nobody has refilled, so eviction must cope.
            assert!(l.check_at(key, t0).is_allowed());
        }
        assert!(l.tracked_clients() <= 64, "{}", l.tracked_clients());
    }

    /// Keys that land in the same shard as `first`.
    fn same_shard(l: &RateLimiter, first: ClientKey, n: usize) -> Vec<ClientKey> {
        let shard = |k: ClientKey| l.hasher.hash_one(k) as usize % SHARDS;
        (1..100_000u32)
            .map(|i| ClientKey::from_ip(IpAddr::V4(Ipv4Addr::from(i))))
            .filter(|k| *k != first && shard(*k) == shard(first))
            .take(n)
            .collect()
    }

    #[test]
    fn room_is_made_from_refilled_buckets_before_limited_ones() {
        let l = limiter(1, 2, 2 * SHARDS);
        let limited = v4(1);
        let [refilled, newcomer] = same_shard(&l, limited, 2)[..] else {
            panic!("no keys in one shard");
        };
        let t0 = Instant::now();
        assert!(l.check_at(refilled, t0).is_allowed());
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.check_at(limited, t1).is_allowed());
        assert!(l.check_at(limited, t1).is_allowed());
        let t2 = t1 + Duration::from_millis(100);
        assert!(l.check_at(newcomer, t2).is_allowed());
        assert_eq!(l.tracked_clients(), 2, "the refilled bucket made room");
        assert!(
            !l.check_at(limited, t2).is_allowed(),
            "the limited client was not forgotten"
        );
    }

    #[test]
    fn when_every_tracked_client_is_limited_the_fullest_is_forgotten() {
        let l = limiter(1, 1, SHARDS);
        let limited = v4(1);
        let [newcomer] = same_shard(&l, limited, 1)[..] else {
            panic!("no keys in one shard");
        };
        let t0 = Instant::now();
        assert!(l.check_at(limited, t0).is_allowed());
        assert!(l.check_at(newcomer, t0).is_allowed());
        assert_eq!(l.tracked_clients(), 1);
    }

    #[test]
    fn a_slow_budget_refills_one_token_per_interval() {
        let l = RateLimiter::refilling_every(Duration::from_secs(60), 2, 100);
        let t0 = Instant::now();
        assert!(l.check_at(v4(1), t0).is_allowed());
        assert!(l.check_at(v4(1), t0).is_allowed());
        let Decision::Limited { retry_after } = l.check_at(v4(1), t0) else {
            panic!("a budget of two is spent after two");
        };
        assert_eq!(retry_after, Duration::from_secs(60));
        let almost = t0 + Duration::from_secs(59);
        assert!(!l.check_at(v4(1), almost).is_allowed());
        assert!(l.check_at(v4(1), t0 + Duration::from_secs(60)).is_allowed());
    }

    #[test]
    fn peek_takes_no_token_and_remembers_no_one() {
        let l = limiter(1, 1, 100);
        let t0 = Instant::now();
        assert!(l.peek_at(v4(1), t0).is_allowed());
        assert_eq!(l.tracked_clients(), 0);
        assert!(l.check_at(v4(1), t0).is_allowed());
        assert!(!l.peek_at(v4(1), t0).is_allowed());
        assert!(l.peek_at(v4(1), t0 + Duration::from_secs(1)).is_allowed());
        assert!(l.peek_at(v4(2), t0).is_allowed());
    }

    #[test]
    fn debug_shows_the_limit_not_the_addresses() {
        let l = limiter(1, 1, 10);
        let _ = l.check(v4(77));
        let text = format!("{l:?}");
        assert!(text.contains("tracked_clients: 1"), "{text}");
        assert!(!text.contains("192.0.2.77"), "{text}");
    }
}
