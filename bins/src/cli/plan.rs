//! `xmctl`'s plan and usage-range flags: sizes, times and durations as
//! people write them, turned into the API's plan fields (`dataLimit` bytes, `expireAt` Unix
//! seconds, `resetStrategy`/`resetDay`, `onHoldSecs`). `none` clears a
//! field in `user edit`. Sizes are parsed by `bytesize` (`50GiB`, `500 MB`,
//! plain bytes), durations and RFC 3339 times by `humantime` (`30d`, `12h`,
//! `2027-01-31T00:00:00Z`).

use clap::Args;
use serde_json::{Map, Value, json};

/// A user's plan, as flags.
#[derive(Debug, Default, Clone, Args)]
pub struct PlanArgs {
    /// Data limit per reset period (up + down), e.g. 50GiB, 500MB or bytes;
    /// `none` removes it
    #[arg(long, value_name = "SIZE")]
    pub limit: Option<String>,
    /// When the user stops being served: RFC 3339 (2027-01-31T00:00:00Z),
    /// Unix seconds, or +DURATION from now (+30d); `none` removes it
    #[arg(long, value_name = "TIME")]
    pub expire: Option<String>,
    /// When the used bytes go back to zero (UTC): none, day, week, month
    /// (on the 1st), month:DAY (DAY 1-28) or year
    #[arg(long, value_name = "PERIOD")]
    pub reset: Option<String>,
    /// Service time that starts at the user's first byte (no expiry until
    /// then), e.g. 30d; `none` removes it
    #[arg(long, value_name = "DURATION")]
    pub on_hold: Option<String>,
}

impl PlanArgs {
    pub fn is_empty(&self) -> bool {
        self.limit.is_none()
            && self.expire.is_none()
            && self.reset.is_none()
            && self.on_hold.is_none()
    }

    /// The API's plan fields for these flags; `now` (Unix seconds) anchors
    /// `+DURATION` expiries.
    pub fn fields(&self, now: u64) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        if let Some(raw) = &self.limit {
            out.insert("dataLimit".into(), or_none(raw, size)?);
        }
        if let Some(raw) = &self.expire {
            out.insert("expireAt".into(), or_none(raw, |t| time(t, now))?);
        }
        if let Some(raw) = &self.reset {
            let (period, day) = match raw.trim().split_once(':') {
                Some(("month", day)) => {
                    let day = day
                        .parse::<u8>()
                        .ok()
                        .filter(|d| (1..=28).contains(d))
                        .ok_or_else(|| format!("--reset {raw}: the day of month is 1 to 28"))?;
                    ("month", Some(day))
                }
                Some(_) => return Err(format!("--reset {raw}: only month takes a day (month:15)")),
                None => (raw.trim(), None),
            };
            if !["none", "day", "week", "month", "year"].contains(&period) {
                return Err(format!(
                    "--reset {raw}: use none, day, week, month, month:DAY or year"
                ));
            }
            out.insert("resetStrategy".into(), json!(period));
            if period == "month" {
                out.insert("resetDay".into(), json!(day.unwrap_or(1)));
            }
        }
        if let Some(raw) = &self.on_hold {
            out.insert(
                "onHoldSecs".into(),
                or_none(raw, |d| duration(d).map(|s| json!(s)))?,
            );
        }
        Ok(out)
    }
}

fn or_none(raw: &str, parse: impl Fn(&str) -> Result<Value, String>) -> Result<Value, String> {
    match raw.trim() {
        "none" => Ok(Value::Null),
        other => parse(other),
    }
}

fn size(raw: &str) -> Result<Value, String> {
    raw.parse::<bytesize::ByteSize>()
        .map(|b| json!(b.as_u64()))
        .map_err(|e| format!("--limit {raw}: {e} (e.g. 50GiB, 500MB, 1048576)"))
}

fn duration(raw: &str) -> Result<u64, String> {
    humantime::parse_duration(raw)
        .map(|d| d.as_secs())
        .map_err(|e| format!("{raw}: {e} (e.g. 30d, 12h, 90m)"))
}

/// A time range of usage.
#[derive(Debug, Args, Clone)]
pub struct RangeArgs {
    /// Start: RFC 3339, Unix seconds, or -DURATION before now [default: -30d]
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// End: RFC 3339, Unix seconds, or -DURATION before now [default: now]
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub to: Option<String>,
}

