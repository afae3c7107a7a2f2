//! The per-chunk list of a copy in progress: which chunks are on the target,
//! durably, with their hashes. A re-run reads it and copies only the rest;
//! the digest of the whole image comes from it and the chunks copied now.

use super::digest::ChunkHash;
use super::Result;

/// Chunks known to be on the target, with their hashes.
pub trait ChunkLog {
    /// The hashes of chunks `first .. first + count` already on the target
    /// (None: still to copy).
    fn load(&mut self, first: u64, count: u64) -> Result<Vec<Option<ChunkHash>>>;

    /// Records chunks whose data the target holds durably (flushed).
    fn record(&mut self, done: &[(u64, ChunkHash)]) -> Result<()>;
}

/// Keeps nothing: every run starts from the beginning (hashing only).
pub struct NoLog;

impl ChunkLog for NoLog {
    fn load(&mut self, _first: u64, count: u64) -> Result<Vec<Option<ChunkHash>>> {
        Ok(vec![None; count as usize])
    }

    fn record(&mut self, _done: &[(u64, ChunkHash)]) -> Result<()> {
        Ok(())
    }
}

/// A per-chunk log in a file of its own (a stream's receiver keeps one per
/// target): entry `i` at byte `32 * i`.
///
/// Recording does not sync: the target was flushed before, so an entry
/// that reaches the disk names durable data, and one that is lost only
/// makes a re-run copy that chunk again. Forgetting an entry does sync,
/// because the chunk is about to be overwritten and a stale entry would
/// vouch for data that is no longer there.
pub struct FileChunkLog {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl FileChunkLog {
    /// Opens the log at `path`, made empty when missing.
    pub fn open(path: &std::path::Path) -> Result<FileChunkLog> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_error("opening", path, e))?;
        Ok(FileChunkLog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Forgets every entry, durably.
    pub fn clear(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_error("clearing", &self.path, e))
    }

    /// Forgets chunk `index`, durably, before its data is overwritten.
    pub fn forget(&mut self, index: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(&[0u8; ENTRY], index * ENTRY as u64)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error("updating", &self.path, e))
    }
}

fn io_error(
    op: &'static str,
    path: &std::path::Path,
    error: std::io::Error,
) -> super::TransferError {
    super::TransferError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

impl ChunkLog for FileChunkLog {
    fn load(&mut self, first: u64, count: u64) -> Result<Vec<Option<ChunkHash>>> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0u8; count as usize * ENTRY];
        let mut got = 0;
        // A log ends where its last entry was written: read what is there.
        while got < bytes.len() {
            match self
                .file
                .read_at(&mut bytes[got..], first * ENTRY as u64 + got as u64)
            {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error("reading", &self.path, e)),
            }
        }
        Ok(decode(&bytes[..got], count))
    }

    fn record(&mut self, done: &[(u64, ChunkHash)]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        for (first, bytes) in runs(done) {
            self.file
                .write_all_at(&bytes, first * ENTRY as u64)
                .map_err(|e| io_error("writing", &self.path, e))?;
        }
        Ok(())
    }
}

/// Size of one entry in a stored log: a chunk's 32-byte SHA-256 at
/// `index * ENTRY`; 32 zero bytes (never a SHA-256 in practice) mean "not
/// yet", which is also what an unwritten part of a RADOS object or a sparse
/// file reads as.
pub const ENTRY: usize = 32;

/// Decodes stored entries (possibly fewer bytes than `count` entries: the
/// rest is not done).
pub fn decode(bytes: &[u8], count: u64) -> Vec<Option<ChunkHash>> {
    (0..count as usize)
        .map(|k| {
            let e = bytes.get(k * ENTRY..(k + 1) * ENTRY)?;
            if e.iter().all(|b| *b == 0) {
                None
            } else {
                Some(e.try_into().expect("32 bytes"))
            }
        })
        .collect()
}

/// Groups entries into runs of consecutive chunk indexes, each as (first
/// index, the entries' bytes), so a store writes each run at once.
pub fn runs(done: &[(u64, ChunkHash)]) -> Vec<(u64, Vec<u8>)> {
    let mut sorted = done.to_vec();
    sorted.sort_by_key(|(i, _)| *i);
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    for (i, h) in sorted {
        match out.last_mut() {
            Some((first, bytes)) if *first + (bytes.len() / ENTRY) as u64 == i => {
                bytes.extend_from_slice(&h)
            }
            _ => out.push((i, h.to_vec())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_log_keeps_entries_and_forgets_one() {
        let path = std::env::temp_dir().join(format!("ferry-log-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut log = FileChunkLog::open(&path).unwrap();
        assert_eq!(log.load(0, 3).unwrap(), vec![None; 3]);
        log.record(&[(1, [7u8; 32]), (4, [9u8; 32])]).unwrap();
        log.forget(4).unwrap();
        let mut again = FileChunkLog::open(&path).unwrap();
        assert_eq!(
            again.load(0, 6).unwrap(),
            vec![None, Some([7u8; 32]), None, None, None, None]
        );
        again.clear().unwrap();
        assert_eq!(again.load(0, 2).unwrap(), vec![None; 2]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn entries_round_trip_and_gaps_are_not_done() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let r = runs(&[(3, b), (0, a), (1, b)]);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].0, r[0].1.len()), (0, 64));
        assert_eq!((r[1].0, r[1].1.len()), (3, 32));
        let mut stored = vec![0u8; 5 * ENTRY];
        for (first, bytes) in r {
            let at = first as usize * ENTRY;
            stored[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        // The object ends early: the last chunk is not done.
        stored.truncate(4 * ENTRY);
        assert_eq!(
            decode(&stored, 5),
            vec![Some(a), Some(b), None, Some(b), None]
        );
    }
}
