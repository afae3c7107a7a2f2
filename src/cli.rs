//! Command-line interface: flags with their help, and the dispatch to the
//! library. No migration logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::spec::Spec;

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that both clusters and every listed image are ready to migrate.
    ///
    /// Connects to the source and destination clusters named in SPEC and
    /// reports cluster health and fullness, pool mirroring modes, mirror peers
    /// and their direction, rbd-mirror daemons, and for each listed image:
    /// size, features, snapshots and whether it is in use. Nothing is changed.
    ///
    /// Exit status: 0 when ready, 1 when a problem stands in the way, 2 when
    /// the spec cannot be used.
    ///
    /// Example: ferry check migration.yaml --output json
    Check {
        /// The migration spec (YAML); see docs/spec.md.
        spec: PathBuf,
        /// Output form.
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show what a migration would do, step by step, without changing anything.
    ///
    /// Reads the source images named in SPEC (features, snapshots, mirroring,
    /// users) and prints the plan: per image, the ordered steps, the role
    /// that performs each one and what it waits for. `--output json|yaml`
    /// prints the same plan as data.
    ///
    /// Example: ferry plan migration.yaml --output yaml > plan.yaml
    Plan {
        /// The migration spec (YAML); see docs/spec.md.
        spec: PathBuf,
        /// Output form.
        #[arg(long, short, value_enum, default_value_t = PlanOutput::Text)]
        output: PlanOutput,
    },
    /// Run (or resume) the migration: mirror, wait, copy, verify, clean up.
    ///
    /// Builds the plan on the first run and keeps it, with what each step
    /// did, in a state file (STATE_DIR/<spec name>.state.yaml). Running again
    /// resumes where it stopped; a finished run changes nothing. Each step
    /// checks what Ceph reports before acting. Cleanup (disable mirroring on
    /// the source, restore its features) runs only with `options.cleanup` in
    /// the spec, and only after the checksums agree.
    ///
    /// Example: ferry run migration.yaml --concurrency 4
    Run {
        /// The migration spec (YAML); see docs/spec.md.
        spec: PathBuf,
        /// Directory of run state files [default: $XDG_DATA_HOME/ferry or ~/.local/share/ferry].
        #[arg(long, env = "FERRY_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Images moved at once.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Longest wait, in seconds, for an idle image or a mirror sync.
        #[arg(long, default_value_t = 3600)]
        wait_timeout: u64,
        /// Output form: text lines on stderr, or JSON line events on stdout.
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// Output form of `ferry plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    /// Readable text.
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Runs a parsed command line; the returned code is the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { spec, output } => {
            let spec = Spec::load(&spec)?;
            let report = crate::check::run(&spec);
            match output {
                Output::Text => print!("{}", crate::check::render_text(&report)),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("encoding the report")?
                ),
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Plan { spec: path, output } => {
            let spec = Spec::load(&path)?;
            let source = crate::ceph::Cluster::connect(&spec.source.cluster, spec.timeout())
                .context("connecting to the source cluster")?;
            let cloud = crate::openstack::connect_side(spec.source.cloud.as_deref(), "source")?;
            let facts = crate::plan::discover(&source, &spec, cloud.as_ref())
                .with_context(|| format!("reading the source images of {}", path.display()))?;
            let plan = crate::plan::build(&crate::plan::BuildOptions::from_spec(&spec), &facts);
            match output {
                PlanOutput::Text => print!("{}", crate::plan::render_text(&plan)),
                PlanOutput::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
                PlanOutput::Yaml => print!("{}", serde_yaml::to_string(&plan)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            spec: path,
            state_dir,
            concurrency,
            wait_timeout,
            output,
        } => {
            let spec = Spec::load(&path)?;
            let state_dir = match state_dir {
                Some(d) => d,
                None => default_state_dir()?,
            };
            let opts = crate::exec::RunOptions {
                state_dir,
                concurrency,
                wait_timeout: std::time::Duration::from_secs(wait_timeout),
                poll: std::time::Duration::from_millis(500),
                json: output == Output::Json,
            };
            let state = crate::exec::run(&path, &spec, &opts)?;
            eprintln!("ferry: done; state in {}", state.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(d).join("ferry"));
    }
    let home = std::env::var_os("HOME")
        .context("set --state-dir (neither XDG_DATA_HOME nor HOME is set)")?;
    Ok(PathBuf::from(home).join(".local/share/ferry"))
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
