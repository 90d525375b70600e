//! Share links, the format every client app imports: `vless://`,
//! `trojan://` and `ss://` after the XTLS share-link standard (Xray-core
//! discussion #716) and SIP002, `vmess://` after v2rayN's standard (ver 2);
//! plain, one per line, or as the base64 list most clients subscribe to.
//!
//! This is the hot path of the subscription call (about 30 links per user,
//! tens of thousands of calls a second), so everything is written into one
//! `String`: values are percent-encoded through `Display` as they are
//! written, and the only other buffer is one scratch `Vec` per call for the
//! parts that are themselves encoded (VMess JSON, Shadowsocks' user info).
//!
//! Encoding rules, for every link:
//! - every query value, the remark (the fragment) and the Trojan password
//!   are percent-encoded except RFC 3986's unreserved characters
//!   (`A-Z a-z 0-9 - . _ ~`): a space is `%20` (never `+`, which some
//!   clients read as a plus), and `#`, `&`, `%`, `?`, `/`, `@`, `:`, `,` and
//!   all non-ASCII text are encoded, so any URL parser splits the link where
//!   it should;
//! - an IPv6 address is written in brackets;
//! - keys with empty values are left out; `type` and `security` are always
//!   written.

use std::fmt::{self, Write as _};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use super::{EntryCredential, Listing};
use crate::domain::{InboundDescription, InboundProtocol, Network, Security, ServedInbound, User};

/// What stays literal in an encoded value: RFC 3986's unreserved
/// characters, the one set that means the same in a query, a fragment and
/// user info to every parser.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The uTLS fingerprint a REALITY link gets when the inbound names none:
/// REALITY clients must present one, and `chrome` is what Xray and the
/// panels (Remnawave) default to.
pub const DEFAULT_REALITY_FINGERPRINT: &str = "chrome";

/// The cipher a Shadowsocks link names when the inbound names none: the
/// one the agent gives users then.
pub const DEFAULT_SHADOWSOCKS_METHOD: &str = "aes-256-gcm";

/// Writes every entry of `listing` as a share link, one per line (`\n`
/// between lines, none after the last), each named by its entry's remark.
pub fn write_links(listing: &Listing<'_>, out: &mut String) {
    let mut scratch = Vec::new();
    for (i, entry) in listing.entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        write_into(&listing.credentials[i], entry, out, &mut scratch);
    }
}

/// The share links of `listing` as [`write_links`] writes them.
pub fn links_text(listing: &Listing<'_>) -> String {
    let mut out = String::with_capacity(listing.entries.len() * LINK_CAPACITY);
    write_links(listing, &mut out);
    out
}

/// The subscription body most clients fetch: [`write_links`]'s text in
/// standard base64 (with padding).
///
/// The text is written into a buffer the thread keeps between calls, so a
/// call allocates only its answer: a second allocation of this size per
/// call cost glibc a consolidation of its free lists each time (the
/// largest part of malloc's share in the call's profile).
pub fn base64_links(listing: &Listing<'_>) -> String {
    TEXT.with_borrow_mut(|text| {
        text.clear();
        text.reserve(listing.entries.len() * LINK_CAPACITY);
        write_links(listing, text);
        let encoded = base64_simd::STANDARD.encode_to_string(text.as_bytes());
        if text.capacity() > KEPT_TEXT_BYTES {
            // One unusually long list must not pin its buffer for good.
            *text = String::new();
        }
        encoded
    })
}

