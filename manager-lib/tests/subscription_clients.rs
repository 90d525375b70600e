//! The subscription formats against the real client apps: every generated
//! sing-box config passes `sing-box check` (sing-box 1.14.4), every Clash
//! config passes `mihomo -t` (Mihomo 1.19.2), and the Xray configs V2Ray
//! 4.34 understands pass `v2ray -test`. `scripts/setup.sh` installs the
//! binaries; `SING_BOX_BIN`, `MIHOMO_BIN`, `V2RAY_BIN` point elsewhere.
//! Then both apps run the config with hostile names and list, through
//! their Clash API, exactly the names served; and both carry real traffic
//! through a V2Ray server for the kinds all three share without TLS, as
//! does V2Ray itself as a client of the Xray JSON.
//! Without a binary a test skips, except with `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use manager_lib::domain::{InboundProtocol, Network, Security, ServedInbound};
use manager_lib::subscription::{Listing, clash, singbox, testing, xray};
use serde_json::Value;

/// Where `scripts/setup.sh` puts Mihomo's GeoIP database.
const MMDB: &str = "/usr/local/share/mihomo/Country.mmdb";

/// `$VAR`, else `/usr/local/bin/NAME` (where setup.sh installs it), else
/// `NAME` on `PATH`; with `CI=true` a missing binary fails the test.
fn binary(var: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| Some(Path::new("/usr/local/bin").join(name)).filter(|p| p.is_file()))
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but no {name}: run scripts/setup.sh or set {var}"
        );
        eprintln!("skipped: no {name} (run scripts/setup.sh or set {var})");
    }
    found
}

