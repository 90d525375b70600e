//! HTTPS on the manager's API listener, served by the composition root
//! (`Server::serve`) on 127.0.0.1:0 and called by a real HTTPS client:
//! the right CA is served, another is refused, a certificate replaced on
//! disk is served without a restart, and one that does not load stops the
//! start with a clear error.

use std::sync::Arc;
use std::time::Duration;

use manager_lib::server::{Backends, ServeError, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use node_agent_lib::tls::TlsSettings;
use node_agent_lib::tls::testing::{ServerCertificate, TestCa};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tls-test-token-0123456789abcdefghij";
const DEADLINE: Duration = Duration::from_secs(20);

struct Manager {
    port: u16,
    stop: CancellationToken,
    served: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A manager serving copies of `first`'s files over HTTPS, re-read every
/// second.
async fn start(first: &ServerCertificate) -> Manager {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let settings = ServerSettings {
        tls: Some(TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            reload_interval_secs: 1,
        }),
        ..ServerSettings::new(TOKEN)
    };
    let server = Server::build(
        Backends::new(
            Arc::new(MemoryStorage::new()),
            Arc::new(SimulatedFleet::new()),
        ),
        settings,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let served = tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));
    Manager {
        port,
        stop,
        served: Some(served),
        cert,
        key,
        _dir: dir,
    }
}

/// `GET /health` trusting only `ca`, on a fresh connection: the status,
/// or why the call failed.
async fn health(manager: &Manager, ca: &TestCa) -> Result<u16, String> {
    let pem = std::fs::read(&ca.cert).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/health", manager.port);
    match client.get(url).send().await {
        Ok(answer) => Ok(answer.status().as_u16()),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test]
async fn the_api_is_served_over_https_to_clients_trusting_its_ca_only() {
    let (ours, theirs) = (TestCa::new("manager CA"), TestCa::new("another CA"));
    let manager = start(&ours.issue("manager")).await;
    assert_eq!(health(&manager, &ours).await, Ok(200));
    let refused = health(&manager, &theirs).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/health", manager.port)).await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test]
async fn a_certificate_swapped_on_disk_is_served_without_a_restart() {
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let manager = start(&old_ca.issue("manager")).await;
    assert_eq!(health(&manager, &old_ca).await, Ok(200));
    assert!(health(&manager, &new_ca).await.is_err());

    let renewed = new_ca.issue("manager");
    for (from, to) in [(&renewed.key, &manager.key), (&renewed.cert, &manager.cert)] {
        let next = to.with_extension("next");
        std::fs::copy(from, &next).unwrap();
        std::fs::rename(&next, to).unwrap();
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while health(&manager, &new_ca).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the swapped certificate was not served within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(health(&manager, &old_ca).await.is_err());
}

#[tokio::test]
async fn a_certificate_that_does_not_load_stops_the_start() {
    let ca = TestCa::new("ca");
    let good = ca.issue("manager");
    let bad = ca.dir().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let mut manager = start(&ServerCertificate {
        cert: bad,
        key: good.key,
    })
    .await;
    let served = tokio::time::timeout(DEADLINE, manager.served.take().unwrap())
        .await
        .expect("serve returns at once");
    let error = served.unwrap().unwrap_err().to_string();
    assert!(error.contains("TLS certificate"), "{error}");
    assert!(error.contains("cert.pem"), "{error}");
}
