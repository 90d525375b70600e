//! systemd: `systemctl start|stop|restart|is-active <unit>`.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    CoreInstance, DEFAULT_COMMAND_TIMEOUT, ServiceControl, ServiceError, ServiceStatus,
    expect_success, run_command,
};

/// The core as a systemd unit. The unit's own restart policy may bring the
/// core back after a crash; the agent notices that through the unit's
/// `InvocationID` (new on every start) and `MainPID`.
#[derive(Debug, Clone)]
pub struct SystemdService {
    unit: String,
    systemctl: PathBuf,
    timeout: Duration,
}

impl SystemdService {
    pub fn new(unit: impl Into<String>) -> Self {
        Self {
            unit: unit.into(),
            systemctl: PathBuf::from("systemctl"),
            timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// Uses another `systemctl` (a full path, or a wrapper such as one that
    /// adds `--user`).
    pub fn with_systemctl(mut self, program: impl Into<PathBuf>) -> Self {
        self.systemctl = program.into();
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn run(&self, verb: &str) -> Result<(), ServiceError> {
        let args = [verb, self.unit.as_str()];
        let output = run_command(&self.systemctl, &args, self.timeout).await?;
        expect_success(&self.systemctl, &args, output).map(drop)
    }
}

/// Maps `systemctl is-active` output to a status.
fn parse_is_active(state: &str) -> Option<ServiceStatus> {
    match state {
        "active" | "reloading" => Some(ServiceStatus::Running),
        "activating" => Some(ServiceStatus::Initializing),
        "inactive" | "failed" | "deactivating" | "unknown" => Some(ServiceStatus::Stopped),
        _ => None,
    }
}

/// The instance named by `systemctl show -p InvocationID -p MainPID`: `None`
/// while no main process runs. Both, since a systemd older than 232 has no
/// invocation id and a pid alone can be reused.
fn parse_show(output: &str) -> Option<CoreInstance> {
    let mut invocation = "";
    let mut pid = "";
    for line in output.lines() {
        if let Some(value) = line.strip_prefix("InvocationID=") {
            invocation = value.trim();
        } else if let Some(value) = line.strip_prefix("MainPID=") {
            pid = value.trim();
        }
    }
    if pid.is_empty() || pid == "0" {
        return None;
    }
    Some(CoreInstance::new(format!("{invocation}/{pid}")))
}

#[async_trait]
impl ServiceControl for SystemdService {
    async fn start(&self) -> Result<(), ServiceError> {
        self.run("start").await
    }

    async fn stop(&self) -> Result<(), ServiceError> {
        self.run("stop").await
    }

    async fn restart(&self) -> Result<(), ServiceError> {
        self.run("restart").await
    }

    async fn status(&self) -> Result<ServiceStatus, ServiceError> {
        // is-active exits non-zero for anything but "active": read stdout.
        let args = ["is-active", self.unit.as_str()];
        let output = run_command(&self.systemctl, &args, self.timeout).await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let state = stdout.lines().next().unwrap_or("").trim();
        parse_is_active(state).ok_or_else(|| ServiceError::UnexpectedOutput {
            program: self.systemctl.display().to_string(),
            output: format!(
                "{state:?} / {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }

    async fn instance(&self) -> Result<Option<CoreInstance>, ServiceError> {
        let args = [
            "show",
            "-p",
            "InvocationID",
            "-p",
            "MainPID",
            self.unit.as_str(),
        ];
        let output = run_command(&self.systemctl, &args, self.timeout).await?;
        let output = expect_success(&self.systemctl, &args, output)?;
        Ok(parse_show(&String::from_utf8_lossy(&output.stdout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_active_states_map_to_statuses() {
        assert_eq!(parse_is_active("active"), Some(ServiceStatus::Running));
        assert_eq!(
            parse_is_active("activating"),
            Some(ServiceStatus::Initializing)
        );
        assert_eq!(parse_is_active("inactive"), Some(ServiceStatus::Stopped));
        assert_eq!(parse_is_active("failed"), Some(ServiceStatus::Stopped));
        assert_eq!(parse_is_active(""), None);
    }

    #[test]
    fn show_names_the_instance_by_invocation_and_pid() {
        let a = parse_show("MainPID=412\nInvocationID=5f0c\n").unwrap();
        let b = parse_show("InvocationID=77aa\nMainPID=412\n").unwrap();
        assert_ne!(
            a, b,
            "a new invocation with a reused pid is another instance"
        );
        assert_eq!(a.as_str(), "5f0c/412");
        assert_eq!(parse_show("MainPID=0\nInvocationID=5f0c\n"), None);
        assert_eq!(parse_show(""), None);
    }
}
