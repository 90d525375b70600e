//! The API's shared state: the manager, the admin token and the optional
//! limits and metrics every route reads.

use std::sync::Arc;

use super::admin_auth::{AdminAuth, FailureLimit, TokenDigest};
use super::client_addr::TrustedProxies;
use super::ratelimit::{RateLimit, RateLimiter};
use crate::manager::Manager;
use crate::metrics::ManagerMetrics;
use crate::subscription::Subscriptions;

#[derive(Clone)]
pub struct ApiState {
    pub manager: Arc<Manager>,
    pub(super) admin_token: TokenDigest,
    pub(super) admin_failures: Option<FailureLimit>,
    pub(super) rate_limiter: Option<Arc<RateLimiter>>,
    pub(super) metrics: Option<Arc<ManagerMetrics>>,
    pub(super) subscription: Arc<Subscriptions>,
    pub(super) trusted_proxies: Arc<TrustedProxies>,
}

impl std::fmt::Debug for ApiState {
    // Not even the token's digest: an unsalted hash of a short token can be guessed offline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("admin_token", &"<redacted>")
            .field("admin_failures", &self.admin_failures)
            .field("rate_limited", &self.rate_limiter.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The API of `manager` behind `admin_token`. The token is taken as
    /// given (the settings check its strength, see
    /// [`check_strength`](super::admin_auth::check_strength)); an empty presented token is refused
    /// whatever it is. Failed admin calls are limited per client with
    /// [`FailureLimit::default`].
    pub fn new(manager: Arc<Manager>, admin_token: &str) -> Self {
        Self {
            manager,
            admin_token: TokenDigest::new(admin_token),
            admin_failures: Some(FailureLimit::default()),
            rate_limiter: Some(Arc::new(RateLimiter::new(RateLimit::default()))),
            metrics: None,
            subscription: Arc::new(Subscriptions::default()),
            trusted_proxies: Arc::new(TrustedProxies::default()),
        }
    }

    /// Records every request in `metrics` and serves `GET /metrics` behind
    /// the admin token (for a tokenless scrape, serve
    /// [`metrics::router`](crate::metrics::router) on a private address instead or as well).
    pub fn with_metrics(mut self, metrics: Arc<ManagerMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The per-client limit on the user's node-list call; `None` turns it
    /// off (e.g. behind a proxy that limits, or for a benchmark).
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limiter = limit.map(|l| Arc::new(RateLimiter::new(l)));
        self
    }

    /// Subscriptions as `subscription` sets them (titles, links, the
    /// User-Agent rule table); the defaults otherwise.
    pub fn with_subscription(mut self, subscription: Subscriptions) -> Self {
        self.subscription = Arc::new(subscription);
        self
    }

    /// The per-client budget of failed admin calls (past it, admin calls
    /// from that client answer 429); `None` turns it off.
    pub fn with_admin_failure_limit(mut self, limit: Option<FailureLimit>) -> Self {
        self.admin_failures = limit;
        self
    }

    /// The admin check with this state's token, failure budget and
    /// metrics: one per router, so the API and the dashboard share it.
    pub(crate) fn admin_auth(&self) -> AdminAuth {
        AdminAuth::new(
            self.manager.clone(),
            self.admin_token.clone(),
            self.admin_failures,
            self.metrics.clone(),
        )
    }

    /// How subscription URLs are written (the public base URL).
    pub(crate) fn subscriptions(&self) -> Arc<Subscriptions> {
        self.subscription.clone()
    }

    /// The reverse proxies whose `X-Forwarded-For` names the client (for
    /// the per-client limits and the logs); none by default.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
    }
}
