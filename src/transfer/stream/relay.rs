//! The relay: starts the sending and the receiving agent (`ferry agent
//! send|receive`, usually on two hosts over the system `ssh`, which
//! brings the operator's `~/.ssh/config`, keys and known hosts) and
//! carries the frames between them, both ways. The data passes through
//! the relay, so the two hosts need no trust in each other and no route
//! between them.
//!
//! The relay reads each frame it carries: it counts what went, sees both
//! digests, and tells why a stream ended: a side that stopped sending or
//! taking bytes for the stall timeout, a side that ended mid-stream (with
//! its exit status and last words), or an error a side reported.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    kind, parse_json, read_header, read_magic, read_payload, Activity, Done, End, ErrorMessage,
    Hello, Ready, StreamError, MAGIC,
};

mod command;

use command::agent_command;
pub use command::{
    agent_args, remote_command, shell_quote, ssh_command, RelayOptions, Remote, LOCAL,
};

/// What a stream did, as the relay saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamReport {
    pub source: String,
    pub target: String,
    /// The digest of the source, equal to the target's.
    pub digest: String,
    pub size: u64,
    pub chunks: u64,
    /// Data chunks sent now.
    pub chunks_sent: u64,
    /// Data chunks the target held from an earlier run, not sent again.
    pub chunks_resumed: u64,
    /// Chunks that are holes in the source (sent as a few bytes each).
    pub chunks_hole: u64,
    /// Holes the target had to zero (it did not read as zeros there).
    pub chunks_zeroed: u64,
    /// Bytes read from the source (its allocated data).
    pub bytes_read: u64,
    /// Bytes of chunk data sent.
    pub bytes_sent: u64,
    /// Bytes the whole stream carried from the source, frames included.
    pub bytes_carried: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
    pub seconds: f64,
    /// Why the receiver dropped the record of an earlier run and took the
    /// whole image again (its target no longer held what it listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted: Option<String>,
}

/// Streams `from` to `to` through two `ssh` connections.
pub fn stream(
    from: &Remote,
    to: &Remote,
    opts: &RelayOptions,
) -> Result<StreamReport, StreamError> {
    stream_observed(from, to, opts, &mut |_, _| {})
}

/// [`stream`], telling `progress` how far it is (see [`relay_observed`]).
pub fn stream_observed(
    from: &Remote,
    to: &Remote,
    opts: &RelayOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<StreamReport, StreamError> {
    let (send, receive) = agent_args(from, to, opts);
    let target_opts = match &opts.target_ferry {
        Some(f) => RelayOptions {
            remote_ferry: f.clone(),
            ..opts.clone()
        },
        None => opts.clone(),
    };
    let mut report = relay_observed(
        agent_command(&from.host, opts, &send)?,
        agent_command(&to.host, &target_opts, &receive)?,
        &format!("the source agent on {}", from.host),
        &format!("the destination agent on {}", to.host),
        opts.stall,
        progress,
    )?;
    report.source = from.to_string();
    report.target = to.to_string();
    Ok(report)
}

/// What the relay saw pass.
#[derive(Default)]
struct Tally {
    hello: Option<Hello>,
    ready: Option<Ready>,
    end: Option<End>,
    done: Option<Done>,
    /// `ERROR` frames: (from the source side, message, caused by the
    /// other side).
    errors: Vec<(bool, String, bool)>,
    /// The receiver finished listing what it holds: chunks flow now.
    streaming: bool,
    data: u64,
    held: u64,
    holes: u64,
    bytes_sent: u64,
    bytes_carried: u64,
}

impl Tally {
    /// Bytes of the source passed (sent, held or holes) and its size, once
    /// its HELLO did.
    fn passed(&self) -> Option<(u64, u64)> {
        self.hello.as_ref().map(|h| {
            let chunks = self
                .data
                .saturating_add(self.held)
                .saturating_add(self.holes);
            (chunks.saturating_mul(h.chunk_size).min(h.size), h.size)
        })
    }

    /// Whether it is the source's turn to send, by the protocol's step.
    fn source_owes(&self) -> bool {
        match (
            self.hello.is_some(),
            self.streaming,
            self.end.is_some(),
            self.done.is_some(),
        ) {
            (false, ..) => true,
            (true, false, ..) => false,
            (true, true, false, _) => true,
            (true, true, true, done) => done,
        }
    }
}

/// The tally, whoever else panicked holding it.
fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a side may take to end (and say why) once the stream ended,
/// or once the other side failed.
const GRACE: Duration = Duration::from_secs(5);

/// One direction's state, for the stall check.
#[derive(Default)]
struct Direction {
    activity: Activity,
    /// Blocked handing bytes to the agent at the far end.
    writing: AtomicBool,
}

/// How a direction ended.
enum Ended {
    /// After the last frame it owed.
    Clean,
    /// Its agent's output ended early.
    Early,
    /// The agent at the far end stopped taking bytes (exited).
    Gone,
    /// Anything else (bytes that are not the protocol, a read error).
    Failed(StreamError),
}

/// The last lines an agent wrote to stderr (each also shown, prefixed).
#[derive(Clone, Default)]
struct Words(Arc<Mutex<VecDeque<String>>>);

impl Words {
    fn last(&self) -> Option<String> {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().rev().find(|l| !l.trim().is_empty()).cloned()
    }
}

fn collect_stderr(child: &mut Child, prefix: String) -> Words {
    let words = Words::default();
    if let Some(err) = child.stderr.take() {
        let w = words.clone();
        // Not joined: an ssh master connection may hold the pipe open.
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                eprintln!("{prefix}: {line}");
                let mut l = w.0.lock().unwrap_or_else(|e| e.into_inner());
                l.push_back(line);
                if l.len() > 20 {
                    l.pop_front();
                }
            }
        });
    }
    words
}

