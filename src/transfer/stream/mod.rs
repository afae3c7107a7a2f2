//! The stream path: an image moved between two hosts that share nothing
//! but a byte stream each way (the stdin and stdout of `ssh`).
//!
//! Three parts, each a ferry: the sender on the host that reads the source
//! ([`send()`]), the receiver on the host that writes the target
//! ([`receive()`]), and in between, wherever the operator runs it, the
//! relay that starts both over `ssh` and carries their bytes
//! ([`relay`]); the two hosts need no trust in each other.
//!
//! The protocol, version [`PROTOCOL`]. Each direction starts with the
//! 8 bytes [`MAGIC`] (the version is its last byte), then frames: a kind
//! byte, a payload length (u32, little-endian), the payload. Integers are
//! little-endian; control frames carry JSON.
//!
//! 1. sender → receiver `HELLO` {protocol, identity, size, chunk_size}.
//! 2. receiver → sender `READY` {protocol, zeroed, resumed}, then `HAVE`
//!    frames (entries of index u64 + SHA-256) listing the chunks its
//!    target durably holds from an earlier run, then `HAVE_END`.
//! 3. sender → receiver, one frame per chunk, in about chunk order: `HOLE`
//!    (index: no data), `HELD` (index: the receiver's chunk is the
//!    source's, by hash), `DATA` (index, SHA-256, a run table of
//!    (offset u32, length u32) within the chunk, then the runs' bytes; the
//!    rest of the chunk is zeros). Then `END` {digest, chunks, bytes_read}.
//! 4. receiver → sender `DONE` {digest, equal, ...} once all is durable.
//!
//! Either side may send `ERROR` {message} instead of what it owes and stop.
//! The receiver hashes every `DATA` chunk before writing it, keeps the
//! per-chunk log of what its target holds (only chunks flushed), and
//! computes the digest of what it holds; the sender's digest is of the
//! source. Resuming is by hash, not by trust: the sender reads and hashes
//! every allocated chunk and sends those the receiver lacks or holds
//! differently, so a source that changed between runs is caught up.

pub mod agent;
pub mod cipher;
mod receive;
pub mod relay;
mod send;
mod state;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use receive::{receive, ReceiveOptions, ReceiveReport};
pub use send::{send, SendReport};
pub use state::{state_paths, State, TargetIdentity};

use super::digest::{ChunkHash, CHUNK_SIZE};

/// The protocol version this ferry speaks.
pub const PROTOCOL: u32 = 1;

/// The first bytes of each direction: "FERRY", NUL, "S", the version.
pub const MAGIC: [u8; 8] = [b'F', b'E', b'R', b'R', b'Y', 0, b'S', PROTOCOL as u8];

/// How long without a byte before a side gives up, by default.
pub const DEFAULT_STALL: Duration = Duration::from_secs(crate::spec::DEFAULT_STALL_SECONDS);

/// The largest payload: a whole chunk and a run table for every 4 KiB
/// block of it.
const MAX_PAYLOAD: u32 = CHUNK_SIZE as u32 + 64 * 1024;

/// Frame kinds.
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const DATA: u8 = 2;
    pub const HOLE: u8 = 3;
    pub const HELD: u8 = 4;
    pub const END: u8 = 5;
    pub const ERROR: u8 = 9;
    pub const READY: u8 = 16;
    pub const HAVE: u8 = 17;
    pub const HAVE_END: u8 = 18;
    pub const DONE: u8 = 19;
}

/// Why a stream failed: each one named, so the operator knows which side
/// to look at.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Nothing moved for the stall timeout.
    #[error("{what} for {secs} s; the link or that side is stuck (the limit is --stall-timeout)")]
    Stalled { what: String, secs: u64 },
    /// The peer's stream ended before the protocol did.
    #[error("{from} ended mid-stream{detail}; running again resumes")]
    Ended { from: String, detail: String },
    /// The peer ended before it said anything (it could not start, or
    /// failed at once: its own words say why).
    #[error("{from} ended before the stream began{detail}")]
    NotStarted { from: String, detail: String },
    /// The bytes are not this protocol (a remote shell that prints, an
    /// old ferry) or break its rules.
    #[error("{0}")]
    Protocol(String),
    /// The other side reported an error.
    #[error("{side}: {message}")]
    Remote { side: String, message: String },
    /// A chunk's data does not hash to what the sender said.
    #[error("chunk {index} arrived damaged: its data hashes to {got}, the sender said {want}")]
    Damaged {
        index: u64,
        got: String,
        want: String,
    },
    /// The two ends disagree on the image.
    #[error("the target's digest {target_digest} differs from the source's {source_digest}")]
    DigestDiffers {
        source_digest: String,
        target_digest: String,
    },
    /// An agent ended with an error status.
    #[error("{side} failed ({status}){detail}")]
    AgentFailed {
        side: String,
        status: String,
        detail: String,
    },
    /// The stream could not be read or written, or a process not started.
    #[error("{what}: {error}")]
    Io { what: String, error: io::Error },
}

