//! The receiving side: takes the sender's frames, checks each chunk's hash
//! on the bytes that arrived, writes data and zeroes holes as the target
//! needs, and records in its log only what the target holds durably.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{State, TargetIdentity};
use super::{
    kind, next_frame, parse_index, parse_json, read_exact, read_header, read_magic, unexpected,
    write_frame, write_json, write_magic, Done, End, ErrorMessage, Hello, Ready, StreamError,
    PROTOCOL,
};
use crate::transfer::digest::{
    chunk_count, chunk_hash, chunk_len, to_hex, zero_hash, ChunkHash, CHUNK_SIZE,
};
use crate::transfer::engine::InOrder;
use crate::transfer::file::{FileTarget, Kind, Zeroed};
use crate::transfer::rbd::{RbdLocation, RbdTarget};
use crate::transfer::{ChunkLog, PendingWrite, Result, Target};

/// What the receiver needs of a target besides writing: clearing (where the
/// source has holes and the target is not known to read as zeros), reading
/// back (to check what its record vouches for), and what it is.
trait Receiving: Target {
    fn clear(&self, offset: u64, len: u64) -> Result<()>;
    /// `len` bytes at `offset`, read from the target.
    fn read_back(&self, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// What the target is, with the mark it carries ([`TargetIdentity`]).
    fn identity(&self) -> Result<TargetIdentity>;
    /// Writes the record's mark into the target; false where it takes none.
    fn set_mark(&self, mark: &str) -> Result<bool>;
}

impl Receiving for FileTarget {
    fn clear(&self, offset: u64, len: u64) -> Result<()> {
        self.zero(offset, len)
    }

    fn read_back(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        FileTarget::read_back(self, offset, len)
    }

    fn identity(&self) -> Result<TargetIdentity> {
        Ok(TargetIdentity {
            what: FileTarget::identity(self)?,
            mark: self.mark()?,
        })
    }

    fn set_mark(&self, mark: &str) -> Result<bool> {
        FileTarget::set_mark(self, mark)
    }
}

impl Receiving for RbdTarget<'_, '_> {
    fn clear(&self, offset: u64, len: u64) -> Result<()> {
        self.zero(offset, len)
    }

    fn read_back(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        RbdTarget::read_back(self, offset, len)
    }

    /// An image's id is never given to another image: it is the mark.
    fn identity(&self) -> Result<TargetIdentity> {
        Ok(TargetIdentity {
            what: format!("rbd image id {}", self.id()?),
            mark: None,
        })
    }

    fn set_mark(&self, _: &str) -> Result<bool> {
        Ok(false)
    }
}

/// The sender, as errors name it.
const FROM: &str = "the sender";

/// How far ahead of the chunk being written the record moves the start
/// of the region known to read as zeros: one durable update per 4 GiB.
const ZERO_STEP: u64 = 1024;

/// Tuning of a receiver.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    /// Where the record of the target lives; None: beside a regular-file
    /// target (a block device needs one).
    pub state_dir: Option<PathBuf>,
    /// Whether the target reads as zeros where nothing was written.
    pub zeroed: Zeroed,
    /// Chunks being written at once.
    pub depth: usize,
    /// How often finished chunks are flushed and logged, at most ...
    pub record_every: Duration,
    /// ... or after this many.
    pub record_chunks: usize,
    /// For tests: ends the process, as a kill would, once this many chunks
    /// of data are logged.
    pub crash_after_chunks: Option<u64>,
}

impl Default for ReceiveOptions {
    fn default() -> ReceiveOptions {
        ReceiveOptions {
            state_dir: None,
            zeroed: Zeroed::Auto,
            depth: 16,
            record_every: Duration::from_secs(2),
            record_chunks: 64,
            crash_after_chunks: None,
        }
    }
}