thread_local! {
    static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The largest links buffer a thread keeps between calls (a list of about
/// 200 links).
const KEPT_TEXT_BYTES: usize = 64 * 1024;

/// One entry's share link for `user`, with the user's own id and secret.
pub fn link(user: &User, entry: &ServedInbound) -> String {
    credential_link(&EntryCredential::shared(user), entry)
}

/// One entry's share link with `credential`.
pub fn credential_link(credential: &EntryCredential, entry: &ServedInbound) -> String {
    let mut out = String::with_capacity(LINK_CAPACITY);
    write_into(credential, entry, &mut out, &mut Vec::new());
    out
}

/// Appends one entry's share link for `user` to `out` (no newline), with
/// the user's own id and secret.
pub fn write_link(user: &User, entry: &ServedInbound, out: &mut String) {
    write_into(&EntryCredential::shared(user), entry, out, &mut Vec::new());
}

/// About the length of a REALITY link with a short remark: one
/// reservation per link covers most links.
const LINK_CAPACITY: usize = 320;

fn write_into(
    credential: &EntryCredential,
    entry: &ServedInbound,
    out: &mut String,
    scratch: &mut Vec<u8>,
) {
    let ib = &entry.inbound;
    match ib.protocol {
        InboundProtocol::Vless => {
            out.push_str("vless://");
            out.push_str(&credential.uuid);
            out.push('@');
            write_authority(out, &entry.address, ib.port);
            out.push('?');
            let mut q = Query::start(out, ib);
            q.pair("encryption", "none");
            if flow_applies(ib) {
                q.pair("flow", &ib.flow);
            }
        }
        InboundProtocol::Trojan => {
            out.push_str("trojan://");
            write_encoded(out, credential.password.expose());
            out.push('@');
            write_authority(out, &entry.address, ib.port);
            out.push('?');
            Query::start(out, ib);
        }
        InboundProtocol::Shadowsocks => {
            // SIP002's user info: base64url without padding. Standard
            // base64 may hold `/`, which ends the authority for Go's and
            // Android's URL parsers (Mihomo, sing-box, v2rayNG read the link
            // with them); every client we know decodes the url-safe form
            // (Mihomo tries it first, v2rayN maps `-_` back).
            out.push_str("ss://");
            let method = if ib.method.is_empty() {
                DEFAULT_SHADOWSOCKS_METHOD
            } else {
                &ib.method
            };
            scratch.clear();
            scratch.extend_from_slice(method.as_bytes());
            scratch.push(b':');
            scratch.extend_from_slice(credential.password.expose().as_bytes());
            base64_simd::URL_SAFE_NO_PAD.encode_append(&*scratch, out);
            out.push('@');
            write_authority(out, &entry.address, ib.port);
        }
        InboundProtocol::Vmess => {
            // v2rayN's format has no fragment: the remark is `ps` inside.
            out.push_str("vmess://");
            scratch.clear();
            serde_json::to_writer(&mut *scratch, &VmessJson::new(credential, entry))
                .expect("serialising borrowed strings into a Vec cannot fail");
            base64_simd::STANDARD.encode_append(&*scratch, out);
            return;
        }
    }
    out.push('#');
    write_encoded(out, &entry.remark);
}

/// Marzban's rule, which clients follow: a flow (Vision) needs TLS or
/// REALITY straight over TCP; elsewhere a client would refuse the link.
fn flow_applies(ib: &InboundDescription) -> bool {
    !ib.flow.is_empty()
        && ib.network == Network::Tcp
        && matches!(ib.security, Security::Tls | Security::Reality)
}

/// The SNI a client sends: the inbound's, else REALITY's first server name.
fn server_name(ib: &InboundDescription) -> &str {
    if ib.sni.is_empty() && ib.security == Security::Reality {
        ib.server_names.first().map_or("", String::as_str)
    } else {
        &ib.sni
    }
}

/// The uTLS fingerprint to present, with REALITY's default.
fn fingerprint(ib: &InboundDescription) -> &str {
    if ib.fingerprint.is_empty() && ib.security == Security::Reality {
        DEFAULT_REALITY_FINGERPRINT
    } else {
        &ib.fingerprint
    }
}

/// The query of a VLESS or Trojan link, written into the link as it is
/// built: `type` first, so every later pair starts with `&`.
struct Query<'o> {
    out: &'o mut String,
}

impl<'o> Query<'o> {
    /// Writes `type`, the transport's keys, `security` and its keys.
    fn start(out: &'o mut String, ib: &InboundDescription) -> Self {
        out.push_str("type=");
        out.push_str(ib.network.as_str());
        let mut q = Self { out };
        match ib.network {
            Network::Tcp => {
                if ib.header_type == "http" {
                    q.pair("headerType", "http");
                    q.pair("path", &ib.path);
                    q.pair("host", &ib.host);
                }
            }
            Network::Kcp => {
                q.pair("headerType", &ib.header_type);
                q.pair("seed", &ib.seed);
            }
            Network::Ws | Network::HttpUpgrade => {
                q.pair("path", &ib.path);
                q.pair("host", &ib.host);
            }
            Network::Xhttp => {
                q.pair("path", &ib.path);
                q.pair("host", &ib.host);
                q.pair("mode", &ib.mode);
            }
            Network::Grpc => {
                q.pair("serviceName", &ib.service_name);
                q.pair("mode", &ib.mode);
                q.pair("authority", &ib.authority);
            }
        }
        q.pair("security", ib.security.as_str());
        match ib.security {
            Security::None => {}
            Security::Tls => {
                q.pair("sni", server_name(ib));
                q.pair("fp", fingerprint(ib));
                q.list("alpn", &ib.alpn);
                if ib.allow_insecure {
                    q.pair("allowInsecure", "1");
                }
            }
            Security::Reality => {
                q.pair("sni", server_name(ib));
                q.pair("fp", fingerprint(ib));
                q.pair("pbk", &ib.public_key);
                q.pair("sid", ib.short_ids.first().map_or("", String::as_str));
                q.pair("spx", &ib.spider_x);
            }
        }
        q
    }

    /// `&key=value`, the value encoded; nothing when the value is empty.
    fn pair(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        self.key(key);
        write_encoded(self.out, value);
    }

    /// `&key=a,b,…`: the items comma-joined, the whole value encoded (the
    /// comma too, as `%2C`); nothing when every item is empty.
    fn list(&mut self, key: &str, items: &[String]) {
        let mut items = items.iter().filter(|i| !i.is_empty());
        let Some(first) = items.next() else { return };
        self.key(key);
        write_encoded(self.out, first);
        for item in items {
            self.out.push_str("%2C");
            write_encoded(self.out, item);
        }
    }

    fn key(&mut self, key: &str) {
        self.out.push('&');
        self.out.push_str(key);
        self.out.push('=');
    }
}

/// Through the encoder's chunks rather than its `Display`, which would go
/// through `fmt::write` and a `dyn Write` call per chunk.
fn write_encoded(out: &mut String, value: &str) {
    for chunk in utf8_percent_encode(value, COMPONENT) {
        out.push_str(chunk);
    }
}

/// `host:port`, an IPv6 address in brackets (a host name never holds `:`).
fn write_authority(out: &mut String, address: &str, port: u16) {
    if address.contains(':') && !address.starts_with('[') {
        out.push('[');
        out.push_str(address);
        out.push(']');
    } else {
        out.push_str(address);
    }
    out.push(':');
    write_display(out, &port);
}

fn write_display(out: &mut String, value: &dyn fmt::Display) {
    write!(out, "{value}").expect("writing into a String cannot fail");
}

/// The JSON inside a `vmess://` link, v2rayN's "ver 2": every value a
/// string, as its wiki writes them; `aid` 0 (AEAD; the core refuses the
/// legacy header), `scy` auto.
#[derive(Serialize)]
struct VmessJson<'a> {
    v: &'static str,
    ps: &'a str,
    /// The address as is: no brackets around IPv6 (it is not a URL).
    add: &'a str,
    #[serde(serialize_with = "as_text")]
    port: u16,
    id: &'a str,
    aid: &'static str,
    scy: &'static str,
    net: &'static str,
    /// tcp/kcp: the header type; grpc/xhttp: the mode (as v2rayN keeps it).
    #[serde(rename = "type")]
    kind: &'a str,
    /// grpc: the authority.
    host: &'a str,
    /// grpc: the service name; kcp: the seed.
    path: &'a str,
    tls: &'static str,
    sni: &'a str,
    #[serde(serialize_with = "comma_joined")]
    alpn: &'a [String],
    fp: &'a str,
}

