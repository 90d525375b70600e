//! Helpers for the whole-system tests in `tests/tests/`: they start the real
//! binaries and real proxy cores on 127.0.0.1 and port 0, and cut network
//! paths with a TCP proxy they control; real client apps (V2Ray, sing-box,
//! Mihomo) fetch known bytes through the nodes (`clients`, `origin`,
//! `tls_node`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Polls `check` until it gives `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A TCP proxy on 127.0.0.1 in front of `target`: `cut()` closes the port and
/// every open connection (the service behind it looks dead), `restore()`
/// opens the same port again, and `set_delay` makes the answers slow.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    task: Mutex<Option<JoinHandle<()>>>,
    conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    /// Milliseconds each chunk from the target waits before it is passed on.
    delay_ms: Arc<AtomicU64>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let proxy = Self {
            addr,
            target,
            task: Mutex::new(None),
            conns: Arc::default(),
            delay_ms: Arc::default(),
        };
        *proxy.task.lock().await = Some(proxy.accept_loop(listener));
        Ok(proxy)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every chunk the target sends (on open and new connections) waits
    /// `delay` before it reaches the client: a slow service. Zero: no delay.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    fn accept_loop(&self, listener: TcpListener) -> JoinHandle<()> {
        let target = self.target;
        let conns = self.conns.clone();
        let delay = self.delay_ms.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let delay = delay.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            pump(in_read, out_write, None),
                            pump(out_read, in_write, Some(delay)),
                        );
                    }
                });
                let mut conns = conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(conn);
            }
        })
    }

    /// Closes the port and drops every connection through it.
    pub async fn cut(&self) {
        if let Some(task) = self.task.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// Listens on the same port again.
    pub async fn restore(&self) -> std::io::Result<()> {
        let listener = wait_for(
            "the proxy port to be free",
            Duration::from_secs(10),
            || async { TcpListener::bind(self.addr).await.ok() },
        )
        .await;
        *self.task.lock().await = Some(self.accept_loop(listener));
        Ok(())
    }
}

/// Copies one direction until EOF or an error, then closes the writing side;
/// with `delay`, each chunk waits that long first.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Option<Arc<AtomicU64>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(ms) = delay.as_ref().map(|d| d.load(Ordering::Relaxed))
            && ms > 0
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

pub mod bench;
pub mod chaos;
pub mod client_checks;
pub mod clients;
pub mod fleet;
pub mod origin;
pub mod tls_node;