/// What a receiver did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReceiveReport {
    /// The digest of what the target holds now.
    pub digest: String,
    /// Whether it equals the source's (the sender's `END`).
    pub equal: bool,
    pub size: u64,
    pub chunks: u64,
    /// Chunks the log held when the stream began.
    pub chunks_resumed: u64,
    /// Why the log of an earlier run was dropped after all (the target no
    /// longer held what it listed).
    pub restarted: Option<String>,
    /// Chunks kept because the target held them already.
    pub chunks_held: u64,
    /// Chunks written now.
    pub chunks_written: u64,
    /// Hole chunks zeroed now (the target did not read as zeros there).
    pub chunks_zeroed: u64,
    pub bytes_written: u64,
    pub seconds: f64,
}

/// The default record directory of a regular-file target.
fn default_state_dir(path: &Path) -> PathBuf {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join(".ferry-stream")
}

/// Receives a stream from `input` into the file or block device `path`,
/// answering on `output`. Chunks finished are recorded also when it
/// fails, so a re-run resumes. Any failure is also sent to the sender as
/// an `ERROR` frame (when the stream still takes one).
pub fn receive(
    path: &Path,
    input: &mut impl Read,
    output: &mut impl Write,
    opts: &ReceiveOptions,
) -> Result<ReceiveReport> {
    let result = receive_inner(path, input, output, opts);
    if let Err(e) = &result {
        let _ = write_json(output, kind::ERROR, &ErrorMessage::of(e));
        let _ = output.flush();
    }
    result
}

fn receive_inner(
    path: &Path,
    input: &mut impl Read,
    output: &mut impl Write,
    opts: &ReceiveOptions,
) -> Result<ReceiveReport> {
    let start = Instant::now();
    // The answer opens before anything can fail, the sender's magic
    // included (it may end before sending it), so that an ERROR frame
    // after it is read as one.
    write_magic(output)?;
    read_magic(input, FROM)?;
    let mut buf = Vec::new();
    let k = next_frame(input, &mut buf, FROM)?;
    if k != kind::HELLO {
        return Err(unexpected(k, &buf, "HELLO", FROM).into());
    }
    let hello: Hello = parse_json(&buf, "HELLO", FROM)?;
    // Nothing is sized by the sender's numbers before they are checked.
    hello.check()?;
    if let Some(location) = path.to_str().and_then(RbdLocation::parse) {
        let location = location.map_err(StreamError::Protocol)?;
        let dir = opts.state_dir.clone().ok_or_else(|| {
            StreamError::Protocol(format!(
                "{} is an RBD image: give --state-dir, a directory for the record of what it holds",
                path.display()
            ))
        })?;
        if location.snap.is_some() {
            return Err(StreamError::Protocol(format!(
                "{}: a snapshot cannot be written",
                path.display()
            ))
            .into());
        }
        let cluster =
            crate::ceph::Cluster::connect_with(&location.cluster, super::agent::RBD_TIMEOUTS)?;
        let pool = cluster.pool(&location.pool)?;
        // Made when missing (reads as zeros then); an image given must be
        // large enough (a volume may be larger than its source).
        let made = match pool.open_image(&location.image) {
            Ok(_) => false,
            Err(e) if e.kind() == crate::ceph::ErrorKind::NotFound => {
                pool.create_image(&location.image, hello.size, crate::ceph::Features::DEFAULT)?;
                true
            }
            Err(e) => return Err(e.into()),
        };
        let image = pool.open_image(&location.image)?;
        let have = image.info()?.size;
        if have < hello.size {
            return Err(StreamError::Protocol(format!(
                "{} holds {have} bytes, the source {}",
                path.display(),
                hello.size
            ))
            .into());
        }
        let zeroed = match opts.zeroed {
            Zeroed::Yes => true,
            Zeroed::No => false,
            Zeroed::Auto => made,
        };
        let target = RbdTarget::new(&image);
        return receive_into(
            &target, zeroed, made, &dir, path, hello, input, output, opts, start,
        );
    }
    let made = !path.exists();
    let target = FileTarget::open(path, hello.size, opts.zeroed)?;
    let dir = match (&opts.state_dir, target.kind()) {
        (Some(d), _) => d.clone(),
        (None, Kind::File) => default_state_dir(path),
        (None, Kind::BlockDevice) => {
            return Err(StreamError::Protocol(format!(
            "{} is a block device: give --state-dir, a directory for the record of what it holds",
            path.display()
        ))
            .into())
        }
    };
    let zeroed = target.is_zeroed();
    receive_into(
        &target, zeroed, made, &dir, path, hello, input, output, opts, start,
    )
}