impl<'a> VmessJson<'a> {
    fn new(credential: &'a EntryCredential, entry: &'a ServedInbound) -> Self {
        let ib = &entry.inbound;
        let (kind, host, path) = match ib.network {
            Network::Tcp | Network::Kcp => (ib.header_type.as_str(), &ib.host, &ib.path),
            Network::Ws | Network::HttpUpgrade => ("", &ib.host, &ib.path),
            Network::Xhttp => (ib.mode.as_str(), &ib.host, &ib.path),
            Network::Grpc => (ib.mode.as_str(), &ib.authority, &ib.service_name),
        };
        let path = if ib.network == Network::Kcp {
            &ib.seed
        } else {
            path
        };
        let (tls, sni, alpn, fp): (_, _, &[String], _) = match ib.security {
            Security::None => ("", "", &[], ""),
            Security::Tls => ("tls", server_name(ib), &ib.alpn, fingerprint(ib)),
            Security::Reality => ("reality", server_name(ib), &[], fingerprint(ib)),
        };
        Self {
            v: "2",
            ps: &entry.remark,
            add: &entry.address,
            port: ib.port,
            id: &credential.uuid,
            aid: "0",
            scy: "auto",
            net: ib.network.as_str(),
            kind: if kind.is_empty() { "none" } else { kind },
            host,
            path,
            tls,
            sni,
            alpn,
            fp,
        }
    }
}

fn as_text<T: fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn comma_joined<S: serde::Serializer>(items: &&[String], s: S) -> Result<S::Ok, S::Error> {
    struct Joined<'a>(&'a [String]);
    impl fmt::Display for Joined<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for (i, item) in self.0.iter().filter(|i| !i.is_empty()).enumerate() {
                if i > 0 {
                    f.write_char(',')?;
                }
                f.write_str(item)?;
            }
            Ok(())
        }
    }
    s.collect_str(&Joined(items))
}

#[cfg(test)]
#[path = "links_tests.rs"]
mod tests;
