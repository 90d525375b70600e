//! Counters and runtime figures reported by the core's StatsService.

/// One counter, e.g. `user>>>EMAIL>>>traffic>>>downlink` (bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub name: String,
    pub value: i64,
}

/// The core process's runtime figures (Go runtime memory stats and uptime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SysStats {
    /// Seconds since the core started; a drop means it restarted.
    pub uptime_secs: u32,
    pub num_goroutine: u32,
    pub num_gc: u32,
    pub alloc: u64,
    pub total_alloc: u64,
    pub sys: u64,
    pub mallocs: u64,
    pub frees: u64,
    pub live_objects: u64,
    pub pause_total_ns: u64,
}

/// The stat name of a user's traffic counter in one direction.
pub fn user_traffic_stat_name(email: &str, direction: Direction) -> String {
    format!("user>>>{email}>>>traffic>>>{}", direction.as_str())
}

/// Traffic direction as seen from the user: uplink is what the user sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Uplink,
    Downlink,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Uplink => "uplink",
            Direction::Downlink => "downlink",
        }
    }
}
