//! The subscription formats against the real client apps: every generated
//! sing-box config passes `sing-box check` (sing-box 1.14.4), every Clash
//! config passes `mihomo -t` (Mihomo 1.19.2), and the Xray configs V2Ray
//! 4.34 understands pass `v2ray -test`. Then both apps run the config with
//! hostile names and list, through their Clash API, exactly the names
//! served; and both carry real traffic through a V2Ray server for the
//! kinds all three share without TLS, as does V2Ray itself as a client of
//! the Xray JSON. The apps, their binaries and the rule for a missing one
//! (skip, or fail with `CI=true`) are `tests::clients`'.

use std::path::Path;
use std::time::Duration;

use manager_lib::domain::{InboundProtocol, Network, Security, ServedInbound};
use manager_lib::subscription::{Listing, clash, singbox, testing, xray};
use serde_json::Value;
use tests::client_checks::{mihomo_test, sing_box_check, v2ray_test};
use tests::clients::{
    ClientApp, country_mmdb, fetches, mihomo_binary, run_mihomo_in, run_sing_box, run_v2ray,
    run_v2ray_as_given, sing_box_binary, v2ray_client_binary,
};
use tests::origin::Origin;
use xray_core_client::testing::free_port;

/// How long a config's app gets to carry the origin's body.
const CARRY: Duration = Duration::from_secs(20);

/// Remarks that are the formats' own names: the groups, `direct`, Clash's
/// built-in policies.
const RESERVED: [&str; 8] = [
    "direct", "select", "auto", "Proxy", "Auto", "DIRECT", "REJECT", "GLOBAL",
];

/// Every fixture together, then each alone (so a failure names its kind),
/// then the fixtures twice over (names made unique), then named as the
/// formats name their own parts, then named what YAML would misread, then
/// none.
fn listings<'a>(
    entries: &'a [ServedInbound],
    reserved: &'a [ServedInbound],
    hostile: &'a [ServedInbound],
) -> Vec<(String, Vec<&'a ServedInbound>)> {
    let mut out = vec![("all".to_owned(), entries.iter().collect())];
    out.extend(entries.iter().map(|e| (e.inbound.tag.clone(), vec![e])));
    out.push((
        "all twice".to_owned(),
        entries.iter().chain(entries).collect(),
    ));
    out.push(("reserved names".to_owned(), reserved.iter().collect()));
    out.push(("YAML-hostile names".to_owned(), hostile.iter().collect()));
    out.push(("none".to_owned(), Vec::new()));
    out
}

/// Remarks a YAML parser would read as something else, or refuse, unless
/// escaped.
const HOSTILE: [&str; 8] = [
    "key: value",
    "- [list]",
    "*ref",
    "!tag",
    "# comment",
    "null",
    "line\u{2028}sep\u{2029}para\u{85}nel",
    "del\u{7f} bom\u{feff} c1\u{9b}",
];

/// The fixtures that every format carries, renamed to `names`.
fn renamed(names: &[&str]) -> Vec<ServedInbound> {
    let mut entries: Vec<ServedInbound> = testing::entries()
        .into_iter()
        .filter(|e| singbox::carries(&e.inbound) && clash::carries(&e.inbound))
        .filter(|e| e.inbound.security != Security::Reality)
        .collect();
    for (e, name) in entries.iter_mut().zip(names) {
        e.remark = (*name).into();
    }
    entries.truncate(names.len());
    entries
}

/// This sing-box build has no uTLS, and REALITY needs it: the test's copy
/// drops `tls.utls` and the REALITY outbounds (with their tags in the
/// groups): sing-box refuses REALITY without uTLS ("uTLS, which is
/// required by reality is not included in this build"). What is served
/// keeps both; Mihomo checks REALITY.
fn without_utls(config: &str) -> String {
    let mut v: Value = serde_json::from_str(config).unwrap();
    let outbounds = v["outbounds"].as_array_mut().unwrap();
    let reality: Vec<Value> = outbounds
        .iter()
        .filter(|o| o["tls"]["reality"]["enabled"] == true)
        .map(|o| o["tag"].clone())
        .collect();
    outbounds.retain(|o| !reality.contains(&o["tag"]));
    for o in outbounds.iter_mut() {
        if let Some(tls) = o.get_mut("tls").and_then(Value::as_object_mut) {
            tls.remove("utls");
        }
        if let Some(members) = o.get_mut("outbounds").and_then(Value::as_array_mut) {
            members.retain(|t| !reality.contains(t));
        }
    }
    // Nothing left but the groups (REALITY alone): what a listing with no
    // entry serves.
    if outbounds.len() == 3 && !reality.is_empty() {
        outbounds.retain(|o| o["type"] == "direct");
        v["route"]["final"] = v["outbounds"][0]["tag"].clone();
    }
    v.to_string()
}

