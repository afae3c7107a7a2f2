//! The engine: walks an image chunk by chunk, reads only the chunks that
//! hold data, keeps many reads and writes in flight, writes only non-zero
//! blocks (holes stay holes), and hashes every chunk as it passes into the
//! image digest. Memory is `depth` chunk buffers plus one window of the
//! allocation map, whatever the image size; transfers that share a
//! [`ChunkBudget`] hold no more chunks in flight together than it allows.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::parallel::Slot;

use super::digest::{
    chunk_count, chunk_hash, chunk_len, zero_hash, ChunkHash, ImageDigest, CHUNK_SIZE,
};
use super::endpoint::{PendingRead, PendingWrite, Source, Target};
use super::log::ChunkLog;
use super::{Result, TransferError};

/// Tuning of a transfer.
#[derive(Debug, Clone)]
pub struct Options {
    /// Chunks in flight (being read, or being written), each a 4 MiB
    /// buffer: the memory a transfer uses.
    pub depth: usize,
    /// Chunks whose allocation is asked for at once (bounds the memory the
    /// allocation map takes on a huge image).
    pub window: u64,
    /// Granularity of zero detection: blocks of zeros inside allocated data
    /// are not written.
    pub block: usize,
    /// How often finished chunks are flushed and recorded in the log, at
    /// most: a crash loses at most this much work.
    pub record_every: Duration,
    /// ... or after this many finished chunks.
    pub record_chunks: usize,
    /// For tests: ends the process at once, as a kill would, as soon as
    /// this many chunks are recorded in the log.
    pub crash_after_chunks: Option<u64>,
    /// Chunks in flight across all the transfers that share it (many
    /// images copied at once): `depth` bounds one transfer, this all.
    pub budget: Option<Arc<ChunkBudget>>,
}

/// Buffers a transfer keeps for its next reads when a chunk is written.
const SPARE_BUFFERS: usize = 2;

/// The chunk buffers that transfers running at once share: the memory of
/// a run's copies, whatever the number of images it copies at once. A
/// transfer with nothing in flight waits for a chunk; a transfer with
/// chunks in flight takes one only when one is free, else first finishes
/// its own (so none waits while holding what another needs). A chunk is
/// given back when it is written, or when the transfer ends by an error.
pub type ChunkBudget = crate::parallel::Slots;

impl Default for Options {
    fn default() -> Options {
        Options {
            depth: 16,
            window: 256,
            block: 4096,
            record_every: Duration::from_secs(2),
            record_chunks: 64,
            crash_after_chunks: None,
            budget: None,
        }
    }
}

impl Options {
    /// The defaults, or, for tests simulating a crash mid-copy, ending the
    /// process as soon as `crash` chunks are recorded, one at a time.
    pub fn crashing_after(crash: Option<u64>) -> Options {
        let defaults = Options::default();
        Options {
            crash_after_chunks: crash,
            record_chunks: if crash.is_some() {
                1
            } else {
                defaults.record_chunks
            },
            ..defaults
        }
    }
}

/// What a transfer did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// The image digest (see [`super::digest`]).
    pub digest: String,
    /// Image size in bytes.
    pub size: u64,
    /// Chunks in the image.
    pub chunks: u64,
    /// Chunks an earlier, interrupted run had already copied.
    pub chunks_resumed: u64,
    /// Chunks read now (the others were holes or resumed).
    pub chunks_read: u64,
    /// Bytes read from the source now.
    pub bytes_read: u64,
    /// Bytes written to the target now (zero blocks are skipped).
    pub bytes_written: u64,
}

/// One chunk's work, as the allocation maps and the log say.
enum Work {
    /// No data, in the source nor in the base: hashes to the zero
    /// constant; nothing to read or write.
    Hole(u64),
    /// Copied by an earlier run.
    Logged(u64, ChunkHash),
    /// Source data within `span` (bytes of the chunk; None: a hole), base
    /// data within `base`; the rest reads as zeros. One of them is Some.
    Data {
        index: u64,
        span: Option<Range<usize>>,
        base: Option<Range<usize>>,
    },
}

/// The bytes of `[start, end)` that `extents` cover, per chunk (from chunk
/// `first`, `count` chunks): one span each, the hull of what is covered.
fn chunk_spans(
    extents: &[super::endpoint::Extent],
    start: u64,
    end: u64,
    first: u64,
    count: u64,
) -> Vec<Option<Range<usize>>> {
    let mut spans: Vec<Option<Range<usize>>> = vec![None; count as usize];
    for e in extents {
        let (from, to) = (e.offset.max(start), (e.offset + e.len).min(end));
        let mut at = from;
        while at < to {
            let k = at / CHUNK_SIZE;
            let base = k * CHUNK_SIZE;
            let stop = to.min(base + CHUNK_SIZE);
            let r = (at - base) as usize..(stop - base) as usize;
            let s = &mut spans[(k - first) as usize];
            *s = Some(match s.take() {
                Some(old) => old.start.min(r.start)..old.end.max(r.end),
                None => r,
            });
            at = stop;
        }
    }
    spans
}

