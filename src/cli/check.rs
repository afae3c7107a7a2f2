//! `ferry check`: are both clusters and every listed image ready?

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::Output;
use crate::spec::Spec;

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
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The migration spec (YAML); see docs/spec.md.
    spec: PathBuf,
    /// Output form.
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs the check and prints its report; the exit status says whether the
/// migration is ready.
pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let spec = match Spec::load(&args.spec) {
        Ok(s) => s,
        Err(e) => {
            // As documented for check: 2, the spec cannot be used.
            eprintln!("ferry: error: {:#}", anyhow::Error::new(e));
            return Ok(ExitCode::from(2));
        }
    };
    let report = crate::check::run(&spec);
    match args.output {
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
