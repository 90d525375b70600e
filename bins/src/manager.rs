//! The manager binary's part: the backends chosen by URL scheme, handed to
//! the composition root ([`manager_lib::server`]) until SIGTERM/SIGINT.

use std::sync::Arc;

use manager_lib::cache::{Cache, MemoryCache};
use manager_lib::seal::{KeySource, Sealer};
use manager_lib::server::{self, Backends, ServerSettings};
use manager_lib::settings::ManagerConfig;
use manager_lib::storage::{Storage, StorageError};
use manager_lib::transport::http::HttpTransport;
use tokio_util::sync::CancellationToken;

/// The storage `url` names: `sqlite://…` or `postgres://…`, its secrets
/// sealed by `seal`. Whatever is not yet sealed under the current master
/// key is sealed now; a database sealed under another key is refused.
pub async fn open_storage(url: &str, seal: Sealer) -> Result<Arc<dyn Storage>, String> {
    let refused = |e: StorageError| format!("cannot open the storage: {e}");
    let (storage, resealed): (Arc<dyn Storage>, u64) = match url.split_once("://").map(|(s, _)| s) {
        Some("sqlite") => {
            let s = storage_sqlite::SqliteStorage::connect_sealed(url, seal)
                .await
                .map_err(refused)?;
            let n = s.reseal().await.map_err(refused)?;
            (Arc::new(s), n)
        }
        Some("postgres" | "postgresql") => {
            let s = storage_postgres::PgStorage::connect_sealed(url, seal)
                .await
                .map_err(refused)?;
            let n = s.reseal().await.map_err(refused)?;
            (Arc::new(s), n)
        }
        _ => return Err("storage_url must start with sqlite:// or postgres://".into()),
    };
    if resealed > 0 {
        tracing::info!(
            resealed,
            "sealed node keys and user secrets under the current master key"
        );
    }
    Ok(storage)
}

/// The sealer of `cfg`, with a log line saying where its key came from
/// (never the key).
pub fn sealer(cfg: &ManagerConfig) -> Result<Sealer, String> {
    let (sealer, source) = cfg.sealer()?;
    match source {
        KeySource::Generated(path) => tracing::warn!(
            path = %path.display(),
            "generated a master key for secrets at rest; back it up apart from the database: \
             without it the node keys and user secrets cannot be read"
        ),
        KeySource::File(path) => tracing::info!(path = %path.display(), "master key read"),
        KeySource::Environment => tracing::info!("master key read from XM_MASTER_KEY"),
    }
    Ok(sealer)
}

/// The cache `url` names: `memory` or `redis://…`.
pub async fn open_cache(url: &str) -> Result<Arc<dyn Cache>, String> {
    Ok(match url {
        "memory" => Arc::new(MemoryCache::new()),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => Arc::new(
            cache_redis::RedisCache::connect(url)
                .await
                .map_err(|e| e.to_string())?,
        ),
        _ => return Err("cache_url must be `memory` or redis://…".into()),
    })
}

/// `xray-manager serve`: runs until SIGTERM or SIGINT.
pub async fn serve(cfg: ManagerConfig, url: String) -> Result<(), String> {
    let seal = sealer(&cfg)?;
    let storage = open_storage(&url, seal.clone()).await?;
    let cache = open_cache(cfg.cache_url.expose()).await?;
    let transport = Arc::new(HttpTransport::new(cfg.node_timeout()));
    let settings = ServerSettings::from_config(&cfg)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("xray-manager listening on {addr}");
    tracing::info!(%addr, heartbeat_ms = cfg.heartbeat_ms, "xray-manager started");
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::cancel_on_signal(shutdown.clone()));
    let backends = Backends::new(storage, transport)
        .with_cache(cache)
        .with_sealer(seal);
    server::serve(backends, settings, listener, shutdown.cancelled_owned())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("xray-manager stopped");
    Ok(())
}
