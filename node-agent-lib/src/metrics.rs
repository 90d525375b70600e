//! Prometheus metrics of the agent: whether the core runs, how many users it
//! has, and how often it restarted behind the agent's back: the same facts
//! as `/status`, read at scrape time; with usage accounting, what the
//! collector read and wrote and the journal's size. Served by [`router`] on a separate
//! address (`metrics_listen`, off by default), since the node API accepts
//! only JWE.
//!
//! ```no_run
//! # async fn demo(agent: std::sync::Arc<node_agent_lib::Agent>) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use node_agent_lib::metrics::{AgentMetrics, router};
//! use node_agent_lib::listener::{self, ListenerSettings};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9101").await?;
//! let router = router(Arc::new(AgentMetrics::new(agent)));
//! listener::serve(listener, router, &ListenerSettings::agent(), None, std::future::pending()).await
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::agent::Agent;
use crate::refusals::Refusals;
use crate::usage::Usage;
use crate::wire::NodeStatus;

/// The `Content-Type` of a scrape's answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The agent's metrics registry.
pub struct AgentMetrics {
    agent: Arc<Agent>,
    registry: Registry,
    core_up: Gauge,
    core_users: Gauge,
    core_uptime: Gauge,
    status_ok: Gauge,
    /// One scrape at a time, so the gauges and their rendering agree.
    scrape: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

/// The agent's own counters (restarts, repairs), read at scrape time.
#[derive(Debug)]
struct Restarts(Arc<Agent>);

impl Collector for Restarts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = [
            (
                "core_restarts",
                "Times the agent saw the core start without being told to",
                self.0.core_restarts(),
            ),
            (
                "verify_passes",
                "Background passes that checked every user in the core",
                self.0.verification_passes(),
            ),
            (
                "users_readded",
                "Users the agent found missing from the core and put back",
                self.0.users_readded(),
            ),
            (
                "stray_users_removed",
                "Users the agent found in the core though not its own, and removed",
                self.0.users_removed_as_stray(),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// The usage collector's counters and the journal's size, read at scrape time.
#[derive(Debug)]
struct UsageSeries(Arc<Usage>);

impl Collector for UsageSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = self.0.counters();
        let read = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let counters = [
            (
                "usage_batches_appended",
                "Usage batches written (and synced) to the journal",
                read(&c.batches_appended),
            ),
            (
                "usage_user_deltas",
                "Per-user deltas written to the journal",
                read(&c.user_deltas),
            ),
            (
                "usage_reads",
                "Reads (and resets) of the core's traffic counters",
                read(&c.reads),
            ),
            (
                "usage_read_errors",
                "Reads of the core's traffic counters that failed",
                read(&c.read_errors),
            ),
            (
                "usage_append_errors",
                "Journal appends that failed (the read is kept for the next)",
                read(&c.append_errors),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let seconds = ConstCounter::new(read(&c.read_micros) as f64 / 1e6);
        let metric = encoder.encode_descriptor(
            "usage_read_seconds",
            "Time spent reading the core's traffic counters",
            None,
            seconds.metric_type(),
        )?;
        seconds.encode(metric)?;
        let gauges = [
            (
                "usage_journal_batches",
                "Batches in the usage journal not yet confirmed by the manager",
                read(&c.journal_batches),
            ),
            (
                "usage_journal_bytes",
                "Size of the usage journal file",
                read(&c.journal_bytes),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(clamp(value));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// The refused-request counter, read from the API's state at scrape time.
#[derive(Debug)]
struct RefusedRequests(Arc<Refusals>);

impl Collector for RefusedRequests {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(self.0.total());
        let metric = encoder.encode_descriptor(
            "requests_refused",
            "Node API requests refused with 401 (no, forged, stale or replayed envelope)",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

impl AgentMetrics {
    /// Also exports the node API's refused requests
    /// (`xray_agent_requests_refused_total`), from
    /// [`crate::AppState::refusals`].
    pub fn with_refusals(mut self, refusals: Arc<Refusals>) -> Self {
        self.registry
            .register_collector(Box::new(RefusedRequests(refusals)));
        self
    }

    pub fn new(agent: Arc<Agent>) -> Self {
        let mut registry = Registry::with_prefix("xray_agent");
        let core_up = Gauge::default();
        registry.register(
            "core_up",
            "1 when the core runs, 0 when stopped (kept from the last successful look while status_ok is 0)",
            core_up.clone(),
        );
        let core_users = Gauge::default();
        registry.register(
            "core_users",
            "Users the core has (as /status reports them)",
            core_users.clone(),
        );
        let core_uptime = Gauge::default();
        registry.register(
            "core_uptime_seconds",
            "Seconds since the core started (0 when stopped)",
            core_uptime.clone(),
        );
        let status_ok = Gauge::default();
        registry.register(
            "status_ok",
            "1 when the last scrape could tell the core's status, 0 when a start/stop was in progress or the service or core failed to answer",
            status_ok.clone(),
        );
        registry.register_collector(Box::new(Restarts(agent.clone())));
        if let Some(usage) = agent.usage() {
            registry.register_collector(Box::new(UsageSeries(usage.clone())));
        }
        Self {
            agent,
            registry,
            core_up,
            core_users,
            core_uptime,
            status_ok,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Asks the agent for its status (as `/status` does, restart detection
    /// included) and renders every series.
    pub async fn render(&self) -> String {
        let _one_at_a_time = self.scrape.lock().await;
        match self.agent.status().await {
            Ok(status) => {
                let running = status.node_status == NodeStatus::Running;
                self.core_up.set(i64::from(running));
                self.core_users.set(clamp(status.users));
                self.core_uptime.set(clamp(status.core_uptime_secs));
                self.status_ok.set(1);
            }
            Err(e) => {
                tracing::debug!(error = %e, "metrics: no status");
                self.status_ok.set(0);
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

async fn scrape(State(metrics): State<Arc<AgentMetrics>>) -> Response {
    let body = metrics.render().await;
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// `GET /metrics`, unauthenticated: serve it on a private address only.
pub fn router(metrics: Arc<AgentMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

/// Serves [`router`] on `listener`, with the limits of `settings`, until
/// `shutdown` resolves.
pub async fn serve(
    metrics: Arc<AgentMetrics>,
    listener: tokio::net::TcpListener,
    settings: &crate::listener::ListenerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listener::serve(listener, router(metrics), settings, None, shutdown).await
}