/// The query (`from=…&to=…`, Unix seconds) of a usage range.
pub fn range_query(range: &RangeArgs, now: u64) -> Result<String, String> {
    let mut parts = Vec::new();
    for (name, raw) in [("from", &range.from), ("to", &range.to)] {
        if let Some(raw) = raw {
            let secs =
                time(raw, now).map_err(|e| e.replacen("--expire", &format!("--{name}"), 1))?;
            parts.push(format!("{name}={secs}"));
        }
    }
    Ok(parts.join("&"))
}

pub(super) fn time(raw: &str, now: u64) -> Result<Value, String> {
    if let Some(rest) = raw.strip_prefix('+') {
        return Ok(json!(now.saturating_add(duration(rest)?)));
    }
    if let Some(rest) = raw.strip_prefix('-') {
        return Ok(json!(now.saturating_sub(duration(rest)?)));
    }
    if let Ok(secs) = raw.parse::<u64>() {
        return Ok(json!(secs));
    }
    humantime::parse_rfc3339_weak(raw)
        .map_err(|e| format!("--expire {raw}: {e} (RFC 3339, Unix seconds or +30d)"))
        .and_then(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| json!(d.as_secs()))
                .map_err(|_| format!("--expire {raw}: before 1970"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(limit: &str, expire: &str, reset: &str, hold: &str) -> PlanArgs {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        PlanArgs {
            limit: opt(limit),
            expire: opt(expire),
            reset: opt(reset),
            on_hold: opt(hold),
        }
    }

    #[test]
    fn people_spellings_become_the_api_fields() {
        let f = plan("1GiB", "+1d", "month:15", "").fields(1000).unwrap();
        assert_eq!(f["dataLimit"], json!(1u64 << 30));
        assert_eq!(f["expireAt"], json!(1000 + 86_400));
        assert_eq!(f["resetStrategy"], json!("month"));
        assert_eq!(f["resetDay"], json!(15));
        let f = plan("500MB", "2027-01-31T00:00:00Z", "week", "30d")
            .fields(0)
            .unwrap();
        assert_eq!(f["dataLimit"], json!(500_000_000u64));
        assert_eq!(f["expireAt"], json!(1_801_353_600u64));
        assert_eq!(f["resetStrategy"], json!("week"));
        assert!(f.get("resetDay").is_none());
        assert_eq!(f["onHoldSecs"], json!(30 * 86_400));
        let f = plan("1048576", "1800000000", "month", "")
            .fields(0)
            .unwrap();
        assert_eq!(f["dataLimit"], json!(1_048_576));
        assert_eq!(f["expireAt"], json!(1_800_000_000u64));
        assert_eq!(f["resetDay"], json!(1));
    }

    #[test]
    fn ranges_take_past_durations() {
        let range = RangeArgs {
            from: Some("-2d".into()),
            to: Some("1000000".into()),
        };
        assert_eq!(
            range_query(&range, 500_000).unwrap(),
            "from=327200&to=1000000"
        );
        let bad = RangeArgs {
            from: Some("yesterday".into()),
            to: None,
        };
        assert!(range_query(&bad, 0).unwrap_err().contains("--from"));
    }

    #[test]
    fn none_clears_and_absent_leaves() {
        let f = plan("none", "none", "", "none").fields(0).unwrap();
        assert_eq!(f["dataLimit"], Value::Null);
        assert_eq!(f["expireAt"], Value::Null);
        assert_eq!(f["onHoldSecs"], Value::Null);
        assert!(f.get("resetStrategy").is_none());
        assert!(plan("", "", "", "").fields(0).unwrap().is_empty());
    }

    #[test]
    fn nonsense_is_refused_with_the_flag_named() {
        for (p, flag) in [
            (plan("lots", "", "", ""), "--limit"),
            (plan("", "tomorrow", "", ""), "--expire"),
            (plan("", "", "fortnight", ""), "--reset"),
            (plan("", "", "week:3", ""), "--reset"),
            (plan("", "", "month:x", ""), "--reset"),
            (plan("", "", "month:31", ""), "1 to 28"),
            (plan("", "", "", "forever"), "forever"),
        ] {
            let e = p.fields(0).unwrap_err();
            assert!(e.contains(flag), "{e}");
        }
    }
}
