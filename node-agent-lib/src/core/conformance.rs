//! The `CoreApi` conformance suite: one `pub async fn` per behaviour of the
//! contract, each taking a [`CoreFixture`] (a backend over a real core and
//! a way to push real traffic through one of its users). Every backend
//! expands them into named tests with
//! [`core_conformance_tests!`](crate::core_conformance_tests):
//!
//! ```ignore
//! // `fresh()` gives an `Option<F>` (`None`: no core binary, skip) for some
//! // `F: CoreFixture` whose core runs with no users.
//! node_agent_lib::core_conformance_tests!(fresh().await);
//! ```
//!
//! It runs against [`CoreClient`](crate::core::CoreClient) over a real
//! V2Ray and [`SsManagerClient`](crate::core::SsManagerClient) over a real
//! `ss-manager` (node-agent-lib's `tests/core_conformance.rs`), so a third
//! core is a new backend passing it, not a new agent.

use std::time::Duration;

use async_trait::async_trait;

use super::{CoreApi, CoreError, CoreUser};

/// A backend under test over a running core with no users.
#[async_trait]
pub trait CoreFixture: Send + Sync {
    /// The backend.
    fn core(&self) -> &dyn CoreApi;
    /// The tag of an inbound of the core that holds the users added here.
    fn tag(&self) -> &str;
    /// A user this inbound takes, keyed by `email` (a user id), with fresh
    /// credentials.
    fn user(&self, email: &str) -> CoreUser;
    /// GETs `url` through the core as `user` with the core's real client,
    /// on a fresh connection: the body, or why it failed.
    async fn fetch_as(&self, user: &CoreUser, url: &str) -> Result<Vec<u8>, String>;
}

/// Expands into one `#[tokio::test]` per behaviour of the suite, each with a
/// fresh fixture from `$fresh` (an expression, awaited inside the test if it
/// needs to be, giving an `Option<F: CoreFixture>`; `None` skips).
#[macro_export]
macro_rules! core_conformance_tests {
    ($fresh:expr) => {
        $crate::core_conformance_tests!(@each $fresh;
            an_added_user_can_connect,
            adding_an_existing_user_is_user_exists,
            removing_a_missing_user_is_user_not_found,
            a_removed_users_new_connections_fail,
            a_removed_user_can_be_added_again,
            the_count_follows_adds_and_removes,
            the_uptime_answers,
            traffic_is_taken_once_and_matches_the_bytes_moved,
        );
    };
    (@each $fresh:expr; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let ::std::option::Option::Some(fixture) = $fresh else {
                    ::std::eprintln!("skipped: no core available");
                    return;
                };
                $crate::core::conformance::$name(&fixture).await;
            }
        )+
    };
}

/// How long a core may take to let a new user in (or a removed one out),
/// and to report traffic (`ss-server` reports every few seconds).
const PATIENCE: Duration = Duration::from_secs(20);
/// The payload fetched through a user.
const PAYLOAD: usize = 256 * 1024;
/// What a fetch may add to the payload in a core's count: the HTTP request
/// and answer heads, the proxy protocol's framing and AEAD tags.
pub const OVERHEAD: u64 = 16 * 1024;

