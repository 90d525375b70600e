//! Prometheus metrics of the manager, in the OpenMetrics text format that
//! Prometheus scrapes.
//!
//! Three kinds of series:
//! - **HTTP**: requests and latency per method, *route template* (e.g.
//!   `/user/{id_name}/nodes`, never the raw path, which holds a user's id)
//!   and status, recorded by [`track_requests`];
//! - **admin authentication**: refused admin calls (no or wrong token) and
//!   admin calls throttled after too many refusals, recorded by the API's
//!   admin authentication;
//! - **heartbeat**: duration and failures of each node's reconciliation,
//!   recorded by the heartbeat loop;
//! - **fleet** (read from the storage at scrape time): nodes by actual and
//!   required status, changes not yet applied per node that should run,
//!   enabled users; and the user cache's counters when the storage is a
//!   [`CachedStorage`].
//!
//! ```
//! # use std::sync::Arc;
//! # use manager_lib::metrics::ManagerMetrics;
//! # use manager_lib::manager::{Manager, ManagerSettings};
//! # use manager_lib::storage::memory::MemoryStorage;
//! # use manager_lib::transport::simulated::SimulatedFleet;
//! # let manager = Arc::new(Manager::new(Arc::new(MemoryStorage::new()), Arc::new(SimulatedFleet::new()), ManagerSettings::default()));
//! let metrics = Arc::new(ManagerMetrics::new(manager));
//! // Serve `metrics::router(metrics.clone())` on a private address, or pass
//! // it to `ApiState::with_metrics` to serve `/metrics` behind the admin token.
//! # let _ = manager_lib::metrics::router(metrics);
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::CachedStorage;
use crate::domain::{ActualStatus, PageRequest, RequiredStatus};
use crate::manager::Manager;