/// Yields the chunks' work in order, one window of the allocation maps and
/// the log at a time.
struct Planner<'a, S: Source> {
    source: &'a S,
    base: Option<&'a S>,
    size: u64,
    chunks: u64,
    next_window: u64,
    window: u64,
    queue: VecDeque<Work>,
}

impl<S: Source> Planner<'_, S> {
    fn next(&mut self, log: &mut dyn ChunkLog) -> Result<Option<Work>> {
        if self.queue.is_empty() && self.next_window < self.chunks {
            let first = self.next_window;
            let count = self.window.min(self.chunks - first);
            self.next_window += count;
            let start = first * CHUNK_SIZE;
            let end = ((first + count) * CHUNK_SIZE).min(self.size);
            let spans = chunk_spans(
                &self.source.allocated(start, end - start)?,
                start,
                end,
                first,
                count,
            );
            // The base (the image a clone target reads where nothing was
            // written) ends at its own size.
            let bases = match self.base {
                Some(b) if start < end.min(b.size()) => {
                    let stop = end.min(b.size());
                    chunk_spans(
                        &b.allocated(start, stop - start)?,
                        start,
                        stop,
                        first,
                        count,
                    )
                }
                _ => vec![None; count as usize],
            };
            let logged = log.load(first, count)?;
            for (k, ((span, base), done)) in spans.into_iter().zip(bases).zip(logged).enumerate() {
                let index = first + k as u64;
                self.queue.push_back(match (done, span, base) {
                    (Some(h), _, _) => Work::Logged(index, h),
                    (None, None, None) => Work::Hole(index),
                    (None, span, base) => Work::Data { index, span, base },
                });
            }
        }
        Ok(self.queue.pop_front())
    }
}

/// A chunk being read (its source data, its base data, or both).
struct Reading<R> {
    index: u64,
    len: usize,
    span: Option<(Range<usize>, R)>,
    base: Option<(Range<usize>, R)>,
    token: Option<Slot>,
}

/// A chunk being written (or, without a target, just hashed).
struct Writing<W> {
    index: u64,
    hash: ChunkHash,
    data: Arc<Vec<u8>>,
    /// The base's bytes of the chunk, when read (a buffer to reuse).
    base: Option<Vec<u8>>,
    writes: Vec<W>,
    /// Given back when the chunk is written (after `data` is free).
    _token: Option<Slot>,
}

/// Chunk hashes arrive out of order; the digest takes them in order.
pub(super) struct InOrder {
    pub(super) digest: ImageDigest,
    ready: BTreeMap<u64, ChunkHash>,
}

impl InOrder {
    pub(super) fn new() -> InOrder {
        InOrder {
            digest: ImageDigest::new(),
            ready: BTreeMap::new(),
        }
    }

    pub(super) fn add(&mut self, index: u64, hash: ChunkHash) {
        self.ready.insert(index, hash);
        while let Some(h) = self.ready.remove(&self.digest.chunks()) {
            self.digest.push(&h);
        }
    }
}