/// Kills and reaps the agents' processes unless they were reaped.
struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

fn spawn(mut cmd: Command, name: &str) -> Result<Child, StreamError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| StreamError::Io {
            what: format!("starting {name} ({:?})", cmd.get_program()),
            error: e,
        })
}

/// Runs the sending agent `source` and the receiving agent `target`
/// (commands whose stdin and stdout are the protocol, e.g. from
/// [`ssh_command`]), carries their frames, and returns what passed once
/// both ended well and their digests agree. `source_name` and
/// `target_name` name them in errors.
pub fn relay(
    source: Command,
    target: Command,
    source_name: &str,
    target_name: &str,
    stall: Duration,
) -> Result<StreamReport, StreamError> {
    relay_observed(
        source,
        target,
        source_name,
        target_name,
        stall,
        &mut |_, _| {},
    )
}

/// [`relay`], telling `progress` (bytes of the source passed: sent, held
/// or holes; its size) about twice a second.
pub fn relay_observed(
    source: Command,
    target: Command,
    source_name: &str,
    target_name: &str,
    stall: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<StreamReport, StreamError> {
    let start = Instant::now();
    let (mut agents, sides, pipes) = start_agents(source, target, source_name, target_name)?;
    let carrying = start_carrying(pipes, &sides);
    let (endings, stalled) = watch(&carrying, stall, &sides, progress);
    let statuses = reap(&mut agents, stalled.is_some(), stall);
    let tally = std::mem::take(&mut *lock(&carrying.tally));
    if let Some(what) = stalled {
        return Err(StreamError::Stalled {
            what,
            secs: stall.as_secs(),
        });
    }
    failure(&tally, endings, &statuses, &sides)?;
    finished(tally, start)
}

/// One agent as errors name it, with the last lines it wrote to stderr.
struct Side<'a> {
    name: &'a str,
    words: Words,
}

/// The sending and the receiving agent.
struct Sides<'a> {
    source: Side<'a>,
    target: Side<'a>,
}

/// The agents' pipes: (stdin, stdout) of the source, then of the target.
type Pipes = [(ChildStdin, ChildStdout); 2];

