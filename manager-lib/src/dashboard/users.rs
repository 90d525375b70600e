//! The user table: paged on the server by key ([`crate::storage::UserDirectory`]),
//! so its first and its ten-thousandth page cost the same; a search by name
//! or id prefix, filters by status and state, three orders. Create a user
//! (with a plan), and enable, disable or delete a selection at once, with a
//! summary of what failed; or offer the same on every user the filter
//! matches (its confirmation and job are the `bulk_all` module's).

use axum::Form;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::change::{Change, failed, may};
use super::jobs::{Bulk, counted};
use super::session::Session;
use super::{UiState, format, layout};
use crate::api::ApiError;
use crate::domain::{Plan, Timestamp, User, UserQuery, UserSort, UserState, UserStatus};

/// Users on a page of the table.
pub const PAGE: u32 = 50;
/// Users one bulk action takes at most (a page's selection is far less).
pub const MAX_BULK: usize = 1000;

/// The table's query string.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct ListParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    order: String,
    #[serde(default)]
    after: String,
}

const STATES: &[(&str, UserState)] = &[
    ("active", UserState::Active),
    ("limited", UserState::Limited),
    ("expired", UserState::Expired),
    ("on-hold", UserState::OnHold),
    ("disabled", UserState::Disabled),
];

/// How a state reads on the pages.
pub(super) fn state_text(state: UserState) -> &'static str {
    STATES
        .iter()
        .find(|(_, s)| *s == state)
        .map_or("?", |(text, _)| text)
}

impl ListParams {
    pub(super) fn query(&self) -> Result<UserQuery, String> {
        let status = match self.status.as_str() {
            "" => None,
            "enabled" => Some(UserStatus::Enabled),
            "disabled" => Some(UserStatus::Disabled),
            other => return Err(format!("unknown status {other:?}")),
        };
        let state = match self.state.as_str() {
            "" => None,
            text => Some(
                STATES
                    .iter()
                    .find(|(t, _)| *t == text)
                    .map(|(_, s)| *s)
                    .ok_or_else(|| format!("unknown state {text:?}"))?,
            ),
        };
        let sort = match self.sort.as_str() {
            "" => UserSort::Name,
            text => UserSort::parse(text).ok_or_else(|| format!("unknown order {text:?}"))?,
        };
        let descending = match self.order.as_str() {
            "" | "asc" => false,
            "desc" => true,
            other => return Err(format!("unknown direction {other:?}")),
        };
        Ok(UserQuery {
            search: Some(self.q.clone()).filter(|q| !q.trim().is_empty()),
            status,
            state,
            sort,
            descending,
            after: Some(self.after.clone()).filter(|a| !a.is_empty()),
            limit: PAGE,
        })
    }

    /// The filter's fields (name, value), `after` left out.
    pub(super) fn fields(&self) -> [(&'static str, &str); 5] {
        [
            ("q", self.q.as_str()),
            ("status", self.status.as_str()),
            ("state", self.state.as_str()),
            ("sort", self.sort.as_str()),
            ("order", self.order.as_str()),
        ]
    }

    /// The filter's fields as hidden inputs of a form.
    pub(super) fn hidden(&self) -> Markup {
        html! {
            @for (name, value) in self.fields() {
                @if !value.is_empty() { input type="hidden" name=(name) value=(value); }
            }
        }
    }

    /// The filter in words, as a confirmation states it.
    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.q.trim().is_empty() {
            parts.push(format!("name or id starting with {:?}", self.q.trim()));
        }
        if !self.status.is_empty() {
            parts.push(format!("status {}", self.status));
        }
        if !self.state.is_empty() {
            parts.push(format!("state {}", self.state));
        }
        match parts.is_empty() {
            true => "no filter (every user)".to_owned(),
            false => parts.join(", "),
        }
    }

    /// The table's URL with these parameters, `after` replaced.
    pub(super) fn url(&self, after: Option<&str>) -> String {
        let mut qs = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.fields() {
            if !v.is_empty() {
                qs.append_pair(k, v);
            }
        }
        if let Some(after) = after {
            qs.append_pair("after", after);
        }
        format!("/ui/users?{}", qs.finish())
    }
}

fn select(id: &str, label: &str, current: &str, options: &[(&str, &str)]) -> Markup {
    html! {
        label for=(id) { (label) }
        select id=(id) name=(id) {
            @for (value, text) in options {
                option value=(value) selected[*value == current] { (text) }
            }
        }
    }
}

/// Used bytes and the limit, as `1.2 GiB of 50.0 GiB`.
pub(super) fn usage_text(user: &User) -> String {
    match user.plan.data_limit {
        Some(limit) => format!("{} of {}", format::bytes(user.used()), format::bytes(limit)),
        None => format::bytes(user.used()),
    }
}

