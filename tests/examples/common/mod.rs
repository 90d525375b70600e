//! What the manager's benchmarks share: a simulated fleet seeded through
//! the manager, and its serving nodes marked as having applied every user
//! change (straight in the storage: no heartbeat runs beside the figures).

use std::io::Write as _;

use manager_lib::domain::{InboundDescription, InboundProtocol, Network, RequiredStatus, Security};
use manager_lib::manager::Manager;
use manager_lib::storage::Storage;
use manager_lib::transport::simulated::SimulatedFleet;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `n` simulated nodes `http://sim-{i}.bench:9000`, registered; the first
/// `serving` of them started.
pub async fn seed_nodes(
    manager: &Manager,
    sim: &SimulatedFleet,
    n: usize,
    serving: usize,
) -> Result<()> {
    for i in 0..n {
        let endpoint = format!("http://sim-{i}.bench:9000");
        sim.add_node(&endpoint);
        let node = manager.new_node(&endpoint).await?;
        if i < serving {
            manager.start_node(node.id).await?;
        }
    }
    Ok(())
}

/// Every node meant to run has applied every user change so far.
pub async fn ack_running_nodes(storage: &dyn Storage) -> Result<()> {
    let last = storage.fleet_state().await?.last_seq;
    for node in manager_lib::storage::all_nodes(storage).await? {
        if node.required_status == RequiredStatus::Running {
            storage.ack_operations(node.id, last).await?;
        }
    }
    Ok(())
}

/// What each node of the subscription benchmark describes: the three
/// inbounds a typical node runs (VLESS REALITY with Vision, VMess over
/// WebSocket with TLS, Trojan with TLS).
pub fn three_inbounds() -> Vec<InboundDescription> {
    let base = |tag: &str, protocol, port| InboundDescription {
        tag: tag.into(),
        protocol,
        port,
        flow: String::new(),
        method: String::new(),
        network: Network::Tcp,
        header_type: String::new(),
        path: String::new(),
        host: String::new(),
        service_name: String::new(),
        mode: String::new(),
        authority: String::new(),
        seed: String::new(),
        security: Security::Tls,
        sni: "node.example.com".into(),
        alpn: Vec::new(),
        fingerprint: "chrome".into(),
        server_names: Vec::new(),
        short_ids: Vec::new(),
        public_key: String::new(),
        spider_x: String::new(),
        allow_insecure: false,
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
