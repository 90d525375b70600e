//! The `ServiceControl` conformance suite: one `pub async fn` per behaviour
//! of the contract, each taking `&dyn ServiceControl` (or, for a crash, the
//! whole [`ServiceFixture`]). Every backend expands them into named tests
//! with [`service_conformance_tests!`](crate::service_conformance_tests):
//!
//! ```ignore
//! // `fresh()` gives a new fixture (its core stopped) as some `F: ServiceFixture`.
//! node_agent_lib::service_conformance_tests!(fresh());
//! // When the backend may be missing (no binary to run outside CI): an
//! // `Option<F>`, `None` skipping the test.
//! node_agent_lib::service_conformance_tests!(optional fresh());
//! ```
//!
//! It runs against [`MemoryService`](super::memory::MemoryService) and
//! [`ProcessService`](super::ProcessService). `SystemdService` and
//! `LaunchctlService` drive the machine's own service manager (a unit
//! installed as root, a launchd job on macOS) that tests cannot run here:
//! only their parsing of the control programs' answers is unit-tested. On a
//! machine that has one, a fixture over a throwaway unit runs this suite.

use std::collections::HashSet;
use std::time::Duration;

use super::{CoreInstance, ServiceControl, ServiceStatus};

/// A backend under test with a way to make its core die on its own.
pub trait ServiceFixture: Send + Sync {
    /// The backend, its core stopped when the fixture is new.
    fn service(&self) -> &dyn ServiceControl;

    /// Kills the running core behind the backend's back, as a crash would.
    fn crash(&self);
}

/// Expands into one `#[tokio::test]` per behaviour of the suite, each with a
/// fresh fixture from `$fresh` (an expression, awaited inside the test if it
/// needs to be, giving a value `F: ServiceFixture` that lives until the test
/// ends). With `optional`, the expression gives an `Option<F>` and `None`
/// skips the test.
#[macro_export]
macro_rules! service_conformance_tests {
    (optional $fresh:expr) => {
        $crate::service_conformance_tests!(@each [optional] $fresh;
            service;
            a_fresh_service_is_stopped_with_no_instance,
            start_runs_a_core,
            starting_a_running_service_keeps_its_core,
            starts_at_once_run_one_core,
            stop_ends_the_core,
            stopping_a_stopped_service_succeeds,
            restart_of_a_running_service_runs_a_new_core,
            restart_of_a_stopped_service_starts_it,
            every_start_is_a_new_instance_however_soon,
            the_instance_stays_while_the_core_runs,
        );
        $crate::service_conformance_tests!(@each [optional] $fresh;
            fixture;
            a_crash_brings_the_core_back_as_a_new_instance,
        );
    };
    ($fresh:expr) => {
        $crate::service_conformance_tests!(optional ::std::option::Option::Some($fresh));
    };
    (@each [optional] $fresh:expr; $arg:ident; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let ::std::option::Option::Some(fixture) = $fresh else {
                    ::std::eprintln!("skipped: no service backend available");
                    return;
                };
                $crate::service_conformance_tests!(@call $arg $name fixture);
            }
        )+
    };
    (@call service $name:ident $fixture:ident) => {
        $crate::service::conformance::$name(
            $crate::service::conformance::ServiceFixture::service(&$fixture),
        )
        .await
    };
    (@call fixture $name:ident $fixture:ident) => {
        $crate::service::conformance::$name(&$fixture).await
    };
}

/// How long a backend may take to bring its core up or back.
const PATIENCE: Duration = Duration::from_secs(10);

