//! [`CoreApi`] over shadowsocks-libev's `ss-manager`: UDP datagrams
//! `add: {"server_port": N, "password": "…", "method": "…"}` → `ok`,
//! `remove: {"server_port": N}` → `ok`, `ping` → `stat: {"N": bytes, …}`.
//! One user is one port (one `ss-server` each), from a [`PortMap`].
//!
//! # Traffic
//!
//! `ping` answers, per port, the bytes (both directions together, as the
//! port's `ss-server` last reported them, every few seconds) since that
//! `ss-server` started: cumulative, never reset by reading. The client
//! keeps, per port, the value it last saw (its *baseline*) and counts the
//! growth. The baseline is 0 when this client adds the port; a port absent
//! from a `ping` (the core restarted; the agent adds it again) loses its
//! baseline; a value below the baseline (its `ss-server` started again)
//! counts from 0. Before removing a port it reads it once more, so what
//! was reported is kept. Every command holds one lock, so a read never
//! interleaves with an add or remove. What a crashed core's servers had
//! not yet reported is lost (as with any core's in-memory counters).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

use super::ports::PortMap;
use super::{Account, CoreApi, CoreError, CoreUser, ShadowsocksCipher};

/// The one "inbound" of an `ss-manager` core, as the agent names it.
pub const SS_MANAGER_TAG: &str = "ss-manager";

/// A `ping` answer larger than this may be followed by more datagrams.
const FULL_DATAGRAM: usize = 60_000;
/// How long to wait for the next datagram of a long answer.
const NEXT_DATAGRAM: Duration = Duration::from_millis(100);

/// ss-manager's answer when a port's server cannot bind.
const BUSY: &str = "port is not available";
/// How often an add of a busy port is tried again, and the pause between.
const BUSY_RETRIES: u32 = 10;
const BUSY_PAUSE: Duration = Duration::from_millis(200);
/// How many busy ports one add moves a user past before it gives up.
const MAX_MOVES: u32 = 8;

/// The `ss-manager` method of a cipher.
pub fn method_of(cipher: ShadowsocksCipher) -> &'static str {
    match cipher {
        ShadowsocksCipher::Aes128Gcm => "aes-128-gcm",
        ShadowsocksCipher::Aes256Gcm => "aes-256-gcm",
        ShadowsocksCipher::Chacha20Poly1305 => "chacha20-ietf-poly1305",
        ShadowsocksCipher::Xchacha20Poly1305 => "xchacha20-ietf-poly1305",
    }
}

/// Bytes per port of a `stat: {"PORT": bytes, …}` answer.
pub fn parse_stat(answer: &str) -> Result<HashMap<u16, u64>, CoreError> {
    let bad = |why: &str| CoreError::Other(format!("ss-manager ping answer {why}"));
    let body = answer
        .strip_prefix("stat:")
        .ok_or_else(|| bad("does not start with `stat:`"))?;
    let map: HashMap<String, u64> =
        serde_json::from_str(body.trim()).map_err(|e| bad(&format!("is not a map: {e}")))?;
    map.into_iter()
        .map(|(port, bytes)| {
            let port = port
                .parse()
                .map_err(|_| bad("names a port that is no port"))?;
            Ok((port, bytes))
        })
        .collect()
}

#[derive(Debug, Default)]
struct Traffic {
    /// The value each port had at the last look.
    baseline: HashMap<u16, u64>,
    /// Bytes per user id read from the core and not yet taken.
    banked: HashMap<String, u64>,
}

impl Traffic {
    /// Counts the growth of every port of `stat` held by a user of `ports`.
    fn account(&mut self, stat: &HashMap<u16, u64>, ports: &PortMap) {
        self.baseline.retain(|port, _| stat.contains_key(port));
        for (&port, &now) in stat {
            let Some(id) = ports.owner(port) else {
                continue;
            };
            let before = self.baseline.insert(port, now).unwrap_or(0);
            let grown = now.checked_sub(before).unwrap_or(now);
            if grown > 0 {
                *self.banked.entry(id).or_default() += grown;
            }
        }
    }
}

