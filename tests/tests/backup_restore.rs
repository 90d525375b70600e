//! `xray-manager backup` while the manager runs, `restore` into a fresh data
//! directory, and a manager started there finds every node and user.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tests::fleet::{ManagerProcess, workspace_binary};

fn ids(list: &Value, key: &str) -> BTreeSet<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            format!(
                "{}|{}",
                v["id"],
                v.get("name").or(v.get("endpoint")).unwrap()
            )
        })
        .collect()
}

fn manager_command(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(workspace_binary("xray-manager"))
        .args(args)
        .env("XM_DATA_DIR", data)
        .env("XM_ADMIN_TOKEN", "unused-but-strong-enough-0123456789")
        .output()
        .expect("run xray-manager")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_holds_every_node_and_user() {
    let data = tempfile::tempdir().unwrap();
    let mut manager = ManagerProcess::start_in(data.path(), 60_000, &[], None).await;
    for i in 0..3 {
        manager.new_node(&format!("http://10.1.0.{i}:8443")).await;
    }
    for i in 0..25 {
        let (status, body) = manager
            .post("/user/new", json!({"userName": format!("user {i} ✓")}))
            .await;
        assert_eq!(status, 200);
        if i % 2 == 0 {
            manager
                .post("/user/enable", json!({"userID": body["user"]["id"]}))
                .await;
        }
    }
    let (_, users) = manager.get("/users").await;
    let (_, nodes) = manager.get("/nodes").await;

    // Online backup, while the manager runs.
    let backup = data.path().join("copy.db");
    let out = manager_command(data.path(), &["backup", "--to", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 nodes, 25 users"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a backup holds secrets");
    }
    // A second backup to the same file is refused rather than overwriting it.
    let again = manager_command(data.path(), &["backup", "--to", backup.to_str().unwrap()]);
    assert!(!again.status.success());
    manager.kill().await;

    let fresh = tempfile::tempdir().unwrap();
    // The backup's secrets are sealed under the master key, which is not in
    // it: without the key the restore is refused and writes nothing.
    let keyless = manager_command(
        fresh.path(),
        &["restore", "--from", backup.to_str().unwrap()],
    );
    assert!(!keyless.status.success());
    let err = String::from_utf8_lossy(&keyless.stderr);
    assert!(err.contains("no master key"), "{err}");
    assert!(!fresh.path().join("manager.db").exists());
    // The operator keeps the key apart from the backups and brings it back.
    std::fs::copy(
        data.path().join("master-key"),
        fresh.path().join("master-key"),
    )
    .unwrap();
    let out = manager_command(
        fresh.path(),
        &["restore", "--from", backup.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = ManagerProcess::start_in(fresh.path(), 60_000, &[], None).await;
    let (_, users_after) = restored.get("/users").await;
    let (_, nodes_after) = restored.get("/nodes").await;
    assert_eq!(ids(&users_after, "users"), ids(&users, "users"));
    assert_eq!(ids(&nodes_after, "nodes"), ids(&nodes, "nodes"));
    assert_eq!(users_after, users, "statuses too");

    // Restoring garbage changes nothing.
    let junk = fresh.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let out = manager_command(fresh.path(), &["restore", "--from", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    let (_, still) = restored.get("/users").await;
    assert_eq!(still, users);
}
