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
            a_versioned_put_never_replaces_a_newer_value,
            a_mark_hides_the_value_and_refuses_older_values,
            a_mark_never_hides_a_value_as_new_or_newer,
            a_plain_value_is_older_than_any_version,
            versioned_writes_at_once_leave_the_newest,
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

/// The value of version `v` in the versioned behaviours.
fn of(v: i64) -> Vec<u8> {
    format!("row-{v}").into_bytes()
}

pub async fn a_versioned_put_never_replaces_a_newer_value(c: &dyn Cache) {
    c.put_versioned("k", of(2), 2, LONG).await.unwrap();
    c.put_versioned("k", of(1), 1, LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(of(2)), "older put refused");
    c.put_versioned("k", b"other".to_vec(), 2, LONG)
        .await
        .unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(of(2)), "same version kept");
    c.put_versioned("k", of(3), 3, LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(of(3)), "newer put stored");
    // Negative and extreme versions order as numbers.
    c.put_versioned("n", of(-5), -5, LONG).await.unwrap();
    c.put_versioned("n", of(-7), -7, LONG).await.unwrap();
    assert_eq!(c.get("n").await.unwrap(), Some(of(-5)));
    c.put_versioned("n", of(i64::MAX), i64::MAX, LONG)
        .await
        .unwrap();
    c.put_versioned("n", of(i64::MAX - 1), i64::MAX - 1, LONG)
        .await
        .unwrap();
    assert_eq!(c.get("n").await.unwrap(), Some(of(i64::MAX)));
}

pub async fn a_mark_hides_the_value_and_refuses_older_values(c: &dyn Cache) {
    c.put_versioned("k", of(5), 5, LONG).await.unwrap();
    c.put("other", b"o".to_vec(), LONG).await.unwrap();
    c.mark_changed("k", 6, LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), None, "a mark is no value");
    assert_eq!(c.get("other").await.unwrap(), Some(b"o".to_vec()));
    // A fill that read the row before the change lands after the mark.
    c.put_versioned("k", of(5), 5, LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), None, "older value refused");
    // A mark on a key never set refuses older values too.
    c.mark_changed("fresh", 9, LONG).await.unwrap();
    c.put_versioned("fresh", of(8), 8, LONG).await.unwrap();
    assert_eq!(c.get("fresh").await.unwrap(), None);
    // The state the mark stands for, and newer ones, are stored.
    c.put_versioned("k", of(6), 6, LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(of(6)));
    c.mark_changed("fresh", 9, LONG).await.unwrap();
    c.put_versioned("fresh", of(10), 10, LONG).await.unwrap();
    assert_eq!(c.get("fresh").await.unwrap(), Some(of(10)));
    // A mark ends with its ttl.
    c.mark_changed("short", 1, SHORT).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        c.put_versioned("short", of(0), 0, LONG).await.unwrap();
        if c.get("short").await.unwrap().is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mark outlived its ttl"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn a_mark_never_hides_a_value_as_new_or_newer(c: &dyn Cache) {
    c.put_versioned("k", of(7), 7, LONG).await.unwrap();
    c.mark_changed("k", 6, LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(of(7)), "older mark");
    c.mark_changed("k", 7, LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(of(7)), "same version");
    c.mark_changed("k", 8, LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), None, "newer mark");
    // Invalidating removes a mark as it removes a value.
    c.invalidate("k").await.unwrap();
    c.put_versioned("k", of(1), 1, LONG).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(of(1)));
}

pub async fn a_plain_value_is_older_than_any_version(c: &dyn Cache) {
    c.put("k", b"plain".to_vec(), LONG).await.unwrap();
    c.put_versioned("k", of(i64::MIN + 1), i64::MIN + 1, LONG)
        .await
        .unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(of(i64::MIN + 1)));
    c.put("j", b"plain".to_vec(), LONG).await.unwrap();
    c.mark_changed("j", 0, LONG).await.unwrap();
    assert_eq!(c.get("j").await.unwrap(), None);
    // A plain put replaces whatever is there, marks included.
    c.put("j", b"again".to_vec(), LONG).await.unwrap();
    assert_eq!(c.get("j").await.unwrap(), Some(b"again".to_vec()));
}

pub async fn versioned_writes_at_once_leave_the_newest(c: &dyn Cache) {
    // Versions 0..200 in a scrambled order, all in flight together, with a
    // mark in the middle: whatever order they land in, the newest wins.
    let versions: Vec<i64> = (0..200).map(|i| (i * 73) % 200).collect();
    let writes = versions.iter().map(|&v| async move {
        if v == 150 {
            c.mark_changed("k", v, LONG).await
        } else {
            c.put_versioned("k", of(v), v, LONG).await
        }
    });
    for done in futures::future::join_all(writes).await {
        done.unwrap();
    }
    assert_eq!(c.get("k").await.unwrap(), Some(of(199)));
    let marks = (0..100).map(|v| c.mark_changed("m", v, LONG));
    let puts = (0..100).map(|v| c.put_versioned("m", of(v), v, LONG));
    let (marks, puts) = futures::future::join(
        futures::future::join_all(marks),
        futures::future::join_all(puts),
    )
    .await;
    for done in marks.into_iter().chain(puts) {
        done.unwrap();
    }
    assert_eq!(
        c.get("m").await.unwrap(),
        Some(of(99)),
        "the value of the newest version beats its mark"
    );
}