impl StreamError {
    /// Whether this is the consequence of the other side's failure (it
    /// ended, stalled, reported an error, or its pipe broke) rather than a
    /// failure of this side's own: the relay reports the cause first.
    pub fn peer_caused(&self) -> bool {
        matches!(
            self,
            StreamError::Ended { .. }
                | StreamError::NotStarted { .. }
                | StreamError::Remote { .. }
                | StreamError::Stalled { .. }
                | StreamError::Io { .. }
        )
    }
}

/// Whether `e` is the consequence of the other side's failure (see
/// [`StreamError::peer_caused`]).
pub fn peer_caused(e: &crate::transfer::TransferError) -> bool {
    matches!(e, crate::transfer::TransferError::Stream(s) if s.peer_caused())
}

/// `HELLO`: what the sender is about to send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// Names the source; a receiver resumes only a log of the same one.
    pub identity: String,
    pub size: u64,
    pub chunk_size: u64,
}

/// The largest image a receiver takes (64 TiB): its record holds 33 bytes
/// of memory per 4 MiB chunk, 0.5 GiB at this size.
pub const MAX_IMAGE_SIZE: u64 = 64 << 40;

/// The longest source identity a receiver records.
pub const MAX_IDENTITY: usize = 1024;

impl Hello {
    /// Checks what a sender announces before anything is sized by it: the
    /// protocol, the chunk size, an image size of at most
    /// [`MAX_IMAGE_SIZE`], an identity of at most [`MAX_IDENTITY`] bytes
    /// without control characters. (Whether the target holds that size is
    /// the target's own check.)
    pub fn check(&self) -> Result<(), StreamError> {
        if self.protocol != PROTOCOL || self.chunk_size != CHUNK_SIZE {
            return Err(StreamError::Protocol(format!(
                "the sender speaks protocol {} with {}-byte chunks, this ferry {PROTOCOL} with {CHUNK_SIZE}",
                self.protocol, self.chunk_size
            )));
        }
        if self.size > MAX_IMAGE_SIZE {
            return Err(StreamError::Protocol(format!(
                "the sender announces an image of {} bytes, more than the {MAX_IMAGE_SIZE} (64 TiB) a receiver takes",
                self.size
            )));
        }
        if self.identity.len() > MAX_IDENTITY || self.identity.chars().any(char::is_control) {
            return Err(StreamError::Protocol(format!(
                "the sender names its source with {} bytes{}: at most {MAX_IDENTITY}, no control characters",
                self.identity.len(),
                if self.identity.chars().any(char::is_control) {
                    " holding control characters"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }
}

/// `READY`: the receiver took the hello.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ready {
    pub protocol: u32,
    /// Whether the target reads as zeros where nothing was written.
    pub zeroed: bool,
    /// Chunks its log holds from an earlier run.
    pub resumed: u64,
    /// Why the receiver dropped its log of an earlier run (the target no
    /// longer held what it listed) and takes the whole image again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted: Option<String>,
}

/// `END`: all chunks went; the source's digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct End {
    pub digest: String,
    pub chunks: u64,
    pub bytes_read: u64,
}

/// `DONE`: the receiver holds it all, durably.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Done {
    /// The digest of what the target holds.
    pub digest: String,
    /// Whether it equals the sender's.
    pub equal: bool,
    pub chunks_written: u64,
    pub chunks_zeroed: u64,
    pub chunks_held: u64,
    pub bytes_written: u64,
}

/// `ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorMessage {
    pub message: String,
    /// The error follows from the other side's (see
    /// [`StreamError::peer_caused`]).
    #[serde(default)]
    pub peer: bool,
}

impl ErrorMessage {
    /// The frame that reports `e`.
    pub fn of(e: &crate::transfer::TransferError) -> ErrorMessage {
        ErrorMessage {
            message: e.to_string(),
            peer: peer_caused(e),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StreamError {
    let what = what.into();
    move |error| StreamError::Io { what, error }
}

/// Writes the magic bytes that open a direction.
pub fn write_magic(w: &mut impl Write) -> Result<(), StreamError> {
    w.write_all(&MAGIC).map_err(io_err("writing the stream"))
}

/// Reads the magic bytes that open a direction from `from` (a side's
/// name, for the errors).
pub fn read_magic(r: &mut impl Read, from: &str) -> Result<(), StreamError> {
    let mut got = [0u8; 8];
    let mut n = 0;
    while n < got.len() {
        match r.read(&mut got[n..]) {
            Ok(0) if n == 0 => {
                return Err(StreamError::NotStarted {
                    from: from.to_string(),
                    detail: String::new(),
                })
            }
            Ok(0) => return Err(ended(from)),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(format!("reading from {from}"))(e)),
        }
    }
    if got[..7] != MAGIC[..7] {
        return Err(StreamError::Protocol(format!(
            "{from} did not speak the ferry stream protocol: it began with {:?} (does a login script print to stdout?)",
            String::from_utf8_lossy(&got)
        )));
    }
    if got[7] != MAGIC[7] {
        return Err(StreamError::Protocol(format!(
            "{from} speaks stream protocol version {}, this ferry {PROTOCOL}: use the same ferry version on both hosts",
            got[7]
        )));
    }
    Ok(())
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> Result<(), StreamError> {
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    w.write_all(&head)
        .and_then(|()| w.write_all(payload))
        .map_err(io_err("writing the stream"))
}

/// Writes a JSON control frame.
pub fn write_json<T: serde::Serialize>(
    w: &mut impl Write,
    kind: u8,
    value: &T,
) -> Result<(), StreamError> {
    let body = serde_json::to_vec(value).expect("control frames serialise");
    write_frame(w, kind, &body)
}

/// Writes an index-only frame (`HOLE`, `HELD`).
pub fn write_index(w: &mut impl Write, kind: u8, index: u64) -> Result<(), StreamError> {
    write_frame(w, kind, &index.to_le_bytes())
}

/// Reads a frame header: (kind, payload length); None at a clean end of
/// the stream (between frames).
pub fn read_header(r: &mut impl Read, from: &str) -> Result<Option<(u8, u32)>, StreamError> {
    let mut head = [0u8; 5];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) if n == 0 => return Ok(None),
            Ok(0) => return Err(ended(from)),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(format!("reading from {from}"))(e)),
        }
    }
    let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD {
        return Err(StreamError::Protocol(format!(
            "{from} sent a frame of {len} bytes (kind {}), more than a chunk: not this protocol",
            head[0]
        )));
    }
    Ok(Some((head[0], len)))
}

