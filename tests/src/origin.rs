//! The bytes real clients must fetch through a proxy: a tiny HTTP server on
//! 127.0.0.1:0 that answers every request with one fixed body of
//! pseudo-random bytes, whose SHA-256 the test compares with what came back.
//! Random bytes, not a pattern, so a client that fetched part of the body
//! twice or in the wrong order cannot pass.

use std::net::SocketAddr;

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

/// The default body size: big enough to take several TLS records and
/// socket reads, small enough that nine clients fetch it in well under a
/// second.
pub const ORIGIN_BYTES: usize = 64 * 1024;

/// A running origin server; stopped on drop.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    sha256: [u8; 32],
    len: usize,
    task: JoinHandle<()>,
}

impl Origin {
    /// Serves [`ORIGIN_BYTES`] bytes.
    pub async fn start() -> Self {
        Self::with_len(ORIGIN_BYTES).await
    }

    /// Serves `len` pseudo-random bytes (a fresh seed each time).
    pub async fn with_len(len: usize) -> Self {
        let mut body = vec![0u8; len];
        rand::rng().fill_bytes(&mut body);
        let sha256 = Sha256::digest(&body).into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let body: std::sync::Arc<[u8]> = body.into();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    if read_request_head(&mut stream).await.is_none() {
                        return;
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(head.as_bytes()).await.is_ok()
                        && stream.write_all(&body).await.is_ok()
                    {
                        let _ = stream.shutdown().await;
                    }
                });
            }
        });
        Self {
            addr,
            sha256,
            len,
            task,
        }
    }

    /// `http://127.0.0.1:PORT/file`: what clients GET through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}/file", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The body's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the body is empty (only with `with_len(0)`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `fetched` is exactly the body (compared by SHA-256).
    pub fn is_body(&self, fetched: &[u8]) -> bool {
        fetched.len() == self.len && <[u8; 32]>::from(Sha256::digest(fetched)) == self.sha256
    }

    /// The body's SHA-256 in hex, for messages.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads until the end of the request head; `None` if the peer closed or
/// sent more than 64 KiB without ending it.
async fn read_request_head(stream: &mut tokio::net::TcpStream) -> Option<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => request.extend_from_slice(&buf[..read]),
        }
        if request.len() > 64 * 1024 {
            return None;
        }
    }
    Some(())
}
