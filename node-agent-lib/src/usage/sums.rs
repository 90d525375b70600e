//! [`UserSums`]: per user id, the bytes read from the core and not yet in
//! the journal, 16 bytes of id and 16 of sums a user (no `String`s: a read
//! of 100,000 users makes no allocation per user).

use std::collections::HashMap;

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use uuid::Uuid;
use xray_core_client::StatSink;

use crate::core::user_traffic_counter;
use crate::wire::UserUsage;

/// `(up, down)` bytes per user id. Serialises as the journal's and the
/// wire's `[{"id","up","down"},…]` (see [`UserUsage`]), in no given order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UserSums(HashMap<Uuid, (u64, u64)>);

impl UserSums {
    /// Adds bytes to user `id`'s sums (saturating).
    pub fn add(&mut self, id: Uuid, up: u64, down: u64) {
        let slot = self.0.entry(id).or_default();
        slot.0 = slot.0.saturating_add(up);
        slot.1 = slot.1.saturating_add(down);
    }

    /// Forgets every sum, keeping the room they took.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// How many users have sums.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every user's `(id, up, down)`, in no given order.
    pub fn iter(&self) -> impl Iterator<Item = (Uuid, u64, u64)> + '_ {
        self.0.iter().map(|(id, (up, down))| (*id, *up, *down))
    }

    /// The sums as wire users (one `String` per user: for tests and small reads).
    pub fn to_users(&self) -> Vec<UserUsage> {
        self.iter()
            .map(|(id, up, down)| UserUsage {
                id: id.hyphenated().to_string(),
                up,
                down,
            })
            .collect()
    }
}

impl FromIterator<(Uuid, u64, u64)> for UserSums {
    fn from_iter<I: IntoIterator<Item = (Uuid, u64, u64)>>(iter: I) -> Self {
        let mut sums = UserSums::default();
        for (id, up, down) in iter {
            sums.add(id, up, down);
        }
        sums
    }
}

/// A `QueryStats` answer summed as it decodes, by the contract of
/// [`crate::core::sum_user_traffic`], user ids only.
impl StatSink for UserSums {
    fn stat(&mut self, name: &str, value: i64) {
        let Some((email, uplink)) = user_traffic_counter(name) else {
            return;
        };
        // The core's counters are signed; a negative one is not traffic.
        let value = u64::try_from(value).unwrap_or(0);
        if value == 0 {
            return;
        }
        let Some(id) = user_id(email) else {
            return;
        };
        if uplink {
            self.add(id, value, 0);
        } else {
            self.add(id, 0, value);
        }
    }
}

/// `email` as a user id: the manager's users are UUIDs, written as
/// `Uuid::hyphenated` writes them (36 characters, lowercase); anything else
/// is one of the operator's own clients.
pub(crate) fn user_id(email: &str) -> Option<Uuid> {
    let bytes = email.as_bytes();
    let canonical = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        });
    canonical.then(|| Uuid::parse_str(email).ok()).flatten()
}

impl Serialize for UserSums {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for (id, up, down) in self.iter() {
            seq.serialize_element(&UserRef { id, up, down })?;
        }
        seq.end()
    }
}

/// One user as [`UserUsage`] serialises, its id written on the stack.
struct UserRef {
    id: Uuid,
    up: u64,
    down: u64,
}

impl Serialize for UserRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut id = Uuid::encode_buffer();
        let mut user = serializer.serialize_struct("UserUsage", 3)?;
        user.serialize_field("id", self.id.hyphenated().encode_lower(&mut id))?;
        user.serialize_field("up", &self.up)?;
        user.serialize_field("down", &self.down)?;
        user.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0b5e8f1c-5a7e-4c2b-9d3f-00000000000a";
    const B: &str = "fb5e8f1c-5a7e-4c2b-9d3f-00000000000b";

    fn sums_of(stats: &[(&str, i64)]) -> UserSums {
        let mut sums = UserSums::default();
        for (name, value) in stats {
            sums.stat(name, *value);
        }
        sums
    }

    #[test]
    fn user_counters_are_summed_per_id_and_others_ignored() {
        let sums = sums_of(&[
            (&format!("user>>>{A}>>>traffic>>>uplink"), 10),
            (&format!("user>>>{A}>>>traffic>>>downlink"), 20),
            (&format!("user>>>{A}>>>traffic>>>downlink"), 1),
            (&format!("user>>>{B}>>>traffic>>>downlink"), 5),
            (&format!("user>>>{B}>>>traffic>>>uplink"), 0),
            (&format!("user>>>{B}>>>traffic>>>uplink"), -3),
            (&format!("user>>>{B}>>>online"), 7),
            ("inbound>>>vless-in>>>traffic>>>uplink", 99),
            ("user>>>admin@example.com>>>traffic>>>uplink", 99),
            (
                &format!("user>>>{}>>>traffic>>>uplink", A.to_uppercase()),
                99,
            ),
            (&format!("user>>>{{{A}}}>>>traffic>>>uplink"), 99),
        ]);
        let mut got: Vec<_> = sums.iter().collect();
        got.sort();
        assert_eq!(
            got,
            vec![(A.parse().unwrap(), 10, 21), (B.parse().unwrap(), 0, 5)]
        );
    }

    #[test]
    fn the_email_runs_from_the_first_prefix_to_the_last_traffic_marker() {
        assert_eq!(
            user_traffic_counter("user>>>x>>>y>>>traffic>>>uplink"),
            Some(("x>>>y", true))
        );
        assert_eq!(
            user_traffic_counter("user>>>a>>>traffic>>>b>>>traffic>>>downlink"),
            Some(("a>>>traffic>>>b", false))
        );
        assert_eq!(user_traffic_counter("user>>>traffic>>>uplink"), None);
        assert_eq!(user_traffic_counter("user>>>a>>>traffic>>>sideways"), None);
    }

    #[test]
    fn sums_serialise_as_wire_users() {
        let sums: UserSums = [(A.parse().unwrap(), 1, u64::MAX)].into_iter().collect();
        let json = serde_json::to_string(&sums).unwrap();
        let users: Vec<UserUsage> = serde_json::from_str(&json).unwrap();
        assert_eq!(users, sums.to_users());
        assert_eq!(
            json,
            format!(r#"[{{"id":"{A}","up":1,"down":{}}}]"#, u64::MAX)
        );
    }

    #[test]
    fn adding_saturates() {
        let a: Uuid = A.parse().unwrap();
        let mut sums: UserSums = [(a, 1, 2)].into_iter().collect();
        sums.add(a, 10, u64::MAX);
        assert_eq!(sums.iter().collect::<Vec<_>>(), vec![(a, 11, u64::MAX)]);
    }
}