/// Polls until the service reports `Running`; a start may pass through
/// `Initializing` first.
async fn wait_running(s: &dyn ServiceControl) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match s.status().await.expect("status") {
            ServiceStatus::Running => return,
            ServiceStatus::Initializing => {}
            ServiceStatus::Stopped => panic!("the service stopped while starting"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not running after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The instance of a running core.
async fn running_instance(s: &dyn ServiceControl) -> CoreInstance {
    wait_running(s).await;
    s.instance()
        .await
        .expect("instance")
        .expect("a running core has an instance")
}

async fn assert_stopped(s: &dyn ServiceControl) {
    assert_eq!(s.status().await.unwrap(), ServiceStatus::Stopped);
    assert_eq!(s.instance().await.unwrap(), None, "no core, no instance");
}

pub async fn a_fresh_service_is_stopped_with_no_instance(s: &dyn ServiceControl) {
    assert_stopped(s).await;
}

pub async fn start_runs_a_core(s: &dyn ServiceControl) {
    s.start().await.unwrap();
    running_instance(s).await;
}

pub async fn starting_a_running_service_keeps_its_core(s: &dyn ServiceControl) {
    s.start().await.unwrap();
    let first = running_instance(s).await;
    s.start().await.unwrap();
    assert_eq!(running_instance(s).await, first, "start does not restart");
}

pub async fn starts_at_once_run_one_core(s: &dyn ServiceControl) {
    let starts = (0..8).map(|_| s.start());
    for done in futures::future::join_all(starts).await {
        done.unwrap();
    }
    let first = running_instance(s).await;
    s.start().await.unwrap();
    assert_eq!(running_instance(s).await, first, "one core, started once");
}

pub async fn stop_ends_the_core(s: &dyn ServiceControl) {
    s.start().await.unwrap();
    running_instance(s).await;
    s.stop().await.unwrap();
    assert_stopped(s).await;
}

pub async fn stopping_a_stopped_service_succeeds(s: &dyn ServiceControl) {
    s.stop().await.unwrap();
    s.stop().await.unwrap();
    assert_stopped(s).await;
    s.start().await.unwrap();
    running_instance(s).await;
    s.stop().await.unwrap();
    s.stop().await.unwrap();
    assert_stopped(s).await;
}

pub async fn restart_of_a_running_service_runs_a_new_core(s: &dyn ServiceControl) {
    s.start().await.unwrap();
    let before = running_instance(s).await;
    s.restart().await.unwrap();
    let after = running_instance(s).await;
    assert_ne!(after, before, "a restart is a new run of the core");
}

pub async fn restart_of_a_stopped_service_starts_it(s: &dyn ServiceControl) {
    s.restart().await.unwrap();
    let first = running_instance(s).await;
    s.stop().await.unwrap();
    assert_stopped(s).await;
    s.restart().await.unwrap();
    assert_ne!(running_instance(s).await, first);
}

pub async fn every_start_is_a_new_instance_however_soon(s: &dyn ServiceControl) {
    // Starts in quick succession, by every way of starting: no instance may
    // come back, or the agent would miss a start it did not order.
    let mut seen = HashSet::new();
    for round in 0..3 {
        s.start().await.unwrap();
        assert!(seen.insert(running_instance(s).await), "start {round}");
        s.restart().await.unwrap();
        assert!(seen.insert(running_instance(s).await), "restart {round}");
        s.restart().await.unwrap();
        assert!(seen.insert(running_instance(s).await), "restart {round}");
        s.stop().await.unwrap();
    }
    assert_eq!(seen.len(), 9);
}

pub async fn the_instance_stays_while_the_core_runs(s: &dyn ServiceControl) {
    s.start().await.unwrap();
    let first = running_instance(s).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.status().await.unwrap(), ServiceStatus::Running);
        assert_eq!(s.instance().await.unwrap().as_ref(), Some(&first));
    }
}

pub async fn a_crash_brings_the_core_back_as_a_new_instance(f: &dyn ServiceFixture) {
    let s = f.service();
    s.start().await.unwrap();
    let before = running_instance(s).await;
    f.crash();
    // The backend restarts the core by itself; status may say
    // `Initializing` meanwhile, never `Stopped`.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let after = loop {
        assert_ne!(
            s.status().await.unwrap(),
            ServiceStatus::Stopped,
            "a crashed core is brought back, not left stopped"
        );
        if let Some(now) = s.instance().await.unwrap() {
            if now != before {
                break now;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the core did not come back as a new instance within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(running_instance(s).await, after);
    // Stopping still works after the backend's own restart.
    s.stop().await.unwrap();
    assert_stopped(s).await;
}