/// A client of one `ss-manager`'s UDP manager address.
#[derive(Debug)]
pub struct SsManagerClient {
    address: String,
    timeout: Duration,
    ports: Arc<PortMap>,
    /// Held across every command, see the module's doc.
    traffic: Mutex<Traffic>,
    /// Since when the manager answers, without a failure in between.
    answering_since: std::sync::Mutex<Option<Instant>>,
}

impl SsManagerClient {
    /// A client of the manager at `address` (`HOST:PORT`, UDP), each
    /// command waiting at most `timeout` for its answer; users' ports from
    /// `ports`.
    pub fn new(address: impl Into<String>, timeout: Duration, ports: Arc<PortMap>) -> Self {
        Self {
            address: address.into(),
            timeout,
            ports,
            traffic: Mutex::new(Traffic::default()),
            answering_since: std::sync::Mutex::new(None),
        }
    }

    /// The users' ports.
    pub fn ports(&self) -> &Arc<PortMap> {
        &self.ports
    }

    /// Sends one command and returns the answer's datagrams, joined.
    async fn ask(&self, command: &str) -> Result<String, CoreError> {
        let result = self.exchange(command).await;
        let mut since = self
            .answering_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &result {
            Ok(_) => {
                since.get_or_insert_with(Instant::now);
            }
            Err(_) => *since = None,
        }
        result
    }

    async fn exchange(&self, command: &str) -> Result<String, CoreError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            CoreError::Unavailable(format!("ss-manager at {}: {what}: {e}", self.address))
        };
        let target = tokio::net::lookup_host(&self.address)
            .await
            .map_err(|e| unavailable("address", &e))?
            .next()
            .ok_or_else(|| unavailable("address", &"resolves to nothing"))?;
        let local = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| unavailable("bind", &e))?;
        socket
            .connect(target)
            .await
            .map_err(|e| unavailable("connect", &e))?;
        socket
            .send(command.as_bytes())
            .await
            .map_err(|e| unavailable("send", &e))?;
        let mut buf = vec![0u8; 65_536];
        let n = tokio::time::timeout(self.timeout, socket.recv(&mut buf))
            .await
            .map_err(|_| unavailable("no answer", &format!("within {:?}", self.timeout)))?
            .map_err(|e| unavailable("receive", &e))?;
        let mut answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        // A long `ping` answer comes in several datagrams, each a map.
        let mut last = n;
        while last >= FULL_DATAGRAM {
            match tokio::time::timeout(NEXT_DATAGRAM, socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    answer.push('\n');
                    answer.push_str(&String::from_utf8_lossy(&buf[..n]));
                    last = n;
                }
                _ => break,
            }
        }
        Ok(answer)
    }

    /// Bytes per port, as `ping` says now.
    async fn ping(&self) -> Result<HashMap<u16, u64>, CoreError> {
        let answer = self.ask("ping").await?;
        let mut all = HashMap::new();
        for part in answer.split('\n').filter(|p| p.starts_with("stat:")) {
            all.extend(parse_stat(part)?);
        }
        if all.is_empty() && !answer.starts_with("stat:") {
            return Err(CoreError::Other(format!(
                "ss-manager answered ping with {answer:?}"
            )));
        }
        Ok(all)
    }

    async fn command_ok(&self, command: &str, what: &str) -> Result<(), CoreError> {
        match self.ask(command).await?.trim() {
            "ok" => Ok(()),
            other => Err(CoreError::Other(format!(
                "ss-manager refused {what}: {other}"
            ))),
        }
    }
}