/// The expiry as days left (`never` without one).
pub(super) fn expiry_text(user: &User, now: Timestamp) -> String {
    match user.plan.expire_at {
        None => "never".to_owned(),
        Some(at) if at.0 <= now.0 => format!("expired {}", format::when(at)),
        Some(at) => format!("{} left", format::span(at.0 - now.0)),
    }
}

/// `GET /ui/users`: a page of the table.
pub(super) async fn list(
    State(st): State<UiState>,
    session: Session,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let query = match params.query() {
        Ok(q) => q,
        Err(e) => return failed(&ApiError::BadRequest(e), &session),
    };
    let page = match st.manager.find_users(&query).await {
        Ok(page) => page,
        Err(e) => return failed(&ApiError::from(e), &session),
    };
    let now = Timestamp::now();
    let changes = may(&session, "/user/enable");
    // The counters say how many match unless there is a search (cheap:
    // no user is read); the confirmation counts in every case.
    let matching = match st.manager.storage().count_users_by_state().await {
        Ok(counts) => counted(&query, &counts),
        Err(e) => {
            return failed(
                &ApiError::from(crate::manager::ManagerError::from(e)),
                &session,
            );
        }
    };
    let body = html! {
        @if may(&session, "/user/new") {
            p { a class="button" href="/ui/users/new" { "New user" } }
        }
        form class="filters" method="get" action="/ui/users" role="search" {
            div {
                label for="q" { "Search" }
                input id="q" name="q" type="search" value=(params.q) placeholder="name or id prefix";
            }
            div { (select("status", "Status", &params.status, &[("", "any"), ("enabled", "enabled"), ("disabled", "disabled")])) }
            div { (select("state", "State", &params.state, &[("", "any"), ("active", "active"), ("limited", "limited"), ("expired", "expired"), ("on-hold", "on hold"), ("disabled", "disabled")])) }
            div { (select("sort", "Sort by", &params.sort, &[("name", "name"), ("created", "creation"), ("usage", "usage")])) }
            div { (select("order", "Order", &params.order, &[("asc", "ascending"), ("desc", "descending")])) }
            div { button type="submit" { "Filter" } }
        }
        @if page.items.is_empty() {
            p { "No user matches." }
        } @else {
            form method="post" action="/ui/users/bulk" {
                (session.chrome.csrf_field())
                @if changes {
                    p class="actions" {
                        label { input type="checkbox" data-select-all="ids"; " Select all on this page" }
                        button type="submit" name="action" value="enable" { "Enable selected" }
                        button type="submit" name="action" value="disable" { "Disable selected" }
                        button type="submit" name="action" value="delete" class="danger"
                            data-confirm="Delete the selected users?" { "Delete selected" }
                    }
                }
                div class="scroll" {
                    table class="users" {
                        thead { tr {
                            @if changes { th scope="col" { span class="sr" { "Select" } } }
                            th scope="col" { "Name" }
                            th scope="col" { "Status" }
                            th scope="col" { "State" }
                            th scope="col" { "Used" }
                            th scope="col" { "Expiry" }
                            th scope="col" { "Created" }
                        } }
                        tbody {
                            @for u in &page.items {
                                tr {
                                    @if changes {
                                        td { input type="checkbox" name="ids" value=(u.id) aria-label=(u.name); }
                                    }
                                    td { a href=(format!("/ui/users/{}", u.id)) { (u.name) } }
                                    td { (u.status.as_str().to_lowercase()) }
                                    td { (state_text(u.state())) }
                                    td class="num" { (usage_text(u)) }
                                    td { (expiry_text(u, now)) }
                                    td { (format::when(u.created_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if changes && !page.items.is_empty() {
            form class="filters" method="get" action="/ui/users/all" aria-labelledby="h-all" {
                h2 id="h-all" class="sr" { "Apply to every matching user" }
                (params.hidden())
                div {
                    label for="all-action" { "Action on every matching user" }
                    select id="all-action" name="action" {
                        option value="disable" { "disable" }
                        option value="enable" { "enable" }
                        option value="delete" { "delete" }
                    }
                }
                div { button type="submit" name="go" value="all" {
                    @match matching {
                        Some(n) => { "Apply to all " (n) " matching…" }
                        None => "Apply to all matching…",
                    }
                } }
            }
        }
        nav class="pager" aria-label="Pages" {
            @if query.after.is_some() { a href=(params.url(None)) { "First page" } }
            @if let Some(next) = &page.next { a href=(params.url(Some(next))) rel="next" { "Next page" } }
        }
    };
    layout::send(
        StatusCode::OK,
        layout::page("Users", Some(&session.chrome), "Users", body),
    )
}

/// `GET /ui/users/new`: the new-user form.
pub(super) async fn new_form(session: Session) -> Response {
    let body = html! {
        form class="stack" method="post" action="/ui/users/new" {
            (session.chrome.csrf_field())
            label for="name" { "Name" }
            input id="name" name="name" type="text" required maxlength="1024";
            label for="limit_gib" { "Data limit (GiB, empty: none)" }
            input id="limit_gib" name="limit_gib" type="number" min="0" step="any";
            label for="days" { "Expires in (days, empty: never)" }
            input id="days" name="days" type="number" min="1" step="1";
            button type="submit" { "Create" }
        }
    };
    layout::send(
        StatusCode::OK,
        layout::page("New user", Some(&session.chrome), "Users", body),
    )
}

#[derive(Deserialize)]
pub(super) struct NewUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    limit_gib: String,
    #[serde(default)]
    days: String,
}

/// GiB in a form field as bytes (`None` when empty), else what is wrong.
pub(super) fn gib_field(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(gib) if gib.is_finite() && gib > 0.0 && gib < 8.0e9 => {
            Ok(Some((gib * 1024.0 * 1024.0 * 1024.0).round() as u64))
        }
        _ => Err(format!(
            "a data limit is a number of GiB above 0, not {text:?}"
        )),
    }
}

/// Days in a form field as the time that many days from `now`.
pub(super) fn days_field(text: &str, now: Timestamp) -> Result<Option<Timestamp>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(days) if (1..=36_500).contains(&days) => {
            Ok(Some(Timestamp(now.0 + days * crate::domain::usage::DAY_MS)))
        }
        _ => Err(format!(
            "days are a whole number from 1 to 36500, not {text:?}"
        )),
    }
}

/// `POST /ui/users/new`: creates the user (disabled, as every new user)
/// and opens its page.
pub(super) async fn create(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<NewUserForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return failed(&ApiError::BadRequest("no form".into()), &session);
    };
    let change = match Change::begin(&st, &session, &headers, &form.csrf, "/user/new", None).await {
        Ok(change) => change,
        Err(page) => return page,
    };
    let now = Timestamp::now();
    let plan = match (gib_field(&form.limit_gib), days_field(&form.days, now)) {
        (Ok(data_limit), Ok(expire_at)) => Plan {
            data_limit,
            expire_at,
            ..Plan::default()
        },
        (Err(e), _) | (_, Err(e)) => return failed(&ApiError::BadRequest(e), &session),
    };
    let result = st.manager.new_user_with_plan(&form.name, plan).await;
    let target = result.as_ref().ok().map(|u| u.id.to_string());
    match change.finish(result, target).await {
        Ok(user) => Redirect::to(&format!("/ui/users/{}", user.id)).into_response(),
        Err(page) => page,
    }
}

/// `POST /ui/users/bulk`: one action on every selected user, each a call
/// of its own (role, audit); a summary of what was done and what failed.
pub(super) async fn bulk(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (mut csrf, mut action, mut ids) = (String::new(), String::new(), Vec::new());
    for (k, v) in url::form_urlencoded::parse(&body) {
        match &*k {
            "csrf" => csrf = v.into_owned(),
            "action" => action = v.into_owned(),
            "ids" => ids.push(v.into_owned()),
            _ => {}
        }
    }
    let Some(bulk) = Bulk::parse(&action) else {
        let e = ApiError::BadRequest("choose enable, disable or delete".into());
        return failed(&e, &session);
    };
    if let Err(page) = Change::begin(&st, &session, &headers, &csrf, bulk.route(), None).await {
        return page;
    }
    if ids.len() > MAX_BULK {
        let e = ApiError::BadRequest(format!("at most {MAX_BULK} users at once"));
        return failed(&e, &session);
    }
    let mut done = 0usize;
    let mut failures: Vec<(String, String)> = Vec::new();
    for raw in &ids {
        match bulk
            .apply(&st.manager, &session.caller, raw.parse().ok())
            .await
        {
            Ok(()) => done += 1,
            Err(why) => failures.push((raw.chars().take(64).collect(), why)),
        }
    }
    let done_word = bulk.done_word();
    let body = html! {
        p role="status" { (done) " of " (ids.len()) " selected users " (done_word) "." }
        @if !failures.is_empty() {
            h2 { "Failed (" (failures.len()) ")" }
            ul {
                @for (id, why) in &failures { li { code { (id) } ": " (why) } }
            }
        }
        p { a href="/ui/users" { "Back to the users" } }
    };
    layout::send(
        StatusCode::OK,
        layout::page("Bulk action", Some(&session.chrome), "Users", body),
    )
}
