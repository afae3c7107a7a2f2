//! A transfer of only what changed since a snapshot: the chunks a diff
//! names are read (whole) and written where they differ from what the
//! target already holds (the same image at that snapshot); every other
//! chunk is taken from the log of the earlier, whole transfer. A warm
//! migration's rounds, the cut-over after them, and a source's digest
//! kept between rounds are such transfers: their cost follows the writes
//! since the last round, not the image's size.

use std::collections::BTreeSet;
use std::ops::Range;

use super::digest::{ChunkHash, CHUNK_SIZE};
use super::endpoint::{Extent, Source};
use super::log::ChunkLog;
use super::Result;

/// The chunks that `extents` (byte ranges of an image) touch.
pub fn chunks_of(extents: &[(u64, u64)]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for &(offset, len) in extents {
        if len == 0 {
            continue;
        }
        out.extend(offset / CHUNK_SIZE..=(offset + len - 1) / CHUNK_SIZE);
    }
    out
}

/// A source seen through a set of chunks: those hold data (whole, as far
/// as the image goes), the others none, so the engine reads only them.
pub struct Only<'s, S: Source> {
    pub inner: &'s S,
    pub chunks: &'s BTreeSet<u64>,
}

impl<S: Source> Source for Only<'_, S> {
    type Read<'a>
        = S::Read<'a>
    where
        Self: 'a;

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn identity(&self) -> String {
        self.inner.identity()
    }

    fn allocated(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = (offset + len).min(self.size());
        if offset >= end {
            return Ok(Vec::new());
        }
        let first = offset / CHUNK_SIZE;
        let last = (end - 1) / CHUNK_SIZE;
        Ok(self
            .chunks
            .range(first..=last)
            .map(|k| {
                let start = (k * CHUNK_SIZE).max(offset);
                let stop = ((k + 1) * CHUNK_SIZE).min(end);
                Extent {
                    offset: start,
                    len: stop - start,
                }
            })
            .collect())
    }

    fn read(&self, offset: u64, buf: Vec<u8>, range: Range<usize>) -> Result<Self::Read<'_>> {
        self.inner.read(offset, buf, range)
    }
}

/// A log whose entries for `chunks` are ignored (those chunks are done
/// again), and which records as the log it wraps.
pub struct Skipping<'l> {
    pub inner: &'l mut dyn ChunkLog,
    pub chunks: &'l BTreeSet<u64>,
}

impl ChunkLog for Skipping<'_> {
    fn load(&mut self, first: u64, count: u64) -> Result<Vec<Option<ChunkHash>>> {
        let mut got = self.inner.load(first, count)?;
        for k in self.chunks.range(first..first + count) {
            got[(k - first) as usize] = None;
        }
        Ok(got)
    }

    fn record(&mut self, done: &[(u64, ChunkHash)]) -> Result<()> {
        self.inner.record(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunks_an_extent_touches_include_both_ends_and_nothing_for_empty_ones() {
        let c = CHUNK_SIZE;
        let got = chunks_of(&[(0, 1), (c - 1, 2), (5 * c, c), (9 * c, 0)]);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), vec![0, 1, 5]);
    }
}
