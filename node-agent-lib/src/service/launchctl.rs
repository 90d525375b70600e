//! launchd (macOS): `launchctl bootstrap / kickstart [-k] / bootout / print`.
//! Compiled everywhere: it only runs commands.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    CoreInstance, DEFAULT_COMMAND_TIMEOUT, ServiceControl, ServiceError, ServiceStatus,
    expect_success, run_command,
};

/// The core as a launchd job `label` in `domain` (e.g. `system`), defined by
/// the property list `plist` (loaded with `bootstrap` when needed, since
/// `bootout` unloads it).
#[derive(Debug, Clone)]
pub struct LaunchctlService {
    label: String,
    domain: String,
    plist: PathBuf,
    launchctl: PathBuf,
    timeout: Duration,
}

impl LaunchctlService {
    pub fn new(
        label: impl Into<String>,
        domain: impl Into<String>,
        plist: impl Into<PathBuf>,
    ) -> Self {
        Self {
            label: label.into(),
            domain: domain.into(),
            plist: plist.into(),
            launchctl: PathBuf::from("launchctl"),
            timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    pub fn with_launchctl(mut self, program: impl Into<PathBuf>) -> Self {
        self.launchctl = program.into();
        self
    }

    fn target(&self) -> String {
        format!("{}/{}", self.domain, self.label)
    }

    async fn run(&self, args: &[&str]) -> Result<std::process::Output, ServiceError> {
        run_command(&self.launchctl, args, self.timeout).await
    }

    /// Loads the job if launchd does not know it.
    async fn ensure_loaded(&self) -> Result<(), ServiceError> {
        let target = self.target();
        if self.run(&["print", &target]).await?.status.success() {
            return Ok(());
        }
        let plist = self.plist.display().to_string();
        let args = ["bootstrap", self.domain.as_str(), plist.as_str()];
        let output = self.run(&args).await?;
        expect_success(&self.launchctl, &args, output).map(drop)
    }

    async fn kickstart(&self, kill: bool) -> Result<(), ServiceError> {
        self.ensure_loaded().await?;
        let target = self.target();
        let args: Vec<&str> = if kill {
            vec!["kickstart", "-k", &target]
        } else {
            vec!["kickstart", &target]
        };
        let output = self.run(&args).await?;
        expect_success(&self.launchctl, &args, output).map(drop)
    }
}

/// Maps the `state = …` line of `launchctl print` to a status.
fn parse_print(output: &str) -> Option<ServiceStatus> {
    let state = output
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("state = "))?;
    Some(match state.trim() {
        "running" => ServiceStatus::Running,
        "spawn scheduled" | "xpcproxy" => ServiceStatus::Initializing,
        _ => ServiceStatus::Stopped,
    })
}

/// The `pid = …` line of `launchctl print`: launchd gives each start a new
/// process (pids are reused only after wrapping around).
fn parse_pid(output: &str) -> Option<CoreInstance> {
    let pid = output
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("pid = "))?
        .trim();
    (!pid.is_empty() && pid != "0").then(|| CoreInstance::new(format!("pid {pid}")))
}

#[async_trait]
impl ServiceControl for LaunchctlService {
    async fn start(&self) -> Result<(), ServiceError> {
        self.kickstart(false).await
    }

    async fn stop(&self) -> Result<(), ServiceError> {
        let target = self.target();
        if !self.run(&["print", &target]).await?.status.success() {
            return Ok(()); // not loaded: already stopped
        }
        let args = ["bootout", target.as_str()];
        let output = self.run(&args).await?;
        expect_success(&self.launchctl, &args, output).map(drop)
    }

    async fn restart(&self) -> Result<(), ServiceError> {
        self.kickstart(true).await
    }

    async fn status(&self) -> Result<ServiceStatus, ServiceError> {
        let target = self.target();
        let output = self.run(&["print", &target]).await?;
        if !output.status.success() {
            return Ok(ServiceStatus::Stopped); // not loaded
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        parse_print(&stdout).ok_or_else(|| ServiceError::UnexpectedOutput {
            program: self.launchctl.display().to_string(),
            output: "no `state = …` line in `launchctl print`".into(),
        })
    }

    async fn instance(&self) -> Result<Option<CoreInstance>, ServiceError> {
        let target = self.target();
        let output = self.run(&["print", &target]).await?;
        if !output.status.success() {
            return Ok(None); // not loaded
        }
        Ok(parse_pid(&String::from_utf8_lossy(&output.stdout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_states_map_to_statuses() {
        let out = "system/com.xray = {\n\tactive count = 1\n\tstate = running\n}";
        assert_eq!(parse_print(out), Some(ServiceStatus::Running));
        assert_eq!(
            parse_print("\tstate = not running\n"),
            Some(ServiceStatus::Stopped)
        );
        assert_eq!(
            parse_print("\tstate = spawn scheduled\n"),
            Some(ServiceStatus::Initializing)
        );
        assert_eq!(parse_print("nothing"), None);
    }

    #[test]
    fn print_names_the_instance_by_pid() {
        let out = "system/com.xray = {\n\tstate = running\n\tpid = 4242\n}";
        assert_eq!(parse_pid(out).unwrap().as_str(), "pid 4242");
        assert_eq!(parse_pid("\tstate = not running\n"), None);
    }
}
