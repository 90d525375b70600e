//! `xray-node-agent`: the node agent's binary. Reads its settings (a TOML
//! file, then `XNA_*` variables), starts the core through the chosen service
//! backend, and serves the JWE-protected node API until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use node_agent_lib::listener;
use node_agent_lib::metrics::{self, AgentMetrics};
use node_agent_lib::{Node, Settings};
use tokio_util::sync::CancellationToken;

/// The xray-manager node agent: runs the proxy core with the manager's users.
///
/// Every setting lives in the TOML file and can be overridden by a variable:
/// listen (XNA_LISTEN), node_key / node_key_file (XNA_NODE_KEY,
/// XNA_NODE_KEY_FILE), flavor "xray"|"v2ray" (XNA_FLAVOR),
/// user_config_template (XNA_USER_CONFIG_TEMPLATE), vless_flow
/// (XNA_VLESS_FLOW); [core] binary, args ("{config}" = the generated config),
/// base_config, generated_config, api_address, start_timeout_secs,
/// stop_timeout_secs, api_timeout_ms (XNA_CORE_BINARY, XNA_CORE_ARGS,
/// XNA_BASE_CONFIG, XNA_GENERATED_CONFIG, XNA_API_ADDRESS,
/// XNA_START_TIMEOUT_SECS, XNA_STOP_TIMEOUT_SECS, XNA_API_TIMEOUT_MS);
/// [service] backend "process"|"systemd"|"launchctl", unit, label, domain,
/// plist (XNA_SERVICE_*); [tls] cert, key, reload_interval_secs (XNA_TLS_*);
/// metrics_listen, a private address for Prometheus metrics, off by
/// default (XNA_METRICS_LISTEN); verify_period_secs, how long one background
/// check of every user in the core takes, default 25, 0 = off (XNA_VERIFY_PERIOD_SECS);
/// state_dir, where the usage journal lives, default /var/lib/xray-node-agent
/// (XNA_STATE_DIR); stats_interval_secs, how often the core's per-user traffic
/// counters are read into it, default 5, 0 = off (XNA_STATS_INTERVAL_SECS);
/// usage_journal_max_batches, never-pulled batches kept before the oldest
/// are merged, default 720 (XNA_USAGE_JOURNAL_MAX_BATCHES);
/// docs_listen, a private address for the
/// API's OpenAPI document and Swagger UI, off by default (XNA_DOCS_LISTEN);
/// [http] limits of every listener: header_read_timeout_ms (10000),
/// idle_timeout_ms (60000), max_connections (64; past it the listener stops
/// accepting), max_header_bytes (8192), http2 (false), http2_max_streams
/// (64), shutdown_grace_ms (10000) (XNA_HTTP_HEADER_READ_TIMEOUT_MS,
/// XNA_HTTP_IDLE_TIMEOUT_MS, XNA_HTTP_MAX_CONNECTIONS,
/// XNA_HTTP_MAX_HEADER_BYTES, XNA_HTTP_HTTP2, XNA_HTTP_HTTP2_MAX_STREAMS,
/// XNA_HTTP_SHUTDOWN_GRACE_MS).
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// TOML settings file (see above); without it, defaults and XNA_*
    /// variables only.
    #[arg(long, short, env = "XNA_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text (filter with RUST_LOG, default info).
    #[arg(long)]
    log_json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    bins::init_tracing(args.log_json);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("xray-node-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::load(args.config.as_deref())?;
    // Built before the port is bound: the node refuses requests issued
    // before it was built (its replay cache starts empty), so a client that
    // saw the port open and sealed a request at once must not be refused.
    let node = Node::build(&settings)?;
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(bins::cancel_on_signal(shutdown.clone()));
    if let Some(at) = settings.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(at).await?;
        tracing::info!(addr = %at, "metrics served without authentication");
        let agent_metrics = Arc::new(
            AgentMetrics::new(node.agent.clone()).with_refusals(node.state.refusals().clone()),
        );
        let stop = shutdown.clone().cancelled_owned();
        let http = settings.http.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(agent_metrics, metrics_listener, &http, stop).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    if let Some(at) = settings.docs_listen {
        let docs_listener = tokio::net::TcpListener::bind(at).await?;
        tracing::info!(addr = %at, "API documentation served without authentication");
        let stop = shutdown.clone().cancelled_owned();
        let http = settings.http.clone();
        tokio::spawn(async move {
            let docs = node_agent_lib::api::openapi::docs_router();
            if let Err(e) = listener::serve(docs_listener, docs, &http, None, stop).await {
                tracing::error!(error = %e, "docs listener failed");
            }
        });
    }
    node.serve(&settings, listener, shutdown.cancelled_owned())
        .await?;
    tracing::info!("stopped");
    Ok(())
}
