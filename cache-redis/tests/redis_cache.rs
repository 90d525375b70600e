//! What is particular to the Redis cache: namespaces, sharing between
//! replicas, and a Redis that is dead, silent or drops its connections.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_redis::{RedisCache, RedisCacheSettings};
use common::{closed_port, fresh_settings, test_redis};
use manager_lib::cache::{Cache, CacheError, CachedStorage, CachedStorageSettings};
use manager_lib::domain::{NewNode, NewUser, NodeId, RequiredStatus, UserId, UserStatus};
use manager_lib::storage::Storage;
use manager_lib::storage::memory::MemoryStorage;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const LONG: Duration = Duration::from_secs(600);

fn quick_settings() -> RedisCacheSettings {
    RedisCacheSettings {
        timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(300),
        ..fresh_settings()
    }
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, CacheError>) {
    assert!(matches!(r, Err(CacheError::Unavailable(_))), "{r:?}");
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
async fn connecting_to_a_closed_port_is_unavailable() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    assert_unavailable(RedisCache::connect_with(&url, quick_settings()).await);
}

#[tokio::test]
async fn a_url_that_is_not_redis_is_rejected() {
    let r = RedisCache::lazy("http://127.0.0.1:6379", quick_settings());
    assert!(matches!(r, Err(CacheError::Other(_))), "{r:?}");
}

#[tokio::test]
async fn debug_never_shows_the_password() {
    let cache =
        RedisCache::lazy("redis://:hunter2-secret@127.0.0.1:1/0", quick_settings()).unwrap();
    let shown = format!("{cache:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
}

#[tokio::test]
async fn every_call_on_a_dead_redis_is_unavailable() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let cache = RedisCache::lazy(&url, quick_settings()).unwrap();
    assert_unavailable(cache.get("k").await);
    assert_unavailable(cache.put("k", b"v".to_vec(), LONG).await);
    assert_unavailable(cache.invalidate("k").await);
}

#[tokio::test]
async fn user_nodes_is_answered_from_storage_when_redis_is_dead() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let cache = Arc::new(RedisCache::lazy(&url, quick_settings()).unwrap());
    let cached = CachedStorage::new(
        Arc::new(MemoryStorage::new()),
        cache,
        CachedStorageSettings::default(),
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
    assert!(stats.errors >= 2, "{stats:?}");
}

#[tokio::test]
async fn a_silent_server_costs_at_most_the_timeout() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let cache = RedisCache::lazy(&format!("redis://127.0.0.1:{port}"), quick_settings()).unwrap();
    let call = tokio::time::timeout(Duration::from_secs(10), cache.get("k")).await;
    assert_unavailable(call.expect("the call outlived its timeout by far"));
    silent.abort();
}

#[tokio::test]
async fn keys_live_under_the_namespace() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let settings = fresh_settings();
    let namespace = settings.namespace.clone();
    let a = RedisCache::connect_with(&redis.url, settings)
        .await
        .unwrap();
    let b = RedisCache::connect_with(&redis.url, fresh_settings())
        .await
        .unwrap();
    a.put("u:1", b"from-a".to_vec(), LONG).await.unwrap();
    assert_eq!(b.get("u:1").await.unwrap(), None, "namespaces are apart");

    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{namespace}u:1");
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    let stored = stored.expect("stored under the namespace");
    assert!(
        stored.starts_with(b"v") && stored.ends_with(b"from-a"),
        "a value's header, then the value: {stored:?}"
    );
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= LONG.as_millis() as i64,
        "stored with its ttl: {ttl_ms}"
    );
    a.invalidate("u:1").await.unwrap();
}

/// Gets and puts of many callers at once go in groups (one MGET, one
/// pipeline): each caller still gets its own key's value, a missing key is
/// missing, and each put is stored with its own ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_at_once_each_get_their_own_answer() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let cache = Arc::new(
        RedisCache::connect_with(&redis.url, fresh_settings())
            .await
            .unwrap(),
    );
    let value = |i: usize| format!("value-{i}").repeat(1 + i % 7).into_bytes();
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..600 {
        let cache = cache.clone();
        let ttl = if i % 2 == 0 {
            LONG
        } else {
            Duration::from_millis(1)
        };
        puts.spawn(async move { cache.put(&format!("k{i}"), value(i), ttl).await });
    }
    while let Some(put) = puts.join_next().await {
        put.unwrap().unwrap();
    }
    // The 1 ms entries expire; wait until the first of them is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.get("k599").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "k599 never expired");
        tokio::task::yield_now().await;
    }
    let mut gets = tokio::task::JoinSet::new();
    for i in 0..700 {
        let cache = cache.clone();
        gets.spawn(async move { (i, cache.get(&format!("k{i}")).await.unwrap()) });
    }
    while let Some(got) = gets.join_next().await {
        let (i, got) = got.unwrap();
        let want = (i < 600 && i % 2 == 0).then(|| value(i));
        assert_eq!(got, want, "k{i}");
    }
}

