//! `xmctl` against a manager served over HTTPS with a private CA: it
//! trusts the CA given by `--ca-file`, `XMCTL_CA_FILE` or the config file's
//! `ca_file`, and refuses a manager whose certificate another CA signed.

mod common;

use common::{Harness, TOKEN, run_xmctl, start_manager_custom};
use manager_lib::transport::simulated::SimulatedFleet;
use node_agent_lib::tls::TlsSettings;
use node_agent_lib::tls::testing::TestCa;

/// A manager serving a certificate of `ca` over HTTPS.
async fn https_manager(ca: &TestCa) -> Harness {
    let certificate = ca.issue("manager");
    start_manager_custom(
        SimulatedFleet::new(),
        |settings| {
            settings.tls = Some(TlsSettings {
                cert: certificate.cert,
                key: certificate.key,
                reload_interval_secs: 0,
            });
        },
        |router| router,
    )
    .await
}

#[tokio::test]
async fn xmctl_trusts_the_ca_it_is_given_by_flag_variable_or_config_file() {
    let ca = TestCa::new("xmctl test CA");
    let h = https_manager(&ca).await;
    assert!(h.url.starts_with("https://"), "{}", h.url);
    let ca_file = ca.cert.to_str().unwrap();

    let by_flag = h
        .xmctl(&["--ca-file", ca_file, "user", "add", "alice"])
        .await;
    by_flag.assert_code(0);
    let by_variable = run_xmctl(
        h.home.path(),
        &["user", "list", "--json"],
        &[
            ("XMCTL_URL", &h.url),
            ("XMCTL_TOKEN", TOKEN),
            ("XMCTL_CA_FILE", ca_file),
        ],
    )
    .await;
    by_variable.assert_code(0);
    assert_eq!(by_variable.json()["users"][0]["name"], "alice");
    let config = h.write(
        "xmctl.toml",
        &format!(
            "url = \"{}\"\ntoken = \"{TOKEN}\"\nca_file = \"{ca_file}\"\n",
            h.url
        ),
    );
    let by_file = run_xmctl(
        h.home.path(),
        &["--config", config.to_str().unwrap(), "user", "list"],
        &[],
    )
    .await;
    by_file.assert_code(0);
    assert!(by_file.stdout.contains("alice"), "{by_file:?}");
}

#[tokio::test]
async fn xmctl_refuses_a_manager_whose_certificate_another_ca_signed() {
    let (theirs, ours) = (TestCa::new("manager CA"), TestCa::new("another CA"));
    let h = https_manager(&theirs).await;
    let ca_file = ours.cert.to_str().unwrap();
    let run = h.xmctl(&["--ca-file", ca_file, "user", "list"]).await;
    // 4: the manager could not be reached (the handshake failed).
    run.assert_code(4);
    assert!(run.stderr.contains("UnknownIssuer"), "{run:?}");
    // Without a CA file the built-in web roots do not know the test CA either.
    h.xmctl(&["user", "list"]).await.assert_code(4);
}

#[tokio::test]
async fn a_ca_file_without_a_certificate_is_a_usage_error() {
    let ca = TestCa::new("ca");
    let h = https_manager(&ca).await;
    let not_pem = h.write("ca.pem", "not a certificate");
    let run = h
        .xmctl(&["--ca-file", not_pem.to_str().unwrap(), "status"])
        .await;
    run.assert_code(1);
    assert!(run.stderr.contains("ca.pem"), "{run:?}");
}
