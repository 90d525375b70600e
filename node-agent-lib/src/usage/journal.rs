//! The usage journal: the durable, sequence-numbered file of usage batches in
//! the agent's state directory.
//!
//! # Format
//!
//! One file, `usage.journal`: a sequence of records, each `len: u32 LE`,
//! `crc32(body): u32 LE`, then `len` bytes of JSON body. The first record is
//! the header (`{"header":{"journal":ID,"lastSeq":N}}`: the journal's id,
//! made when the file is created, and the sequence number just before the
//! file's first batch, or the last assigned when it holds none, so numbers
//! never repeat after old batches are reclaimed); every other record is one batch
//! (`{"batch":{…wire::UsageBatch…}}`). A record that is cut short or fails
//! its CRC at the end of the file is what a crash in the middle of an append
//! leaves: it is dropped at open. The same thing anywhere else is corruption
//! and refuses to open (nothing is thrown away silently).
//!
//! Memory holds an index (sequence numbers and file offsets), never the
//! batches themselves, so 720 batches of 100,000 users cost a few KiB.
//!
//! # Delivery, confirmation, merging
//!
//! See the crate's design: `D`, the highest sequence number ever delivered
//! by [`Journal::after`] (in memory; at open the highest in the file, since
//! any of them may have been delivered before a restart), guards merging: only
//! batches with `first_seq > D` are merged, so no answer ever straddles the
//! manager's cursor. A pull naming this journal with `after = N` confirms
//! `N`: batches up to it leave the index at once and the file lazily (rewritten
//! to a temporary file, synced, renamed over, the directory synced) once
//! they take more room than the live ones.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::lifetime::{self, LifetimeTotals};
use super::record::{
    self, BatchRef, Header, Record, RecordRef, encode, sync_dir, write_file_atomically,
};
pub use super::record::{FILE_NAME, JournalError, Result};
use super::sums::UserSums;
use crate::client::USAGE_PAGE_BYTES;
use crate::wire::{UsageBatch, UsageResponse, UserUsage};

/// Where one batch lives in the file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    first_seq: u64,
    seq: u64,
    offset: u64,
    /// Whole record, head included.
    len: u64,
}

