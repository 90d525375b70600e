//! The node event log part of the `Storage` conformance suite.

use crate::domain::{
    ActualStatus, NodeEvent, NodeEventKind, NodeId, NodeProfile, NodeSummary, RequiredStatus,
    Timestamp,
};
use crate::storage::{Entity, Storage, all_nodes};

use super::{assert_not_found, node, running_node};

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

pub async fn node_summaries_are_every_node_as_listed_without_its_key(s: &dyn Storage) {
    let plain = node(s, "http://summary-plain:1").await;
    let named = running_node(s, "http://summary-named:1").await;
    let remark = "Frankfurt \"1\" <b>& ü";
    let profile = NodeProfile {
        remark: Some(remark.into()),
        address: Some("fra.example.com".into()),
        ..NodeProfile::default()
    };
    s.set_node_profile(named.id, &profile).await.unwrap();
    s.set_required_status(plain.id, RequiredStatus::Running)
        .await
        .unwrap();
    s.record_observation(plain.id, ActualStatus::Error)
        .await
        .unwrap();
    let want: Vec<NodeSummary> = all_nodes(s)
        .await
        .unwrap()
        .iter()
        .map(NodeSummary::of)
        .collect();
    let got = s.node_summaries().await.unwrap();
    assert_eq!(got, want, "every node, in id order, as its whole row reads");
    let of = |id: NodeId| got.iter().find(|n| n.id == id).cloned().unwrap();
    let (p, n) = (of(plain.id), of(named.id));
    assert_eq!(
        (
            p.actual_status,
            p.required_status,
            p.remark.as_deref(),
            p.name()
        ),
        (
            ActualStatus::Error,
            RequiredStatus::Running,
            None,
            "http://summary-plain:1"
        )
    );
    assert_eq!((n.actual_status, n.name()), (ActualStatus::Running, remark));
    s.delete_node(plain.id).await.unwrap();
    let after = s.node_summaries().await.unwrap();
    assert!(
        after.iter().all(|n| n.id != plain.id),
        "a deleted node goes"
    );
    assert!(after.iter().any(|n| n.id == named.id));
}
