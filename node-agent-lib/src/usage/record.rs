//! The journal's on-disk records: `len: u32 LE`, `crc32(body): u32 LE`, then
//! `len` bytes of JSON (see the journal's format), and the atomic
//! replacement of the whole file.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::wire::{UsageBatch, UserUsage};

/// The journal's file name inside the state directory.
pub const FILE_NAME: &str = "usage.journal";
/// The journal could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("usage journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("usage journal {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// The result of journal operations.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// Bytes before each record's body: length and CRC32.
pub(super) const RECORD_HEAD: usize = 8;
/// A record longer than this is corruption, not data (a batch of a million
/// users is well under it).
pub(super) const MAX_RECORD: u32 = 1 << 30;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Record {
    Header(Header),
    Batch(UsageBatch),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Header {
    pub(super) journal: String,
    pub(super) last_seq: u64,
    /// Per user, the sum of every batch confirmed and reclaimed from the
    /// file (written at each rewrite, with the batches it drops). Absent in
    /// files from before it existed: nothing forgotten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) forgotten: Vec<UserUsage>,
}

/// A batch record written from borrowed users (the same JSON as
/// `Record::Batch`; `U` serialises as `[UserUsage]` does), so the caller
/// keeps them if the write fails.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum RecordRef<'a, U: Serialize + ?Sized> {
    Batch(BatchRef<'a, U>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchRef<'a, U: Serialize + ?Sized> {
    pub(super) first_seq: u64,
    pub(super) seq: u64,
    pub(super) from: i64,
    pub(super) to: i64,
    pub(super) users: &'a U,
}

pub(super) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: reason.into(),
    }
}

/// Whether the record at `offset` is the file's last (its declared length
/// reaches the end, `size`, or cannot even be read).
pub(super) fn is_last_record(file: &File, path: &Path, offset: u64, size: u64) -> Result<bool> {
    if size - offset < RECORD_HEAD as u64 {
        return Ok(true);
    }
    let mut head = [0u8; RECORD_HEAD];
    file.read_exact_at(&mut head, offset)
        .map_err(|source| JournalError::Io {
            path: path.to_owned(),
            source,
        })?;
    let len = u64::from(u32::from_le_bytes(head[..4].try_into().expect("4 bytes")));
    Ok(offset + RECORD_HEAD as u64 + len >= size)
}

/// The record at `offset` of `file` (named `path` in errors) and its whole
/// length; `None` when the file (`size` bytes) ends inside it; `Corrupt`
/// when it fails its CRC or does not parse.
pub(super) fn read_record(
    file: &File,
    path: &Path,
    offset: u64,
    size: u64,
) -> Result<Option<(Record, u64)>> {
    let io_err = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    if size.saturating_sub(offset) < RECORD_HEAD as u64 {
        return Ok(None);
    }
    let mut head = [0u8; RECORD_HEAD];
    file.read_exact_at(&mut head, offset).map_err(io_err)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Err(corrupt(path, offset, format!("record length {len}")));
    }
    let whole = RECORD_HEAD as u64 + u64::from(len);
    if size - offset < whole {
        return Ok(None);
    }
    let mut body = vec![0u8; len as usize];
    file.read_exact_at(&mut body, offset + RECORD_HEAD as u64)
        .map_err(io_err)?;
    if crc32fast::hash(&body) != crc {
        return Err(corrupt(path, offset, "CRC mismatch"));
    }
    let record = serde_json::from_slice(&body)
        .map_err(|e| corrupt(path, offset, format!("invalid record: {e}")))?;
    Ok(Some((record, whole)))
}

/// How a batch record's body starts: `{"batch":` then the batch's JSON.
const BATCH_OPENING: &[u8] = br#"{"batch":"#;