fn ended(from: &str) -> StreamError {
    StreamError::Ended {
        from: from.to_string(),
        detail: String::new(),
    }
}

/// Reads exactly `buf.len()` bytes; an end of stream is [`StreamError::Ended`].
pub fn read_exact(r: &mut impl Read, buf: &mut [u8], from: &str) -> Result<(), StreamError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ended(from)
        } else {
            io_err(format!("reading from {from}"))(e)
        }
    })
}

/// Reads a frame's payload of `len` bytes into `buf`.
pub fn read_payload(
    r: &mut impl Read,
    len: u32,
    buf: &mut Vec<u8>,
    from: &str,
) -> Result<(), StreamError> {
    buf.clear();
    buf.resize(len as usize, 0);
    read_exact(r, buf, from)
}

/// Reads the next frame, which must exist: (kind, payload in `buf`).
pub fn next_frame(r: &mut impl Read, buf: &mut Vec<u8>, from: &str) -> Result<u8, StreamError> {
    let (kind, len) = read_header(r, from)?.ok_or_else(|| ended(from))?;
    read_payload(r, len, buf, from)?;
    Ok(kind)
}

/// Decodes a JSON control frame.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    what: &str,
    from: &str,
) -> Result<T, StreamError> {
    serde_json::from_slice(payload).map_err(|e| {
        StreamError::Protocol(format!(
            "{from} sent a {what} frame that does not parse: {e}"
        ))
    })
}

/// Decodes an index-only frame.
pub fn parse_index(payload: &[u8], from: &str) -> Result<u64, StreamError> {
    let b: [u8; 8] = payload.try_into().map_err(|_| {
        StreamError::Protocol(format!(
            "{from} sent an index frame of {} bytes",
            payload.len()
        ))
    })?;
    Ok(u64::from_le_bytes(b))
}

/// The error a peer's `ERROR` frame carries, or the complaint about an
/// unexpected frame.
pub fn unexpected(kind: u8, payload: &[u8], wanted: &str, from: &str) -> StreamError {
    if kind == kind::ERROR {
        let message = serde_json::from_slice::<ErrorMessage>(payload)
            .map(|m| m.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(payload).into_owned());
        return StreamError::Remote {
            side: from.to_string(),
            message,
        };
    }
    StreamError::Protocol(format!(
        "{from} sent a frame of kind {kind} where {wanted} was due"
    ))
}

/// The `HAVE` entries in a payload: (index, hash) pairs.
pub fn parse_have(payload: &[u8], from: &str) -> Result<Vec<(u64, ChunkHash)>, StreamError> {
    if !payload.len().is_multiple_of(40) {
        return Err(StreamError::Protocol(format!(
            "{from} sent a HAVE frame of {} bytes",
            payload.len()
        )));
    }
    Ok(payload
        .chunks(40)
        .map(|e| {
            (
                u64::from_le_bytes(e[..8].try_into().expect("8 bytes")),
                e[8..].try_into().expect("32 bytes"),
            )
        })
        .collect())
}

/// When a stream last moved, shared by the readers and writers that watch
/// it and the watchdog that ends it.
#[derive(Clone)]
pub struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Activity {
    /// Notes that bytes moved now.
    pub fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long since bytes last moved.
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// A reader or writer that notes each transfer in an [`Activity`].
pub struct Watched<T> {
    pub inner: T,
    pub activity: Activity,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.activity.touch();
        Ok(n)
    }
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.activity.touch();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;
