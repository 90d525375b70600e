//! The user directory's rules, once for every backend: the cursor's form,
//! what a search matches (a name prefix as a range, an id prefix as a range
//! of UUIDs), the state filters and the sort keys, written as SQL for the
//! SQL backends and as Rust for the reference one.

use std::cmp::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::{Page, ParseError, StateCounts, User, UserId, UserQuery, UserSort, UserState};
use crate::storage::{StorageError, StorageResult};

/// SQL for the usage sort key: `used_up + used_down` saturating at
/// `i64::MAX` (an index expression must be written the same way).
pub const USAGE_SQL: &str = "(CASE WHEN used_up > 9223372036854775807 - used_down \
     THEN 9223372036854775807 ELSE used_up + used_down END)";

/// A user's usage sort key, as [`USAGE_SQL`] computes it.
pub fn usage_key(user: &User) -> i64 {
    i64::try_from(user.used()).unwrap_or(i64::MAX)
}

/// A sort key's value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Text(String),
    Int(i64),
}

/// `user`'s key under `sort`.
pub fn key_of(sort: UserSort, user: &User) -> Key {
    match sort {
        UserSort::Name => Key::Text(user.name.clone()),
        UserSort::Created => Key::Int(user.created_at.0),
        UserSort::Usage => Key::Int(usage_key(user)),
    }
}

/// Where a page ended: the last user's key and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub key: Key,
    pub id: UserId,
}

impl Cursor {
    /// The cursor after `user` under `sort`.
    pub fn after(sort: UserSort, user: &User) -> Self {
        Self {
            key: key_of(sort, user),
            id: user.id,
        }
    }

    /// As text for `next`: `t<base64url name>.<id>` or `i<number>.<id>`.
    pub fn encode(&self) -> String {
        match &self.key {
            Key::Text(t) => format!("t{}.{}", URL_SAFE_NO_PAD.encode(t), self.id),
            Key::Int(n) => format!("i{n}.{}", self.id),
        }
    }

    /// A cursor of `sort`'s kind from its text, else `Invalid`.
    pub fn decode(sort: UserSort, text: &str) -> StorageResult<Self> {
        let invalid = || {
            StorageError::Invalid(ParseError {
                what: "directory cursor",
                value: text.chars().take(100).collect(),
            })
        };
        let (key, id) = text.rsplit_once('.').ok_or_else(invalid)?;
        let id: UserId = id.parse().map_err(|_| invalid())?;
        let key = match (sort, key.split_at_checked(1)) {
            (UserSort::Name, Some(("t", b64))) => {
                let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| invalid())?;
                Key::Text(String::from_utf8(bytes).map_err(|_| invalid())?)
            }
            (UserSort::Created | UserSort::Usage, Some(("i", n))) => {
                Key::Int(n.parse().map_err(|_| invalid())?)
            }
            _ => return Err(invalid()),
        };
        Ok(Self { key, id })
    }

    /// Where `user` stands relative to the cursor in ascending order.
    fn cmp_user(&self, sort: UserSort, user: &User) -> Ordering {
        (key_of(sort, user), user.id).cmp(&(self.key.clone(), self.id))
    }
}

/// The smallest string above every string that starts with `prefix` (its
/// last character moved one code point up), or `None` when there is none
/// (only `U+10FFFF`s). Strings starting with `prefix` are exactly those in
/// `prefix..bound`, in code-point (= UTF-8 byte) order.
pub fn prefix_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=0x10FFFF).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The ids whose hyphenated lowercase text starts with `search`, as an
/// inclusive range; `None` when no id can (not hex, hyphens misplaced, too
/// long).
pub fn id_range(search: &str) -> Option<(UserId, UserId)> {
    let search = search.to_ascii_lowercase();
    let hex: String = search.chars().filter(|c| *c != '-').collect();
    if hex.is_empty() || hex.len() > 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let pad = |fill: char| {
        let mut full = hex.clone();
        full.extend(std::iter::repeat_n(fill, 32 - hex.len()));
        uuid::Uuid::try_parse(&full).ok().map(UserId::from_uuid)
    };
    let (lo, hi) = (pad('0')?, pad('f')?);
    lo.to_string().starts_with(&search).then_some((lo, hi))
}

