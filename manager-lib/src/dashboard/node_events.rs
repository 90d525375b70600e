//! A node's recent heartbeat events as the pages show them: the table on a
//! node's page and the last error of a node in error on the overview.

use maud::{Markup, html};

use super::format;
use crate::domain::{NodeEvent, NodeEventKind, Timestamp};

/// Events on a node's page.
pub const SHOWN: u32 = 20;

fn kind_text(kind: NodeEventKind) -> &'static str {
    match kind {
        NodeEventKind::Failed => "failed",
        NodeEventKind::Recovered => "recovered",
        NodeEventKind::Restarted => "restarted",
        NodeEventKind::Resynced => "re-synced",
    }
}

/// The events, newest first, as a table.
pub(super) fn table(events: &[NodeEvent], now: Timestamp) -> Markup {
    html! {
        @if events.is_empty() {
            p { "None yet: failures, restarts and re-syncs the heartbeat finds show here." }
        } @else {
            div class="scroll" {
                table class="events" {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Detail" }
                    } }
                    tbody {
                        @for e in events {
                            tr {
                                td { (format::when(e.at)) " (" (format::age(Some(e.at), now)) ")" }
                                td class=(format!("event-{}", e.kind.as_str())) { (kind_text(e.kind)) }
                                td { (e.detail) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The newest failure among `events` (newest first), if any.
pub(super) fn last_failure(events: &[NodeEvent]) -> Option<&NodeEvent> {
    events.iter().find(|e| e.kind == NodeEventKind::Failed)
}
