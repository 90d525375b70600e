//! Who a request comes from, for the per-client limits and the logs: the
//! TCP peer's address, or — only when that peer is one of the operator's
//! [`TrustedProxies`] — the address the proxies recorded in
//! `X-Forwarded-For`.
//!
//! Each proxy appends the address it received the request from, so the
//! header reads left to right from the (claimed) client to the last proxy,
//! and only the entries appended by trusted proxies can be believed: the
//! client is the right-most entry that is not itself a trusted proxy. A
//! client can put anything to the left of that, which is never read. An
//! entry that is not an address (`unknown`, an obfuscated name, garbage)
//! ends the walk at the last trusted hop, which is then counted as the
//! client. An untrusted peer's header is ignored whole.
//!
//! ```
//! use std::net::IpAddr;
//! use axum::http::HeaderMap;
//! use manager_lib::api::client_addr::TrustedProxies;
//! let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3".parse().unwrap());
//! let proxy: IpAddr = "10.0.0.1".parse().unwrap();
//! assert_eq!(proxies.client(proxy, &headers), "198.51.100.7".parse::<IpAddr>().unwrap());
//! let stranger: IpAddr = "203.0.113.9".parse().unwrap();
//! assert_eq!(proxies.client(stranger, &headers), stranger);
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use serde::Deserialize;

/// The header proxies append the client's address to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The addresses and networks of the reverse proxies in front of the
/// manager (`trusted_proxies`): empty by default, so no header is believed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|n| n.to_string()))
            .finish()
    }
}

impl TrustedProxies {
    /// Addresses (`192.0.2.10`, `::1`) and networks (`10.0.0.0/8`,
    /// `fd00::/8`); an error names the entry that is neither.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("trusted_proxies: {entry:?} is not an IP address or network")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// A comma-separated list (the `XM_TRUSTED_PROXIES` form); empty for none.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        Self::parse(list.split(',').filter(|e| !e.trim().is_empty()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as its IPv4) is
    /// one of the proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut hops = Vec::new();
        for value in headers.get_all(X_FORWARDED_FOR) {
            match value.to_str() {
                Ok(text) => hops.extend(text.split(',').map(parse_hop)),
                Err(_) => hops.push(None),
            }
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(ip) if self.contains(ip) => client = ip,
                Some(ip) => return ip,
                None => return client,
            }
        }
        client
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        Self::parse(entries.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

/// One entry of `X-Forwarded-For`: an address, with a port or without
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`, `2001:db8::1`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
}

/// The client's address a request was tagged with by [`resolve_client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Axum middleware, outermost on the API: tags each request that carries
/// its peer's address (`ConnectInfo`, set by the listener) with the
/// client's [`ClientAddr`].
pub async fn resolve_client(
    State(proxies): State<Arc<TrustedProxies>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = proxies.client(peer.ip(), req.headers());
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

/// The client of `req`: its [`ClientAddr`], else its peer's address, else
/// `None` (a router called in-process without connect info).
pub fn client_of(req: &Request) -> Option<IpAddr> {
    client_in(req.extensions())
}

/// [`client_of`] from a request's extensions (for a handler's parts).
pub fn client_in(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions.get::<ClientAddr>().map(|c| c.0).or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(X_FORWARDED_FOR, v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8", "192.0.2.1"]).unwrap();
        let headers = forwarded(&["1.1.1.1, 198.51.100.7", "10.9.9.9, 192.0.2.1"]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &headers), ip("198.51.100.7"));
        // Only trusted hops: the furthest of them.
        let headers = forwarded(&["10.2.2.2, 192.0.2.1"]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &headers), ip("10.2.2.2"));
        // No header: the proxy itself.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn an_untrusted_peer_and_an_empty_list_ignore_the_header() {
        let headers = forwarded(&["198.51.100.7"]);
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        assert_eq!(
            proxies.client(ip("203.0.113.1"), &headers),
            ip("203.0.113.1")
        );
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.1"), &headers), ip("10.0.0.1"));
    }

    #[test]
    fn an_unreadable_entry_stops_at_the_last_trusted_hop() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let headers = forwarded(&["198.51.100.7, unknown, 10.3.3.3"]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &headers), ip("10.3.3.3"));
        let headers = forwarded(&["198.51.100.7, garbage"]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &headers), ip("10.0.0.1"));
    }

    #[test]
    fn ports_ipv6_and_mapped_addresses_are_understood() {
        let proxies = TrustedProxies::parse(["::1", "10.0.0.0/8"]).unwrap();
        let headers = forwarded(&["[2001:db8::5]:4711, 198.51.100.7:80"]);
        assert_eq!(proxies.client(ip("::1"), &headers), ip("198.51.100.7"));
        let headers = forwarded(&["2001:db8::5"]);
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.1"), &headers),
            ip("2001:db8::5")
        );
    }

    #[test]
    fn entries_are_addresses_or_networks() {
        let parsed = TrustedProxies::parse_list(" 10.1.2.3/8 , ::1,").unwrap();
        assert_eq!(format!("{parsed:?}"), r#"["10.0.0.0/8", "::1/128"]"#);
        assert!(TrustedProxies::parse_list("").unwrap().is_empty());
        let error = TrustedProxies::parse_list("10.0.0.0/33").unwrap_err();
        assert!(error.contains("10.0.0.0/33"), "{error}");
        assert!(TrustedProxies::parse(["proxy.example.com"]).is_err());
    }
}
