//! `CachedStorage`: the whole storage conformance suite through it (local
//! invalidation keeps every answer exact), two replicas sharing one cache,
//! and a failing cache.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use manager_lib::cache::{
    Cache, CacheError, CacheResult, CachedStorage, CachedStorageSettings, MemoryCache,
};
use manager_lib::domain::{
    ActualStatus, NewNode, NewUser, NodeId, RequiredStatus, UserId, UserStatus,
};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::storage::{Entity, Storage, StorageError};
use tokio::sync::oneshot;

/// Ttls that never run out during a test: every fresh answer must come from
/// invalidation, not from expiry.
fn long_ttls() -> CachedStorageSettings {
    CachedStorageSettings {
        user_ttl: Duration::from_secs(600),
        nodes_ttl: Duration::from_secs(600),
    }
}

fn fresh() -> Arc<dyn Storage> {
    Arc::new(CachedStorage::new(
        Arc::new(MemoryStorage::new()),
        Arc::new(MemoryCache::new()),
        long_ttls(),
    ))
}

mod conformance {
    use super::fresh;
    manager_lib::storage_conformance_tests!(fresh());
}

/// Two replicas over one storage and one shared cache.
fn replicas(settings: CachedStorageSettings) -> (Arc<CachedStorage>, Arc<CachedStorage>) {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new());
    let a = CachedStorage::new(storage.clone(), cache.clone(), settings.clone());
    let b = CachedStorage::new(storage, cache, settings);
    (Arc::new(a), Arc::new(b))
}

/// A running node with a template and an enabled user it has applied.
async fn serving_node_with_user(s: &dyn Storage) -> (NodeId, UserId) {
    let n = s
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    s.set_required_status(n.id, RequiredStatus::Running)
        .await
        .unwrap();
    let plan = s.begin_start(n.id).await.unwrap();
    s.finish_start(n.id, plan.seq, "vless://{{.UserID}}@host")
        .await
        .unwrap();
    let u = s
        .create_user(NewUser::new("alice").unwrap())
        .await
        .unwrap()
        .id;
    let enabled = s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    s.ack_operations(n.id, enabled.change_seq).await.unwrap();
    (n.id, u)
}

async fn node_ids(s: &dyn Storage, u: UserId) -> Vec<NodeId> {
    let got = s.user_nodes(u).await.unwrap();
    got.nodes.into_iter().map(|n| n.id).collect()
}

#[tokio::test]
async fn a_user_disabled_through_one_replica_is_off_the_list_on_another_at_once() {
    let (a, b) = replicas(long_ttls());
    let (n, u) = serving_node_with_user(a.as_ref()).await;
    assert_eq!(node_ids(b.as_ref(), u).await, vec![n]);
    assert_eq!(node_ids(b.as_ref(), u).await, vec![n]);
    assert!(b.stats().hits >= 1, "the second read is a cache hit");

    a.set_user_status(u, UserStatus::Disabled).await.unwrap();
    let got = b.user_nodes(u).await.unwrap();
    assert_eq!(got.user.status, UserStatus::Disabled);
    assert!(got.nodes.is_empty());
}

#[tokio::test]
async fn a_user_deleted_through_one_replica_is_not_found_on_another_at_once() {
    let (a, b) = replicas(long_ttls());
    let (n, u) = serving_node_with_user(a.as_ref()).await;
    assert_eq!(node_ids(b.as_ref(), u).await, vec![n]);
    a.delete_user(u).await.unwrap();
    match b.user_nodes(u).await {
        Err(StorageError::NotFound(Entity::User)) => {}
        other => panic!("expected user not found, got {other:?}"),
    }
}

