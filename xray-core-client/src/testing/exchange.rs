//! Users moving bytes through a core without a client core: raw VLESS
//! connections ([`vless_exchange`]) to a local server ([`serve_exchange`]),
//! so thousands of users can make the core count traffic in seconds.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A TCP server on 127.0.0.1:0 that reads `request` bytes from each
/// connection and answers `answer` bytes: the far end of [`vless_exchange`].
/// Abort the handle to stop it.
pub async fn serve_exchange(request: usize, answer: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let handle = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = vec![0u8; request];
                if stream.read_exact(&mut got).await.is_ok() {
                    let _ = stream.write_all(&vec![7u8; answer]).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    (addr, handle)
}

/// One connection of the VLESS user `id` through the core's VLESS inbound
/// at 127.0.0.1:`vless_port` to `target` (IPv4), spoken raw (no client core,
/// so thousands of users can move bytes in seconds): sends `send` bytes and
/// reads `answer` bytes back (from a [`serve_exchange`] server). Whether the
/// whole answer came within five seconds.
pub async fn vless_exchange(
    vless_port: u16,
    id: &uuid::Uuid,
    target: SocketAddr,
    send: usize,
    answer: usize,
) -> bool {
    let SocketAddr::V4(target) = target else {
        return false;
    };
    // Version 0, the id, no addons, command 1 (TCP), port, address type 1 (IPv4).
    let mut request = vec![0u8];
    request.extend_from_slice(id.as_bytes());
    request.extend_from_slice(&[0, 1]);
    request.extend_from_slice(&target.port().to_be_bytes());
    request.push(1);
    request.extend_from_slice(&target.ip().octets());
    request.resize(request.len() + send, 1);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", vless_port))
            .await
            .ok()?;
        stream.write_all(&request).await.ok()?;
        // Two bytes of VLESS response header, then the answer; not to the
        // stream's end: the core holds a closed link open for its policy's
        // `uplinkOnly` (1 s).
        let mut got = vec![0u8; 2 + answer];
        stream.read_exact(&mut got).await.ok()?;
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
        .is_some()
}
