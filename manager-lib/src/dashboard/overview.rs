//! The fleet overview, the page an operator opens first: nodes by actual
//! and wanted status, the nodes in error with their last logged error,
//! users by state (counters the storage keeps, not a count of every user),
//! the traffic of the last 24 hours, and the nodes silent longest (those
//! that should run first); lists
//! are cut to [`LISTED_NODES`] so the page stays small at a thousand
//! nodes. The numbers sit in a fragment the script fetches again every
//! [`REFRESH_SECS`] (`/ui/overview/fragment`), without reloading the page.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::change::failed;
use super::session::Session;
use super::users::state_text;
use super::{UiState, format, layout, node_events};
use crate::api::ApiError;
use crate::domain::usage::{DAY_MS, NodeUsage};
use crate::domain::{
    ActualStatus, FleetState, Node, NodeEvent, NodeId, NodeSummary, RequiredStatus, StateCounts,
    Timestamp,
};
use crate::manager::ManagerError;

/// Seconds between two refreshes of the overview's numbers.
pub const REFRESH_SECS: u32 = 10;

/// What the overview and the node list show, read once per request: the
/// nodes' summaries (no key opened, no profile parsed: a thousand nodes
/// read in about a millisecond), counters and one traffic sum.
pub(super) struct Fleet {
    pub(super) nodes: Vec<NodeSummary>,
    pub(super) state: FleetState,
    /// Raw bytes through each node over the last 24 h.
    pub(super) traffic: HashMap<NodeId, u64>,
    pub(super) now: Timestamp,
}

impl Fleet {
    pub(super) async fn read(st: &UiState) -> Result<Fleet, ManagerError> {
        let now = Timestamp::now();
        let nodes = st.manager.storage().node_summaries().await?;
        let state = st.manager.fleet_state().await?;
        let usage = st
            .manager
            .node_usage(Timestamp(now.0 - DAY_MS), now)
            .await?;
        let traffic = usage
            .into_iter()
            .map(|NodeUsage { node, up, down }| (node, up.saturating_add(down)))
            .collect();
        Ok(Fleet {
            nodes,
            state,
            traffic,
            now,
        })
    }

    /// Bytes through `node` over the last 24 h.
    pub(super) fn traffic_of(&self, node: NodeId) -> u64 {
        self.traffic.get(&node).copied().unwrap_or(0)
    }
}

/// The name a node is shown by: its remark, else its endpoint.
pub(super) fn node_name(node: &Node) -> &str {
    crate::domain::node_summary::shown_name(node.profile.remark.as_deref(), &node.endpoint)
}

/// The status a node is shown with, as `running (wanted: running)`.
pub(super) fn status_text(actual: ActualStatus, required: RequiredStatus) -> String {
    format!(
        "{} (wanted: {})",
        actual.as_str().to_lowercase(),
        required.as_str().to_lowercase()
    )
}

/// The most nodes each of the overview's node lists shows; the nodes page
/// lists them all. Keeps the page small and quick at a thousand nodes.
pub const LISTED_NODES: usize = 20;

/// What the overview shows besides the [`Fleet`]: and the last error of each listed node in error.
struct Overview {
    fleet: Fleet,
    users: StateCounts,
    last_errors: HashMap<NodeId, NodeEvent>,
}

/// The nodes in error, longest in error first, and every node, those that
/// should run first, longest silent first; each cut to [`LISTED_NODES`]
/// (with the number before the cut).
fn lists(fleet: &Fleet) -> (Vec<&NodeSummary>, usize, Vec<&NodeSummary>, usize) {
    let mut in_error: Vec<&NodeSummary> = fleet
        .nodes
        .iter()
        .filter(|n| n.actual_status == ActualStatus::Error)
        .collect();
    in_error.sort_by_key(|n| (n.updated_at.0, n.id.as_uuid()));
    let errors = in_error.len();
    in_error.truncate(LISTED_NODES);
    // Nodes that should run first (their silence matters), longest silent
    // first; then the others the same way.
    let mut silent: Vec<&NodeSummary> = fleet.nodes.iter().collect();
    silent.sort_by_key(|n| {
        (
            n.required_status != RequiredStatus::Running,
            n.last_seen.map_or(i64::MIN, |t| t.0),
            n.id.as_uuid(),
        )
    });
    let all = silent.len();
    silent.truncate(LISTED_NODES);
    (in_error, errors, silent, all)
}

