//! What a user bought: a data limit, an expiry (or a hold that starts the
//! expiry at the first byte), and when the used bytes go back to zero; and
//! the state a user is in because of it.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};

use super::{ParseError, Timestamp};

/// A user's plan. The default limits nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Bytes (up + down, after the nodes' multipliers) the user may move
    /// between two resets; `None`: unlimited.
    pub data_limit: Option<u64>,
    /// When the user stops being served; `None`: never.
    pub expire_at: Option<Timestamp>,
    pub reset: ResetStrategy,
    /// Seconds of service counted from the user's first byte: the expiry is
    /// set then (`expire_at = first byte + on_hold`). Exclusive with
    /// `expire_at`: a hold has no expiry until it starts.
    pub on_hold: Option<u64>,
}

impl Plan {
    /// The longest hold accepted, in seconds (about 300 years): its expiry
    /// must fit in a millisecond timestamp.
    pub const MAX_HOLD_SECS: u64 = 10_000_000_000;

    /// Checks the plan: a limit is 1..=`i64::MAX` (what every backend
    /// stores), a hold 1..=[`Self::MAX_HOLD_SECS`], a monthly reset day is
    /// 1..=28 (every month has it), and a hold has no expiry yet.
    pub fn validate(&self) -> Result<(), ParseError> {
        let err = |what: &'static str, value: String| Err(ParseError { what, value });
        if let Some(limit) = self.data_limit {
            if limit == 0 || limit > i64::MAX as u64 {
                return err("data limit", limit.to_string());
            }
        }
        if let Some(hold) = self.on_hold {
            if hold == 0 || hold > Self::MAX_HOLD_SECS {
                return err("on-hold duration", hold.to_string());
            }
        }
        if self.on_hold.is_some() && self.expire_at.is_some() {
            return err("plan", "both an expiry and an on-hold duration".into());
        }
        if let ResetStrategy::Month { day } = self.reset {
            if !(1..=28).contains(&day) {
                return err("monthly reset day", day.to_string());
            }
        }
        Ok(())
    }
}

/// When a user's used bytes go back to zero: calendar-aligned, in UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "period")]
pub enum ResetStrategy {
    /// Never.
    #[default]
    None,
    /// Every midnight.
    Day,
    /// Every Monday, midnight.
    Week,
    /// Every month on `day` (1..=28), midnight.
    Month { day: u8 },
    /// Every 1 January, midnight.
    Year,
}

impl ResetStrategy {
    /// The period's name as stored (the monthly day is stored apart).
    pub fn period(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month { .. } => "month",
            Self::Year => "year",
        }
    }

    /// The monthly day, 0 for every other period (how backends store it).
    pub fn month_day(&self) -> u8 {
        match self {
            Self::Month { day } => *day,
            _ => 0,
        }
    }

    /// The strategy from its stored parts ([`Self::period`], [`Self::month_day`]).
    pub fn from_parts(period: &str, day: i64) -> Result<Self, ParseError> {
        let strategy = match period {
            "none" => Self::None,
            "day" => Self::Day,
            "week" => Self::Week,
            "year" => Self::Year,
            "month" => match u8::try_from(day) {
                Ok(day @ 1..=28) => Self::Month { day },
                _ => {
                    return Err(ParseError {
                        what: "monthly reset day",
                        value: day.to_string(),
                    });
                }
            },
            other => {
                return Err(ParseError {
                    what: "reset period",
                    value: other.chars().take(32).collect(),
                });
            }
        };
        Ok(strategy)
    }

    /// The first reset strictly after `t`, at a UTC midnight; `None` for
    /// [`ResetStrategy::None`] or beyond the calendar's range.
    pub fn next_reset_after(&self, t: Timestamp) -> Option<Timestamp> {
        let now = OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000).ok()?;
        let today = now.date();
        let next: Date = match self {
            Self::None => return None,
            Self::Day => today.next_day()?,
            Self::Week => {
                let days = 7 - i64::from(today.weekday().number_days_from_monday());
                today.checked_add(time::Duration::days(days))?
            }
            Self::Month { day } => {
                let this = Date::from_calendar_date(today.year(), today.month(), *day).ok()?;
                if midnight(this) > t {
                    this
                } else {
                    let (year, month) = match today.month() {
                        Month::December => (today.year() + 1, Month::January),
                        m => (today.year(), m.next()),
                    };
                    Date::from_calendar_date(year, month, *day).ok()?
                }
            }
            Self::Year => Date::from_calendar_date(today.year() + 1, Month::January, 1).ok()?,
        };
        Some(midnight(next))
    }
}

fn midnight(date: Date) -> Timestamp {
    let at = date.with_time(Time::MIDNIGHT).assume_utc();
    Timestamp((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Why a user is off the nodes although enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockReason {
    /// The used bytes reached the plan's limit.
    Limited,
    /// The plan's expiry passed.
    Expired,
}

impl BlockReason {
    /// The spelling backends store.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Limited => "Limited",
            Self::Expired => "Expired",
        }
    }
}

impl std::str::FromStr for BlockReason {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Limited" => Ok(Self::Limited),
            "Expired" => Ok(Self::Expired),
            _ => Err(ParseError {
                what: "block reason",
                value: s.chars().take(32).collect(),
            }),
        }
    }
}

