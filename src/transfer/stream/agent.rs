//! The agents as processes: `ferry agent send|receive` speak the protocol
//! on their stdin and stdout (an `ssh` session's), and end themselves when
//! the stream stalls, because a stuck link may never close their pipes.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use super::{Activity, ReceiveOptions, ReceiveReport, SendReport, StreamError, Watched};
use crate::transfer::engine::Options;
use crate::transfer::file::FileSource;
use crate::transfer::rbd::{RbdLocation, RbdSource};
use crate::transfer::{Result, Source, TransferError};

/// Exit status of an agent that gave up on a stalled stream (as `ferry
/// run` exits when it gives up waiting).
pub const STALLED_EXIT: i32 = 2;

/// The pipe buffer asked for (the largest an unprivileged process may
/// have by default).
pub const PIPE_BYTES: usize = 1 << 20;

/// This process's stdin and stdout as plain files: unbuffered by std (the
/// agents buffer themselves), never line-buffered.
fn stdio() -> Result<(File, File)> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>, what: &str| {
        fd.try_clone_to_owned().map(File::from).map_err(|e| {
            TransferError::from(StreamError::Io {
                what: format!("taking {what}"),
                error: e,
            })
        })
    };
    let (input, output) = (
        dup(std::io::stdin().as_fd(), "stdin")?,
        dup(std::io::stdout().as_fd(), "stdout")?,
    );
    // A chunk's worth of pipe lets this side hash the next chunk while
    // ssh still drains the last one, instead of waiting in turn.
    crate::sys::pipe::grow_pipe(&input, PIPE_BYTES);
    crate::sys::pipe::grow_pipe(&output, PIPE_BYTES);
    Ok((input, output))
}

/// Ends the process when `activity` stays idle for `stall`: the stream
/// is stuck, and a blocked read or write would never return.
fn watchdog(activity: Activity, stall: Duration, peer: &'static str) {
    std::thread::spawn(move || loop {
        std::thread::sleep((stall / 8).clamp(Duration::from_millis(50), Duration::from_secs(1)));
        if activity.idle() >= stall {
            let e = StreamError::Stalled {
                what: format!("no data to or from {peer}"),
                secs: stall.as_secs(),
            };
            eprintln!("ferry: error: {e}");
            std::process::exit(STALLED_EXIT);
        }
    });
}

/// `ferry agent send`: streams the file or device `path` (read as `size`
/// bytes when given) to the receiver on stdin/stdout.
pub fn send_stdio(
    path: &Path,
    size: Option<u64>,
    identity: Option<&str>,
    stall: Duration,
    opts: &Options,
) -> Result<SendReport> {
    if let Some(location) = path.to_str().and_then(RbdLocation::parse) {
        // An RBD image (at a snapshot: what it held then), through librbd.
        let location = location.map_err(StreamError::Protocol)?;
        let cluster = crate::ceph::Cluster::connect_with(&location.cluster, RBD_TIMEOUTS)?;
        let pool = cluster.pool(&location.pool)?;
        let image = pool.open_image_read_only(&location.image, location.snap.as_deref())?;
        let source = RbdSource::new(&image)?;
        if size.is_some_and(|s| s != source.size()) {
            return Err(StreamError::Protocol(format!(
                "{} holds {} bytes: --size does not apply to an RBD image",
                path.display(),
                source.size()
            ))
            .into());
        }
        return send_source(&source, identity, stall, opts);
    }
    let mut source = FileSource::open(path)?;
    if let Some(s) = size {
        source = source.with_size(s);
    }
    send_source(&source, identity, stall, opts)
}

/// How long an RBD endpoint's cluster may take: a run's defaults
/// (monitors answer at once; a read or write may wait while placement
/// groups peer).
pub(super) const RBD_TIMEOUTS: crate::ceph::Timeouts = crate::spec::DEFAULT_RUN_TIMEOUTS;

fn send_source<S: Source>(
    source: &S,
    identity: Option<&str>,
    stall: Duration,
    opts: &Options,
) -> Result<SendReport> {
    let (input, output) = stdio()?;
    let activity = Activity::default();
    activity.touch();
    watchdog(activity.clone(), stall, "the receiver");
    let mut input = BufReader::with_capacity(
        1 << 16,
        Watched {
            inner: input,
            activity: activity.clone(),
        },
    );
    let mut output = BufWriter::with_capacity(
        1 << 20,
        Watched {
            inner: output,
            activity,
        },
    );
    super::send(source, identity, &mut input, &mut output, opts)
}

/// `ferry agent receive`: receives from the sender on stdin/stdout into
/// the file or device `path`.
pub fn receive_stdio(path: &Path, stall: Duration, opts: &ReceiveOptions) -> Result<ReceiveReport> {
    let (input, output) = stdio()?;
    let activity = Activity::default();
    activity.touch();
    watchdog(activity.clone(), stall, "the sender");
    let mut input = BufReader::with_capacity(
        1 << 20,
        Watched {
            inner: input,
            activity: activity.clone(),
        },
    );
    let mut output = BufWriter::with_capacity(
        1 << 16,
        Watched {
            inner: output,
            activity,
        },
    );
    super::receive(path, &mut input, &mut output, opts)
}
