//! The service conformance suite against the in-memory reference backend and
//! the supervising `ProcessService` (its core a real child process,
//! `sleep`); and a broken backend the suite must fail.

use std::path::PathBuf;

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use node_agent_lib::service::conformance::{self, ServiceFixture};
use node_agent_lib::service::memory::MemoryService;
use node_agent_lib::service::{
    CoreInstance, ProcessService, ProcessSettings, ServiceControl, ServiceError, ServiceStatus,
};

struct Memory(MemoryService);

impl ServiceFixture for Memory {
    fn service(&self) -> &dyn ServiceControl {
        &self.0
    }

    fn crash(&self) {
        self.0.crash();
    }
}

mod memory {
    node_agent_lib::service_conformance_tests!(super::Memory(
        node_agent_lib::service::memory::MemoryService::new()
    ));
}

struct Process(ProcessService);

impl ServiceFixture for Process {
    fn service(&self) -> &dyn ServiceControl {
        &self.0
    }

    fn crash(&self) {
        let pid = self.0.pid().expect("a running core has a pid");
        let pid = Pid::from_raw(i32::try_from(pid).expect("a pid fits in i32"));
        kill(pid, Signal::SIGKILL).expect("kill the core");
    }
}

/// `sleep` from PATH. With `CI=true` a missing one fails the test: the
/// suite must run there, never be skipped.
fn sleep_binary() -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("sleep"))
        .find(|p| p.is_file());
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but no `sleep` on PATH to run as the supervised core");
    }
    found
}

/// A supervised `sleep` standing in for the core: what the suite checks is
/// the supervision, not what the child does.
fn process() -> Option<Process> {
    let settings = ProcessSettings::new(sleep_binary()?, vec!["3600".into()]);
    Some(Process(ProcessService::new(settings)))
}

mod process {
    node_agent_lib::service_conformance_tests!(optional super::process());
}

/// A backend whose restart of a running core keeps the old one (a restart
/// that is only a start).
#[derive(Debug, Default)]
struct RestartIsStart(MemoryService);

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl ServiceControl for RestartIsStart {
    async fn start(&self) -> Result<(), ServiceError> {
        self.0.start().await
    }

    async fn stop(&self) -> Result<(), ServiceError> {
        self.0.stop().await
    }

    async fn restart(&self) -> Result<(), ServiceError> {
        self.0.start().await
    }

    async fn status(&self) -> Result<ServiceStatus, ServiceError> {
        self.0.status().await
    }

    async fn instance(&self) -> Result<Option<CoreInstance>, ServiceError> {
        self.0.instance().await
    }
}

#[tokio::test]
#[should_panic(expected = "a restart is a new run of the core")]
async fn the_suite_fails_a_backend_whose_restart_keeps_the_core() {
    conformance::restart_of_a_running_service_runs_a_new_core(&RestartIsStart::default()).await;
}