#[tokio::test]
async fn replicas_see_each_others_user_writes_at_once_through_redis() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let settings = fresh_settings();
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let long = CachedStorageSettings {
        user_ttl: LONG,
        nodes_ttl: LONG,
    };
    let mut replicas = Vec::new();
    for _ in 0..2 {
        // Each replica has its own client, as separate processes would.
        let cache = RedisCache::connect_with(&redis.url, settings.clone())
            .await
            .unwrap();
        replicas.push(CachedStorage::new(
            storage.clone(),
            Arc::new(cache),
            long.clone(),
        ));
    }
    let (a, b) = (&replicas[0], &replicas[1]);
    let (n, u) = serving_node_with_user(a).await;
    assert_eq!(node_ids(b, u).await, vec![n]);
    assert_eq!(node_ids(b, u).await, vec![n]);
    assert!(b.stats().hits >= 1, "{:?}", b.stats());
    assert_eq!(node_ids(a, u).await, vec![n]);
    assert!(
        a.stats().hits >= 1,
        "a reads the row b cached: {:?}",
        a.stats()
    );

    a.set_user_status(u, UserStatus::Disabled).await.unwrap();
    assert!(node_ids(b, u).await.is_empty());
    a.delete_user(u).await.unwrap();
    assert!(b.user_nodes(u).await.is_err());
}

/// A TCP proxy in front of Redis whose connections the test can cut.
struct Proxy {
    port: u16,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let links = links.clone();
            async move {
                while let Ok((mut down, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut up) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Self {
            port,
            links,
            accept,
        }
    }

    /// Drops every open connection, as a Redis restart would.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Proxy {
    /// Stops listening and drops every connection: Redis is gone.
    fn stop(&self) {
        self.accept.abort();
        self.cut();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// `host:port` of a `redis://[user:password@]host:port[/db]` URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:6379")
    }
}

#[tokio::test]
async fn a_dropped_connection_is_made_again_by_itself() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let proxy = Proxy::start(host_port(&redis.url)).await;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let cache = RedisCache::connect_with(&url, fresh_settings())
        .await
        .unwrap();
    cache.put("k", b"v".to_vec(), LONG).await.unwrap();
    proxy.cut();
    // The first calls may fail while the connection is made again; then the
    // same cache answers without anyone reconnecting it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match cache.get("k").await {
            Ok(got) => {
                assert_eq!(got, Some(b"v".to_vec()));
                break;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "never reconnected: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cache.invalidate("k").await.unwrap();
}

#[tokio::test]
async fn a_redis_that_goes_away_after_connecting_is_unavailable() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let proxy = Proxy::start(host_port(&redis.url)).await;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let cache = RedisCache::connect_with(&url, quick_settings())
        .await
        .unwrap();
    cache.put("k", b"v".to_vec(), LONG).await.unwrap();
    proxy.stop();
    // Stopping is asynchronous: poll until the listener is really gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", proxy.port)).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "proxy still up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        let call = tokio::time::timeout(Duration::from_secs(10), cache.get("k")).await;
        assert_unavailable(call.expect("the call outlived its timeout by far"));
    }
}

/// Redis persists what it holds (RDB, AOF, replicas): the user rows it
/// caches carry the secret and the subscription key sealed as in the
/// database, and read back whole.
#[tokio::test]
async fn cached_user_rows_hold_the_secret_and_subscription_key_sealed_only() {
    use manager_lib::seal::{MasterKey, Sealer};
    let Some(redis) = test_redis().await else {
        return;
    };
    let settings = fresh_settings();
    let namespace = settings.namespace.clone();
    let cache = Arc::new(
        RedisCache::connect_with(&redis.url, settings)
            .await
            .unwrap(),
    );
    let seal = Sealer::new(MasterKey::random(), Vec::new());
    let prefix = seal.current_prefix().unwrap();
    let storage = Arc::new(MemoryStorage::new());
    let cached = CachedStorage::new(storage.clone(), cache, CachedStorageSettings::default())
        .with_sealer(seal);
    let (_, u) = serving_node_with_user(&cached).await;
    let user = storage.get_user(u).await.unwrap();
    let (secret, sub_key) = (user.secret, user.subscription_key);
    let key_hex = sub_key.to_hex();
    let token = sub_key.token(u);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cached.stats().hits == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the row was never cached"
        );
        let got = cached.user_nodes(u).await.unwrap();
        assert_eq!(got.user.secret, secret, "read back whole");
        assert!(got.user.subscription_key.matches(&sub_key));
    }

    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}*"))
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut sealed = 0;
    for key in keys {
        let Ok(Some(value)) = redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<Vec<u8>>>(&mut raw)
            .await
        else {
            continue; // not a string value
        };
        for clear in [
            secret.expose().as_bytes(),
            sub_key.as_bytes().as_slice(),
            key_hex.as_bytes(),
            token.expose().as_bytes(),
        ] {
            assert!(
                !value.windows(clear.len()).any(|w| w == clear),
                "{key} holds the user's secret or subscription key in clear"
            );
        }
        if value.windows(prefix.len()).any(|w| w == prefix.as_bytes()) {
            sealed += 1;
        }
    }
    assert_eq!(sealed, 1, "the user's row is cached, sealed");
}
