//! Refused requests cannot flood the agent's log: one WARN line per
//! interval, carrying how many were left out; every refusal is counted in
//! the metrics (finding 11 of issue 14).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use node_agent_lib::api::{AppState, router};
use node_agent_lib::metrics::{self, AgentMetrics};
use node_agent_lib::refusals::Refusals;

/// Log lines written through `tracing`, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn warn_lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("request refused"))
            .map(str::to_owned)
            .collect()
    }
}

async fn refuse(router: &axum::Router, n: usize) {
    for _ in 0..n {
        let (status, _) = send(
            router,
            request_with_token("POST", "/stop", "not.a.jwe.at.all"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_refused_requests_writes_one_warn_line_per_interval() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _subscriber = tracing::subscriber::set_default(subscriber);
    let base = untouchable();
    let refusals = Arc::new(Refusals::new(Duration::from_secs(10)));
    let app = router(Arc::new(
        AppState::new(base.agent.clone(), base.key.clone()).with_refusals(refusals.clone()),
    ));

    refuse(&app, 50).await;
    let lines = log.warn_lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("suppressed=0"), "{}", lines[0]);

    tokio::time::advance(Duration::from_secs(11)).await;
    refuse(&app, 1).await;
    let lines = log.warn_lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[1].contains("suppressed=49"), "{}", lines[1]);
    assert_eq!(refusals.total(), 51);
}

#[tokio::test]
async fn refused_requests_are_counted_in_the_metrics() {
    // A scrape asks the service for a status once.
    let node = answering_one_status();
    let state = Arc::new(AppState::new(node.agent.clone(), node.key.clone()));
    refuse(&router(state.clone()), 3).await;
    let scrape = metrics::router(Arc::new(
        AgentMetrics::new(node.agent.clone()).with_refusals(state.refusals().clone()),
    ));
    let (status, body) = send(
        &scrape,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.lines()
            .any(|l| l == "xray_agent_requests_refused_total 3"),
        "{body}"
    );
}
