//! Bulk jobs: one action (enable, disable, delete) on every user a filter
//! of the user table matches, however many, run in the manager process
//! while the operator watches its page.
//!
//! A job walks the filter result by key, as the table pages
//! ([`crate::storage::UserDirectory::find_users`], [`CHUNK`] users a read,
//! never an offset), and makes each user a call of its own, exactly as the
//! bulk action on a selection: the API call's role, one audit entry per
//! user, a failure kept with its reason (the first [`KEPT_FAILURES`] in
//! full, then only counted). Walking by key stays right while the job
//! changes what it walks: a user disabled by a job over `status=enabled`
//! leaves the result behind the cursor, never ahead of it.
//!
//! The registry is bounded: at most [`MAX_RUNNING`] jobs run at once (a
//! further start is refused, nothing done), a finished job is kept
//! [`KEEP_FINISHED`] for its page, then forgotten. Jobs live in memory: a
//! manager restart ends a running job where it stands; every user changed
//! before is stored (and audited), the rest are untouched, and the job's
//! page is gone. Starting it again over the same filter finishes the work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::api::ApiError;
use crate::api::audit::{Caller, record};
use crate::domain::{StateCounts, Timestamp, UserId, UserQuery, UserState, UserStatus};
use crate::manager::{Manager, ManagerError};

/// Users one read of a job takes.
pub const CHUNK: u32 = 500;
/// Failures a job keeps with their reason; later ones are only counted.
pub const KEPT_FAILURES: usize = 100;
/// Jobs that may run at once.
pub const MAX_RUNNING: usize = 4;
/// How long a finished job's page stays.
pub const KEEP_FINISHED: Duration = Duration::from_secs(3600);

/// The bulk actions on users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bulk {
    Enable,
    Disable,
    Delete,
}

impl Bulk {
    /// The action a form's `action` field names.
    pub(super) fn parse(text: &str) -> Option<Bulk> {
        match text {
            "enable" => Some(Bulk::Enable),
            "disable" => Some(Bulk::Disable),
            "delete" => Some(Bulk::Delete),
            _ => None,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Bulk::Enable => "enable",
            Bulk::Disable => "disable",
            Bulk::Delete => "delete",
        }
    }

    /// The API call each user's change stands for.
    pub(super) fn route(self) -> &'static str {
        match self {
            Bulk::Enable => "/user/enable",
            Bulk::Disable => "/user/disable",
            Bulk::Delete => "/user/delete",
        }
    }

    /// The action's past tense, as a summary says it.
    pub(super) fn done_word(self) -> &'static str {
        match self {
            Bulk::Enable => "enabled",
            Bulk::Disable => "disabled",
            Bulk::Delete => "deleted",
        }
    }

    /// Applies the action to user `id` and audits it as `caller`'s call;
    /// the API's status and text when it failed.
    pub(super) async fn apply(
        self,
        manager: &Manager,
        caller: &Caller,
        id: Option<UserId>,
    ) -> Result<(), String> {
        let result = match id {
            None => Err(ManagerError::UserNotFound),
            Some(id) => match self {
                Bulk::Enable => manager.enable_user(id).await.map(drop),
                Bulk::Disable => manager.disable_user(id).await.map(drop),
                Bulk::Delete => manager.delete_user(id).await,
            },
        };
        let target = id.map(|id| id.to_string());
        let call = format!("POST {}", self.route());
        match result {
            Ok(()) => {
                record(manager, caller, call, target, StatusCode::OK).await;
                Ok(())
            }
            Err(e) => {
                let e = ApiError::from(e);
                let (status, text) = e.status_and_text();
                if status.is_server_error() {
                    tracing::error!(error = ?e, "bulk change failed");
                }
                record(manager, caller, call, target, status).await;
                Err(text.to_owned())
            }
        }
    }
}

/// How many live users `query` matches, from the directory's counters,
/// when they can say (no search); `None` when the result must be walked.
pub(super) fn counted(query: &UserQuery, counts: &StateCounts) -> Option<u64> {
    if query.search_text().is_some() {
        return None;
    }
    let all: u64 = StateCounts::STATES.iter().map(|s| counts.of(*s)).sum();
    Some(match (query.status, query.state) {
        (None, None) => all,
        (None, Some(state)) => counts.of(state),
        (Some(UserStatus::Disabled), None | Some(UserState::Disabled)) => counts.disabled,
        (Some(UserStatus::Disabled), Some(_))
        | (Some(UserStatus::Enabled), Some(UserState::Disabled)) => 0,
        (Some(UserStatus::Enabled), None) => all.saturating_sub(counts.disabled),
        (Some(UserStatus::Enabled), Some(state)) => counts.of(state),
    })
}