/// Runs a check; it fails on an error exit, and on a deprecation warning
/// too (what the next client version refuses).
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !text.to_ascii_lowercase().contains("deprecat") {
        Ok(())
    } else {
        Err(text)
    }
}

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
    let Some(bin) = binary("SING_BOX_BIN", "sing-box") else {
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
        if let Err(e) = run(Command::new(&bin).arg("check").arg("-c").arg(&file)) {
            failures.push(format!("{what}: {e}\n{config}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_clash_config_passes_mihomo_test() {
    let Some(bin) = binary("MIHOMO_BIN", "mihomo") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    // Offline, Mihomo would try to download a GeoIP database it lacks.
    if Path::new(MMDB).is_file() {
        std::fs::copy(MMDB, home.path().join("Country.mmdb")).unwrap();
    }
    let user = testing::user("alice");
    let entries = testing::entries();
    let (reserved, hostile) = (renamed(&RESERVED), renamed(&HOSTILE));
    let mut failures = Vec::new();
    for (what, chosen) in listings(&entries, &reserved, &hostile) {
        let config = clash::render(&Listing::new(&user, chosen));
        let file = home.path().join("config.yaml");
        std::fs::write(&file, &config).unwrap();
        let result = run(Command::new(&bin)
            .arg("-t")
            .arg("-d")
            .arg(home.path())
            .arg("-f")
            .arg(&file));
        if let Err(e) = result {
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
    let Some(bin) = binary("V2RAY_BIN", "v2ray") else {
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
        if let Err(e) = run(Command::new(&bin).arg("-test").arg("-config").arg(&file)) {
            failures.push(format!("{}: {e}\n{config}", config["remarks"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A port that was free a moment ago, from 20000–31999 (below Linux's
/// ephemeral range, so no outgoing connection takes it meanwhile).
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % 6000) as u16 * 2;
    loop {
        let port = 20_000 + (offset + NEXT.fetch_add(1, Ordering::SeqCst)) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A client app running a config; ended when dropped.
struct Running(std::process::Child, PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn start(cmd: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self(child, log)
    }

    /// The names of every proxy and group the app loaded, from its Clash
    /// API (`GET /proxies`), polled until it answers or 20 s pass.
    fn loaded_names(&mut self, api_port: u16) -> Vec<String> {
        use std::io::{Read as _, Write as _};
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                panic!(
                    "exited ({status}): {}",
                    std::fs::read_to_string(&self.1).unwrap()
                );
            }
            let answer = std::net::TcpStream::connect(("127.0.0.1", api_port)).and_then(|mut s| {
                s.write_all(b"GET /proxies HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
                let mut text = String::new();
                s.read_to_string(&mut text)?;
                Ok(text)
            });
            if let Ok(text) = answer {
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    assert!(
                        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
                        "{text}"
                    );
                    let v: Value = serde_json::from_str(body).unwrap();
                    return v["proxies"].as_object().unwrap().keys().cloned().collect();
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no answer on the Clash API: {}",
                std::fs::read_to_string(&self.1).unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
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

#[test]
fn mihomo_loads_every_name_as_written() {
    let Some(bin) = binary("MIHOMO_BIN", "mihomo") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    if Path::new(MMDB).is_file() {
        std::fs::copy(MMDB, home.path().join("Country.mmdb")).unwrap();
    }
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
    let api = free_port();
    let config = config.replacen(
        &format!("mixed-port: {}\n", clash::MIXED_PORT),
        &format!(
            "mixed-port: {}\nexternal-controller: 127.0.0.1:{api}\n",
            free_port()
        ),
        1,
    );
    let file = home.path().join("config.yaml");
    std::fs::write(&file, config).unwrap();
    let mut app = Running::start(
        Command::new(&bin)
            .arg("-d")
            .arg(home.path())
            .arg("-f")
            .arg(&file),
        home.path().join("log"),
    );
    let loaded = app.loaded_names(api);
    let missing: Vec<_> = expected.iter().filter(|n| !loaded.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "not loaded: {missing:?}; loaded: {loaded:?}"
    );
}

#[test]
fn sing_box_loads_every_tag_as_written() {
    let Some(bin) = binary("SING_BOX_BIN", "sing-box") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
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
    let api = free_port();
    v["inbounds"][0]["listen_port"] = free_port().into();
    v["experimental"] =
        serde_json::json!({"clash_api": {"external_controller": format!("127.0.0.1:{api}")}});
    let file = dir.path().join("config.json");
    std::fs::write(&file, v.to_string()).unwrap();
    let mut app = Running::start(
        Command::new(&bin)
            .arg("run")
            .arg("-c")
            .arg(&file)
            .arg("-D")
            .arg(dir.path()),
        dir.path().join("log"),
    );
    let loaded = app.loaded_names(api);
    let missing: Vec<_> = expected.iter().filter(|n| !loaded.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "not loaded: {missing:?}; loaded: {loaded:?}"
    );
}

/// Serves `body` to every HTTP request on 127.0.0.1, for as long as the
/// test runs; answers its port.
fn serve_body(body: &'static str) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// What an HTTP proxy on `proxy_port` fetches from 127.0.0.1:`port`, once
/// the proxy and the path behind it answer (20 s deadline).
fn fetch_through(app: &mut Running, proxy_port: u16, port: u16, body: &str) -> Result<(), String> {
    use std::io::{Read as _, Write as _};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Some(status) = app.0.try_wait().unwrap() {
            return Err(format!("exited ({status})"));
        }
        let got = std::net::TcpStream::connect(("127.0.0.1", proxy_port)).and_then(|mut s| {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
            write!(
                s,
                "GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            )?;
            let mut text = Vec::new();
            s.read_to_end(&mut text)?;
            Ok(String::from_utf8_lossy(&text).into_owned())
        });
        match got {
            Ok(text) if text.ends_with(body) => return Ok(()),
            Ok(text) => last = text,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(format!("no body through the proxy; last: {last:?}"))
}

/// A V2Ray 4.34 server with the kinds both clients and V2Ray share without
/// TLS: VLESS over tcp, VMess over ws with a Host, VMess over tcp with the
/// http header, Shadowsocks; and the entries that describe it.
fn v2ray_server(
    bin: &Path,
    dir: &Path,
    user: &manager_lib::domain::User,
) -> (Running, Vec<ServedInbound>) {
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
    let file = dir.join("server.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let server = Running::start(
        Command::new(bin).arg("-config").arg(&file),
        dir.join("server.log"),
    );
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

/// Runs `client` on each entry's config in turn and fetches known bytes
/// through it from a local server, via a V2Ray server that knows the user.
fn traffic_passes(client: impl Fn(&Path, &Listing<'_>, u16) -> Running) {
    let Some(v2ray) = binary("V2RAY_BIN", "v2ray") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let user = testing::user("alice");
    let (_server, entries) = v2ray_server(&v2ray, dir.path(), &user);
    const BODY: &str = "fetched through the subscription";
    let target = serve_body(BODY);
    let mut failures = Vec::new();
    for e in &entries {
        let proxy_port = free_port();
        let mut app = client(dir.path(), &Listing::new(&user, [e]), proxy_port);
        if let Err(why) = fetch_through(&mut app, proxy_port, target, BODY) {
            let log = std::fs::read_to_string(&app.1).unwrap_or_default();
            failures.push(format!("{}: {why}\n{log}", e.remark));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn traffic_passes_through_sing_box_configs_to_a_real_server() {
    let Some(bin) = binary("SING_BOX_BIN", "sing-box") else {
        return;
    };
    traffic_passes(|dir, listing, port| {
        let mut v: Value = serde_json::from_str(&singbox::render(listing)).unwrap();
        v["inbounds"][0]["listen_port"] = port.into();
        let file = dir.join("sing-box.json");
        std::fs::write(&file, v.to_string()).unwrap();
        Running::start(
            Command::new(&bin)
                .arg("run")
                .arg("-c")
                .arg(&file)
                .arg("-D")
                .arg(dir),
            dir.join("sing-box.log"),
        )
    });
}

#[test]
fn traffic_passes_through_clash_configs_to_a_real_server() {
    let Some(bin) = binary("MIHOMO_BIN", "mihomo") else {
        return;
    };
    traffic_passes(|dir, listing, port| {
        let home = dir.join("mihomo");
        std::fs::create_dir_all(&home).unwrap();
        if Path::new(MMDB).is_file() {
            std::fs::copy(MMDB, home.join("Country.mmdb")).unwrap();
        }
        let config = clash::render(listing).replacen(
            &format!("mixed-port: {}\n", clash::MIXED_PORT),
            &format!("mixed-port: {port}\n"),
            1,
        );
        let file = home.join("config.yaml");
        std::fs::write(&file, config).unwrap();
        Running::start(
            Command::new(&bin).arg("-d").arg(&home).arg("-f").arg(&file),
            dir.join("mihomo.log"),
        )
    });
}

#[test]
fn traffic_passes_through_xray_configs_to_a_real_server() {
    let Some(bin) = binary("V2RAY_BIN", "v2ray") else {
        return;
    };
    traffic_passes(|dir, listing, port| {
        let configs: Value = serde_json::from_str(&xray::render(listing)).unwrap();
        let mut config = configs[0].clone();
        // The HTTP inbound is the proxy the test fetches through.
        config["inbounds"][0]["port"] = free_port().into();
        config["inbounds"][1]["port"] = port.into();
        let file = dir.join("xray-client.json");
        std::fs::write(&file, config.to_string()).unwrap();
        Running::start(
            Command::new(&bin).arg("-config").arg(&file),
            dir.join("xray-client.log"),
        )
    });
}
