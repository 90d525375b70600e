//! The one way both binaries serve HTTP (the agent's API, plain or TLS, the
//! manager's API, and every metrics or docs listener): hyper's connection
//! builders with timers, so a peer cannot hold a connection, a file
//! descriptor or buffer memory for free.
//!
//! - **Header-read timeout**: from accept (TLS handshake included) or from
//!   the end of the previous answer until a request's headers are complete;
//!   past it the connection is closed. hyper starts this clock whenever an
//!   HTTP/1.1 connection waits for a request, so it also bounds how long an
//!   idle HTTP/1.1 keep-alive connection stays open.
//! - **Idle timeout**: a connection with no request in flight for this long
//!   is closed (an HTTP/2 connection answering pings, or HTTP/1.1 when the
//!   header timeout is longer).
//! - **Header bytes**: HTTP/1.1's read buffer (hyper's minimum is 8 KiB) and
//!   HTTP/2's header list size.
//! - **HTTP/2** (only where [`ListenerSettings::http2`] is on): concurrent
//!   streams, small flow-control windows, and keep-alive pings.
//! - **Connection cap**: past `max_connections` the listener *stops
//!   accepting* until a connection ends. New peers wait in the kernel's
//!   backlog instead of being accepted and closed: a legitimate client is
//!   served as soon as a slot frees (the timeouts above free the slots a
//!   slow peer holds), and the process never runs out of file descriptors
//!   through its listener.
//! - **Accept errors** such as `EMFILE` back off (10 ms doubling to 1 s)
//!   instead of spinning, and are logged once per streak.
//! - **Graceful shutdown**: stop accepting, let each connection finish its
//!   requests, and close what is left after `shutdown_grace_ms`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use node_agent_lib::listener::{ListenerSettings, serve};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let router = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
//! serve(listener, router, &ListenerSettings::default(), None, std::future::pending()).await
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// hyper refuses an HTTP/1.1 read buffer below this.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// HTTP/2 keep-alive: a ping after this much silence, and the connection is
/// closed when the ping is not answered within the same time.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Flow-control windows: what a peer may send before the handler reads.
/// hyper's defaults (1 MiB per connection) would let 1,000 connections park
/// 1 GiB in buffers.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 256 * 1024;
/// How long a connection closed for idleness may take to say goodbye.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The limits of one HTTP listener (`[http]` in both binaries' TOML files;
/// `XM_HTTP_*` / `XNA_HTTP_*` variables, see [`ListenerSettings::set`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerSettings {
    /// Accept (or end of the previous answer) to complete request headers, ms.
    pub header_read_timeout_ms: u64,
    /// A connection without a request in flight this long is closed, ms.
    pub idle_timeout_ms: u64,
    /// Open connections at most; past it the listener stops accepting.
    pub max_connections: usize,
    /// Request header bytes at most (HTTP/1.1 read buffer, at least 8 KiB;
    /// HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Whether HTTP/2 is served (cleartext prior knowledge, or ALPN `h2`).
    pub http2: bool,
    /// Concurrent HTTP/2 streams per connection.
    pub http2_max_streams: u32,
    /// On shutdown, how long open connections may take to finish, ms.
    pub shutdown_grace_ms: u64,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            http2: true,
            http2_max_streams: 64,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl ListenerSettings {
    /// The variables [`ListenerSettings::set`] reads, without their prefix.
    pub const KEYS: &[&str] = &[
        "HEADER_READ_TIMEOUT_MS",
        "IDLE_TIMEOUT_MS",
        "MAX_CONNECTIONS",
        "MAX_HEADER_BYTES",
        "HTTP2",
        "HTTP2_MAX_STREAMS",
        "SHUTDOWN_GRACE_MS",
    ];

    /// The agent's defaults: one manager (or a few replicas) calls it, its
    /// requests carry a sealed token of a few hundred bytes in a header, and
    /// its client speaks HTTP/1.1 only, so HTTP/2 is not served at all.
    pub fn agent() -> Self {
        Self {
            max_connections: 64,
            max_header_bytes: MIN_HEADER_BYTES,
            http2: false,
            ..Self::default()
        }
    }

    /// Applies one variable, named without its prefix (one of
    /// [`ListenerSettings::KEYS`]). `Ok(false)`: not one of these.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, String> {
        fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
            value
                .trim()
                .parse()
                .map_err(|_| format!("{key}: cannot parse {value:?} as a number"))
        }
        match key {
            "HEADER_READ_TIMEOUT_MS" => self.header_read_timeout_ms = number(key, value)?,
            "IDLE_TIMEOUT_MS" => self.idle_timeout_ms = number(key, value)?,
            "MAX_CONNECTIONS" => self.max_connections = number(key, value)?,
            "MAX_HEADER_BYTES" => self.max_header_bytes = number(key, value)?,
            "HTTP2_MAX_STREAMS" => self.http2_max_streams = number(key, value)?,
            "SHUTDOWN_GRACE_MS" => self.shutdown_grace_ms = number(key, value)?,
            "HTTP2" => {
                self.http2 = match value.trim() {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(format!("{key}: expected true or false, got {value:?}")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Every limit is usable: none is zero (a zero timeout would close every
    /// connection, a zero cap would serve nobody).
    pub fn validate(&self) -> Result<(), String> {
        let zero = [
            ("header_read_timeout_ms", self.header_read_timeout_ms == 0),
            ("idle_timeout_ms", self.idle_timeout_ms == 0),
            ("max_connections", self.max_connections == 0),
            ("http2_max_streams", self.http2_max_streams == 0),
        ];
        match zero.iter().find(|(_, is_zero)| *is_zero) {
            Some((name, _)) => Err(format!("http.{name} must be above 0")),
            None => Ok(()),
        }
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout())
            .max_buf_size(self.max_header_bytes.max(MIN_HEADER_BYTES));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_streams)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .keep_alive_interval(H2_KEEP_ALIVE)
            .keep_alive_timeout(H2_KEEP_ALIVE);
        if self.http2 {
            builder
        } else {
            builder.http1_only()
        }
    }
}

/// Serves `router` on `listener` (through `tls` when given, see
/// [`crate::tls`]) with the limits of `settings` until `shutdown`
/// resolves, then shuts down gracefully.
/// Each request carries the peer's address as [`ConnectInfo<SocketAddr>`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &ListenerSettings,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    settings
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let shared = Arc::new(Shared {
        builder: settings.builder(),
        router,
        settings: settings.clone(),
        tls,
        stop: CancellationToken::new(),
    });
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        // Wait for a free slot before accepting: past the cap, peers wait
        // in the backlog and no descriptor is spent on them.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.succeeded();
                // Answers are small and latency matters more than packing.
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                connections.spawn(async move {
                    shared.connection(stream, peer).await;
                    drop(slot);
                });
            }
            Err(error) => {
                drop(slot);
                if let Some(pause) = backoff.failed(&error) {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut shutdown => break,
                    }
                }
            }
        }
    }
    drop(listener);
    shared.stop.cancel();
    let grace = Duration::from_millis(settings.shutdown_grace_ms);
    let finished = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace; closing them"
        );
    }
    Ok(())
}

