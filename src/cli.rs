//! Command-line interface: flags with their help, and the dispatch to the
//! library. No migration logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::plan::Role;
use crate::spec::Spec;
use crate::steps;
use crate::transfer::file::Zeroed;

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
    /// With `--bundle FILE`, also writes the plan bundle the roles run from
    /// (`ferry script`, `ferry run --role`): every value they need resolved,
    /// no secrets. The destination cluster is read for its fsid when the
    /// spec's credentials reach it.
    ///
    /// Example: ferry plan migration.yaml --bundle plan.yaml
    Plan {
        /// The migration spec (YAML); see docs/spec.md.
        spec: PathBuf,
        /// Output form.
        #[arg(long, short, value_enum, default_value_t = PlanOutput::Text)]
        output: PlanOutput,
        /// Write the plan bundle (YAML) to this file.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Render one role's part of a plan bundle as a POSIX shell script.
    ///
    /// The script uses plain `rbd`/`rados` (storage roles) or
    /// `openstack`/`curl`/`jq` (cloud roles), checks the state before every
    /// step and skips what is done, waits by polling with a timeout, and
    /// exits 0 when the next role may go. See docs/roles.md.
    ///
    /// Example: ferry script plan.yaml --role destination-storage > dest-storage.sh
    Script {
        /// The plan bundle written by `ferry plan --bundle`.
        plan: PathBuf,
        /// The role whose part to render.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
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
    Run {
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
    },
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
    Stream {
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
    },
    /// Plumbing: the agents `ferry stream` starts on the hosts.
    #[command(hide = true)]
    Agent {
        #[command(subcommand)]
        agent: Agent,
    },
}

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

/// Runs a parsed command line; the returned code is the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { spec, output } => {
            let spec = match Spec::load(&spec) {
                Ok(s) => s,
                Err(e) => {
                    // As documented for check: 2, the spec cannot be used.
                    eprintln!("ferry: error: {:#}", anyhow::Error::new(e));
                    return Ok(ExitCode::from(2));
                }
            };
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
        Command::Plan {
            spec: path,
            output,
            bundle,
        } => {
            let spec = Spec::load(&path)?;
            let source = spec
                .source
                .cluster
                .is_given()
                .then(|| crate::ceph::Cluster::connect(&spec.source.cluster, spec.timeout()))
                .transpose()
                .context("connecting to the source cluster")?;
            let cloud = crate::openstack::connect_side(
                spec.source.cloud.as_deref(),
                "source",
                spec.api_retry(),
            )?;
            let facts = crate::plan::discover(source.as_ref(), &spec, cloud.as_ref())
                .with_context(|| format!("reading the source images of {}", path.display()))?;
            let mut opts = crate::plan::BuildOptions::from_spec(&spec);
            let destination = destination_cluster(&spec);
            opts.destination_fsid = destination.as_ref().and_then(|d| match d.fsid() {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("ferry: warning: the destination cluster's fsid cannot be read ({e}); the plan carries none, which registering Glance images needs");
                    None
                }
            });
            if let Some(d) = &destination {
                match crate::plan::published_parents(d, &spec, &facts) {
                    Ok(found) => opts.published_parents = found,
                    Err(e) => eprintln!("ferry: warning: the destination Glance pool cannot be read ({e:#}); clones whose parent is not in this migration are planned flat"),
                }
            }
            if let Some(source) = &source {
                opts.source_fsid =
                    Some(source.fsid().context("reading the source cluster's fsid")?);
            }
            // A plan begun before (its bundle lost) is made again under its
            // own id, from what it recorded on the images.
            if let Some(id) = crate::plan::recorded_plan_id(&facts)? {
                opts.plan_id = id;
            }
            let plan = crate::plan::build(&opts, &facts);
            plan.check_destination_names()?;
            if let Some(b) = &bundle {
                write_bundle(b, &plan)?;
            }
            match output {
                PlanOutput::Text => print!("{}", crate::plan::render_text(&plan)),
                PlanOutput::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
                PlanOutput::Yaml => print!("{}", serde_yaml::to_string(&plan)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Script { plan, role } => {
            let bundle = load_bundle(&plan)?;
            print!("{}", crate::render::script(&bundle, role.into()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            spec: path,
            role,
            conf,
            client,
            keyring,
            source_conf,
            source_client,
            source_keyring,
            cloud,
            destination_cloud,
            verified,
            state_dir,
            concurrency,
            in_flight,
            wait_timeout,
            output,
            reread,
            buffer_mib,
            earlier_adoption,
            timeout_seconds,
            data_timeout_seconds,
            api_retry_seconds,
            undo,
            yes,
            ssh_config,
            ssh_options,
        } => {
            let state_dir = match state_dir {
                Some(d) => d,
                None => default_state_dir()?,
            };
            let opts = crate::exec::RunOptions {
                state_dir,
                concurrency: concurrency.max(1),
                in_flight: in_flight.unwrap_or(4 * concurrency).max(concurrency).max(1),
                wait_timeout: std::time::Duration::from_secs(wait_timeout),
                poll: std::time::Duration::from_millis(500),
                json: output == Output::Json,
                reread,
                buffers: crate::transfer::ChunkBudget::new((buffer_mib / 4) as usize),
                earlier_adoption,
                undo,
                ssh_options: role.map(|_| ssh_args(ssh_config, ssh_options)),
            };
            if let Some(role) = role {
                let role = Role::from(role);
                let plan = load_bundle(&path)?;
                confirm(&plan, role, yes, undo)?;
                let storage = crate::ceph::ClusterConfig {
                    conf: conf.unwrap_or_else(|| PathBuf::from("/etc/ceph/ceph.conf")),
                    keyring,
                    client,
                };
                if timeout_seconds == 0 {
                    anyhow::bail!("--timeout-seconds must be at least 1");
                }
                let timeouts = crate::ceph::Timeouts {
                    control: std::time::Duration::from_secs(timeout_seconds),
                    data: std::time::Duration::from_secs(data_timeout_seconds),
                };
                let retry = crate::openstack::RetryPolicy::default()
                    .with_deadline(std::time::Duration::from_secs(api_retry_seconds));
                let connect_to = |storage: &crate::ceph::ClusterConfig| {
                    crate::ceph::Cluster::connect_with(storage, timeouts).with_context(|| {
                        format!(
                            "connecting to {} as client.{}",
                            storage.conf.display(),
                            storage.client
                        )
                    })
                };
                let connect = || connect_to(&storage);
                let cloud = || {
                    let name = cloud.clone().unwrap_or_else(|| "env".into());
                    crate::openstack::connect_with(&name, retry)
                        .with_context(|| format!("connecting to the cloud {name:?}"))
                };
                let mut access = crate::exec::Access::default();
                match role {
                    Role::SourceStorage | Role::Cleanup => access.src = Some(connect()?),
                    Role::DestinationStorage => {
                        access.dst = Some(connect()?);
                        let direct = plan
                            .images
                            .iter()
                            .any(|i| i.transfer == crate::spec::Transfer::Direct);
                        match source_conf {
                            Some(conf) => {
                                access.src = Some(connect_to(&crate::ceph::ClusterConfig {
                                    conf,
                                    keyring: source_keyring,
                                    client: source_client,
                                })?)
                            }
                            None if direct => anyhow::bail!(
                                "this plan's transfer is direct: the destination storage part reads the source cluster too; give --source-conf (and --source-id, --source-keyring)"
                            ),
                            None => {}
                        }
                    }
                    Role::SourceCloud => access.src_cloud = Some(cloud()?),
                    Role::DestinationCloud => access.dst_cloud = Some(cloud()?),
                    Role::ConversionHosts => {
                        access.src_cloud = Some(cloud()?);
                        let name = destination_cloud.clone().ok_or_else(|| {
                            anyhow::anyhow!(
                                "the conversion-hosts part attaches volumes in both clouds: give --destination-cloud (and --cloud for the source)"
                            )
                        })?;
                        access.dst_cloud = Some(
                            crate::openstack::connect_with(&name, retry)
                                .with_context(|| format!("connecting to the cloud {name:?}"))?,
                        );
                    }
                }
                if let Some(f) = &verified {
                    let text = if f.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(f)
                            .with_context(|| format!("reading {}", f.display()))?
                    };
                    access.verified = crate::exec::parse_handoff(&text, &plan.id)?;
                }
                let state = crate::exec::run_role(&path, plan, role, access, &opts)?;
                if undo {
                    eprintln!("ferry: {role} part undone; state in {}", state.display());
                    return Ok(ExitCode::SUCCESS);
                }
                eprintln!("ferry: {role} part done; state in {}", state.display());
                return Ok(ExitCode::SUCCESS);
            }
            let spec = Spec::load(&path)?;
            let state = crate::exec::run(&path, &spec, &opts)?;
            if undo {
                eprintln!("ferry: source put back; state in {}", state.display());
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("ferry: done; state in {}", state.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Stream {
            from,
            to,
            ssh_config,
            ssh_options,
            remote_ferry,
            stall_timeout,
            state_dir,
            target_zeroed,
            size,
            output,
        } => {
            let opts = crate::transfer::stream::relay::RelayOptions {
                ssh_options: ssh_args(ssh_config, ssh_options),
                remote_ferry,
                target_ferry: None,
                stall: std::time::Duration::from_secs(stall_timeout.max(1)),
                state_dir,
                zeroed: target_zeroed,
                size,
                identity: None,
            };
            let report = crate::transfer::stream::relay::stream(&from, &to, &opts)
                .with_context(|| format!("streaming {from} to {to}"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Text => println!("{}", stream_text(&report)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent { agent } => run_agent(agent),
    }
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

fn run_agent(agent: Agent) -> anyhow::Result<ExitCode> {
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

/// The destination cluster, when the spec's credentials reach it (a plan
/// can be made without: it then lacks what only the destination knows).
fn destination_cluster(spec: &Spec) -> Option<crate::ceph::Cluster> {
    if !spec.destination.cluster.is_given() {
        return None;
    }
    match crate::ceph::Cluster::connect(&spec.destination.cluster, spec.timeout()) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("ferry: warning: the destination cluster cannot be read ({e}); the plan carries no destination fsid, which registering Glance images needs, and plans clones whose parent is not in this migration flat");
            None
        }
    }
}

fn write_bundle(path: &std::path::Path, plan: &crate::plan::Plan) -> anyhow::Result<()> {
    let text = crate::plan::bundle_text(plan)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("ferry: plan {} written to {}", plan.id, path.display());
    let ssh = plan.images.iter().flat_map(|i| &i.steps).any(|s| {
        matches!(&s.action, crate::plan::Action::StreamVolume(steps::StreamVolume { hosts, .. }) if !hosts.ssh_options.is_empty())
    });
    if ssh {
        eprintln!("ferry: the conversion hosts' ssh options are not in the bundle: whoever runs the conversion-hosts part gives theirs (ferry run --role conversion-hosts --ssh-config FILE / --ssh-option KEY=VALUE)");
    }
    Ok(())
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
