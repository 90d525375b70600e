//! Refused requests: every one is counted (for the metrics), but the WARN
//! line that reports them is written at most once per interval, with how
//! many were refused since the last line, so a peer without the key cannot
//! flood the agent's log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::envelope::Rejection;

/// The refusal counter and its rate-limited log line.
#[derive(Debug)]
pub struct Refusals {
    interval: Duration,
    total: AtomicU64,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    last_line: Option<Instant>,
    suppressed: u64,
}

impl Refusals {
    /// At most one WARN line per 10 s: a handful of lines a minute under a
    /// flood, and a single wrong-key manager still shows at once.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            total: AtomicU64::new(0),
            window: Mutex::new(Window::default()),
        }
    }

    /// Counts one refused request and logs it unless a line was written
    /// less than the interval ago; the next line carries how many were left
    /// out (`suppressed`). Every refusal is logged at DEBUG.
    pub fn record(&self, method: &str, path: &str, reason: &Rejection) {
        self.total.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(method, path, %reason, "request refused");
        let now = Instant::now();
        let suppressed = {
            let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let due = window
                .last_line
                .is_none_or(|last| now.duration_since(last) >= self.interval);
            if !due {
                window.suppressed += 1;
                return;
            }
            window.last_line = Some(now);
            std::mem::take(&mut window.suppressed)
        };
        tracing::warn!(
            method,
            path,
            %reason,
            suppressed,
            every_secs = self.interval.as_secs_f64(),
            "request refused (one line per interval; `suppressed` more were refused since the last)"
        );
    }

    /// Requests refused since the agent started.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

impl Default for Refusals {
    fn default() -> Self {
        Self::new(Self::DEFAULT_INTERVAL)
    }
}
