//! Numbers in human units for the pages: bytes in KiB/MiB/GiB, ages and
//! times left in s/min/h/days, dates in UTC.

use bytesize::ByteSize;
use time::OffsetDateTime;

use crate::domain::Timestamp;

/// `bytes` as `1.5 GiB`.
pub(super) fn bytes(bytes: u64) -> String {
    ByteSize(bytes).display().iec().to_string()
}

/// A span of `ms` milliseconds as `45 s`, `12 min`, `3 h` or `5 days`.
pub(super) fn span(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// How long ago `then` was, as of `now` (`never` without one).
pub(super) fn age(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        Some(t) => format!("{} ago", span(now.0 - t.0)),
        None => "never".to_owned(),
    }
}

/// `t` as `2026-12-06 20:41 UTC`.
pub(super) fn when(t: Timestamp) -> String {
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000) else {
        return t.0.to_string();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// `t` as `2026-12-06` (a chart's day).
pub(super) fn day(t: Timestamp) -> String {
    when(t).chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_in_human_units() {
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(span(45_000), "45 s");
        assert_eq!(span(30 * 60_000), "30 min");
        assert_eq!(span(5 * 3_600_000), "5 h");
        assert_eq!(span(10 * 86_400_000), "10 days");
        assert_eq!(age(None, Timestamp(0)), "never");
        assert_eq!(when(Timestamp(0)), "1970-01-01 00:00 UTC");
        assert_eq!(day(Timestamp(86_400_000)), "1970-01-02");
    }
}
