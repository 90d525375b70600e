//! The manager's master key, end to end: generated next to the embedded
//! database on a first start with no settings, a wrong one refuses the start
//! with a clear error (and changes nothing), and a rotation with
//! `previous_master_key_files` re-seals everything so that the old key is
//! then not needed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tests::fleet::{ManagerProcess, workspace_binary};

/// Starts the manager on `data` with `env` and expects it to refuse: answers
/// its standard error.
async fn refused_start(data: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = tokio::process::Command::new(workspace_binary("xray-manager"));
    cmd.env("XM_LISTEN", "127.0.0.1:0")
        .env("XM_DATA_DIR", data)
        .env("XM_ADMIN_TOKEN", "master-key-test-admin-token-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the manager refuses to start instead of serving")
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A master key file as `openssl rand -base64 32` writes one.
fn write_key(path: &Path, byte: u8) {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    std::fs::write(path, format!("{key}\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_refuses_the_start_and_a_rotation_frees_the_old_key() {
    let data = tempfile::tempdir().unwrap();
    let generated = data.path().join("master-key");

    // First start on the defaults: a key file is generated, owner-only.
    let mut manager = ManagerProcess::start_in(data.path(), 60_000, &[], None).await;
    let (node, key) = manager.new_node("http://10.7.0.1:8443").await;
    manager.kill().await;
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&generated).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let db = std::fs::read(data.path().join("manager.db")).unwrap();
    assert!(
        !db.windows(key.len()).any(|w| w == key.as_bytes()),
        "the node key is sealed in the database file"
    );

    // A wrong key: refused, named, and nothing is changed.
    let wrong = data.path().join("wrong-key");
    write_key(&wrong, 7);
    let err = refused_start(
        data.path(),
        &[("XM_SECRETS_MASTER_KEY_FILE", wrong.to_str().unwrap())],
    )
    .await;
    assert!(err.contains("sealed under master key"), "{err}");
    assert!(err.contains("master_key_file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Rotation: the new key, the old one as previous.
    let new = data.path().join("new-key");
    write_key(&new, 9);
    let rotating = [
        ("XM_SECRETS_MASTER_KEY_FILE", new.to_str().unwrap()),
        (
            "XM_SECRETS_PREVIOUS_MASTER_KEY_FILES",
            generated.to_str().unwrap(),
        ),
    ];
    let mut manager = ManagerProcess::start_in(data.path(), 60_000, &rotating, None).await;
    // Asking to add the same endpoint shows its key again: read back whole.
    let (again, same_key) = manager.new_node("http://10.7.0.1:8443").await;
    assert_eq!(
        (again.as_str(), same_key.as_str()),
        (node.as_str(), key.as_str())
    );
    manager.kill().await;

    // The old key is gone: the new one alone opens everything.
    let old = data.path().join("old-key");
    std::fs::rename(&generated, &old).unwrap();
    let only_new = [("XM_SECRETS_MASTER_KEY_FILE", new.to_str().unwrap())];
    let mut manager = ManagerProcess::start_in(data.path(), 60_000, &only_new, None).await;
    let (_, same_key) = manager.new_node("http://10.7.0.1:8443").await;
    assert_eq!(same_key, key);
    manager.kill().await;

    // And the old key alone no longer does.
    let err = refused_start(
        data.path(),
        &[("XM_SECRETS_MASTER_KEY_FILE", old.to_str().unwrap())],
    )
    .await;
    assert!(err.contains("sealed under master key"), "{err}");
}
