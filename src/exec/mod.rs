//! Executes a plan with ferry's own Ceph access: every step checks the real
//! state first (a step whose `done_when` checks hold is skipped), waits for
//! what it requires, acts, proves it took effect, and is recorded in the run
//! state, so a re-run resumes and a finished run changes nothing.

mod board;
mod cloud;
mod progress;
mod stall;
mod state;

pub use board::{clock, BatchProgress, Board, Phase};
pub use progress::{Meter, Progress};

pub use state::{state_path, ImageState, RunState};

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::ceph::{
    complete_mirror_snapshot_after, primary_mirror_snapshot_after, CephError, Cluster, ErrorKind,
    Features, Image, ImageMirrorState, MirrorMode, PeerDirection, ReplayProgress,
};
use crate::openstack::{Cloud, Glance};
use crate::plan::{Action, Check, ImageAt, ImagePlan, Plan, Role, Site, Step};
use crate::spec::Spec;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where run state files live.
    pub state_dir: PathBuf,
    /// How many images move at once.
    pub concurrency: usize,
    /// Longest wait for a requirement (idle image, mirror sync).
    pub wait_timeout: Duration,
    /// How often waits poll.
    pub poll: Duration,
    /// Line events as JSON on stdout instead of text on stderr.
    pub json: bool,
    /// Verify reads the copy back instead of taking the digest of what the
    /// copy wrote (one more read of the copy's data).
    pub reread: bool,
}

/// What a run can reach: all of it for a whole run, one role's share for
/// `--role`.
#[derive(Default)]
pub struct Access {
    pub src: Option<Cluster>,
    pub dst: Option<Cluster>,
    pub src_cloud: Option<Cloud>,
    pub dst_cloud: Option<Cloud>,
    /// The destination storage part's hand-off: source image (`pool/image`)
    /// → the digest its copy was verified with.
    pub verified: BTreeMap<String, String>,
}

struct Ctx<'a> {
    access: Access,
    /// The one role this run performs; None: all of them.
    role: Option<Role>,
    opts: &'a RunOptions,
    state: Mutex<RunState>,
    path: PathBuf,
    board: Mutex<Board>,
    /// Whether stderr is a terminal showing the live board (text output only).
    live: bool,
    /// Lines of the live board currently drawn below the event lines.
    drawn: Mutex<usize>,
    started: Instant,
}

/// Runs (or resumes) the migration of `spec`, every role. Returns the
/// state file path.
pub fn run(spec_path: &Path, spec: &Spec, opts: &RunOptions) -> anyhow::Result<PathBuf> {
    state_dir(opts)?;
    let path = state_path(&opts.state_dir, spec_path);
    let timeout = spec.timeout();
    let src = Cluster::connect(&spec.source.cluster, timeout)
        .context("connecting to the source cluster")?;
    let dst = Cluster::connect(&spec.destination.cluster, timeout)
        .context("connecting to the destination cluster")?;
    let src_cloud = crate::openstack::connect_side(spec.source.cloud.as_deref(), "source")?;
    let dst_cloud =
        crate::openstack::connect_side(spec.destination.cloud.as_deref(), "destination")?;
    let state = match RunState::load(&path)? {
        // The plan is kept as first built once a step has done something:
        // discovering again would see the features ferry changed.
        Some(s) if s.images.iter().any(|i| !i.done.is_empty()) => s,
        _ => {
            let facts = crate::plan::discover(&src, spec, src_cloud.as_ref())
                .context("reading the source images")?;
            let mut opts = crate::plan::BuildOptions::from_spec(spec);
            opts.destination_fsid = Some(dst.fsid()?);
            let s = RunState::new(crate::plan::build(&opts, &facts));
            s.save(&path)?;
            s
        }
    };
    let access = Access {
        src: Some(src),
        dst: Some(dst),
        src_cloud,
        dst_cloud,
        verified: BTreeMap::new(),
    };
    execute(state, path, access, None, opts)
}

/// Runs (or resumes) one role's part of a plan bundle written by `ferry
/// plan`, with only that role's access. Its state file is
/// `<state dir>/<bundle name>.<role>.state.yaml`.
pub fn run_role(
    bundle: &Path,
    plan: Plan,
    role: Role,
    access: Access,
    opts: &RunOptions,
) -> anyhow::Result<PathBuf> {
    state_dir(opts)?;
    let stem = bundle
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plan");
    let path = opts.state_dir.join(format!("{stem}.{role}.state.yaml"));
    let state = match RunState::load(&path)? {
        Some(s) if s.plan.id == plan.id => s,
        Some(s) => bail!(
            "{} belongs to plan {}, not to this bundle's plan {}: move it away",
            path.display(),
            s.plan.id,
            plan.id
        ),
        None => RunState::new(plan),
    };
    state.save(&path)?;
    execute(state, path, access, Some(role), opts)
}

fn state_dir(opts: &RunOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating state directory {}", opts.state_dir.display()))
}

/// Reads a hand-off: `ferry-verified <plan id> <pool>/<image> <digest>`
/// lines (other lines are ignored, so a whole log may be given). Lines of
/// another plan are refused.
pub fn parse_handoff(text: &str, plan_id: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if w.next() != Some(HANDOFF) {
            continue;
        }
        let (Some(id), Some(image), Some(sum), None) = (w.next(), w.next(), w.next(), w.next())
        else {
            bail!("hand-off line not understood: {line:?}");
        };
        if id != plan_id {
            bail!("hand-off line of plan {id}, not of this plan {plan_id}: {line:?}");
        }
        if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("hand-off line without a digest: {line:?}");
        }
        out.insert(image.to_string(), sum.to_ascii_lowercase());
    }
    Ok(out)
}

