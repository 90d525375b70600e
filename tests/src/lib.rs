//! Helpers for the whole-system tests in `tests/tests/`: they start the real
//! binaries and real proxy cores on 127.0.0.1 and port 0, and cut network
//! paths with a TCP proxy they control.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
/// opens the same port again.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    task: Mutex<Option<JoinHandle<()>>>,
    conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
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
        };
        *proxy.task.lock().await = Some(proxy.accept_loop(listener));
        Ok(proxy)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn accept_loop(&self, listener: TcpListener) -> JoinHandle<()> {
        let target = self.target;
        let conns = self.conns.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().unwrap().push(conn);
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

pub mod fleet;
