//! A node key rotation: the new key waiting to be delivered to the node's
//! agent (`POST /key`, sealed under the key in use), and, once the agent
//! took it, the key it replaced while the agent still accepts that one.
//!
//! At most one key is pending per node: a second rotation while one waits
//! is refused (the first may already have reached the agent with its answer
//! lost, and the manager must never hold more than two candidate keys for
//! a node). Once the agent confirmed, a new rotation may start at once; the
//! agent then keeps only the key that rotation came under as its previous.

use std::time::Duration;

use super::{NodeId, NodeKey, ParseError, Timestamp};

/// The grace period a rotation gets when the caller names none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The longest grace period (the agent refuses longer ones too).
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A node's key rotation as stored. `Debug` shows no key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRotation {
    pub node: NodeId,
    /// The key to deliver to the node's agent (`None`: nothing pending).
    pub pending: Option<NodeKey>,
    /// How long the agent keeps accepting the key in use once it takes the
    /// pending one.
    pub grace: Duration,
    /// When the pending key was asked for.
    pub requested_at: Timestamp,
    /// The key the last confirmed rotation replaced, and until when the
    /// agent accepts it (as the manager reckons: confirmation time + grace).
    pub previous: Option<(NodeKey, Timestamp)>,
}

impl KeyRotation {
    /// The previous key, while its grace lasts at `now`.
    pub fn previous_at(&self, now: Timestamp) -> Option<&NodeKey> {
        self.previous
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(key, _)| key)
    }
}

/// A grace period in seconds, checked: 0 (the old key is refused at once,
/// for a key that leaked) to [`MAX_GRACE`].
pub fn grace_from_secs(secs: u64) -> Result<Duration, ParseError> {
    let grace = Duration::from_secs(secs);
    if grace > MAX_GRACE {
        return Err(ParseError {
            what: "grace period (0 to 2592000 seconds)",
            value: secs.to_string(),
        });
    }
    Ok(grace)
}

/// `now + grace`, saturating.
pub fn grace_until(now: Timestamp, grace: Duration) -> Timestamp {
    Timestamp(
        now.0
            .saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grace_above_thirty_days_is_refused() {
        assert_eq!(grace_from_secs(0).unwrap(), Duration::ZERO);
        assert_eq!(grace_from_secs(2_592_000).unwrap(), MAX_GRACE);
        assert!(grace_from_secs(2_592_001).is_err());
    }

    #[test]
    fn the_previous_key_counts_only_until_its_grace_ends() {
        let key = NodeKey::random();
        let rotation = KeyRotation {
            node: NodeId::random(),
            pending: None,
            grace: DEFAULT_GRACE,
            requested_at: Timestamp(0),
            previous: Some((key.clone(), Timestamp(1000))),
        };
        assert_eq!(rotation.previous_at(Timestamp(999)), Some(&key));
        assert_eq!(rotation.previous_at(Timestamp(1000)), None);
        assert!(!format!("{rotation:?}").contains(&key.expose_base64url()));
    }
}
