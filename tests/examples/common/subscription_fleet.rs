//! The subscription benchmark's fleet: what each node describes, and the
//! paths wrk requests.

use std::io::Write as _;

use manager_lib::domain::{InboundDescription, InboundProtocol, Network, Security};
use manager_lib::storage::Storage;

use crate::common::Result;

/// What each node of the subscription benchmark describes: the three
/// inbounds a typical node runs (VLESS REALITY with Vision, VMess over
/// WebSocket with TLS, Trojan with TLS).
pub fn three_inbounds() -> Vec<InboundDescription> {
    let base = |tag: &str, protocol, port| {
        let mut i = InboundDescription::new(tag, protocol, port);
        i.security = Security::Tls;
        i.sni = "node.example.com".into();
        i.fingerprint = "chrome".into();
        i
    };
    let mut vless = base("vless-reality", InboundProtocol::Vless, 443);
    vless.flow = "xtls-rprx-vision".into();
    vless.security = Security::Reality;
    vless.sni = "www.example.com".into();
    vless.server_names = vec!["www.example.com".into()];
    vless.short_ids = vec!["6ba85179e30d4fc2".into()];
    vless.public_key = "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo".into();
    let mut vmess = base("vmess-ws", InboundProtocol::Vmess, 8443);
    vmess.network = Network::Ws;
    vmess.path = "/vm".into();
    vmess.host = "node.example.com".into();
    let trojan = base("trojan", InboundProtocol::Trojan, 2083);
    vec![vless, vmess, trojan]
}

/// Writes (once) every user's subscription path with `?format=`, one per
/// line, and answers the file's name.
pub async fn subscription_paths(
    storage: &dyn Storage,
    name: &str,
    backend: &str,
    format: &str,
) -> Result<String> {
    let file = format!("target/bench-{name}-{backend}-{format}.sub.paths");
    if std::path::Path::new(&file).exists() {
        return Ok(file);
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let mut req = manager_lib::domain::PageRequest::first(10_000);
    loop {
        let page = storage.list_users(&req).await?;
        for user in &page.items {
            writeln!(
                out,
                "/sub/{}?format={format}",
                user.subscription_token().expose()
            )?;
        }
        match page.next {
            Some(next) => req.after = Some(next),
            None => break,
        }
    }
    out.flush()?;
    Ok(file)
}
