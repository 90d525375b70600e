//! A user's page: the facts, enable/disable/delete, the plan (limit and
//! expiry) to edit, usage by day (a chart) and by node, the subscription
//! link with its QR code and its rotation, and the devices that fetched it.
//! The link is the user's credential: it shows only to a role that may
//! read it through the API (`users` and above).

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{PreEscaped, html};
use serde::Deserialize;

use super::change::{Change, failed, may};
use super::overview::node_name;
use super::session::Session;
use super::users::{expiry_text, gib_field, state_text, usage_text};
use super::{UiState, charts, format, layout};
use crate::api::ApiError;
use crate::api::roles::required_role;
use crate::domain::usage::{DAY_MS, UsageGrouping, bucket};
use crate::domain::{FieldEdit, PlanEdit, Timestamp, User, UserId};
use crate::manager::ManagerError;

/// Days in a user's usage chart.
pub const CHART_DAYS: i64 = 30;

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub(super) struct DeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    hwid: String,
}

#[derive(Deserialize)]
pub(super) struct PlanForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    limit_gib: String,
    #[serde(default)]
    expires: String,
}

async fn user_or_page(st: &UiState, session: &Session, raw: &str) -> Result<User, Response> {
    let Ok(id) = raw.parse::<UserId>() else {
        return Err(failed(
            &ApiError::Manager(ManagerError::UserNotFound),
            session,
        ));
    };
    st.manager
        .get_user(id)
        .await
        .map_err(|e| failed(&ApiError::from(e), session))
}

/// `YYYY-MM-DD` as its UTC midnight.
fn date_field(text: &str) -> Result<Option<Timestamp>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || format!("a date is YYYY-MM-DD, not {text:?}");
    let mut parts = text.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>()) else {
        return Err(bad());
    };
    let month = time::Month::try_from(m).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
    Ok(Some(Timestamp(
        date.midnight().assume_utc().unix_timestamp() * 1000,
    )))
}

