//! The port range of a core whose users have a port each (`ss-manager`)
//! and each user's *home* port in it: the one function the agent assigns
//! ports with and the manager computes subscription ports with, so both
//! always agree on a user's first choice.
//!
//! A user's home port is `start + H mod size`, where `H` is the first eight
//! bytes (big-endian) of SHA-256 of the user id (its text as sent on the
//! wire) and `size` the number of ports in `start..=end`.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An inclusive range of ports, written `START-END` (e.g. `20000-29999`),
/// on the wire too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

/// A port range that is no range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port range {0}")]
pub struct PortRangeError(String);

impl PortRange {
    pub fn new(start: u16, end: u16) -> Result<Self, PortRangeError> {
        if start == 0 || start > end {
            return Err(PortRangeError(format!(
                "{start}-{end}: want START-END with 0 < START <= END"
            )));
        }
        Ok(Self { start, end })
    }

    /// How many ports the range holds (1 to 65535).
    pub fn size(self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    pub fn contains(self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    /// The first port `user_id` is offered (see the module's doc).
    pub fn home(self, user_id: &str) -> u16 {
        let digest = Sha256::digest(user_id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let offset = u64::from_be_bytes(first) % u64::from(self.size());
        self.start + u16::try_from(offset).expect("offset < size <= 65535")
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<Self, PortRangeError> {
        let bad = || PortRangeError(format!("{s:?}: want START-END, e.g. 20000-29999"));
        let (start, end) = s.trim().split_once('-').ok_or_else(bad)?;
        let start = start.trim().parse().map_err(|_| bad())?;
        let end = end.trim().parse().map_err(|_| bad())?;
        Self::new(start, end)
    }
}

impl TryFrom<String> for PortRange {
    type Error = PortRangeError;

    fn try_from(s: String) -> Result<Self, PortRangeError> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        r.to_string()
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u16, end: u16) -> PortRange {
        PortRange::new(start, end).unwrap()
    }

    #[test]
    fn a_range_is_parsed_and_bad_ones_refused() {
        assert_eq!(
            "20000-29999".parse::<PortRange>().unwrap(),
            range(20000, 29999)
        );
        assert_eq!(" 5 - 5 ".parse::<PortRange>().unwrap().size(), 1);
        assert_eq!(range(1, 65535).size(), 65535);
        for bad in ["", "20000", "3-2", "0-10", "a-b", "1-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_home_port_is_the_first_eight_bytes_of_sha256_modulo_the_size() {
        // SHA-256("alice") = 2bd806c97f0e00af…: 0x2bd806c97f0e00af mod 1000 = 207.
        let h = u64::from_be_bytes([0x2b, 0xd8, 0x06, 0xc9, 0x7f, 0x0e, 0x00, 0xaf]);
        assert_eq!(h % 1000, 207);
        assert_eq!(range(30000, 30999).home("alice"), 30207);
        assert_eq!(range(7, 7).home("alice"), 7);
    }

    #[test]
    fn home_ports_stay_in_the_range_and_spread_over_it() {
        let r = range(40000, 40009);
        let mut seen = [0u32; 10];
        for i in 0..1000 {
            let port = r.home(&format!("user-{i}"));
            assert!(r.contains(port), "{port}");
            seen[usize::from(port - r.start)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn a_range_travels_as_its_text_and_a_bad_one_is_refused() {
        let r = range(20000, 20099);
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"20000-20099\"");
        assert_eq!(
            serde_json::from_str::<PortRange>("\"20000-20099\"").unwrap(),
            r
        );
        assert!(serde_json::from_str::<PortRange>("\"9-1\"").is_err());
    }
}
