//! One port per user for cores whose Shadowsocks servers hold one user
//! each (`ss-manager`): which port each user id has, kept in a file in the
//! agent's state directory so a user keeps its port across agent and core
//! restarts.
//!
//! # How a port is chosen
//!
//! A user's *home* port is [`PortRange::home`] (in the `wire` module, as the
//! manager computes it too: start + the first eight bytes of SHA-256 of the
//! user id modulo the range's size). The user gets the first port,
//! from home upwards (wrapping at `end` to `start`), that no other user
//! holds. A held port never moves while it is held, so a collision costs
//! the *later* user the next free port, and nobody else changes.
//!
//! A user removed from the node keeps its port (*released*), so a
//! disabled user comes back to the same port; a released port is given to
//! someone else only when the range has no port that was never held, the
//! longest-released first. Two nodes with the same range give a user the
//! same port unless a collision was resolved differently on one of them
//! (it depends on the order users arrived). Changing the range drops the
//! assignments outside it; those users get new ports.
//!
//! A port another process holds (the core cannot bind it) is *blocked*:
//! [`PortMap::move_away`] gives its user the next port as above and no one
//! gets the blocked port again until the agent restarts (blocks are not
//! saved: the other process may be gone by then).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use crate::wire::{PortRange, PortRangeError};

/// The name of the assignments' file in the state directory.
pub const FILE_NAME: &str = "ss-ports.json";