#[test]
fn every_sing_box_config_passes_sing_box_check() {
    let Some(bin) = sing_box_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let user = testing::user("alice");
    let entries = testing::entries();
    let (reserved, hostile) = (renamed(&RESERVED), renamed(&HOSTILE));
    let mut failures = Vec::new();
    for (what, chosen) in listings(&entries, &reserved, &hostile) {
        let config = singbox::render(&Listing::new(&user, chosen));
        let file = dir.path().join("config.json");
        std::fs::write(&file, without_utls(&config)).unwrap();
        if let Err(e) = sing_box_check(&bin, &file) {
            failures.push(format!("{what}: {e}\n{config}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A home for Mihomo with the GeoIP database it would otherwise download.
fn mihomo_home(mmdb: &Path) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::copy(mmdb, home.path().join("Country.mmdb")).unwrap();
    home
}

#[test]
fn every_clash_config_passes_mihomo_test() {
    let (Some(bin), Some(mmdb)) = (mihomo_binary(), country_mmdb()) else {
        return;
    };
    let home = mihomo_home(&mmdb);
    let user = testing::user("alice");
    let entries = testing::entries();
    let (reserved, hostile) = (renamed(&RESERVED), renamed(&HOSTILE));
    let mut failures = Vec::new();
    for (what, chosen) in listings(&entries, &reserved, &hostile) {
        let config = clash::render(&Listing::new(&user, chosen));
        let file = home.path().join("config.yaml");
        std::fs::write(&file, &config).unwrap();
        if let Err(e) = mihomo_test(&bin, home.path(), &file) {
            failures.push(format!("{what}: {e}\n{config}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// What V2Ray 4.34 dials as a client: tcp or ws, bare or TLS; no REALITY,
/// Vision, httpupgrade, grpc (4.36+), xhttp or mKCP of Xray's.
fn v2ray_understands(e: &ServedInbound) -> bool {
    let i = &e.inbound;
    matches!(i.network, Network::Tcp | Network::Ws)
        && i.security != Security::Reality
        && i.flow.is_empty()
        && (i.protocol != InboundProtocol::Shadowsocks || i.security == Security::None)
}

#[test]
fn xray_configs_v2ray_understands_pass_v2ray_test() {
    let Some(bin) = v2ray_client_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let user = testing::user("alice");
    let entries: Vec<ServedInbound> = testing::entries()
        .into_iter()
        .filter(v2ray_understands)
        .collect();
    assert!(entries.len() >= 5, "the fixtures cover what V2Ray dials");
    let configs: Value =
        serde_json::from_str(&xray::render(&Listing::new(&user, &entries))).unwrap();
    let mut failures = Vec::new();
    for config in configs.as_array().unwrap() {
        let file = dir.path().join("config.json");
        std::fs::write(&file, config.to_string()).unwrap();
        if let Err(e) = v2ray_test(&bin, &file) {
            failures.push(format!("{}: {e}\n{config}", config["remarks"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The fixtures, the reserved and the YAML-hostile names in one listing.
fn everything() -> Vec<ServedInbound> {
    let mut entries = testing::entries();
    entries.extend(renamed(&RESERVED));
    entries.extend(renamed(&HOSTILE));
    entries
}

/// The names `list` gives its items under `key`.
fn names_in(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| o[key].as_str().unwrap().to_owned())
        .collect()
}

/// Every name in `expected` is among what `app` loaded.
async fn assert_loaded(app: &mut ClientApp, expected: &[String]) {
    let loaded = app.loaded_names().await;
    let missing: Vec<_> = expected.iter().filter(|n| !loaded.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "not loaded: {missing:?}; loaded: {loaded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mihomo_loads_every_name_as_written() {
    let (Some(bin), Some(mmdb)) = (mihomo_binary(), country_mmdb()) else {
        return;
    };
    let user = testing::user("alice");
    let entries = everything();
    let config = clash::render(&Listing::new(&user, &entries));
    let read: Value = serde_norway::from_str(&config).unwrap();
    let mut expected = names_in(&read["proxies"], "name");
    expected.extend(names_in(&read["proxy-groups"], "name"));
    for hostile in HOSTILE {
        assert!(
            expected.iter().any(|n| n == hostile),
            "{hostile:?} is served"
        );
    }
    // No selection: the names as loaded, before anything is picked.
    let mut app = run_mihomo_in(&bin, &mmdb, &config, &[]).await;
    assert_loaded(&mut app, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sing_box_loads_every_tag_as_written() {
    let Some(bin) = sing_box_binary() else {
        return;
    };
    let user = testing::user("alice");
    let entries = everything();
    let mut v: Value = serde_json::from_str(&without_utls(&singbox::render(&Listing::new(
        &user, &entries,
    ))))
    .unwrap();
    let expected = names_in(&v["outbounds"], "tag");
    for hostile in HOSTILE {
        assert!(
            expected.iter().any(|n| n == hostile),
            "{hostile:?} is served"
        );
    }
    // The runner puts the Clash API on a free port.
    v["experimental"] = serde_json::json!({"clash_api": {}});
    let mut app = run_sing_box(&bin, v, None).await;
    assert_loaded(&mut app, &expected).await;
}

/// A V2Ray 4.34 server with the kinds both clients and V2Ray share without
/// TLS: VLESS over tcp, VMess over ws with a Host, VMess over tcp with the
/// http header, Shadowsocks; and the entries that describe it.
async fn v2ray_server(
    bin: &Path,
    user: &manager_lib::domain::User,
) -> (ClientApp, Vec<ServedInbound>) {
    let id = user.id.to_string();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let config = serde_json::json!({
        "log": {"loglevel": "warning"},
        "inbounds": [
            {"listen": "127.0.0.1", "port": ports[0], "protocol": "vless",
                "settings": {"decryption": "none", "clients": [{"id": id}]}},
            {"listen": "127.0.0.1", "port": ports[1], "protocol": "vmess",
                "settings": {"clients": [{"id": id, "alterId": 0}]},
                "streamSettings": {"network": "ws",
                    "wsSettings": {"path": "/vm", "headers": {"Host": "vm.example.com"}}}},
            {"listen": "127.0.0.1", "port": ports[2], "protocol": "vmess",
                "settings": {"clients": [{"id": id, "alterId": 0}]},
                "streamSettings": {"network": "tcp", "tcpSettings": {"header": {"type": "http",
                    "request": {"path": ["/"], "headers": {"Host": ["www.bing.com"]}}}}}},
            {"listen": "127.0.0.1", "port": ports[3], "protocol": "shadowsocks",
                "settings": {"method": "chacha20-ietf-poly1305",
                    "password": user.secret.expose(), "network": "tcp"}},
        ],
        "outbounds": [{"protocol": "freedom"}],
    });
    let server = run_v2ray_as_given(bin, &config, ports[0]).await;
    let entry = |remark: &str, inbound| ServedInbound {
        remark: remark.into(),
        address: "127.0.0.1".into(),
        inbound,
    };
    let mut vless = testing::inbound("vless-tcp", InboundProtocol::Vless, ports[0]);
    vless.flow = String::new();
    let mut ws = testing::inbound("vmess-ws", InboundProtocol::Vmess, ports[1]);
    ws.network = Network::Ws;
    ws.path = "/vm".into();
    ws.host = "vm.example.com".into();
    let mut http = testing::inbound("vmess-http", InboundProtocol::Vmess, ports[2]);
    http.header_type = "http".into();
    http.path = "/".into();
    http.host = "www.bing.com".into();
    let mut ss = testing::inbound("ss", InboundProtocol::Shadowsocks, ports[3]);
    ss.method = "chacha20-ietf-poly1305".into();
    let entries = vec![
        entry("vless tcp", vless),
        entry("vmess ws", ws),
        entry("vmess http header", http),
        entry("shadowsocks", ss),
    ];
    (server, entries)
}

/// A client app of each format, by its binaries.
enum App {
    SingBox(std::path::PathBuf),
    Mihomo(std::path::PathBuf, std::path::PathBuf),
    V2Ray(std::path::PathBuf),
}

impl App {
    /// Runs the app on `listing`'s config in its format, as served.
    async fn run(&self, listing: &Listing<'_>) -> ClientApp {
        match self {
            Self::SingBox(bin) => {
                let config = serde_json::from_str(&singbox::render(listing)).unwrap();
                run_sing_box(bin, config, None).await
            }
            Self::Mihomo(bin, mmdb) => {
                let config = clash::render(listing);
                let read: Value = serde_norway::from_str(&config).unwrap();
                let name = read["proxies"][0]["name"].as_str().unwrap().to_owned();
                run_mihomo_in(bin, mmdb, &config, &[&name]).await
            }
            Self::V2Ray(bin) => {
                let configs: Value = serde_json::from_str(&xray::render(listing)).unwrap();
                run_v2ray(bin, configs[0].clone()).await
            }
        }
    }
}

/// Runs `app` on each entry's config in turn and fetches known bytes
/// through it from a local server, via a V2Ray server that knows the user.
async fn traffic_passes(app: App) {
    let Some(v2ray) = v2ray_client_binary() else {
        return;
    };
    let user = testing::user("alice");
    let (_server, entries) = v2ray_server(&v2ray, &user).await;
    let origin = Origin::start().await;
    let mut failures = Vec::new();
    for e in &entries {
        let client = app.run(&Listing::new(&user, [e])).await;
        if let Err(why) = fetches(&client, &origin, CARRY).await {
            failures.push(format!("{}: {why}", e.remark));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_passes_through_sing_box_configs_to_a_real_server() {
    let Some(bin) = sing_box_binary() else {
        return;
    };
    traffic_passes(App::SingBox(bin)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_passes_through_clash_configs_to_a_real_server() {
    let (Some(bin), Some(mmdb)) = (mihomo_binary(), country_mmdb()) else {
        return;
    };
    traffic_passes(App::Mihomo(bin, mmdb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_passes_through_xray_configs_to_a_real_server() {
    let Some(bin) = v2ray_client_binary() else {
        return;
    };
    traffic_passes(App::V2Ray(bin)).await;
}
