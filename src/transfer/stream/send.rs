//! The sending side: learns what the receiver holds, walks the source with
//! the engine (allocated data only, every chunk hashed), and frames each
//! chunk as a hole, as held (the receiver's copy hashes the same) or as
//! data (only its non-zero runs).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::{
    kind, next_frame, parse_have, parse_json, read_magic, unexpected, write_index, write_json,
    write_magic, Done, End, ErrorMessage, Hello, Ready, StreamError, PROTOCOL,
};
use crate::transfer::digest::{chunk_count, chunk_len, zero_hash, ChunkHash, CHUNK_SIZE};
use crate::transfer::engine::{transfer, Options};
use crate::transfer::{NoLog, PendingWrite, Result, Source, Target};

/// The receiver, as errors name it.
const FROM: &str = "the receiver";

/// What a sender did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SendReport {
    /// The source's digest.
    pub digest: String,
    /// The receiver's digest of what its target holds.
    pub target_digest: String,
    pub size: u64,
    pub chunks: u64,
    /// Bytes read from the source (its allocated data).
    pub bytes_read: u64,
    /// Bytes of chunk data sent.
    pub bytes_sent: u64,
    /// Chunks sent as data.
    pub chunks_sent: u64,
    /// Data chunks the receiver already held.
    pub chunks_held: u64,
    /// Chunks sent as holes.
    pub chunks_hole: u64,
    pub seconds: f64,
}

/// Sends `source` (named `identity`, or by its own
/// [`Source::identity`]) to the receiver at the other end of `input` and
/// `output`, with the engine tuned by `opts`. Returns when the receiver
/// confirmed that it holds it all with an equal digest. Failures are also
/// sent to the receiver as an `ERROR` frame.
pub fn send<S: Source>(
    source: &S,
    identity: Option<&str>,
    input: &mut impl Read,
    output: &mut impl Write,
    opts: &Options,
) -> Result<SendReport> {
    let start = Instant::now();
    let result = send_inner(source, identity, input, output, opts, start);
    if let Err(e) = &result {
        // Not for the receiver's own errors: it knows them.
        if !matches!(
            e,
            crate::transfer::TransferError::Stream(StreamError::Remote { .. })
        ) {
            let _ = write_json(output, kind::ERROR, &ErrorMessage::of(e));
            let _ = output.flush();
        }
    }
    result
}

