//! `CachedStorage`: the whole storage conformance suite through it (local
//! invalidation keeps every answer exact), two replicas sharing one cache,
//! and a failing cache.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use manager_lib::cache::{
    Cache, CacheError, CacheResult, CachedStorage, CachedStorageSettings, MemoryCache,
};
use manager_lib::domain::{
    ActualStatus, FleetState, NewNode, NewUser, Node, NodeId, Page, PageRequest, PendingBatch,
    RequiredStatus, Seq, ServingNode, StartPlan, SubscriptionKey, User, UserId, UserNodes,
    UserStatus,
};
use manager_lib::seal::{MasterKey, Sealer};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::storage::{Entity, Storage, StorageError, StorageResult};
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

/// The decorator sealing what it caches, over a cache that is not
/// process-local (as Redis): rows are written and read back sealed.
fn fresh_sealed_shared() -> Arc<dyn Storage> {
    Arc::new(
        CachedStorage::new(
            Arc::new(MemoryStorage::new()),
            Arc::new(Recording::new(false)),
            long_ttls(),
        )
        .with_sealer(Sealer::new(MasterKey::random(), Vec::new())),
    )
}

mod conformance_sealed_in_a_shared_cache {
    use super::fresh_sealed_shared;
    manager_lib::storage_conformance_tests!(fresh_sealed_shared());
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
    s.finish_start(n.id, plan.seq, "vless://{{.UserID}}@host", &[])
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

/// The port `u` dials on the one inbound of the node `u`'s list holds,
/// through `s`.
async fn port_of(s: &dyn Storage, u: UserId) -> u16 {
    let got = s.user_nodes(u).await.unwrap();
    let [node] = &got.nodes[..] else {
        panic!("one node: {:?}", got.nodes);
    };
    node.served[0].inbound.port_for(&u.to_string())
}

#[tokio::test]
async fn a_users_port_noted_through_one_replica_shows_on_another_within_nodes_ttl() {
    use manager_lib::domain::profile::{InboundDescription, InboundProtocol};
    let (a, b) = replicas(CachedStorageSettings {
        user_ttl: Duration::from_secs(600),
        nodes_ttl: Duration::from_millis(200),
    });
    // An ss-manager node: one inbound, a port per user.
    let n = a
        .create_node(NewNode::new("http://10.0.0.1:80").unwrap())
        .await
        .unwrap();
    a.set_required_status(n.id, RequiredStatus::Running)
        .await
        .unwrap();
    let mut ss = InboundDescription::new("ss-manager", InboundProtocol::Shadowsocks, 20000);
    ss.port_range = Some("20000-20009".parse().unwrap());
    let plan = a.begin_start(n.id).await.unwrap();
    a.finish_start(n.id, plan.seq, "ss://{{.Secret}}@host", &[ss.clone()])
        .await
        .unwrap();
    let u = a
        .create_user(NewUser::new("alice").unwrap())
        .await
        .unwrap()
        .id;
    let enabled = a.set_user_status(u, UserStatus::Enabled).await.unwrap();
    a.ack_operations(n.id, enabled.change_seq).await.unwrap();
    let home = port_of(b.as_ref(), u).await;
    assert_eq!(home, ss.port_for(&u.to_string()));

    // The agent moved the user (a collision, a port held by another
    // process); replica a learns it from the agent's answer.
    let moved = if home == 20009 { 20000 } else { home + 1 };
    a.note_user_ports(n.id, &BTreeMap::from([(u.to_string(), moved)]))
        .await
        .unwrap();
    assert_eq!(port_of(a.as_ref(), u).await, moved, "at once where noted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while port_of(b.as_ref(), u).await != moved {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other replica never showed the user's new port"
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
    async fn put_versioned(&self, _: &str, _: Vec<u8>, _: i64, _: Duration) -> CacheResult<()> {
        Err(CacheError::Unavailable("connection refused".into()))
    }
    async fn mark_changed(&self, _: &str, _: i64, _: Duration) -> CacheResult<()> {
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

/// A shared cache whose next fill (`put_versioned`) is held until the test
/// lets it go, to force a read that races with a write.
#[derive(Debug, Default)]
struct GatedCache {
    inner: MemoryCache,
    gate: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl GatedCache {
    /// Holds the next fill: the first channel says it arrived, the second
    /// lets it go.
    fn hold_next_fill(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (arrived_tx, arrived_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.gate.lock().unwrap() = Some((arrived_tx, release_rx));
        (arrived_rx, release_tx)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Cache for GatedCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> CacheResult<()> {
        self.inner.put(key, value, ttl).await
    }
    async fn invalidate(&self, key: &str) -> CacheResult<()> {
        self.inner.invalidate(key).await
    }
    async fn put_versioned(
        &self,
        key: &str,
        value: Vec<u8>,
        version: i64,
        ttl: Duration,
    ) -> CacheResult<()> {
        let gate = self.gate.lock().unwrap().take();
        if let Some((arrived, release)) = gate {
            arrived.send(()).unwrap();
            release.await.unwrap();
        }
        self.inner.put_versioned(key, value, version, ttl).await
    }
    async fn mark_changed(&self, key: &str, version: i64, ttl: Duration) -> CacheResult<()> {
        self.inner.mark_changed(key, version, ttl).await
    }
    fn is_process_local(&self) -> bool {
        self.inner.is_process_local()
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
    let (arrived_rx, release_tx) = cache.hold_next_fill();

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

/// A [`MemoryCache`] that says whether it is process-local as told, and
/// keeps a copy of every value put in it.
#[derive(Debug)]
struct Recording {
    inner: MemoryCache,
    local: bool,
    values: Mutex<Vec<Vec<u8>>>,
}

impl Recording {
    fn new(local: bool) -> Self {
        Self {
            inner: MemoryCache::new(),
            local,
            values: Mutex::default(),
        }
    }

    fn values(&self) -> Vec<Vec<u8>> {
        self.values.lock().unwrap().clone()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Cache for Recording {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> CacheResult<()> {
        self.values.lock().unwrap().push(value.clone());
        self.inner.put(key, value, ttl).await
    }
    async fn invalidate(&self, key: &str) -> CacheResult<()> {
        self.inner.invalidate(key).await
    }
    async fn put_versioned(
        &self,
        key: &str,
        value: Vec<u8>,
        version: i64,
        ttl: Duration,
    ) -> CacheResult<()> {
        self.values.lock().unwrap().push(value.clone());
        self.inner.put_versioned(key, value, version, ttl).await
    }
    async fn mark_changed(&self, key: &str, version: i64, ttl: Duration) -> CacheResult<()> {
        self.inner.mark_changed(key, version, ttl).await
    }
    fn is_process_local(&self) -> bool {
        self.local
    }
}

fn holds(value: &[u8], part: &[u8]) -> bool {
    value.windows(part.len()).any(|w| w == part)
}

/// Caches a serving user's row with secrets sealed by a new master key, and
/// reads it back from the cache: what the cache was given, and the user.
async fn cache_a_sealed_user(cache: Arc<Recording>) -> (Vec<Vec<u8>>, User, String) {
    let seal = Sealer::new(MasterKey::random(), Vec::new());
    let prefix = seal.current_prefix().unwrap();
    let storage = Arc::new(MemoryStorage::new());
    let cached = CachedStorage::new(storage.clone(), cache.clone(), long_ttls()).with_sealer(seal);
    let (_, u) = serving_node_with_user(&cached).await;
    let user = storage.get_user(u).await.unwrap();
    for _ in 0..2 {
        let got = cached.user_nodes(u).await.unwrap();
        assert_eq!(got.user.secret, user.secret, "read back whole");
        assert!(got.user.subscription_key.matches(&user.subscription_key));
    }
    assert_eq!(cached.stats().hits, 1, "{:?}", cached.stats());
    (cache.values(), user, prefix)
}

#[tokio::test]
async fn a_cache_that_is_not_process_local_gets_secrets_sealed_only() {
    let (values, user, prefix) = cache_a_sealed_user(Arc::new(Recording::new(false))).await;
    let key_hex = user.subscription_key.to_hex();
    let token = user.subscription_key.token(user.id);
    for value in &values {
        for clear in [
            user.secret.expose().as_bytes(),
            user.subscription_key.as_bytes().as_slice(),
            key_hex.as_bytes(),
            token.expose().as_bytes(),
        ] {
            assert!(
                !holds(value, clear),
                "a cached value holds a secret in clear"
            );
        }
    }
    let sealed = values.iter().filter(|v| holds(v, prefix.as_bytes()));
    assert_eq!(sealed.count(), 1, "the user's row is cached, sealed");
}

#[tokio::test]
async fn a_process_local_cache_holds_secrets_as_the_process_does() {
    let (values, user, prefix) = cache_a_sealed_user(Arc::new(Recording::new(true))).await;
    assert!(values.iter().all(|v| !holds(v, prefix.as_bytes())));
    let rows: Vec<_> = values
        .iter()
        .filter(|v| holds(v, user.secret.expose().as_bytes()))
        .collect();
    assert_eq!(rows.len(), 1, "the user's row is cached as it is");
    assert!(holds(rows[0], user.subscription_key.as_bytes()));
}

/// Two replicas over one storage and one gated cache (whose next fill a
/// test can hold).
fn gated_replicas() -> (Arc<GatedCache>, Arc<CachedStorage>, Arc<CachedStorage>) {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let cache = Arc::new(GatedCache::default());
    let a = CachedStorage::new(storage.clone(), cache.clone(), long_ttls());
    let b = CachedStorage::new(storage, cache.clone(), long_ttls());
    (cache, Arc::new(a), Arc::new(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_read_before_another_replicas_write_is_refused_by_its_mark() {
    let (cache, a, b) = gated_replicas();
    let (n, u) = serving_node_with_user(a.as_ref()).await;
    let (arrived_rx, release_tx) = cache.hold_next_fill();

    // Replica b read the enabled row and is about to cache it...
    let reader = tokio::spawn({
        let b = b.clone();
        async move { node_ids(b.as_ref(), u).await }
    });
    arrived_rx.await.unwrap();
    // ...when replica a disables the user; then b's put lands. b's own
    // epoch saw nothing: only the mark a left can refuse the old row.
    a.set_user_status(u, UserStatus::Disabled).await.unwrap();
    release_tx.send(()).unwrap();
    assert_eq!(reader.await.unwrap(), vec![n], "answered as read");

    for replica in [&a, &b] {
        let got = replica.user_nodes(u).await.unwrap();
        assert_eq!(got.user.status, UserStatus::Disabled, "stale row was kept");
        assert!(got.nodes.is_empty());
    }
    // The newer row is cached and shared.
    let hits = b.stats().hits;
    assert!(node_ids(b.as_ref(), u).await.is_empty());
    assert_eq!(b.stats().hits, hits + 1, "{:?}", b.stats());
}

#[tokio::test]
async fn a_rotated_subscription_key_shows_on_another_replica_at_once() {
    let (a, b) = replicas(long_ttls());
    let (n, u) = serving_node_with_user(a.as_ref()).await;
    let old = b.user_nodes(u).await.unwrap().user.subscription_key;
    assert_eq!(node_ids(b.as_ref(), u).await, vec![n], "cached on b");
    let new = SubscriptionKey::random();
    a.set_subscription_key(u, new).await.unwrap();
    for replica in [&a, &b] {
        let got = replica.user_nodes(u).await.unwrap();
        assert!(got.user.subscription_key.matches(&new));
        assert!(!got.user.subscription_key.matches(&old));
        assert_eq!(got.nodes.len(), 1, "the user stays on the node");
    }
}

#[tokio::test]
async fn a_row_read_before_another_replicas_rotation_is_refused() {
    let (cache, a, b) = gated_replicas();
    let (_, u) = serving_node_with_user(a.as_ref()).await;
    let (arrived_rx, release_tx) = cache.hold_next_fill();
    // Replica b read the row with the old key and is about to cache it...
    let reader = tokio::spawn({
        let b = b.clone();
        async move { b.user_nodes(u).await.unwrap().user.subscription_key }
    });
    arrived_rx.await.unwrap();
    // ...when replica a rotates the key (no change number); then b's put
    // lands. Only a's mark can refuse the old row.
    let new = SubscriptionKey::random();
    a.set_subscription_key(u, new).await.unwrap();
    release_tx.send(()).unwrap();
    assert!(!reader.await.unwrap().matches(&new), "answered as read");
    for replica in [&a, &b] {
        let got = replica.user_nodes(u).await.unwrap();
        assert!(
            got.user.subscription_key.matches(&new),
            "stale row was kept"
        );
    }
}

/// A replica's view of a shared cache in which its own marks and
/// invalidations fail (a write whose cache call was lost), the rest working.
#[derive(Debug)]
struct LosesWrites(Arc<dyn Cache>);

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Cache for LosesWrites {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.0.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> CacheResult<()> {
        self.0.put(key, value, ttl).await
    }
    async fn invalidate(&self, _: &str) -> CacheResult<()> {
        Err(CacheError::Unavailable("connection reset".into()))
    }
    async fn put_versioned(
        &self,
        key: &str,
        value: Vec<u8>,
        version: i64,
        ttl: Duration,
    ) -> CacheResult<()> {
        self.0.put_versioned(key, value, version, ttl).await
    }
    async fn mark_changed(&self, _: &str, _: i64, _: Duration) -> CacheResult<()> {
        Err(CacheError::Unavailable("connection reset".into()))
    }
    fn is_process_local(&self) -> bool {
        self.0.is_process_local()
    }
}

#[tokio::test]
async fn a_change_whose_mark_was_lost_shows_on_another_replica_within_nodes_ttl() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let shared: Arc<dyn Cache> = Arc::new(MemoryCache::new());
    let settings = CachedStorageSettings {
        user_ttl: Duration::from_secs(600),
        nodes_ttl: Duration::from_millis(200),
    };
    let b = CachedStorage::new(storage.clone(), shared.clone(), settings.clone());
    let (n, u) = serving_node_with_user(&b).await;
    assert_eq!(node_ids(&b, u).await, vec![n]);
    assert_eq!(node_ids(&b, u).await, vec![n]);
    assert!(b.stats().hits >= 1, "cached: {:?}", b.stats());

    let a = CachedStorage::new(storage, Arc::new(LosesWrites(shared)), settings);
    a.set_user_status(u, UserStatus::Disabled).await.unwrap();
    assert!(a.stats().errors >= 1, "the mark failed: {:?}", a.stats());
    // b's follower reads the change from the feed and marks it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !node_ids(&b, u).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stale row outlived nodes_ttl: {:?}",
            b.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = b.user_nodes(u).await.unwrap();
    assert_eq!(got.user.status, UserStatus::Disabled);
}

#[tokio::test]
async fn a_replica_over_a_restored_database_never_reads_rows_cached_after_the_backup() {
    let shared: Arc<dyn Cache> = Arc::new(MemoryCache::new());
    let alice = NewUser::new("alice").unwrap();
    // The backup: alice enabled.
    let backup = MemoryStorage::new();
    backup.create_user(alice.clone()).await.unwrap();
    backup
        .set_user_status(alice.id, UserStatus::Enabled)
        .await
        .unwrap();
    // The live database went on: alice disabled, enabled, disabled.
    let live = MemoryStorage::new();
    live.create_user(alice.clone()).await.unwrap();
    for status in [
        UserStatus::Enabled,
        UserStatus::Disabled,
        UserStatus::Enabled,
        UserStatus::Disabled,
    ] {
        live.set_user_status(alice.id, status).await.unwrap();
    }
    let before = CachedStorage::new(Arc::new(live), shared.clone(), long_ttls());
    for _ in 0..2 {
        let got = before.user_nodes(alice.id).await.unwrap();
        assert_eq!(got.user.status, UserStatus::Disabled);
    }
    assert_eq!(before.stats().hits, 1, "cached: {:?}", before.stats());

    // The backup restored, a replica starts on it with the same cache.
    let after = CachedStorage::new(Arc::new(backup), shared, long_ttls());
    let got = after.user_nodes(alice.id).await.unwrap();
    assert_eq!(
        got.user.status,
        UserStatus::Enabled,
        "a row from the future"
    );
    assert_eq!(after.stats().hits, 0, "{:?}", after.stats());
}

// ---- unknown ids (the node-list call must not tell them from known ones) ----

/// Memory storage that counts the user-row reads reaching it.
#[derive(Debug, Default)]
struct CountingStorage {
    inner: MemoryStorage,
    user_reads: std::sync::atomic::AtomicU64,
}

impl CountingStorage {
    fn user_reads(&self) -> u64 {
        self.user_reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

manager_lib::forward_access_store!(CountingStorage, inner);
manager_lib::forward_user_directory!(CountingStorage, inner);
manager_lib::forward_node_event_log!(CountingStorage, inner);
manager_lib::forward_webhook_store!(CountingStorage, inner);
manager_lib::forward_key_rotation_store!(CountingStorage, inner);
manager_lib::forward_notifying_store!(CountingStorage, inner);

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Storage for CountingStorage {
    async fn create_node(&self, n: NewNode) -> StorageResult<Node> {
        self.inner.create_node(n).await
    }
    async fn get_node(&self, id: NodeId) -> StorageResult<Node> {
        self.inner.get_node(id).await
    }
    async fn find_node_by_endpoint(&self, e: &str) -> StorageResult<Option<Node>> {
        self.inner.find_node_by_endpoint(e).await
    }
    async fn list_nodes(&self, p: &PageRequest) -> StorageResult<Page<Node>> {
        self.inner.list_nodes(p).await
    }
    async fn delete_node(&self, id: NodeId) -> StorageResult<()> {
        self.inner.delete_node(id).await
    }
    async fn set_required_status(&self, id: NodeId, s: RequiredStatus) -> StorageResult<Node> {
        self.inner.set_required_status(id, s).await
    }
    async fn begin_start(&self, id: NodeId) -> StorageResult<StartPlan> {
        self.inner.begin_start(id).await
    }
    async fn finish_start(
        &self,
        id: NodeId,
        seq: Seq,
        t: &str,
        inbounds: &[manager_lib::domain::InboundDescription],
    ) -> StorageResult<()> {
        self.inner.finish_start(id, seq, t, inbounds).await
    }
    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node> {
        self.inner.begin_stop(id).await
    }
    async fn finish_stop(&self, id: NodeId) -> StorageResult<()> {
        self.inner.finish_stop(id).await
    }
    async fn record_observation(&self, id: NodeId, a: ActualStatus) -> StorageResult<()> {
        self.inner.record_observation(id, a).await
    }
    async fn create_user(&self, u: NewUser) -> StorageResult<User> {
        self.inner.create_user(u).await
    }
    async fn get_user(&self, id: UserId) -> StorageResult<User> {
        self.user_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get_user(id).await
    }
    async fn list_users(&self, p: &PageRequest) -> StorageResult<Page<User>> {
        self.inner.list_users(p).await
    }
    async fn set_user_status(&self, id: UserId, s: UserStatus) -> StorageResult<User> {
        self.inner.set_user_status(id, s).await
    }
    async fn delete_user(&self, id: UserId) -> StorageResult<()> {
        self.inner.delete_user(id).await
    }
    async fn user_nodes(&self, id: UserId) -> StorageResult<UserNodes> {
        self.user_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.user_nodes(id).await
    }
    async fn user_nodes_with_usage(
        &self,
        id: UserId,
        max_age: std::time::Duration,
    ) -> StorageResult<UserNodes> {
        self.user_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.user_nodes_with_usage(id, max_age).await
    }
    async fn pending_operations(&self, id: NodeId, l: u32) -> StorageResult<PendingBatch> {
        self.inner.pending_operations(id, l).await
    }
    async fn changes_after(&self, after: Seq, l: u32) -> StorageResult<PendingBatch> {
        self.inner.changes_after(after, l).await
    }
    async fn ack_operations(&self, id: NodeId, s: Seq) -> StorageResult<()> {
        self.inner.ack_operations(id, s).await
    }
    async fn ack_operations_many(&self, acks: &[(NodeId, Seq)]) -> StorageResult<()> {
        self.inner.ack_operations_many(acks).await
    }
    async fn fleet_state(&self) -> StorageResult<FleetState> {
        self.inner.fleet_state().await
    }
    async fn purge_tombstones(&self) -> StorageResult<u64> {
        self.inner.purge_tombstones().await
    }
    async fn ingest_usage(
        &self,
        node: manager_lib::domain::NodeId,
        pulled_with: &manager_lib::domain::usage::UsageCursor,
        page: &manager_lib::domain::usage::UsagePage,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::usage::IngestOutcome> {
        self.inner.ingest_usage(node, pulled_with, page, now).await
    }
    async fn edit_user_plan(
        &self,
        id: manager_lib::domain::UserId,
        edit: manager_lib::domain::PlanEdit,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::User> {
        self.inner.edit_user_plan(id, edit, now).await
    }
    async fn reset_user_usage(
        &self,
        id: manager_lib::domain::UserId,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::User> {
        self.inner.reset_user_usage(id, now).await
    }
    async fn enforce_time(
        &self,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::usage::EnforceOutcome> {
        self.inner.enforce_time(now).await
    }
    async fn note_user_ports(
        &self,
        id: manager_lib::domain::NodeId,
        ports: &std::collections::BTreeMap<String, u16>,
    ) -> StorageResult<()> {
        self.inner.note_user_ports(id, ports).await
    }
    async fn set_node_profile(
        &self,
        id: manager_lib::domain::NodeId,
        profile: &manager_lib::domain::NodeProfile,
    ) -> StorageResult<manager_lib::domain::Node> {
        self.inner.set_node_profile(id, profile).await
    }
    async fn set_subscription_key(
        &self,
        id: manager_lib::domain::UserId,
        key: manager_lib::domain::SubscriptionKey,
    ) -> StorageResult<manager_lib::domain::User> {
        self.inner.set_subscription_key(id, key).await
    }
    async fn set_device_limit(
        &self,
        id: manager_lib::domain::UserId,
        limit: Option<u32>,
    ) -> StorageResult<manager_lib::domain::User> {
        self.inner.set_device_limit(id, limit).await
    }
    async fn record_device(
        &self,
        id: manager_lib::domain::UserId,
        sighting: &manager_lib::domain::DeviceSighting,
        limit: u32,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::DeviceVerdict> {
        self.inner.record_device(id, sighting, limit, now).await
    }
    async fn list_devices(
        &self,
        id: manager_lib::domain::UserId,
    ) -> StorageResult<Vec<manager_lib::domain::Device>> {
        self.inner.list_devices(id).await
    }
    async fn delete_device(
        &self,
        id: manager_lib::domain::UserId,
        hwid: &str,
    ) -> StorageResult<()> {
        self.inner.delete_device(id, hwid).await
    }
    async fn set_node_multiplier(
        &self,
        id: manager_lib::domain::NodeId,
        multiplier: f64,
    ) -> StorageResult<manager_lib::domain::Node> {
        self.inner.set_node_multiplier(id, multiplier).await
    }
    async fn user_usage(
        &self,
        id: manager_lib::domain::UserId,
        from: manager_lib::domain::Timestamp,
        to: manager_lib::domain::Timestamp,
        group: manager_lib::domain::usage::UsageGrouping,
    ) -> StorageResult<Vec<manager_lib::domain::usage::UsageRow>> {
        self.inner.user_usage(id, from, to, group).await
    }
    async fn node_usage(
        &self,
        from: manager_lib::domain::Timestamp,
        to: manager_lib::domain::Timestamp,
    ) -> StorageResult<Vec<manager_lib::domain::usage::NodeUsage>> {
        self.inner.node_usage(from, to).await
    }
    async fn purge_usage_history(
        &self,
        user_days_before: manager_lib::domain::Timestamp,
        node_hours_before: manager_lib::domain::Timestamp,
    ) -> StorageResult<u64> {
        self.inner
            .purge_usage_history(user_days_before, node_hours_before)
            .await
    }
    async fn claim_nodes(&self, o: &str, t: Duration, l: u32) -> StorageResult<Vec<Node>> {
        self.inner.claim_nodes(o, t, l).await
    }
    async fn release_nodes(&self, o: &str) -> StorageResult<()> {
        self.inner.release_nodes(o).await
    }
    async fn serving_nodes(&self) -> StorageResult<Vec<ServingNode>> {
        self.inner.serving_nodes().await
    }
}

fn is_user_not_found(answer: &StorageResult<UserNodes>) -> bool {
    matches!(answer, Err(StorageError::NotFound(Entity::User)))
}

#[tokio::test]
async fn an_unknown_id_asked_again_does_not_reach_the_storage() {
    let counting = Arc::new(CountingStorage::default());
    let cached = CachedStorage::new(counting.clone(), Arc::new(MemoryCache::new()), long_ttls());
    serving_node_with_user(&cached).await;
    let unknown = UserId::random();

    assert!(is_user_not_found(&cached.user_nodes(unknown).await));
    let reads = counting.user_reads();
    assert!(reads >= 1, "the first ask reads the storage");
    for _ in 0..5 {
        assert!(is_user_not_found(&cached.user_nodes(unknown).await));
    }
    assert_eq!(counting.user_reads(), reads, "a repeat reached the storage");
}

/// A user created with an id that was asked for (and found absent) before.
fn user_with_id(id: UserId) -> NewUser {
    NewUser {
        id,
        ..NewUser::new("late").unwrap()
    }
}

#[tokio::test]
async fn a_cached_miss_is_dropped_by_a_creation_on_the_same_replica() {
    let (a, _) = replicas(long_ttls());
    serving_node_with_user(a.as_ref()).await;
    let id = UserId::random();
    for _ in 0..2 {
        assert!(is_user_not_found(&a.user_nodes(id).await));
    }
    a.create_user(user_with_id(id)).await.unwrap();
    let found = a.user_nodes(id).await.unwrap();
    assert_eq!(found.user.name, "late");
}

#[tokio::test]
async fn a_cached_miss_is_dropped_by_a_creation_on_another_replica() {
    let (a, b) = replicas(long_ttls());
    serving_node_with_user(a.as_ref()).await;
    let id = UserId::random();
    for _ in 0..2 {
        assert!(is_user_not_found(&b.user_nodes(id).await));
    }
    a.create_user(user_with_id(id)).await.unwrap();
    let found = b.user_nodes(id).await.unwrap();
    assert_eq!(found.user.name, "late");
    // Enabling it shows through the shared cache too.
    a.set_user_status(id, UserStatus::Enabled).await.unwrap();
    assert_eq!(
        b.user_nodes(id).await.unwrap().user.status,
        UserStatus::Enabled
    );
}

#[tokio::test]
async fn a_miss_read_before_a_creation_is_not_cached_after_it() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let gated = Arc::new(GatedCache::default());
    let a = CachedStorage::new(storage.clone(), gated.clone(), long_ttls());
    let b = CachedStorage::new(storage, gated.clone(), long_ttls());
    serving_node_with_user(&a).await;
    let id = UserId::random();
    // a reads "absent", then b creates the user and marks it before a's
    // fill lands: the fill must be refused.
    let (filled, release) = gated.hold_next_fill();
    let reading = tokio::spawn(async move { a.user_nodes(id).await.map(|_| ()) });
    tokio::time::timeout(Duration::from_secs(10), filled)
        .await
        .expect("the absence is filled into the cache")
        .unwrap();
    b.create_user(user_with_id(id)).await.unwrap();
    release.send(()).unwrap();
    assert!(matches!(
        reading.await.unwrap(),
        Err(StorageError::NotFound(Entity::User))
    ));
    assert_eq!(b.user_nodes(id).await.unwrap().user.name, "late");
}
