//! The `xray-manager` binary as an operator starts it: what it refuses at
//! start, what it prints and logs, and the modes of the files it creates.
//! Each test runs the real binary on 127.0.0.1:0 with its own data directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_xray-manager");
const TOKEN: &str = "5d0c9e8f7a6b5c4d3e2f1a0b9c8d7e6f";
/// Long enough for a debug build's first start on a busy machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// `xray-manager` with only the settings a test gives (no inherited `XM_*`
/// or `RUST_LOG`), on 127.0.0.1:0 with its data in `data`.
fn manager(data: &Path, env: &[(&str, &str)]) -> Command {
    configure(Command::new(BINARY), data, env)
}

fn configure(mut cmd: Command, data: &Path, env: &[(&str, &str)]) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("XM_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("XM_LISTEN", "127.0.0.1:0")
        .env("XM_DATA_DIR", data)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Everything a stream carries, gathered in the background.
fn gather(stream: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let out = text.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut out = out.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    });
    text
}

/// A started manager with its output being gathered.
struct Running {
    child: Child,
    url: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    async fn start(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("spawn xray-manager");
        let stdout = gather(child.stdout.take().unwrap());
        let stderr = gather(child.stderr.take().unwrap());
        let started = tokio::time::Instant::now();
        let url = loop {
            let listening = stdout.lock().unwrap().lines().find_map(|l| {
                l.strip_prefix("xray-manager listening on ")
                    .map(str::to_owned)
            });
            if let Some(addr) = listening {
                break format!("http://{addr}");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "xray-manager exited ({status}) before listening: {}",
                    stderr.lock().unwrap()
                );
            }
            assert!(started.elapsed() < DEADLINE, "xray-manager never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self {
            child,
            url,
            stdout,
            stderr,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> u16 {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
            .await
            .expect("the manager answers")
            .status()
            .as_u16()
    }

    /// Stops the process and returns all it wrote: (stdout, stderr).
    async fn stop(mut self) -> (String, String) {
        self.child.kill().await.unwrap();
        // The gatherers finish at end of file, which follows the exit at once.
        let started = tokio::time::Instant::now();
        while Arc::strong_count(&self.stdout) > 1 || Arc::strong_count(&self.stderr) > 1 {
            assert!(started.elapsed() < DEADLINE, "output never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (out, err)
    }
}

/// Runs a manager that is expected to refuse to start; its exit status and
/// standard error.
async fn refused(data: &Path, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let child = manager(data, env).spawn().unwrap();
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("xray-manager started instead of refusing")
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_empty_or_weak_admin_token_is_refused_at_start_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    for (value, reason) in [
        ("", "is empty"),
        ("   ", "is empty"),
        ("tok", "at least 32"),
        (
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "distinct characters",
        ),
    ] {
        let (status, stderr) = refused(data.path(), &[("XM_ADMIN_TOKEN", value)]).await;
        assert!(!status.success(), "{value:?} was accepted");
        assert!(stderr.contains("XM_ADMIN_TOKEN"), "{stderr}");
        assert!(stderr.contains(reason), "{value:?}: {stderr}");
    }
}

/// A first start keeps the generated token only in its 0600 file: neither
/// standard output nor the log (journald, `docker logs`) shows it, while
/// the file's token is the one the API takes. A refused admin call is
/// logged at the default level, without the presented value.
#[tokio::test]
async fn the_generated_token_stays_in_its_file_and_refusals_are_logged_without_it() {
    let data = tempfile::tempdir().unwrap();
    let running = Running::start(manager(data.path(), &[])).await;
    let file = data.path().join("admin-token");
    let token = std::fs::read_to_string(&file).unwrap();
    let token = token.trim();
    assert!(token.len() >= 32, "{token:?}");
    assert_eq!(running.get("/users", Some(token)).await, 200);
    let guess = "not-the-token-but-a-guess-0123456789";
    assert_eq!(running.get("/users", Some(guess)).await, 401);
    let (stdout, stderr) = running.stop().await;
    assert!(stdout.contains(&file.display().to_string()), "{stdout}");
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains(token), "the token is in {name}:\n{text}");
        assert!(!text.contains(guess), "the guess is in {name}:\n{text}");
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("admin call refused")),
        "{stderr}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Under umask 022 (files 0644, directories 0755 by default) the data
/// directory, the database and its WAL and shared-memory files, and the
/// token file are the owner's alone.
#[tokio::test]
async fn the_data_directory_and_database_files_are_owner_only_under_umask_022() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("state").join("data");
    // The shell sets the umask for the binary it becomes (no unsafe pre_exec).
    let mut sh = Command::new("sh");
    sh.arg("-c").arg("umask 022 && exec \"$0\"").arg(BINARY);
    let sh = configure(sh, &data, &[]);
    let running = Running::start(sh).await;
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    // A write, so the WAL holds something.
    let created = reqwest::Client::new()
        .post(format!("{}/user/new", running.url))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({"userName": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let found: Vec<(&str, u32)> = [
        ("state", root.path().join("state")),
        ("data", data.clone()),
        ("manager.db", data.join("manager.db")),
        ("manager.db-wal", data.join("manager.db-wal")),
        ("manager.db-shm", data.join("manager.db-shm")),
        ("admin-token", data.join("admin-token")),
    ]
    .iter()
    .map(|(name, path)| (*name, mode(path)))
    .collect();
    let owner_only = vec![
        ("state", 0o700),
        ("data", 0o700),
        ("manager.db", 0o600),
        ("manager.db-wal", 0o600),
        ("manager.db-shm", 0o600),
        ("admin-token", 0o600),
    ];
    let octal: Vec<String> = found.iter().map(|(n, m)| format!("{n} {m:o}")).collect();
    assert_eq!(found, owner_only, "{octal:?}");
    running.stop().await;
}

/// At DEBUG every request is logged with its route; a malformed node-list
/// path (a trailing slash, a doubled slash, a missing `/nodes`) is logged
/// as `unmatched`, never with the user's id and name in it.
#[tokio::test]
async fn debug_logs_of_malformed_node_list_paths_hold_no_id_or_name() {
    let data = tempfile::tempdir().unwrap();
    let running = Running::start(manager(
        data.path(),
        &[("XM_ADMIN_TOKEN", TOKEN), ("RUST_LOG", "debug")],
    ))
    .await;
    let id = "0b5e7c1a-3f2d-4e6b-9a8c-7d1e2f3a4b5c";
    let name = "zanzibar-wombat";
    for path in [
        format!("/user/{id}-{name}/nodes/"),
        format!("//user/{id}-{name}/nodes"),
        format!("/user/{id}-{name}"),
        format!("/user/{id}-{name}/nodes/more"),
    ] {
        assert_eq!(running.get(&path, None).await, 404, "{path}");
    }
    let (_, stderr) = running.stop().await;
    let logged = stderr
        .lines()
        .filter(|l| l.contains("finished processing request") && l.contains("status=404"))
        .count();
    assert_eq!(
        logged, 4,
        "the requests were not logged at DEBUG:\n{stderr}"
    );
    assert!(!stderr.contains(id), "a user id is in the log:\n{stderr}");
    assert!(
        !stderr.contains(name),
        "a user name is in the log:\n{stderr}"
    );
}

#[tokio::test]
async fn scoped_tokens_work_after_a_restart_and_are_never_in_the_database_files_in_clear() {
    let data = tempfile::tempdir().unwrap();
    let env = [("XM_ADMIN_TOKEN", TOKEN)];
    let running = Running::start(manager(data.path(), &env)).await;
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/token/new", running.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "backup-job", "role": "read-only"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = created["token"].as_str().unwrap().to_owned();
    assert!(text.starts_with("xmt_"), "{created}");
    assert_eq!(running.get("/users", Some(&text)).await, 200);
    running.stop().await;

    // Read back from the file by a new process: the token still works…
    let running = Running::start(manager(data.path(), &env)).await;
    assert_eq!(running.get("/users", Some(&text)).await, 200);
    assert_eq!(running.get("/tokens", Some(&text)).await, 403);
    running.stop().await;

    // …yet no form of its secret is in the database, its WAL or journal.
    let secret_b64 = &text[37..];
    let secret = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        secret_b64,
    )
    .unwrap();
    let hex_secret = secret
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let mut checked = 0;
    for entry in std::fs::read_dir(data.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("manager.db")
        {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        checked += bytes.len();
        for needle in [
            text.as_bytes(),
            secret_b64.as_bytes(),
            &secret,
            hex_secret.as_bytes(),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds the token's secret",
                path.display()
            );
        }
    }
    assert!(checked > 4096, "no database file was read");
}
