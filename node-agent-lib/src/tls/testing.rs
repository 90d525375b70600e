//! Certificates for tests (feature `testing`): a throwaway certificate
//! authority and server certificates it signs for `localhost` and
//! `127.0.0.1`, made by the `openssl` tool (part of the test environment:
//! a missing one is a setup error, so these panic rather than skip).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate authority of one test, in a directory of its own.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's certificate, PEM: what a client trusts.
    pub cert: PathBuf,
    key: PathBuf,
    dir: tempfile::TempDir,
}

/// A server certificate and its key, PEM files.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA (P-256, valid one day) named `name`.
    ///
    /// # Panics
    /// Without a working `openssl` tool.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
                .args(["-subj", &format!("/CN={name}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        Self { cert, key, dir }
    }

    /// A server certificate for `localhost` and `127.0.0.1` signed by this
    /// CA, written as `<stem>.pem` and `<stem>.key` in this CA's directory.
    ///
    /// # Panics
    /// Without a working `openssl` tool.
    pub fn issue(&self, stem: &str) -> ServerCertificate {
        let dir = self.dir.path();
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        let request = dir.join(format!("{stem}.csr"));
        let extensions = dir.join(format!("{stem}.ext"));
        std::fs::write(
            &extensions,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write the extensions file");
        openssl(
            Command::new("openssl")
                .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes"])
                .args(["-subj", "/CN=localhost"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&request),
        );
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "1", "-set_serial"])
                .arg(serial())
                .arg("-in")
                .arg(&request)
                .arg("-CA")
                .arg(&self.cert)
                .arg("-CAkey")
                .arg(&self.key)
                .arg("-extfile")
                .arg(&extensions)
                .arg("-out")
                .arg(&cert),
        );
        ServerCertificate { cert, key }
    }

    /// The CA's directory (kept as long as the CA lives).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A random positive serial number, so two certificates never share one.
fn serial() -> String {
    format!("{}", rand::random::<u64>() >> 1)
}

fn openssl(command: &mut Command) {
    let done = command
        .output()
        .expect("run the openssl tool (it is part of the test environment)");
    assert!(done.status.success(), "openssl failed: {done:?}");
}
