//! The node event log part of the `Storage` conformance suite.

use crate::domain::{NodeEvent, NodeEventKind, NodeId, Timestamp};
use crate::storage::{Entity, Storage};

use super::{assert_not_found, node};

fn event(i: i64, kind: NodeEventKind) -> NodeEvent {
    NodeEvent::new(Timestamp(1_000 + i), kind, &format!("event {i} <b>&"))
}

pub async fn node_events_keep_the_newest_in_order_and_go_with_the_node(s: &dyn Storage) {
    let n = node(s, "http://events-node:1").await;
    let other = node(s, "http://events-other:1").await;
    assert_eq!(s.node_events(n.id, 10).await.unwrap(), vec![]);
    let kinds = NodeEventKind::ALL;
    for i in 0..6 {
        s.record_node_event(n.id, &event(i, kinds[i as usize % 4]), 4)
            .await
            .unwrap();
    }
    s.record_node_event(other.id, &event(99, NodeEventKind::Failed), 4)
        .await
        .unwrap();
    let want: Vec<NodeEvent> = (2..6)
        .rev()
        .map(|i| event(i, kinds[i as usize % 4]))
        .collect();
    assert_eq!(
        s.node_events(n.id, 10).await.unwrap(),
        want,
        "newest 4, newest first"
    );
    assert_eq!(s.node_events(n.id, 2).await.unwrap(), want[..2]);
    assert_eq!(s.node_events(other.id, 10).await.unwrap().len(), 1);
    // Recorded order wins over `at`: a clock that steps back keeps the order.
    let back = NodeEvent::new(Timestamp(5), NodeEventKind::Recovered, "");
    s.record_node_event(n.id, &back, 4).await.unwrap();
    assert_eq!(s.node_events(n.id, 1).await.unwrap(), vec![back]);
    // keep 0 keeps the one just recorded.
    s.record_node_event(n.id, &event(7, NodeEventKind::Failed), 0)
        .await
        .unwrap();
    assert_eq!(
        s.node_events(n.id, 10).await.unwrap(),
        vec![event(7, NodeEventKind::Failed)]
    );
    s.delete_node(n.id).await.unwrap();
    assert_not_found(s.node_events(n.id, 10).await, Entity::Node);
    assert_eq!(s.node_events(other.id, 10).await.unwrap().len(), 1);
}

pub async fn node_events_of_an_unknown_node_are_not_found_and_not_kept(s: &dyn Storage) {
    let ghost = NodeId::random();
    assert_not_found(
        s.record_node_event(ghost, &event(1, NodeEventKind::Failed), 4)
            .await,
        Entity::Node,
    );
    assert_not_found(s.node_events(ghost, 10).await, Entity::Node);
}
