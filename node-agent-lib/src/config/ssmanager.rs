//! The generated config of an `ss-manager` core: where its servers listen,
//! the method, its manager address, and no users. `ss-manager` would start
//! ports listed in its config, but counters of ports it starts by itself
//! could not be told from the ones before its restart; so it starts empty
//! and the agent adds every user through the API (`/start` at once; after a
//! start it did not order, the re-apply of the `watch` module), knowing
//! each port's counter starts from 0 (see `crate::core::SsManagerClient`).

use serde_json::json;

use super::{ConfigError, CoreConfig, ManagedInbound, ss_cipher};
use crate::core::{SS_MANAGER_TAG, method_of};
use crate::wire::{InboundDescription, InboundProtocol, PortRange};

/// What the agent's settings say about an `ss-manager` core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsManagerConfig {
    /// The range users' ports are taken from.
    pub ports: PortRange,
    /// The address every user's `ss-server` binds (`-s`).
    pub server: String,
    /// The Shadowsocks method every port uses.
    pub method: String,
    /// The manager's UDP address, `HOST:PORT`.
    pub manager_address: String,
    /// UDP relay as well as TCP.
    pub udp: bool,
    /// Idle timeout of a connection, s.
    pub timeout_secs: u64,
}

impl CoreConfig {
    /// The config of an `ss-manager` core: one managed "inbound"
    /// ([`SS_MANAGER_TAG`]) of Shadowsocks with `method`; users are not in
    /// the file ([`CoreConfig::restores_users`] is false). Described as
    /// plain Shadowsocks with the range (`port_range`): each user's port is
    /// its home port there unless the agent's port map says otherwise,
    /// which the agent adds to the description as it answers `/start`.
    pub fn ss_manager(settings: &SsManagerConfig) -> Result<(Self, Vec<String>), ConfigError> {
        let cipher = ss_cipher(&settings.method).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "ss-manager method {:?}: use aes-128-gcm, aes-256-gcm, \
                 chacha20-ietf-poly1305 or xchacha20-ietf-poly1305",
                settings.method
            ))
        })?;
        if settings.server.trim().is_empty() || settings.manager_address.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "ss-manager needs a server address and a manager address".into(),
            ));
        }
        let method = method_of(cipher);
        let file = json!({
            "server": settings.server,
            "method": method,
            "manager_address": settings.manager_address,
            "mode": if settings.udp { "tcp_and_udp" } else { "tcp_only" },
            "timeout": settings.timeout_secs,
        });
        let inbound = ManagedInbound {
            tag: SS_MANAGER_TAG.to_owned(),
            protocol: InboundProtocol::Shadowsocks,
            flow: String::new(),
            method: method.to_owned(),
            cipher: Some(cipher),
            static_clients: Vec::new(),
        };
        let mut description = InboundDescription::new(
            SS_MANAGER_TAG,
            InboundProtocol::Shadowsocks,
            settings.ports.start,
        );
        description.method = method.to_owned();
        description.port_range = Some(settings.ports);
        Ok((
            Self {
                pieces: vec![serde_json::to_string_pretty(&file)?],
                inbounds: vec![inbound],
                descriptions: vec![description],
                users_in_file: false,
            },
            Vec::new(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireUser;

    fn settings(method: &str) -> SsManagerConfig {
        SsManagerConfig {
            ports: PortRange::new(30000, 30999).unwrap(),
            server: "0.0.0.0".into(),
            method: method.into(),
            manager_address: "127.0.0.1:6001".into(),
            udp: true,
            timeout_secs: 60,
        }
    }

    #[test]
    fn the_generated_config_names_the_method_and_address_and_no_user() {
        let (config, _) = CoreConfig::ss_manager(&settings("chacha20-poly1305")).unwrap();
        assert!(!config.restores_users());
        let described = &config.descriptions()[0];
        assert_eq!(described.tag, SS_MANAGER_TAG);
        assert_eq!(described.protocol, InboundProtocol::Shadowsocks);
        assert_eq!(described.method, "chacha20-ietf-poly1305");
        assert_eq!(
            described.port_range,
            Some(PortRange::new(30000, 30999).unwrap())
        );
        assert!(described.user_ports.is_empty());
        let user = WireUser {
            id: "u".into(),
            name: "n".into(),
            secret: "the-secret".into(),
            proxy_id: None,
        };
        let mut out = Vec::new();
        config.render(&mut out, [&user]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("the-secret"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["method"], "chacha20-ietf-poly1305");
        assert_eq!(v["manager_address"], "127.0.0.1:6001");
        assert_eq!(v["mode"], "tcp_and_udp");
        let inbound = &config.inbounds()[0];
        assert_eq!(inbound.tag, SS_MANAGER_TAG);
        assert_eq!(inbound.static_clients(), 0);
        assert!(!config.needs_uuid_ids());
    }

    #[test]
    fn a_method_ss_manager_users_cannot_share_safely_is_refused() {
        for bad in ["rc4-md5", "aes-256-cfb", "", "2022-blake3-aes-128-gcm"] {
            assert!(
                matches!(
                    CoreConfig::ss_manager(&settings(bad)),
                    Err(ConfigError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }
}
