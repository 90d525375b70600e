//! The agent's node keys: the current one and, for a grace period after a
//! rotation (`POST /key`), the previous one.
//!
//! Only a request sealed under the current key may change the key; one
//! under the previous key may only deliver the current key again (a
//! repeated delivery), so the old key cannot take the node over during the
//! grace. A request is opened under the current key; one that does not decrypt
//! under it is tried under the previous key while its grace lasts, and its
//! answer is sealed under the key it came in. After the grace deadline only
//! the current key opens anything.
//!
//! A rotation is written to the state directory before it takes effect:
//! `node-key` (the current key, base64url on one line, mode 0600: the
//! format of `node_key_file`) and `node-key.previous` (the previous key and
//! its deadline in Unix seconds, one per line). Each is replaced atomically
//! (a synced temporary file renamed over). At start the agent reads them
//! back, and `node-key` takes precedence over the settings' key, so a
//! restart during the grace period keeps accepting both keys and a restart
//! after it keeps the new one.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::envelope::NodeKey;

/// The current key's file in the state directory.
pub const KEY_FILE: &str = "node-key";
/// The previous key's file (key, then deadline) in the state directory.
pub const PREVIOUS_KEY_FILE: &str = "node-key.previous";
/// The longest grace period a rotation may ask for.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The keys the agent accepts. `Debug` shows no key.
#[derive(Debug)]
pub struct KeyRing {
    keys: RwLock<Keys>,
    /// Where rotations are persisted (`None`: kept in memory only, for tests).
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Keys {
    current: NodeKey,
    /// The key replaced by the last rotation, and the Unix second after
    /// which it is refused.
    previous: Option<(NodeKey, u64)>,
}

/// What a rotation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotated {
    /// The key was already the current one (a repeated delivery): nothing
    /// changed, the grace deadline is the one already set (if any).
    Unchanged { grace_until: Option<u64> },
    /// The key is now the current one; the request's key is accepted until
    /// `grace_until` (Unix seconds).
    Changed { grace_until: u64 },
}

