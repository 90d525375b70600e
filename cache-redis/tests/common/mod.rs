//! Where the Redis tests find a Redis: `TEST_REDIS_URL`, else a
//! testcontainers Redis. With `CI=true` a missing Redis fails the test.

#![allow(dead_code)] // Each test binary uses a part of it.

use std::sync::Arc;

use cache_redis::{RedisCache, RedisCacheSettings};
use manager_lib::cache::Cache;
use testcontainers_modules::redis::{REDIS_PORT, Redis};
use testcontainers_modules::testcontainers::ContainerAsync;
use testcontainers_modules::testcontainers::runners::AsyncRunner;

/// A Redis for one test; a container (if one was started) lives as long as it.
pub struct TestRedis {
    pub url: String,
    _container: Option<ContainerAsync<Redis>>,
}

/// `None` only outside CI when no Redis is configured and Docker is missing.
pub async fn test_redis() -> Option<TestRedis> {
    if let Ok(url) = std::env::var("TEST_REDIS_URL") {
        return Some(TestRedis {
            url,
            _container: None,
        });
    }
    let started = async {
        let container = Redis::default().start().await?;
        let port = container.get_host_port_ipv4(REDIS_PORT).await?;
        Ok::<_, testcontainers_modules::testcontainers::TestcontainersError>((container, port))
    };
    match started.await {
        Ok((container, port)) => Some(TestRedis {
            url: format!("redis://127.0.0.1:{port}"),
            _container: Some(container),
        }),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no Redis: set TEST_REDIS_URL or provide Docker ({e})");
            }
            eprintln!("skipped: no Redis (set TEST_REDIS_URL or provide Docker): {e}");
            None
        }
    }
}

/// Settings with a namespace of its own, so tests sharing one Redis never
/// see each other's keys.
pub fn fresh_settings() -> RedisCacheSettings {
    RedisCacheSettings {
        namespace: format!("xm-test-{}:", uuid::Uuid::new_v4().simple()),
        ..RedisCacheSettings::default()
    }
}

/// A cache on the test Redis, in a fresh namespace.
pub struct Fixture {
    pub cache: Arc<RedisCache>,
    pub redis: TestRedis,
}

impl AsRef<dyn Cache> for Fixture {
    fn as_ref(&self) -> &(dyn Cache + 'static) {
        self.cache.as_ref()
    }
}

pub async fn fresh() -> Option<Fixture> {
    let redis = test_redis().await?;
    let cache = RedisCache::connect_with(&redis.url, fresh_settings())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Redis: {e}"));
    Some(Fixture {
        cache: Arc::new(cache),
        redis,
    })
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
