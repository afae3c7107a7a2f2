//! `ferry run`: run (or resume) the migration, whole or one role's part of
//! a plan bundle.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::{load_bundle, ssh_args, Output, RoleArg};
use crate::connect::{Access, Policy};
use crate::plan::{Plan, Role};
use crate::spec::Spec;

/// Run (or resume) the migration: mirror, wait, copy, verify, clean up.
///
/// Builds the plan on the first run and keeps it, with what each step
/// did, in a state file (STATE_DIR/<spec name>-<path hash>.state.yaml); a
/// spec changed under a begun run is refused, and so is a second run
/// while another holds the state (its pid is named). Running again
/// resumes where it stopped; a finished run changes nothing. Each step
/// checks what Ceph reports before acting. Cleanup (disable mirroring on
/// the source, restore its features) runs only with `options.cleanup` in
/// the spec, and only after the checksums agree.
///
/// With `--role`, runs one role's part of a plan bundle instead, with
/// only that role's credentials: `--conf/--id/--keyring` for the
/// storage roles, `--cloud` (or `OS_CLOUD`) for the cloud roles, and
/// for cleanup the destination storage part's hand-off (`--verified`).
/// The bundle is checked as untrusted input (docs/roles.md), and the
/// part's steps are listed and confirmed before anything changes
/// (`--yes`: not asked).
///
/// Exit status: 0 done; 1 an error (e.g. checksums differ: look before
/// running again); 2 gave up waiting or the mirror stalled (nothing is
/// half-done: run again later).
///
/// Example: ferry run migration.yaml --concurrency 4
///
/// Example: ferry run plan.yaml --role destination-storage --conf /etc/ceph/dr.conf --id ferry
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The migration spec (YAML); with --role, the plan bundle.
    spec: PathBuf,
    /// Run only this role's part of the plan bundle.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// Ceph conf file of the role's cluster (storage roles).
    #[arg(long, env = "CEPH_CONF", requires = "role")]
    conf: Option<PathBuf>,
    /// cephx user, without `client.` (storage roles).
    #[arg(long = "id", default_value = "admin", requires = "role")]
    client: String,
    /// Keyring of that user (storage roles); default: the conf's.
    #[arg(long, requires = "role")]
    keyring: Option<PathBuf>,
    /// Ceph conf file of the source cluster, for the destination storage
    /// part of a plan with `transfer: direct` (its copy reads the source).
    #[arg(long, requires = "role")]
    source_conf: Option<PathBuf>,
    /// cephx user on the source cluster, without `client.` (with --source-conf).
    #[arg(long = "source-id", default_value = "admin", requires = "source_conf")]
    source_client: String,
    /// Keyring of that user (with --source-conf); default: the conf's.
    #[arg(long, requires = "source_conf")]
    source_keyring: Option<PathBuf>,
    /// clouds.yaml entry of the role's cloud (cloud roles; for
    /// conversion-hosts, the source cloud) [default: $OS_CLOUD or the OS_* variables].
    #[arg(long, requires = "role")]
    cloud: Option<String>,
    /// clouds.yaml entry of the destination cloud, for the
    /// conversion-hosts part (it attaches volumes in both clouds).
    #[arg(long, requires = "role")]
    destination_cloud: Option<String>,
    /// The destination storage part's hand-off (`-`: stdin), for cleanup.
    #[arg(long, requires = "role")]
    verified: Option<PathBuf>,
    /// Directory of run state files [default: $XDG_DATA_HOME/ferry or ~/.local/share/ferry].
    #[arg(long, env = "FERRY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Steps that move data (hash, copy, verify) at once: what the
    /// clusters' disks and network can take.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Images under way at once: while some copy, the next ones are
    /// prepared, cut over and mirrored [default: 4 x --concurrency].
    #[arg(long)]
    in_flight: Option<usize>,
    /// Longest wait, in seconds, for an idle image or a mirror sync.
    #[arg(long, default_value_t = 3600)]
    wait_timeout: u64,
    /// Output form: text lines on stderr, or JSON line events on stdout.
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Verify each copy by reading it back (its allocated extents)
    /// instead of trusting the digest taken of what the copy wrote. Costs
    /// one more read of the copy's data; for when the destination
    /// cluster's own integrity is in doubt.
    #[arg(long)]
    reread: bool,
    /// Memory, in MiB, for the data in flight of all copies, hashes and
    /// verifies at once (4 MiB chunks; each step takes up to 64 MiB of
    /// it, and at least one chunk whatever --concurrency).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(4..))]
    buffer_mib: u64,
    /// When the destination cloud holds an adoption of a source made by
    /// another plan (a trial migration's volume, kept): refuse (stop,
    /// naming it), keep (it stays the adoption; this plan's copy is not
    /// adopted) or replace (this plan's copy is adopted; the earlier
    /// volume keeps its data and is renamed
    /// `<name>.ferry-replaced-<plan id>`). [default: the spec's
    /// options.earlier_adoption, else refuse]
    ///
    /// Example: ferry run migration.yaml --earlier-adoption replace
    #[arg(long, value_enum)]
    earlier_adoption: Option<crate::spec::EarlierAdoption>,
    /// With --role (a spec sets these in `options`): seconds to wait
    /// for a monitor before giving up.
    #[arg(long, requires = "role", default_value_t = crate::spec::DEFAULT_TIMEOUT_SECONDS)]
    timeout_seconds: u64,
    /// With --role: seconds an OSD operation may take before it fails
    /// (0: no limit).
    #[arg(long, requires = "role", default_value_t = crate::spec::DEFAULT_DATA_TIMEOUT_SECONDS)]
    data_timeout_seconds: u64,
    /// With --role: seconds a failing OpenStack call (no connection, a
    /// timeout, HTTP 5xx or 429) is retried before the step fails (0:
    /// not retried).
    #[arg(long, requires = "role", default_value_t = crate::openstack::retry::DEFAULT_DEADLINE_SECONDS)]
    api_retry_seconds: u64,
    /// Put the source back instead of running: per image, the features
    /// and mirroring the plan found, its carrier, cut-over snapshot,
    /// digest keys and record removed; says what it did. The copy's
    /// verified mark and the destination stay. A run after it starts
    /// afresh. (A failure never undoes anything by itself, except Ceph
    /// refusing a step that prepares the source.)
    #[arg(long)]
    undo: bool,
    /// With --role: go on without asking. A role run first lists what
    /// it will change and asks; without a terminal to ask on, it
    /// refuses unless given --yes.
    #[arg(long, short = 'y', requires = "role")]
    yes: bool,
    /// With --role conversion-hosts: the ssh config file for both
    /// conversion hosts (ssh -F). ssh options are yours, never the
    /// bundle's.
    #[arg(long, requires = "role")]
    ssh_config: Option<PathBuf>,
    /// With --role conversion-hosts: an ssh option for both hosts, as
    /// `ssh -o` takes it (repeatable), e.g. --ssh-option ConnectTimeout=10.
    #[arg(long = "ssh-option", requires = "role")]
    ssh_options: Vec<String>,
}