/// Why a rotation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotateError {
    #[error("grace period above the maximum of {} s", MAX_GRACE.as_secs())]
    Grace,
    /// A new key sealed under the previous key: only the current key may
    /// rotate (the previous one may only deliver the current key again).
    #[error("a new key must come under the current key")]
    NotCurrent,
    #[error("cannot persist the node key in {path}: {source}")]
    Persist {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl KeyRing {
    /// One key, kept in memory only (rotations are not persisted).
    pub fn in_memory(key: NodeKey) -> Self {
        Self {
            keys: RwLock::new(Keys {
                current: key,
                previous: None,
            }),
            dir: None,
        }
    }

    /// The keys persisted in `dir` by an earlier rotation, else
    /// `settings_key`; rotations are persisted in `dir`. A previous key
    /// whose deadline has passed is dropped.
    pub fn load(dir: &Path, settings_key: NodeKey) -> io::Result<Self> {
        let read = |name: &str| match fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        let invalid = |name: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a node key", dir.join(name).display()),
            )
        };
        let Some(text) = read(KEY_FILE)? else {
            return Ok(Self {
                dir: Some(dir.to_owned()),
                ..Self::in_memory(settings_key)
            });
        };
        let current: NodeKey = text.trim().parse().map_err(|_| invalid(KEY_FILE))?;
        let previous = match read(PREVIOUS_KEY_FILE)? {
            None => None,
            Some(text) => {
                let mut lines = text.lines();
                let key = lines.next().and_then(|k| k.trim().parse::<NodeKey>().ok());
                let until = lines.next().and_then(|u| u.trim().parse::<u64>().ok());
                match (key, until) {
                    (Some(key), Some(until)) => Some((key, until)),
                    _ => return Err(invalid(PREVIOUS_KEY_FILE)),
                }
            }
        };
        let now = unix_secs(SystemTime::now());
        Ok(Self {
            keys: RwLock::new(Keys {
                current,
                previous: previous.filter(|(_, until)| *until > now),
            }),
            dir: Some(dir.to_owned()),
        })
    }

    fn snapshot(&self) -> Keys {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether the keys came from (or go to) the state directory's
    /// `node-key` file rather than the settings: for the start-up log.
    pub fn persisted(&self) -> bool {
        self.dir
            .as_ref()
            .is_some_and(|dir| dir.join(KEY_FILE).exists())
    }

    /// The keys a request may be sealed under at `now`: the current one,
    /// then the previous one while its grace lasts.
    pub fn accepted(&self, now: SystemTime) -> Vec<NodeKey> {
        let keys = self.snapshot();
        let mut accepted = vec![keys.current];
        if let Some((previous, until)) = keys.previous {
            if unix_secs(now) < until {
                accepted.push(previous);
            }
        }
        accepted
    }

    /// The current key.
    pub fn current(&self) -> NodeKey {
        self.snapshot().current
    }

    /// Makes `new` the current key, accepting `came_under` (the key the
    /// rotation request was sealed under) until `now + grace`. Persisted
    /// before it takes effect: a failed write changes nothing. Delivering
    /// the current key again changes nothing.
    pub fn rotate(
        &self,
        came_under: &NodeKey,
        new: NodeKey,
        grace: Duration,
        now: SystemTime,
    ) -> Result<Rotated, RotateError> {
        if grace > MAX_GRACE {
            return Err(RotateError::Grace);
        }
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if keys.current == new {
            return Ok(Rotated::Unchanged {
                grace_until: keys.previous.as_ref().map(|(_, until)| *until),
            });
        }
        // Whoever holds the old key during the grace must not be able to
        // swap in a key of their own and lock the manager out.
        if *came_under != keys.current {
            return Err(RotateError::NotCurrent);
        }
        let grace_until = unix_secs(now).saturating_add(grace.as_secs());
        if let Some(dir) = &self.dir {
            persist(dir, came_under, grace_until, &new)?;
        }
        keys.previous = Some((came_under.clone(), grace_until));
        keys.current = new;
        Ok(Rotated::Changed { grace_until })
    }
}

/// The previous key first: a crash between the two writes leaves the old
/// `node-key` (the rotation did not happen; the manager delivers it again).
fn persist(
    dir: &Path,
    previous: &NodeKey,
    until: u64,
    current: &NodeKey,
) -> Result<(), RotateError> {
    let previous_text = format!("{}\n{until}\n", previous.expose_base64url());
    write_private(dir, PREVIOUS_KEY_FILE, previous_text.as_bytes())?;
    write_private(
        dir,
        KEY_FILE,
        format!("{}\n", current.expose_base64url()).as_bytes(),
    )?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| RotateError::Persist {
            path: dir.to_owned(),
            source,
        })
}