/// The subscription URL as a phone can open it: absolute, on this host
/// when the settings give only a path.
fn absolute(url: String, headers: &HeaderMap, secure: bool) -> String {
    if !url.starts_with('/') {
        return url;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if secure { "https" } else { "http" };
    format!("{scheme}://{host}{url}")
}

fn button(session: &Session, user: &User, verb: &str, label: &str) -> maud::Markup {
    html! {
        form class="inline" method="post" action=(format!("/ui/users/{}/{verb}", user.id)) {
            (session.chrome.csrf_field())
            button type="submit" { (label) }
        }
    }
}

/// `GET /ui/users/{id}`.
pub(super) async fn page(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let user = match user_or_page(&st, &session, &raw).await {
        Ok(user) => user,
        Err(page) => return page,
    };
    let now = Timestamp::now();
    let today = bucket(now, DAY_MS);
    let from = Timestamp(today.0 - (CHART_DAYS - 1) * DAY_MS);
    let to = Timestamp(today.0 + DAY_MS);
    let reads = async {
        let by_day = st
            .manager
            .user_usage(user.id, from, to, UsageGrouping::Day)
            .await?;
        let by_node = st
            .manager
            .user_usage(user.id, from, to, UsageGrouping::Node)
            .await?;
        let devices = st.manager.list_devices(user.id).await?;
        let nodes = crate::storage::all_nodes(st.manager.storage().as_ref()).await?;
        Ok::<_, ManagerError>((by_day, by_node, devices, nodes))
    };
    let (by_day, by_node, devices, nodes) = match reads.await {
        Ok(read) => read,
        Err(e) => return failed(&ApiError::from(e), &session),
    };
    let day_bytes: HashMap<i64, u64> = by_day
        .iter()
        .filter_map(|r| r.day.map(|d| (d.0, r.up.saturating_add(r.down))))
        .collect();
    let days: Vec<(String, u64)> = (0..CHART_DAYS)
        .map(|i| {
            let day = Timestamp(from.0 + i * DAY_MS);
            (
                format::day(day),
                day_bytes.get(&day.0).copied().unwrap_or(0),
            )
        })
        .collect();
    let names: HashMap<_, _> = nodes.iter().map(|n| (n.id, node_name(n))).collect();
    let edit = may(&session, "/user/edit");
    let forget = may(&session, "/user/device/delete");
    let sees_link = session
        .caller
        .role
        .allows(required_role("GET", "/users/{id}/subscription"));
    let link = sees_link.then(|| {
        let token = user.subscription_token();
        let url = st.subscriptions.settings().url_for(token.expose());
        absolute(url, &headers, st.secure)
    });
    let qr = link.as_deref().and_then(|url| {
        crate::subscription::qr::svg(url, 240).map(|svg| {
            svg.replacen(
                "<svg ",
                r#"<svg role="img" aria-label="Subscription QR code" "#,
                1,
            )
        })
    });
    let expiry_value = user.plan.expire_at.map(format::day).unwrap_or_default();
    let limit_value = user
        .plan
        .data_limit
        .map(|b| format!("{}", b as f64 / 1024.0 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let body = html! {
        dl class="facts" {
            dt { "Name" } dd { (user.name) }
            dt { "Id" } dd { code { (user.id) } }
            dt { "Status" } dd { (user.status.as_str().to_lowercase()) }
            dt { "State" } dd { (state_text(user.state())) }
            dt { "Used" } dd { (usage_text(&user)) }
            dt { "Expiry" } dd { (expiry_text(&user, now)) }
            dt { "Created" } dd { (format::when(user.created_at)) }
        }
        @if may(&session, "/user/enable") {
            p class="actions" {
                (button(&session, &user, "enable", "Enable"))
                (button(&session, &user, "disable", "Disable"))
                a class="button danger" href=(format!("/ui/users/{}/delete", user.id)) { "Delete" }
            }
        }
        @if edit {
            section aria-labelledby="h-plan" {
                h2 id="h-plan" { "Plan" }
                form class="stack" method="post" action=(format!("/ui/users/{}/plan", user.id)) {
                    (session.chrome.csrf_field())
                    label for="limit_gib" { "Data limit (GiB, empty: none)" }
                    input id="limit_gib" name="limit_gib" type="number" min="0" step="any" value=(limit_value);
                    label for="expires" { "Expires on (UTC date, empty: never)" }
                    input id="expires" name="expires" type="date" value=(expiry_value);
                    button type="submit" { "Save plan" }
                }
            }
        }
        section aria-labelledby="h-usage" {
            h2 id="h-usage" { "Usage by day" }
            (charts::bars(&format!("Traffic of the last {CHART_DAYS} days"), &days))
            h2 { "Usage by node, last " (CHART_DAYS) " days" }
            @if by_node.is_empty() {
                p { "None." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Node" } th scope="col" { "Traffic" } } }
                    tbody {
                        @for r in &by_node {
                            @if let Some(node) = r.node {
                                tr {
                                    td { a href=(format!("/ui/nodes/{node}")) { (names.get(&node).copied().unwrap_or("deleted node")) } }
                                    td class="num" { (format::bytes(r.up.saturating_add(r.down))) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(link) = &link {
            section aria-labelledby="h-sub" {
                h2 id="h-sub" { "Subscription" }
                p { a id="subscription-link" href=(link) { (link) } }
                @if let Some(svg) = &qr { div class="qr" { (PreEscaped(svg)) } }
                @if may(&session, "/user/subscription/rotate") {
                    form method="post" action=(format!("/ui/users/{}/rotate", user.id))
                        data-confirm="Give the user a new link? The old one stops working at once." {
                        (session.chrome.csrf_field())
                        button type="submit" { "Rotate link" }
                    }
                }
            }
        }
        section aria-labelledby="h-devices" {
            h2 id="h-devices" { "Devices (" (devices.len()) ")" }
            @if !devices.is_empty() {
                div class="scroll" {
                    table {
                        thead { tr {
                            th scope="col" { "Model" } th scope="col" { "System" }
                            th scope="col" { "App" } th scope="col" { "Last seen" }
                            @if forget { th scope="col" { "Action" } }
                        } }
                        tbody {
                            @for d in &devices {
                                tr {
                                    td { (d.model) } td { (d.os) " " (d.os_version) }
                                    td { (d.user_agent) } td { (format::age(Some(d.last_seen), now)) }
                                    @if forget {
                                        td {
                                            form method="post" action={ "/ui/users/" (user.id) "/devices/forget" } {
                                                (session.chrome.csrf_field())
                                                input type="hidden" name="hwid" value=(d.hwid);
                                                button type="submit" aria-label={ "Forget the device " (d.model) } { "Forget" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::send(
        StatusCode::OK,
        layout::page(&user.name, Some(&session.chrome), "Users", body),
    )
}

/// The changes on one user.
#[derive(Clone, Copy)]
pub(super) enum Verb {
    Enable,
    Disable,
    Delete,
    Rotate,
}

async fn user_change(
    st: UiState,
    session: Session,
    headers: HeaderMap,
    raw: String,
    form: Result<Form<CsrfForm>, FormRejection>,
    verb: Verb,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let route = match verb {
        Verb::Enable => "/user/enable",
        Verb::Disable => "/user/disable",
        Verb::Delete => "/user/delete",
        Verb::Rotate => "/user/subscription/rotate",
    };
    let manager = &st.manager;
    let done = change_user(
        &st,
        &session,
        &headers,
        &csrf,
        route,
        &raw,
        |id| async move {
            match verb {
                Verb::Enable => manager.enable_user(id).await.map(drop),
                Verb::Disable => manager.disable_user(id).await.map(drop),
                Verb::Delete => manager.delete_user(id).await,
                Verb::Rotate => manager.rotate_subscription(id).await.map(drop),
            }
        },
    )
    .await;
    match (done, verb) {
        (Ok(_), Verb::Delete) => Redirect::to("/ui/users").into_response(),
        (Ok(back), _) => Redirect::to(&back).into_response(),
        (Err(page), _) => page,
    }
}

/// One audited change on the user `raw` names: the form's token checked
/// first, then `act` on the user's id (an id that does not parse is not
/// found) and its result recorded. Answers the user's page to go back to,
/// or the page that says why nothing changed.
async fn change_user<F, Fut>(
    st: &UiState,
    session: &Session,
    headers: &HeaderMap,
    csrf: &str,
    route: &'static str,
    raw: &str,
    act: F,
) -> Result<String, Response>
where
    F: FnOnce(UserId) -> Fut,
    Fut: std::future::Future<Output = Result<(), ManagerError>>,
{
    let id: Option<UserId> = raw.parse().ok();
    let target = id.map(|id| id.to_string());
    let change = Change::begin(st, session, headers, csrf, route, target.clone()).await?;
    let result = match id {
        None => Err(ManagerError::UserNotFound),
        Some(id) => act(id).await,
    };
    let back = format!("/ui/users/{}", target.clone().unwrap_or_default());
    change.finish(result, target).await?;
    Ok(back)
}

macro_rules! user_verb {
    ($name:ident, $verb:expr, $doc:literal) => {
        #[doc = $doc]
        pub(super) async fn $name(
            State(st): State<UiState>,
            session: Session,
            headers: HeaderMap,
            Path(raw): Path<String>,
            form: Result<Form<CsrfForm>, FormRejection>,
        ) -> Response {
            user_change(st, session, headers, raw, form, $verb).await
        }
    };
}

user_verb!(enable, Verb::Enable, "`POST /ui/users/{id}/enable`.");
user_verb!(disable, Verb::Disable, "`POST /ui/users/{id}/disable`.");
user_verb!(delete, Verb::Delete, "`POST /ui/users/{id}/delete`.");
user_verb!(rotate, Verb::Rotate, "`POST /ui/users/{id}/rotate`.");

/// `GET /ui/users/{id}/delete`: asks before deleting.
pub(super) async fn confirm_delete(
    State(st): State<UiState>,
    session: Session,
    Path(raw): Path<String>,
) -> Response {
    let user = match user_or_page(&st, &session, &raw).await {
        Ok(user) => user,
        Err(page) => return page,
    };
    layout::confirm(
        &session.chrome,
        layout::Confirm {
            title: "Delete user",
            current: "Users",
            question: html! {
                "Delete " strong { (user.name) } "? The user leaves every node and cannot be brought back."
            },
            action: format!("/ui/users/{}/delete", user.id),
            cancel: format!("/ui/users/{}", user.id),
        },
    )
}

/// `POST /ui/users/{id}/plan`: sets the limit and the expiry (an empty
/// field clears it).
pub(super) async fn plan(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<PlanForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return failed(&ApiError::BadRequest("no form".into()), &session);
    };
    let id: Option<UserId> = raw.parse().ok();
    let target = id.map(|id| id.to_string());
    let change = match Change::begin(
        &st,
        &session,
        &headers,
        &form.csrf,
        "/user/edit",
        target.clone(),
    )
    .await
    {
        Ok(change) => change,
        Err(page) => return page,
    };
    let edit = match (gib_field(&form.limit_gib), date_field(&form.expires)) {
        (Ok(limit), Ok(expiry)) => PlanEdit {
            data_limit: limit.map_or(FieldEdit::Clear, FieldEdit::Set),
            expire_at: expiry.map_or(FieldEdit::Clear, FieldEdit::Set),
            ..PlanEdit::default()
        },
        (Err(e), _) | (_, Err(e)) => return failed(&ApiError::BadRequest(e), &session),
    };
    let result = match id {
        None => Err(ManagerError::UserNotFound),
        Some(id) => st.manager.edit_user_plan(id, edit).await.map(drop),
    };
    let back = format!("/ui/users/{}", target.clone().unwrap_or_default());
    match change.finish(result, target).await {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(page) => page,
    }
}

/// `POST /ui/users/{id}/devices/forget`: forgets one of the user's
/// devices (its hardware id in the form), which frees its place under the
/// user's device limit; the device counts as new at its next fetch.
pub(super) async fn forget_device(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<DeviceForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return failed(&ApiError::BadRequest("no form".into()), &session);
    };
    let route = "/user/device/delete";
    let manager = &st.manager;
    let hwid = &form.hwid;
    let act = |id| async move { manager.delete_device(id, hwid).await };
    match change_user(&st, &session, &headers, &form.csrf, route, &raw, act).await {
        Ok(back) => Redirect::to(&back).into_response(),
        Err(page) => page,
    }
}
