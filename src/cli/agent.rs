//! `ferry agent` (plumbing): the two ends `ferry stream` starts on the
//! hosts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::transfer::file::Zeroed;

/// The two ends of a stream, each speaking the protocol on stdin/stdout.
#[derive(Debug, Subcommand)]
pub enum Agent {
    /// Send a file or block device (the protocol on stdout, the receiver's
    /// answers on stdin).
    Send {
        /// The file or block device to read, or rbd:POOL/IMAGE@SNAP[?conf=FILE&id=USER&keyring=FILE].
        #[arg(long)]
        path: PathBuf,
        /// Read it as this many bytes [default: its size].
        #[arg(long)]
        size: Option<u64>,
        /// Names the source for the receiver's record [default: the path].
        #[arg(long)]
        identity: Option<String>,
        /// Seconds without a byte before giving up.
        #[arg(long, default_value_t = 60)]
        stall_timeout: u64,
    },
    /// Receive into a file or block device (the protocol on stdin, answers
    /// on stdout).
    Receive {
        /// The file (made when missing) or block device to write, or
        /// rbd:POOL/IMAGE[?conf=FILE&id=USER&keyring=FILE].
        #[arg(long)]
        path: PathBuf,
        /// Directory of the record of what the target holds [default:
        /// .ferry-stream beside a file target].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Whether the target reads as zeros where nothing is written.
        #[arg(long, value_enum, default_value_t = Zeroed::Auto)]
        target_zeroed: Zeroed,
        /// Seconds without a byte before giving up.
        #[arg(long, default_value_t = 60)]
        stall_timeout: u64,
    },
}

/// Test hook (debug builds): the agent ends, as a kill would, once this
/// many chunks of data are sent (`FERRY_TEST_SEND_CRASH_AFTER_CHUNKS`) or
/// durably received (`FERRY_TEST_RECEIVE_CRASH_AFTER_CHUNKS`).
fn crash_hook(var: &str) -> Option<u64> {
    if cfg!(debug_assertions) {
        std::env::var(var).ok().and_then(|v| v.parse().ok())
    } else {
        None
    }
}

/// Runs one end of a stream on stdin/stdout.
pub fn exec(agent: Agent) -> anyhow::Result<ExitCode> {
    use crate::transfer::stream::agent;
    match agent {
        Agent::Send {
            path,
            size,
            identity,
            stall_timeout,
        } => {
            let opts = crate::transfer::Options::crashing_after(crash_hook(
                "FERRY_TEST_SEND_CRASH_AFTER_CHUNKS",
            ));
            let report = agent::send_stdio(
                &path,
                size,
                identity.as_deref(),
                std::time::Duration::from_secs(stall_timeout.max(1)),
                &opts,
            )
            .with_context(|| format!("sending {}", path.display()))?;
            tracing::info!("sent: {}", serde_json::to_string(&report)?);
        }
        Agent::Receive {
            path,
            state_dir,
            target_zeroed,
            stall_timeout,
        } => {
            let crash = crash_hook("FERRY_TEST_RECEIVE_CRASH_AFTER_CHUNKS");
            let defaults = crate::transfer::stream::ReceiveOptions::default();
            let opts = crate::transfer::stream::ReceiveOptions {
                state_dir,
                zeroed: target_zeroed,
                crash_after_chunks: crash,
                record_chunks: if crash.is_some() {
                    1
                } else {
                    defaults.record_chunks
                },
                ..defaults
            };
            let report = agent::receive_stdio(
                &path,
                std::time::Duration::from_secs(stall_timeout.max(1)),
                &opts,
            )
            .with_context(|| format!("receiving into {}", path.display()))?;
            tracing::info!("received: {}", serde_json::to_string(&report)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
