//! The admin bearer token: how strong a configured token must be, how a
//! presented one is checked, and what repeated failures cost the client.
//!
//! - **Strength** ([`check_strength`]): at least [`MIN_TOKEN_CHARS`] visible
//!   ASCII characters with at least [`MIN_DISTINCT_CHARS`] distinct ones. The
//!   settings refuse anything weaker at start, so an empty `XM_ADMIN_TOKEN=`
//!   can never become the token.
//! - **Check**: `Authorization: Bearer <token>`; an empty presented token is
//!   refused whatever the configured one is; the comparison is of SHA-256
//!   digests in constant time. A token that is not the bootstrap one is
//!   looked up as a scoped token ([`crate::domain::token`]): unknown,
//!   expired or revoked is a failure like a wrong token. The caller's role
//!   is then checked against the route's (module `audit`).
//! - **Failures** ([`FailureLimit`]): each refused admin call takes one token
//!   from the client's budget (the node-list limiter's buckets, keyed the
//!   same way); with the budget spent, every admin call from that client,
//!   even with the right token, answers 429 until a token has refilled.
//!   Successful calls take nothing. Each refusal is logged at WARN (address,
//!   route, reason; never the presented value), at most [`LOG_BURST`] lines
//!   at once and one a second after that, and counted in the metrics.
//!
//! ```
//! use manager_lib::api::admin_auth::{WeakToken, check_strength};
//! assert_eq!(check_strength(""), Err(WeakToken::Empty));
//! assert!(check_strength("2f5c0b1e9d8a7f6e5d4c3b2a19081726").is_ok());
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::audit::{Caller, authorize_and_run};
use super::error::ApiError;
use super::ratelimit::{self, ClientKey, Decision, RateLimiter};
use crate::manager::Manager;
use crate::metrics::ManagerMetrics;

/// The shortest admin token accepted: 32 characters is 128 bits as hex
/// (`openssl rand -hex 16`) and more in base64; a UUID (36) passes too.
pub const MIN_TOKEN_CHARS: usize = 32;
/// Distinct characters a token needs: catches `aaaa…` and `abcabc…`
/// patterns, while a random hex token of 32 characters falls below it with
/// a probability under 1e-7 (and the generated token never does).
pub const MIN_DISTINCT_CHARS: usize = 8;
/// Refusal lines written at once before the log budget applies.
pub const LOG_BURST: u32 = 10;
/// After the burst, one refusal line per this interval; the others are
/// counted in the next line's `suppressed`.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Why a configured admin token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeakToken {
    #[error("is empty")]
    Empty,
    #[error(
        "holds a space, a control or a non-ASCII character (only visible ASCII can be sent in an Authorization header)"
    )]
    NotVisibleAscii,
    #[error("has {0} characters; at least {MIN_TOKEN_CHARS} are needed")]
    TooShort(usize),
    #[error(
        "uses only {0} distinct characters; at least {MIN_DISTINCT_CHARS} are needed (a pattern, not a random value)"
    )]
    TooFewDistinct(usize),
}

/// Whether `token` is strong enough to be the admin token. The manager
/// cannot measure how random a string is; these rules refuse what is
/// certainly weak (empty, short, a pattern) and admit every random token of
/// 32 or more characters from the usual generators.
pub fn check_strength(token: &str) -> Result<(), WeakToken> {
    if token.trim().is_empty() {
        return Err(WeakToken::Empty);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WeakToken::NotVisibleAscii);
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Err(WeakToken::TooShort(token.len()));
    }
    let mut seen = [false; 128];
    for b in token.bytes() {
        seen[usize::from(b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < MIN_DISTINCT_CHARS {
        return Err(WeakToken::TooFewDistinct(distinct));
    }
    Ok(())
}

/// How many failed admin calls a client may make, and how fast that budget
/// refills. Clients are told apart as by the node-list limit (IPv4 address,
/// IPv6 /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureLimit {
    /// Failed calls a client may make before its admin calls answer 429.
    pub failures: u32,
    /// One more failure is allowed after each such interval.
    pub refill_every: Duration,
    /// Clients tracked at most (the limiter's bounded map).
    pub max_clients: usize,
}

impl Default for FailureLimit {
    /// 10 failures, then one a minute: a person who mistypes is barely
    /// slowed; a guesser gets 1,440 tries a day per address.
    fn default() -> Self {
        Self {
            failures: 10,
            refill_every: Duration::from_secs(60),
            max_clients: 100_000,
        }
    }
}

/// The configured token, kept only as its SHA-256 digest.
#[derive(Clone)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Compares digests in constant time, so the answer's timing says
    /// nothing about how much of a guess was right; an empty token never
    /// matches, whatever was configured.
    fn matches(&self, presented: &str) -> bool {
        if presented.is_empty() {
            return false;
        }
        let given: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(given.ct_eq(&self.0))
    }
}

