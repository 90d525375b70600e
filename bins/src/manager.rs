//! The manager binary's part: the backends chosen by URL scheme, handed to
//! the composition root ([`manager_lib::server`]) until SIGTERM/SIGINT.

use std::sync::Arc;

use manager_lib::cache::{Cache, MemoryCache};
use manager_lib::server::{self, Backends, ServerSettings};
use manager_lib::settings::ManagerConfig;
use manager_lib::storage::Storage;
use manager_lib::transport::http::HttpTransport;
use tokio_util::sync::CancellationToken;

/// The storage `url` names: `sqlite://…` or `postgres://…`.
pub async fn open_storage(url: &str) -> Result<Arc<dyn Storage>, String> {
    Ok(match url.split_once("://").map(|(s, _)| s) {
        Some("sqlite") => Arc::new(
            storage_sqlite::SqliteStorage::connect(url)
                .await
                .map_err(|e| e.to_string())?,
        ),
        Some("postgres" | "postgresql") => Arc::new(
            storage_postgres::PgStorage::connect(url)
                .await
                .map_err(|e| e.to_string())?,
        ),
        _ => return Err("storage_url must start with sqlite:// or postgres://".into()),
    })
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
    let storage = open_storage(&url).await?;
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
    let backends = Backends::new(storage, transport).with_cache(cache);
    server::serve(backends, settings, listener, shutdown.cancelled_owned())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("xray-manager stopped");
    Ok(())
}
