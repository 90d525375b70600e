//! How backends keep what subscriptions need of a node: the inbounds it
//! described (a JSON array) and the operator's profile (a JSON object), each
//! one text column, read back into domain values and into the serving
//! entry. JSON because both are small, read whole and never queried by
//! field; one spelling for every backend.

use crate::domain::{InboundDescription, NodeEntry, NodeId, NodeProfile};
use crate::storage::{StorageError, StorageResult};

/// What an empty inbounds column holds.
pub const NO_INBOUNDS: &str = "[]";
/// What an empty profile column holds.
pub const NO_PROFILE: &str = "{}";

pub fn inbounds_to_json(inbounds: &[InboundDescription]) -> String {
    serde_json::to_string(inbounds).expect("descriptions serialise")
}

pub fn inbounds_from_json(text: &str) -> StorageResult<Vec<InboundDescription>> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt(format!("stored inbounds: {e}")))
}

/// The stored inbounds `text` with `ports` noted
/// ([`InboundDescription::note_user_ports`]); `None` when nothing changes.
pub fn inbounds_with_user_ports(
    text: &str,
    ports: &std::collections::BTreeMap<String, u16>,
) -> StorageResult<Option<String>> {
    let before = inbounds_from_json(text)?;
    let mut after = before.clone();
    after.iter_mut().for_each(|i| i.note_user_ports(ports));
    Ok((after != before).then(|| inbounds_to_json(&after)))
}

/// How often a backend reads and compares-and-sets a node's inbounds
/// before it gives up (another writer changed them each time).
pub const NOTE_TRIES: u32 = 8;

pub fn profile_to_json(profile: &NodeProfile) -> String {
    serde_json::to_string(profile).expect("profiles serialise")
}

pub fn profile_from_json(text: &str) -> StorageResult<NodeProfile> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt(format!("stored profile: {e}")))
}

/// A serving node's entry from its stored columns.
pub fn node_entry(
    id: NodeId,
    endpoint: &str,
    template: &str,
    inbounds: &str,
    profile: &str,
) -> StorageResult<NodeEntry> {
    Ok(NodeEntry::new(
        id,
        endpoint,
        template,
        &inbounds_from_json(inbounds)?,
        &profile_from_json(profile)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InboundOverride;
    use crate::subscription::testing;

    #[test]
    fn columns_round_trip() {
        let inbounds: Vec<_> = testing::entries().into_iter().map(|e| e.inbound).collect();
        assert_eq!(
            inbounds_from_json(&inbounds_to_json(&inbounds)).unwrap(),
            inbounds
        );
        let mut profile = NodeProfile {
            remark: Some("x \"y\"".into()),
            ..Default::default()
        };
        profile.inbounds.insert(
            "t".into(),
            InboundOverride {
                hidden: true,
                port: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(
            profile_from_json(&profile_to_json(&profile)).unwrap(),
            profile
        );
        assert_eq!(inbounds_from_json(NO_INBOUNDS).unwrap(), []);
        assert_eq!(
            profile_from_json(NO_PROFILE).unwrap(),
            NodeProfile::default()
        );
    }

    #[test]
    fn damaged_columns_are_corrupt() {
        assert!(matches!(
            inbounds_from_json("{"),
            Err(StorageError::Corrupt(_))
        ));
        assert!(matches!(
            profile_from_json("[1]"),
            Err(StorageError::Corrupt(_))
        ));
    }
}
