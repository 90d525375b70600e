//! The user directory's question: which users (a search by name prefix or
//! id prefix, a status, a state), in which order (name, creation, usage),
//! a page at a time from a cursor. Paged by key, never by offset, so the
//! last page of a million users costs what the first does.

use super::{User, UserState, UserStatus};

/// The order of a directory page; ties are broken by id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UserSort {
    /// By name, in code-point order (not a locale's).
    #[default]
    Name,
    /// By creation time.
    Created,
    /// By bytes used since the last reset (up and down together).
    Usage,
}

impl UserSort {
    pub const ALL: [UserSort; 3] = [UserSort::Name, UserSort::Created, UserSort::Usage];

    pub fn as_str(self) -> &'static str {
        match self {
            UserSort::Name => "name",
            UserSort::Created => "created",
            UserSort::Usage => "usage",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A directory query. `after` is the `next` of the previous page of the
/// same query (same search, filters and order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Users whose name starts with it, or whose id (lowercase, hyphenated)
    /// does; blank matches everyone.
    pub search: Option<String>,
    pub status: Option<UserStatus>,
    pub state: Option<UserState>,
    pub sort: UserSort,
    pub descending: bool,
    pub after: Option<String>,
    pub limit: u32,
}

impl UserQuery {
    /// The most users a page holds.
    pub const MAX_LIMIT: u32 = 1000;

    /// The limit, clamped to 1..=[`Self::MAX_LIMIT`].
    pub fn clamped_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }

    /// The search text, trimmed; `None` when blank.
    pub fn search_text(&self) -> Option<&str> {
        self.search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Whether `user` is one the query asks for (cursor aside).
    pub fn matches(&self, user: &User) -> bool {
        let found = self.search_text().is_none_or(|s| {
            user.name.starts_with(s) || user.id.to_string().starts_with(&s.to_ascii_lowercase())
        });
        found
            && self.status.is_none_or(|st| user.status == st)
            && self.state.is_none_or(|st| user.state() == st)
    }
}

/// How many live users are in each [`UserState`] (the overview's users by
/// state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub active: u64,
    pub limited: u64,
    pub expired: u64,
    pub on_hold: u64,
    pub disabled: u64,
}

impl StateCounts {
    /// Every state, in the order the overview lists them.
    pub const STATES: [UserState; 5] = [
        UserState::Active,
        UserState::OnHold,
        UserState::Limited,
        UserState::Expired,
        UserState::Disabled,
    ];

    /// The counter of `state`.
    pub fn of_mut(&mut self, state: UserState) -> &mut u64 {
        match state {
            UserState::Active => &mut self.active,
            UserState::Limited => &mut self.limited,
            UserState::Expired => &mut self.expired,
            UserState::OnHold => &mut self.on_hold,
            UserState::Disabled => &mut self.disabled,
        }
    }

    /// How many users are in `state`.
    pub fn of(&self, state: UserState) -> u64 {
        let mut copy = *self;
        *copy.of_mut(state)
    }

    /// Every live user.
    pub fn total(&self) -> u64 {
        Self::STATES
            .iter()
            .map(|s| self.of(*s))
            .fold(0, u64::saturating_add)
    }

    /// The storage key of `state` (the SQL backends' counter rows).
    pub fn key(state: UserState) -> &'static str {
        match state {
            UserState::Active => "active",
            UserState::Limited => "limited",
            UserState::Expired => "expired",
            UserState::OnHold => "on_hold",
            UserState::Disabled => "disabled",
        }
    }

    /// The state whose storage key is `key`.
    pub fn state_of_key(key: &str) -> Option<UserState> {
        Self::STATES.into_iter().find(|s| Self::key(*s) == key)
    }
}