/// Runs the migration of a spec, or with `--role` one role's part of a
/// bundle; says where the state is kept.
pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    if let Some(role) = args.role {
        return exec_role(args, role.into(), &opts);
    }
    let spec = Spec::load(&args.spec)?;
    let state = crate::exec::run(&args.spec, &spec, &opts)?;
    if args.undo {
        eprintln!("ferry: source put back; state in {}", state.display());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("ferry: done; state in {}", state.display());
    if let Some(from) = &spec.servers_from {
        let back = workloads_back(&spec, from)?;
        eprintln!(
            "ferry: wrote {}: OS-Migrate's import_workloads makes the servers from the moved volumes",
            back.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes OS-Migrate's workloads file back beside it, each server's
/// `_migration_params` set to boot from the volumes this run adopted (found
/// in the destination cloud by their `ferry_source_volume` mark, the one
/// `available`).
fn workloads_back(spec: &Spec, from: &std::path::Path) -> anyhow::Result<PathBuf> {
    use crate::osm::BootSource;
    let mut w = crate::spec::read_workloads(from)?;
    // The destination cloud alone: the clusters have nothing to say here.
    let name = spec.destination.cloud.as_deref().ok_or_else(|| {
        anyhow::anyhow!("servers_from needs the destination cloud (destination.cloud)")
    })?;
    let dst = crate::connect::cloud(name, &crate::connect::Policy::running(spec))
        .map_err(|e| e.context(format!("connecting to the destination cloud {name:?}")))?;
    let cinder = crate::openstack::Cinder(&dst);
    let moved = |src: &str| -> anyhow::Result<String> {
        let found = cinder.volumes_with_metadata(crate::plan::ADOPTED_FROM, src)?;
        found
            .into_iter()
            .find(|v| v.status == "available")
            .map(|v| v.id)
            .ok_or_else(|| {
                anyhow::anyhow!("no available volume adopted from {src} in the destination cloud")
            })
    };
    for s in w.servers() {
        let (boot, rest): (String, Vec<&String>) = match &s.boot {
            BootSource::Image { .. } => (
                moved(&crate::plan::server::root_disk_name(&s.id))?,
                s.volumes.iter().collect(),
            ),
            BootSource::Volume { volume } => {
                let b = volume
                    .clone()
                    .or_else(|| s.volumes.first().cloned())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "server {} boots from a volume the file does not name",
                            s.id
                        )
                    })?;
                let rest = s.volumes.iter().filter(|v| **v != b).collect();
                (moved(&b)?, rest)
            }
        };
        let additional = rest
            .into_iter()
            .map(|v| moved(v))
            .collect::<anyhow::Result<Vec<String>>>()?;
        w.set_ferry_volumes(&s.id, Some(&boot), &additional)?;
    }
    let back = crate::spec::workloads_back_path(from);
    std::fs::write(&back, w.to_yaml()?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", back.display()))?;
    Ok(back)
}

/// The run's options from its flags.
fn options(args: &Args) -> anyhow::Result<crate::exec::RunOptions> {
    let state_dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => default_state_dir()?,
    };
    let concurrency = args.concurrency;
    Ok(crate::exec::RunOptions {
        state_dir,
        concurrency: concurrency.max(1),
        in_flight: args
            .in_flight
            .unwrap_or(4 * concurrency)
            .max(concurrency)
            .max(1),
        wait_timeout: Duration::from_secs(args.wait_timeout),
        poll: Duration::from_millis(200),
        json: args.output == Output::Json,
        reread: args.reread,
        buffers: crate::transfer::ChunkBudget::new((args.buffer_mib / 4) as usize),
        earlier_adoption: args.earlier_adoption,
        undo: args.undo,
        ssh_options: args
            .role
            .map(|_| ssh_args(args.ssh_config.clone(), args.ssh_options.clone())),
    })
}

