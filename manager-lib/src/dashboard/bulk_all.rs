//! The pages of a bulk action on a whole filter result ([`super::jobs`]).
//!
//! What an operator sees: under the user table, "Apply to all N matching"
//! with the action to choose; then a confirmation page that states the
//! action, the count and the filter in words; confirmed, the job's page
//! (`/ui/jobs/{id}`): a progress bar with done / total and the failures
//! so far, refreshed every [`REFRESH_SECS`] s by the dashboard's script,
//! a Cancel button while it runs, and at the end a summary: how many were
//! changed, how many failed, and the first failures with their reason.
//! Every change is the API call it stands for (role, audit per user);
//! a read-only session gets 403 and nothing starts.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::change::{Change, failed};
use super::jobs::{Bulk, Job, KEPT_FAILURES, Stage, Start};
use super::session::Session;
use super::users::ListParams;
use super::{UiState, format, layout};
use crate::api::ApiError;
use crate::domain::UserQuery;

/// Seconds between two refreshes of a running job's page.
pub const REFRESH_SECS: u32 = 2;

/// The filter and the action, as the table's query string and the
/// confirmation's form carry them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AllParams {
    #[serde(flatten)]
    list: ListParams,
    #[serde(default)]
    action: String,
    #[serde(default)]
    csrf: String,
}

fn bad(session: &Session, why: &str) -> Response {
    failed(&ApiError::BadRequest(why.to_owned()), session)
}

/// The table's filter as a query, and how many users it matches now.
async fn matching(st: &UiState, list: &ListParams) -> Result<(UserQuery, u64), ApiError> {
    let query = list.query().map_err(ApiError::BadRequest)?;
    let total = super::jobs::count(&st.manager, &query).await?;
    Ok((query, total))
}

/// `GET /ui/users/all`: asks, stating the action, the count and the filter.
pub(super) async fn confirm(
    State(st): State<UiState>,
    session: Session,
    params: Result<Query<AllParams>, QueryRejection>,
) -> Response {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let Some(action) = Bulk::parse(&params.action) else {
        return bad(&session, "choose enable, disable or delete");
    };
    let (_, total) = match matching(&st, &params.list).await {
        Ok(found) => found,
        Err(e) => return failed(&e, &session),
    };
    let filter = params.list.describe();
    let verb = action.as_str();
    let body = html! {
        p role="status" {
            (capital(verb)) " " strong { "all " (total) } " users matching " strong { (filter) } "?"
        }
        p class="muted" {
            "Each user is changed as one call (checked and audited on its own); the job runs in the manager "
            "and shows its progress on the next page. Users that start to match later may be included."
        }
        form method="post" action="/ui/users/all" {
            (session.chrome.csrf_field())
            (params.list.hidden())
            input type="hidden" name="action" value=(verb);
            button type="submit" class=[(action == Bulk::Delete).then_some("danger")] {
                (capital(verb)) " all " (total)
            }
            " "
            a class="button" href=(params.list.url(None)) { "Cancel" }
        }
    };
    layout::send(
        StatusCode::OK,
        layout::page(
            "Apply to all matching",
            Some(&session.chrome),
            "Users",
            body,
        ),
    )
}

fn capital(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `POST /ui/users/all`: starts the job and opens its page.
pub(super) async fn start(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<AllParams>, FormRejection>,
) -> Response {
    let Ok(Form(params)) = form else {
        return bad(&session, "no form");
    };
    let Some(action) = Bulk::parse(&params.action) else {
        return bad(&session, "choose enable, disable or delete");
    };
    // The form and the role first: a refused session learns nothing more.
    if let Err(page) =
        Change::begin(&st, &session, &headers, &params.csrf, action.route(), None).await
    {
        return page;
    }
    let (query, total) = match matching(&st, &params.list).await {
        Ok(found) => found,
        Err(e) => return failed(&e, &session),
    };
    let start = Start {
        action,
        query,
        filter: params.list.describe(),
        total,
    };
    match st
        .jobs
        .start(st.manager.clone(), session.caller.clone(), start)
    {
        Ok(job) => Redirect::to(&format!("/ui/jobs/{}", job.id)).into_response(),
        Err(e) => failed(&e, &session),
    }
}

/// The answer for a job that is not (or no longer) kept.
fn no_job(session: &Session) -> Response {
    layout::error(
        StatusCode::NOT_FOUND,
        "No such job",
        "This job is unknown: finished more than an hour ago, or the manager restarted \
         (every user it changed before stays changed).",
        Some(&session.chrome),
    )
}

/// The job's progress and, once it ended, its summary.
fn progress(job: &Job, session: &Session) -> Markup {
    let p = job.progress();
    let handled = p.done + p.failed;
    let max = job.total.max(handled).max(1);
    let word = job.action.done_word();
    let (stage, running) = match &p.stage {
        Stage::Running => ("running".to_owned(), true),
        Stage::Finished => ("finished".to_owned(), false),
        Stage::Cancelled => ("cancelled".to_owned(), false),
        Stage::Stopped(why) => (format!("stopped: {why}"), false),
    };
    html! {
        p { label for="job-progress" { (handled) " of " (job.total) " users handled (" (stage) ")" } }
        progress id="job-progress" max=(max) value=(handled) { (handled) " of " (job.total) }
        p role="status" data-stage=(if running { "running" } else { "ended" }) {
            (p.done) " " (word) ", " (p.failed) " failed."
            @if !running { " The job has ended." }
        }
        @if running {
            form method="post" action=(format!("/ui/jobs/{}/cancel", job.id)) {
                (session.chrome.csrf_field())
                button type="submit" { "Cancel the job" }
            }
        }
        @if p.failed > 0 {
            h2 { "Failed (" (p.failed) ")" }
            @if p.failed > p.failures.len() as u64 {
                p class="muted" { "The first " (KEPT_FAILURES) " with their reason:" }
            }
            ul class="failures" {
                @for (id, why) in &p.failures {
                    li { a href=(format!("/ui/users/{id}")) { code { (id) } } ": " (why) }
                }
            }
        }
    }
}

/// `GET /ui/jobs/{id}`: the job's page.
pub(super) async fn page(
    State(st): State<UiState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let Some(job) = st.jobs.get(&id) else {
        return no_job(&session);
    };
    let body = html! {
        dl class="facts" {
            dt { "Action" } dd { (job.action.as_str()) }
            dt { "Users matching" } dd { (job.filter) }
            dt { "Started" } dd { (format::when(job.started)) " by " (job.actor) }
        }
        div id="job" data-refresh=(format!("/ui/jobs/{}/fragment", job.id)) data-every=(REFRESH_SECS) aria-live="polite" {
            (progress(&job, &session))
        }
        p { a href="/ui/users" { "Back to the users" } }
    };
    layout::send(
        StatusCode::OK,
        layout::page("Bulk job", Some(&session.chrome), "Users", body),
    )
}

/// `GET /ui/jobs/{id}/fragment`: the progress alone, for the script.
pub(super) async fn fragment(
    State(st): State<UiState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    match st.jobs.get(&id) {
        Some(job) => layout::send(StatusCode::OK, progress(&job, &session)),
        None => no_job(&session),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/jobs/{id}/cancel`: stops the job before its next user (the
/// role its action needs, CSRF-checked).
pub(super) async fn cancel(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let Some(job) = st.jobs.get(&id) else {
        return no_job(&session);
    };
    if let Err(page) = Change::begin(&st, &session, &headers, &csrf, job.action.route(), None).await
    {
        return page;
    }
    job.cancel();
    Redirect::to(&format!("/ui/jobs/{}", job.id)).into_response()
}