/// Moves (with a target) or reads (without: [`super::HashOnly`]) the whole
/// of `source`, hashing it as it passes, and returns the digest. Chunks the
/// `log` holds are taken as done; chunks finished now are recorded in it
/// (after the target flushed them). `progress` gets (bytes covered, size)
/// and may return false to stop: then what is finished is recorded and the
/// call returns [`TransferError::Stopped`]; running again resumes.
pub fn transfer<S: Source, T: Target>(
    source: &S,
    target: Option<&T>,
    log: &mut dyn ChunkLog,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Outcome> {
    transfer_onto(source, None, target, log, opts, progress)
}

/// [`transfer`] onto a target that reads as `base` wherever nothing was
/// written (a clone of `base`), instead of as zeros: only the blocks whose
/// data differ from the base's are written, zeros included where the base
/// has data, so the target reads as the source everywhere. The digest is
/// the source's, as with [`transfer`]. Without a base: [`transfer`].
pub fn transfer_onto<S: Source, T: Target>(
    source: &S,
    base: Option<&S>,
    target: Option<&T>,
    log: &mut dyn ChunkLog,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Outcome> {
    let size = source.size();
    let chunks = chunk_count(size);
    let mut run = Run {
        target,
        log,
        opts,
        unrecorded: Vec::new(),
        last_record: Instant::now(),
        recorded: 0,
        out: Outcome {
            digest: String::new(),
            size,
            chunks,
            chunks_resumed: 0,
            chunks_read: 0,
            bytes_read: 0,
            bytes_written: 0,
        },
    };
    let mut order = InOrder::new();
    let result = run.pump(source, base, size, chunks, &mut order, progress);
    // Keep what is finished, also when stopped or failed: a re-run resumes.
    let recorded = run.record();
    result?;
    recorded?;
    debug_assert_eq!(order.digest.chunks(), chunks);
    let mut out = run.out;
    out.digest = order.digest.finish();
    Ok(out)
}

struct Run<'a, T: Target> {
    target: Option<&'a T>,
    log: &'a mut dyn ChunkLog,
    opts: &'a Options,
    /// Chunks fully written but not yet flushed and logged.
    unrecorded: Vec<(u64, ChunkHash)>,
    last_record: Instant,
    /// Chunks recorded by this run.
    recorded: u64,
    out: Outcome,
}

impl<'a, T: Target> Run<'a, T> {
    fn pump<S: Source>(
        &mut self,
        source: &S,
        base: Option<&S>,
        size: u64,
        chunks: u64,
        order: &mut InOrder,
        progress: &mut dyn FnMut(u64, u64) -> bool,
    ) -> Result<()> {
        let depth = self.opts.depth.max(1);
        let mut planner = Planner {
            source,
            base,
            size,
            chunks,
            next_window: 0,
            window: self.opts.window.max(1),
            queue: VecDeque::new(),
        };
        let mut buffers: Vec<Vec<u8>> = Vec::new();
        let mut reading: VecDeque<Reading<S::Read<'_>>> = VecDeque::new();
        let mut writing: VecDeque<Writing<T::Write<'a>>> = VecDeque::new();
        let mut planned_all = false;
        let mut stopping = false;
        // A chunk of the budget taken before the planner says whether the
        // next chunk needs a buffer (holes and logged chunks do not).
        let mut spare: Option<Slot> = None;
        let covered = |order: &InOrder| (order.digest.chunks() * CHUNK_SIZE).min(size);
        loop {
            // Writes finish roughly in order: take the finished ones.
            while writing
                .front()
                .is_some_and(|w| w.writes.iter().all(|x| x.is_complete()))
            {
                let w = writing.pop_front().expect("front");
                self.finish_write(w, &mut buffers)?;
            }
            if self.unrecorded.len() >= self.opts.record_chunks
                || (!self.unrecorded.is_empty()
                    && self.last_record.elapsed() >= self.opts.record_every)
            {
                self.record()?;
            }
            if !progress(covered(order), size) {
                stopping = true;
            }
            // Start reads while there is room.
            let mut cheap = 0;
            while !stopping && !planned_all && reading.len() + writing.len() < depth {
                if spare.is_none() {
                    if let Some(budget) = &self.opts.budget {
                        spare = if reading.is_empty() && writing.is_empty() {
                            // Idle buffers go back while this one waits.
                            buffers.clear();
                            Some(budget.take())
                        } else {
                            match budget.try_take() {
                                Some(t) => Some(t),
                                None => break,
                            }
                        };
                    }
                }
                match planner.next(self.log)? {
                    None => planned_all = true,
                    Some(Work::Hole(index)) => {
                        let len = chunk_len(size, index);
                        if let Some(t) = self.target {
                            t.hole(index, len)?;
                        }
                        order.add(index, zero_hash(len));
                        cheap += 1;
                    }
                    Some(Work::Logged(index, hash)) => {
                        order.add(index, hash);
                        self.out.chunks_resumed += 1;
                        cheap += 1;
                    }
                    Some(Work::Data {
                        index,
                        span,
                        base: base_span,
                    }) => {
                        let len = chunk_len(size, index);
                        let span = match span {
                            Some(r) => Some(start_read(source, &mut buffers, index, len, r)?),
                            None => None,
                        };
                        let base_read = match (base, base_span) {
                            (Some(b), Some(r)) => Some(start_read(b, &mut buffers, index, len, r)?),
                            _ => None,
                        };
                        reading.push_back(Reading {
                            index,
                            len,
                            span,
                            base: base_read,
                            token: spare.take(),
                        });
                    }
                }
                // Long runs of holes: let progress (and a stop) through.
                if cheap >= 1024 {
                    break;
                }
            }
            if let Some(r) = reading.pop_front() {
                let w = self.finish_read(r, order, &mut buffers)?;
                writing.push_back(w);
            } else if let Some(w) = writing.pop_front() {
                self.finish_write(w, &mut buffers)?;
            } else if planned_all || stopping {
                break;
            }
        }
        progress(covered(order), size);
        if stopping {
            return Err(TransferError::Stopped {
                done: covered(order),
                size,
            });
        }
        Ok(())
    }

    /// A read ended: start writing the blocks that differ from what the
    /// target reads unwritten (zeros, or the base), hash it meanwhile.
    fn finish_read<R: PendingRead>(
        &mut self,
        r: Reading<R>,
        order: &mut InOrder,
        buffers: &mut Vec<Vec<u8>>,
    ) -> Result<Writing<T::Write<'a>>> {
        self.out.chunks_read += 1;
        let (span, buf, hash) = match r.span {
            Some((span, read)) => {
                let buf = read.wait()?;
                self.out.bytes_read += span.len() as u64;
                // A chunk of zeros (a block device's unused space) hashes
                // to the known constant: memcmp is several times faster
                // than SHA-256, and stops at the first byte of data.
                let hash = if is_zero(&buf) {
                    zero_hash(r.len)
                } else {
                    chunk_hash(&buf)
                };
                (Some(span), buf, hash)
            }
            None => {
                // A hole over base data: zeros, written where the base is not.
                let mut buf = buffers.pop().unwrap_or_default();
                buf.clear();
                buf.resize(r.len, 0);
                (None, buf, zero_hash(r.len))
            }
        };
        let base = match r.base {
            Some((bspan, read)) => {
                self.out.bytes_read += bspan.len() as u64;
                Some((bspan, read.wait()?))
            }
            None => None,
        };
        let data = Arc::new(buf);
        let mut writes = Vec::new();
        if let Some(t) = self.target {
            let runs = match &base {
                Some((bspan, b)) => {
                    let hull = match &span {
                        Some(s) => s.start.min(bspan.start)..s.end.max(bspan.end),
                        None => bspan.clone(),
                    };
                    diff_runs(&data, b, hull, self.opts.block)
                }
                // The base holds nothing here: as without one.
                None => span
                    .clone()
                    .map(|s| data_runs(&data, s, self.opts.block))
                    .unwrap_or_default(),
            };
            self.out.bytes_written += runs.iter().map(|r| r.len() as u64).sum::<u64>();
            writes = t.write_chunk(r.index, &hash, &data, runs)?;
        }
        order.add(r.index, hash);
        Ok(Writing {
            index: r.index,
            hash,
            data,
            base: base.map(|(_, b)| b),
            writes,
            _token: r.token,
        })
    }

    /// A chunk's writes ended: it waits to be recorded; its buffer is free.
    fn finish_write(&mut self, w: Writing<T::Write<'a>>, buffers: &mut Vec<Vec<u8>>) -> Result<()> {
        for x in w.writes {
            x.wait()?;
        }
        // Without a target too: a digest kept chunk by chunk (a source's
        // hashes between warm rounds) logs what it hashed.
        self.unrecorded.push((w.index, w.hash));
        // A buffer or two are kept for the next reads; the others go back
        // with the chunk, for the transfers that share its budget.
        if let Ok(buf) = Arc::try_unwrap(w.data) {
            buffers.push(buf);
        }
        buffers.extend(w.base);
        buffers.truncate(SPARE_BUFFERS);
        Ok(())
    }

    /// Flushes the target and logs the chunks it now holds durably.
    fn record(&mut self) -> Result<()> {
        self.last_record = Instant::now();
        if self.unrecorded.is_empty() {
            return Ok(());
        }
        if let Some(t) = self.target {
            t.flush()?;
        }
        // The test hook dies with exactly that many chunks recorded (the
        // lowest finished ones), however many finished at once: in a copy,
        // not in a hash (which records its hashes too).
        let crash = self
            .opts
            .crash_after_chunks
            .filter(|_| self.target.is_some());
        if let Some(n) = crash {
            let room = n.saturating_sub(self.recorded) as usize;
            self.unrecorded.sort_by_key(|(i, _)| *i);
            self.unrecorded.truncate(room);
        }
        self.log.record(&self.unrecorded)?;
        self.recorded += self.unrecorded.len() as u64;
        self.unrecorded.clear();
        if crash.is_some_and(|n| self.recorded >= n) {
            std::process::abort();
        }
        Ok(())
    }
}

