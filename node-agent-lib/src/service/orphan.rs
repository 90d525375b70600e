//! A core the previous agent left running: when the agent is killed with
//! SIGKILL (or the OOM killer), its supervised core is not, and lives on
//! with the users of its last config — possibly ones disabled since — and
//! holding the ports the next core needs.
//!
//! The [`ProcessService`](super::ProcessService) records each core it
//! spawns in a pid file (in the agent's state directory): its pid and what
//! makes that pid this process and no other — the kernel's boot id, the
//! process's start time (clock ticks after boot, from `/proc/PID/stat`) and
//! its command line. The file is removed when the core is stopped. On the
//! next start, [`CorePidFile::stop_orphan`] stops the recorded process only
//! if a process with that pid still has all of these, so a pid reused by
//! anything else (after a reboot, or by another program) is never signalled.
//!
//! It is stopped rather than adopted: the new agent knows none of its users
//! (the manager sends them with `/start`, which restarts the core anyway),
//! cannot wait for a process that is not its child nor read its logs, and
//! an orphan must not go on serving users the manager may have disabled
//! since. The check reads `/proc`: on other systems nothing is signalled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// How long to wait for a SIGKILLed orphan to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// Who a process is, beyond its pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    pid: u32,
    boot_id: String,
    /// Clock ticks after boot (`/proc/PID/stat`, field 22).
    start_time: u64,
    /// `/proc/PID/cmdline`: the arguments, each ended by a NUL.
    cmdline: Vec<u8>,
}

/// The pid file of the supervised core.
#[derive(Debug, Clone)]
pub struct CorePidFile {
    path: PathBuf,
}

impl CorePidFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the core just spawned as `pid` (written whole or not at all).
    pub fn record(&self, pid: u32) -> std::io::Result<()> {
        let identity = identity(pid).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("process {pid} is not in /proc"),
            )
        })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut file, &identity)?;
        file.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Forgets the recorded core (it was stopped).
    pub fn clear(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the core's pid file")
            }
        }
    }

    /// Stops the core this file records if that very process still runs:
    /// SIGTERM, then SIGKILL after `stop_timeout`; waits until it is gone.
    /// Answers its pid when there was one. The file is removed either way.
    pub async fn stop_orphan(&self, stop_timeout: Duration) -> std::io::Result<Option<u32>> {
        let recorded: Identity = match std::fs::read(&self.path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(identity) => identity,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "unreadable core pid file; ignored");
                    self.clear();
                    return Ok(None);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let pid = recorded.pid;
        if !is_running(&recorded) {
            self.clear();
            return Ok(None);
        }
        tracing::warn!(
            pid,
            "a core left running by a previous agent (killed without stopping it); stopping it"
        );
        let target = Pid::from_raw(i32::try_from(pid).map_err(std::io::Error::other)?);
        let _ = kill(target, Signal::SIGTERM);
        if !gone_within(&recorded, stop_timeout).await {
            tracing::warn!(pid, "the orphaned core ignored SIGTERM; sending SIGKILL");
            let _ = kill(target, Signal::SIGKILL);
            if !gone_within(&recorded, KILL_WAIT).await {
                return Err(std::io::Error::other(format!(
                    "the orphaned core (pid {pid}) survived SIGKILL"
                )));
            }
        }
        self.clear();
        Ok(Some(pid))
    }
}

/// Whether the process `recorded` names still runs (a zombie has ended).
fn is_running(recorded: &Identity) -> bool {
    identity(recorded.pid).is_some_and(|now| now == *recorded) && !is_zombie(recorded.pid)
}

async fn gone_within(recorded: &Identity, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if !is_running(recorded) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `/proc/PID/stat` after the command name (which may hold spaces and
/// parentheses): field 3 (state) onwards.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn is_zombie(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| matches!(f.first().map(String::as_str), Some("Z" | "X")))
}

/// The identity of the live process `pid`, if there is one.
fn identity(pid: u32) -> Option<Identity> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    // Field 22 of the whole line is the 20th after the command name.
    let start_time = stat_fields(pid)?.get(19)?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(Identity {
        pid,
        boot_id: boot_id.trim().to_owned(),
        start_time,
        cmdline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recorded_pid_now_held_by_another_process_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = CorePidFile::new(dir.path().join("core.pid"));
        // This test process stands for "another process holding the pid".
        let me = std::process::id();
        file.record(me).unwrap();
        let mut recorded: Identity =
            serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
        assert_eq!(recorded.pid, me);
        recorded.start_time += 1;
        std::fs::write(file.path(), serde_json::to_vec(&recorded).unwrap()).unwrap();
        assert_eq!(
            file.stop_orphan(Duration::from_secs(1)).await.unwrap(),
            None
        );
        assert!(!file.path().exists());
    }

    #[tokio::test]
    async fn the_recorded_process_is_stopped_and_the_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = CorePidFile::new(dir.path().join("core.pid"));
        let mut child = tokio::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        file.record(pid).unwrap();
        // Reap it as soon as it dies, as init would for a real orphan.
        let reaped = tokio::spawn(async move { child.wait().await });
        let stopped = file.stop_orphan(Duration::from_secs(5)).await.unwrap();
        assert_eq!(stopped, Some(pid));
        assert!(!file.path().exists());
        let status = reaped.await.unwrap().unwrap();
        assert!(!status.success(), "{status:?}");
        assert_eq!(
            file.stop_orphan(Duration::from_secs(1)).await.unwrap(),
            None
        );
    }
}
