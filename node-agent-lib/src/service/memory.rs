//! The in-memory reference backend of [`ServiceControl`]: a "core" that is
//! only a run counter, for tests and the fuzz target. It keeps the whole
//! contract (idempotent start and stop, a new instance on every start), so
//! an agent over it behaves as over a real service.

use std::sync::Mutex;

use async_trait::async_trait;

use super::{CoreInstance, ServiceControl, ServiceError, ServiceStatus};

/// A service whose core runs in name only. Each start of the core (by
/// `start`, `restart`, or [`MemoryService::crash`]'s own restart) is a new
/// run with its own [`CoreInstance`]; runs are numbered and never reused.
#[derive(Debug, Default)]
pub struct MemoryService {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The run going on now, if the core runs.
    current: Option<u64>,
    /// How many runs ever began.
    runs: u64,
    /// How many `restart` calls were made.
    restarts: u64,
}

impl State {
    fn begin_run(&mut self) {
        self.runs += 1;
        self.current = Some(self.runs);
    }
}

impl MemoryService {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many times the core was started, whoever started it.
    pub fn runs(&self) -> u64 {
        self.with(|s| s.runs)
    }

    /// How many times `restart` was called.
    pub fn restarts(&self) -> u64 {
        self.with(|s| s.restarts)
    }

    /// Whether the core runs now.
    pub fn is_running(&self) -> bool {
        self.with(|s| s.current.is_some())
    }

    /// The core dies and the backend brings it back at once, as a supervisor
    /// or systemd's `Restart=` would: a new instance nobody ordered. Nothing
    /// happens to a stopped service.
    pub fn crash(&self) {
        self.with(|s| {
            if s.current.is_some() {
                s.begin_run();
            }
        });
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl ServiceControl for MemoryService {
    async fn start(&self) -> Result<(), ServiceError> {
        self.with(|s| {
            if s.current.is_none() {
                s.begin_run();
            }
        });
        Ok(())
    }

    async fn stop(&self) -> Result<(), ServiceError> {
        self.with(|s| s.current = None);
        Ok(())
    }

    async fn restart(&self) -> Result<(), ServiceError> {
        self.with(|s| {
            s.restarts += 1;
            s.begin_run();
        });
        Ok(())
    }

    async fn status(&self) -> Result<ServiceStatus, ServiceError> {
        Ok(match self.with(|s| s.current) {
            Some(_) => ServiceStatus::Running,
            None => ServiceStatus::Stopped,
        })
    }

    async fn instance(&self) -> Result<Option<CoreInstance>, ServiceError> {
        Ok(self
            .with(|s| s.current)
            .map(|run| CoreInstance::new(format!("run {run}"))))
    }
}