/// Starts reading `span` of chunk `index` (`len` bytes) from `from` into a
/// buffer zeroed outside it.
fn start_read<'s, S: Source>(
    from: &'s S,
    buffers: &mut Vec<Vec<u8>>,
    index: u64,
    len: usize,
    span: Range<usize>,
) -> Result<(Range<usize>, S::Read<'s>)> {
    let mut buf = buffers.pop().unwrap_or_default();
    buf.resize(len, 0);
    buf[..span.start].fill(0);
    buf[span.end..].fill(0);
    let read = from.read(index * CHUNK_SIZE + span.start as u64, buf, span.clone())?;
    Ok((span, read))
}

/// The runs of `buf[span]` that are not all zeros, in `block`-sized steps
/// aligned to the chunk; neighbouring runs merge.
pub fn data_runs(buf: &[u8], span: Range<usize>, block: usize) -> Vec<Range<usize>> {
    let block = block.max(1);
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut at = span.start;
    while at < span.end {
        let end = ((at / block + 1) * block).min(span.end);
        if !is_zero(&buf[at..end]) {
            match out.last_mut() {
                Some(r) if r.end == at => r.end = end,
                _ => out.push(at..end),
            }
        }
        at = end;
    }
    out
}

/// The runs of `span` where `buf` and `base` differ, in `block`-sized
/// steps aligned to the chunk; neighbouring runs merge. Both are the whole
/// chunk.
pub fn diff_runs(buf: &[u8], base: &[u8], span: Range<usize>, block: usize) -> Vec<Range<usize>> {
    let block = block.max(1);
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut at = span.start;
    while at < span.end {
        let end = ((at / block + 1) * block).min(span.end);
        if buf[at..end] != base[at..end] {
            match out.last_mut() {
                Some(r) if r.end == at => r.end = end,
                _ => out.push(at..end),
            }
        }
        at = end;
    }
    out
}

