//! The `ServiceControl` port: starting and stopping the proxy core, and its
//! backends — [`SystemdService`], [`LaunchctlService`], the supervising
//! [`ProcessService`] and the in-memory reference [`memory::MemoryService`];
//! `conformance` (feature `conformance`) checks a backend against the
//! contract.

use std::fmt::Debug;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use async_trait::async_trait;

#[cfg(feature = "conformance")]
pub mod conformance;
mod launchctl;
pub mod memory;
pub mod orphan;
mod process;
mod systemd;

pub use launchctl::LaunchctlService;
pub use process::{ProcessService, ProcessSettings, ReadinessProbe};
pub use systemd::SystemdService;

/// What the service manager says about the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceStatus {
    /// Up and (as far as the backend can tell) serving.
    Running,
    /// Not running (never started, stopped, or failed).
    Stopped,
    /// Starting, or coming back after a crash: ask again soon.
    Initializing,
}

/// Names one run of the core: two different values mean the core was
/// started again in between, whoever started it (the agent, the backend's
/// own restart after a crash, the operator).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CoreInstance(String);

impl CoreInstance {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CoreInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The control program (or the core binary) could not be run at all.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The control program ran and reported a failure.
    #[error("{program} {args} failed ({status}): {stderr}")]
    CommandFailed {
        program: String,
        args: String,
        status: String,
        stderr: String,
    },
    /// The control program did not finish in time.
    #[error("{program} {args} did not finish within {timeout:?}")]
    Timeout {
        program: String,
        args: String,
        timeout: Duration,
    },
    /// The control program said something this backend does not understand.
    #[error("unexpected answer from {program}: {output}")]
    UnexpectedOutput { program: String, output: String },
    /// Signalling or waiting for the core process failed.
    #[error("process control failed: {0}")]
    Process(String),
}

/// Starts, stops and watches the proxy core.
///
/// # Contract
///
/// - `start` is idempotent: starting a running service succeeds and leaves it
///   running (it does not restart it).
/// - `stop` is idempotent: stopping a stopped service succeeds.
/// - `restart` leaves the service running a fresh core process (which reads
///   its configuration again), whether it was running or not.
/// - `status` reports `Initializing` while the core is starting or being
///   brought back after a crash, `Running` once it runs, `Stopped` otherwise.
/// - `instance` names the core process running now (`None` when none runs):
///   it differs after every start of the core, including the backend's own
///   restart after a crash, however soon after the previous start — the
///   agent counts on it to know every start it did not order.
/// - An `Err` means the backend itself failed (the control program is
///   missing, refused, or timed out); the service's state is then unknown.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ServiceControl: Debug + Send + Sync {
    async fn start(&self) -> Result<(), ServiceError>;
    async fn stop(&self) -> Result<(), ServiceError>;
    async fn restart(&self) -> Result<(), ServiceError>;
    async fn status(&self) -> Result<ServiceStatus, ServiceError>;
    async fn instance(&self) -> Result<Option<CoreInstance>, ServiceError>;
}

/// How long a control program (`systemctl`, `launchctl`) may take.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `program args…` and collects its output, killing it after `timeout`.
/// A non-zero exit is *not* an error here: callers interpret it.
pub(crate) async fn run_command(
    program: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<Output, ServiceError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let joined = args.join(" ");
    match tokio::time::timeout(timeout, command.output()).await {
        Err(_) => Err(ServiceError::Timeout {
            program: program.display().to_string(),
            args: joined,
            timeout,
        }),
        Ok(Err(source)) => Err(ServiceError::Spawn {
            program: program.display().to_string(),
            source,
        }),
        Ok(Ok(output)) => Ok(output),
    }
}

/// Turns a finished command into `Ok` when it exited 0, else `CommandFailed`.
pub(crate) fn expect_success(
    program: &Path,
    args: &[&str],
    output: Output,
) -> Result<Output, ServiceError> {
    if output.status.success() {
        return Ok(output);
    }
    Err(ServiceError::CommandFailed {
        program: program.display().to_string(),
        args: args.join(" "),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr)
            .trim()
            .chars()
            .take(512)
            .collect(),
    })
}