/// The first word of a hand-off line.
pub const HANDOFF: &str = "ferry-verified";

fn execute(
    state: RunState,
    path: PathBuf,
    access: Access,
    role: Option<Role>,
    opts: &RunOptions,
) -> anyhow::Result<PathBuf> {
    let board = Board::new(
        state
            .plan
            .images
            .iter()
            .map(|p| (p.image.source_spec(), p.facts.size)),
    );
    let ctx = Ctx {
        access,
        role,
        opts,
        state: Mutex::new(state),
        path: path.clone(),
        board: Mutex::new(board),
        live: !opts.json && std::io::stderr().is_terminal(),
        drawn: Mutex::new(0),
        started: Instant::now(),
    };
    let n = ctx.state.lock().unwrap().plan.images.len();
    let next = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.concurrency.clamp(1, n.max(1)))
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    match run_image(&ctx, i) {
                        Ok(()) => ctx.board.lock().unwrap().phase(i, Phase::Done),
                        Err(e) => {
                            ctx.board.lock().unwrap().phase(i, Phase::Failed);
                            let name = ctx.state.lock().unwrap().plan.images[i].image.source_spec();
                            ctx.event(i, "-", "failed", &format!("{e:#}"));
                            failures.lock().unwrap().push(format!("{name}: {e:#}"));
                        }
                    }
                })
            })
            .collect();
        s.spawn(|| ctx.tick(&finished));
        for w in workers {
            let _ = w.join();
        }
        finished.store(true, Ordering::SeqCst);
    });
    ctx.finish();
    if role == Some(Role::DestinationStorage) {
        ctx.hand_off()?;
    }
    let failures = failures.into_inner().unwrap();
    if failures.is_empty() {
        Ok(path)
    } else {
        bail!(
            "{} of {n} image(s) failed (state kept in {}; run again to resume):\n  {}",
            failures.len(),
            path.display(),
            failures.join("\n  ")
        )
    }
}

/// How often the live board is redrawn, and how often the batch is reported
/// as a line (JSON, or text to a file or pipe).
const REDRAW: Duration = Duration::from_millis(500);
const BATCH_EVERY: Duration = Duration::from_secs(10);

