//! The journal's lifetime totals: per user, everything ever read from the
//! core into one journal (one journal id), confirmed or not.
//!
//! The journal forgets the batches the manager confirmed; before a rewrite
//! drops them from the file, their sums are added to the `forgotten` totals
//! in the new file's header, written and synced with it (the same atomic
//! replacement), so at every moment — a SIGKILL included — the file's
//! header totals plus the batches it holds are everything read. Appends
//! never touch the header: their cost is unchanged.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;

use super::record::{self, FILE_NAME, JournalError, Record, Result};
use crate::wire::UserUsage;

/// Bytes per user id: `(up, down)`.
pub type UserTotals = BTreeMap<String, (u64, u64)>;

/// What one journal file says was ever read from the core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifetimeTotals {
    /// The journal's id (a new one for a new state directory).
    pub journal: String,
    /// The highest sequence number assigned (0: none): a manager whose
    /// cursor names this journal and this number has pulled everything.
    pub last_seq: u64,
    /// Confirmed by the manager and reclaimed from the file.
    pub forgotten: UserTotals,
    /// The batches the file still holds (confirmed but not yet reclaimed
    /// ones included).
    pub outstanding: UserTotals,
}

impl LifetimeTotals {
    /// `forgotten + outstanding`: everything read under this journal id.
    pub fn all(&self) -> UserTotals {
        let mut all = self.forgotten.clone();
        for (id, &(up, down)) in &self.outstanding {
            add(&mut all, id, up, down);
        }
        all
    }
}

/// Reads the lifetime totals of the journal in `state_dir` without opening
/// it for writing (safe while an agent holds it: an append in progress at
/// the end is left out, as it is not taken yet). `None`: no journal there.
/// A file damaged before its last record is an error, as at open; so is a
/// file the agent cuts while it is read (read again).
pub fn read_lifetime_totals(state_dir: &Path) -> Result<Option<LifetimeTotals>> {
    let path = state_dir.join(FILE_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(JournalError::Io { path, source }),
    };
    let size = file
        .metadata()
        .map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?
        .len();
    scan(&file, &path, size).map(Some)
}

fn add(totals: &mut UserTotals, id: &str, up: u64, down: u64) {
    let slot = totals.entry(id.to_owned()).or_default();
    slot.0 = slot.0.saturating_add(up);
    slot.1 = slot.1.saturating_add(down);
}

fn add_users(totals: &mut UserTotals, users: &[UserUsage]) {
    for u in users {
        add(totals, &u.id, u.up, u.down);
    }
}

/// The header's forgotten totals and its record's length.
fn header(file: &File, path: &Path, size: u64) -> Result<(LifetimeTotals, u64)> {
    match record::read_record(file, path, 0, size)? {
        Some((Record::Header(h), len)) => {
            let mut forgotten = UserTotals::new();
            add_users(&mut forgotten, &h.forgotten);
            let totals = LifetimeTotals {
                journal: h.journal,
                last_seq: h.last_seq,
                forgotten,
                outstanding: UserTotals::new(),
            };
            Ok((totals, len))
        }
        Some((Record::Batch(_), _)) | None => Err(record::corrupt(path, 0, "no header record")),
    }
}

/// The totals of the first `size` bytes of `file`; a torn last record is
/// left out (not cut: the file is not ours to change).
pub(super) fn scan(file: &File, path: &Path, size: u64) -> Result<LifetimeTotals> {
    let (mut totals, mut offset) = header(file, path, size)?;
    while offset < size {
        match record::read_record(file, path, offset, size) {
            Ok(Some((Record::Batch(b), len))) => {
                add_users(&mut totals.outstanding, &b.users);
                totals.last_seq = totals.last_seq.max(b.seq);
                offset += len;
            }
            Ok(Some((Record::Header(_), _))) => {
                return Err(record::corrupt(path, offset, "a second header"));
            }
            Ok(None) | Err(JournalError::Corrupt { .. })
                if record::is_last_record(file, path, offset, size)? =>
            {
                break;
            }
            Ok(None) => return Err(record::corrupt(path, offset, "record cut short")),
            Err(e) => return Err(e),
        }
    }
    Ok(totals)
}

/// The forgotten totals for a rewrite that drops every batch before byte
/// `kept_from` (the confirmed ones): the header's, plus theirs.
pub(super) fn forgotten_after_dropping(
    file: &File,
    path: &Path,
    kept_from: u64,
) -> Result<Vec<UserUsage>> {
    let (totals, mut offset) = header(file, path, kept_from)?;
    let mut forgotten = totals.forgotten;
    while offset < kept_from {
        match record::read_record(file, path, offset, kept_from)? {
            Some((Record::Batch(b), len)) => {
                add_users(&mut forgotten, &b.users);
                offset += len;
            }
            _ => {
                return Err(record::corrupt(
                    path,
                    offset,
                    "a dropped batch is not a batch",
                ));
            }
        }
    }
    Ok(forgotten
        .into_iter()
        .map(|(id, (up, down))| UserUsage { id, up, down })
        .collect())
}