fn is_zero(b: &[u8]) -> bool {
    // Slice equality is memcmp: fast in every build profile.
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    b.chunks(ZEROS.len()).all(|p| p == &ZEROS[..p.len()])
}

#[cfg(test)]
mod tests {
    use super::super::digest::digest_bytes;
    use super::super::endpoint::{Extent, HashOnly};
    use super::super::log::{decode, runs, NoLog};
    use super::*;
    use std::cell::{Cell, RefCell};

    /// An in-memory image with its allocation map; reads finish at once.
    struct Mem {
        data: Vec<u8>,
        extents: Vec<Extent>,
        reads: Cell<u64>,
    }

    struct Done<T>(T);

    impl PendingRead for Done<Vec<u8>> {
        fn is_complete(&self) -> bool {
            true
        }
        fn wait(self) -> Result<Vec<u8>> {
            Ok(self.0)
        }
    }

    impl PendingWrite for Done<()> {
        fn is_complete(&self) -> bool {
            true
        }
        fn wait(self) -> Result<()> {
            Ok(())
        }
    }

    impl Source for Mem {
        type Read<'a> = Done<Vec<u8>>;
        fn size(&self) -> u64 {
            self.data.len() as u64
        }
        fn identity(&self) -> String {
            "mem".into()
        }
        fn allocated(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
            Ok(self
                .extents
                .iter()
                .filter(|e| e.offset < offset + len && e.offset + e.len > offset)
                .copied()
                .collect())
        }
        fn read(
            &self,
            offset: u64,
            mut buf: Vec<u8>,
            range: Range<usize>,
        ) -> Result<Done<Vec<u8>>> {
            self.reads.set(self.reads.get() + range.len() as u64);
            let o = offset as usize;
            buf[range.clone()].copy_from_slice(&self.data[o..o + range.len()]);
            Ok(Done(buf))
        }
    }

    /// A target in memory, counting flushes.
    struct MemTarget {
        data: RefCell<Vec<u8>>,
        written: RefCell<Vec<Extent>>,
    }

    impl Target for MemTarget {
        type Write<'a> = Done<()>;
        fn write(&self, offset: u64, data: Arc<Vec<u8>>, range: Range<usize>) -> Result<Done<()>> {
            let o = offset as usize;
            self.data.borrow_mut()[o..o + range.len()].copy_from_slice(&data[range.clone()]);
            self.written.borrow_mut().push(Extent {
                offset,
                len: range.len() as u64,
            });
            Ok(Done(()))
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
    }

    /// A log in memory.
    #[derive(Default)]
    struct MemLog(Vec<u8>);

    impl ChunkLog for MemLog {
        fn load(&mut self, first: u64, count: u64) -> Result<Vec<Option<ChunkHash>>> {
            let at = (first as usize * 32).min(self.0.len());
            Ok(decode(&self.0[at..], count))
        }
        fn record(&mut self, done: &[(u64, ChunkHash)]) -> Result<()> {
            for (first, bytes) in runs(done) {
                let at = first as usize * 32;
                if self.0.len() < at + bytes.len() {
                    self.0.resize(at + bytes.len(), 0);
                }
                self.0[at..at + bytes.len()].copy_from_slice(&bytes);
            }
            Ok(())
        }
    }

    const MIB: usize = 1 << 20;

    /// 21.5 MiB: data in chunk 0 (with a zero block inside), chunk 2 and the
    /// short last chunk; chunks 1, 3 and 4 are holes.
    fn sparse() -> Mem {
        let mut data = vec![0u8; 21 * MIB + MIB / 2];
        let mut x = 1u64;
        let mut fill = |r: Range<usize>, data: &mut Vec<u8>| {
            for b in &mut data[r] {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                *b = (x >> 56) as u8 | 1;
            }
        };
        fill(0..MIB, &mut data);
        fill(3 * MIB / 2..4 * MIB, &mut data);
        fill(8 * MIB..12 * MIB, &mut data);
        fill(20 * MIB..21 * MIB + 1000, &mut data);
        let extents = [(0, 4 * MIB), (8 * MIB, 4 * MIB), (20 * MIB, 3 * MIB / 2)]
            .map(|(o, l)| Extent {
                offset: o as u64,
                len: l as u64,
            })
            .to_vec();
        Mem {
            data,
            extents,
            reads: Cell::new(0),
        }
    }

