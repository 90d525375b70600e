//! The listeners' TLS ([`node_agent_lib::tls`]) through a real listener
//! and a real HTTPS client: who is refused, what is served, and a
//! certificate replaced on disk while the listener runs.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use node_agent_lib::listener::{self, ListenerSettings};
use node_agent_lib::tls::ReloadingCertificate;
use node_agent_lib::tls::testing::{ServerCertificate, TestCa};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

struct Served {
    address: SocketAddr,
    certificate: std::sync::Arc<ReloadingCertificate>,
    stop: CancellationToken,
    /// The files the listener reads (copies the tests overwrite).
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A listener serving copies of `first`'s files, re-read every 50 ms when
/// `watch`.
async fn serve(first: &ServerCertificate, watch: bool) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let certificate = ReloadingCertificate::load(&cert, &key).unwrap();
    let stop = CancellationToken::new();
    if watch {
        tokio::spawn(
            certificate
                .clone()
                .watch(Duration::from_millis(50), stop.clone()),
        );
    }
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let acceptor = certificate.acceptor(true);
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        listener::serve(
            socket,
            app,
            &ListenerSettings::default(),
            Some(acceptor),
            shutdown,
        )
        .await
    });
    Served {
        address,
        certificate,
        stop,
        cert,
        key,
        _dir: dir,
    }
}

/// One HTTPS request trusting only `ca` (a fresh client: no pooled
/// connection), to `host` on the listener's port: the answer's body, or why not.
async fn fetch(served: &Served, ca: &TestCa, host: &str) -> Result<String, String> {
    let pem = std::fs::read(&ca.cert).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("https://{host}:{}/", served.address.port());
    let answer = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    answer.text().await.map_err(|e| format!("{e:?}"))
}

/// Replaces `dest` by `source`'s content the way deployments do: a new file
/// renamed over the old one.
fn replace(source: &Path, dest: &Path) {
    let next = dest.with_extension("next");
    std::fs::copy(source, &next).unwrap();
    std::fs::rename(&next, dest).unwrap();
}

#[tokio::test]
async fn a_client_trusting_the_right_ca_is_served_and_one_trusting_another_is_refused() {
    let (ours, theirs) = (TestCa::new("ours"), TestCa::new("theirs"));
    let served = serve(&ours.issue("server"), false).await;
    assert_eq!(fetch(&served, &ours, "localhost").await.unwrap(), "ok");
    assert_eq!(fetch(&served, &ours, "127.0.0.1").await.unwrap(), "ok");
    let refused = fetch(&served, &theirs, "localhost").await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_without_a_restart() {
    let (old_ca, new_ca) = (TestCa::new("old"), TestCa::new("new"));
    let served = serve(&old_ca.issue("server"), true).await;
    assert!(fetch(&served, &new_ca, "localhost").await.is_err());

    let renewed = new_ca.issue("server");
    replace(&renewed.key, &served.key);
    replace(&renewed.cert, &served.cert);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while fetch(&served, &new_ca, "localhost").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not served within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing serves the old one any more.
    assert!(fetch(&served, &old_ca, "localhost").await.is_err());
}

#[tokio::test]
async fn a_bad_new_certificate_keeps_the_old_one_serving() {
    let ca = TestCa::new("ca");
    let served = serve(&ca.issue("server"), false).await;

    std::fs::write(&served.cert, "not a certificate").unwrap();
    let error = served.certificate.reload().unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    assert!(error.to_string().contains("cert.pem"), "{error}");
    assert_eq!(fetch(&served, &ca, "localhost").await.unwrap(), "ok");
    // Unchanged files are not reported again.
    assert!(!served.certificate.reload().unwrap());

    // A certificate without its key (the key is still the old one's).
    let other = ca.issue("other");
    replace(&other.cert, &served.cert);
    let error = served.certificate.reload().unwrap_err();
    assert!(error.to_string().contains("does not belong"), "{error}");
    assert_eq!(fetch(&served, &ca, "localhost").await.unwrap(), "ok");

    // Its key arrives: the pair loads.
    replace(&other.key, &served.key);
    assert!(served.certificate.reload().unwrap());
    assert_eq!(fetch(&served, &ca, "localhost").await.unwrap(), "ok");
}

#[test]
fn a_key_that_does_not_load_is_named_but_never_quoted() {
    let ca = TestCa::new("ca");
    let server = ca.issue("server");
    let not_a_key = ca.dir().join("nope.pem");
    std::fs::write(&not_a_key, "secret-looking text").unwrap();
    let error = ReloadingCertificate::load(&server.cert, &not_a_key).unwrap_err();
    assert!(error.to_string().contains("nope.pem"), "{error}");
    assert!(!error.to_string().contains("secret-looking"), "{error}");
    let missing = ReloadingCertificate::load(&ca.dir().join("absent.pem"), &server.key);
    assert!(missing.unwrap_err().to_string().contains("absent.pem"));
}

#[test]
fn settings_come_from_variables_and_need_both_files() {
    use node_agent_lib::tls::{DEFAULT_RELOAD_INTERVAL_SECS, TlsSettings};
    let mut tls = None;
    assert_eq!(TlsSettings::set(&mut tls, "TLS_CERT", "/c.pem"), Ok(true));
    assert_eq!(TlsSettings::set(&mut tls, "NOPE", "1"), Ok(false));
    let half = tls.clone().unwrap();
    assert!(half.validate().unwrap_err().contains("tls.key"));
    assert_eq!(half.reload_interval_secs, DEFAULT_RELOAD_INTERVAL_SECS);
    assert_eq!(TlsSettings::set(&mut tls, "TLS_KEY", "/k.pem"), Ok(true));
    assert!(TlsSettings::set(&mut tls, "TLS_RELOAD_INTERVAL_SECS", "soon").is_err());
    assert_eq!(
        TlsSettings::set(&mut tls, "TLS_RELOAD_INTERVAL_SECS", "0"),
        Ok(true)
    );
    let tls = tls.unwrap();
    assert_eq!(tls.validate(), Ok(()));
    assert_eq!(tls.reload_interval(), None);
    let from_toml: TlsSettings = toml::from_str("cert = \"/c.pem\"\nkey = \"/k.pem\"").unwrap();
    assert_eq!(
        from_toml.reload_interval(),
        Some(Duration::from_secs(DEFAULT_RELOAD_INTERVAL_SECS))
    );
}
