//! `ferry script`: one role's part of a plan bundle as a POSIX shell script.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{load_bundle, RoleArg};

/// Render one role's part of a plan bundle as a POSIX shell script.
///
/// The script uses plain `rbd`/`rados` (storage roles) or
/// `openstack`/`curl`/`jq` (cloud roles), checks the state before every
/// step and skips what is done, waits by polling with a timeout, and
/// exits 0 when the next role may go. See docs/roles.md.
///
/// Example: ferry script plan.yaml --role destination-storage > dest-storage.sh
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plan bundle written by `ferry plan --bundle`.
    plan: PathBuf,
    /// The role whose part to render.
    #[arg(long, value_enum)]
    role: RoleArg,
}

/// Prints the role's script.
pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let bundle = load_bundle(&args.plan)?;
    print!("{}", crate::render::script(&bundle, args.role.into()));
    Ok(ExitCode::SUCCESS)
}