/// The open journal. Its methods block on file I/O (and `fsync`): call them
/// from a blocking context (`spawn_blocking`).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    id: String,
    /// Batches not yet confirmed, in sequence order.
    index: Vec<Entry>,
    /// The highest sequence number ever assigned.
    last_seq: u64,
    /// The highest sequence number ever delivered (see the module docs).
    delivered: u64,
    /// Where the next record goes (everything before it is valid).
    end: u64,
    /// Bytes of confirmed batches still in the file.
    dead: u64,
    /// An append failed part-way: cut the file back to `end` before the next write.
    dirty_tail: bool,
    max_batches: usize,
    /// Tests: the next append fails as a full disk would.
    #[cfg(test)]
    pub(crate) fail_next_append: bool,
    /// Tests: the next rewrite fails before touching the file.
    #[cfg(test)]
    pub(crate) fail_next_rewrite: bool,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing, with a new id),
    /// dropping a torn last record. Never-delivered batches beyond
    /// `max_batches` (at least 1) are merged on append.
    pub fn open(dir: &Path, max_batches: usize) -> Result<Journal> {
        let path = dir.join(FILE_NAME);
        let io_err = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        if !path.exists() {
            let header = Header {
                journal: uuid::Uuid::new_v4().to_string(),
                last_seq: 0,
                forgotten: Vec::new(),
            };
            let header = encode(&Record::Header(header))?;
            write_file_atomically(dir, &path, |out| out.write_all(&header))?;
            sync_dir(dir).map_err(io_err)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        let mut journal = Journal {
            dir: dir.to_owned(),
            path,
            file,
            id: String::new(),
            index: Vec::new(),
            last_seq: 0,
            delivered: 0,
            end: 0,
            dead: 0,
            dirty_tail: false,
            max_batches: max_batches.max(1),
            #[cfg(test)]
            fail_next_append: false,
            #[cfg(test)]
            fail_next_rewrite: false,
        };
        journal.load()?;
        Ok(journal)
    }

    /// Reads the file into the index; cuts a torn tail.
    fn load(&mut self) -> Result<()> {
        let size = self.file.metadata().map_err(|e| self.io(e))?.len();
        let (header, header_len) = match self.read_record(0, size)? {
            Some((Record::Header(h), len)) => (h, len),
            Some((Record::Batch(_), _)) | None => {
                return Err(self.corrupt(0, "no header record"));
            }
        };
        self.id = header.journal;
        self.last_seq = header.last_seq;
        self.index.clear();
        let mut offset = header_len;
        while offset < size {
            match self.read_record(offset, size) {
                Ok(Some((Record::Batch(b), len))) => {
                    if b.first_seq <= self.last_seq || b.seq < b.first_seq {
                        return Err(self.corrupt(offset, "sequence numbers out of order"));
                    }
                    self.last_seq = b.seq;
                    self.index.push(Entry {
                        first_seq: b.first_seq,
                        seq: b.seq,
                        offset,
                        len,
                    });
                    offset += len;
                }
                Ok(Some((Record::Header(_), _))) => {
                    return Err(self.corrupt(offset, "a second header"));
                }
                // Cut short or failing its check: torn if nothing follows it.
                Ok(None) | Err(JournalError::Corrupt { .. })
                    if self.is_last_record(offset, size)? =>
                {
                    tracing::warn!(
                        path = %self.path.display(),
                        offset,
                        dropped_bytes = size - offset,
                        "usage journal: dropping a torn last record"
                    );
                    self.file.set_len(offset).map_err(|e| self.io(e))?;
                    self.file.sync_all().map_err(|e| self.io(e))?;
                    break;
                }
                Ok(None) => return Err(self.corrupt(offset, "record cut short")),
                Err(e) => return Err(e),
            }
        }
        self.end = offset.min(size);
        self.delivered = self.last_seq;
        self.dead = 0;
        Ok(())
    }

    /// Whether the record at `offset` is the file's last (see [`record::is_last_record`]).
    fn is_last_record(&self, offset: u64, size: u64) -> Result<bool> {
        record::is_last_record(&self.file, &self.path, offset, size)
    }

    /// The record at `offset` and its whole length (see [`record::read_record`]).
    fn read_record(&self, offset: u64, size: u64) -> Result<Option<(Record, u64)>> {
        record::read_record(&self.file, &self.path, offset, size)
    }

    fn read_batch(&self, entry: &Entry) -> Result<UsageBatch> {
        match self.read_record(entry.offset, entry.offset + entry.len)? {
            Some((Record::Batch(b), _)) => Ok(b),
            _ => Err(self.corrupt(entry.offset, "indexed batch is not a batch")),
        }
    }

    /// The journal's id, made when the file was created.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many batches the journal holds (not yet confirmed).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether it holds no batch.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The file's size in bytes (confirmed batches not yet reclaimed included).
    pub fn bytes(&self) -> u64 {
        self.end
    }

    /// The highest sequence number ever assigned (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Appends the deltas read between `from` and `to` (unix seconds) as the
    /// next batch, written and synced before it returns its sequence number.
    /// No users: no batch (`None`). On error nothing was added (a part
    /// written is cut off before the next write).
    pub fn append(&mut self, from: i64, to: i64, users: &[UserUsage]) -> Result<Option<u64>> {
        self.append_users(from, to, users, users.is_empty())
    }

    /// As [`Self::append`], from the collector's sums (written as they are,
    /// without a `String` per user or the record in memory).
    pub fn append_sums(&mut self, from: i64, to: i64, users: &UserSums) -> Result<Option<u64>> {
        self.append_users(from, to, users, users.is_empty())
    }

    fn append_users<U: Serialize + ?Sized>(
        &mut self,
        from: i64,
        to: i64,
        users: &U,
        empty: bool,
    ) -> Result<Option<u64>> {
        if empty {
            return Ok(None);
        }
        let seq = self.last_seq + 1;
        let batch = BatchRef {
            first_seq: seq,
            seq,
            from,
            to,
            users,
        };
        let record = RecordRef::Batch(batch);
        if self.dirty_tail {
            self.file.set_len(self.end).map_err(|e| self.io(e))?;
            self.dirty_tail = false;
        }
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_append) {
            // Tests: part of the record reaches the file, as on a full disk.
            let record = encode(&record)?;
            let _ = self
                .file
                .write_all_at(&record[..record.len() / 2], self.end);
            self.dirty_tail = true;
            return Err(self.io(io::Error::other("no space left on device")));
        }
        let written = record::write_at(&self.file, &self.path, self.end, &record)
            .and_then(|len| self.file.sync_data().map(|()| len).map_err(|e| self.io(e)));
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                self.dirty_tail = true;
                return Err(e);
            }
        };
        self.index.push(Entry {
            first_seq: seq,
            seq,
            offset: self.end,
            len,
        });
        self.end += len;
        self.last_seq = seq;
        let undelivered = self.undelivered_start();
        // The batch is on disk: a failed merge must not make the caller
        // append it again. The journal stays over its cap until one works.
        if self.index.len() - undelivered > self.max_batches
            && let Err(e) = self.merge_oldest_undelivered(undelivered)
        {
            tracing::error!(error = %e, "usage journal: merging failed; the journal stays over its cap");
        }
        Ok(Some(seq))
    }

    /// Index of the first never-delivered batch.
    fn undelivered_start(&self) -> usize {
        self.index
            .partition_point(|e| e.first_seq <= self.delivered)
    }

    /// Merges the oldest never-delivered batches so that at most half of
    /// `max_batches` (plus the merged one) remain, so a full journal is
    /// rewritten once per `max_batches / 2` appends, not at every one.
    fn merge_oldest_undelivered(&mut self, start: usize) -> Result<()> {
        let keep = self.max_batches / 2;
        let count = self.index.len() - start - keep;
        if count < 2 {
            return Ok(());
        }
        let group = &self.index[start..start + count];
        let mut sums: HashMap<String, (u64, u64)> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let (mut from, mut to) = (i64::MAX, i64::MIN);
        for entry in group {
            let batch = self.read_batch(entry)?;
            from = from.min(batch.from);
            to = to.max(batch.to);
            for u in batch.users {
                let slot = sums.entry(u.id.clone()).or_insert_with(|| {
                    order.push(u.id.clone());
                    (0, 0)
                });
                slot.0 = slot.0.saturating_add(u.up);
                slot.1 = slot.1.saturating_add(u.down);
            }
        }
        let merged = UsageBatch {
            first_seq: group[0].first_seq,
            seq: group[count - 1].seq,
            from,
            to,
            users: order
                .into_iter()
                .map(|id| {
                    let (up, down) = sums[&id];
                    UserUsage { id, up, down }
                })
                .collect(),
        };
        tracing::info!(
            first_seq = merged.first_seq,
            seq = merged.seq,
            batches = count,
            "usage journal: merging never-delivered batches (the manager is away)"
        );
        self.rewrite(Some((start, count, merged)))
    }

    /// The batches after `after` when `journal` names this journal, else
    /// from the first; at most `max` (at least 1), and no more once they
    /// reach [`USAGE_PAGE_BYTES`] (the first always comes), so an answer fits
    /// the client's cap. Naming this journal also confirms `after`: batches
    /// up to it are forgotten.
    pub fn after(
        &mut self,
        journal: Option<&str>,
        after: u64,
        max: usize,
    ) -> Result<UsageResponse> {
        let (start, stop) = self.page(journal, after, max)?;
        let mut batches = Vec::with_capacity(stop - start);
        for entry in &self.index[start..stop] {
            batches.push(self.read_batch(entry)?);
        }
        self.delivered_up_to(stop);
        Ok(UsageResponse {
            journal: self.id.clone(),
            batches,
            more: stop < self.index.len(),
        })
    }

    /// As [`Self::after`], the answer's JSON (as `UsageResponse`
    /// serialises) made from the batches' records as the file holds them:
    /// one buffer of the page's size, no batch parsed or copied twice.
    pub fn after_json(&mut self, journal: Option<&str>, after: u64, max: usize) -> Result<Vec<u8>> {
        let (start, stop) = self.page(journal, after, max)?;
        let entries = &self.index[start..stop];
        let batches: u64 = entries.iter().map(|e| e.len).sum();
        let mut out = Vec::with_capacity(batches as usize + self.id.len() + 64);
        out.extend_from_slice(br#"{"journal":"#);
        serde_json::to_writer(&mut out, &self.id).expect("a string serialises");
        out.extend_from_slice(br#","batches":["#);
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            record::append_batch_json(&self.file, &self.path, entry.offset, entry.len, &mut out)?;
        }
        let more = stop < self.index.len();
        out.extend_from_slice(if more {
            br#"],"more":true}"#.as_slice()
        } else {
            br#"],"more":false}"#.as_slice()
        });
        self.delivered_up_to(stop);
        Ok(out)
    }

    /// The index range `start..stop` of the page after `after` (see
    /// [`Self::after`]), confirming `after` when `journal` is this one.
    fn page(&mut self, journal: Option<&str>, after: u64, max: usize) -> Result<(usize, usize)> {
        let ours = journal == Some(self.id.as_str());
        if ours {
            self.confirm(after)?;
            if after > self.last_seq {
                self.continue_after(after)?;
            }
        }
        let floor = if ours { after } else { 0 };
        let start = self.index.partition_point(|e| e.seq <= floor);
        let mut stop = start;
        let mut bytes = 0;
        while stop < self.index.len()
            && stop - start < max.max(1)
            && (stop == start || bytes + self.index[stop].len <= USAGE_PAGE_BYTES)
        {
            bytes += self.index[stop].len;
            stop += 1;
        }
        Ok((start, stop))
    }

    /// The batches before index `stop` were answered.
    fn delivered_up_to(&mut self, stop: usize) {
        if let Some(last) = stop.checked_sub(1).map(|i| self.index[i]) {
            self.delivered = self.delivered.max(last.seq);
        }
    }

    /// The manager stored up to `seq`, a number this journal never reached:
    /// its file was restored from an older backup. Every batch it holds is
    /// stored already (confirmed just before), and numbering goes on after
    /// `seq`, written to disk before the pull is answered, so no new batch
    /// falls at or below the manager's cursor (where it would be skipped).
    fn continue_after(&mut self, seq: u64) -> Result<()> {
        tracing::warn!(
            after = seq,
            last_seq = self.last_seq,
            "usage journal: the manager stored up to a sequence number this journal never reached (restored from a backup?); numbering goes on after it"
        );
        let last = std::mem::replace(&mut self.last_seq, seq);
        self.rewrite(None).inspect_err(|_| self.last_seq = last)
    }

    /// Forgets batches up to `seq`; rewrites the file once they outweigh the rest.
    fn confirm(&mut self, seq: u64) -> Result<()> {
        let gone = self.index.partition_point(|e| e.seq <= seq);
        if gone == 0 {
            return Ok(());
        }
        self.dead += self.index.drain(..gone).map(|e| e.len).sum::<u64>();
        if self.dead >= self.end - self.dead {
            self.rewrite(None)?;
        }
        Ok(())
    }

    /// Writes a new file holding the header and the indexed batches (those
    /// `count` from `start` replaced by `merged`), then swaps it in. Records
    /// are copied one at a time: memory holds one batch, not the file.
    fn rewrite(&mut self, merge: Option<(usize, usize, UsageBatch)>) -> Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_rewrite) {
            return Err(self.io(io::Error::other("no space left on device")));
        }
        let (merge_at, merge_count, mut merged) = match merge {
            Some((start, count, batch)) => (start, count, Some(batch)),
            None => (usize::MAX, 0, None),
        };
        // The header names the number before the first batch kept, or the
        // last assigned when none is, so numbers never repeat; and what was
        // forgotten so far plus the confirmed batches this rewrite drops
        // (all before the first kept one), so the new file keeps the same
        // lifetime totals as the old one.
        let kept_from = self.index.first().map_or(self.end, |e| e.offset);
        let header = Header {
            journal: self.id.clone(),
            last_seq: self
                .index
                .first()
                .map_or(self.last_seq, |e| e.first_seq - 1),
            forgotten: lifetime::forgotten_after_dropping(&self.file, &self.path, kept_from)?,
        };
        let header = encode(&Record::Header(header))?;
        let this = &*self;
        let file = write_file_atomically(&this.dir, &this.path, |out| {
            out.write_all(&header)?;
            let mut i = 0;
            while i < this.index.len() {
                if i == merge_at
                    && let Some(batch) = merged.take()
                {
                    out.write_all(&encode(&Record::Batch(batch)).map_err(io::Error::other)?)?;
                    i += merge_count;
                    continue;
                }
                let entry = this.index[i];
                let mut raw = vec![0u8; entry.len as usize];
                this.file.read_exact_at(&mut raw, entry.offset)?;
                out.write_all(&raw)?;
                i += 1;
            }
            Ok(())
        })?;
        // From here on the new file is the journal, whatever fails next.
        self.file = file;
        self.dirty_tail = false;
        let delivered = self.delivered;
        let loaded = self.load();
        self.delivered = delivered;
        loaded?;
        sync_dir(&self.dir).map_err(|e| self.io(e))
    }

    /// Everything ever read into this journal, per user: the forgotten
    /// (confirmed and reclaimed) totals and the batches the file holds. Reads
    /// the file; see [`lifetime::read_lifetime_totals`] for a journal another
    /// process holds open.
    pub fn lifetime_totals(&self) -> Result<LifetimeTotals> {
        lifetime::scan(&self.file, &self.path, self.end)
    }

    fn io(&self, source: io::Error) -> JournalError {
        JournalError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, offset: u64, reason: impl Into<String>) -> JournalError {
        record::corrupt(&self.path, offset, reason)
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