/// Receives the chunks after `HELLO` into `target`, opened, with the
/// record of what it holds in `dir`.
#[allow(clippy::too_many_arguments)]
fn receive_into<T: Receiving>(
    target: &T,
    zeroed: bool,
    made: bool,
    dir: &Path,
    path: &Path,
    hello: Hello,
    input: &mut impl Read,
    output: &mut impl Write,
    opts: &ReceiveOptions,
    start: Instant,
) -> Result<ReceiveReport> {
    let what = target.identity()?;
    let (mut state, mut trusted) = State::open(dir, path, &what, &hello, zeroed, made)?;
    let chunks = chunk_count(hello.size);
    let mut have = state.entries(chunks)?;
    // The log vouches for chunks only while the target still holds them:
    // a sample is read back first.
    let restarted = if trusted {
        spot_check(target, &have, hello.size, path)?
    } else {
        None
    };
    if let Some(why) = &restarted {
        tracing::warn!(target = %path.display(), "{why}");
        trusted = false;
    }
    if !trusted {
        // The target carries the mark before the record names it: a crash
        // between the two leaves them apart, and the next run starts afresh.
        let mark = new_mark();
        let kept = target.set_mark(&mark)?;
        state.start_afresh(zeroed, kept.then_some(mark))?;
        have = state.entries(chunks)?;
    }
    let resumed = have.iter().filter(|h| h.is_some()).count() as u64;
    tracing::info!(
        target = %path.display(),
        resumed,
        zero_from = state.zero_from(),
        "receiving {} bytes from {}",
        hello.size,
        hello.identity
    );
    write_json(
        output,
        kind::READY,
        &Ready {
            protocol: PROTOCOL,
            zeroed: state.zero_from() == 0,
            resumed,
            restarted: restarted.clone(),
        },
    )?;
    let listed: Vec<(u64, ChunkHash)> = have
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.map(|h| (i as u64, h)))
        .collect();
    for batch in listed.chunks(1024) {
        let mut payload = Vec::with_capacity(batch.len() * 40);
        for (i, h) in batch {
            payload.extend_from_slice(&i.to_le_bytes());
            payload.extend_from_slice(h);
        }
        write_frame(output, kind::HAVE, &payload)?;
    }
    write_frame(output, kind::HAVE_END, &[])?;
    output.flush().map_err(|e| StreamError::Io {
        what: "writing to the sender".into(),
        error: e,
    })?;

    let mut run = Run {
        target,
        zero_from_start: state.zero_from(),
        state: &mut state,
        size: hello.size,
        chunks,
        have,
        seen: vec![false; chunks as usize],
        order: InOrder::new(),
        writing: VecDeque::new(),
        unrecorded: Vec::new(),
        last_record: Instant::now(),
        recorded_data: 0,
        buffers: Vec::new(),
        opts,
        report: ReceiveReport {
            restarted,
            digest: String::new(),
            equal: false,
            size: hello.size,
            chunks,
            chunks_resumed: resumed,
            chunks_held: 0,
            chunks_written: 0,
            chunks_zeroed: 0,
            bytes_written: 0,
            seconds: 0.0,
        },
    };
    let end = run.frames(input);
    // Keep what is finished, also on failure: a re-run resumes.
    let drained = run.drain();
    let recorded = drained.and_then(|()| run.record());
    let end = end?;
    recorded?;
    if run.order.digest.chunks() != chunks || end.chunks != chunks {
        return Err(StreamError::Protocol(format!(
            "the sender ended after {} of {chunks} chunks",
            run.order.digest.chunks()
        ))
        .into());
    }
    let mut report = run.report;
    report.digest = std::mem::replace(&mut run.order, InOrder::new())
        .digest
        .finish();
    report.equal = report.digest == end.digest;
    report.seconds = start.elapsed().as_secs_f64();
    write_json(
        output,
        kind::DONE,
        &Done {
            digest: report.digest.clone(),
            equal: report.equal,
            chunks_written: report.chunks_written,
            chunks_zeroed: report.chunks_zeroed,
            chunks_held: report.chunks_held,
            bytes_written: report.bytes_written,
        },
    )?;
    output.flush().map_err(|e| StreamError::Io {
        what: "writing to the sender".into(),
        error: e,
    })?;
    if !report.equal {
        return Err(StreamError::DigestDiffers {
            source_digest: end.digest,
            target_digest: report.digest,
        }
        .into());
    }
    Ok(report)
}