#[tokio::test]
async fn a_node_change_through_one_replica_shows_on_another_within_nodes_ttl() {
    let (a, b) = replicas(CachedStorageSettings {
        user_ttl: Duration::from_secs(600),
        nodes_ttl: Duration::from_millis(200),
    });
    let (n, u) = serving_node_with_user(a.as_ref()).await;
    assert_eq!(node_ids(b.as_ref(), u).await, vec![n]);

    a.record_observation(n, ActualStatus::Error).await.unwrap();
    // Through the replica that wrote it: at once.
    assert!(node_ids(a.as_ref(), u).await.is_empty());
    // Through the other one: once its node set is older than nodes_ttl.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !node_ids(b.as_ref(), u).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other replica never saw the node leave"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_node_set_read_and_one_user_read() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let (n, u) = serving_node_with_user(storage.as_ref()).await;
    let cached = Arc::new(CachedStorage::new(
        storage,
        Arc::new(MemoryCache::new()),
        long_ttls(),
    ));
    let calls = (0..50).map(|_| {
        let cached = cached.clone();
        tokio::spawn(async move { node_ids(cached.as_ref(), u).await })
    });
    for got in futures::future::join_all(calls).await {
        assert_eq!(got.unwrap(), vec![n]);
    }
    let stats = cached.stats();
    assert_eq!(stats.node_refreshes, 1, "{stats:?}");
    assert_eq!(stats.hits + stats.misses, 50, "{stats:?}");
    // Later calls are all hits.
    for _ in 0..10 {
        assert_eq!(node_ids(cached.as_ref(), u).await, vec![n]);
    }
    let later = cached.stats();
    assert_eq!(later.hits, stats.hits + 10);
    assert_eq!(later.misses, stats.misses);
    assert_eq!(later.node_refreshes, 1);
}

/// A cache whose every call fails, as a cache server that is down.
#[derive(Debug)]
struct DownCache;

#[async_trait]
impl Cache for DownCache {
    async fn get(&self, _: &str) -> CacheResult<Option<Vec<u8>>> {
        Err(CacheError::Unavailable("connection refused".into()))
    }
    async fn put(&self, _: &str, _: Vec<u8>, _: Duration) -> CacheResult<()> {
        Err(CacheError::Unavailable("connection refused".into()))
    }
    async fn invalidate(&self, _: &str) -> CacheResult<()> {
        Err(CacheError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn a_failing_cache_is_answered_from_storage() {
    let cached = CachedStorage::new(
        Arc::new(MemoryStorage::new()),
        Arc::new(DownCache),
        long_ttls(),
    );
    let (n, u) = serving_node_with_user(&cached).await;
    assert_eq!(node_ids(&cached, u).await, vec![n]);
    cached
        .set_user_status(u, UserStatus::Disabled)
        .await
        .unwrap();
    assert!(node_ids(&cached, u).await.is_empty());
    let stats = cached.stats();
    assert_eq!(stats.hits, 0);
    assert_eq!(stats.misses, 2);
    assert!(stats.errors >= 3, "{stats:?}");
}

/// A shared cache whose next `put` is held until the test lets it go, to
/// force a read that races with a write.
#[derive(Debug, Default)]
struct GatedCache {
    inner: MemoryCache,
    gate: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

#[async_trait]
impl Cache for GatedCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> CacheResult<()> {
        let gate = self.gate.lock().unwrap().take();
        if let Some((arrived, release)) = gate {
            arrived.send(()).unwrap();
            release.await.unwrap();
        }
        self.inner.put(key, value, ttl).await
    }
    async fn invalidate(&self, key: &str) -> CacheResult<()> {
        self.inner.invalidate(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_read_before_a_local_write_does_not_stay_cached() {
    let cache = Arc::new(GatedCache::default());
    let cached = Arc::new(CachedStorage::new(
        Arc::new(MemoryStorage::new()),
        cache.clone(),
        long_ttls(),
    ));
    let (n, u) = serving_node_with_user(cached.as_ref()).await;
    let (arrived_tx, arrived_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel();
    *cache.gate.lock().unwrap() = Some((arrived_tx, release_rx));

    // A reader read the enabled row and is about to cache it...
    let reader = tokio::spawn({
        let cached = cached.clone();
        async move { node_ids(cached.as_ref(), u).await }
    });
    arrived_rx.await.unwrap();
    // ...when the user is disabled; then its put lands.
    cached
        .set_user_status(u, UserStatus::Disabled)
        .await
        .unwrap();
    release_tx.send(()).unwrap();
    assert_eq!(reader.await.unwrap(), vec![n], "answered as read");

    let got = cached.user_nodes(u).await.unwrap();
    assert_eq!(got.user.status, UserStatus::Disabled, "stale row was kept");
    assert!(got.nodes.is_empty());
}

#[tokio::test]
async fn debug_never_shows_the_user_secret() {
    let cached = CachedStorage::new(
        Arc::new(MemoryStorage::new()),
        Arc::new(MemoryCache::new()),
        long_ttls(),
    );
    let (_, u) = serving_node_with_user(&cached).await;
    let got = cached.user_nodes(u).await.unwrap();
    let shown = format!("{cached:?} {got:?}");
    assert!(!shown.contains(got.user.secret.expose()), "{shown}");
}
