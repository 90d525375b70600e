//! `xray-manager`: the control plane's binary. Reads its settings (a TOML
//! file, then `XM_*` variables), picks the storage and cache backends by URL
//! scheme (`bins::manager`), and hands them to the manager's composition
//! root (`manager_lib::server`), which serves the HTTP API with its heartbeat.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use manager_lib::settings::ManagerConfig;

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
    /// XM_ADMIN_FAILURE_BURST, XM_ADMIN_FAILURE_REFILL_SECS, XM_LOG_JSON,
    /// XM_NODE_LIST_RATE, XM_NODE_LIST_BURST, XM_METRICS_LISTEN,
    /// XM_TRUSTED_PROXIES), which wins over the file.
    ///
    /// HTTPS ([tls]): XM_TLS_CERT and XM_TLS_KEY (PEM files; unset: plain
    /// HTTP), re-read every XM_TLS_RELOAD_INTERVAL_SECS (10, 0 = never).
    /// XM_TRUSTED_PROXIES: comma-separated addresses or networks of reverse
    /// proxies whose X-Forwarded-For names the client (default none).
    ///
    /// XM_ADMIN_TOKEN: at least 32 visible ASCII characters, 8 of them
    /// distinct (e.g. `openssl rand -hex 32`); empty or weaker is refused at
    /// start. Unset: one is generated into <data_dir>/admin-token (0600) and
    /// only that path is printed. XM_ADMIN_FAILURE_BURST (default 10, 0 = no
    /// limit) failed admin calls per client address, then one more every
    /// XM_ADMIN_FAILURE_REFILL_SECS (default 60); past that, admin calls from
    /// that address answer 429.
    ///
    /// Secrets at rest ([secrets]): XM_MASTER_KEY (32 bytes as base64) or
    /// XM_SECRETS_MASTER_KEY_FILE; unset: <data_dir>/master-key, generated
    /// (0600) on the first start of the SQLite storage. During a rotation,
    /// XM_SECRETS_PREVIOUS_MASTER_KEY_FILES (comma-separated) still open.
    ///
    /// Listener limits ([http]): XM_HTTP_HEADER_READ_TIMEOUT_MS
    /// (10000), XM_HTTP_IDLE_TIMEOUT_MS (60000), XM_HTTP_MAX_CONNECTIONS (1024;
    /// past it the listener stops accepting), XM_HTTP_MAX_HEADER_BYTES
    /// (16384), XM_HTTP_HTTP2 (true), XM_HTTP_HTTP2_MAX_STREAMS (64),
    /// XM_HTTP_SHUTDOWN_GRACE_MS (10000).
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
    cfg.create_data_dir()
        .map_err(|e| format!("data dir {}: {e}", cfg.data_dir.display()))?;
    let url = cfg.storage_url();
    let sqlite_only = || {
        if url.starts_with("sqlite://") {
            Ok(())
        } else {
            Err("backup and restore handle the SQLite storage; for PostgreSQL use pg_dump and pg_restore".to_owned())
        }
    };
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => bins::manager::serve(cfg, url).await,
        Command::Backup { to } => {
            sqlite_only()?;
            let inv = storage_sqlite::backup::backup(&url, &to, &backup_sealer(&cfg)?)
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
            let inv = storage_sqlite::backup::restore(&from, &url, &backup_sealer(&cfg)?)
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

/// The sealer a backup is checked with: the configured master key (never a
/// generated one: a backup is readable only with the key it was sealed under).
fn backup_sealer(cfg: &ManagerConfig) -> Result<manager_lib::seal::Sealer, String> {
    Ok(cfg.secrets.sealer(&cfg.data_dir, false)?.0)
}