/// Users by state from the SQL backends' counter rows (state key, count):
/// rows of the same state add up (striped counters); a key no state has,
/// or a negative sum, is a broken counter: [`StorageError::Corrupt`].
pub fn counts_from(rows: impl IntoIterator<Item = (String, i64)>) -> StorageResult<StateCounts> {
    let mut counts = StateCounts::default();
    let mut sums = [0i64; 5];
    for (key, n) in rows {
        let state = StateCounts::state_of_key(&key)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown user state {key:?}")))?;
        let i = StateCounts::STATES
            .iter()
            .position(|s| *s == state)
            .unwrap_or(0);
        sums[i] = sums[i].saturating_add(n);
    }
    for (state, sum) in StateCounts::STATES.into_iter().zip(sums) {
        *counts.of_mut(state) = u64::try_from(sum)
            .map_err(|_| StorageError::Corrupt(format!("negative count of {state:?} users")))?;
    }
    Ok(counts)
}

/// The SQL (shared by every dialect) of a state filter.
pub fn state_sql(state: UserState) -> &'static str {
    match state {
        UserState::Disabled => "status = 'Disabled'",
        UserState::Expired => "(status = 'Enabled' AND blocked = 'Expired')",
        UserState::Limited => "(status = 'Enabled' AND blocked = 'Limited')",
        UserState::OnHold => "(status = 'Enabled' AND blocked IS NULL AND on_hold IS NOT NULL)",
        UserState::Active => "(status = 'Enabled' AND blocked IS NULL AND on_hold IS NULL)",
    }
}

/// How a SQL backend spells what differs.
#[derive(Clone, Copy, Debug)]
pub struct Dialect {
    /// The `n`th (1-based) parameter: `?1`, `$1`.
    pub param: fn(usize) -> String,
    /// A parameter that holds an id (text): `?1`, `$1::uuid`.
    pub id_param: fn(usize) -> String,
    /// The name as sorted and compared, in code-point order: `name`,
    /// `name COLLATE "C"`.
    pub name: &'static str,
    /// Live users: `deleted = 0`, `NOT deleted`.
    pub live: &'static str,
    /// The id column, as compared and sorted (qualified where the select
    /// list renames it): `id`, `users.id`.
    pub id: &'static str,
    /// The usage order: its key (the saturating sum of [`USAGE_SQL`], over
    /// wherever the backend keeps the totals, written as its index is) and
    /// the id column it ties on.
    pub usage: (&'static str, &'static str),
}

/// A parameter's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Int(i64),
}

/// The SQL after `SELECT <columns> FROM users ` for `query` (`WHERE …
/// ORDER BY … LIMIT …`, the limit one above the page to tell whether more
/// follow), with its parameters in order.
pub fn query_sql(query: &UserQuery, d: &Dialect) -> StorageResult<(String, Vec<Arg>)> {
    let cursor = query
        .after
        .as_deref()
        .map(|a| Cursor::decode(query.sort, a))
        .transpose()?;
    let mut args = Vec::new();
    let mut push = |arg: Arg, id: bool| {
        args.push(arg);
        if id {
            (d.id_param)(args.len())
        } else {
            (d.param)(args.len())
        }
    };
    let mut conds = vec![d.live.to_owned()];
    if let Some(search) = query.search_text() {
        let mut alts = Vec::new();
        let from = push(Arg::Text(search.to_owned()), false);
        match prefix_bound(search) {
            Some(bound) => {
                let to = push(Arg::Text(bound), false);
                alts.push(format!(
                    "({name} >= {from} AND {name} < {to})",
                    name = d.name
                ));
            }
            None => alts.push(format!("{} >= {from}", d.name)),
        }
        if let Some((lo, hi)) = id_range(search) {
            let lo = push(Arg::Text(lo.to_string()), true);
            let hi = push(Arg::Text(hi.to_string()), true);
            alts.push(format!("({id} >= {lo} AND {id} <= {hi})", id = d.id));
        }
        conds.push(format!("({})", alts.join(" OR ")));
    }
    if let Some(status) = query.status {
        let p = push(Arg::Text(status.as_str().to_owned()), false);
        conds.push(format!("status = {p}"));
    }
    if let Some(state) = query.state {
        conds.push(state_sql(state).to_owned());
    }
    let (key, id) = match query.sort {
        UserSort::Name => (d.name, d.id),
        UserSort::Created => ("created_at", d.id),
        UserSort::Usage => d.usage,
    };
    let (op, dir) = if query.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(c) = cursor {
        let k = match c.key {
            Key::Text(t) => push(Arg::Text(t), false),
            Key::Int(n) => push(Arg::Int(n), false),
        };
        let after = push(Arg::Text(c.id.to_string()), true);
        conds.push(format!("({key}, {id}) {op} ({k}, {after})"));
    }
    let limit = push(Arg::Int(i64::from(query.clamped_limit()) + 1), false);
    let sql = format!(
        "WHERE {} ORDER BY {key} {dir}, {id} {dir} LIMIT {limit}",
        conds.join(" AND "),
    );
    Ok((sql, args))
}

