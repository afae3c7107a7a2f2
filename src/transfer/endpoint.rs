//! What the engine moves data between. A source says which extents hold data
//! and reads them; a target writes them. Both start operations and finish
//! them later, so many can be in flight: RBD images through librbd's AIO;
//! files and block devices through a few I/O threads ([`super::file`]); a
//! stream's sender takes whole chunks and frames them ([`super::stream`]).
//!
//! A target reads as zeros wherever nothing was written (a new RBD image, a
//! new sparse file, a receiver that starts from zeros), which is what lets
//! holes stay holes: the engine writes only data.

use std::ops::Range;
use std::sync::Arc;

use super::digest::{ChunkHash, CHUNK_SIZE};
use super::Result;

/// A byte range of an image: `offset`, `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// Where block data comes from.
pub trait Source {
    /// A read in flight.
    type Read<'a>: PendingRead
    where
        Self: 'a;

    /// Size in bytes.
    fn size(&self) -> u64;

    /// Names what is read (image, snapshot, size), so that a resumed copy
    /// can tell it reads the same data as the interrupted one.
    fn identity(&self) -> String;

    /// The extents within `[offset, offset + len)` that may hold data,
    /// sorted; everything else reads as zeros. Coarser is fine (whole
    /// objects); missing data is not.
    fn allocated(&self, offset: u64, len: u64) -> Result<Vec<Extent>>;

    /// Starts reading `range.len()` bytes at `offset` into `buf[range]`.
    fn read(&self, offset: u64, buf: Vec<u8>, range: Range<usize>) -> Result<Self::Read<'_>>;
}

/// A read in flight.
pub trait PendingRead {
    /// Whether it has finished (waiting returns at once).
    fn is_complete(&self) -> bool;
    /// Waits for it; the buffer, with the range filled.
    fn wait(self) -> Result<Vec<u8>>;
}

/// Where block data goes. It reads as zeros where nothing was written.
pub trait Target {
    /// A write in flight.
    type Write<'a>: PendingWrite
    where
        Self: 'a;

    /// Starts writing `data[range]` at `offset`.
    fn write(
        &self,
        offset: u64,
        data: Arc<Vec<u8>>,
        range: Range<usize>,
    ) -> Result<Self::Write<'_>>;

    /// Starts writing chunk `index`, whose whole content is `data` and
    /// whose SHA-256 is `hash`: the byte ranges `runs` of it (the rest of
    /// the chunk already reads right). The default writes each run; a
    /// target that ships whole chunks (a stream) overrides it, and may write
    /// nothing when it already holds `hash` there.
    fn write_chunk(
        &self,
        index: u64,
        hash: &ChunkHash,
        data: &Arc<Vec<u8>>,
        runs: Vec<Range<usize>>,
    ) -> Result<Vec<Self::Write<'_>>> {
        let _ = hash;
        let at = index * CHUNK_SIZE;
        runs.into_iter()
            .map(|run| self.write(at + run.start as u64, Arc::clone(data), run))
            .collect()
    }

    /// Chunk `index` (`len` bytes) holds no data in the source: it is to
    /// read as zeros, which a target that reads as zeros where nothing was
    /// written already does (the default: nothing to do). A stream tells its
    /// receiver, which may have to zero it.
    fn hole(&self, index: u64, len: usize) -> Result<()> {
        let _ = (index, len);
        Ok(())
    }

    /// Makes every finished write durable.
    fn flush(&self) -> Result<()>;
}

/// A write in flight.
pub trait PendingWrite {
    /// Whether it has finished (waiting returns at once).
    fn is_complete(&self) -> bool;
    /// Waits for it.
    fn wait(self) -> Result<()>;
}

/// No target: the engine only reads and hashes.
pub struct HashOnly;

/// Never made: [`HashOnly`] takes no writes.
pub enum NoWrite {}

impl Target for HashOnly {
    type Write<'a> = NoWrite;

    fn write(&self, _: u64, _: Arc<Vec<u8>>, _: Range<usize>) -> Result<NoWrite> {
        unreachable!("the engine writes only when given a target")
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

impl PendingWrite for NoWrite {
    fn is_complete(&self) -> bool {
        match *self {}
    }

    fn wait(self) -> Result<()> {
        match self {}
    }
}
