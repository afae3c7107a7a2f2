//! `ferry stream`: a file or block device from one host to another over ssh.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{ssh_args, Output};
use crate::transfer::file::Zeroed;

/// Stream a file or block device from one host to another over ssh.
///
/// Runs `ferry agent send` on the source host and `ferry agent receive`
/// on the destination host, each over the system `ssh` (your
/// ~/.ssh/config, keys and known_hosts apply; no password prompts), and
/// carries the stream between them through this process: the hosts
/// need no access to each other. Only allocated data is read and only
/// chunks the destination lacks are sent; holes stay holes. The
/// destination keeps a per-chunk record, so running again after a
/// failure sends only what is missing or changed. Both ends' digests
/// must agree. See docs/stream.md.
///
/// Exit status: 0 done, digests equal; 1 an error; 2 the stream
/// stalled (run again: it resumes).
///
/// Example: ferry stream --from convhost-a:/dev/vdb --to convhost-b:/dev/vdc --state-dir /var/lib/ferry
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source: HOST:PATH of a file or block device (HOST `local`:
    /// this host, the agent run as a child of this process), or
    /// HOST:rbd:POOL/IMAGE@SNAP[?conf=FILE&id=USER&keyring=FILE] of an
    /// RBD snapshot read through librbd on that host.
    #[arg(long)]
    from: crate::transfer::stream::relay::Remote,
    /// The destination: HOST:PATH of a file (made when missing) or
    /// block device, or HOST:rbd:POOL/IMAGE[?...] of an RBD image (made
    /// when missing; needs --state-dir).
    #[arg(long)]
    to: crate::transfer::stream::relay::Remote,
    /// ssh config file, for both connections (ssh -F).
    #[arg(short = 'F', long)]
    ssh_config: Option<PathBuf>,
    /// An ssh option for both connections, as `ssh -o` takes it
    /// (repeatable), e.g. --ssh-option ConnectTimeout=10.
    #[arg(long = "ssh-option")]
    ssh_options: Vec<String>,
    /// The ferry command on both hosts, as their shell reads it.
    #[arg(long, default_value = "ferry")]
    remote_ferry: String,
    /// Seconds without a byte from either side before the stream is
    /// given up (and named).
    #[arg(long, default_value_t = 60)]
    stall_timeout: u64,
    /// Directory on the destination host for its record of what the
    /// target holds [default: beside a file target; needed for a block
    /// device].
    #[arg(long)]
    state_dir: Option<String>,
    /// Whether the target reads as zeros where nothing is written:
    /// auto = a file made now or holding no data; a block device only
    /// with yes. Where not, holes of the source are zeroed on it.
    #[arg(long, value_enum, default_value_t = Zeroed::Auto)]
    target_zeroed: Zeroed,
    /// Read the source as this many bytes (a device larger than the
    /// volume on it) [default: its size].
    #[arg(long)]
    size: Option<u64>,
    /// Output form.
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Streams and prints the outcome.
pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let opts = crate::transfer::stream::relay::RelayOptions {
        ssh_options: ssh_args(args.ssh_config, args.ssh_options),
        remote_ferry: args.remote_ferry,
        target_ferry: None,
        stall: std::time::Duration::from_secs(args.stall_timeout.max(1)),
        state_dir: args.state_dir,
        zeroed: args.target_zeroed,
        size: args.size,
        identity: None,
    };
    let (from, to) = (&args.from, &args.to);
    let report = crate::transfer::stream::relay::stream(from, to, &opts)
        .with_context(|| format!("streaming {from} to {to}"))?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => println!("{}", stream_text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A stream's outcome in a few lines.
fn stream_text(r: &crate::transfer::stream::relay::StreamReport) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    format!(
        "{} -> {}: {:.1} MiB in {:.1} s ({:.0} MiB/s of image)\n  \
         sent {} chunks ({:.1} MiB of data), {} already there, {} holes ({} zeroed)\n  \
         digest {} (equal on both ends)",
        r.source,
        r.target,
        mib(r.size),
        r.seconds,
        mib(r.size) / r.seconds.max(1e-3),
        r.chunks_sent,
        mib(r.bytes_sent),
        r.chunks_resumed,
        r.chunks_hole,
        r.chunks_zeroed,
        r.digest
    )
}