/// The token of `Authorization: Bearer <token>`, spaces around it aside;
/// `None` without one (no header, another scheme, not text, or blank).
fn presented(headers: &HeaderMap) -> Option<&str> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    (!token.is_empty()).then_some(token)
}

/// Lets through a bounded number of log lines and counts the rest, so
/// refused calls cannot flood the log.
#[derive(Debug)]
struct LogBudget {
    lines: RateLimiter,
    suppressed: AtomicU64,
}

impl LogBudget {
    fn new() -> Self {
        Self {
            lines: RateLimiter::refilling_every(LOG_EVERY, LOG_BURST, 1),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one)` when a line may be written.
    fn admit(&self) -> Option<u64> {
        if self.lines.check(ClientKey::Unknown).is_allowed() {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Refusal {
    NoToken,
    WrongToken,
    Throttled,
}

/// The admin check of one router: token, failure budget, log and counters.
pub(crate) struct AdminAuth {
    manager: Arc<Manager>,
    token: TokenDigest,
    failures: Option<RateLimiter>,
    log: LogBudget,
    metrics: Option<Arc<ManagerMetrics>>,
}

impl AdminAuth {
    pub(crate) fn new(
        manager: Arc<Manager>,
        token: TokenDigest,
        failures: Option<FailureLimit>,
        metrics: Option<Arc<ManagerMetrics>>,
    ) -> Self {
        Self {
            manager,
            token,
            failures: failures
                .map(|l| RateLimiter::refilling_every(l.refill_every, l.failures, l.max_clients)),
            log: LogBudget::new(),
            metrics,
        }
    }

    fn refused(&self, why: Refusal, client: Option<IpAddr>, path: &str) {
        if let Some(m) = &self.metrics {
            match why {
                Refusal::Throttled => m.record_admin_auth_throttled(),
                Refusal::NoToken | Refusal::WrongToken => m.record_admin_auth_failure(),
            }
        }
        let Some(suppressed) = self.log.admit() else {
            return;
        };
        // The address, not the presented value: it is a near miss of the
        // token at best, and a password typed in the wrong field at worst.
        let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let reason = match why {
            Refusal::NoToken => "no bearer token",
            Refusal::WrongToken => "wrong token",
            Refusal::Throttled => "too many failures from this client",
        };
        tracing::warn!(client, path, reason, suppressed, "admin call refused");
    }
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("token", &"<redacted>")
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// Why a presented token was not taken.
#[derive(Debug)]
pub(crate) enum Rejected {
    /// The client's failure budget is spent: 429, try after this long.
    Throttled(Duration),
    /// No token, or neither the bootstrap one nor a usable scoped one (one
    /// failure was charged to the client).
    Wrong,
    /// The token could not be checked now (the database is down): not the
    /// caller's failure, nothing charged.
    Unavailable(ApiError),
}

impl AdminAuth {
    /// Who presents `token` (`None`: nothing presented) from `address`,
    /// for `path`: the one check of the admin API and the dashboard's
    /// login and session. Refusals are charged, logged and counted.
    pub(crate) async fn identify(
        &self,
        token: Option<&str>,
        address: Option<IpAddr>,
        path: &str,
    ) -> Result<Caller, Rejected> {
        let client = ClientKey::from_client(address);
        // Peek, then charge only failures: concurrent guesses that all passed
        // the peek overshoot the budget by at most the number of worker threads
        // (nothing awaits between the peek and the charge).
        if let Some(Decision::Limited { retry_after }) =
            self.failures.as_ref().map(|f| f.peek(client))
        {
            self.refused(Refusal::Throttled, address, path);
            return Err(Rejected::Throttled(retry_after));
        }
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let why = match token {
            Some(token) if self.token.matches(token) => return Ok(Caller::bootstrap()),
            Some(token) => match self.manager.authenticate(token).await {
                Ok(Some(t)) => {
                    return Ok(Caller {
                        actor: t.name,
                        role: t.role,
                    });
                }
                Ok(None) => Refusal::WrongToken,
                // The database is down: not the caller's failure.
                Err(e) => return Err(Rejected::Unavailable(ApiError::from(e))),
            },
            None => Refusal::NoToken,
        };
        if let Some(failures) = &self.failures {
            let _ = failures.check(client);
        }
        self.refused(why, address, path);
        Err(Rejected::Wrong)
    }
}

/// Axum middleware in front of every admin route: 429 while the client's
/// failure budget is spent; 401 (which spends one from the budget) without
/// the bootstrap token or a usable scoped token; else the role check and
/// the call, audited when it is a change.
pub(crate) async fn require_admin(
    State(auth): State<Arc<AdminAuth>>,
    req: Request,
    next: Next,
) -> Response {
    let address = ratelimit::client_of(&req);
    let found = auth
        .identify(presented(req.headers()), address, req.uri().path())
        .await;
    match found {
        Ok(caller) => authorize_and_run(&auth.manager, caller, req, next).await,
        Err(Rejected::Throttled(retry_after)) => ratelimit::too_many_requests(retry_after),
        Err(Rejected::Wrong) => ApiError::Unauthorized.into_response(),
        Err(Rejected::Unavailable(e)) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_tokens_are_refused_with_the_reason() {
        assert_eq!(check_strength(""), Err(WeakToken::Empty));
        assert_eq!(check_strength("   \t "), Err(WeakToken::Empty));
        assert_eq!(check_strength("tok"), Err(WeakToken::TooShort(3)));
        assert_eq!(
            check_strength(&"a".repeat(64)),
            Err(WeakToken::TooFewDistinct(1))
        );
        assert_eq!(
            check_strength(&"abc123".repeat(8)),
            Err(WeakToken::TooFewDistinct(6))
        );
        let spaced = format!(" {}", "0123456789abcdef".repeat(2));
        assert_eq!(check_strength(&spaced), Err(WeakToken::NotVisibleAscii));
        let accented = format!("é{}", "0123456789abcdef".repeat(2));
        assert_eq!(check_strength(&accented), Err(WeakToken::NotVisibleAscii));
    }

    #[test]
    fn usual_random_tokens_pass() {
        for token in [
            "2f5c0b1e9d8a7f6e5d4c3b2a19081726",            // hex, 16 bytes
            "6f1c7f3e-9a59-4c1a-9d8e-4f0c2b7a1d22",        // a UUID
            "Tq3vX9bLw0-aZ8cR_e2YkN5uH7pJm1sD4fG6iQoVxWc", // base64url, 32 bytes
            "q7RZ+2x/Yb1kLp0Vn3Wm8sTc4Ud6Fe9Hj5Ka",        // base64, 27 bytes
        ] {
            assert_eq!(check_strength(token), Ok(()), "{token}");
        }
    }

    #[test]
    fn an_empty_presented_token_never_matches_even_an_empty_configured_one() {
        let empty = TokenDigest::new("");
        assert!(!empty.matches(""));
        let mut headers = HeaderMap::new();
        for value in ["Bearer ", "Bearer    ", "Bearer \t"] {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(presented(&headers), None, "{value:?}");
        }
        headers.insert(header::AUTHORIZATION, "Bearer  tok ".parse().unwrap());
        assert_eq!(presented(&headers), Some("tok"));
        assert!(TokenDigest::new("tok").matches("tok"));
        assert!(!TokenDigest::new("tok").matches("tok2"));
    }

    #[test]
    fn the_log_budget_admits_a_burst_then_counts_what_it_leaves_out() {
        let budget = LogBudget::new();
        for _ in 0..LOG_BURST {
            assert_eq!(budget.admit(), Some(0));
        }
        assert_eq!(budget.admit(), None);
        assert_eq!(budget.admit(), None);
        assert_eq!(budget.suppressed.load(Ordering::Relaxed), 2);
    }
}
