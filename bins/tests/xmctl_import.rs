//! `xmctl user import` against a real manager served in-process: a
//! summary naming each bad line, its exit codes, and the bound on requests
//! in flight.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{run_xmctl, start_manager, start_manager_with};

/// 50 rows, names empty on lines 11 and 31 (the header is line 1), every
/// third row asks to be enabled.
fn fifty_rows_two_bad() -> (String, usize) {
    let mut csv = String::from("name,enabled\n");
    let mut want_enabled = 0;
    for i in 0..50 {
        let line = i + 2;
        let enabled = i % 3 == 0;
        let name = if line == 11 || line == 31 {
            String::new()
        } else {
            if enabled {
                want_enabled += 1;
            }
            format!("imported-{i}")
        };
        csv.push_str(&format!("{name},{enabled}\n"));
    }
    (csv, want_enabled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_bad_lines_and_exits_6() {
    let h = start_manager().await;
    let (csv, want_enabled) = fifty_rows_two_bad();
    let file = h.write("users.csv", &csv);

    let run = h
        .xmctl(&[
            "user",
            "import",
            file.to_str().expect("utf-8 path"),
            "--json",
        ])
        .await;
    run.assert_code(6);
    let v = run.json();
    assert_eq!(v["created"], 48);
    assert_eq!(v["enabled"], want_enabled);
    assert_eq!(v["failed"], 2);
    let failures = v["failures"].as_array().expect("failures");
    let lines: Vec<_> = failures.iter().map(|f| f["line"].as_u64()).collect();
    assert_eq!(lines, vec![Some(11), Some(31)]);
    assert!(
        failures.iter().all(|f| f["error"] == "invalid user name"),
        "{failures:?}"
    );
    assert_eq!(v["users"].as_array().expect("users").len(), 48);

    let users = h.users().await;
    assert_eq!(users.len(), 48);
    let enabled = users.iter().filter(|u| u["status"] == "Enabled").count();
    assert_eq!(enabled, want_enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_summary_for_people_names_each_bad_line() {
    let h = start_manager().await;
    let (csv, _) = fifty_rows_two_bad();
    let file = h.write("users.csv", &csv);
    let run = h
        .xmctl(&["user", "import", file.to_str().expect("utf-8 path")])
        .await;
    run.assert_code(6);
    assert!(run.stdout.contains("created: 48"), "{run:?}");
    assert!(run.stdout.contains("failed: 2"), "{run:?}");
    let failure_lines: Vec<_> = run
        .stdout
        .lines()
        .filter(|l| l.contains("invalid user name"))
        .collect();
    assert_eq!(failure_lines.len(), 2, "{run:?}");
    assert!(
        failure_lines[0].contains("11") && failure_lines[1].contains("31"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_import_exits_0() {
    let h = start_manager().await;
    let file = h.write("ok.csv", "name\nann\nben\n");
    let run = h
        .xmctl(&[
            "user",
            "import",
            file.to_str().expect("utf-8 path"),
            "--json",
        ])
        .await;
    run.assert_code(0);
    assert_eq!(run.json()["created"], 2);
    assert_eq!(run.json()["enabled"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_with_a_wrong_token_stops_with_exit_3() {
    let h = start_manager().await;
    let (csv, _) = fifty_rows_two_bad();
    let file = h.write("users.csv", &csv);
    let run = run_xmctl(
        h.home.path(),
        &[
            "user",
            "import",
            file.to_str().expect("utf-8 path"),
            "--json",
        ],
        &[("XMCTL_URL", &h.url), ("XMCTL_TOKEN", "wrong")],
    )
    .await;
    run.assert_code(3);
    let v = run.json();
    assert_eq!(v["created"], 0);
    assert!(
        v["aborted"]
            .as_str()
            .expect("aborted")
            .contains("authentication"),
        "{v}"
    );
    assert!(h.users().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_without_a_name_column_exits_1() {
    let h = start_manager().await;
    let file = h.write("bad.csv", "user,enabled\nann,true\n");
    let run = h
        .xmctl(&["user", "import", file.to_str().expect("utf-8 path")])
        .await;
    run.assert_code(1);
    assert!(run.stderr.contains("no `name` column"), "{run:?}");
    assert!(h.users().await.is_empty());
}

/// Holds every user call until `limit` are in flight at once, then lets all
/// through, and records the most ever in flight: the import must reach the
/// limit (else it would hang here) and never pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_at_most_concurrency_requests_in_flight() {
    #[derive(Default)]
    struct Gate {
        in_flight: AtomicUsize,
        max: AtomicUsize,
        open: tokio::sync::Notify,
        opened: std::sync::atomic::AtomicBool,
    }
    const LIMIT: usize = 4;
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let h = start_manager_with(move |router| {
        router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let g = g.clone();
                async move {
                    let now = g.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    g.max.fetch_max(now, Ordering::SeqCst);
                    if now >= LIMIT {
                        g.opened.store(true, Ordering::SeqCst);
                        g.open.notify_waiters();
                    }
                    // A client that never reaches the limit fails the
                    // assertion below instead of hanging the test.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                    while !g.opened.load(Ordering::SeqCst) {
                        let wait = g.open.notified();
                        if g.opened.load(Ordering::SeqCst) {
                            break;
                        }
                        if tokio::time::timeout_at(deadline, wait).await.is_err() {
                            g.opened.store(true, Ordering::SeqCst);
                            g.open.notify_waiters();
                        }
                    }
                    let resp = next.run(req).await;
                    g.in_flight.fetch_sub(1, Ordering::SeqCst);
                    resp
                }
            },
        ))
    })
    .await;
    let (csv, _) = fifty_rows_two_bad();
    let file = h.write("users.csv", &csv);
    let run = h
        .xmctl(&[
            "user",
            "import",
            file.to_str().expect("utf-8 path"),
            "--concurrency",
            "4",
            "--json",
        ])
        .await;
    run.assert_code(6);
    assert_eq!(run.json()["created"], 48);
    assert_eq!(gate.max.load(Ordering::SeqCst), LIMIT);
}