/// Why a port could not be given or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    #[error(transparent)]
    Range(#[from] PortRangeError),
    /// Every port of the range is held by a user on this node (or by
    /// another process).
    #[error("every port of {0} is held by a user or another process: widen the range")]
    Full(PortRange),
    #[error("port assignments {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Copy)]
struct Held {
    port: u16,
    /// When the user was removed (an order number), if it was.
    released: Option<u64>,
}

#[derive(Debug, Default)]
struct Table {
    by_user: HashMap<String, Held>,
    by_port: HashMap<u16, String>,
    releases: u64,
    /// Ports another process held when the core tried them.
    blocked: HashSet<u16>,
}

/// The file's content.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    range: String,
    ports: Vec<SavedPort>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedPort {
    id: String,
    port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    released: Option<u64>,
}

/// The users' ports on this node.
#[derive(Debug)]
pub struct PortMap {
    range: PortRange,
    /// Where the assignments are kept; `None`: in memory only (tests).
    path: Option<PathBuf>,
    table: Mutex<Table>,
}

impl PortMap {
    /// Assignments kept in memory only.
    pub fn in_memory(range: PortRange) -> Self {
        Self {
            range,
            path: None,
            table: Mutex::new(Table::default()),
        }
    }

    /// Assignments kept in `state_dir`/[`FILE_NAME`], read now if the file
    /// exists (those outside `range` are dropped).
    pub fn open(range: PortRange, state_dir: &Path) -> Result<Self, PortError> {
        let path = state_dir.join(FILE_NAME);
        let file_error = |reason: String| PortError::File {
            path: path.clone(),
            reason,
        };
        let mut table = Table::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let saved: Saved =
                    serde_json::from_slice(&bytes).map_err(|e| file_error(e.to_string()))?;
                for p in saved.ports {
                    if !range.contains(p.port) || table.by_port.contains_key(&p.port) {
                        continue;
                    }
                    table.releases = table.releases.max(p.released.unwrap_or(0));
                    table.by_port.insert(p.port, p.id.clone());
                    table.by_user.insert(
                        p.id,
                        Held {
                            port: p.port,
                            released: p.released,
                        },
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(e.to_string())),
        }
        Ok(Self {
            range,
            path: Some(path),
            table: Mutex::new(table),
        })
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    /// The port `user_id` holds (or held, if released), if any.
    pub fn get(&self, user_id: &str) -> Option<u16> {
        self.lock().by_user.get(user_id).map(|h| h.port)
    }

    /// Who holds (or held) `port`.
    pub fn owner(&self, port: u16) -> Option<String> {
        self.lock().by_port.get(&port).cloned()
    }

    /// The users (enabled or released) whose port is not their home port:
    /// what the manager cannot compute itself. Few unless the range is
    /// crowded.
    pub fn exceptions(&self) -> BTreeMap<String, u16> {
        let range = self.range;
        self.lock()
            .by_user
            .iter()
            .filter(|(id, h)| range.home(id) != h.port)
            .map(|(id, h)| (id.clone(), h.port))
            .collect()
    }

    /// Sets, on every description with a port range, the users away from
    /// their home port ([`PortMap::exceptions`]).
    pub fn describe(&self, inbounds: &mut [crate::wire::InboundDescription]) {
        let exceptions = self.exceptions();
        for inbound in inbounds.iter_mut().filter(|i| i.port_range.is_some()) {
            inbound.user_ports = exceptions.clone();
        }
    }

    /// The ports of the users among `ids` that have one.
    pub fn ports_of<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u16> {
        ids.into_iter()
            .filter_map(|id| Some((id.to_owned(), self.get(id)?)))
            .collect()
    }

    /// `user_id`'s port, assigned now (and saved) if it has none; taking
    /// it back from release if it was released.
    pub fn assign(&self, user_id: &str) -> Result<u16, PortError> {
        let mut table = self.lock();
        if let Some(held) = table.by_user.get_mut(user_id) {
            let port = held.port;
            if held.released.take().is_some() {
                self.save(&table)?;
            }
            return Ok(port);
        }
        let port = self.take_free_port(&mut table, user_id)?;
        self.save(&table)?;
        Ok(port)
    }

    /// Blocks `user_id`'s port (another process holds it: the core could
    /// not bind it) and gives the user the next free one, saved: what
    /// [`PortMap::exceptions`] reports from then on. A user without a
    /// port gets one as with [`PortMap::assign`].
    ///
    /// # Errors
    /// [`PortError::Full`] when no unblocked port is left.
    pub fn move_away(&self, user_id: &str) -> Result<u16, PortError> {
        let mut table = self.lock();
        if let Some(held) = table.by_user.remove(user_id) {
            table.by_port.remove(&held.port);
            table.blocked.insert(held.port);
        }
        let port = self.take_free_port(&mut table, user_id)?;
        self.save(&table)?;
        Ok(port)
    }

    /// Gives `user_id` (who holds no port) [`PortMap::free_port`], taking it
    /// from the released user who held it, if one did.
    fn take_free_port(&self, table: &mut Table, user_id: &str) -> Result<u16, PortError> {
        let port = self.free_port(table, user_id)?;
        if let Some(previous) = table.by_port.insert(port, user_id.to_owned()) {
            table.by_user.remove(&previous);
        }
        table.by_user.insert(
            user_id.to_owned(),
            Held {
                port,
                released: None,
            },
        );
        Ok(port)
    }

    /// Marks `user_id`'s port released: kept for the user, given away only
    /// when the range has no never-held port left.
    pub fn release(&self, user_id: &str) -> Result<(), PortError> {
        let mut table = self.lock();
        table.releases += 1;
        let order = table.releases;
        let Some(held) = table.by_user.get_mut(user_id) else {
            return Ok(());
        };
        if held.released.is_some() {
            return Ok(());
        }
        held.released = Some(order);
        self.save(&table)
    }

    /// The first never-held unblocked port from the user's home upwards,
    /// else the longest-released unblocked one.
    fn free_port(&self, table: &Table, user_id: &str) -> Result<u16, PortError> {
        let range = self.range;
        let home = u32::from(range.home(user_id) - range.start);
        for i in 0..range.size() {
            let offset = (home + i) % range.size();
            let port = range.start + u16::try_from(offset).expect("offset < size");
            if !table.by_port.contains_key(&port) && !table.blocked.contains(&port) {
                return Ok(port);
            }
        }
        table
            .by_user
            .values()
            .filter(|h| !table.blocked.contains(&h.port))
            .filter_map(|h| h.released.map(|order| (order, h.port)))
            .min()
            .map(|(_, port)| port)
            .ok_or(PortError::Full(range))
    }

    /// Writes the assignments atomically (0600: user ids are half of what
    /// opens a user's node list).
    fn save(&self, table: &Table) -> Result<(), PortError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file_error = |reason: String| PortError::File {
            path: path.clone(),
            reason,
        };
        let mut ports: Vec<SavedPort> = table
            .by_user
            .iter()
            .map(|(id, h)| SavedPort {
                id: id.clone(),
                port: h.port,
                released: h.released,
            })
            .collect();
        ports.sort_by_key(|p| p.port);
        let saved = Saved {
            range: self.range.to_string(),
            ports,
        };
        let bytes = serde_json::to_vec(&saved).map_err(|e| file_error(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| file_error(e.to_string()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".ss-ports-")
            .tempfile_in(dir)
            .map_err(|e| file_error(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
                .map_err(|e| file_error(e.to_string()))?;
        }
        std::fs::write(tmp.path(), &bytes).map_err(|e| file_error(e.to_string()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| file_error(e.to_string()))?;
        tmp.persist(path).map_err(|e| file_error(e.to_string()))?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "ports_tests.rs"]
mod tests;