/// Starts both agents, their stderr shown and kept, their pipes' buffers
/// grown.
fn start_agents<'a>(
    source: Command,
    target: Command,
    source_name: &'a str,
    target_name: &'a str,
) -> Result<(Agents, Sides<'a>, Pipes), StreamError> {
    let mut agents = Agents(Vec::new());
    agents.0.push(spawn(source, source_name)?);
    agents.0.push(spawn(target, target_name)?);
    let short = |name: &str| name.rsplit(' ').next().unwrap_or(name).to_string();
    let sides = Sides {
        source: Side {
            name: source_name,
            words: collect_stderr(&mut agents.0[0], short(source_name)),
        },
        target: Side {
            name: target_name,
            words: collect_stderr(&mut agents.0[1], short(target_name)),
        },
    };
    let take = |c: &mut Child| -> (ChildStdin, ChildStdout) {
        (
            c.stdin.take().expect("piped"),
            c.stdout.take().expect("piped"),
        )
    };
    let pipes = [take(&mut agents.0[0]), take(&mut agents.0[1])];
    let [(src_in, src_out), (dst_in, dst_out)] = &pipes;
    for p in [
        src_out as &dyn std::os::fd::AsRawFd,
        dst_in,
        dst_out,
        src_in,
    ] {
        crate::sys::pipe::grow_pipe(&p.as_raw_fd(), super::agent::PIPE_BYTES);
    }
    Ok((agents, sides, pipes))
}

/// The two directions of a stream, each carried by a thread of its own.
struct Carrying {
    tally: Arc<Mutex<Tally>>,
    /// From the source to the target.
    up: Arc<Direction>,
    /// From the target back to the source.
    down: Arc<Direction>,
    /// How each direction ended (`true`: up), in the order they did.
    ended: mpsc::Receiver<(bool, Ended)>,
}

/// Starts carrying the frames between the agents, both ways.
fn start_carrying(pipes: Pipes, sides: &Sides) -> Carrying {
    let [(src_in, src_out), (dst_in, dst_out)] = pipes;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let up = Arc::new(Direction::default());
    let down = Arc::new(Direction::default());
    up.activity.touch();
    down.activity.touch();
    let (tx, rx) = mpsc::channel::<(bool, Ended)>();
    for (is_up, from, to, dir, name) in [
        (true, src_out, dst_in, Arc::clone(&up), sides.source.name),
        (false, dst_out, src_in, Arc::clone(&down), sides.target.name),
    ] {
        let (tally, tx, name) = (Arc::clone(&tally), tx.clone(), name.to_string());
        std::thread::spawn(move || {
            let mut to = BufWriter::with_capacity(1 << 20, to);
            let ended = carry(from, &mut to, is_up, &dir, &tally, &name);
            // How this direction ended is told before its far end is
            // closed: that agent sees the end of its input only after, so
            // what it says about it cannot come first and be blamed.
            let _ = tx.send((is_up, ended));
            drop(to);
        });
    }
    drop(tx);
    Carrying {
        tally,
        up,
        down,
        ended: rx,
    }
}

/// Waits for both directions to end, telling `progress` how far the
/// stream is meanwhile: how each ended, in the order they did (the first
/// to fail points at the side that failed), and what stalled the stream
/// if it did. Once one direction failed, the other gets a moment to say
/// why, then the wait ends.
fn watch(
    carrying: &Carrying,
    stall: Duration,
    sides: &Sides,
    progress: &mut dyn FnMut(u64, u64),
) -> (Vec<(bool, Ended)>, Option<String>) {
    let mut endings: Vec<(bool, Ended)> = Vec::new();
    let mut failed_at: Option<Instant> = None;
    let tick = (stall / 8).clamp(Duration::from_millis(50), Duration::from_millis(500));
    while endings.len() < 2 {
        match carrying.ended.recv_timeout(tick) {
            Ok((is_up, e)) => {
                if !matches!(e, Ended::Clean) && failed_at.is_none() {
                    failed_at = Some(Instant::now());
                }
                endings.push((is_up, e));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let passed = lock(&carrying.tally).passed();
        if let Some((done, size)) = passed {
            progress(done, size);
        }
        // One side failed: the other gets a moment to say why, then goes.
        if failed_at.is_some_and(|t| t.elapsed() > stall.min(GRACE)) {
            break;
        }
        let idle = carrying
            .up
            .activity
            .idle()
            .min(carrying.down.activity.idle());
        if idle >= stall {
            return (endings, Some(stalled_side(carrying, sides)));
        }
    }
    (endings, None)
}

/// What stalled the stream, in words: a side that took no data it was
/// handed, else the side whose turn it was by the protocol's step.
fn stalled_side(carrying: &Carrying, sides: &Sides) -> String {
    let source_owes = lock(&carrying.tally).source_owes();
    let (source, target) = (sides.source.name, sides.target.name);
    if carrying.up.writing.load(Ordering::Relaxed) {
        format!("{target} took no data")
    } else if carrying.down.writing.load(Ordering::Relaxed) {
        format!("{source} took no data")
    } else if source_owes {
        format!("no data from {source}")
    } else {
        format!("no data from {target}")
    }
}

/// The agents' exit statuses (source, target; None: unknown). Whatever is
/// still running after the grace (at once after a stall) has had its
/// chance and is killed: after a failure the stream is lost anyway, and a
/// side left running may be blocked.
fn reap(agents: &mut Agents, stalled: bool, stall: Duration) -> Vec<Option<ExitStatus>> {
    let deadline = Instant::now() + stall.min(GRACE);
    let mut statuses = Vec::new();
    for c in &mut agents.0 {
        let status = loop {
            match c.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if !stalled && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = c.kill();
                    break c.wait().ok();
                }
            }
        };
        statuses.push(status);
    }
    statuses
}

