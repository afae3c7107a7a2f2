//! The receiver's durable record of a target: which source it holds chunks
//! of, which chunks (the per-chunk log, see [`crate::transfer::ChunkLog`]),
//! and from which chunk on it still reads as zeros because nothing was
//! written there since it was known to.
//!
//! One record per target (named by a hash of the target's path), not per
//! source: it describes what the target holds, so a stream from another
//! source starts it afresh instead of leaving a stale record behind that a
//! later stream could trust.
//!
//! A path names a place, not a target: the record also holds what the
//! target *is* ([`TargetIdentity`]: a file's device, inode and birth time,
//! a block device's serial or WWN names, an RBD image's id) and the mark
//! written into it when the record began. Another target under the same
//! path does not match, and its record starts afresh.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::Hello;
use crate::transfer::digest::{chunk_count, to_hex};
use crate::transfer::log::FileChunkLog;
use crate::transfer::{ChunkLog, Result, TransferError};

/// The record's format (1 had no target identity: such a record is never
/// resumed).
const FORMAT: u32 = 2;

/// What a target is, beyond the path it was reached by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetIdentity {
    /// What tells this target from any other under the same path: a
    /// file's device, inode and birth time; a block device's
    /// `/dev/disk/by-id` names (serial, WWN) or else its device numbers and
    /// size; an RBD image's id.
    pub what: String,
    /// The token the record wrote into the target's own metadata when it
    /// began (a file's extended attribute), where the target takes one: a
    /// new target under the same path lacks it.
    pub mark: Option<String>,
}

/// What the record says besides the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Meta {
    format: u32,
    /// The target's path, as the receiver was given it.
    target: String,
    /// The source whose chunks the log lists ([`Hello::identity`]).
    identity: String,
    /// What the target is ([`TargetIdentity`]).
    target_identity: TargetIdentity,
    size: u64,
    /// Chunks from this index on read as zeros: nothing was written there
    /// since the target was known to (the chunk count when it never was).
    zero_from: u64,
}

/// The record of one target.
pub struct State {
    meta_path: PathBuf,
    meta: Meta,
    /// The per-chunk log.
    pub log: FileChunkLog,
}

fn io_error(op: &'static str, path: &Path, error: std::io::Error) -> TransferError {
    TransferError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

/// The files of the record of `target` under `dir`: (meta, log).
pub fn state_paths(dir: &Path, target: &Path) -> (PathBuf, PathBuf) {
    let abs = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    let key = to_hex(&Sha256::digest(abs.as_os_str().as_encoded_bytes()).into());
    let stem = format!("stream-{}", &key[..16]);
    (
        dir.join(format!("{stem}.json")),
        dir.join(format!("{stem}.chunks")),
    )
}

impl State {
    /// Opens the record of `target` (which is `what`) under `dir` for the
    /// stream `hello` announces. It is resumed when it lists chunks of the
    /// same source and size, names the same target (its identity and mark)
    /// and the target was not made now (`made`); otherwise it starts afresh,
    /// knowing the target reads as zeros when `zeroed`. Returns it and
    /// whether it was resumed.
    pub fn open(
        dir: &Path,
        target: &Path,
        what: &TargetIdentity,
        hello: &Hello,
        zeroed: bool,
        made: bool,
    ) -> Result<(State, bool)> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
        let (meta_path, log_path) = state_paths(dir, target);
        let found: Option<Meta> = match std::fs::read(&meta_path) {
            Ok(text) => serde_json::from_slice(&text).ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error("reading", &meta_path, e)),
        };
        let log = FileChunkLog::open(&log_path)?;
        let chunks = chunk_count(hello.size);
        let resumable = found.filter(|m| {
            m.format == FORMAT
                && m.identity == hello.identity
                && m.size == hello.size
                && m.zero_from <= chunks
                && m.target_identity == *what
                && !made
        });
        let mut state = State {
            meta_path,
            meta: Meta {
                format: FORMAT,
                target: target.display().to_string(),
                identity: hello.identity.clone(),
                target_identity: what.clone(),
                size: hello.size,
                zero_from: 0,
            },
            log,
        };
        match resumable {
            Some(m) => {
                state.meta = m;
                Ok((state, true))
            }
            None => {
                state.start_afresh(zeroed, None)?;
                Ok((state, false))
            }
        }
    }

    /// Forgets every chunk the record lists, durably: the target reads as
    /// zeros when `zeroed`, and carries `mark` (see
    /// [`TargetIdentity::mark`]).
    pub fn start_afresh(&mut self, zeroed: bool, mark: Option<String>) -> Result<()> {
        // The log goes first: a crash between the two leaves an empty log,
        // which trusts nothing.
        self.log.clear()?;
        self.meta.target_identity.mark = mark;
        self.meta.zero_from = if zeroed {
            0
        } else {
            chunk_count(self.meta.size)
        };
        self.save()
    }

    /// The mark the record expects in the target (see
    /// [`TargetIdentity::mark`]).
    pub fn mark(&self) -> Option<&str> {
        self.meta.target_identity.mark.as_deref()
    }

    /// Chunks from this index on read as zeros.
    pub fn zero_from(&self) -> u64 {
        self.meta.zero_from
    }

    /// Records, durably, that chunks before `to` may be written from now
    /// on (they no longer read as zeros for certain).
    pub fn advance_zero_from(&mut self, to: u64) -> Result<()> {
        if to > self.meta.zero_from {
            self.meta.zero_from = to;
            self.save()?;
        }
        Ok(())
    }

    /// The chunks the log lists, for an image of `chunks` chunks.
    pub fn entries(&mut self, chunks: u64) -> Result<Vec<Option<crate::transfer::ChunkHash>>> {
        self.log.load(0, chunks)
    }

    /// Writes the meta file atomically: a new file, synced, renamed over the
    /// old one, and the directory synced.
    fn save(&self) -> Result<()> {
        let tmp = self.meta_path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&self.meta).expect("meta serialises");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.meta_path)?;
            if let Some(dir) = self.meta_path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| io_error("writing", &self.meta_path, e))
    }
}