/// Held chunks read back before a log is trusted: 16 chunks (64 MiB) cost
/// a second or so, and a target replaced or overwritten behind the log's
/// back differs in nearly every chunk it held.
const SPOT_CHECK: usize = 16;

/// Reads back a sample of the chunks the log lists ([`spot_positions`])
/// and compares each with its logged hash. Returns why the log cannot be
/// trusted, or None.
fn spot_check<T: Receiving>(
    target: &T,
    have: &[Option<ChunkHash>],
    size: u64,
    path: &Path,
) -> Result<Option<String>> {
    let held: Vec<u64> = have
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.map(|_| i as u64))
        .collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize);
    for p in spot_positions(held.len(), SPOT_CHECK, seed) {
        let index = held[p];
        let want = have[index as usize].expect("a held chunk");
        let data = target.read_back(index * CHUNK_SIZE, chunk_len(size, index))?;
        if chunk_hash(&data) != want {
            return Ok(Some(format!(
                "{}: chunk {index} no longer holds what the record of an earlier run says (the target was replaced or written since): streaming it afresh",
                path.display()
            )));
        }
    }
    Ok(None)
}

/// Which of `n` held chunks a spot check reads: all of them up to `k`,
/// else `k` spread evenly, shifted by `seed` within their stride (so that
/// runs check different ones), the first and the last always. Pure.
pub(super) fn spot_positions(n: usize, k: usize, seed: usize) -> Vec<usize> {
    if n <= k {
        return (0..n).collect();
    }
    let stride = n / k;
    let mut out: Vec<usize> = (0..k).map(|j| j * stride + seed % stride).collect();
    out[0] = 0;
    out[k - 1] = n - 1;
    out
}

/// A token no other record uses.
fn new_mark() -> String {
    use sha2::{Digest as _, Sha256};
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let d = Sha256::digest(format!("{t}:{}:{:p}", std::process::id(), &t).as_bytes());
    to_hex(&d.into())[..32].to_string()
}

/// A chunk being written.
struct Writing<W> {
    index: u64,
    hash: ChunkHash,
    data: Arc<Vec<u8>>,
    writes: Vec<W>,
}

struct Run<'a, T: Target> {
    target: &'a T,
    state: &'a mut State,
    /// Chunks from here on read as zeros until this run writes them.
    zero_from_start: u64,
    size: u64,
    chunks: u64,
    /// What the log held when the stream began.
    have: Vec<Option<ChunkHash>>,
    /// Chunks a frame has come for.
    seen: Vec<bool>,
    order: InOrder,
    writing: VecDeque<Writing<T::Write<'a>>>,
    /// Finished chunks not yet flushed and logged: (index, hash, data?).
    unrecorded: Vec<(u64, ChunkHash, bool)>,
    last_record: Instant,
    recorded_data: u64,
    buffers: Vec<Vec<u8>>,
    opts: &'a ReceiveOptions,
    report: ReceiveReport,
}

impl<'a, T: Receiving> Run<'a, T> {
    /// Takes frames until `END`.
    fn frames(&mut self, input: &mut impl Read) -> Result<End> {
        let mut small = Vec::new();
        loop {
            let (k, len) = read_header(input, FROM)?.ok_or_else(|| StreamError::Ended {
                from: FROM.into(),
                detail: String::new(),
            })?;
            match k {
                kind::DATA => self.data(input, len)?,
                kind::HOLE | kind::HELD | kind::END | kind::ERROR => {
                    small.clear();
                    small.resize(len as usize, 0);
                    read_exact(input, &mut small, FROM)?;
                    match k {
                        kind::HOLE => self.hole(parse_index(&small, FROM)?)?,
                        kind::HELD => self.held(parse_index(&small, FROM)?)?,
                        kind::END => return Ok(parse_json(&small, "END", FROM)?),
                        _ => return Err(unexpected(k, &small, "a chunk", FROM).into()),
                    }
                }
                other => return Err(unexpected(other, &[], "a chunk", FROM).into()),
            }
            self.reap()?;
            if self.unrecorded.len() >= self.opts.record_chunks.max(1)
                || (!self.unrecorded.is_empty()
                    && self.last_record.elapsed() >= self.opts.record_every)
            {
                self.record()?;
            }
        }
    }