/// Why a stream that did not stall failed, once both agents are reaped:
/// a side's own error as it reported it, else the side whose end broke a
/// direction first, else a direction's own error, else an agent's failed
/// exit. Ok: none of these.
fn failure(
    tally: &Tally,
    endings: Vec<(bool, Ended)>,
    statuses: &[Option<ExitStatus>],
    sides: &Sides,
) -> Result<(), StreamError> {
    // A side's own failure, as it reported it, says the most.
    for (from_source, side) in [(true, &sides.source), (false, &sides.target)] {
        let own = tally
            .errors
            .iter()
            .find(|(s, _, peer)| *s == from_source && !peer);
        if let Some((_, message, _)) = own {
            return Err(StreamError::Remote {
                side: side.name.into(),
                message: message.clone(),
            });
        }
    }
    // Else the first direction that broke: its reading end is the side
    // that ended, or its writing end the side that stopped taking bytes.
    let broken = endings
        .iter()
        .find(|(_, e)| !matches!(e, Ended::Clean))
        .map(|(up, e)| match e {
            Ended::Early => Some(*up),
            Ended::Gone => Some(!*up),
            _ => None,
        });
    if let Some(Some(source_side)) = broken {
        let (side, status, began) = if source_side {
            (&sides.source, &statuses[0], tally.hello.is_some())
        } else {
            (&sides.target, &statuses[1], tally.ready.is_some())
        };
        let (from, detail) = (side.name.to_string(), exit_words(status, &side.words));
        return Err(if began {
            StreamError::Ended { from, detail }
        } else {
            StreamError::NotStarted { from, detail }
        });
    }
    for (_, e) in endings {
        if let Ended::Failed(e) = e {
            return Err(e);
        }
    }
    for (status, side) in statuses.iter().zip([&sides.source, &sides.target]) {
        if !status.is_some_and(|s| s.success()) {
            return Err(StreamError::AgentFailed {
                side: side.name.into(),
                status: status.map_or("status unknown".into(), |s| s.to_string()),
                detail: side
                    .words
                    .last()
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// How an agent ended, for an error: ` (its status; it said: its last
/// line)`.
fn exit_words(status: &Option<ExitStatus>, words: &Words) -> String {
    let mut d = match status {
        Some(s) => format!(" ({s}"),
        None => " (status unknown".to_string(),
    };
    if let Some(l) = words.last() {
        d.push_str(&format!("; it said: {l}"));
    }
    d.push(')');
    d
}

/// The report of a stream both agents ended well: whole, and with equal
/// digests.
fn finished(tally: Tally, start: Instant) -> Result<StreamReport, StreamError> {
    let (Some(hello), Some(end), Some(done)) = (tally.hello, tally.end, tally.done) else {
        return Err(StreamError::Protocol(
            "both agents ended well, but the stream lacks its HELLO, END or DONE".into(),
        ));
    };
    if !done.equal || done.digest != end.digest {
        return Err(StreamError::DigestDiffers {
            source_digest: end.digest,
            target_digest: done.digest,
        });
    }
    Ok(StreamReport {
        source: String::new(),
        target: String::new(),
        digest: end.digest,
        size: hello.size,
        chunks: end.chunks,
        chunks_sent: tally.data,
        chunks_resumed: tally.held,
        chunks_hole: tally.holes,
        chunks_zeroed: done.chunks_zeroed,
        bytes_read: end.bytes_read,
        bytes_sent: tally.bytes_sent,
        bytes_carried: tally.bytes_carried,
        bytes_written: done.bytes_written,
        seconds: start.elapsed().as_secs_f64(),
        restarted: tally.ready.and_then(|r| r.restarted),
    })
}

/// Carries one direction's frames from an agent's stdout to the other
/// agent's stdin, noting what passes.
fn carry(
    from: ChildStdout,
    w: &mut BufWriter<ChildStdin>,
    up: bool,
    dir: &Direction,
    tally: &Mutex<Tally>,
    name: &str,
) -> Ended {
    // Bytes are noted as they arrive, so a long frame is not a stall.
    let mut r = BufReader::with_capacity(
        1 << 20,
        super::Watched {
            inner: from,
            activity: dir.activity.clone(),
        },
    );
    let mut buf = Vec::new();
    let put = |w: &mut BufWriter<ChildStdin>, bytes: &[u8], flush: bool| -> bool {
        dir.writing.store(true, Ordering::Relaxed);
        let ok = w.write_all(bytes).is_ok() && (!flush || w.flush().is_ok());
        dir.writing.store(false, Ordering::Relaxed);
        dir.activity.touch();
        ok
    };
    if let Err(e) = read_magic(&mut r, name) {
        return match e {
            StreamError::Ended { .. } | StreamError::NotStarted { .. } => Ended::Early,
            e => Ended::Failed(e),
        };
    }
    if !put(w, &MAGIC, false) {
        return Ended::Gone;
    }
    loop {
        let (k, len) = match read_header(&mut r, name) {
            Ok(Some(h)) => h,
            Ok(None) => {
                let _ = w.flush();
                let t = lock(tally);
                let owed = if up {
                    t.end.is_some()
                } else {
                    t.done.is_some()
                };
                return if owed { Ended::Clean } else { Ended::Early };
            }
            Err(StreamError::Ended { .. }) => return Ended::Early,
            Err(e) => return Ended::Failed(e),
        };
        // A chunk's data is not read here: past its fixed head (what the
        // tally needs), it moves from pipe to pipe in the kernel.
        let spliced = k == kind::DATA && len as usize >= DATA_HEAD + SPLICE_AT_LEAST;
        let read = if spliced { DATA_HEAD as u32 } else { len };
        match read_payload(&mut r, read, &mut buf, name) {
            Ok(()) => {}
            Err(StreamError::Ended { .. }) => return Ended::Early,
            Err(e) => return Ended::Failed(e),
        }
        if let Err(e) = note(tally, up, k, &buf, len, name) {
            return Ended::Failed(e);
        }
        let mut head = [0u8; 5];
        head[0] = k;
        head[1..].copy_from_slice(&len.to_le_bytes());
        if !spliced {
            // Flush when nothing more is waiting: the agent at the far end
            // may be waiting for just this frame.
            let idle = r.buffer().is_empty();
            if !put(w, &head, false) || !put(w, &buf, idle) {
                return Ended::Gone;
            }
            continue;
        }
        // The rest of the payload: first what the reader holds already,
        // then the pipe's own bytes, all in order behind what `w` holds.
        let mut rest = len as usize - DATA_HEAD;
        let held = rest.min(r.buffer().len());
        let ok = put(w, &head, false) && put(w, &buf, false) && put(w, &r.buffer()[..held], true);
        r.consume(held);
        rest -= held;
        if !ok {
            return Ended::Gone;
        }
        if rest > 0 {
            if let Err(ended) = splice_exactly(r.get_mut(), w.get_mut(), rest, dir, name) {
                return ended;
            }
        }
    }
}

/// The fixed head of a `DATA` payload (index, SHA-256, the run count at
/// 40..44) that the relay reads to count the frame.
const DATA_HEAD: usize = 44;

/// Payloads shorter than this past their head are copied: moving them in
/// the kernel saves less than the calls cost.
const SPLICE_AT_LEAST: usize = 64 << 10;

/// Moves exactly `n` bytes from the pipe `from` to the pipe `to` (the
/// agents' stdout and stdin, pipes by construction) with splice(2): the
/// pages pass from one pipe to the other, never copied through this
/// process. Noted in `dir` as the copying path notes them: `writing` only
/// while bytes are in hand and the far end does not take them, so a stall
/// is put on the right side. The error is how the direction ended.
fn splice_exactly(
    from: &mut super::Watched<ChildStdout>,
    to: &mut ChildStdin,
    mut n: usize,
    dir: &Direction,
    name: &str,
) -> Result<(), Ended> {
    use crate::sys::pipe;
    let failed = |e| {
        Ended::Failed(StreamError::Io {
            what: format!("carrying data from {name}"),
            error: e,
        })
    };
    while n > 0 {
        // Waiting for bytes to read is not writing.
        pipe::wait_readable(&from.inner).map_err(failed)?;
        dir.writing.store(true, Ordering::Relaxed);
        let moved = pipe::splice(&from.inner, to, n);
        dir.writing.store(false, Ordering::Relaxed);
        match moved {
            Ok(0) => return Err(Ended::Early),
            Ok(k) => {
                n -= k;
                from.activity.touch();
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => {}
                Some(libc::EPIPE) => return Err(Ended::Gone),
                _ => return Err(failed(e)),
            },
        }
    }
    Ok(())
}

/// Notes a frame passing: `payload` is all of it, or for `DATA` at least
/// its fixed head; `len` its whole length.
fn note(
    tally: &Mutex<Tally>,
    up: bool,
    k: u8,
    payload: &[u8],
    len: u32,
    name: &str,
) -> Result<(), StreamError> {
    let mut t = lock(tally);
    if up {
        t.bytes_carried += 5 + len as u64;
    }
    match (up, k) {
        (true, kind::HELLO) => {
            // The progress arithmetic takes these numbers: checked first.
            let hello: super::Hello = parse_json(payload, "HELLO", name)?;
            hello.check()?;
            t.hello = Some(hello);
        }
        (true, kind::DATA) => {
            t.data += 1;
            let runs = payload.get(40..44).map_or(0, |b| {
                u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64
            });
            t.bytes_sent += (len as u64).saturating_sub(DATA_HEAD as u64 + 8 * runs);
        }
        (true, kind::HELD) => t.held += 1,
        (true, kind::HOLE) => t.holes += 1,
        (true, kind::END) => t.end = Some(parse_json(payload, "END", name)?),
        (false, kind::READY) => {
            let ready: super::Ready = parse_json(payload, "READY", name)?;
            if let Some(why) = &ready.restarted {
                tracing::warn!("{name}: {why}");
            }
            t.ready = Some(ready);
        }
        (false, kind::HAVE_END) => t.streaming = true,
        (false, kind::DONE) => t.done = Some(parse_json(payload, "DONE", name)?),
        (_, kind::ERROR) => {
            let m =
                serde_json::from_slice::<ErrorMessage>(payload).unwrap_or_else(|_| ErrorMessage {
                    message: String::from_utf8_lossy(payload).into_owned(),
                    peer: false,
                });
            t.errors.push((up, m.message, m.peer));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod hostile_hello {
    use super::*;

    #[test]
    fn the_relay_refuses_a_hello_its_progress_cannot_take() {
        let tally = Mutex::new(Tally::default());
        let hello = |size: u64, chunk_size: u64| {
            serde_json::to_vec(&serde_json::json!({"protocol": super::super::PROTOCOL, "identity": "s", "size": size, "chunk_size": chunk_size})).unwrap()
        };
        for h in [
            hello(1 << 30, u64::MAX),
            hello(u64::MAX, crate::transfer::CHUNK_SIZE),
        ] {
            let err =
                note(&tally, true, kind::HELLO, &h, h.len() as u32, "the source").unwrap_err();
            assert!(matches!(err, StreamError::Protocol(_)), "{err}");
        }
        assert!(tally.lock().unwrap().hello.is_none());
        let h = hello(1 << 30, crate::transfer::CHUNK_SIZE);
        note(&tally, true, kind::HELLO, &h, h.len() as u32, "the source").unwrap();
        assert!(tally.lock().unwrap().hello.is_some());
    }
}
