//! Command-line interface: flags with their help, and the dispatch to the
//! library. No migration logic lives here. Each subcommand is a file with
//! its flags (`Args`, whose doc comment is its help) and its `exec`; this
//! one lists them.

mod agent;
mod check;
mod plan;
mod run;
mod script;
mod stream;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::plan::Role;

/// Move OpenStack volumes and images between Ceph-backed clouds with rbd-mirror.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Output form for commands that report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text for a terminal.
    Text,
    /// One JSON document on stdout, stable for scripts.
    Json,
}

/// The subcommands; each one's help is its `Args`' doc comment.
#[derive(Debug, Subcommand)]
pub enum Command {
    Check(check::Args),
    Plan(plan::Args),
    Script(script::Args),
    Run(run::Args),
    Stream(stream::Args),
    /// Plumbing: the agents `ferry stream` starts on the hosts.
    #[command(hide = true)]
    Agent {
        #[command(subcommand)]
        agent: agent::Agent,
    },
}

/// Runs a parsed command line; the returned code is the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::exec(args),
        Command::Plan(args) => plan::exec(args),
        Command::Script(args) => script::exec(args),
        Command::Run(args) => run::exec(args),
        Command::Stream(args) => stream::exec(args),
        Command::Agent { agent } => agent::exec(agent),
    }
}

/// A role, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    SourceStorage,
    DestinationStorage,
    SourceCloud,
    DestinationCloud,
    Cleanup,
    ConversionHosts,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::SourceStorage => Role::SourceStorage,
            RoleArg::DestinationStorage => Role::DestinationStorage,
            RoleArg::SourceCloud => Role::SourceCloud,
            RoleArg::DestinationCloud => Role::DestinationCloud,
            RoleArg::Cleanup => Role::Cleanup,
            RoleArg::ConversionHosts => Role::ConversionHosts,
        }
    }
}

/// The exit status for an error `run` returned: 2 when it only gave up
/// waiting (run again later), 1 for any other error (see docs/roles.md).
pub fn exit_status(e: &anyhow::Error) -> u8 {
    let gave_up = match e.downcast_ref::<crate::exec::RunFailed>() {
        Some(f) => f.gave_up,
        None => crate::exec::gave_up(e),
    };
    let stalled = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::transfer::stream::StreamError>(),
            Some(crate::transfer::stream::StreamError::Stalled { .. })
        ) || matches!(
            c.downcast_ref::<crate::transfer::TransferError>(),
            Some(crate::transfer::TransferError::Stream(
                crate::transfer::stream::StreamError::Stalled { .. }
            ))
        )
    });
    if gave_up || stalled {
        2
    } else {
        1
    }
}

/// Reads a plan bundle as untrusted input (see `plan::read_bundle`).
fn load_bundle(path: &std::path::Path) -> anyhow::Result<crate::plan::Plan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    crate::plan::read_bundle(&text).with_context(|| {
        format!(
            "{} is refused as a plan bundle (write one with ferry plan SPEC --bundle FILE)",
            path.display()
        )
    })
}

/// ssh's arguments for `-F FILE` and `-o OPTION`s.
fn ssh_args(config: Option<PathBuf>, options: Vec<String>) -> Vec<String> {
    let mut ssh = Vec::new();
    if let Some(f) = config {
        ssh.push("-F".to_string());
        ssh.push(f.display().to_string());
    }
    for o in options {
        ssh.push("-o".to_string());
        ssh.push(o);
    }
    ssh
}

/// Sets up logging to stderr from -v and RUST_LOG.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