/// A page from the users a query read (at most one above the limit, in
/// order): `next` is the cursor after the last one kept when more follow.
pub fn into_page(query: &UserQuery, mut users: Vec<User>) -> Page<User> {
    let limit = query.clamped_limit() as usize;
    let more = users.len() > limit;
    users.truncate(limit);
    let next = more
        .then(|| users.last().map(|u| Cursor::after(query.sort, u).encode()))
        .flatten();
    Page { items: users, next }
}

/// The directory over `users` (every live user, any order), as the
/// reference backend answers it.
pub fn find_in<'a>(
    query: &UserQuery,
    users: impl Iterator<Item = &'a User>,
) -> StorageResult<Page<User>> {
    let cursor = query
        .after
        .as_deref()
        .map(|a| Cursor::decode(query.sort, a))
        .transpose()?;
    let mut found: Vec<&User> = users
        .filter(|u| query.matches(u))
        .filter(|u| {
            cursor.as_ref().is_none_or(|c| {
                let at = c.cmp_user(query.sort, u);
                if query.descending {
                    at == Ordering::Less
                } else {
                    at == Ordering::Greater
                }
            })
        })
        .collect();
    found.sort_by(|a, b| {
        let order = (key_of(query.sort, a), a.id).cmp(&(key_of(query.sort, b), b.id));
        if query.descending {
            order.reverse()
        } else {
            order
        }
    });
    found.truncate(query.clamped_limit() as usize + 1);
    Ok(into_page(query, found.into_iter().cloned().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_bound_holds_exactly_the_strings_with_the_prefix() {
        assert_eq!(prefix_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_bound("\u{10FFFF}"), None);
        let bound = prefix_bound("al").unwrap();
        for s in ["al", "alice", "al\u{10FFFF}x"] {
            assert!(s >= "al" && s < bound.as_str(), "{s}");
        }
        for s in ["ak\u{10FFFF}", "am", "a"] {
            assert!(!(s >= "al" && s < bound.as_str()), "{s}");
        }
    }

    #[test]
    fn an_id_prefix_is_a_range_of_ids() {
        let (lo, hi) = id_range("6F1C7F3E-9a").unwrap();
        assert_eq!(lo.to_string(), "6f1c7f3e-9a00-0000-0000-000000000000");
        assert_eq!(hi.to_string(), "6f1c7f3e-9aff-ffff-ffff-ffffffffffff");
        assert!(id_range("6f1c7f3e9a").is_none(), "hyphen missing");
        assert!(id_range("alice").is_none());
        assert!(id_range("").is_none());
    }

    #[test]
    fn cursors_round_trip_and_refuse_another_orders() {
        let id = UserId::random();
        for (sort, key) in [
            (UserSort::Name, Key::Text("a.b\nc".into())),
            (UserSort::Usage, Key::Int(i64::MAX)),
            (UserSort::Created, Key::Int(-5)),
        ] {
            let c = Cursor { key, id };
            assert_eq!(Cursor::decode(sort, &c.encode()).unwrap(), c);
        }
        let name = Cursor {
            key: Key::Text("x".into()),
            id,
        }
        .encode();
        assert!(Cursor::decode(UserSort::Usage, &name).is_err());
        assert!(Cursor::decode(UserSort::Name, "garbage").is_err());
    }
}
