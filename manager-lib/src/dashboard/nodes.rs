//! The node pages: the list (status, users, traffic, last answer) with
//! start, stop and delete (delete asks first, on a page of its own); the
//! add-node form, whose answer shows the node's key once with a ready
//! agent settings file and the command that starts the agent; and a
//! node's page (its inbounds, profile, recent heartbeat events and
//! traffic by day).

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::change::{Change, failed, may};
use super::overview::{Fleet, node_name, status_text};
use super::session::Session;
use super::{UiState, format, layout};
use super::{charts, node_events};
use crate::api::ApiError;
use crate::domain::usage::{DAY_MS, bucket};
use crate::domain::{ActualStatus, Node, NodeId, NodeSummary, Timestamp};
use crate::manager::ManagerError;

/// Days in a node's traffic chart.
pub const CHART_DAYS: i64 = 14;

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub(super) struct NewNodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    endpoint: String,
}

fn not_found(session: &Session) -> Response {
    failed(&ApiError::Manager(ManagerError::NodeNotFound), session)
}

fn parse_id(raw: &str) -> Option<NodeId> {
    raw.parse().ok()
}

/// The users a node serves: every user on the nodes while it runs.
fn users_on(node: &NodeSummary, fleet: &Fleet) -> u64 {
    if node.actual_status == ActualStatus::Running {
        fleet.state.enabled_users
    } else {
        0
    }
}

fn action(session: &Session, (id, name): (NodeId, &str), verb: &str, label: &str) -> Markup {
    html! {
        form class="inline" method="post" action=(format!("/ui/nodes/{id}/{verb}")) {
            (session.chrome.csrf_field())
            button type="submit" aria-label=(format!("{label} {name}")) { (label) }
        }
    }
}