/// What a user's views show: the admin's switch and the plan together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    Active,
    Limited,
    Expired,
    /// On the nodes, waiting for the first byte to start the expiry.
    OnHold,
    Disabled,
}

/// One field of a [`PlanEdit`]: left as it is, set, or cleared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldEdit<T> {
    /// Kept as the stored plan has it.
    #[default]
    Leave,
    Set(T),
    /// Back to `None` (unlimited, never, no hold).
    Clear,
}

impl<T> FieldEdit<T> {
    /// From a patch field: absent leaves it, `null` clears it.
    pub fn from_patch(field: Option<Option<T>>) -> Self {
        match field {
            None => Self::Leave,
            Some(None) => Self::Clear,
            Some(Some(value)) => Self::Set(value),
        }
    }

    fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Self::Leave => current,
            Self::Set(value) => Some(value),
            Self::Clear => None,
        }
    }
}

/// How a [`PlanEdit`] changes the reset strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResetEdit {
    /// Kept as the stored plan has it.
    #[default]
    Leave,
    Set(ResetStrategy),
    /// A new day (1..=28) for the monthly reset the stored plan has; a
    /// plan with another period keeps it.
    MonthDay(i64),
}

/// A change of a user's plan, applied to the plan stored when the change
/// is made (not to one read earlier), so that two edits of different
/// fields both land. [`PlanEdit::from`] a [`Plan`] replaces every field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanEdit {
    pub data_limit: FieldEdit<u64>,
    pub expire_at: FieldEdit<Timestamp>,
    pub reset: ResetEdit,
    pub on_hold: FieldEdit<u64>,
}

impl PlanEdit {
    /// True when the edit leaves every field.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `plan` with this edit applied, checked by [`Plan::validate`].
    pub fn apply(&self, plan: Plan) -> Result<Plan, ParseError> {
        let reset = match self.reset {
            ResetEdit::Leave => plan.reset,
            ResetEdit::Set(reset) => reset,
            ResetEdit::MonthDay(day) => ResetStrategy::from_parts(plan.reset.period(), day)?,
        };
        let edited = Plan {
            data_limit: self.data_limit.apply(plan.data_limit),
            expire_at: self.expire_at.apply(plan.expire_at),
            reset,
            on_hold: self.on_hold.apply(plan.on_hold),
        };
        edited.validate()?;
        Ok(edited)
    }
}

