//! A node base config with one managed inbound of each kind clients dial
//! through a V2Ray 4.34 server: VLESS over tcp+TLS, VMess over ws without
//! TLS, and Trojan over tcp+TLS, with a self-signed certificate made at
//! test time. Together they cover both transports (tcp, ws) and both
//! security layers (none, TLS) of every protocol real clients share with
//! V2Ray 4.34. Start an agent on it with [`TlsNode::start_agent`], or pass
//! [`TlsNode::apply`] to [`AgentProcess::start_with_base`].

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use xray_core_client::testing::{VLESS_TAG, VMESS_TAG, free_port};

use crate::fleet::AgentProcess;

/// Tag of the Trojan inbound (the VLESS and VMess ones keep the test
/// server config's [`VLESS_TAG`] and [`VMESS_TAG`]).
pub const TROJAN_TAG: &str = "trojan-in";
/// The certificate's name, and the server name clients send.
pub const TLS_SERVER_NAME: &str = "localhost";
/// The WebSocket path of the VMess inbound.
pub const VMESS_WS_PATH: &str = "/vmess-ws";

/// A self-signed certificate for [`TLS_SERVER_NAME`] (P-256, one day),
/// made by the `openssl` tool in a directory of its own.
#[derive(Debug)]
pub struct TestCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCertificate {
    /// # Panics
    /// Without the `openssl` tool (it is part of the test environment:
    /// a missing one is a setup error, not a reason to skip).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", &format!("/CN={TLS_SERVER_NAME}")])
            .args(["-addext", &format!("subjectAltName=DNS:{TLS_SERVER_NAME}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run the openssl tool (install openssl)");
        assert!(made.status.success(), "openssl req: {made:?}");
        Self {
            cert,
            key,
            _dir: dir,
        }
    }
}

/// The three managed inbounds' ports and the certificate they serve.
#[derive(Debug)]
pub struct TlsNode {
    pub certificate: TestCertificate,
    /// VLESS, tcp + TLS.
    pub vless: u16,
    /// VMess, ws at [`VMESS_WS_PATH`], no TLS.
    pub vmess_ws: u16,
    /// Trojan, tcp + TLS.
    pub trojan: u16,
}

impl TlsNode {
    /// A fresh certificate; the ports are set when the config is applied.
    pub fn new() -> Self {
        Self {
            certificate: TestCertificate::generate(),
            vless: 0,
            vmess_ws: 0,
            trojan: 0,
        }
    }

    /// Starts an agent (a real core through the process backend) listening
    /// on 127.0.0.1:`listen` with `key`, on this base config; the ports are
    /// then filled in. With a manager, `listen` is the port the node was
    /// registered with before its key existed (as
    /// [`AgentProcess::start_at`]).
    pub async fn start_agent(&mut self, key: &str, core: &Path, listen: u16) -> AgentProcess {
        let mut edited = None;
        let agent = AgentProcess::start_with_base(key, core, listen, 50, |base| {
            edited = Some(self.ports_after(base));
        })
        .await;
        (self.vless, self.vmess_ws, self.trojan) = edited.expect("the base config was edited");
        agent
    }

    /// Turns the test server config (API, VLESS and VMess inbounds on free
    /// ports) into this base config, keeping its ports for VLESS and VMess
    /// and taking a free one for Trojan; records the ports.
    pub fn apply(&mut self, base: &mut Value) {
        (self.vless, self.vmess_ws, self.trojan) = self.ports_after(base);
    }

    fn ports_after(&self, base: &mut Value) -> (u16, u16, u16) {
        let inbounds = base["inbounds"]
            .as_array_mut()
            .expect("the base config has inbounds");
        let port_of = |inbounds: &[Value], tag: &str| {
            inbounds
                .iter()
                .find(|i| i["tag"] == tag)
                .and_then(|i| i["port"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or_else(|| panic!("the base config has no {tag} inbound with a port"))
        };
        let (vless, vmess_ws, trojan) = (
            port_of(inbounds, VLESS_TAG),
            port_of(inbounds, VMESS_TAG),
            free_port(),
        );
        inbounds.retain(|i| i["tag"] != VLESS_TAG && i["tag"] != VMESS_TAG);
        let tls = self.tls_stream();
        inbounds.push(json!({
            "tag": VLESS_TAG,
            "listen": "127.0.0.1",
            "port": vless,
            "protocol": "vless",
            "settings": { "clients": [], "decryption": "none" },
            "streamSettings": tls,
        }));
        inbounds.push(json!({
            "tag": VMESS_TAG,
            "listen": "127.0.0.1",
            "port": vmess_ws,
            "protocol": "vmess",
            "settings": { "clients": [] },
            "streamSettings": {
                "network": "ws",
                "security": "none",
                "wsSettings": { "path": VMESS_WS_PATH },
            },
        }));
        inbounds.push(json!({
            "tag": TROJAN_TAG,
            "listen": "127.0.0.1",
            "port": trojan,
            "protocol": "trojan",
            "settings": { "clients": [] },
            "streamSettings": tls,
        }));
        (vless, vmess_ws, trojan)
    }

    fn tls_stream(&self) -> Value {
        json!({
            "network": "tcp",
            "security": "tls",
            "tlsSettings": {
                "serverName": TLS_SERVER_NAME,
                "certificates": [ {
                    "certificateFile": self.certificate.cert,
                    "keyFile": self.certificate.key,
                } ],
            },
        })
    }
}

impl Default for TlsNode {
    fn default() -> Self {
        Self::new()
    }
}