    /// Checks that `index` is a chunk no frame has come for yet.
    fn claim(&mut self, index: u64) -> Result<usize> {
        if index >= self.chunks || self.seen[index as usize] {
            return Err(StreamError::Protocol(format!(
                "the sender sent chunk {index} {} (of {})",
                if index >= self.chunks {
                    "beyond the image"
                } else {
                    "twice"
                },
                self.chunks
            ))
            .into());
        }
        self.seen[index as usize] = true;
        Ok(index as usize)
    }

    fn held(&mut self, index: u64) -> Result<()> {
        let i = self.claim(index)?;
        let Some(h) = self.have[i] else {
            return Err(StreamError::Protocol(format!(
                "the sender took chunk {index} as held, which this side does not hold"
            ))
            .into());
        };
        self.order.add(index, h);
        self.report.chunks_held += 1;
        Ok(())
    }

    /// Whether chunk `i` reads as zeros now.
    fn reads_zeros(&self, i: usize, len: usize) -> bool {
        match self.have[i] {
            Some(h) => h == zero_hash(len),
            None => i as u64 >= self.zero_from_start,
        }
    }

    /// Before chunk `i` changes: its log entry goes (durably), and the
    /// region known to read as zeros starts after it (durably).
    fn before_change(&mut self, i: usize) -> Result<()> {
        if self.have[i].is_some() {
            self.state.log.forget(i as u64)?;
        }
        if i as u64 >= self.state.zero_from() {
            self.state
                .advance_zero_from((i as u64 + ZERO_STEP).min(self.chunks))?;
        }
        Ok(())
    }

    fn hole(&mut self, index: u64) -> Result<()> {
        let i = self.claim(index)?;
        let len = chunk_len(self.size, index);
        let zero = zero_hash(len);
        if self.have[i] == Some(zero) {
            self.report.chunks_held += 1;
        } else {
            if !self.reads_zeros(i, len) {
                self.before_change(i)?;
                self.target.clear(index * CHUNK_SIZE, len as u64)?;
                self.report.chunks_zeroed += 1;
            }
            // Logged once flushed, so that a later run knows it is zeros.
            self.unrecorded.push((index, zero, false));
        }
        self.order.add(index, zero);
        Ok(())
    }

