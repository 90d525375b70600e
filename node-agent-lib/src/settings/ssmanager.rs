//! `[ss_manager]`: the settings of an `ss-manager` core (`flavor =
//! "ss-manager"`), and which kind of core the agent drives.

use std::path::PathBuf;

use serde::Deserialize;
use xray_core_client::Flavor;

use super::{Settings, SettingsError, invalid};
use crate::config::SsManagerConfig;
use crate::core::ports::PortRange;

/// The `flavor` value that selects an `ss-manager` core.
pub const SS_MANAGER_FLAVOR: &str = "ss-manager";

/// Which kind of core the agent drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreKind {
    /// Xray or V2Ray, over their gRPC API.
    Xray(Flavor),
    /// shadowsocks-libev's `ss-manager`, one port per user.
    SsManager,
}

/// `[ss_manager]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsManagerSettings {
    /// The range users' ports are taken from, `START-END` (`XNA_SS_PORTS`).
    pub ports: String,
    /// The Shadowsocks method of every port: aes-128-gcm, aes-256-gcm,
    /// chacha20-ietf-poly1305 or xchacha20-ietf-poly1305 (`XNA_SS_METHOD`).
    pub method: String,
    /// The address the users' servers bind (`XNA_SS_SERVER`).
    pub server: String,
    /// UDP relay as well as TCP (`XNA_SS_UDP`).
    pub udp: bool,
    /// Idle timeout of a connection, s (`XNA_SS_TIMEOUT_SECS`).
    pub timeout_secs: u64,
}

impl Default for SsManagerSettings {
    fn default() -> Self {
        Self {
            ports: "20000-29999".into(),
            method: "chacha20-ietf-poly1305".into(),
            server: "0.0.0.0".into(),
            udp: true,
            timeout_secs: 60,
        }
    }
}

impl SsManagerSettings {
    /// Applies one `XNA_SS_…` variable (`key` without `XNA_SS_`); false
    /// when it is not one of ours.
    pub(super) fn set(&mut self, key: &str, value: String) -> Result<bool, SettingsError> {
        match key {
            "PORTS" => self.ports = value,
            "METHOD" => self.method = value,
            "SERVER" => self.server = value,
            "UDP" => {
                self.udp = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("XNA_SS_UDP", "true or false"))?;
            }
            "TIMEOUT_SECS" => {
                self.timeout_secs =
                    value.trim().parse().map_err(|e: std::num::ParseIntError| {
                        invalid("XNA_SS_TIMEOUT_SECS", e.to_string())
                    })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl Settings {
    /// The kind of core `flavor` names.
    pub fn core_kind(&self) -> Result<CoreKind, SettingsError> {
        if self.flavor.trim() == SS_MANAGER_FLAVOR {
            return Ok(CoreKind::SsManager);
        }
        self.flavor().map(CoreKind::Xray)
    }

    /// The users' port range of an `ss-manager` core.
    pub fn ss_ports(&self) -> Result<PortRange, SettingsError> {
        self.ss_manager
            .ports
            .parse()
            .map_err(|e: crate::wire::PortRangeError| invalid("ss_manager.ports", e.to_string()))
    }

    /// What the generated config of an `ss-manager` core is made from.
    pub fn ss_manager_config(&self) -> Result<SsManagerConfig, SettingsError> {
        Ok(SsManagerConfig {
            ports: self.ss_ports()?,
            server: self.ss_manager.server.clone(),
            method: self.ss_manager.method.clone(),
            manager_address: self.core.api_address.clone(),
            udp: self.ss_manager.udp,
            timeout_secs: self.ss_manager.timeout_secs,
        })
    }

    /// `ss-manager`'s working directory (its servers' pid and config
    /// files): in the state directory, so a new `ss-manager` finds and
    /// stops the servers a killed one left running.
    pub fn ss_manager_work_dir(&self) -> PathBuf {
        self.state_dir.join("ss-manager")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_manager_settings_default_then_toml_then_env() {
        let mut s = Settings::from_toml(
            "flavor = \"ss-manager\"\nstate_dir = \"/srv/xna\"\n\
             [core]\nbinary = \"/usr/bin/ss-manager\"\ngenerated_config = \"/srv/xna/ss.json\"\n\
             api_address = \"127.0.0.1:6001\"\n\
             [ss_manager]\nports = \"30000-30999\"\nmethod = \"aes-256-gcm\"\n",
        )
        .unwrap();
        assert_eq!(s.core_kind().unwrap(), CoreKind::SsManager);
        assert_eq!(s.ss_ports().unwrap(), PortRange::new(30000, 30999).unwrap());
        assert_eq!(
            s.core_args().unwrap(),
            ["-c", "/srv/xna/ss.json", "-D", "/srv/xna/ss-manager"]
        );
        let c = s.ss_manager_config().unwrap();
        assert_eq!(c.ports, PortRange::new(30000, 30999).unwrap());
        assert_eq!(c.manager_address, "127.0.0.1:6001");
        assert!(c.udp);
        s.apply_env([
            ("XNA_SS_PORTS".to_owned(), "40000-40010".to_owned()),
            ("XNA_SS_UDP".to_owned(), "false".to_owned()),
            ("XNA_SS_METHOD".to_owned(), "aes-128-gcm".to_owned()),
        ])
        .unwrap();
        assert_eq!(s.ss_ports().unwrap().size(), 11);
        assert!(!s.ss_manager_config().unwrap().udp);
        assert_eq!(s.ss_manager.method, "aes-128-gcm");
        assert!(
            s.apply_env([("XNA_SS_UDP".to_owned(), "maybe".to_owned())])
                .is_err()
        );
        s.ss_manager.ports = "9-1".into();
        assert!(s.ss_ports().is_err());
        assert_eq!(
            Settings::default().core_kind().unwrap(),
            CoreKind::Xray(Flavor::Xray)
        );
    }
}
