//! The subscriptions part of the `Storage` conformance suite: the inbounds a
//! node described on its start, the operator's profile of a node, what the
//! serving set lists from both, and the users' subscription keys.

use crate::domain::{
    InboundOverride, InboundProtocol, NewUser, NodeProfile, SubscriptionKey, UserStatus,
};
use crate::storage::{Entity, Storage, StorageError};
use crate::subscription::testing;

use super::{assert_not_found, drain, node, user, user_node_ids};

fn profile() -> NodeProfile {
    let mut p = NodeProfile {
        address: Some("nl.example.com".into()),
        remark: Some("Amsterdam 🇳🇱 \"#1\"".into()),
        ..Default::default()
    };
    p.inbounds.insert(
        "vless-ws".into(),
        InboundOverride {
            addresses: vec!["cdn1.example.com".into(), "2001:db8::7".into()],
            sni: Some("front.example.com".into()),
            alpn: Some(vec!["h2".into()]),
            ..Default::default()
        },
    );
    p.inbounds.insert(
        "ss".into(),
        InboundOverride {
            hidden: true,
            ..Default::default()
        },
    );
    p
}

pub async fn started_nodes_keep_their_described_inbounds(s: &dyn Storage) {
    let n = node(s, "http://10.11.0.1:1").await;
    let inbounds: Vec<_> = testing::entries().into_iter().map(|e| e.inbound).collect();
    let plan = s.begin_start(n.id).await.unwrap();
    s.finish_start(n.id, plan.seq, "t", &inbounds)
        .await
        .unwrap();
    assert_eq!(s.get_node(n.id).await.unwrap().inbounds, inbounds);
    // Another start replaces them, in the node's new order.
    let fewer = vec![inbounds[3].clone(), inbounds[0].clone()];
    let plan = s.begin_start(n.id).await.unwrap();
    s.finish_start(n.id, plan.seq, "t", &fewer).await.unwrap();
    assert_eq!(s.get_node(n.id).await.unwrap().inbounds, fewer);
}

pub async fn noted_user_ports_land_on_port_per_user_inbounds_only(s: &dyn Storage) {
    use std::collections::BTreeMap;
    let n = node(s, "http://10.11.0.9:1").await;
    let range = node_agent_lib::wire::PortRange::new(30000, 30009).unwrap();
    let mut per_user = testing::inbound("ss-manager", InboundProtocol::Shadowsocks, 30000);
    per_user.port_range = Some(range);
    let away = |id: &str| range.start + (range.home(id) - range.start + 1) % 10;
    per_user.user_ports.insert("old".into(), away("old"));
    let shared = testing::inbound("vless", InboundProtocol::Vless, 443);
    let plan = s.begin_start(n.id).await.unwrap();
    let started = vec![shared.clone(), per_user.clone()];
    s.finish_start(n.id, plan.seq, "t", &started).await.unwrap();
    let before = s.get_node(n.id).await.unwrap();

    // `new` away from home, `old` back home: one exception replaces the other.
    let ports: BTreeMap<String, u16> = [
        ("new".to_owned(), away("new")),
        ("old".to_owned(), range.home("old")),
    ]
    .into();
    s.note_user_ports(n.id, &ports).await.unwrap();
    let after = s.get_node(n.id).await.unwrap();
    assert_eq!(
        after.inbounds[0], shared,
        "an inbound without a range is kept"
    );
    let noted = &after.inbounds[1];
    assert_eq!(
        noted.user_ports,
        BTreeMap::from([("new".to_owned(), away("new"))])
    );
    assert_eq!(noted.port_for("new"), away("new"));
    assert_eq!(noted.port_for("old"), range.home("old"));
    assert_eq!(
        (&after.endpoint, after.applied_seq, &after.profile),
        (&before.endpoint, before.applied_seq, &before.profile),
        "nothing else changes"
    );
    // Noting the same again changes nothing; an unknown node is not found.
    s.note_user_ports(n.id, &ports).await.unwrap();
    assert_eq!(s.get_node(n.id).await.unwrap().inbounds, after.inbounds);
    assert_not_found(
        s.note_user_ports(crate::domain::NodeId::random(), &ports)
            .await,
        Entity::Node,
    );
}

