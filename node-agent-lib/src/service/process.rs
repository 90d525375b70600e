//! The core as a supervised child process of the agent.

use std::fmt::Debug;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::orphan::CorePidFile;
use super::{CoreInstance, ServiceControl, ServiceError, ServiceStatus};

/// Tells whether the freshly started core serves (e.g. its API answers).
#[async_trait]
pub trait ReadinessProbe: Debug + Send + Sync {
    async fn ready(&self) -> bool;
}

/// How to run and supervise the core.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// The core binary, e.g. `/usr/bin/v2ray` or `/usr/local/bin/xray`.
    pub binary: PathBuf,
    /// Its arguments, e.g. `["-config", "/var/lib/xna/core.json"]` (V2Ray) or
    /// `["run", "-c", "/var/lib/xna/core.json"]` (Xray).
    pub args: Vec<String>,
    /// How long the core may take to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// The first pause before restarting a core that died; doubled on each
    /// quick death up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A core that ran this long before dying is restarted after `backoff_min` again.
    pub stable_after: Duration,
    /// Where each spawned core is recorded, so a core that outlived a
    /// killed agent is found and stopped by the next one
    /// ([`ProcessService::stop_orphan`]); `None`: not recorded.
    pub pid_file: Option<PathBuf>,
}

impl ProcessSettings {
    pub fn new(binary: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            binary: binary.into(),
            args,
            stop_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            stable_after: Duration::from_secs(10),
            pid_file: None,
        }
    }
}

/// Runs the core as a child (`<binary> <args…>`), restarts it when it dies
/// (with a backoff, counting restarts), stops it with SIGTERM then SIGKILL,
/// and reports `Initializing` until the readiness probe says it serves.
///
/// The child is spawned with `kill_on_drop`, and dropping the service stops
/// the supervisor, so the core does not outlive the agent's runtime. If the
/// agent itself is SIGKILLed the core survives it: with
/// [`ProcessSettings::pid_file`], the next agent stops it
/// ([`ProcessService::stop_orphan`], see [`super::orphan`]).
#[derive(Debug)]
pub struct ProcessService {
    shared: Arc<Shared>,
    probe: Option<Arc<dyn ReadinessProbe>>,
    control: Mutex<Option<Supervisor>>,
}

#[derive(Debug)]
struct Shared {
    settings: ProcessSettings,
    restarts: AtomicU64,
    /// Every spawn of the core, ours or the supervisor's: names the running
    /// instance (a pid can be reused, a counter cannot).
    spawns: AtomicU64,
    /// The live child's pid, 0 while none runs.
    pid: AtomicU32,
}

#[derive(Debug)]
struct Supervisor {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    _guard: DropGuard,
}

impl ProcessService {
    pub fn new(settings: ProcessSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings,
                restarts: AtomicU64::new(0),
                spawns: AtomicU64::new(0),
                pid: AtomicU32::new(0),
            }),
            probe: None,
            control: Mutex::new(None),
        }
    }

    /// Reports `Initializing` until `probe` says the core serves.
    pub fn with_readiness(mut self, probe: Arc<dyn ReadinessProbe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// How many times the supervisor restarted a core that died.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Stops a core a previous agent left running (recorded in
    /// [`ProcessSettings::pid_file`] and still the very same process), before
    /// this one starts any; its pid, if there was one. Call it once, at start.
    pub async fn stop_orphan(&self) -> Result<Option<u32>, ServiceError> {
        let Some(file) = self.shared.pid_file() else {
            return Ok(None);
        };
        file.stop_orphan(self.shared.settings.stop_timeout)
            .await
            .map_err(|e| ServiceError::Process(format!("orphaned core: {e}")))
    }

    /// The running core's pid, if one runs now.
    pub fn pid(&self) -> Option<u32> {
        match self.shared.pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    async fn start_locked(&self, control: &mut Option<Supervisor>) -> Result<(), ServiceError> {
        if control.as_ref().is_some_and(|s| !s.task.is_finished()) {
            return Ok(());
        }
        let child = self.shared.spawn()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervise(self.shared.clone(), child, cancel.clone()));
        *control = Some(Supervisor {
            _guard: cancel.clone().drop_guard(),
            cancel,
            task,
        });
        Ok(())
    }

    async fn stop_locked(&self, control: &mut Option<Supervisor>) -> Result<(), ServiceError> {
        let Some(supervisor) = control.take() else {
            return Ok(());
        };
        supervisor.cancel.cancel();
        supervisor
            .task
            .await
            .map_err(|e| ServiceError::Process(format!("supervisor task failed: {e}")))
    }
}

impl Shared {
    fn pid_file(&self) -> Option<CorePidFile> {
        self.settings.pid_file.as_ref().map(CorePidFile::new)
    }