impl Ctx<'_> {
    fn event(&self, image: usize, step: &str, status: &str, detail: &str) {
        let name = self.state.lock().unwrap().plan.images[image]
            .image
            .source_spec();
        if self.opts.json {
            let line = serde_json::json!({"image": name, "step": step, "status": status, "detail": detail});
            let _g = self.drawn.lock().unwrap();
            println!("{line}");
        } else if !(self.live && status == "progress") {
            // On a terminal the board shows progress; other events scroll above it.
            self.print_above_board(&format!("{name:<32} {step:<24} {status:<8} {detail}"));
        }
    }

    /// Prints a line; on a terminal, above the live board, which is redrawn.
    fn print_above_board(&self, line: &str) {
        let mut drawn = self.drawn.lock().unwrap();
        let mut e = std::io::stderr().lock();
        if self.live {
            erase(&mut e, *drawn);
            let _ = writeln!(e, "{line}");
            *drawn = self.draw(&mut e);
        } else {
            let _ = writeln!(e, "{line}");
        }
    }

    /// Draws the board below the cursor; returns the lines drawn.
    fn draw(&self, e: &mut impl Write) -> usize {
        let mut board = self.board.lock().unwrap();
        let batch = board.sample(self.started.elapsed());
        let lines = board.lines(&batch, terminal_width());
        for l in &lines {
            let _ = writeln!(e, "{l}");
        }
        let _ = e.flush();
        lines.len()
    }

    /// Until `finished`: redraws the live board, or reports the batch as a
    /// line every [`BATCH_EVERY`].
    fn tick(&self, finished: &AtomicBool) {
        let mut last_line = Instant::now();
        while !finished.load(Ordering::SeqCst) {
            std::thread::sleep(REDRAW);
            if self.live {
                let mut drawn = self.drawn.lock().unwrap();
                let mut e = std::io::stderr().lock();
                erase(&mut e, *drawn);
                *drawn = self.draw(&mut e);
            } else if last_line.elapsed() >= BATCH_EVERY {
                last_line = Instant::now();
                self.batch_line();
            }
        }
    }

    /// One line for the batch: a JSON event, or text.
    fn batch_line(&self) {
        let batch = self.board.lock().unwrap().sample(self.started.elapsed());
        let _g = self.drawn.lock().unwrap();
        if self.opts.json {
            println!("{}", serde_json::json!({ "batch": batch }));
        } else {
            eprintln!("ferry: {batch}");
        }
    }

    /// Replaces the live board with the final batch line.
    fn finish(&self) {
        if self.live {
            let mut drawn = self.drawn.lock().unwrap();
            let mut e = std::io::stderr().lock();
            erase(&mut e, *drawn);
            *drawn = 0;
            let b = self.board.lock().unwrap().sample(self.started.elapsed());
            let failed = if b.failed > 0 {
                format!(" ({} failed)", b.failed)
            } else {
                String::new()
            };
            let _ = writeln!(
                e,
                "ferry: {} of {} image(s) done{failed} in {}",
                b.done + b.failed,
                b.images,
                clock(self.started.elapsed().as_secs())
            );
        } else {
            self.batch_line();
        }
    }

    fn cluster(&self, site: Site) -> anyhow::Result<&Cluster> {
        let (c, name) = match site {
            Site::Source => (&self.access.src, "source"),
            Site::Destination => (&self.access.dst, "destination"),
        };
        c.as_ref().ok_or_else(|| match self.role {
            Some(r) => anyhow!("the {r} part has no access to the {name} cluster"),
            None => anyhow!("no access to the {name} cluster"),
        })
    }

    fn dst(&self) -> anyhow::Result<&Cluster> {
        self.cluster(Site::Destination)
    }

    fn plan_id(&self) -> String {
        self.state.lock().unwrap().plan.id.clone()
    }

    fn with_image<T>(
        &self,
        at: &ImageAt,
        write: bool,
        f: impl FnOnce(&mut Image<'_>) -> Result<T, CephError>,
    ) -> anyhow::Result<T> {
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        let mut img = if write {
            pool.open_image(&at.image)?
        } else {
            pool.open_image_read_only(&at.image, at.snap.as_deref())?
        };
        Ok(f(&mut img)?)
    }

    fn exists(&self, at: &ImageAt) -> anyhow::Result<bool> {
        let head = plain(at);
        match self.with_image(&head, false, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A metadata value of an image (None when the image or key is missing).
    fn metadata(&self, at: &ImageAt, key: &str) -> anyhow::Result<Option<String>> {
        match self.with_image(&plain(at), false, |img| img.metadata_get(key)) {
            Ok(v) => Ok(v),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The digest the copy of `source` was verified with, as far as this
    /// run can see: the destination reads its record; the source reads its
    /// own note, or compares the hand-off with the cut-over's checksum.
    fn verified_sum(&self, source: &ImageAt, copy: &ImageAt) -> anyhow::Result<Option<String>> {
        if self.access.dst.is_some() {
            return self.record(copy);
        }
        let snap = source.snap.as_deref().unwrap_or_default();
        if let Some(v) = self.metadata(source, &crate::plan::verified_key(snap))? {
            return Ok(Some(v));
        }
        let key = format!("{}/{}", source.pool, source.image);
        let Some(handed) = self.access.verified.get(&key) else {
            return Ok(None);
        };
        match self.metadata(source, &crate::plan::checksum_key(snap))? {
            Some(sum) if &sum == handed => Ok(Some(sum)),
            Some(sum) => bail!(
                "the hand-off says the copy of {key} has digest {handed}, but the cut-over {snap} has {sum}: not the same data; nothing is cleaned up"
            ),
            None => bail!("{source} has no checksum ({}): was the cut-over made by this plan?", crate::plan::checksum_key(snap)),
        }
    }

    /// The digest this plan's record in the destination pool holds for a
    /// verified copy.
    fn record(&self, copy: &ImageAt) -> anyhow::Result<Option<String>> {
        let record = crate::plan::record_object(&self.plan_id());
        Ok(self
            .dst()?
            .pool(&copy.pool)?
            .object_xattr(&record, &copy.image)?)
    }

    /// Prints the hand-off lines of the verified copies (stdout), for the
    /// cleanup part.
    fn hand_off(&self) -> anyhow::Result<()> {
        let plan = self.state.lock().unwrap().plan.clone();
        for p in &plan.images {
            for s in &p.steps {
                if let Action::Verify { copy, .. } = &s.action {
                    let source = format!("{}/{}", p.image.pool, p.image.name);
                    if let Some(sum) = self.record(copy)? {
                        let line = format!("{HANDOFF} {} {source} {sum}", plan.id);
                        if self.opts.json {
                            println!("{}", serde_json::json!({ "hand_off": line }));
                        } else {
                            println!("{line}");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn save(&self) -> anyhow::Result<()> {
        self.state.lock().unwrap().save(&self.path)
    }

    fn image_state(&self, i: usize) -> ImageState {
        self.state.lock().unwrap().images[i].clone()
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut ImageState)) -> anyhow::Result<()> {
        f(&mut self.state.lock().unwrap().images[i]);
        self.save()
    }

    /// Watchers on a snapshot-mirrored primary include the peers' rbd-mirror
    /// daemons; they do not make the image "in use".
    fn mirror_watchers(&self, at: &ImageAt) -> anyhow::Result<usize> {
        let mode = self.with_image(at, false, |img| {
            let info = img.mirror_info()?;
            if info.state == ImageMirrorState::Enabled && info.primary {
                img.mirror_mode()
            } else {
                Ok(None)
            }
        })?;
        if mode != Some(MirrorMode::Snapshot) {
            return Ok(0);
        }
        let peers = self.cluster(at.site)?.pool(&at.pool)?.mirror_peers()?;
        Ok(peers
            .iter()
            .filter(|p| p.direction != PeerDirection::RxOnly)
            .count())
    }

    fn all_hold(&self, checks: &[Check]) -> anyhow::Result<bool> {
        for c in checks {
            if !self.holds(c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn holds(&self, check: &Check) -> anyhow::Result<bool> {
        Ok(match check {
            Check::Exists { image } => self.exists(image)?,
            Check::Absent { image } => !self.exists(image)?,
            Check::NotInUse { image } => {
                let watchers = self.with_image(image, false, |img| img.watchers())?;
                watchers.len() <= self.mirror_watchers(image)?
            }
            Check::FeaturesPresent { image, features } => self
                .with_image(image, false, |img| img.features())?
                .contains(*features),
            Check::FeaturesAbsent { image, features } => {
                self.with_image(image, false, |img| img.features())?.0 & features.0 == 0
            }
            Check::MirroringEnabled { image, mode } => {
                self.with_image(image, false, |img| img.mirror_mode())? == Some(*mode)
            }
            Check::MirroringDisabled { image } => {
                self.with_image(image, false, |img| img.mirror_info())?
                    .state
                    == ImageMirrorState::Disabled
            }
            Check::MirrorSynced { mirrored, mode, .. } => {
                match self.snap_id(mirrored)? {
                    None => false,
                    // Snapshot mode: the mirror snapshot that carried it is
                    // complete.
                    Some(id) if *mode == MirrorMode::Snapshot => complete_mirror_snapshot_after(
                        &self.with_image(&plain(mirrored), false, |img| img.mirror_snapshots())?,
                        id,
                    ),
                    // Journal mode: replay creates the snapshot after every
                    // write before it, but an initial image sync creates it
                    // before copying its data. Only a status written after the
                    // snapshot appeared that says "replaying" (the sync is
                    // over) proves the data is there; the status refreshes
                    // about every 30 s.
                    Some(id) => {
                        let (since, status) = self.with_image(&plain(mirrored), false, |img| {
                            Ok((img.snap_timestamp(id)?, img.mirror_global_status()?))
                        })?;
                        status.local().is_some_and(|l| {
                            l.state == crate::ceph::SiteState::Replaying && l.last_update > since
                        })
                    }
                }
            }
            Check::SnapshotExists { image } => self.snap_id(image)?.is_some(),
            Check::MetadataPresent { image, key } => self.metadata(image, key)?.is_some(),
            Check::MetadataAbsent { image, key } => self.metadata(image, key)?.is_none(),
            Check::SnapshotAbsent { image } => self.snap_id(image)?.is_none(),
            Check::MirrorSnapshotAfter { image } => match self.snap_id(image)? {
                None => false,
                Some(id) => {
                    let head = plain(image);
                    primary_mirror_snapshot_after(
                        &self.with_image(&head, false, |img| img.mirror_snapshots())?,
                        id,
                    )
                }
            },
            Check::SnapshotProtected { image } => {
                let snap = image.snap.clone().unwrap_or_default();
                let head = plain(image);
                match self.with_image(&head, false, |img| img.snap_is_protected(&snap)) {
                    Ok(p) => p,
                    Err(e) if not_found(&e) => false,
                    Err(e) => return Err(e),
                }
            }
            Check::Verified { source, copy } => self.verified_sum(source, copy)?.is_some(),
            Check::Published { image } => self.published(image)?,
            Check::VolumeAdopted { source_volume } => self
                .adopted_volume(source_volume)?
                .is_some_and(|v| v.status == "available"),
            Check::ImageRegistered { id } => match Glance(self.dst_cloud()?).image(id) {
                Ok(img) => img.status == "active",
                Err(e) if e.status() == Some(404) => false,
                Err(e) => return Err(e.into()),
            },
        })
    }

    /// Waits until `check` holds; while waiting for sync, watches for a
    /// stopped rbd-mirror instead of waiting forever.
    fn wait(&self, i: usize, step: &Step, check: &Check) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut said = false;
        let mut last_daemon_check = Instant::now();
        let mut error_since: Option<Instant> = None;
        let mut last_progress = Instant::now();
        let mut meter = Meter::default();
        loop {
            if self.holds(check)? {
                return Ok(());
            }
            let waiting_for = match check {
                Check::NotInUse { image } => format!("{image} to be idle (a client has it open)"),
                Check::MirrorSynced { mirrored, .. } => format!("{mirrored} to be in sync"),
                Check::Exists { image } => format!("{image} to appear"),
                Check::MetadataPresent { image, key } => format!("{key} on {image}"),
                Check::Published { image } => format!(
                    "the verified copy {image} (the destination storage part publishes it after verify)"
                ),
                Check::Verified { source, .. } if self.access.dst.is_none() => bail!(
                    "the copy of {source} is not known to be verified: give the destination storage part's hand-off ({HANDOFF} lines) with --verified"
                ),
                other => bail!("step {} needs {other:?}, which does not hold", step.id),
            };
            if !said {
                self.event(i, &step.name, "waiting", &format!("for {waiting_for}"));
                said = true;
            }
            let arriving = match check {
                Check::MirrorSynced { mirrored, .. } => Some(mirrored),
                Check::Exists { image } if image.site == Site::Destination => Some(image),
                _ => None,
            };
            if let Some(mirrored) = arriving {
                if last_daemon_check.elapsed() >= Duration::from_secs(5) {
                    last_daemon_check = Instant::now();
                    if let Some(why) = self.stalled(&plain(mirrored), &mut error_since)? {
                        bail!("stalled: {why} (waiting for {waiting_for})");
                    }
                }
            }
            if let Check::MirrorSynced { mirrored, mode, .. } = check {
                if last_progress.elapsed() >= Duration::from_secs(2) {
                    last_progress = Instant::now();
                    if let Some(text) =
                        self.sync_progress(i, &plain(mirrored), *mode, &mut meter, start.elapsed())?
                    {
                        self.event(i, &step.name, "progress", &text);
                    }
                }
            }
            if start.elapsed() > self.opts.wait_timeout {
                bail!(
                    "gave up after {:?} waiting for {waiting_for}",
                    self.opts.wait_timeout
                );
            }
            std::thread::sleep(self.opts.poll);
        }
    }

    fn act(&self, i: usize, step: &Step) -> anyhow::Result<String> {
        match &step.action {
            Action::Preflight { image } => {
                let plan = self.state.lock().unwrap().plan.images[i].clone();
                let dest = ImageAt {
                    site: Site::Destination,
                    pool: plan.image.dest_pool.clone(),
                    image: plan.image.dest_name.clone(),
                    snap: None,
                };
                let st = self.image_state(i);
                let copied = plan
                    .steps
                    .iter()
                    .any(|s| s.name == "copy" && st.done.contains(&s.id));
                // A run that sees the destination refuses a taken name
                // before changing the source.
                if !copied && self.access.dst.is_some() && self.exists(&dest)? {
                    bail!("{dest} already exists: choose another dest_name, or remove it");
                }
                let size = self.with_image(image, false, |img| Ok(img.info()?.size))?;
                Ok(format!("{size} bytes"))
            }
            Action::DisableFeatures { image, features }
            | Action::EnableFeatures { image, features } => {
                let enable = matches!(step.action, Action::EnableFeatures { .. });
                self.with_image(image, true, |img| {
                    for f in features {
                        // Re-read each time: in 16.2 disabling fast-diff also
                        // disables object-map.
                        if img.features()?.contains(*f) != enable {
                            img.update_features(*f, enable)?;
                        }
                    }
                    Ok(())
                })?;
                Ok(features
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(", "))
            }
            Action::EnableMirroring { image, mode } => {
                self.with_image(image, true, |img| img.mirror_enable(*mode))?;
                Ok(mode.to_string())
            }
            Action::CreateCutover { image, mode } => {
                let name = image
                    .snap
                    .clone()
                    .ok_or_else(|| anyhow!("{image} names no snapshot"))?;
                let head = plain(image);
                if self.snap_id(image)?.is_none() {
                    self.with_image(&head, true, |img| img.snap_create(&name))?;
                }
                // The snapshot's digest goes into the image metadata, which
                // mirroring carries to the destination for its verify. In
                // snapshot mode, the mirror snapshot that carries the data
                // comes first, so rbd-mirror transfers while ferry hashes;
                // another one then carries the digest (a small delta).
                let key = crate::plan::checksum_key(&name);
                let snapshot_mode = *mode == MirrorMode::Snapshot;
                let after = Check::MirrorSnapshotAfter {
                    image: image.clone(),
                };
                let mut mirror_snaps = Vec::new();
                let known = self.with_image(&head, false, |img| img.metadata_get(&key))?;
                if snapshot_mode && known.is_none() && !self.holds(&after)? {
                    mirror_snaps
                        .push(self.with_image(&head, true, |img| img.mirror_snapshot_create())?);
                }
                let sum = match known {
                    Some(sum) => sum,
                    None => {
                        let sum = self.digest(i, step, image, Phase::Preparing)?;
                        self.with_image(&head, true, |img| img.metadata_set(&key, &sum))?;
                        if snapshot_mode {
                            mirror_snaps.push(
                                self.with_image(&head, true, |img| img.mirror_snapshot_create())?,
                            );
                        }
                        sum
                    }
                };
                self.update(i, |s| s.source_checksum = Some(sum.clone()))?;
                if snapshot_mode && mirror_snaps.is_empty() && !self.holds(&after)? {
                    mirror_snaps
                        .push(self.with_image(&head, true, |img| img.mirror_snapshot_create())?);
                }
                if mirror_snaps.is_empty() {
                    return Ok(format!("{image} (digest {})", &sum[..16]));
                }
                let ids: Vec<String> = mirror_snaps.iter().map(|id| id.to_string()).collect();
                Ok(format!(
                    "{image} (digest {}), mirror snapshot {}",
                    &sum[..16],
                    ids.join(", ")
                ))
            }
            Action::RemoveSnapshot { image } => {
                let name = image.snap.clone().unwrap_or_default();
                let head = plain(image);
                // The checksum set with the cut-over goes first, then the
                // snapshot (whose absence marks the step done).
                self.with_image(&head, true, |img| {
                    img.metadata_remove(&crate::plan::checksum_key(&name))
                })?;
                if self.snap_id(image)?.is_some() {
                    self.with_image(&head, true, |img| img.snap_remove(&name))?;
                }
                Ok(format!("{image} removed"))
            }
            Action::WaitForSync {
                source,
                mirrored,
                mode,
            } => {
                let synced = Check::MirrorSynced {
                    source: source.clone(),
                    mirrored: mirrored.clone(),
                    mode: *mode,
                };
                self.wait(i, step, &synced)?;
                // In snapshot mode the cut-over's digest follows its data.
                let digest = Check::MetadataPresent {
                    image: plain(mirrored),
                    key: crate::plan::checksum_key(mirrored.snap.as_deref().unwrap_or_default()),
                };
                self.wait(i, step, &digest)?;
                Ok("in sync".into())
            }
            Action::Copy { from, to, features } => {
                // From the cut-over snapshot (later syncs cannot change it)
                // into the partial name, hashing what it writes; a copy
                // interrupted earlier resumes with the chunks it lacks.
                let dst_pool = self.dst()?.pool(&to.pool)?;
                let from_pool = self.dst()?.pool(&from.pool)?;
                let started = Instant::now();
                let mut meter = Meter::default();
                let mut last = Instant::now();
                let out = crate::transfer::rbd::copy_image(
                    &from_pool,
                    &from.image,
                    from.snap.as_deref(),
                    &dst_pool,
                    &to.image,
                    *features,
                    &engine_options(),
                    &mut |done, total| {
                        self.step_progress(
                            i,
                            step,
                            Phase::Copying,
                            &mut meter,
                            &mut last,
                            done,
                            total,
                        );
                        true
                    },
                )?;
                // The mark of a finished copy holds the digest of what it
                // wrote, which the verify compares.
                let snap = from.snap.as_deref().unwrap_or_default();
                dst_pool
                    .open_image(&to.image)?
                    .metadata_set(&crate::plan::copied_key(snap), &out.digest)?;
                crate::transfer::rbd::forget_log(&dst_pool, &to.image)?;
                Ok(format!(
                    "read {} bytes, wrote {} bytes, resumed {} of {} chunks, {:.1} s",
                    out.bytes_read,
                    out.bytes_written,
                    out.chunks_resumed,
                    out.chunks,
                    started.elapsed().as_secs_f64()
                ))
            }
            Action::SnapshotAndProtect { image } => {
                let snap = image.snap.clone().unwrap_or_else(|| "snap".into());
                let head = plain(image);
                self.with_image(&head, true, |img| {
                    if !img.snapshots()?.iter().any(|s| s.name == snap) {
                        img.snap_create(&snap)?;
                    }
                    if !img.snap_is_protected(&snap)? {
                        img.snap_protect(&snap)?;
                    }
                    Ok(())
                })?;
                Ok(format!("{image}"))
            }
            Action::Verify {
                expected,
                partial,
                copy,
            } => {
                // The digest the source took at the cut-over, carried by
                // mirroring, against the digest of what the copy wrote. A
                // copy made otherwise (a script's `rbd cp`), or --reread,
                // reads the copy back.
                let snap = expected.snap.as_deref().unwrap_or_default();
                let key = crate::plan::checksum_key(snap);
                let want = self
                    .metadata(expected, &key)?
                    .ok_or_else(|| anyhow!("{expected} carries no checksum ({key})"))?;
                let sum = match self.metadata(partial, &crate::plan::copied_key(snap))? {
                    Some(written) if crate::transfer::is_digest(&written) && !self.opts.reread => {
                        written
                    }
                    _ => self.digest(i, step, partial, Phase::Verifying)?,
                };
                self.update(i, |s| {
                    s.source_checksum = Some(want.clone());
                    s.destination_checksum = Some(sum.clone());
                })?;
                if sum != want {
                    // Copy afresh on the next run; keep this one to look at.
                    self.with_image(partial, true, |img| {
                        img.metadata_remove(&crate::plan::copied_key(snap))
                    })?;
                    crate::transfer::rbd::forget_log(
                        &self.dst()?.pool(&partial.pool)?,
                        &partial.image,
                    )?;
                    bail!("digests differ: source {want}, copy {sum}; {partial} is kept for inspection, running again copies afresh; nothing is cleaned up");
                }
                // On the copy (it stays with the image through adoption), then
                // in the record that marks it verified.
                self.with_image(partial, true, |img| img.metadata_set(&key, &sum))?;
                let record = crate::plan::record_object(&self.plan_id());
                self.dst()?
                    .pool(&copy.pool)?
                    .set_object_xattr(&record, &copy.image, &sum)?;
                Ok(format!("digest {}", &sum[..16]))
            }
            Action::Publish { partial, copy } => {
                if self.exists(partial)? {
                    self.dst()?
                        .pool(&copy.pool)?
                        .rename_image(&partial.image, &copy.image)?;
                }
                Ok(format!("{copy}"))
            }
            Action::ConfirmVerified { source, copy } => {
                let sum = self
                    .verified_sum(source, copy)?
                    .ok_or_else(|| anyhow!("the copy of {source} is not verified"))?;
                let snap = source.snap.as_deref().unwrap_or_default();
                self.with_image(&plain(source), true, |img| {
                    img.metadata_set(&crate::plan::verified_key(snap), &sum)
                })?;
                Ok(format!("digest {}", &sum[..16]))
            }
            Action::CheckSourceCloud {
                object,
                allow_in_use,
            } => cloud::check_source(self, object, *allow_in_use),
            Action::DisableMirroring { image } => {
                self.with_image(image, true, |img| img.mirror_disable(false))?;
                Ok("disabled".into())
            }
            Action::CheckDestinationCloud { image, adoption } => {
                cloud::check_destination(self, image, adoption)
            }
            Action::AdoptVolume { image, adoption } => {
                cloud::adopt_volume(self, i, step, image, adoption)
            }
            Action::RegisterImage {
                image,
                registration,
            } => cloud::register_image(self, i, step, image, registration),
            Action::RestoreFeatures { image } => {
                // The plan was made before anything changed.
                let original = self.state.lock().unwrap().plan.images[i].facts.features;
                self.with_image(image, true, |img| {
                    for f in [Features::JOURNALING, Features::EXCLUSIVE_LOCK] {
                        if img.features()?.contains(f) && !original.contains(f) {
                            img.update_features(f, false)?;
                        }
                    }
                    for f in [
                        Features::EXCLUSIVE_LOCK,
                        Features::OBJECT_MAP,
                        Features::FAST_DIFF,
                    ] {
                        if original.contains(f) && !img.features()?.contains(f) {
                            img.update_features(f, true)?;
                        }
                    }
                    // A re-enabled object map starts invalid; rebuilding also
                    // makes fast-diff valid again.
                    if original.contains(Features::OBJECT_MAP) {
                        img.rebuild_object_map()?;
                    }
                    Ok(())
                })?;
                let now = self.with_image(image, false, |img| img.features())?;
                Ok(format!("features: {now}"))
            }
        }
    }

    /// The digest of an image (at its snapshot), reading its allocated
    /// extents, with progress.
    fn digest(&self, i: usize, step: &Step, at: &ImageAt, phase: Phase) -> anyhow::Result<String> {
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        let mut meter = Meter::default();
        let mut last = Instant::now();
        let out = crate::transfer::rbd::digest_image(
            &pool,
            &at.image,
            at.snap.as_deref(),
            &engine_options(),
            &mut |done, size| {
                self.step_progress(i, step, phase, &mut meter, &mut last, done, size);
                true
            },
        )?;
        Ok(out.digest)
    }

    /// Reads the receiving cluster and says why the mirror of `mirrored`
    /// cannot progress, if it cannot. `error_since` carries when rbd-mirror
    /// started reporting an error for it, across calls.
    fn stalled(
        &self,
        mirrored: &ImageAt,
        error_since: &mut Option<Instant>,
    ) -> anyhow::Result<Option<String>> {
        let dst = self.dst()?;
        let health = dst.health()?;
        let daemons = dst.service_daemons("rbd-mirror")?.len();
        let peers = dst.pool(&mirrored.pool)?.mirror_peers()?.len();
        let status = if self.exists(mirrored)? {
            self.with_image(mirrored, false, |img| img.mirror_global_status())
                .ok()
                .and_then(|g| g.local().cloned())
        } else {
            None
        };
        match &status {
            Some(l) if l.state == crate::ceph::SiteState::Error => {
                error_since.get_or_insert_with(Instant::now);
            }
            _ => *error_since = None,
        }
        Ok(stall::stall(&stall::Readings {
            cluster: dst.name(),
            health: &health,
            pools: &[mirrored.pool.as_str()],
            daemons,
            peers,
            local: status.as_ref(),
            error_for: error_since.map(|t| t.elapsed()).unwrap_or_default(),
        }))
    }

    /// Progress of a copy or a verify: the board always, an event every 2 s.
    #[allow(clippy::too_many_arguments)]
    fn step_progress(
        &self,
        i: usize,
        step: &Step,
        phase: Phase,
        meter: &mut Meter,
        last: &mut Instant,
        done: u64,
        total: u64,
    ) {
        let p = meter.sample(done, total, self.started.elapsed());
        self.board
            .lock()
            .unwrap()
            .bytes(i, phase, done, &p.bytes_text());
        let text = p.to_string();
        if last.elapsed() >= Duration::from_secs(2) {
            *last = Instant::now();
            self.event(i, &step.name, "progress", &text);
        }
    }

    /// How far the mirror has come: snapshot mode from the receiving mirror
    /// snapshot's copied objects; journal mode from the status description.
    fn sync_progress(
        &self,
        i: usize,
        mirrored: &ImageAt,
        mode: MirrorMode,
        meter: &mut Meter,
        at: Duration,
    ) -> anyhow::Result<Option<String>> {
        if !self.exists(mirrored)? {
            return Ok(None);
        }
        match mode {
            MirrorMode::Snapshot => {
                // The newest mirror snapshot arriving: the cut-over's, or
                // one before it.
                let (info, received) = self.with_image(mirrored, false, |img| {
                    Ok((img.info()?, img.mirror_snapshots()?))
                })?;
                let Some(s) = received.last() else {
                    return Ok(Some(
                        "waiting for the first mirror snapshot to start".into(),
                    ));
                };
                let objects = info.size.div_ceil(info.object_size.max(1));
                let done_objects = if s.complete {
                    objects
                } else {
                    s.last_copied_object_number
                };
                let p = meter.sample(done_objects * info.object_size, info.size, at);
                self.board
                    .lock()
                    .unwrap()
                    .bytes(i, Phase::Mirroring, p.done, &p.bytes_text());
                Ok(Some(p.to_string()))
            }
            MirrorMode::Journal => {
                let st = self.with_image(mirrored, false, |img| img.mirror_global_status())?;
                let size = self.state.lock().unwrap().plan.images[i].facts.size;
                let text = st.local().map(|l| match l.progress() {
                    ReplayProgress::Bootstrapping { step, percent } => {
                        let pct = percent.unwrap_or(0.0);
                        let done = (size as f64 * pct / 100.0) as u64;
                        let text = format!("initial sync {step} {pct}%");
                        self.board
                            .lock()
                            .unwrap()
                            .bytes(i, Phase::Mirroring, done, &text);
                        text
                    }
                    ReplayProgress::Journal {
                        entries_behind_primary,
                        bytes_per_second,
                        seconds_until_synced,
                    } => {
                        // Replaying the journal: the initial copy is complete.
                        let text = format!(
                            "{entries_behind_primary} entries behind, {}/s{}",
                            crate::check::human_bytes(bytes_per_second as u64),
                            seconds_until_synced
                                .map(|s| format!(", ETA {s:.0} s"))
                                .unwrap_or_default()
                        );
                        self.board
                            .lock()
                            .unwrap()
                            .bytes(i, Phase::Mirroring, size, &text);
                        text
                    }
                    _ => {
                        let text = l.summary();
                        self.board.lock().unwrap().note(i, &text);
                        text
                    }
                });
                Ok(text)
            }
        }
    }

    /// The id of the snapshot `at` names (None when there is none).
    fn snap_id(&self, at: &ImageAt) -> anyhow::Result<Option<u64>> {
        let name = at
            .snap
            .as_deref()
            .ok_or_else(|| anyhow!("{at} names no snapshot"))?;
        let head = plain(at);
        match self.with_image(&head, false, |img| img.snapshots()) {
            Ok(snaps) => Ok(snaps.into_iter().find(|s| s.name == name).map(|s| s.id)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn holds_protected(&self, image: &ImageAt) -> anyhow::Result<bool> {
        self.holds(&Check::SnapshotProtected {
            image: image.clone(),
        })
    }
}

fn run_image(ctx: &Ctx<'_>, i: usize) -> anyhow::Result<()> {
    let plan: ImagePlan = ctx.state.lock().unwrap().plan.images[i].clone();
    let done = ctx.image_state(i).done;
    let steps: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| ctx.role.is_none_or(|r| s.role == r))
        .collect();
    // The last recorded step: steps before it are settled (cleanup may have
    // undone their effects on purpose); from it on, Ceph's word counts.
    let frontier = steps.iter().rposition(|s| done.contains(&s.id));
    for (k, step) in steps.iter().copied().enumerate() {
        let recorded = done.contains(&step.id);
        if recorded && frontier.is_some_and(|f| k < f) {
            ctx.board.lock().unwrap().step_done(i, &step.name, true);
            ctx.event(i, &step.name, "done", "(already)");
            continue;
        }
        // A later step has moved on (the copy is verified, the cleanup has
        // begun): this one's effect may be undone on purpose.
        if !step.past_when.is_empty() && ctx.all_hold(&step.past_when)? {
            ctx.board.lock().unwrap().step_done(i, &step.name, true);
            ctx.event(i, &step.name, "done", "(past)");
            continue;
        }
        let observed = !step.done_when.is_empty() && ctx.all_hold(&step.done_when)?;
        // Ceph's word over the state file's: a recorded step whose effect is
        // gone runs again; one whose effect is there is done.
        if observed || (recorded && step.done_when.is_empty()) {
            if !recorded {
                ctx.update(i, |s| {
                    s.done.insert(step.id.clone());
                })?;
            }
            ctx.board.lock().unwrap().step_done(i, &step.name, true);
            ctx.event(i, &step.name, "done", "(already)");
            continue;
        }
        ctx.board
            .lock()
            .unwrap()
            .phase(i, Phase::of_step(&step.name));
        let label = || {
            format!(
                "step {} ({}) on {}",
                step.id,
                step.name,
                step.action_image()
            )
        };
        for c in &step.requires {
            ctx.wait(i, step, c).with_context(label)?;
        }
        let detail = ctx.act(i, step).with_context(label)?;
        for c in &step.done_when {
            if !ctx.holds(c)? {
                bail!("{}: done but {c:?} does not hold", label());
            }
        }
        ctx.update(i, |s| {
            s.done.insert(step.id.clone());
        })?;
        ctx.board.lock().unwrap().step_done(i, &step.name, false);
        ctx.event(i, &step.name, "done", &detail);
    }
    Ok(())
}

/// The data engine's settings for this run.
fn engine_options() -> crate::transfer::Options {
    // Tests simulate a crash in the middle of a copy with this: the process
    // ends right after that many chunks are recorded, one at a time.
    let crash: Option<u64> = std::env::var("FERRY_TEST_CRASH_AFTER_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok());
    let defaults = crate::transfer::Options::default();
    crate::transfer::Options {
        crash_after_chunks: crash,
        record_chunks: if crash.is_some() {
            1
        } else {
            defaults.record_chunks
        },
        ..defaults
    }
}

/// Moves the cursor up over `lines` drawn lines and clears them.
fn erase(e: &mut impl Write, lines: usize) {
    if lines > 0 {
        let _ = write!(e, "\x1b[{lines}F\x1b[J");
    }
}

/// Columns of the terminal on stderr (80 when unknown).
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct; fd 2 stays open.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}

/// Whether an error is Ceph's "no such image/pool/snapshot".
fn not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<CephError>()
        .is_some_and(|c| c.kind() == ErrorKind::NotFound)
}

/// The image `at` names, without its snapshot.
fn plain(at: &ImageAt) -> ImageAt {
    ImageAt {
        snap: None,
        ..at.clone()
    }
}
