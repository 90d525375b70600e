//! The cache conformance suite against the in-process `MemoryCache`, and its
//! byte budget.

use std::sync::Arc;
use std::time::Duration;

use manager_lib::cache::{Cache, MemoryCache};

fn fresh() -> Arc<dyn Cache> {
    Arc::new(MemoryCache::new())
}

manager_lib::cache_conformance_tests!(fresh());

#[tokio::test]
async fn the_cache_stays_within_its_byte_budget() {
    let budget = 64 * 1024;
    let cache = MemoryCache::with_max_bytes(budget);
    for i in 0..5_000u32 {
        let key = format!("u:{i:08}");
        cache
            .put(&key, vec![7; 100], Duration::from_secs(600))
            .await
            .unwrap();
    }
    assert!(
        cache.weighted_bytes() <= budget,
        "{} bytes held, budget {budget}",
        cache.weighted_bytes()
    );
    assert!(
        cache.entry_count() > 0,
        "a bounded cache still holds entries"
    );
    assert!(
        cache.entry_count() < 5_000,
        "5,000 entries of ~270 bytes cannot fit in 64 KiB"
    );
}

#[tokio::test]
async fn debug_shows_no_values() {
    let cache = MemoryCache::new();
    cache
        .put("u:x", b"secret-value".to_vec(), Duration::from_secs(60))
        .await
        .unwrap();
    let shown = format!("{cache:?}");
    assert!(!shown.contains("secret-value"), "{shown}");
}