    fn spawn(&self) -> Result<Child, ServiceError> {
        let settings = &self.settings;
        let mut command = Command::new(&settings.binary);
        // The agent's settings (the node key among them) are no business of
        // the core: keep them out of its /proc/<pid>/environ.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("XNA_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(&settings.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ServiceError::Spawn {
                program: settings.binary.display().to_string(),
                source,
            })?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_log(out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_log(err));
        }
        let pid = child.id().unwrap_or(0);
        // The count first: whoever sees the new pid sees the new instance.
        self.spawns.fetch_add(1, Ordering::SeqCst);
        self.pid.store(pid, Ordering::SeqCst);
        tracing::info!(pid, binary = %settings.binary.display(), "core started");
        if let Some(file) = self.pid_file() {
            if let Err(e) = file.record(pid) {
                tracing::warn!(pid, path = %file.path().display(), error = %e, "cannot record the core's pid");
            }
        }
        Ok(child)
    }
}

/// The core's own log lines, into ours.
async fn forward_log(stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "xray_core", "{line}");
    }
}

/// Watches the child; restarts it when it dies; stops it when cancelled.
async fn supervise(shared: Arc<Shared>, mut child: Child, cancel: CancellationToken) {
    let settings = shared.settings.clone();
    let mut backoff = settings.backoff_min;
    loop {
        let started = Instant::now();
        tokio::select! {
            () = cancel.cancelled() => {
                terminate(&mut child, settings.stop_timeout).await;
                shared.pid.store(0, Ordering::Relaxed);
                if let Some(file) = shared.pid_file() {
                    file.clear();
                }
                return;
            }
            status = child.wait() => {
                shared.pid.store(0, Ordering::Relaxed);
                log_exit(status);
            }
        }
        if started.elapsed() >= settings.stable_after {
            backoff = settings.backoff_min;
        }
        // Respawn after the backoff, retrying (with a growing pause) if even
        // spawning fails, until cancelled.
        child = loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(settings.backoff_max);
            match shared.spawn() {
                Ok(child) => break child,
                Err(e) => tracing::error!(error = %e, "cannot restart the core"),
            }
        };
        shared.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

fn log_exit(status: std::io::Result<ExitStatus>) {
    match status {
        Ok(status) => tracing::warn!(%status, "core exited by itself; restarting it"),
        Err(e) => tracing::warn!(error = %e, "lost track of the core; restarting it"),
    }
}

/// SIGTERM, then SIGKILL if the child has not exited by `deadline`.
async fn terminate(child: &mut Child, deadline: Duration) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    let Ok(raw) = i32::try_from(pid) else {
        let _ = child.kill().await;
        return;
    };
    if let Err(e) = kill(Pid::from_raw(raw), Signal::SIGTERM) {
        tracing::warn!(pid, error = %e, "SIGTERM failed");
    }
    match tokio::time::timeout(deadline, child.wait()).await {
        Ok(_) => tracing::info!(pid, "core stopped"),
        Err(_) => {
            tracing::warn!(pid, "core ignored SIGTERM; sending SIGKILL");
            let _ = child.kill().await;
        }
    }
}

#[async_trait]
impl ServiceControl for ProcessService {
    async fn start(&self) -> Result<(), ServiceError> {
        let mut control = self.control.lock().await;
        self.start_locked(&mut control).await
    }

    async fn stop(&self) -> Result<(), ServiceError> {
        let mut control = self.control.lock().await;
        self.stop_locked(&mut control).await
    }

    async fn restart(&self) -> Result<(), ServiceError> {
        let mut control = self.control.lock().await;
        self.stop_locked(&mut control).await?;
        self.start_locked(&mut control).await
    }

    async fn status(&self) -> Result<ServiceStatus, ServiceError> {
        let supervised = {
            let control = self.control.lock().await;
            control.as_ref().is_some_and(|s| !s.task.is_finished())
        };
        if !supervised {
            return Ok(ServiceStatus::Stopped);
        }
        if self.pid().is_none() {
            return Ok(ServiceStatus::Initializing); // dead, waiting to be restarted
        }
        match &self.probe {
            Some(probe) if !probe.ready().await => Ok(ServiceStatus::Initializing),
            _ => Ok(ServiceStatus::Running),
        }
    }

    async fn instance(&self) -> Result<Option<CoreInstance>, ServiceError> {
        if self.shared.pid.load(Ordering::SeqCst) == 0 {
            return Ok(None);
        }
        let spawn = self.shared.spawns.load(Ordering::SeqCst);
        Ok(Some(CoreInstance::new(format!("spawn {spawn}"))))
    }
}