/// What every connection of one listener shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    settings: ListenerSettings,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
}

impl Shared {
    async fn connection(&self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let Some(tls) = &self.tls else {
            return self.http(stream, peer).await;
        };
        // The handshake counts against the header timeout: a peer that
        // opens TLS and stalls is a slowloris too.
        let handshake =
            tokio::time::timeout(self.settings.header_read_timeout(), tls.accept(stream));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            },
            () = self.stop.cancelled() => return,
        };
        self.http(stream, peer).await;
    }

    async fn http<I>(&self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::default();
        let service = PeerService {
            router: self.router.clone(),
            peer,
            activity: activity.clone(),
        };
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let idle = activity.idle(
            self.settings.header_read_timeout(),
            self.settings.idle_timeout(),
        );
        let closing = tokio::select! {
            done = connection.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
            () = idle => CLOSE_GRACE,
            // The listener's grace bounds this one.
            () = self.stop.cancelled() => Duration::MAX,
        };
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(closing, connection).await;
    }
}

/// Counts a connection's requests in flight; its receivers see each change.
#[derive(Clone, Default)]
struct Activity(Arc<watch::Sender<usize>>);

/// One request in flight; dropping it (answered or cancelled) ends it.
struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Activity {
    fn begin(&self) -> InFlight {
        self.0.send_modify(|n| *n += 1);
        InFlight(self.0.clone())
    }

    /// Resolves once no request has been in flight for `first` (before the
    /// first request) or `then` (after one).
    async fn idle(&self, first: Duration, then: Duration) {
        let mut changes = self.0.subscribe();
        let mut limit = first;
        loop {
            let busy = *changes.borrow_and_update() > 0;
            if busy {
                limit = then;
                // The sender lives as long as this connection's service.
                if changes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(limit) => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // A change means a request began since.
                    limit = then;
                }
            }
        }
    }
}

/// The router for one connection: it tags requests with the peer's address
/// and counts them in flight.
#[derive(Clone)]
struct PeerService {
    router: Router,
    peer: SocketAddr,
    activity: Activity,
}

impl hyper::service::Service<axum::http::Request<Incoming>> for PeerService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn call(&self, mut request: axum::http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let in_flight = self.activity.begin();
        let router = self.router.clone();
        Box::pin(async move {
            let answer = router.oneshot(request).await;
            drop(in_flight);
            answer
        })
    }
}

/// How long to pause after a failed accept: not at all for an error of one
/// connection (the peer reset it before we took it), growing pauses for an
/// error of the process (`EMFILE`, `ENFILE`, `ENOMEM`…), which would
/// otherwise repeat at once, in a busy loop.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// The pause after `error`, if any; logs the first failure of a streak.
    pub fn failed(&mut self, error: &std::io::Error) -> Option<Duration> {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionRefused | ConnectionReset
        ) {
            return None;
        }
        if self.failures == 0 {
            tracing::warn!(%error, "cannot accept connections; pausing");
        }
        let pause = BACKOFF_FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        Some(pause)
    }

    /// Ends a streak of failures.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::warn!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("settings", &self.settings)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_errors_back_off_and_connection_errors_do_not() {
        let mut backoff = AcceptBackoff::default();
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(backoff.failed(&reset), None);
        let emfile = std::io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..10).map(|_| backoff.failed(&emfile).unwrap()).collect();
        assert_eq!(pauses[0], BACKOFF_FIRST);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses[9], BACKOFF_MAX);
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), Some(BACKOFF_FIRST));
    }

    #[test]
    fn settings_come_from_variables_and_zero_limits_are_refused() {
        let mut s = ListenerSettings::agent();
        assert_eq!(s.set("MAX_CONNECTIONS", "7"), Ok(true));
        assert_eq!(s.set("HTTP2", "yes"), Ok(true));
        assert_eq!(s.set("NOPE", "1"), Ok(false));
        assert!(s.set("IDLE_TIMEOUT_MS", "soon").is_err());
        assert_eq!((s.max_connections, s.http2), (7, true));
        assert!(s.validate().is_ok());
        s.header_read_timeout_ms = 0;
        assert!(s.validate().unwrap_err().contains("header_read_timeout_ms"));
    }
}