/// Appends to `out` the JSON of the batch record at `offset` (`len` bytes,
/// head included) as `wire::UsageBatch` serialises: the body read straight
/// into `out`, checked against its CRC, its `{"batch":…}` wrapper taken
/// off. No copy of the batch is made and none parsed.
pub(super) fn append_batch_json(
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
    out: &mut Vec<u8>,
) -> Result<()> {
    let io_err = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let mut head = [0u8; RECORD_HEAD];
    file.read_exact_at(&mut head, offset).map_err(io_err)?;
    let body_len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if u64::from(body_len) + RECORD_HEAD as u64 != len {
        return Err(corrupt(path, offset, "indexed batch changed length"));
    }
    let start = out.len();
    out.resize(start + body_len as usize, 0);
    file.read_exact_at(&mut out[start..], offset + RECORD_HEAD as u64)
        .map_err(io_err)?;
    let body = &out[start..];
    if crc32fast::hash(body) != crc {
        out.truncate(start);
        return Err(corrupt(path, offset, "CRC mismatch"));
    }
    if !body.starts_with(BATCH_OPENING) || body.last() != Some(&b'}') {
        out.truncate(start);
        return Err(corrupt(path, offset, "indexed batch is not a batch"));
    }
    out.pop();
    out.drain(start..start + BATCH_OPENING.len());
    Ok(())
}

/// The whole record: the body is written after room for its head, then the
/// head filled in, so a batch of 100,000 users is in memory once, not twice.
pub(super) fn encode(record: &impl Serialize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; RECORD_HEAD];
    serde_json::to_writer(&mut out, record).expect("a record always serialises");
    let body = &out[RECORD_HEAD..];
    let len = record_len(body.len() as u64)?;
    let crc = crc32fast::hash(body);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..RECORD_HEAD].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Writes `record` at `offset` of `file` (named `path` in errors) as
/// [`encode`] lays it out, without holding it in memory: a first pass
/// sizes the body and sums its CRC, a second writes it (serialising twice
/// costs less than a buffer of 100,000 users' JSON, which the allocator
/// keeps). Not synced. Gives the record's whole length.
pub(super) fn write_at(
    file: &File,
    path: &Path,
    offset: u64,
    record: &impl Serialize,
) -> Result<u64> {
    let io_err = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let mut sized = Sizer::default();
    serde_json::to_writer(&mut sized, record).map_err(|e| io_err(e.into()))?;
    let len = record_len(sized.len)?;
    let mut head = [0u8; RECORD_HEAD];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&sized.crc.finalize().to_le_bytes());
    file.write_all_at(&head, offset).map_err(io_err)?;
    let body_at = offset + RECORD_HEAD as u64;
    let mut out = io::BufWriter::with_capacity(
        64 * 1024,
        WriteAt {
            file,
            offset: body_at,
        },
    );
    serde_json::to_writer(&mut out, record).map_err(|e| io_err(e.into()))?;
    let written = out.into_inner().map_err(|e| io_err(e.into_error()))?.offset - body_at;
    if written != sized.len {
        return Err(io_err(io::Error::other(
            "a record serialised to different lengths",
        )));
    }
    Ok(RECORD_HEAD as u64 + written)
}

/// A body's length as its head holds it, or the error for one too large.
fn record_len(len: u64) -> Result<u32> {
    u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_RECORD)
        .ok_or_else(|| JournalError::Io {
            path: PathBuf::from(FILE_NAME),
            source: io::Error::new(io::ErrorKind::InvalidInput, "batch too large"),
        })
}

/// Counts what is written and sums its CRC.
#[derive(Default)]
struct Sizer {
    len: u64,
    crc: crc32fast::Hasher,
}

impl Write for Sizer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.len += buf.len() as u64;
        self.crc.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes at an offset of a file, moving on as it writes.
struct WriteAt<'a> {
    file: &'a File,
    offset: u64,
}

impl Write for WriteAt<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Replaces `path` with what `fill` writes: a temporary file, synced,
/// renamed over, so a crash leaves the old file or the new one. Gives the
/// new file, open for reading and writing (no window where it cannot be
/// opened again); the caller then syncs the directory ([`sync_dir`]).
pub(super) fn write_file_atomically(
    dir: &Path,
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<File> {
    let io_err = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".usage.journal.")
        .tempfile_in(dir)
        .map_err(io_err)?;
    {
        let mut out = io::BufWriter::new(tmp.as_file_mut());
        fill(&mut out).map_err(io_err)?;
        out.flush().map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))
}

/// Makes a rename in `dir` durable: until then a crash may bring the old
/// file back (and lose what was appended to the new one).
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