impl From<Plan> for PlanEdit {
    fn from(plan: Plan) -> Self {
        // Every field present: a value sets it, `None` clears it.
        Self {
            data_limit: FieldEdit::from_patch(Some(plan.data_limit)),
            expire_at: FieldEdit::from_patch(Some(plan.expire_at)),
            reset: ResetEdit::Set(plan.reset),
            on_hold: FieldEdit::from_patch(Some(plan.on_hold)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn at(y: i32, m: u8, d: u8, h: u8, min: u8) -> Timestamp {
        let date = Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap();
        let t = date
            .with_time(Time::from_hms(h, min, 0).unwrap())
            .assume_utc();
        Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    fn next(s: ResetStrategy, t: Timestamp) -> Timestamp {
        s.next_reset_after(t).unwrap()
    }

    #[test]
    fn daily_resets_at_the_next_midnight() {
        let s = ResetStrategy::Day;
        assert_eq!(next(s, at(2024, 2, 28, 13, 5)), at(2024, 2, 29, 0, 0));
        assert_eq!(next(s, at(2023, 2, 28, 23, 59)), at(2023, 3, 1, 0, 0));
        assert_eq!(next(s, at(2024, 12, 31, 0, 0)), at(2025, 1, 1, 0, 0));
        // Strictly after: a midnight gives the next one.
        assert_eq!(next(s, at(2024, 3, 1, 0, 0)), at(2024, 3, 2, 0, 0));
    }

    #[test]
    fn weekly_resets_on_the_next_monday() {
        let s = ResetStrategy::Week;
        // 2024-12-30 is a Monday.
        assert_eq!(next(s, at(2024, 12, 30, 0, 0)), at(2025, 1, 6, 0, 0));
        assert_eq!(next(s, at(2024, 12, 30, 9, 0)), at(2025, 1, 6, 0, 0));
        assert_eq!(next(s, at(2025, 1, 5, 23, 59)), at(2025, 1, 6, 0, 0));
        assert_eq!(next(s, at(2024, 12, 28, 12, 0)), at(2024, 12, 30, 0, 0));
    }

    #[test]
    fn monthly_resets_on_the_day_this_or_next_month() {
        let s = ResetStrategy::Month { day: 28 };
        assert_eq!(next(s, at(2024, 2, 27, 10, 0)), at(2024, 2, 28, 0, 0));
        assert_eq!(next(s, at(2024, 2, 28, 0, 0)), at(2024, 3, 28, 0, 0));
        assert_eq!(next(s, at(2024, 2, 29, 10, 0)), at(2024, 3, 28, 0, 0));
        assert_eq!(next(s, at(2024, 12, 31, 10, 0)), at(2025, 1, 28, 0, 0));
        let first = ResetStrategy::Month { day: 1 };
        assert_eq!(next(first, at(2023, 1, 31, 23, 0)), at(2023, 2, 1, 0, 0));
        assert_eq!(next(first, at(2024, 12, 1, 0, 0)), at(2025, 1, 1, 0, 0));
    }

    #[test]
    fn yearly_resets_on_the_next_first_of_january() {
        let s = ResetStrategy::Year;
        assert_eq!(next(s, at(2024, 2, 29, 12, 0)), at(2025, 1, 1, 0, 0));
        assert_eq!(next(s, at(2025, 1, 1, 0, 0)), at(2026, 1, 1, 0, 0));
        assert_eq!(next(s, at(2024, 12, 31, 23, 59)), at(2025, 1, 1, 0, 0));
    }

    #[test]
    fn no_strategy_and_out_of_range_times_have_no_reset() {
        assert_eq!(ResetStrategy::None.next_reset_after(Timestamp(0)), None);
        assert_eq!(
            ResetStrategy::Day.next_reset_after(Timestamp(i64::MAX)),
            None
        );
    }

    #[test]
    fn plans_are_validated() {
        assert!(Plan::default().validate().is_ok());
        let ok = Plan {
            data_limit: Some(1),
            expire_at: None,
            reset: ResetStrategy::Month { day: 28 },
            on_hold: Some(86_400),
        };
        assert!(ok.validate().is_ok());
        for bad in [
            Plan {
                data_limit: Some(0),
                ..Plan::default()
            },
            Plan {
                on_hold: Some(0),
                ..Plan::default()
            },
            Plan {
                on_hold: Some(Plan::MAX_HOLD_SECS + 1),
                ..Plan::default()
            },
            Plan {
                data_limit: Some(u64::MAX),
                ..Plan::default()
            },
            Plan {
                on_hold: Some(1),
                expire_at: Some(Timestamp(1)),
                ..Plan::default()
            },
            Plan {
                reset: ResetStrategy::Month { day: 29 },
                ..Plan::default()
            },
            Plan {
                reset: ResetStrategy::Month { day: 0 },
                ..Plan::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn strategies_round_trip_through_their_stored_parts() {
        for s in [
            ResetStrategy::None,
            ResetStrategy::Day,
            ResetStrategy::Week,
            ResetStrategy::Month { day: 7 },
            ResetStrategy::Year,
        ] {
            let parts = (s.period(), i64::from(s.month_day()));
            assert_eq!(ResetStrategy::from_parts(parts.0, parts.1).unwrap(), s);
        }
        assert!(ResetStrategy::from_parts("month", 31).is_err());
        assert!(ResetStrategy::from_parts("hour", 0).is_err());
        assert_eq!(
            serde_json::to_string(&UserState::OnHold).unwrap(),
            "\"on_hold\""
        );
        assert_eq!(
            serde_json::to_string(&ResetStrategy::Month { day: 3 }).unwrap(),
            r#"{"period":"month","day":3}"#
        );
    }

    #[test]
    fn edits_set_clear_and_leave_fields_and_check_the_result() {
        let stored = Plan {
            data_limit: Some(100),
            expire_at: Some(Timestamp(5000)),
            reset: ResetStrategy::Month { day: 3 },
            on_hold: None,
        };
        let edit = PlanEdit {
            data_limit: FieldEdit::Set(200),
            expire_at: FieldEdit::Clear,
            reset: ResetEdit::MonthDay(20),
            on_hold: FieldEdit::Leave,
        };
        let edited = edit.apply(stored).unwrap();
        assert_eq!(
            edited,
            Plan {
                data_limit: Some(200),
                expire_at: None,
                reset: ResetStrategy::Month { day: 20 },
                on_hold: None,
            }
        );
        assert!(PlanEdit::default().is_empty());
        assert!(!edit.is_empty());
        assert_eq!(PlanEdit::default().apply(stored).unwrap(), stored);
        // A day alone keeps another period.
        let weekly = Plan {
            reset: ResetStrategy::Week,
            ..Plan::default()
        };
        let day = PlanEdit {
            reset: ResetEdit::MonthDay(9),
            ..PlanEdit::default()
        };
        assert_eq!(day.apply(weekly).unwrap(), weekly);
        // Refused: a bad day for a monthly plan, a hold next to an expiry.
        let bad_day = PlanEdit {
            reset: ResetEdit::MonthDay(31),
            ..PlanEdit::default()
        };
        assert!(bad_day.apply(stored).is_err());
        let hold = PlanEdit {
            on_hold: FieldEdit::Set(60),
            ..PlanEdit::default()
        };
        assert!(hold.apply(stored).is_err());
        // A whole plan replaces every field.
        assert_eq!(PlanEdit::from(weekly).apply(stored).unwrap(), weekly);
        assert_eq!(FieldEdit::from_patch(Some(None::<u64>)), FieldEdit::Clear);
    }
}
