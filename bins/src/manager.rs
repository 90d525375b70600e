//! The manager binary's wiring: backends chosen by URL scheme, the heartbeat,
//! the API and the optional metrics listener, until SIGTERM/SIGINT.

use std::sync::Arc;

use manager_lib::api::{self, ApiState};
use manager_lib::cache::{Cache, CachedStorage, CachedStorageSettings, MemoryCache};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::metrics::{self, ManagerMetrics};
use manager_lib::reconcile::{Reconciler, ReconcilerSettings};
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
    // User rows stay cached until they change (every change is marked, see
    // `CachedStorage`); the node set and the change feed are read again at
    // least once a heartbeat.
    let cached = CachedStorageSettings {
        nodes_ttl: cfg.heartbeat().min(std::time::Duration::from_secs(1)),
        ..CachedStorageSettings::default()
    };
    let cached = Arc::new(CachedStorage::new(storage, cache, cached));
    let storage: Arc<dyn Storage> = cached.clone();
    let transport = Arc::new(HttpTransport::new(cfg.node_timeout()));
    let manager = Arc::new(Manager::new(storage, transport, ManagerSettings::default()));
    let metrics = Arc::new(ManagerMetrics::with_cache(manager.clone(), cached));

    let (token, generated) = cfg.admin_token().map_err(|e| format!("admin token: {e}"))?;
    if generated {
        // Where it is, never the token: stdout ends up in journald and
        // `docker logs`, readable by more people than the 0600 file.
        println!(
            "generated an admin token into {} (readable by this user only)",
            cfg.admin_token_file().display()
        );
    }
    let reconciler = Arc::new(
        Reconciler::new(
            manager.clone(),
            ReconcilerSettings {
                interval: cfg.heartbeat(),
                concurrency: cfg.concurrency,
                ..ReconcilerSettings::default()
            },
        )
        .with_metrics(metrics.clone()),
    );
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("xray-manager listening on {addr}");
    tracing::info!(%addr, heartbeat_ms = cfg.heartbeat_ms, "xray-manager started");

    let shutdown = CancellationToken::new();
    tokio::spawn(crate::cancel_on_signal(shutdown.clone()));
    let heartbeat = tokio::spawn(reconciler.run(shutdown.clone().cancelled_owned()));
    if let Some(at) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .map_err(|e| format!("metrics_listen on {at}: {e}"))?;
        tracing::info!(addr = %at, "metrics served without a token");
        let stop = shutdown.clone().cancelled_owned();
        let router = metrics::router(metrics.clone());
        let http = cfg.http.clone();
        tokio::spawn(async move {
            if let Err(e) = api::serve_with(listener, router, &http, stop).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    let state = ApiState::new(manager, token.expose())
        .with_admin_failure_limit(cfg.admin_failure_limit())
        .with_rate_limit(cfg.node_list_limit())
        .with_metrics(metrics);
    let router = api::router(state).layer(crate::request_trace_layer());
    api::serve_with(
        listener,
        router,
        &cfg.http,
        shutdown.clone().cancelled_owned(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let _ = heartbeat.await;
    tracing::info!("xray-manager stopped");
    Ok(())
}