fn numbers(overview: &Overview) -> Markup {
    let fleet = &overview.fleet;
    let mut by_status: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for n in &fleet.nodes {
        *by_status
            .entry((n.actual_status.as_str(), n.required_status.as_str()))
            .or_default() += 1;
    }
    let total: u64 = fleet.traffic.values().copied().fold(0, u64::saturating_add);
    let (in_error, errors, stalest, all) = lists(fleet);
    let oldest = stalest
        .first()
        .filter(|n| n.required_status == RequiredStatus::Running)
        .map(|n| n.last_seen);
    html! {
        div class="cards" {
            section class="card" aria-labelledby="h-nodes" {
                h2 id="h-nodes" { "Nodes" }
                p class="big" { (fleet.nodes.len()) }
                table {
                    thead { tr { th scope="col" { "Actual" } th scope="col" { "Wanted" } th scope="col" { "Nodes" } } }
                    tbody {
                        @for ((actual, required), count) in &by_status {
                            tr {
                                td { (actual.to_lowercase()) }
                                td { (required.to_lowercase()) }
                                td class="num" { (count) }
                            }
                        }
                    }
                }
            }
            section class="card" aria-labelledby="h-users" {
                h2 id="h-users" { "Users" }
                p class="big" { (fleet.state.enabled_users) }
                p { "on the nodes (enabled, within their plan)" }
                table {
                    thead { tr { th scope="col" { "State" } th scope="col" { "Users" } } }
                    tbody {
                        @for state in StateCounts::STATES {
                            tr {
                                td { a href=(format!("/ui/users?state={}", state_text(state))) { (state_text(state)) } }
                                td class="num" { (overview.users.of(state)) }
                            }
                        }
                    }
                }
                p class="muted" { "Changes so far: " (fleet.state.last_seq) }
            }
            section class="card" aria-labelledby="h-traffic" {
                h2 id="h-traffic" { "Traffic, last 24 h" }
                p class="big" { (format::bytes(total)) }
                p class="muted" { "through every node, before multipliers" }
            }
            section class="card" aria-labelledby="h-heartbeat" {
                h2 id="h-heartbeat" { "Heartbeat" }
                @match oldest {
                    Some(seen) => {
                        p class="big" { (format::age(seen, fleet.now)) }
                        p { "the oldest last answer of a node that should run" }
                    }
                    None => p { "No node should run." }
                }
            }
        }
        section aria-labelledby="h-errors" {
            h2 id="h-errors" { "Nodes in error (" (errors) ")" }
            @if in_error.is_empty() {
                p { "None." }
            } @else {
                div class="scroll" {
                    table {
                        thead { tr {
                            th scope="col" { "Node" }
                            th scope="col" { "In error since" }
                            th scope="col" { "Last error" }
                            th scope="col" { "Last answer" }
                        } }
                        tbody {
                            @for n in &in_error {
                                tr {
                                    td { a href=(format!("/ui/nodes/{}", n.id)) { (n.name()) } }
                                    td { (format::when(n.updated_at)) " (" (format::age(Some(n.updated_at), fleet.now)) ")" }
                                    td {
                                        @match overview.last_errors.get(&n.id) {
                                            Some(e) => { (e.detail) " (" (format::age(Some(e.at), fleet.now)) ")" }
                                            None => "not logged",
                                        }
                                    }
                                    td { (format::age(n.last_seen, fleet.now)) }
                                }
                            }
                        }
                    }
                }
                (more(errors, "in error, longest first"))
            }
        }
        section aria-labelledby="h-heartbeats" {
            h2 id="h-heartbeats" { "Last answer of each node" }
            @if stalest.is_empty() {
                p { "None." }
            } @else {
                div class="scroll" {
                    table {
                        thead { tr {
                            th scope="col" { "Node" }
                            th scope="col" { "Status" }
                            th scope="col" { "Last answer" }
                            th scope="col" { "Traffic 24 h" }
                        } }
                        tbody {
                            @for n in &stalest {
                                tr {
                                    td { a href=(format!("/ui/nodes/{}", n.id)) { (n.name()) } }
                                    td { (status_text(n.actual_status, n.required_status)) }
                                    td { (format::age(n.last_seen, fleet.now)) }
                                    td class="num" { (format::bytes(fleet.traffic_of(n.id))) }
                                }
                            }
                        }
                    }
                }
                (more(all, "(those that should run first, longest silent first)"))
            }
        }
        p class="muted" { "As of " (format::when(fleet.now)) "." }
    }
}

/// The line under a list cut to [`LISTED_NODES`] of `of` nodes.
fn more(of: usize, which: &str) -> Markup {
    html! {
        @if of > LISTED_NODES {
            p class="muted" {
                "The first " (LISTED_NODES) " of " (of) " nodes " (which) "; "
                a href="/ui/nodes" { "every node" } "."
            }
        }
    }
}

async fn read_or_fail(st: &UiState, session: &Session) -> Result<Overview, Response> {
    let read = async {
        let fleet = Fleet::read(st).await?;
        let storage = st.manager.storage();
        let users = storage.count_users_by_state().await?;
        // At most LISTED_NODES reads, at once; a node deleted meanwhile
        // (or a log that cannot be read) shows no last error.
        let (in_error, ..) = lists(&fleet);
        let reads = in_error.iter().map(|n| async {
            let events = storage.node_events(n.id, 10).await.ok()?;
            Some((n.id, node_events::last_failure(&events)?.clone()))
        });
        let last_errors = futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect();
        Ok::<_, ManagerError>(Overview {
            fleet,
            users,
            last_errors,
        })
    };
    read.await.map_err(|e| failed(&ApiError::from(e), session))
}

/// `GET /ui/`: the overview.
pub(super) async fn page(State(st): State<UiState>, session: Session) -> Response {
    let overview = match read_or_fail(&st, &session).await {
        Ok(overview) => overview,
        Err(page) => return page,
    };
    let body = html! {
        div id="overview" data-refresh="/ui/overview/fragment" data-every=(REFRESH_SECS) aria-live="polite" {
            (numbers(&overview))
        }
    };
    layout::send(
        StatusCode::OK,
        layout::page("Overview", Some(&session.chrome), "Overview", body),
    )
}

/// `GET /ui/overview/fragment`: the overview's numbers alone, for the
/// script to put in place.
pub(super) async fn fragment(State(st): State<UiState>, session: Session) -> Response {
    match read_or_fail(&st, &session).await {
        Ok(overview) => layout::send(StatusCode::OK, numbers(&overview)),
        Err(page) => page,
    }
}