fn send_inner<S: Source>(
    source: &S,
    identity: Option<&str>,
    input: &mut impl Read,
    output: &mut impl Write,
    opts: &Options,
    start: Instant,
) -> Result<SendReport> {
    let size = source.size();
    write_magic(output)?;
    write_json(
        output,
        kind::HELLO,
        &Hello {
            protocol: PROTOCOL,
            identity: identity.map_or_else(|| source.identity(), str::to_string),
            size,
            chunk_size: CHUNK_SIZE,
        },
    )?;
    flush(output)?;
    read_magic(input, FROM)?;
    let mut buf = Vec::new();
    let k = next_frame(input, &mut buf, FROM)?;
    if k != kind::READY {
        return Err(unexpected(k, &buf, "READY", FROM).into());
    }
    let ready: Ready = parse_json(&buf, "READY", FROM)?;
    let mut have = HashMap::new();
    let chunks = chunk_count(size);
    loop {
        match next_frame(input, &mut buf, FROM)? {
            kind::HAVE => {
                for (index, hash) in parse_have(&buf, FROM)? {
                    // Bounded by the image: a receiver cannot grow this map.
                    if index >= chunks || have.insert(index, hash).is_some() {
                        return Err(StreamError::Protocol(format!(
                            "{FROM} listed chunk {index} {} (of {chunks})",
                            if index >= chunks {
                                "beyond the image"
                            } else {
                                "twice"
                            }
                        ))
                        .into());
                    }
                }
            }
            kind::HAVE_END => break,
            k => return Err(unexpected(k, &buf, "HAVE", FROM).into()),
        }
    }
    if let Some(why) = &ready.restarted {
        tracing::warn!("{FROM}: {why}");
    }
    tracing::info!(
        resumed = ready.resumed,
        zeroed = ready.zeroed,
        "sending {size} bytes"
    );
    let sink = Frames {
        out: RefCell::new(output),
        have,
        size,
        tally: RefCell::new(Tally::default()),
    };
    let out = transfer(source, Some(&sink), &mut NoLog, opts, &mut |_, _| true)?;
    let output = sink.out.into_inner();
    write_json(
        output,
        kind::END,
        &End {
            digest: out.digest.clone(),
            chunks: out.chunks,
            bytes_read: out.bytes_read,
        },
    )?;
    flush(output)?;
    let k = next_frame(input, &mut buf, FROM)?;
    if k != kind::DONE {
        return Err(unexpected(k, &buf, "DONE", FROM).into());
    }
    let done: Done = parse_json(&buf, "DONE", FROM)?;
    if done.digest != out.digest {
        return Err(StreamError::DigestDiffers {
            source_digest: out.digest,
            target_digest: done.digest,
        }
        .into());
    }
    let t = sink.tally.into_inner();
    Ok(SendReport {
        digest: out.digest,
        target_digest: done.digest,
        size,
        chunks: out.chunks,
        bytes_read: out.bytes_read,
        bytes_sent: t.bytes,
        chunks_sent: t.data,
        chunks_held: t.held,
        chunks_hole: t.holes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn flush(w: &mut impl Write) -> Result<()> {
    w.flush().map_err(|e| {
        StreamError::Io {
            what: "writing to the receiver".into(),
            error: e,
        }
        .into()
    })
}

#[derive(Default)]
struct Tally {
    data: u64,
    held: u64,
    holes: u64,
    bytes: u64,
}

/// The engine's target on the sending side: frames chunks into the stream.
struct Frames<'w, W: Write> {
    out: RefCell<&'w mut W>,
    /// What the receiver holds.
    have: HashMap<u64, ChunkHash>,
    size: u64,
    tally: RefCell<Tally>,
}

/// A frame is written when the engine hands the chunk over: nothing is
/// left in flight (the pipe's own buffer and the receiver pace it).
pub struct Sent;

impl PendingWrite for Sent {
    fn is_complete(&self) -> bool {
        true
    }

    fn wait(self) -> Result<()> {
        Ok(())
    }
}

impl<W: Write> Frames<'_, W> {
    fn put(&self, parts: &[&[u8]]) -> Result<()> {
        let mut out = self.out.borrow_mut();
        for p in parts {
            out.write_all(p).map_err(|e| StreamError::Io {
                what: "writing to the receiver".into(),
                error: e,
            })?;
        }
        Ok(())
    }
}

impl<W: Write> Target for Frames<'_, W> {
    type Write<'a>
        = Sent
    where
        Self: 'a;

    fn write(&self, offset: u64, _: Arc<Vec<u8>>, _: Range<usize>) -> Result<Sent> {
        Err(StreamError::Protocol(format!(
            "a stream takes whole chunks, not a write at {offset}"
        ))
        .into())
    }

    fn write_chunk(
        &self,
        index: u64,
        hash: &ChunkHash,
        data: &Arc<Vec<u8>>,
        runs: Vec<Range<usize>>,
    ) -> Result<Vec<Sent>> {
        let len = chunk_len(self.size, index);
        if runs.is_empty() && *hash == zero_hash(len) {
            // Allocated, but zeros: a hole to the receiver.
            return self.hole(index, len).map(|()| Vec::new());
        }
        let mut tally = self.tally.borrow_mut();
        if self.have.get(&index) == Some(hash) {
            tally.held += 1;
            let mut out = self.out.borrow_mut();
            write_index(&mut *out, kind::HELD, index)?;
            return Ok(Vec::new());
        }
        let bytes: usize = runs.iter().map(|r| r.len()).sum();
        let mut head = Vec::with_capacity(5 + 44 + runs.len() * 8);
        head.push(kind::DATA);
        head.extend_from_slice(&((44 + runs.len() * 8 + bytes) as u32).to_le_bytes());
        head.extend_from_slice(&index.to_le_bytes());
        head.extend_from_slice(hash);
        head.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for r in &runs {
            head.extend_from_slice(&(r.start as u32).to_le_bytes());
            head.extend_from_slice(&(r.len() as u32).to_le_bytes());
        }
        let mut parts: Vec<&[u8]> = vec![&head];
        parts.extend(runs.iter().map(|r| &data[r.clone()]));
        self.put(&parts)?;
        tally.data += 1;
        tally.bytes += bytes as u64;
        Ok(Vec::new())
    }

    fn hole(&self, index: u64, _len: usize) -> Result<()> {
        self.tally.borrow_mut().holes += 1;
        let mut out = self.out.borrow_mut();
        write_index(&mut *out, kind::HOLE, index)?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        flush(&mut *self.out.borrow_mut())
    }
}
