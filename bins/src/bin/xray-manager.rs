//! `xray-manager`: the control plane's binary. Reads its settings (a TOML
//! file, then `XM_*` variables), picks the storage and cache backends by URL
//! scheme, and serves the manager's HTTP API with its heartbeat.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use manager_lib::api::{self, ApiState};
use manager_lib::cache::{Cache, CachedStorage, CachedStorageSettings, MemoryCache};
use manager_lib::metrics::{self, ManagerMetrics};
use manager_lib::reconcile::{Reconciler, ReconcilerSettings};
use manager_lib::service::{Manager, ManagerSettings};
use manager_lib::settings::ManagerConfig;
use manager_lib::storage::Storage;
use manager_lib::transport::http::HttpTransport;
use tokio_util::sync::CancellationToken;

/// The xray-manager control plane: nodes, users, heartbeat and HTTP API.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "The xray-manager control plane: nodes, users, heartbeat and HTTP API."
)]
struct Args {
    /// TOML settings file; every setting can also come from its `XM_*`
    /// variable (XM_LISTEN, XM_DATA_DIR, XM_STORAGE_URL, XM_CACHE_URL,
    /// XM_HEARTBEAT_MS, XM_NODE_TIMEOUT_MS, XM_CONCURRENCY, XM_ADMIN_TOKEN,
    /// XM_LOG_JSON, XM_NODE_LIST_RATE, XM_NODE_LIST_BURST, XM_METRICS_LISTEN),
    /// which wins over
    /// the file.
    #[arg(long, short, env = "XM_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Serve the API and run the heartbeat (what runs without a command).
    Serve,
    /// Write a consistent copy of the SQLite database to FILE while the
    /// manager may be running (for PostgreSQL use `pg_dump`).
    Backup {
        /// Where to write the copy; must not exist.
        #[arg(long)]
        to: PathBuf,
    },
    /// Put a backup back in place of the SQLite database; stop the manager
    /// first. The replaced database is kept as `<file>.before-restore`.
    Restore {
        /// The backup file to restore.
        #[arg(long)]
        from: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xray-manager: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let cfg = ManagerConfig::load(args.config.as_deref())?;
    bins::init_tracing(cfg.log_json);
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| format!("data dir: {e}"))?;
    let url = cfg.storage_url();
    let sqlite_only = || {
        if url.starts_with("sqlite://") {
            Ok(())
        } else {
            Err("backup and restore handle the SQLite storage; for PostgreSQL use pg_dump and pg_restore".to_owned())
        }
    };
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cfg, url).await,
        Command::Backup { to } => {
            sqlite_only()?;
            let inv = storage_sqlite::backup::backup(&url, &to)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "backup written to {}: {} nodes, {} users",
                to.display(),
                inv.nodes,
                inv.users
            );
            Ok(())
        }
        Command::Restore { from } => {
            sqlite_only()?;
            let inv = storage_sqlite::backup::restore(&from, &url)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "restored {}: {} nodes, {} users",
                from.display(),
                inv.nodes,
                inv.users
            );
            Ok(())
        }
    }
}

async fn serve(cfg: ManagerConfig, url: String) -> Result<(), String> {
    let storage: Arc<dyn Storage> = match url.split_once("://").map(|(s, _)| s) {
        Some("sqlite") => Arc::new(
            storage_sqlite::SqliteStorage::connect(&url)
                .await
                .map_err(|e| e.to_string())?,
        ),
        Some("postgres" | "postgresql") => Arc::new(
            storage_postgres::PgStorage::connect(&url)
                .await
                .map_err(|e| e.to_string())?,
        ),
        _ => return Err("storage_url must start with sqlite:// or postgres://".into()),
    };
    let cache: Arc<dyn Cache> = match cfg.cache_url.expose() {
        "memory" => Arc::new(MemoryCache::new()),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => Arc::new(
            cache_redis::RedisCache::connect(url)
                .await
                .map_err(|e| e.to_string())?,
        ),
        _ => return Err("cache_url must be `memory` or redis://…".into()),
    };
    let cached = CachedStorageSettings {
        user_ttl: cfg.heartbeat(),
        nodes_ttl: cfg.heartbeat().min(std::time::Duration::from_secs(1)),
    };
    let cached = Arc::new(CachedStorage::new(storage, cache, cached));
    let storage: Arc<dyn Storage> = cached.clone();
    let transport = Arc::new(HttpTransport::new(cfg.node_timeout()));
    let manager = Arc::new(Manager::new(storage, transport, ManagerSettings::default()));
    let metrics = Arc::new(ManagerMetrics::with_cache(manager.clone(), cached));

    let (token, generated) = cfg.admin_token().map_err(|e| format!("admin token: {e}"))?;
    if generated {
        println!(
            "generated admin token (shown once, stored in {}): {}",
            cfg.data_dir.join("admin-token").display(),
            token.expose()
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
    tokio::spawn(bins::cancel_on_signal(shutdown.clone()));
    let heartbeat = tokio::spawn(reconciler.run(shutdown.clone().cancelled_owned()));
    if let Some(at) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .map_err(|e| format!("metrics_listen on {at}: {e}"))?;
        tracing::info!(addr = %at, "metrics served without a token");
        let stop = shutdown.clone().cancelled_owned();
        let router = metrics::router(metrics.clone());
        tokio::spawn(async move {
            if let Err(e) = api::serve(listener, router, stop).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    let state = ApiState::new(manager, token.expose())
        .with_rate_limit(cfg.node_list_limit())
        .with_metrics(metrics);
    let router = api::router(state).layer(bins::request_trace_layer());
    api::serve(listener, router, shutdown.clone().cancelled_owned())
        .await
        .map_err(|e| e.to_string())?;
    let _ = heartbeat.await;
    tracing::info!("xray-manager stopped");
    Ok(())
}