#[async_trait]
impl CoreApi for SsManagerClient {
    async fn add_user(&self, inbound_tag: &str, user: &CoreUser) -> Result<(), CoreError> {
        check_tag(inbound_tag)?;
        let Account::Shadowsocks { password, cipher } = &user.account else {
            return Err(CoreError::Unsupported(
                "ss-manager holds Shadowsocks users only",
            ));
        };
        let mut port = self
            .ports
            .assign(&user.email)
            .map_err(|e| CoreError::Other(e.to_string()))?;
        let mut traffic = self.traffic.lock().await;
        let stat = self.ping().await?;
        traffic.account(&stat, &self.ports);
        if stat.contains_key(&port) {
            return Err(CoreError::UserExists {
                email: user.email.clone(),
            });
        }
        // A server of a core that just stopped may still hold the port for
        // a moment (seen when an agent restarts): ss-manager then answers
        // `port is not available` and forgets the port, so asking again is
        // safe. A port still busy after that, or any busy port the user
        // moved to, is another process's: the user moves to the next port.
        let mut patience = BUSY_RETRIES;
        let mut moves = 0;
        loop {
            let command = format!(
                "add: {}",
                json!({ "server_port": port, "password": password, "method": method_of(*cipher) })
            );
            match self.command_ok(&command, &format!("port {port}")).await {
                Ok(()) => break,
                Err(CoreError::Other(why)) if why.ends_with(BUSY) && patience > 0 => {
                    patience -= 1;
                    tokio::time::sleep(BUSY_PAUSE).await;
                }
                Err(CoreError::Other(why)) if why.ends_with(BUSY) && moves < MAX_MOVES => {
                    patience = 0;
                    moves += 1;
                    let busy = port;
                    port = self
                        .ports
                        .move_away(&user.email)
                        .map_err(|e| CoreError::Other(e.to_string()))?;
                    tracing::warn!(
                        busy,
                        port,
                        "another process holds a user's port: the user moves to the next one"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        traffic.baseline.insert(port, 0);
        Ok(())
    }

    async fn remove_user(&self, inbound_tag: &str, email: &str) -> Result<(), CoreError> {
        check_tag(inbound_tag)?;
        let not_found = || CoreError::UserNotFound {
            email: email.to_owned(),
        };
        let port = self.ports.get(email).ok_or_else(not_found)?;
        let mut traffic = self.traffic.lock().await;
        let stat = self.ping().await?;
        traffic.account(&stat, &self.ports);
        if !stat.contains_key(&port) {
            return Err(not_found());
        }
        self.command_ok(
            &format!("remove: {}", json!({ "server_port": port })),
            &format!("removing port {port}"),
        )
        .await?;
        traffic.baseline.remove(&port);
        self.ports
            .release(email)
            .map_err(|e| CoreError::Other(e.to_string()))
    }

    async fn users_count(&self, inbound_tag: &str) -> Result<Option<u64>, CoreError> {
        check_tag(inbound_tag)?;
        Ok(Some(self.ping().await?.len() as u64))
    }

    /// `ss-manager` tells no uptime: the whole seconds since it began
    /// answering this client without a failure in between.
    async fn uptime_secs(&self) -> Result<u32, CoreError> {
        self.ping().await?;
        let since = *self
            .answering_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(since.map_or(0, |s| {
            u32::try_from(s.elapsed().as_secs()).unwrap_or(u32::MAX)
        }))
    }

    /// Both directions as one number: reported as downlink.
    async fn take_user_traffic(&self) -> Result<Vec<(String, u64, u64)>, CoreError> {
        let mut traffic = self.traffic.lock().await;
        let stat = self.ping().await?;
        traffic.account(&stat, &self.ports);
        Ok(traffic
            .banked
            .drain()
            .map(|(id, bytes)| (id, 0, bytes))
            .collect())
    }
}

fn check_tag(tag: &str) -> Result<(), CoreError> {
    if tag == SS_MANAGER_TAG {
        Ok(())
    } else {
        Err(CoreError::InboundNotFound {
            tag: tag.to_owned(),
        })
    }
}

#[cfg(test)]
#[path = "ssmanager_tests.rs"]
mod tests;
