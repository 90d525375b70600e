//! The subscription formats against the real client apps: every generated
//! sing-box config passes `sing-box check` (sing-box 1.14.4), every Clash
//! config passes `mihomo -t` (Mihomo 1.19.2), and the Xray configs V2Ray
//! 4.34 understands pass `v2ray -test`. `scripts/setup.sh` installs the
//! binaries; `SING_BOX_BIN`, `MIHOMO_BIN`, `V2RAY_BIN` point elsewhere.
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

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
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