/// Replaces `dir/name` with `bytes`, mode 0600 from its creation on.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RotateError> {
    let path = dir.join(name);
    let failed = |source| RotateError::Persist {
        path: path.clone(),
        source,
    };
    // tempfile creates the file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".node-key.")
        .tempfile_in(dir)
        .map_err(failed)?;
    tmp.write_all(bytes).map_err(failed)?;
    tmp.as_file().sync_all().map_err(failed)?;
    tmp.persist(&path).map_err(|e| failed(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn both_keys_are_accepted_during_the_grace_period_and_only_the_new_one_after() {
        let (old, new) = (NodeKey::random(), NodeKey::random());
        let ring = KeyRing::in_memory(old.clone());
        let now = SystemTime::now();
        ring.rotate(&old, new.clone(), DAY, now).unwrap();
        assert_eq!(ring.accepted(now), vec![new.clone(), old]);
        assert_eq!(ring.accepted(now + DAY), vec![new]);
    }

    #[test]
    fn delivering_the_current_key_again_changes_nothing() {
        let (old, new) = (NodeKey::random(), NodeKey::random());
        let ring = KeyRing::in_memory(old.clone());
        let now = SystemTime::now();
        let Rotated::Changed { grace_until } = ring.rotate(&old, new.clone(), DAY, now).unwrap()
        else {
            panic!("the first delivery rotates");
        };
        let again = ring.rotate(&new, new.clone(), Duration::ZERO, now).unwrap();
        assert_eq!(
            again,
            Rotated::Unchanged {
                grace_until: Some(grace_until)
            }
        );
        assert_eq!(ring.accepted(now), vec![new, old]);
    }

    #[test]
    fn the_previous_key_cannot_rotate_to_another_key() {
        let (old, new) = (NodeKey::random(), NodeKey::random());
        let ring = KeyRing::in_memory(old.clone());
        let now = SystemTime::now();
        ring.rotate(&old, new.clone(), DAY, now).unwrap();
        let hijack = ring.rotate(&old, NodeKey::random(), DAY, now);
        assert!(matches!(hijack, Err(RotateError::NotCurrent)), "{hijack:?}");
        assert_eq!(ring.accepted(now), vec![new, old]);
    }

    #[test]
    fn a_grace_above_the_maximum_is_refused_and_changes_nothing() {
        let old = NodeKey::random();
        let ring = KeyRing::in_memory(old.clone());
        let refused = ring.rotate(&old, NodeKey::random(), MAX_GRACE * 2, SystemTime::now());
        assert!(matches!(refused, Err(RotateError::Grace)));
        assert_eq!(ring.current(), old);
    }

    #[test]
    fn a_rotation_is_persisted_with_mode_0600_and_read_back_before_the_settings_key() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (NodeKey::random(), NodeKey::random());
        let ring = KeyRing::load(dir.path(), old.clone()).unwrap();
        assert!(!ring.persisted());
        ring.rotate(&old, new.clone(), DAY, SystemTime::now())
            .unwrap();
        #[cfg(unix)]
        for name in [KEY_FILE, PREVIOUS_KEY_FILE] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        // A restart during the grace period: both keys, the new one first,
        // whatever key the settings still name.
        let restarted = KeyRing::load(dir.path(), old.clone()).unwrap();
        assert!(restarted.persisted());
        assert_eq!(
            restarted.accepted(SystemTime::now()),
            vec![new.clone(), old]
        );
        assert_eq!(restarted.accepted(SystemTime::now() + DAY), vec![new]);
    }

    #[test]
    fn a_restart_after_the_grace_period_drops_the_previous_key() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (NodeKey::random(), NodeKey::random());
        let ring = KeyRing::load(dir.path(), old.clone()).unwrap();
        let long_ago = SystemTime::now() - 2 * DAY;
        ring.rotate(&old, new.clone(), DAY, long_ago).unwrap();
        let restarted = KeyRing::load(dir.path(), old).unwrap();
        assert_eq!(restarted.accepted(SystemTime::now()), vec![new]);
    }

    #[test]
    fn a_damaged_key_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), "not a key\n").unwrap();
        let e = KeyRing::load(dir.path(), NodeKey::random()).unwrap_err();
        assert!(e.to_string().contains(KEY_FILE), "{e}");
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let old = NodeKey::random();
        let ring = KeyRing::load(&dir.path().join("missing"), old.clone()).unwrap();
        let e = ring.rotate(&old, NodeKey::random(), DAY, SystemTime::now());
        assert!(matches!(e, Err(RotateError::Persist { .. })));
        assert_eq!(ring.accepted(SystemTime::now()), vec![old]);
    }

    #[test]
    fn debug_shows_no_key() {
        let key = NodeKey::random();
        let ring = KeyRing::in_memory(key.clone());
        assert!(!format!("{ring:?}").contains(&key.expose_base64url()));
    }
}