fn email(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

async fn served() -> (String, tokio::task::JoinHandle<()>) {
    let (addr, server) = xray_core_client::testing::serve_bytes(PAYLOAD).await;
    (format!("http://{addr}/x"), server)
}

/// Polls fetches until one brings the whole payload.
async fn fetches_within_patience(f: &dyn CoreFixture, user: &CoreUser, url: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match f.fetch_as(user, url).await {
            Ok(body) if body.len() == PAYLOAD => return,
            Ok(body) => panic!("fetched {} bytes, not {PAYLOAD}", body.len()),
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("the user never fetched through the core: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub async fn an_added_user_can_connect(f: &dyn CoreFixture) {
    let user = f.user(&email(1));
    f.core().add_user(f.tag(), &user).await.unwrap();
    let (url, _server) = served().await;
    fetches_within_patience(f, &user, &url).await;
}

pub async fn adding_an_existing_user_is_user_exists(f: &dyn CoreFixture) {
    let user = f.user(&email(2));
    f.core().add_user(f.tag(), &user).await.unwrap();
    let again = f.core().add_user(f.tag(), &user).await;
    assert!(
        matches!(&again, Err(CoreError::UserExists { email }) if *email == user.email),
        "{again:?}"
    );
}

pub async fn removing_a_missing_user_is_user_not_found(f: &dyn CoreFixture) {
    let missing = f.core().remove_user(f.tag(), &email(3)).await;
    assert!(
        matches!(&missing, Err(CoreError::UserNotFound { .. })),
        "{missing:?}"
    );
    let user = f.user(&email(4));
    f.core().add_user(f.tag(), &user).await.unwrap();
    f.core().remove_user(f.tag(), &user.email).await.unwrap();
    let twice = f.core().remove_user(f.tag(), &user.email).await;
    assert!(
        matches!(&twice, Err(CoreError::UserNotFound { .. })),
        "{twice:?}"
    );
}

pub async fn a_removed_users_new_connections_fail(f: &dyn CoreFixture) {
    let user = f.user(&email(5));
    f.core().add_user(f.tag(), &user).await.unwrap();
    let (url, _server) = served().await;
    fetches_within_patience(f, &user, &url).await;
    f.core().remove_user(f.tag(), &user.email).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while f.fetch_as(&user, &url).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a removed user still fetches after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn a_removed_user_can_be_added_again(f: &dyn CoreFixture) {
    let user = f.user(&email(6));
    f.core().add_user(f.tag(), &user).await.unwrap();
    f.core().remove_user(f.tag(), &user.email).await.unwrap();
    f.core().add_user(f.tag(), &user).await.unwrap();
    let (url, _server) = served().await;
    fetches_within_patience(f, &user, &url).await;
}

pub async fn the_count_follows_adds_and_removes(f: &dyn CoreFixture) {
    let Some(before) = f.core().users_count(f.tag()).await.unwrap() else {
        return; // this core cannot count (V2Ray 4.34): `None` is the contract
    };
    let users: Vec<CoreUser> = (10..13).map(|n| f.user(&email(n))).collect();
    for user in &users {
        f.core().add_user(f.tag(), user).await.unwrap();
    }
    let count = f.core().users_count(f.tag()).await.unwrap();
    assert_eq!(count, Some(before + 3));
    f.core()
        .remove_user(f.tag(), &users[0].email)
        .await
        .unwrap();
    let count = f.core().users_count(f.tag()).await.unwrap();
    assert_eq!(count, Some(before + 2));
}

pub async fn the_uptime_answers(f: &dyn CoreFixture) {
    let first = f.core().uptime_secs().await.unwrap();
    let second = f.core().uptime_secs().await.unwrap();
    assert!(second >= first, "uptime went back: {first} then {second}");
}

/// Sums the takes for `email` until at least `at_least` came, or panics.
async fn taken_until(f: &dyn CoreFixture, email: &str, at_least: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut total = 0u64;
    loop {
        for (who, up, down) in f.core().take_user_traffic().await.unwrap() {
            assert!(up + down > 0, "a zero entry for {who}");
            if who == email {
                total += up + down;
            }
        }
        if total >= at_least {
            return total;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {total} of {at_least} bytes taken after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn traffic_is_taken_once_and_matches_the_bytes_moved(f: &dyn CoreFixture) {
    let user = f.user(&email(20));
    f.core().add_user(f.tag(), &user).await.unwrap();
    let (url, _server) = served().await;
    fetches_within_patience(f, &user, &url).await;
    // Fetches that failed while the user was coming in moved no payload.
    let mut total = taken_until(f, &user.email, PAYLOAD as u64).await;
    // Once more: a take that counted twice would show here.
    let wait = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < wait {
        for (who, up, down) in f.core().take_user_traffic().await.unwrap() {
            if who == user.email {
                total += up + down;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        total <= PAYLOAD as u64 + OVERHEAD,
        "{total} bytes taken for a {PAYLOAD}-byte fetch"
    );
    // A second fetch is counted as well, from where the first ended.
    fetches_within_patience(f, &user, &url).await;
    let second = taken_until(f, &user.email, PAYLOAD as u64).await;
    assert!(second <= PAYLOAD as u64 + OVERHEAD, "{second}");
}
