//! `ferry plan`: what a migration would do, step by step; and the plan
//! bundle the roles run from.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;

use crate::plan::Purpose;
use crate::spec::Spec;

/// Show what a migration would do, step by step, without changing anything.
///
/// Reads the source images named in SPEC (features, snapshots, mirroring,
/// users) and prints the plan: per image, the ordered steps, the role
/// that performs each one and what it waits for. `--output json|yaml`
/// prints the same plan as data.
///
/// With `--bundle FILE`, also writes the plan bundle the roles run from
/// (`ferry script`, `ferry run --role`): every value they need resolved,
/// no secrets. The destination cluster is read for its fsid when the
/// spec's credentials reach it.
///
/// Example: ferry plan migration.yaml --bundle plan.yaml
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The migration spec (YAML); see docs/spec.md.
    spec: PathBuf,
    /// Output form.
    #[arg(long, short, value_enum, default_value_t = PlanOutput::Text)]
    output: PlanOutput,
    /// Write the plan bundle (YAML) to this file.
    #[arg(long)]
    bundle: Option<PathBuf>,
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

/// Makes the plan (what the destination cluster cannot give is a warning:
/// see `plan::Purpose::Show`), writes the bundle when asked, prints it.
pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let spec = Spec::load(&args.spec)?;
    let access = crate::plan::connect(&spec, Purpose::Show)?.warned();
    let plan = crate::plan::prepare(&spec, &args.spec, &access, Purpose::Show)?
        .warned()
        .plan;
    if let Some(b) = &args.bundle {
        write_bundle(b, &plan)?;
    }
    match args.output {
        PlanOutput::Text => print!("{}", crate::plan::render_text(&plan)),
        PlanOutput::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        PlanOutput::Yaml => print!("{}", serde_yaml::to_string(&plan)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn write_bundle(path: &std::path::Path, plan: &crate::plan::Plan) -> anyhow::Result<()> {
    let text = crate::plan::bundle_text(plan)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("ferry: plan {} written to {}", plan.id, path.display());
    let ssh = plan.images.iter().flat_map(|i| &i.steps).any(|s| {
        matches!(&s.action, crate::plan::Action::StreamVolume(crate::steps::StreamVolume { hosts, .. }) if !hosts.ssh_options.is_empty())
    });
    if ssh {
        eprintln!("ferry: the conversion hosts' ssh options are not in the bundle: whoever runs the conversion-hosts part gives theirs (ferry run --role conversion-hosts --ssh-config FILE / --ssh-option KEY=VALUE)");
    }
    Ok(())
}
