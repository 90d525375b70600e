//! The users the agent holds for the core, compactly: each user's id,
//! secret, VLESS/VMess id and name live in one allocation, and the set is
//! found by id without a second copy of it as a key. With 100,000 users
//! this is about half the memory of a map from id to `WireUser`. Also here:
//! the check that a request's users can be held at all ([`validate`]).

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::AgentError;
use crate::config::CoreCredentials;
use crate::wire::WireUser;

/// The agent's users, found by id.
pub(super) type Users = HashSet<StoredUser>;

/// Checks that `users` can be put in the core: ids are UUIDs when `uuid`
/// (a VLESS/VMess inbound is managed), secrets are non-empty, ids unique.
pub(super) fn validate(users: &[WireUser], uuid: bool) -> Result<(), AgentError> {
    let mut seen = HashSet::with_capacity(users.len());
    for user in users {
        if user.id.is_empty() || (uuid && uuid::Uuid::parse_str(user.vless_id()).is_err()) {
            return Err(AgentError::BadRequest(
                "every user id must be a UUID".into(),
            ));
        }
        if user.secret.is_empty() {
            return Err(AgentError::BadRequest("every user needs a secret".into()));
        }
        if !seen.insert(user.id.as_str()) {
            return Err(AgentError::BadRequest("a user id appears twice".into()));
        }
    }
    Ok(())
}

/// One user as the agent keeps it: `id`, `secret`, the proxy id (if any)
/// and `name`, one after another in `text`. Clones share the text.
/// Hashes and compares by id only, so a [`Users`] set is found by `&str`.
/// `Debug` shows the id only.
#[derive(Clone)]
pub(crate) struct StoredUser {
    text: Arc<str>,
    id_end: u32,
    secret_end: u32,
    /// Where the proxy id ends; `None`: the user has none.
    proxy_end: Option<u32>,
}

impl StoredUser {
    /// `user`, compacted. A user whose fields together exceed 4 GiB (far
    /// past any request body the agent accepts) is refused.
    pub(crate) fn new(user: &WireUser) -> Result<Self, AgentError> {
        let proxy = user.proxy_id.as_deref();
        let mut text = String::with_capacity(
            user.id.len() + user.secret.len() + proxy.map_or(0, str::len) + user.name.len(),
        );
        let end = |text: &String| {
            u32::try_from(text.len())
                .map_err(|_| AgentError::BadRequest("a user is too large".into()))
        };
        text.push_str(&user.id);
        let id_end = end(&text)?;
        text.push_str(&user.secret);
        let secret_end = end(&text)?;
        let proxy_end = match proxy {
            Some(proxy) => {
                text.push_str(proxy);
                Some(end(&text)?)
            }
            None => None,
        };
        text.push_str(&user.name);
        end(&text)?;
        Ok(Self {
            text: Arc::from(text),
            id_end,
            secret_end,
            proxy_end,
        })
    }

    pub(crate) fn id(&self) -> &str {
        &self.text[..self.id_end as usize]
    }

    fn secret(&self) -> &str {
        &self.text[self.id_end as usize..self.secret_end as usize]
    }

    fn proxy_id(&self) -> Option<&str> {
        let end = self.proxy_end? as usize;
        Some(&self.text[self.secret_end as usize..end])
    }

    fn name(&self) -> &str {
        &self.text[self.proxy_end.unwrap_or(self.secret_end) as usize..]
    }

    /// Whether `user` is this user, every field alike.
    pub(crate) fn is(&self, user: &WireUser) -> bool {
        self.id() == user.id
            && self.secret() == user.secret
            && self.proxy_id() == user.proxy_id.as_deref()
            && self.name() == user.name
    }
}

impl CoreCredentials for StoredUser {
    fn id(&self) -> &str {
        StoredUser::id(self)
    }

    fn secret(&self) -> &str {
        StoredUser::secret(self)
    }

    fn vless_id(&self) -> &str {
        self.proxy_id().unwrap_or_else(|| StoredUser::id(self))
    }
}

impl PartialEq for StoredUser {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for StoredUser {}

impl Hash for StoredUser {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl Borrow<str> for StoredUser {
    fn borrow(&self) -> &str {
        self.id()
    }
}

impl fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredUser")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(id: &str, name: &str, secret: &str, proxy_id: Option<&str>) -> WireUser {
        WireUser {
            id: id.into(),
            name: name.into(),
            secret: secret.into(),
            proxy_id: proxy_id.map(Into::into),
        }
    }

    #[test]
    fn a_stored_user_gives_back_every_field_it_was_given() {
        for user in [
            wire("id-1", "alice", "s3cret", None),
            wire(
                "id-2",
                "",
                "s",
                Some("0b6a1f4e-2f6c-4a51-9f1e-7d1c2b3a4f5e"),
            ),
            wire("id-3", "bob", "x", Some("")),
            wire("ид-4", "имя", "секрет", None),
        ] {
            let stored = StoredUser::new(&user).unwrap();
            assert_eq!(StoredUser::id(&stored), user.id);
            assert_eq!(stored.secret(), user.secret);
            assert_eq!(stored.proxy_id(), user.proxy_id.as_deref());
            assert_eq!(stored.name(), user.name);
            assert_eq!(CoreCredentials::vless_id(&stored), user.vless_id());
            assert!(stored.is(&user));
        }
    }

    #[test]
    fn a_stored_user_is_not_a_user_that_differs_in_any_field() {
        let user = wire("id", "name", "secret", Some("proxy"));
        let stored = StoredUser::new(&user).unwrap();
        let changed = [
            wire("id2", "name", "secret", Some("proxy")),
            wire("id", "name2", "secret", Some("proxy")),
            wire("id", "name", "secret2", Some("proxy")),
            wire("id", "name", "secret", Some("proxy2")),
            wire("id", "name", "secret", None),
            // The same text cut elsewhere.
            wire("id", "name", "secretproxy", Some("")),
        ];
        for other in changed {
            assert!(!stored.is(&other), "{other:?}");
        }
    }

    #[test]
    fn the_set_finds_a_user_by_id_and_replaces_it_by_id() {
        let mut users = Users::default();
        users.insert(StoredUser::new(&wire("a", "n", "old", None)).unwrap());
        users.insert(StoredUser::new(&wire("b", "n", "s", None)).unwrap());
        let newer = wire("a", "n", "new", None);
        let old = users.replace(StoredUser::new(&newer).unwrap()).unwrap();
        assert_eq!(old.secret(), "old");
        assert_eq!(users.len(), 2);
        assert!(users.get("a").unwrap().is(&newer));
        assert!(users.take("b").is_some());
        assert!(!users.contains("b"));
    }

    #[test]
    fn debug_shows_the_id_and_never_the_secret() {
        let stored = StoredUser::new(&wire("the-id", "n", "hunter2", Some("p-id"))).unwrap();
        let debug = format!("{stored:?}");
        assert!(debug.contains("the-id"));
        assert!(!debug.contains("hunter2") && !debug.contains("p-id"));
    }
}