/// The `Content-Type` of a scrape's answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `route` label of a request that matched no route: the raw path is
/// never a label (it may hold a user's id, and anyone can invent paths).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Nodes listed per storage call while scraping.
const SCRAPE_PAGE: u32 = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeStatusLabels {
    actual: &'static str,
    required: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms to ~16 s: API calls are sub-millisecond from the cache, node calls
/// (start with many users) take seconds.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// 5 ms to ~80 s: one node's reconciliation includes its HTTP calls.
fn heartbeat_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Series set at scrape time from the storage.
#[derive(Debug, Default)]
struct FleetGauges {
    nodes: Family<NodeStatusLabels, Gauge>,
    pending: Family<NodeLabels, Gauge>,
    enabled_users: Gauge,
    storage_up: Gauge,
    traffic: NodeTraffic,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabels {
    node: String,
    direction: &'static str,
}

/// The bytes through each node as stored (every replica's ingest, so each
/// replica reports the same counters), read at scrape time.
#[derive(Clone, Debug, Default)]
struct NodeTraffic(Arc<std::sync::Mutex<Vec<(String, u64, u64)>>>);

impl Collector for NodeTraffic {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut family = encoder.encode_descriptor(
            "node_traffic_bytes",
            "Bytes users moved through a node's core, as stored (raw, before the node's multiplier); up: sent by users",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (node, up, down) in rows {
            for (direction, value) in [("up", up), ("down", down)] {
                let labels = TrafficLabels {
                    node: node.clone(),
                    direction,
                };
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The manager's metrics: what the API and the heartbeat record, and what a
/// scrape reads from the storage. One per process; cheap to share in an `Arc`.
pub struct ManagerMetrics {
    manager: Arc<Manager>,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<RequestLabels>,
    heartbeat_seconds: HistogramFamily<NodeLabels>,
    heartbeat_failures: Family<NodeLabels, Counter>,
    admin_auth_failures: Counter,
    admin_auth_throttled: Counter,
    fleet: FleetGauges,
    /// One scrape at a time: a scrape clears and refills the fleet series.
    scrape: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ManagerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerMetrics").finish_non_exhaustive()
    }
}

impl ManagerMetrics {
    /// Metrics over `manager`'s storage, without cache counters.
    pub fn new(manager: Arc<Manager>) -> Self {
        Self::build(manager, None)
    }

    /// Metrics that also report `cache`'s hit and miss counters; `cache`
    /// should be the storage `manager` uses.
    pub fn with_cache(manager: Arc<Manager>, cache: Arc<CachedStorage>) -> Self {
        Self::build(manager, Some(cache))
    }

    fn build(manager: Arc<Manager>, cache: Option<Arc<CachedStorage>>) -> Self {
        let mut registry = Registry::with_prefix("xray_manager");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let request_seconds: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(request_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status",
            request_seconds.clone(),
        );
        let heartbeat_seconds: HistogramFamily<NodeLabels> =
            Family::new_with_constructor(heartbeat_histogram);
        registry.register(
            "heartbeat_duration_seconds",
            "Time to reconcile one node in a heartbeat (status, start/stop or pushing changes)",
            heartbeat_seconds.clone(),
        );
        let heartbeat_failures = Family::<NodeLabels, Counter>::default();
        registry.register(
            "heartbeat_failures",
            "Heartbeat reconciliations of a node that failed",
            heartbeat_failures.clone(),
        );
        let admin_auth_failures = Counter::default();
        registry.register(
            "admin_auth_failures",
            "Admin calls refused for a missing or wrong token",
            admin_auth_failures.clone(),
        );
        let admin_auth_throttled = Counter::default();
        registry.register(
            "admin_auth_throttled",
            "Admin calls answered 429 because their client failed too often",
            admin_auth_throttled.clone(),
        );
        let fleet = FleetGauges::default();
        registry.register(
            "nodes",
            "Nodes by actual and required status",
            fleet.nodes.clone(),
        );
        registry.register(
            "node_pending_changes",
            "User changes not yet applied on a node that should run (newest change minus the node's applied cursor)",
            fleet.pending.clone(),
        );
        registry.register(
            "enabled_users",
            "Users enabled",
            fleet.enabled_users.clone(),
        );
        registry.register(
            "storage_up",
            "1 when the last scrape could read the storage, else 0",
            fleet.storage_up.clone(),
        );
        registry.register_collector(Box::new(fleet.traffic.clone()));
        if let Some(cache) = cache {
            registry.register_collector(Box::new(CacheCollector(cache)));
        }
        Self {
            manager,
            registry,
            requests,
            request_seconds,
            heartbeat_seconds,
            heartbeat_failures,
            admin_auth_failures,
            admin_auth_throttled,
            fleet,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Records one answered request. `route` is the matched route template,
    /// `None` when no route matched.
    pub fn record_request(
        &self,
        method: &Method,
        route: Option<&str>,
        status: StatusCode,
        took: Duration,
    ) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route.unwrap_or(UNMATCHED_ROUTE).to_owned(),
            status: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records one node's reconciliation in a heartbeat.
    pub fn record_heartbeat(&self, node: &str, took: Duration, ok: bool) {
        let labels = NodeLabels {
            node: node.to_owned(),
        };
        self.heartbeat_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.heartbeat_failures.get_or_create(&labels).inc();
        }
    }

    /// Counts an admin call refused for a missing or wrong token.
    pub fn record_admin_auth_failure(&self) {
        self.admin_auth_failures.inc();
    }

    /// Counts an admin call refused because its client failed too often.
    pub fn record_admin_auth_throttled(&self) {
        self.admin_auth_throttled.inc();
    }

    /// Reads the fleet from the storage and renders every series. A storage
    /// failure sets `storage_up` to 0 and keeps the other series.
    pub async fn render(&self) -> String {
        let _one_at_a_time = self.scrape.lock().await;
        match self.read_fleet().await {
            Ok(()) => {
                self.fleet.storage_up.set(1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the fleet");
                self.fleet.storage_up.set(0);
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    async fn read_fleet(&self) -> Result<(), crate::manager::ManagerError> {
        let state = self.manager.fleet_state().await?;
        let mut by_status = std::collections::HashMap::new();
        let mut pending = Vec::new();
        let mut traffic = Vec::new();
        let mut page = PageRequest {
            after: None,
            limit: SCRAPE_PAGE,
        };
        loop {
            let listed = self.manager.list_nodes(&page).await?;
            for node in &listed.items {
                traffic.push((node.id.to_string(), node.used_up, node.used_down));
                *by_status
                    .entry((node.actual_status, node.required_status))
                    .or_insert(0i64) += 1;
                if node.required_status == RequiredStatus::Running {
                    let behind = state.last_seq.saturating_sub(node.applied_seq).max(0);
                    pending.push((node.id.to_string(), behind));
                }
            }
            match listed.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        // Every combination is written, so a count that drops to 0 shows as 0.
        self.fleet.nodes.clear();
        for actual in [
            ActualStatus::Running,
            ActualStatus::Stopped,
            ActualStatus::Error,
        ] {
            for required in [RequiredStatus::Running, RequiredStatus::Stopped] {
                let count = by_status.get(&(actual, required)).copied().unwrap_or(0);
                self.fleet
                    .nodes
                    .get_or_create(&NodeStatusLabels {
                        actual: actual.as_str(),
                        required: required.as_str(),
                    })
                    .set(count);
            }
        }
        // Deleted (or stopped) nodes drop out.
        self.fleet.pending.clear();
        for (node, behind) in pending {
            self.fleet
                .pending
                .get_or_create(&NodeLabels { node })
                .set(behind);
        }
        *self
            .fleet
            .traffic
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = traffic;
        self.fleet
            .enabled_users
            .set(i64::try_from(state.enabled_users).unwrap_or(i64::MAX));
        Ok(())
    }
}

/// A bounded set of method labels: a client can send any method name.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// The user cache's counters, read at scrape time.
#[derive(Debug)]
struct CacheCollector(Arc<CachedStorage>);

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let counters = [
            (
                "cache_hits",
                "User rows answered from the cache",
                stats.hits,
            ),
            (
                "cache_misses",
                "User rows read from the storage (not cached, expired or the cache failed)",
                stats.misses,
            ),
            (
                "cache_errors",
                "Cache calls that failed and were answered from the storage",
                stats.errors,
            ),
            (
                "cache_node_refreshes",
                "Times the set of serving nodes was read from the storage",
                stats.node_refreshes,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let looked_up = stats.hits + stats.misses;
        #[allow(clippy::cast_precision_loss)] // a ratio; exactness past 2^53 lookups is moot
        let ratio = if looked_up == 0 {
            0.0
        } else {
            stats.hits as f64 / looked_up as f64
        };
        let gauge = ConstGauge::new(ratio);
        let metric = encoder.encode_descriptor(
            "cache_hit_ratio",
            "Hits over hits plus misses since start (0 before the first lookup)",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

/// Middleware that records every request's method, route template, status
/// and latency. Add it with `Router::layer` after the routes, so the
/// matched route is known.
pub async fn track_requests(
    State(metrics): State<Arc<ManagerMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = next.run(req).await;
    metrics.record_request(
        &method,
        route.as_deref(),
        response.status(),
        started.elapsed(),
    );
    response
}

/// Answers a scrape.
pub async fn scrape(State(metrics): State<Arc<ManagerMetrics>>) -> Response {
    let body = metrics.render().await;
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// `GET /metrics` without authentication, for a separate listener on a
/// private address (`metrics_listen`).
pub fn router(metrics: Arc<ManagerMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}