/// How many live users `query` matches now: the counters when they can
/// say, else a walk of the result by key (ids only matter; a search's
/// result is small).
pub(super) async fn count(manager: &Manager, query: &UserQuery) -> Result<u64, ManagerError> {
    let storage = manager.storage();
    if let Some(n) = counted(query, &storage.count_users_by_state().await?) {
        return Ok(n);
    }
    let mut q = UserQuery {
        after: None,
        limit: UserQuery::MAX_LIMIT,
        ..query.clone()
    };
    let mut n = 0u64;
    loop {
        let page = storage.find_users(&q).await?;
        n += page.items.len() as u64;
        match page.next {
            Some(next) => q.after = Some(next),
            None => return Ok(n),
        }
    }
}

/// Where a job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    Running,
    Finished,
    Cancelled,
    /// The filter result could not be read further; the text says why.
    Stopped(String),
}

/// What a job page shows.
#[derive(Clone, Debug)]
pub(super) struct Progress {
    pub(super) done: u64,
    pub(super) failed: u64,
    /// The first [`KEPT_FAILURES`] failures: the user id and the reason.
    pub(super) failures: Vec<(String, String)>,
    pub(super) stage: Stage,
    pub(super) ended: Option<Instant>,
}

/// One bulk job.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) id: String,
    pub(super) action: Bulk,
    /// The filter as the confirmation stated it.
    pub(super) filter: String,
    /// Users the filter matched when the job started.
    pub(super) total: u64,
    pub(super) started: Timestamp,
    /// The session's actor that started it (audited on every user).
    pub(super) actor: String,
    progress: Mutex<Progress>,
    cancel: AtomicBool,
}

impl Job {
    pub(super) fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks the job to stop before its next user.
    pub(super) fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn end(&self, stage: Stage) {
        self.update(|p| {
            p.stage = stage;
            p.ended = Some(Instant::now());
        });
    }
}

/// The process's bulk jobs.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

/// What starting a job needs.
pub(super) struct Start {
    pub(super) action: Bulk,
    pub(super) query: UserQuery,
    pub(super) filter: String,
    pub(super) total: u64,
}

impl Jobs {
    /// The job `id`, while kept.
    pub(super) fn get(&self, id: &str) -> Option<Arc<Job>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut jobs);
        jobs.get(id).cloned()
    }

    /// Starts a job as `caller` (whose role was checked), or refuses when
    /// [`MAX_RUNNING`] run already.
    pub(super) fn start(
        &self,
        manager: Arc<Manager>,
        caller: Caller,
        start: Start,
    ) -> Result<Arc<Job>, ApiError> {
        let job = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            prune(&mut jobs);
            let running = jobs
                .values()
                .filter(|j| j.progress().stage == Stage::Running)
                .count();
            if running >= MAX_RUNNING {
                return Err(ApiError::BadRequest(format!(
                    "{MAX_RUNNING} bulk jobs are running already; start this one when one ends"
                )));
            }
            let job = Arc::new(Job {
                id: uuid::Uuid::new_v4().simple().to_string(),
                action: start.action,
                filter: start.filter,
                total: start.total,
                started: Timestamp::now(),
                actor: caller.actor.clone(),
                progress: Mutex::new(Progress {
                    done: 0,
                    failed: 0,
                    failures: Vec::new(),
                    stage: Stage::Running,
                    ended: None,
                }),
                cancel: AtomicBool::new(false),
            });
            jobs.insert(job.id.clone(), job.clone());
            job
        };
        let running = job.clone();
        tokio::spawn(async move { run(&manager, &caller, &running, start.query).await });
        Ok(job)
    }
}

/// Forgets finished jobs older than [`KEEP_FINISHED`].
fn prune(jobs: &mut HashMap<String, Arc<Job>>) {
    jobs.retain(|_, j| {
        j.progress()
            .ended
            .is_none_or(|at| at.elapsed() < KEEP_FINISHED)
    });
}

async fn run(manager: &Manager, caller: &Caller, job: &Job, query: UserQuery) {
    let mut query = UserQuery {
        after: None,
        limit: CHUNK,
        ..query
    };
    loop {
        let page = match manager.storage().find_users(&query).await {
            Ok(page) => page,
            Err(e) => {
                let e = ApiError::from(ManagerError::from(e));
                tracing::error!(error = ?e, job = %job.id, "bulk job stopped");
                let (_, text) = e.status_and_text();
                return job.end(Stage::Stopped(text.to_owned()));
            }
        };
        for user in &page.items {
            if job.cancel.load(Ordering::Relaxed) {
                return job.end(Stage::Cancelled);
            }
            let result = job.action.apply(manager, caller, Some(user.id)).await;
            job.update(|p| match result {
                Ok(()) => p.done += 1,
                Err(why) => {
                    p.failed += 1;
                    if p.failures.len() < KEPT_FAILURES {
                        p.failures.push((user.id.to_string(), why));
                    }
                }
            });
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return job.end(Stage::Finished),
        }
    }
}
