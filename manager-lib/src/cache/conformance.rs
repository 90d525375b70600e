//! The `Cache` conformance suite: one `pub async fn` per behaviour of the
//! contract, each taking `&dyn Cache`. Every backend expands them into named
//! tests with [`cache_conformance_tests!`](crate::cache_conformance_tests):
//!
//! ```ignore
//! // `fresh()` gives a new cache (or a fresh namespace of a shared one) as
//! // some `F: AsRef<dyn Cache>`.
//! manager_lib::cache_conformance_tests!(fresh().await);
//! // When the backend may be missing (no server outside CI): an
//! // `Option<F>`, `None` skipping the test.
//! manager_lib::cache_conformance_tests!(optional fresh().await);
//! ```

use std::time::Duration;

use super::Cache;

/// Expands into one `#[tokio::test]` per behaviour of the suite, each with a
/// fresh cache from `$fresh` (an expression, awaited inside the test, giving
/// a value `F: AsRef<dyn Cache>` that lives until the test ends). With
/// `optional`, the expression gives an `Option<F>` and `None` skips the test.
#[macro_export]
macro_rules! cache_conformance_tests {
    (optional $fresh:expr) => {
        $crate::cache_conformance_tests!(@each [optional] $fresh;
            missing_key_is_none,
            put_then_get_returns_the_value,
            invalidate_removes_the_key,
            invalidating_a_missing_key_succeeds,
            entries_expire_after_their_ttl,
            zero_ttl_stores_nothing,
            overwrite_replaces_the_value_and_the_ttl,
            binary_values_round_trip,
            keys_are_distinct,
        );
    };
    ($fresh:expr) => {
        $crate::cache_conformance_tests!(optional ::std::option::Option::Some($fresh));
    };
    (@each [optional] $fresh:expr; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let ::std::option::Option::Some(fixture) = $fresh else {
                    ::std::eprintln!("skipped: no cache backend available");
                    return;
                };
                let cache: &dyn $crate::cache::Cache = ::std::convert::AsRef::as_ref(&fixture);
                $crate::cache::conformance::$name(cache).await;
            }
        )+
    };
}

/// Long enough never to run out during a test.
const LONG: Duration = Duration::from_secs(600);
/// Short enough to wait for.
const SHORT: Duration = Duration::from_millis(200);

/// Polls until `key` is gone, for at most ten seconds.
async fn wait_until_gone(c: &dyn Cache, key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if c.get(key).await.expect("get").is_none() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key:?} outlived its ttl"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn missing_key_is_none(c: &dyn Cache) {
    assert_eq!(c.get("never-set").await.unwrap(), None);
}

pub async fn put_then_get_returns_the_value(c: &dyn Cache) {
    c.put("k", b"value".to_vec(), LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(b"value".to_vec()));
    // Reading does not consume it.
    assert_eq!(c.get("k").await.unwrap(), Some(b"value".to_vec()));
}

pub async fn invalidate_removes_the_key(c: &dyn Cache) {
    c.put("k", b"v".to_vec(), LONG).await.unwrap();
    c.put("other", b"o".to_vec(), LONG).await.unwrap();
    c.invalidate("k").await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), None);
    assert_eq!(c.get("other").await.unwrap(), Some(b"o".to_vec()));
    // A key can be set again after it was invalidated.
    c.put("k", b"v2".to_vec(), LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(b"v2".to_vec()));
}

pub async fn invalidating_a_missing_key_succeeds(c: &dyn Cache) {
    c.invalidate("never-set").await.unwrap();
    c.invalidate("never-set").await.unwrap();
    assert_eq!(c.get("never-set").await.unwrap(), None);
}

pub async fn entries_expire_after_their_ttl(c: &dyn Cache) {
    c.put("short", b"s".to_vec(), SHORT).await.unwrap();
    c.put("long", b"l".to_vec(), LONG).await.unwrap();
    wait_until_gone(c, "short").await;
    assert_eq!(
        c.get("long").await.unwrap(),
        Some(b"l".to_vec()),
        "each entry has its own ttl"
    );
}

pub async fn zero_ttl_stores_nothing(c: &dyn Cache) {
    c.put("k", b"old".to_vec(), LONG).await.unwrap();
    c.put("k", b"new".to_vec(), Duration::ZERO).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), None);
}

pub async fn overwrite_replaces_the_value_and_the_ttl(c: &dyn Cache) {
    c.put("k", b"one".to_vec(), LONG).await.unwrap();
    c.put("k", b"two".to_vec(), LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(b"two".to_vec()));
    // The newest put's ttl counts, not the first one's.
    c.put("k", b"three".to_vec(), SHORT).await.unwrap();
    wait_until_gone(c, "k").await;
    c.put("j", b"one".to_vec(), SHORT).await.unwrap();
    // Put after j's first put with the same ttl: once it is gone, j's first
    // deadline has passed too.
    c.put("marker", b"m".to_vec(), SHORT).await.unwrap();
    c.put("j", b"two".to_vec(), LONG).await.unwrap();
    wait_until_gone(c, "marker").await;
    assert_eq!(c.get("j").await.unwrap(), Some(b"two".to_vec()));
}

pub async fn binary_values_round_trip(c: &dyn Cache) {
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let large: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let cases = [
        ("every-byte", every_byte),
        ("empty", Vec::new()),
        ("nul", vec![0, 0, 0]),
        ("large", large),
    ];
    for (key, value) in &cases {
        c.put(key, value.clone(), LONG).await.unwrap();
    }
    for (key, value) in &cases {
        assert_eq!(c.get(key).await.unwrap().as_ref(), Some(value), "{key}");
    }
}

pub async fn keys_are_distinct(c: &dyn Cache) {
    let keys = ["a", "a:", "A", "u:1", "u:10", "ключ-🚀", "with space"];
    for (i, key) in keys.iter().enumerate() {
        c.put(key, vec![i as u8], LONG).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(c.get(key).await.unwrap(), Some(vec![i as u8]), "{key}");
    }
    c.invalidate("a").await.unwrap();
    assert_eq!(c.get("a").await.unwrap(), None);
    assert_eq!(c.get("a:").await.unwrap(), Some(vec![1]));
}
