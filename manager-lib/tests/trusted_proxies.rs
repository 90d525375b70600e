//! The client address behind reverse proxies, through the composition root
//! on a real socket: the per-client limits (here the budget of failed admin
//! calls, which refills slowly enough for a test not to race it) read
//! `X-Forwarded-For` only when the TCP peer (here 127.0.0.1) is a trusted
//! proxy, and ignore a forged one from anybody else.

use std::sync::Arc;

use manager_lib::api::client_addr::TrustedProxies;
use std::time::Duration;

use manager_lib::api::admin_auth::FailureLimit;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "proxy-test-token-0123456789abcdefghij";

/// A manager on 127.0.0.1:0 that allows one failed admin call per client
/// (and one more an hour later), trusting `proxies`; its base URL.
async fn start(proxies: &[&str], stop: &CancellationToken) -> String {
    let settings = ServerSettings {
        admin_failure_limit: Some(FailureLimit {
            failures: 1,
            refill_every: Duration::from_secs(3600),
            ..FailureLimit::default()
        }),
        trusted_proxies: TrustedProxies::parse(proxies.iter().copied()).unwrap(),
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
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));
    url
}

/// The status of an admin call with a wrong token and `forwarded` as
/// `X-Forwarded-For`: 401 while the client's budget lasts, then 429.
async fn wrong_token(url: &str, forwarded: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{url}/nodes"))
        .bearer_auth("not-the-token")
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let stop = CancellationToken::new();
    // Trusting a network the peer is not in.
    let url = start(&["10.0.0.0/8"], &stop).await;
    assert_eq!(wrong_token(&url, "198.51.100.1").await, 401);
    // Another claimed client is still 127.0.0.1, whose call is spent.
    assert_eq!(wrong_token(&url, "198.51.100.2").await, 429);
    stop.cancel();
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_each_client_has_its_own_budget() {
    let stop = CancellationToken::new();
    let url = start(&["127.0.0.1", "10.0.0.0/8"], &stop).await;
    assert_eq!(wrong_token(&url, "198.51.100.1").await, 401);
    assert_eq!(wrong_token(&url, "198.51.100.2").await, 401);
    // The right-most untrusted entry counts, whatever the client put left of it.
    assert_eq!(wrong_token(&url, "203.0.113.77, 198.51.100.1").await, 429);
    assert_eq!(
        wrong_token(&url, "198.51.100.1, 198.51.100.3, 10.1.1.1").await,
        401
    );
    assert_eq!(wrong_token(&url, "198.51.100.3").await, 429);
    stop.cancel();
}
