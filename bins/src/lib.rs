//! The thin binaries of xray-manager (`src/bin/`): each reads its settings,
//! builds the backends and calls a library's `serve`. What they share lives here.

pub mod cli;
pub mod manager;

use tokio_util::sync::CancellationToken;

/// Text logs by default (`RUST_LOG` filters, default `info`), JSON lines with `json`.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Cancels `token` on SIGTERM or SIGINT (Ctrl-C), for a graceful shutdown.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}

/// The route template a request is for (`/user/{id_name}/nodes`), or
/// `unmatched`: never the raw path, which may hold a user's id and name
/// (they authorise the node-list call) even when malformed (`…/nodes/`,
/// `//user/…`), and which anyone can fill with text of their choice.
pub fn loggable_path(path: &str) -> &'static str {
    manager_lib::api::route_of(path).unwrap_or(manager_lib::metrics::UNMATCHED_ROUTE)
}

/// A span per HTTP request (method, route with secrets left out, status and
/// latency on completion), for `axum::Router::layer`.
pub fn request_trace_layer() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&axum::http::Request<axum::body::Body>) -> tracing::Span + Clone,
> {
    tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |req: &axum::http::Request<axum::body::Body>| {
            tracing::info_span!(
                "request",
                method = %req.method(),
                route = loggable_path(req.uri().path()),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_list_paths_are_not_logged_verbatim() {
        let id = "6f1c7f3e-9a59-4c1a-9d8e-4f0c2b7a1d22";
        assert_eq!(
            super::loggable_path(&format!("/user/{id}-alice/nodes")),
            "/user/{id_name}/nodes"
        );
        for malformed in [
            format!("/user/{id}-alice/nodes/"),
            format!("/user/{id}-alice"),
            format!("//user/{id}-alice/nodes"),
            format!("/user/{id}-alice/nodes/x"),
            format!("/user/{id}/alice/nodes"),
        ] {
            assert_eq!(super::loggable_path(&malformed), "unmatched", "{malformed}");
        }
        assert_eq!(super::loggable_path("/users"), "/users");
        assert_eq!(super::loggable_path("/docs/index.css"), "/docs");
    }
}