/// `GET /ui/nodes`: every node.
pub(super) async fn list(State(st): State<UiState>, session: Session) -> Response {
    let fleet = match Fleet::read(&st).await {
        Ok(fleet) => fleet,
        Err(e) => return failed(&ApiError::from(e), &session),
    };
    let admin = may(&session, "/node/start");
    let body = html! {
        @if may(&session, "/node/new") {
            p { a class="button" href="/ui/nodes/new" { "Add node" } }
        }
        @if fleet.nodes.is_empty() {
            p { "No node yet." }
        } @else {
            div class="scroll" {
                table class="nodes" {
                    thead { tr {
                        th scope="col" { "Node" }
                        th scope="col" { "Status" }
                        th scope="col" { "Users" }
                        th scope="col" { "Traffic 24 h" }
                        th scope="col" { "Last answer" }
                        @if admin { th scope="col" { "Actions" } }
                    } }
                    tbody {
                        @for n in &fleet.nodes {
                            tr {
                                td { a href=(format!("/ui/nodes/{}", n.id)) { (n.name()) } }
                                td class=(format!("status-{}", n.actual_status.as_str().to_lowercase())) {
                                    (status_text(n.actual_status, n.required_status))
                                }
                                td class="num" { (users_on(n, &fleet)) }
                                td class="num" { (format::bytes(fleet.traffic_of(n.id))) }
                                td { (format::age(n.last_seen, fleet.now)) }
                                @if admin {
                                    td class="actions" {
                                        (action(&session, (n.id, n.name()), "start", "Start"))
                                        (action(&session, (n.id, n.name()), "stop", "Stop"))
                                        a class="button danger" href=(format!("/ui/nodes/{}/delete", n.id))
                                            aria-label=(format!("Delete {}", n.name())) { "Delete" }
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
        layout::page("Nodes", Some(&session.chrome), "Nodes", body),
    )
}

fn new_node_form(session: &Session, endpoint: &str) -> Markup {
    html! {
        form class="stack" method="post" action="/ui/nodes/new" {
            (session.chrome.csrf_field())
            label for="endpoint" { "Endpoint" }
            input id="endpoint" name="endpoint" type="url" required value=(endpoint)
                placeholder="http://node1.example.com:8443";
            p class="hint" { "The agent's base URL, as the manager reaches it." }
            button type="submit" { "Add" }
        }
    }
}

/// `GET /ui/nodes/new`: the add-node form.
pub(super) async fn new_form(session: Session) -> Response {
    let body = new_node_form(&session, "");
    layout::send(
        StatusCode::OK,
        layout::page("Add node", Some(&session.chrome), "Nodes", body),
    )
}

/// The agent settings file for `node`: listen on the endpoint's port, the
/// key inline, the rest at the shipped example's values.
fn agent_settings(node: &Node) -> String {
    let (host, port) = match url::Url::parse(&node.endpoint) {
        Ok(url) => (
            url.host_str().unwrap_or("vpn.example.com").to_owned(),
            url.port_or_known_default().unwrap_or(8443),
        ),
        Err(_) => ("vpn.example.com".to_owned(), 8443),
    };
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let template = format!(
        "vless://{{{{.UserID}}}}@{host}:443?encryption=none&security=tls&sni={host}&type=tcp#{{{{.UserName}}}}"
    );
    format!(
        "# /etc/xray-node-agent/agent.toml, for node {id} ({endpoint}).\n\
         # Every option: packaging/examples/agent.toml.\n\
         listen = {listen}\n\
         node_key = {key}\n\
         flavor = \"xray\"\n\
         user_config_template = {template}\n\
         \n\
         [core]\n\
         binary = \"/usr/local/bin/xray\"\n\
         base_config = \"/etc/xray-node-agent/base.json\"\n",
        id = node.id,
        endpoint = node.endpoint.replace('\n', " "),
        listen = quote(&format!("0.0.0.0:{port}")),
        key = quote(&node.key.expose_base64url()),
        template = quote(&template),
    )
}

/// `POST /ui/nodes/new`: registers the node (idempotent by endpoint) and
/// shows its key, once: this answer is the only page that holds it.
pub(super) async fn create(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<NewNodeForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return failed(&ApiError::BadRequest("no form".into()), &session);
    };
    let change = match Change::begin(&st, &session, &headers, &form.csrf, "/node/new", None).await {
        Ok(change) => change,
        Err(page) => return page,
    };
    let result = st.manager.new_node(form.endpoint.trim()).await;
    let target = result.as_ref().ok().map(|n| n.id.to_string());
    let node = match change.finish(result, target).await {
        Ok(node) => node,
        Err(page) => return page,
    };
    let settings = agent_settings(&node);
    let body = html! {
        p role="status" { "Node " a href=(format!("/ui/nodes/{}", node.id)) { (node.endpoint) } " is registered." }
        section aria-labelledby="h-key" {
            h2 id="h-key" { "Its key, shown this once" }
            p { "Copy it now: no page shows it again. The agent needs it to open the manager's requests." }
            label for="node-key" { "Node key" }
            input id="node-key" class="secret" type="text" readonly value=(node.key.expose_base64url());
        }
        section aria-labelledby="h-settings" {
            h2 id="h-settings" { "Agent settings file" }
            label for="agent-settings" { "/etc/xray-node-agent/agent.toml" }
            textarea id="agent-settings" readonly rows="12" { (settings) }
            h2 { "Start the agent" }
            label for="agent-command" { "Command" }
            input id="agent-command" type="text" readonly
                value="xray-node-agent --config /etc/xray-node-agent/agent.toml";
            p { "Then start the node from the " a href="/ui/nodes" { "node list" } "." }
        }
    };
    layout::send(
        StatusCode::OK,
        layout::page("Node added", Some(&session.chrome), "Nodes", body),
    )
}

async fn node_or_page(st: &UiState, session: &Session, raw: &str) -> Result<Node, Response> {
    let Some(id) = parse_id(raw) else {
        return Err(not_found(session));
    };
    st.manager
        .get_node(id)
        .await
        .map_err(|e| failed(&ApiError::from(e), session))
}

/// `GET /ui/nodes/{id}`: the node, its inbounds and its traffic by day.
pub(super) async fn page(
    State(st): State<UiState>,
    session: Session,
    Path(raw): Path<String>,
) -> Response {
    let node = match node_or_page(&st, &session, &raw).await {
        Ok(node) => node,
        Err(page) => return page,
    };
    let now = Timestamp::now();
    let first = Timestamp(bucket(now, DAY_MS).0 - (CHART_DAYS - 1) * DAY_MS);
    let end = Timestamp(first.0 + CHART_DAYS * DAY_MS);
    // One read of the node's hours, summed per day; days without traffic
    // have no row and show as 0.
    let rows = match st
        .manager
        .storage()
        .node_usage_by_day(node.id, first, end)
        .await
    {
        Ok(rows) => rows,
        Err(e) => return failed(&ApiError::from(ManagerError::from(e)), &session),
    };
    let days: Vec<(String, u64)> = (0..CHART_DAYS)
        .map(|i| {
            let day = Timestamp(first.0 + i * DAY_MS);
            let bytes = rows
                .iter()
                .filter(|r| r.day == Some(day))
                .map(|r| r.up.saturating_add(r.down))
                .fold(0, u64::saturating_add);
            (format::day(day), bytes)
        })
        .collect();
    let fleet_seq = match st.manager.fleet_state().await {
        Ok(state) => state.last_seq,
        Err(e) => return failed(&ApiError::from(e), &session),
    };
    let events = match st
        .manager
        .storage()
        .node_events(node.id, node_events::SHOWN)
        .await
    {
        Ok(events) => events,
        Err(e) => return failed(&ApiError::from(ManagerError::from(e)), &session),
    };
    let admin = may(&session, "/node/start");
    let body = html! {
        dl class="facts" {
            dt { "Endpoint" } dd { (node.endpoint) }
            @if let Some(remark) = &node.profile.remark { dt { "Remark" } dd { (remark) } }
            @if let Some(address) = &node.profile.address { dt { "Address in links" } dd { (address) } }
            dt { "Status" } dd { (status_text(node.actual_status, node.required_status)) }
            dt { "Last answer" } dd { (format::age(node.last_seen, now)) }
            dt { "Changes applied" } dd {
                @if node.applied_seq >= fleet_seq { "all" } @else { (fleet_seq - node.applied_seq) " behind" }
            }
            dt { "Traffic multiplier" } dd { (node.traffic_multiplier) }
            dt { "Traffic, ever" } dd { (format::bytes(node.used_up)) " up, " (format::bytes(node.used_down)) " down" }
            dt { "Added" } dd { (format::when(node.created_at)) }
        }
        @if admin {
            p class="actions" {
                (action(&session, (node.id, node_name(&node)), "start", "Start"))
                (action(&session, (node.id, node_name(&node)), "stop", "Stop"))
                a class="button danger" href=(format!("/ui/nodes/{}/delete", node.id)) { "Delete" }
            }
        }
        section aria-labelledby="h-inbounds" {
            h2 id="h-inbounds" { "Inbounds" }
            @if node.inbounds.is_empty() {
                p { "None described yet: the node describes them when it starts." }
            } @else {
                div class="scroll" {
                    table {
                        thead { tr {
                            th scope="col" { "Tag" } th scope="col" { "Protocol" }
                            th scope="col" { "Port" } th scope="col" { "Flow" }
                        } }
                        tbody {
                            @for i in &node.inbounds {
                                tr {
                                    td { (i.tag) } td { (i.protocol.as_str()) }
                                    td class="num" { (i.port) } td { (i.flow) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-events" {
            h2 id="h-events" { "Recent events" }
            (node_events::table(&events, now))
        }
        section aria-labelledby="h-chart" {
            h2 id="h-chart" { "Traffic by day" }
            (charts::bars(&format!("Traffic of the last {CHART_DAYS} days"), &days))
        }
    };
    layout::send(
        StatusCode::OK,
        layout::page(node_name(&node), Some(&session.chrome), "Nodes", body),
    )
}

/// `GET /ui/nodes/{id}/delete`: asks before deleting.
pub(super) async fn confirm_delete(
    State(st): State<UiState>,
    session: Session,
    Path(raw): Path<String>,
) -> Response {
    let node = match node_or_page(&st, &session, &raw).await {
        Ok(node) => node,
        Err(page) => return page,
    };
    layout::confirm(
        &session.chrome,
        layout::Confirm {
            title: "Delete node",
            current: "Nodes",
            question: html! {
                "Delete " strong { (node_name(&node)) } " (" (node.endpoint) ")? The manager stops it if it can and forgets it."
            },
            action: format!("/ui/nodes/{}/delete", node.id),
            cancel: "/ui/nodes".into(),
        },
    )
}

/// The three node changes: start, stop, delete.
#[derive(Clone, Copy)]
enum Verb {
    Start,
    Stop,
    Delete,
}

async fn node_change(
    st: UiState,
    session: Session,
    headers: HeaderMap,
    raw: String,
    form: Result<Form<CsrfForm>, FormRejection>,
    verb: Verb,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).ok().unwrap_or_default();
    let route = match verb {
        Verb::Start => "/node/start",
        Verb::Stop => "/node/stop",
        Verb::Delete => "/node/delete",
    };
    let id = parse_id(&raw);
    let target = id.map(|id| id.to_string());
    let change = match Change::begin(&st, &session, &headers, &csrf, route, target.clone()).await {
        Ok(change) => change,
        Err(page) => return page,
    };
    let result = match id {
        None => Err(ManagerError::NodeNotFound),
        Some(id) => match verb {
            Verb::Start => st.manager.start_node(id).await,
            Verb::Stop => st.manager.stop_node(id).await,
            Verb::Delete => st.manager.delete_node(id).await,
        },
    };
    match change.finish(result, target).await {
        Ok(()) => Redirect::to("/ui/nodes").into_response(),
        Err(page) => page,
    }
}

/// `POST /ui/nodes/{id}/start`.
pub(super) async fn start(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    node_change(st, session, headers, raw, form, Verb::Start).await
}

/// `POST /ui/nodes/{id}/stop`.
pub(super) async fn stop(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    node_change(st, session, headers, raw, form, Verb::Stop).await
}

/// `POST /ui/nodes/{id}/delete`.
pub(super) async fn delete(
    State(st): State<UiState>,
    session: Session,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    node_change(st, session, headers, raw, form, Verb::Delete).await
}