    fn opts() -> Options {
        Options {
            depth: 3,
            window: 2,
            record_chunks: 1,
            ..Options::default()
        }
    }

    #[test]
    fn a_refresh_since_a_snapshot_rewrites_only_changed_chunks_and_ends_equal_to_the_new_image() {
        use super::super::changed::{chunks_of, Only, Skipping};
        let old = sparse();
        let dst = MemTarget {
            data: RefCell::new(vec![0u8; old.data.len()]),
            written: RefCell::new(Vec::new()),
        };
        let mut log = MemLog::default();
        transfer(&old, Some(&dst), &mut log, &opts(), &mut |_, _| true).unwrap();
        // The new image: chunk 0 partly zeroed (a discard over data), a
        // hole (chunk 3) written, chunk 2 unchanged.
        let mut data = old.data.clone();
        data[MIB..2 * MIB].fill(0);
        data[12 * MIB + 5..12 * MIB + 9].copy_from_slice(b"warm");
        let mut extents = old.extents.clone();
        extents.push(Extent {
            offset: 12 * MIB as u64,
            len: 4096,
        });
        extents.sort_by_key(|e| e.offset);
        let new = Mem {
            data,
            extents,
            reads: Cell::new(0),
        };
        let changed = chunks_of(&[(MIB as u64, MIB as u64), (12 * MIB as u64, 4096)]);
        dst.written.borrow_mut().clear();
        let (src, base) = (
            Only {
                inner: &new,
                chunks: &changed,
            },
            Only {
                inner: &old,
                chunks: &changed,
            },
        );
        let mut skip = Skipping {
            inner: &mut log,
            chunks: &changed,
        };
        let out = transfer_onto(
            &src,
            Some(&base),
            Some(&dst),
            &mut skip,
            &opts(),
            &mut |_, _| true,
        )
        .unwrap();
        assert_eq!(out.digest, digest_bytes(&new.data));
        assert_eq!(*dst.data.borrow(), new.data);
        assert_eq!(out.chunks_read, 2, "chunks 0 and 3 only");
        assert!(dst
            .written
            .borrow()
            .iter()
            .all(|e| e.offset < 4 * MIB as u64
                || (12 * MIB as u64..16 * MIB as u64).contains(&e.offset)));
        // The log now vouches for the new image: a hash from it alone
        // gives the same digest.
        let none = std::collections::BTreeSet::new();
        let again = transfer_onto(
            &Only {
                inner: &new,
                chunks: &none,
            },
            None,
            Some(&dst),
            &mut log,
            &opts(),
            &mut |_, _| true,
        )
        .unwrap();
        assert_eq!(again.digest, out.digest);
        assert_eq!(again.chunks_read, 0);
    }

    #[test]
    fn hash_only_reads_allocated_extents_and_equals_the_full_digest() {
        let src = sparse();
        let out =
            transfer::<_, HashOnly>(&src, None, &mut NoLog, &opts(), &mut |_, _| true).unwrap();
        assert_eq!(out.digest, digest_bytes(&src.data));
        assert_eq!(out.chunks, 6);
        assert_eq!(out.chunks_read, 3);
        assert_eq!(out.bytes_read, (4 * MIB + 4 * MIB + 3 * MIB / 2) as u64);
        assert_eq!(src.reads.get(), out.bytes_read);
    }

    #[test]
    fn copy_writes_only_data_blocks_and_the_copy_is_equal() {
        let src = sparse();
        let dst = MemTarget {
            data: RefCell::new(vec![0u8; src.data.len()]),
            written: RefCell::new(Vec::new()),
        };
        let out = transfer(
            &src,
            Some(&dst),
            &mut MemLog::default(),
            &opts(),
            &mut |_, _| true,
        )
        .unwrap();
        assert_eq!(*dst.data.borrow(), src.data);
        assert_eq!(out.digest, digest_bytes(&src.data));
        // The zero MiB inside chunk 0 and the zeros after the last data
        // block are not written.
        let written: u64 = dst.written.borrow().iter().map(|e| e.len).sum();
        assert_eq!(written, out.bytes_written);
        assert_eq!(written, (MIB + 5 * MIB / 2 + 4 * MIB + MIB + 4096) as u64);
    }