/// One role's part of a plan bundle, with only that role's access.
fn exec_role(args: Args, role: Role, opts: &crate::exec::RunOptions) -> anyhow::Result<ExitCode> {
    let plan = load_bundle(&args.spec)?;
    confirm(&plan, role, args.yes, args.undo)?;
    if args.timeout_seconds == 0 {
        anyhow::bail!("--timeout-seconds must be at least 1");
    }
    let policy = Policy::given(
        Duration::from_secs(args.timeout_seconds),
        Duration::from_secs(args.data_timeout_seconds),
        Duration::from_secs(args.api_retry_seconds),
    );
    let access = role_access(&args, role, &plan, &policy)?;
    let verified = match &args.verified {
        Some(f) => {
            let text = if f.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
            };
            crate::exec::parse_handoff(&text, &plan.id)?
        }
        None => Default::default(),
    };
    let state = crate::exec::run_role(&args.spec, plan, role, access, verified, opts)?;
    if args.undo {
        eprintln!("ferry: {role} part undone; state in {}", state.display());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("ferry: {role} part done; state in {}", state.display());
    Ok(ExitCode::SUCCESS)
}

/// Connects to what the role's part needs, with the credentials its flags
/// give.
fn role_access(args: &Args, role: Role, plan: &Plan, policy: &Policy) -> anyhow::Result<Access> {
    let cluster = |storage: &crate::ceph::ClusterConfig| {
        crate::connect::cluster(storage, policy)
            .with_context(|| crate::connect::cluster_context(storage))
    };
    let storage = crate::ceph::ClusterConfig {
        conf: args
            .conf
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/ceph/ceph.conf")),
        keyring: args.keyring.clone(),
        client: args.client.clone(),
    };
    let cloud = |name: &str| {
        crate::connect::cloud(name, policy)
            .with_context(|| format!("connecting to the cloud {name:?}"))
    };
    let own_cloud = || cloud(args.cloud.as_deref().unwrap_or("env"));
    let mut access = Access::default();
    match role {
        Role::SourceStorage | Role::Cleanup => access.src = Some(cluster(&storage)?),
        Role::DestinationStorage => {
            access.dst = Some(cluster(&storage)?);
            let direct = plan
                .images
                .iter()
                .any(|i| i.transfer == crate::spec::Transfer::Direct);
            match &args.source_conf {
                Some(conf) => {
                    access.src = Some(cluster(&crate::ceph::ClusterConfig {
                        conf: conf.clone(),
                        keyring: args.source_keyring.clone(),
                        client: args.source_client.clone(),
                    })?)
                }
                None if direct => anyhow::bail!(
                    "this plan's transfer is direct: the destination storage part reads the source cluster too; give --source-conf (and --source-id, --source-keyring)"
                ),
                None => {}
            }
        }
        Role::SourceCloud => access.src_cloud = Some(own_cloud()?),
        Role::DestinationCloud => access.dst_cloud = Some(own_cloud()?),
        Role::ConversionHosts => {
            access.src_cloud = Some(own_cloud()?);
            let name = args.destination_cloud.as_deref().ok_or_else(|| {
                anyhow::anyhow!(
                    "the conversion-hosts part attaches volumes in both clouds: give --destination-cloud (and --cloud for the source)"
                )
            })?;
            access.dst_cloud = Some(cloud(name)?);
        }
    }
    Ok(access)
}

/// Lists what a role run (or its `--undo`) will change and asks before the
/// first change; `yes` goes on without asking. Without a terminal to ask
/// on, refuses.
fn confirm(plan: &crate::plan::Plan, role: Role, yes: bool, undo: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    if undo {
        eprintln!(
            "ferry: --undo puts the source of {} image(s) of plan {} back as the plan found it (mirroring, features, ferry's snapshot, carrier and records):",
            plan.images.len(),
            plan.id
        );
        for img in plan.images.iter().take(20) {
            eprintln!("  {}", img.image.source_spec().escape_debug());
        }
    } else {
        eprint!("ferry: {}", crate::plan::role_preview(plan, role));
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "ferry run --role {role} asks before it changes anything, and stdin is not a terminal: read what it will do (above, or ferry script --role {role} BUNDLE) and pass --yes"
        );
    }
    eprint!("ferry: go on? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the answer")?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        anyhow::bail!("not confirmed: nothing was changed");
    }
    Ok(())
}

fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(d).join("ferry"));
    }
    let home = std::env::var_os("HOME")
        .context("set --state-dir (neither XDG_DATA_HOME nor HOME is set)")?;
    Ok(PathBuf::from(home).join(".local/share/ferry"))
}