pub async fn node_profiles_round_trip_and_survive_starts(s: &dyn Storage) {
    let n = node(s, "http://10.11.0.2:1").await;
    assert_eq!(n.profile, NodeProfile::default());
    let p = profile();
    let set = s.set_node_profile(n.id, &p).await.unwrap();
    assert_eq!(set.profile, p);
    assert_eq!(set.endpoint, n.endpoint, "nothing else changes");
    let plan = s.begin_start(n.id).await.unwrap();
    s.finish_start(n.id, plan.seq, "t", &[]).await.unwrap();
    assert_eq!(s.get_node(n.id).await.unwrap().profile, p);
    s.set_node_profile(n.id, &NodeProfile::default())
        .await
        .unwrap();
    assert_eq!(
        s.get_node(n.id).await.unwrap().profile,
        NodeProfile::default()
    );
}

pub async fn invalid_profiles_are_refused_and_change_nothing(s: &dyn Storage) {
    let n = node(s, "http://10.11.0.3:1").await;
    s.set_node_profile(n.id, &profile()).await.unwrap();
    let bad = NodeProfile {
        address: Some("not a host".into()),
        ..Default::default()
    };
    assert!(matches!(
        s.set_node_profile(n.id, &bad).await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(s.get_node(n.id).await.unwrap().profile, profile());
    assert_not_found(
        s.set_node_profile(crate::domain::NodeId::random(), &profile())
            .await,
        Entity::Node,
    );
}

pub async fn user_nodes_serve_each_inbound_with_the_profile_applied(s: &dyn Storage) {
    let n = node(s, "http://10.11.0.4:1").await;
    s.set_required_status(n.id, crate::domain::RequiredStatus::Running)
        .await
        .unwrap();
    s.set_node_profile(n.id, &profile()).await.unwrap();
    let inbounds: Vec<_> = testing::entries().into_iter().map(|e| e.inbound).collect();
    let plan = s.begin_start(n.id).await.unwrap();
    s.finish_start(n.id, plan.seq, "t", &inbounds)
        .await
        .unwrap();
    let u = user(s, "u").await;
    s.set_user_status(u, UserStatus::Enabled).await.unwrap();
    drain(s, n.id).await;
    assert_eq!(user_node_ids(s, u).await, [n.id]);
    let listed = s.user_nodes(u).await.unwrap();
    let want = profile().serve("10.11.0.4", &inbounds);
    assert_eq!(&*listed.nodes[0].served, want.as_slice());
    // One hidden inbound, one listed at two addresses.
    assert_eq!(want.len(), inbounds.len());
    let serving = s.serving_nodes().await.unwrap();
    let entry = &serving.iter().find(|sn| sn.entry.id == n.id).unwrap().entry;
    assert_eq!(&*entry.served, want.as_slice());
}

pub async fn subscription_keys_are_stored_and_rotated(s: &dyn Storage) {
    let new = NewUser::new("sub").unwrap();
    let key = new.subscription_key;
    let created = s.create_user(new).await.unwrap();
    assert!(created.subscription_key.matches(&key));
    let read = s.get_user(created.id).await.unwrap();
    assert!(read.subscription_key.matches(&key));
    let before = s.fleet_state().await.unwrap();
    let rotated_to = SubscriptionKey::random();
    let rotated = s
        .set_subscription_key(created.id, rotated_to)
        .await
        .unwrap();
    assert!(rotated.subscription_key.matches(&rotated_to));
    assert_eq!(rotated.change_seq, created.change_seq, "takes no change");
    assert_eq!(s.fleet_state().await.unwrap(), before);
    let read = s.get_user(created.id).await.unwrap();
    assert!(read.subscription_key.matches(&rotated_to));
    assert_eq!(read.status, created.status, "nothing else changes");
    assert_eq!(read.name, created.name);
    assert!(
        s.user_nodes(created.id)
            .await
            .unwrap()
            .user
            .subscription_key
            .matches(&rotated_to)
    );
    s.delete_user(created.id).await.unwrap();
    assert_not_found(
        s.set_subscription_key(created.id, SubscriptionKey::random())
            .await,
        Entity::User,
    );
    assert_not_found(
        s.set_subscription_key(crate::domain::UserId::random(), SubscriptionKey::random())
            .await,
        Entity::User,
    );
}
