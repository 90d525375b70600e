//! The devices part of the `Storage` conformance suite: device limits on
//! users, sightings recorded within a limit, listed, forgotten, and never
//! more than the limit under concurrency.

use crate::domain::device::LAST_SEEN_STEP_MS;
use crate::domain::{DeviceSighting, DeviceVerdict, Timestamp, UserId};
use crate::storage::{Entity, Storage, StorageError};

use super::{assert_not_found, user};

fn device(n: u32) -> DeviceSighting {
    DeviceSighting::new(
        &format!("hwid-{n:08}"),
        "Android",
        "14",
        "Pixel 8",
        "Happ/3.1",
    )
    .unwrap()
}

pub async fn device_limits_are_stored_without_a_change(s: &dyn Storage) {
    let u = user(s, "d").await;
    let before = s.fleet_state().await.unwrap();
    let set = s.set_device_limit(u, Some(3)).await.unwrap();
    assert_eq!(set.device_limit, Some(3));
    assert_eq!(s.get_user(u).await.unwrap().device_limit, Some(3));
    assert_eq!(s.user_nodes(u).await.unwrap().user.device_limit, Some(3));
    assert_eq!(s.fleet_state().await.unwrap(), before, "takes no change");
    s.set_device_limit(u, None).await.unwrap();
    assert_eq!(s.get_user(u).await.unwrap().device_limit, None);
    assert_not_found(
        s.set_device_limit(UserId::random(), Some(1)).await,
        Entity::User,
    );
}

pub async fn devices_are_recorded_within_the_limit(s: &dyn Storage) {
    let u = user(s, "d").await;
    let t = Timestamp(1_800_000_000_000);
    for n in 0..2 {
        assert_eq!(
            s.record_device(u, &device(n), 2, t).await.unwrap(),
            DeviceVerdict::Allowed
        );
    }
    assert_eq!(
        s.record_device(u, &device(2), 2, t).await.unwrap(),
        DeviceVerdict::OverLimit
    );
    // A known device stays allowed, the new one stays out.
    assert_eq!(
        s.record_device(u, &device(1), 2, t).await.unwrap(),
        DeviceVerdict::Allowed
    );
    let listed = s.list_devices(u).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|d| d.hwid.as_str()).collect();
    assert_eq!(ids, ["hwid-00000000", "hwid-00000001"]);
    assert_eq!(listed[0].model, "Pixel 8");
    assert_eq!((listed[0].first_seen, listed[0].last_seen), (t, t));
    // No limit: anything goes; a lower limit keeps the devices already in.
    assert_eq!(
        s.record_device(u, &device(2), 0, t).await.unwrap(),
        DeviceVerdict::Allowed
    );
    assert_eq!(
        s.record_device(u, &device(0), 1, t).await.unwrap(),
        DeviceVerdict::Allowed
    );
    assert_eq!(s.list_devices(u).await.unwrap().len(), 3);
}

pub async fn a_known_devices_last_seen_moves_only_by_the_step(s: &dyn Storage) {
    let u = user(s, "d").await;
    let t = Timestamp(1_800_000_000_000);
    s.record_device(u, &device(0), 0, t).await.unwrap();
    let mut changed = device(0);
    changed.os_version = "15".into();
    s.record_device(u, &changed, 0, Timestamp(t.0 + 1000))
        .await
        .unwrap();
    let d = &s.list_devices(u).await.unwrap()[0];
    assert_eq!(
        (d.last_seen, d.os_version.as_str()),
        (t, "14"),
        "within the step"
    );
    let later = Timestamp(t.0 + LAST_SEEN_STEP_MS);
    s.record_device(u, &changed, 0, later).await.unwrap();
    let d = &s.list_devices(u).await.unwrap()[0];
    assert_eq!((d.first_seen, d.last_seen), (t, later));
    assert_eq!(d.os_version, "15");
}

pub async fn a_forgotten_device_counts_as_new_again(s: &dyn Storage) {
    let u = user(s, "d").await;
    let t = Timestamp(1_800_000_000_000);
    s.record_device(u, &device(0), 1, t).await.unwrap();
    assert_eq!(
        s.record_device(u, &device(1), 1, t).await.unwrap(),
        DeviceVerdict::OverLimit
    );
    s.delete_device(u, "hwid-00000000").await.unwrap();
    assert!(matches!(
        s.delete_device(u, "hwid-00000000").await,
        Err(StorageError::NotFound(Entity::Device))
    ));
    assert_eq!(
        s.record_device(u, &device(1), 1, t).await.unwrap(),
        DeviceVerdict::Allowed
    );
    let other = user(s, "other").await;
    assert!(s.list_devices(other).await.unwrap().is_empty());
    assert!(matches!(
        s.delete_device(other, "hwid-00000001").await,
        Err(StorageError::NotFound(Entity::Device))
    ));
}

pub async fn devices_of_unknown_or_deleted_users_are_not_found(s: &dyn Storage) {
    let t = Timestamp(1_800_000_000_000);
    let u = user(s, "gone").await;
    s.record_device(u, &device(0), 0, t).await.unwrap();
    s.delete_user(u).await.unwrap();
    for id in [u, UserId::random()] {
        assert_not_found(s.record_device(id, &device(1), 0, t).await, Entity::User);
        assert_not_found(s.list_devices(id).await, Entity::User);
        assert_not_found(s.delete_device(id, "hwid-00000000").await, Entity::User);
    }
}

pub async fn concurrent_new_devices_never_pass_the_limit(s: &dyn Storage) {
    let u = user(s, "busy").await;
    let t = Timestamp(1_800_000_000_000);
    let sightings: Vec<_> = (0..16).map(device).collect();
    let verdicts =
        futures::future::join_all(sightings.iter().map(|d| s.record_device(u, d, 3, t))).await;
    let allowed = verdicts
        .into_iter()
        .filter(|v| matches!(v, Ok(DeviceVerdict::Allowed)))
        .count();
    assert_eq!(allowed, 3);
    assert_eq!(s.list_devices(u).await.unwrap().len(), 3);
}