    /// A `DATA` frame of `len` bytes: its runs are read straight into a
    /// chunk buffer, the chunk hashed and compared, then written.
    fn data(&mut self, input: &mut impl Read, len: u32) -> Result<()> {
        let mut head = [0u8; 44];
        if (len as usize) < head.len() {
            return Err(StreamError::Protocol(format!("a DATA frame of {len} bytes")).into());
        }
        read_exact(input, &mut head, FROM)?;
        let index = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let want: ChunkHash = head[8..40].try_into().expect("32 bytes");
        let nruns = u32::from_le_bytes(head[40..44].try_into().expect("4 bytes")) as usize;
        let i = self.claim(index)?;
        let clen = chunk_len(self.size, index);
        let rest = len as usize - head.len();
        if nruns.saturating_mul(8) > rest {
            return Err(StreamError::Protocol(format!(
                "chunk {index}: a run table of {nruns} runs in a frame of {len} bytes"
            ))
            .into());
        }
        let mut table = vec![0u8; nruns * 8];
        read_exact(input, &mut table, FROM)?;
        let mut runs: Vec<Range<usize>> = Vec::with_capacity(nruns);
        let mut at = 0usize;
        for e in table.chunks(8) {
            let s = u32::from_le_bytes(e[..4].try_into().expect("4 bytes")) as usize;
            let l = u32::from_le_bytes(e[4..].try_into().expect("4 bytes")) as usize;
            if s < at || l == 0 || s + l > clen {
                return Err(StreamError::Protocol(format!(
                    "chunk {index}: run {s}+{l} out of order or outside the chunk of {clen} bytes"
                ))
                .into());
            }
            runs.push(s..s + l);
            at = s + l;
        }
        let bytes: usize = runs.iter().map(|r| r.len()).sum();
        if bytes != rest - nruns * 8 {
            return Err(StreamError::Protocol(format!(
                "chunk {index}: runs of {bytes} bytes in a frame carrying {}",
                rest - nruns * 8
            ))
            .into());
        }
        let mut buf = self.buffers.pop().unwrap_or_default();
        buf.clear();
        buf.resize(clen, 0);
        for r in &runs {
            read_exact(input, &mut buf[r.clone()], FROM)?;
        }
        let got = chunk_hash(&buf);
        if got != want {
            return Err(StreamError::Damaged {
                index,
                got: to_hex(&got),
                want: to_hex(&want),
            }
            .into());
        }
        let zeros = self.reads_zeros(i, clen);
        self.before_change(i)?;
        if !zeros {
            // The target may hold anything between the runs.
            let mut from = 0;
            for r in runs.iter().chain(std::iter::once(&(clen..clen))) {
                if r.start > from {
                    self.target
                        .clear(index * CHUNK_SIZE + from as u64, (r.start - from) as u64)?;
                }
                from = r.end;
            }
        }
        let data = Arc::new(buf);
        let writes = self.target.write_chunk(index, &want, &data, runs)?;
        self.report.chunks_written += 1;
        self.report.bytes_written += bytes as u64;
        self.order.add(index, want);
        self.writing.push_back(Writing {
            index,
            hash: want,
            data,
            writes,
        });
        // Bounded memory: wait for the oldest when too many are in flight.
        while self.writing.len() > self.opts.depth.max(1) {
            let w = self.writing.pop_front().expect("non-empty");
            self.finish(w)?;
        }
        Ok(())
    }

    /// Takes the writes that finished, in order.
    fn reap(&mut self) -> Result<()> {
        while self
            .writing
            .front()
            .is_some_and(|w| w.writes.iter().all(|x| x.is_complete()))
        {
            let w = self.writing.pop_front().expect("front");
            self.finish(w)?;
        }
        Ok(())
    }

    fn finish(&mut self, w: Writing<T::Write<'a>>) -> Result<()> {
        for x in w.writes {
            x.wait()?;
        }
        self.unrecorded.push((w.index, w.hash, true));
        if let Ok(buf) = Arc::try_unwrap(w.data) {
            self.buffers.push(buf);
        }
        Ok(())
    }

    /// Waits for every write in flight (all of them, also after a failed
    /// one, so none is left running).
    fn drain(&mut self) -> Result<()> {
        let mut first = Ok(());
        while let Some(w) = self.writing.pop_front() {
            if let Err(e) = self.finish(w) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Flushes the target and logs the chunks it now holds durably.
    fn record(&mut self) -> Result<()> {
        self.last_record = Instant::now();
        if self.unrecorded.is_empty() {
            return Ok(());
        }
        self.target.flush()?;
        // The test hook dies with exactly that many data chunks logged.
        if let Some(n) = self.opts.crash_after_chunks {
            self.unrecorded.sort_by_key(|(i, _, _)| *i);
            let mut room = n.saturating_sub(self.recorded_data);
            self.unrecorded.retain(|(_, _, data)| {
                if !data {
                    return true;
                }
                let keep = room > 0;
                room = room.saturating_sub(1);
                keep
            });
        }
        let entries: Vec<(u64, ChunkHash)> =
            self.unrecorded.iter().map(|(i, h, _)| (*i, *h)).collect();
        self.state.log.record(&entries)?;
        self.recorded_data += self.unrecorded.iter().filter(|(_, _, d)| *d).count() as u64;
        self.unrecorded.clear();
        if self
            .opts
            .crash_after_chunks
            .is_some_and(|n| self.recorded_data >= n)
        {
            std::process::abort();
        }
        Ok(())
    }
}