    #[test]
    fn a_stopped_copy_resumes_with_what_is_missing() {
        let src = sparse();
        let dst = MemTarget {
            data: RefCell::new(vec![0u8; src.data.len()]),
            written: RefCell::new(Vec::new()),
        };
        let mut log = MemLog::default();
        // One chunk in flight; stop once the first chunk is covered.
        let one = Options { depth: 1, ..opts() };
        let err = transfer(&src, Some(&dst), &mut log, &one, &mut |done, _| done == 0).unwrap_err();
        assert!(matches!(err, TransferError::Stopped { .. }), "{err}");
        let first = src.reads.get();
        assert_eq!(first, 4 * MIB as u64);
        let out = transfer(&src, Some(&dst), &mut log, &opts(), &mut |_, _| true).unwrap();
        assert_eq!(out.digest, digest_bytes(&src.data));
        assert_eq!(*dst.data.borrow(), src.data);
        assert_eq!(first + out.bytes_read, src.reads.get());
        assert_eq!(
            src.reads.get(),
            (9 * MIB + MIB / 2) as u64,
            "each byte read once"
        );
        assert!(out.chunks_resumed >= 1);
    }

    #[test]
    fn a_shared_budget_bounds_chunks_in_flight_and_gets_every_chunk_back() {
        let free = |b: &Arc<ChunkBudget>| b.free();
        let budget = ChunkBudget::new(2);
        // Another transfer holds one chunk: this one goes on with the other.
        let held = budget.try_take().unwrap();
        let src = sparse();
        let dst = MemTarget {
            data: RefCell::new(vec![0u8; src.data.len()]),
            written: RefCell::new(Vec::new()),
        };
        let shared = Options {
            budget: Some(Arc::clone(&budget)),
            ..opts()
        };
        let mut seen = Vec::new();
        let out = transfer(
            &src,
            Some(&dst),
            &mut MemLog::default(),
            &shared,
            &mut |_, _| {
                seen.push(free(&budget));
                true
            },
        )
        .unwrap();
        assert_eq!(*dst.data.borrow(), src.data);
        assert_eq!(out.digest, digest_bytes(&src.data));
        assert_eq!(free(&budget), 1, "every chunk given back");
        assert!(
            seen.contains(&0),
            "the transfer held the free chunk: {seen:?}"
        );
        // A stopped transfer gives its chunks back too.
        let err = transfer(
            &src,
            Some(&dst),
            &mut MemLog::default(),
            &shared,
            &mut |d, _| d == 0,
        )
        .unwrap_err();
        assert!(matches!(err, TransferError::Stopped { .. }), "{err}");
        assert_eq!(free(&budget), 1);
        drop(held);
        assert_eq!(free(&budget), 2);
        // A transfer with nothing in flight waits for a chunk to come back.
        let one = ChunkBudget::new(1);
        let token = one.try_take().unwrap();
        assert!(one.try_take().is_none());
        let waiter = std::thread::spawn({
            let one = Arc::clone(&one);
            move || drop(one.take())
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(token);
        waiter.join().unwrap();
        assert_eq!(free(&one), 1);
    }

    #[test]
    fn empty_and_all_hole_images() {
        for len in [0, 3 * MIB + 7] {
            let src = Mem {
                data: vec![0; len],
                extents: vec![],
                reads: Cell::new(0),
            };
            let out =
                transfer::<_, HashOnly>(&src, None, &mut NoLog, &opts(), &mut |_, _| true).unwrap();
            assert_eq!(out.digest, digest_bytes(&src.data));
            assert_eq!(out.bytes_read, 0);
        }
    }

    /// A parent of 17 MiB and a child of 21.5 MiB made from it: chunk 0
    /// the same, chunk 1 one block changed, chunk 2 discarded in the child
    /// (a hole over parent data), chunk 3 a hole in both, chunk 4 written
    /// past the parent's end, chunk 5 (short) a hole.
    fn parent_and_child() -> (Mem, Mem) {
        let mut parent = vec![0u8; 17 * MIB];
        Noise(7).fill(&mut parent[..12 * MIB]);
        Noise(8).fill(&mut parent[16 * MIB..]);
        let mut child = vec![0u8; 21 * MIB + MIB / 2];
        child[..17 * MIB].copy_from_slice(&parent);
        child[4 * MIB + 8192..4 * MIB + 12288].fill(0xab);
        child[8 * MIB..12 * MIB].fill(0);
        // Chunk 4 holds the parent's last MiB (16-17) and new data after it.
        Noise(9).fill(&mut child[17 * MIB..18 * MIB]);
        let ext = |v: &[(usize, usize)]| {
            v.iter()
                .map(|&(o, l)| Extent {
                    offset: o as u64,
                    len: l as u64,
                })
                .collect::<Vec<_>>()
        };
        (
            Mem {
                extents: ext(&[(0, 12 * MIB), (16 * MIB, MIB)]),
                data: parent,
                reads: Cell::new(0),
            },
            Mem {
                extents: ext(&[(0, 8 * MIB), (16 * MIB, 2 * MIB)]),
                data: child,
                reads: Cell::new(0),
            },
        )
    }

    struct Noise(u64);
    impl Noise {
        fn fill(&mut self, b: &mut [u8]) {
            for x in b {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
                *x = (self.0 >> 56) as u8 | 1;
            }
        }
    }

    #[test]
    fn a_copy_onto_a_clone_writes_only_what_differs_from_the_base_and_reads_equal() {
        let (parent, child) = parent_and_child();
        // The clone reads as the parent where nothing was written, zeros
        // past the parent's end.
        let mut start = parent.data.clone();
        start.resize(child.data.len(), 0);
        let dst = MemTarget {
            data: RefCell::new(start),
            written: RefCell::new(Vec::new()),
        };
        let out = transfer_onto(
            &child,
            Some(&parent),
            Some(&dst),
            &mut MemLog::default(),
            &opts(),
            &mut |_, _| true,
        )
        .unwrap();
        assert_eq!(
            *dst.data.borrow(),
            child.data,
            "the clone reads as the child"
        );
        assert_eq!(out.digest, digest_bytes(&child.data));
        let written: Vec<(u64, u64)> = dst
            .written
            .borrow()
            .iter()
            .map(|e| (e.offset, e.len))
            .collect();
        let m = MIB as u64;
        assert_eq!(
            written,
            [
                // The changed block of chunk 1.
                (4 * m + 8192, 4096),
                // Zeros over the parent's data in chunk 2.
                (8 * m, 4 * m),
                // Chunk 4: the new MiB after the parent's end, not the
                // parent's own last MiB.
                (17 * m, m),
            ],
            "nothing else is written: chunk 0 equals the parent's"
        );
        assert_eq!(out.bytes_written, 4096 + 4 * m + m);
    }

    #[test]
    fn a_copy_onto_a_clone_resumes_and_without_a_base_is_a_plain_copy() {
        let (parent, child) = parent_and_child();
        let mut start = parent.data.clone();
        start.resize(child.data.len(), 0);
        let dst = MemTarget {
            data: RefCell::new(start),
            written: RefCell::new(Vec::new()),
        };
        let mut log = MemLog::default();
        let one = Options { depth: 1, ..opts() };
        let err = transfer_onto(
            &child,
            Some(&parent),
            Some(&dst),
            &mut log,
            &one,
            &mut |done, _| done < 8 * MIB as u64,
        )
        .unwrap_err();
        assert!(matches!(err, TransferError::Stopped { .. }), "{err}");
        let out = transfer_onto(
            &child,
            Some(&parent),
            Some(&dst),
            &mut log,
            &opts(),
            &mut |_, _| true,
        )
        .unwrap();
        assert!(out.chunks_resumed >= 2, "{out:?}");
        assert_eq!(*dst.data.borrow(), child.data);
        assert_eq!(out.digest, digest_bytes(&child.data));
        // No base: the same as transfer, holes stay holes.
        let plain = MemTarget {
            data: RefCell::new(vec![0u8; child.data.len()]),
            written: RefCell::new(Vec::new()),
        };
        let out = transfer_onto(
            &child,
            None,
            Some(&plain),
            &mut MemLog::default(),
            &opts(),
            &mut |_, _| true,
        )
        .unwrap();
        assert_eq!(*plain.data.borrow(), child.data);
        assert_eq!(out.digest, digest_bytes(&child.data));
    }

    #[test]
    fn differing_blocks_are_found_on_block_boundaries() {
        let a = vec![0u8; 16384];
        let mut b = a.clone();
        b[5000] = 1;
        b[16383] = 2;
        assert_eq!(
            diff_runs(&a, &b, 0..16384, 4096),
            vec![4096..8192, 12288..16384]
        );
        assert!(diff_runs(&a, &a, 0..16384, 4096).is_empty());
    }

    #[test]
    fn zero_detection_sees_a_single_byte_anywhere() {
        let mut buf = vec![0u8; 200_000];
        assert!(is_zero(&buf));
        for at in [0, 65535, 65536, 199_999] {
            buf[at] = 1;
            assert!(!is_zero(&buf), "{at}");
            buf[at] = 0;
        }
    }

    #[test]
    fn zero_blocks_are_found_on_block_boundaries() {
        let mut buf = vec![0u8; 16384];
        buf[5000] = 1;
        buf[12288] = 1;
        assert_eq!(
            data_runs(&buf, 0..16384, 4096),
            vec![4096..8192, 12288..16384]
        );
        assert_eq!(
            data_runs(&buf, 4100..13000, 4096),
            vec![4100..8192, 12288..13000]
        );
        buf[9000] = 1;
        assert_eq!(data_runs(&buf, 0..16384, 4096), vec![4096..16384]);
    }
}
