//! Executes a plan with ferry's own Ceph access: every step checks the real
//! state first (a step whose `done_when` checks hold is skipped), waits for
//! what it requires, acts, proves it took effect, and is recorded in the run
//! state, so a re-run resumes and a finished run changes nothing.

mod board;
mod cloud;
mod observe;
mod progress;
mod space;
mod stall;
mod state;
mod stream;

pub use board::{clock, BatchProgress, Board, Phase};
pub use progress::{Meter, Progress};

pub use state::{legacy_state_path, state_path, ImageState, RunState, StateLock};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::ceph::{
    complete_mirror_snapshot_after, primary_mirror_snapshot_after, CephError, Cluster, ErrorKind,
    Features, Image, ImageMirrorState, MirrorMode, ReplayProgress,
};
use crate::openstack::{Cloud, Glance};
use crate::plan::{
    Action, Check, ImageAt, ImagePlan, Plan, Role, Site, SourceId, Step, VerifiedRecord,
};
use crate::spec::Spec;

/// A wait that ran out (`--wait-timeout`) or a mirror that cannot progress:
/// nothing is half-done and running again later may succeed (exit status 2,
/// where any other error is 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GaveUp(pub String);

/// How a run ended badly: which images failed, and whether every one of
/// them only gave up waiting.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RunFailed {
    pub message: String,
    /// Every failure was a [`GaveUp`]: run again later.
    pub gave_up: bool,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where run state files live.
    pub state_dir: PathBuf,
    /// How many steps that move data (hash, copy, verify) run at once.
    pub concurrency: usize,
    /// How many images are under way at once (at least `concurrency`):
    /// the others' preparation, cut-over and mirroring go on while some
    /// copy.
    pub in_flight: usize,
    /// Longest wait for a requirement (idle image, mirror sync).
    pub wait_timeout: Duration,
    /// How often waits poll.
    pub poll: Duration,
    /// Line events as JSON on stdout instead of text on stderr.
    pub json: bool,
    /// Verify reads the copy back instead of taking the digest of what the
    /// copy wrote (one more read of the copy's data).
    pub reread: bool,
    /// The chunk buffers all data steps of the run share: its memory for
    /// data, whatever the concurrency.
    pub buffers: Arc<crate::transfer::ChunkBudget>,
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
    /// → the record of its verified copy.
    pub verified: BTreeMap<String, VerifiedRecord>,
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
    /// Steps that move data take one of these (`--concurrency`).
    data_slots: Slots,
    /// What the waits of all images share (readings, the pace of checks).
    observer: observe::Observer,
    /// Images open at once through `with_image` ([`OPEN_AT_ONCE`]).
    open_slots: Slots,
    /// Images whose migration failed in this run, or that this run does
    /// not begin: a wait for what one of them would have made (a clone's
    /// parent) ends instead of waiting out its timeout.
    failed: Mutex<BTreeSet<usize>>,
}

/// How long the readings of a wait may fail in a row before the wait ends
/// with their error.
const ERROR_GRACE: Duration = Duration::from_secs(120);

/// The failing readings of one wait: errors are "not yet" until they
/// have lasted `grace` in a row; a reading that succeeds starts afresh.
struct ReadFailures {
    grace: Duration,
    /// Since when, and the last error's text.
    since: Option<(Instant, String)>,
}

impl ReadFailures {
    fn new(grace: Duration) -> ReadFailures {
        ReadFailures { grace, since: None }
    }

    /// `Some` of a reading that succeeded; `None` for a failed one within
    /// the grace (`note` is told the first of a row); the error once the
    /// failures have lasted the grace.
    fn tolerate<T>(
        &mut self,
        r: anyhow::Result<T>,
        note: impl FnOnce(&str),
    ) -> anyhow::Result<Option<T>> {
        let e = match r {
            Ok(v) => {
                self.since = None;
                return Ok(Some(v));
            }
            Err(e) => e,
        };
        let text = format!("{e:#}");
        let since = match &self.since {
            Some((t, _)) => *t,
            None => {
                note(&text);
                Instant::now()
            }
        };
        if since.elapsed() >= self.grace {
            return Err(e.context(format!(
                "still failing after {} s of polling",
                self.grace.as_secs()
            )));
        }
        self.since = Some((since, text));
        Ok(None)
    }

    /// The last failure's text, while failing.
    fn last(&self) -> Option<&str> {
        self.since.as_ref().map(|(_, e)| e.as_str())
    }
}

/// A counting semaphore: at most `n` holders at once.
struct Slots {
    free: Mutex<usize>,
    freed: std::sync::Condvar,
}

/// One slot, given back when dropped.
struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// A slot if one is free now.
    fn try_take(&self) -> Option<Slot<'_>> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        (*free > 0).then(|| {
            *free -= 1;
            Slot(self)
        })
    }

    /// A slot, waiting for one to be given back.
    fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Images open at once for checks and short actions, whatever the number
/// of images in flight: each open holds a whole librbd configuration
/// (~0.2 MiB), and a batch of waiting images opening theirs at once was most
/// of a run's memory. Not fewer: an action holds its slot while librbd
/// waits for the monitor (a snapshot takes a second), and 200 images
/// through 16 slots took 87 s where 64 took 66 s (unbounded: 63 s, but
/// 195 MiB max RSS against 120 MiB).
const OPEN_AT_ONCE: usize = 64;

thread_local! {
    /// This thread holds an open slot (a nested open goes on without one).
    static HOLDS_OPEN_SLOT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An open slot of this thread, or nothing for a nested open.
struct OpenSlot<'a>(Option<Slot<'a>>);

impl<'a> OpenSlot<'a> {
    fn take(slots: &'a Slots) -> OpenSlot<'a> {
        if HOLDS_OPEN_SLOT.get() {
            return OpenSlot(None);
        }
        let slot = slots.take();
        HOLDS_OPEN_SLOT.set(true);
        OpenSlot(Some(slot))
    }
}

impl Drop for OpenSlot<'_> {
    fn drop(&mut self) {
        if self.0.take().is_some() {
            HOLDS_OPEN_SLOT.set(false);
        }
    }
}

/// Whether a step reads or writes an image's data (and so takes a data
/// slot while it acts; its waits come before, without one).
fn moves_data(action: &Action) -> bool {
    matches!(
        action,
        Action::HashSource { .. }
            | Action::FlatCopy { .. }
            | Action::Copy { .. }
            | Action::Verify { .. }
            | Action::StreamVolume { .. }
    )
}

/// Runs (or resumes) the migration of `spec`, every role. Returns the
/// state file path.
pub fn run(spec_path: &Path, spec: &Spec, opts: &RunOptions) -> anyhow::Result<PathBuf> {
    state_dir(opts)?;
    let path = state_path(&opts.state_dir, spec_path);
    // First of all: a second run on this state stops here, before it reads
    // anything it could act on.
    let _lock = StateLock::acquire(&path)?;
    let timeouts = spec.run_timeouts();
    // A spec whose volumes all stream may name no cluster.
    let connect = |c: &crate::ceph::ClusterConfig, which: &str| {
        c.is_given()
            .then(|| Cluster::connect_with(c, timeouts))
            .transpose()
            .with_context(|| format!("connecting to the {which} cluster"))
    };
    let src = connect(&spec.source.cluster, "source")?;
    let dst = connect(&spec.destination.cluster, "destination")?;
    let retry = spec.api_retry();
    let src_cloud = crate::openstack::connect_side(spec.source.cloud.as_deref(), "source", retry)?;
    let dst_cloud =
        crate::openstack::connect_side(spec.destination.cloud.as_deref(), "destination", retry)?;
    let legacy = legacy_state_path(&opts.state_dir, spec_path);
    if !path.exists() && legacy.exists() {
        bail!(
            "{} holds a run begun by an older ferry: finish it with that version, or move the file away if that run is finished or abandoned",
            legacy.display()
        );
    }
    let state = match RunState::load(&path)? {
        // The plan is kept as first built once a step has done something:
        // discovering again would see the features ferry changed. Then the
        // spec must still say what it said.
        Some(s) if s.images.iter().any(|i| !i.done.is_empty()) => {
            if let Some(what) = s.spec_changes(spec) {
                bail!(
                    "{} changed since the run in {} began ({what}): restore it to finish that run, or move the state file away if that run is finished or abandoned",
                    spec_path.display(),
                    path.display()
                );
            }
            s
        }
        _ => {
            let facts = crate::plan::discover(src.as_ref(), spec, src_cloud.as_ref())
                .context("reading the source images")?;
            let mut opts = crate::plan::BuildOptions::from_spec(spec);
            opts.destination_fsid = dst.as_ref().map(|d| d.fsid()).transpose()?;
            opts.source_fsid = src.as_ref().map(|s| s.fsid()).transpose()?;
            if let Some(id) = crate::plan::recorded_plan_id(&facts)? {
                eprintln!(
                    "ferry: no run state in {}, but plan {id} was begun on these images: resuming it, with the features and mirroring its records on the images give",
                    path.display()
                );
                opts.plan_id = id;
            }
            if let Some(dst) = &dst {
                opts.published_parents = crate::plan::published_parents(dst, spec, &facts)
                    .context("reading the destination Glance pool for the clones' parents")?;
            }
            let plan = crate::plan::build(&opts, &facts);
            plan.check_destination_names()?;
            let s = RunState::for_spec(plan, spec);
            s.save(&path)?;
            s
        }
    };
    let access = Access {
        src,
        dst,
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
    let _lock = StateLock::acquire(&path)?;
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

/// Reads a hand-off: `ferry-verified <plan id> <record>` lines, the record
/// being one line of JSON (see [`VerifiedRecord`]); other lines are ignored,
/// so a whole log may be given. Lines of another plan are refused. Keyed by
/// the source's `pool/image`.
pub fn parse_handoff(
    text: &str,
    plan_id: &str,
) -> anyhow::Result<BTreeMap<String, VerifiedRecord>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(HANDOFF).and_then(|r| r.strip_prefix(' ')) else {
            continue;
        };
        let Some((id, record)) = rest.split_once(' ') else {
            bail!("hand-off line not understood: {line:?}");
        };
        if id != plan_id {
            bail!("hand-off line of plan {id}, not of this plan {plan_id}: {line:?}");
        }
        let mut rec = VerifiedRecord::parse(record)
            .map_err(|e| anyhow!("hand-off line not understood: {e}"))?;
        rec.sha256.make_ascii_lowercase();
        out.insert(format!("{}/{}", rec.source.pool, rec.source.image), rec);
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
        data_slots: Slots::new(opts.concurrency),
        observer: observe::Observer::new(),
        open_slots: Slots::new(OPEN_AT_ONCE),
        failed: Mutex::new(BTreeSet::new()),
    };
    let before = (
        crate::ceph::calls_sent(),
        crate::ceph::image_opens(),
        crate::openstack::requests_sent(),
    );
    let (n, order) = {
        let st = ctx.state.lock().unwrap();
        (st.plan.images.len(), st.plan.run_order())
    };
    let finished = AtomicBool::new(false);
    let threads = opts.in_flight.max(opts.concurrency);
    let failed_image = |i: usize, e: &anyhow::Error| {
        ctx.failed.lock().unwrap().insert(i);
        ctx.board.lock().unwrap().phase(i, Phase::Failed);
        ctx.event(i, "-", "failed", &format!("{e:#}"));
    };
    let mut checked_first = false;
    let failures = std::thread::scope(|s| {
        s.spawn(|| ctx.tick(&finished));
        // Every image's read-only checks of the clouds first: a batch with
        // one bad input (a name taken, a type missing, a volume in use)
        // stops before anything changes on any image, however many are in
        // flight at once.
        let mut failures = each_image(
            &order,
            threads,
            |i| check_inputs(&ctx, i),
            |i, r| {
                if let Err(e) = r {
                    failed_image(i, e)
                }
            },
        );
        // With a failed check, no image is begun, but those an earlier run
        // began go on (stopping them halfway helps nobody).
        let go: Vec<usize> = if failures.is_empty() {
            order.clone()
        } else {
            checked_first = true;
            let (go, left): (Vec<usize>, Vec<usize>) = order
                .iter()
                .copied()
                .partition(|&i| ImageSteps::of(&ctx, i).begun());
            // What the images left out would make (a clone's parent) will
            // not come in this run: waits for it end at once.
            ctx.failed.lock().unwrap().extend(left);
            go
        };
        failures.extend(each_image(
            &go,
            threads,
            |i| run_image(&ctx, i),
            |i, r| match r {
                Ok(()) => ctx.board.lock().unwrap().phase(i, Phase::Done),
                Err(e) => failed_image(i, e),
            },
        ));
        failures.sort_by_key(|(i, _)| *i);
        finished.store(true, Ordering::SeqCst);
        failures
    });
    ctx.finish();
    let secs = ctx.started.elapsed().as_secs_f64().max(0.001);
    let (calls, opens, requests) = (
        crate::ceph::calls_sent() - before.0,
        crate::ceph::image_opens() - before.1,
        crate::openstack::requests_sent() - before.2,
    );
    tracing::info!(
        "load: {calls} Ceph calls ({:.1}/s; {opens} of them image opens, {:.1}/s), {requests} OpenStack requests ({:.1}/s) in {secs:.1} s",
        calls as f64 / secs,
        opens as f64 / secs,
        requests as f64 / secs
    );
    // The journal folded into the state file: one file to read or keep.
    ctx.save()?;
    if role == Some(Role::DestinationStorage) {
        ctx.hand_off()?;
    }
    if failures.is_empty() {
        return Ok(path);
    }
    let gave_up = failures.iter().all(|(_, e)| gave_up(e));
    let lines: Vec<String> = {
        let state = ctx.state.lock().unwrap();
        failures
            .iter()
            .map(|(i, e)| format!("{}: {e:#}", state.plan.images[*i].image.source_spec()))
            .collect()
    };
    let message = if checked_first {
        format!(
            "{} of {n} image(s) failed (the checks of their inputs, or later), so this run began no image (images an earlier run began went on; state kept in {}); fix the inputs and run again:\n  {}",
            failures.len(),
            path.display(),
            lines.join("\n  ")
        )
    } else {
        format!(
            "{} of {n} image(s) failed (state kept in {}; run again to resume):\n  {}",
            failures.len(),
            path.display(),
            lines.join("\n  ")
        )
    };
    Err(RunFailed { message, gave_up }.into())
}

/// Whether an error only says a wait gave up.
pub fn gave_up(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<GaveUp>())
}

/// Runs `work` for the images `order` lists, in that order, `concurrency`
/// at a time, telling `report` each outcome; returns the failures by image
/// index. A panic fails its image (with the panic's message), never the
/// whole run silently: the other images go on.
fn each_image(
    order: &[usize],
    concurrency: usize,
    work: impl Fn(usize) -> anyhow::Result<()> + Sync,
    report: impl Fn(usize, &anyhow::Result<()>) + Sync,
) -> Vec<(usize, anyhow::Error)> {
    let results = crate::parallel::map(order, concurrency, |&i| {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(i)))
            .unwrap_or_else(|p| Err(anyhow!("ferry panicked: {}", panic_text(&*p))));
        // A panic while reporting must not end the worker either.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| report(i, &r)));
        r
    });
    let mut f: Vec<(usize, anyhow::Error)> = order
        .iter()
        .zip(results)
        .filter_map(|(i, r)| r.err().map(|e| (*i, e)))
        .collect();
    f.sort_by_key(|(i, _)| *i);
    f
}

/// The message a panic carried.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// The first 16 digits of a checksum for a message; any text read from Ceph
/// is shown whole when shorter.
fn short(sum: &str) -> &str {
    sum.get(..16).unwrap_or(sum)
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
        let _slot = OpenSlot::take(&self.open_slots);
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        let mut img = if write {
            pool.open_image(&at.image)?
        } else {
            pool.open_image_read_only(&at.image, at.snap.as_deref())?
        };
        Ok(f(&mut img)?)
    }

    fn exists(&self, at: &ImageAt) -> anyhow::Result<bool> {
        // Most answers need no open (its configuration costs ~1.5 ms of CPU
        // and memory while held): a format 2 image's id object, or nothing.
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        if let Some(known) = pool.image_named(&at.image)? {
            return Ok(known);
        }
        let head = plain(at);
        match self.with_image(&head, false, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// An image's features (at its snapshot, if it names one).
    fn features(&self, at: &ImageAt) -> anyhow::Result<Features> {
        if at.snap.is_none() {
            let pool = self.cluster(at.site)?.pool(&at.pool)?;
            if let Some(id) = pool.image_id_of(&at.image)? {
                if let Some(f) = pool.head_features(&id)? {
                    return Ok(f);
                }
            }
        }
        self.with_image(at, false, |img| img.features())
    }

    /// A metadata value of an image (None when the image or key is missing).
    fn metadata(&self, at: &ImageAt, key: &str) -> anyhow::Result<Option<String>> {
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        match pool.image_id_or_absent(&at.image)? {
            Some(None) => return Ok(None),
            Some(Some(id)) => {
                if let Some(value) = pool.head_metadata(&id, key)? {
                    return Ok(value);
                }
            }
            None => {}
        }
        match self.with_image(&plain(at), false, |img| img.metadata_get(key)) {
            Ok(v) => Ok(v),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The SHA-256 the copy of `source` was verified with, as far as this
    /// run can see. The destination reads its record, which must name
    /// `origin`. The source reads its own note; or else takes the record
    /// (the destination's, or the hand-off's) only when it names this very
    /// image (cluster fsid, pool, name, id) and carries the cut-over's
    /// checksum: a record of other data is an error, never a success.
    fn verified_sum(
        &self,
        source: &ImageAt,
        copy: &ImageAt,
        origin: &SourceId,
    ) -> anyhow::Result<Option<String>> {
        let recorded = match self.access.dst {
            Some(_) => self.record(copy, origin)?,
            None => None,
        };
        if self.access.src.is_none() {
            return Ok(recorded.map(|r| r.sha256));
        }
        let snap = source.snap.as_deref().unwrap_or_default();
        // The record names the image itself (a clone, not the flat copy
        // mirrored in its place, which holds the checksum); the note that
        // it is verified goes on the image itself too.
        let origin_at = ImageAt {
            site: Site::Source,
            pool: origin.pool.clone(),
            image: origin.image.clone(),
            snap: None,
        };
        if let Some(v) = self.metadata(&origin_at, &crate::plan::verified_key(snap))? {
            return Ok(Some(v));
        }
        let key = format!("{}/{}", origin.pool, origin.image);
        let Some(rec) = recorded.or_else(|| self.access.verified.get(&key).cloned()) else {
            return Ok(None);
        };
        let live = SourceId {
            fsid: self.cluster(Site::Source)?.fsid()?,
            pool: origin.pool.clone(),
            image: origin.image.clone(),
            id: match self
                .cluster(Site::Source)?
                .pool(&origin.pool)?
                .image_id_of(&origin.image)?
            {
                Some(id) => id,
                None => self.with_image(&origin_at, false, |img| img.id())?,
            },
        };
        if rec.source != live {
            bail!(
                "the copy {copy} is recorded as verified for {}, not for this image ({live}): not the same data; nothing is cleaned up",
                rec.source
            );
        }
        match self.metadata(source, &crate::plan::checksum_key(snap))? {
            Some(sum) if sum == rec.sha256 => Ok(Some(sum)),
            Some(sum) => bail!(
                "the copy of {key} was verified with digest {}, but the cut-over {snap} has {sum}: not the same data; nothing is cleaned up",
                rec.sha256
            ),
            None => bail!("{source} has no checksum ({}): was the cut-over made by this plan?", crate::plan::checksum_key(snap)),
        }
    }

    /// This plan's record in the destination pool of the verified copy
    /// `copy`, when there is one; a record there of another source than
    /// `origin` (two images for one copy name) is an error.
    /// A record whose copy is gone (deleted after the run) is none: the
    /// copy is made and verified again.
    fn record(&self, copy: &ImageAt, origin: &SourceId) -> anyhow::Result<Option<VerifiedRecord>> {
        let Some(rec) = self.any_record(copy)? else {
            return Ok(None);
        };
        if rec.source != *origin {
            bail!(
                "the verified copy {copy} holds {}, not {origin}: two images for one copy name? nothing more is done with it",
                rec.source
            );
        }
        if let Some(id) = rec.copy_id.as_deref().filter(|id| !id.is_empty()) {
            let pool = self.dst()?.pool(&copy.pool)?;
            if !pool.image_id_live(id)? {
                tracing::warn!(
                    "the record of the verified copy {copy} names image id {id}, which pool {} no longer holds (or holds in its trash): the copy is made again",
                    copy.pool
                );
                return Ok(None);
            }
        }
        Ok(Some(rec))
    }

    /// This plan's record of `copy`, whatever source it names.
    fn any_record(&self, copy: &ImageAt) -> anyhow::Result<Option<VerifiedRecord>> {
        let object = crate::plan::record_object(&self.plan_id());
        let Some(text) = self
            .dst()?
            .pool(&copy.pool)?
            .object_xattr(&object, &copy.image)?
        else {
            return Ok(None);
        };
        VerifiedRecord::parse(&text)
            .map(Some)
            .map_err(|e| anyhow!("the record of {copy} in {object}: {e}"))
    }

    /// Prints the hand-off lines of the verified copies (stdout), for the
    /// cleanup part.
    fn hand_off(&self) -> anyhow::Result<()> {
        let plan = self.state.lock().unwrap().plan.clone();
        for p in &plan.images {
            for s in &p.steps {
                if let Action::Verify { copy, origin, .. } = &s.action {
                    if let Some(rec) = self.record(copy, origin)? {
                        let line = format!("{HANDOFF} {} {}", plan.id, rec.to_line());
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
        let mut state = self.state.lock().unwrap();
        f(&mut state.images[i]);
        state.record(&self.path, i)
    }

    /// The clients using an image, by the one rule (`ceph::image_users`).
    fn users(&self, at: &ImageAt) -> anyhow::Result<Vec<String>> {
        // Exclusive-lock held by nobody: nobody writes it; no open needed.
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        if let Some(id) = pool.image_id_of(&at.image)? {
            if pool.exclusive_lock_free(&id)? == Some(true) {
                return Ok(Vec::new());
            }
        }
        self.with_image(&plain(at), false, |img| crate::plan::users_of(img))
    }

    /// Takes the user snapshot `at` names, unless it exists. With `frozen`
    /// (the step required the image idle, and that was checked just before),
    /// ferry holds the exclusive lock across the snapshot so that no writer
    /// slips in after the check.
    fn freeze(&self, at: &ImageAt, frozen: bool) -> anyhow::Result<()> {
        let name = at
            .snap
            .clone()
            .ok_or_else(|| anyhow!("{at} names no snapshot"))?;
        if self.snap_id(at)?.is_some() {
            return Ok(());
        }
        self.with_image(&plain(at), true, |img| {
            let locked = frozen && img.features()?.contains(Features::EXCLUSIVE_LOCK);
            if locked {
                img.lock_acquire_exclusive()?;
            }
            img.snap_create(&name)?;
            if locked {
                img.lock_release()?;
            }
            Ok(())
        })
    }

    /// After a failure before the cut-over: puts the source back as the plan
    /// found it (features, mirroring; a clone's flat copy and snapshot go).
    /// Deep-flatten, once disabled, cannot come back.
    fn put_back(&self, i: usize) -> anyhow::Result<Vec<String>> {
        let plan = self.state.lock().unwrap().plan.images[i].clone();
        let mut did = Vec::new();
        if self.access.src.is_none() {
            return Ok(did);
        }
        let cut = crate::plan::cutover_snap(&self.plan_id());
        let orig = ImageAt {
            site: Site::Source,
            pool: plan.image.pool.clone(),
            image: plan.image.name.clone(),
            snap: Some(cut.clone()),
        };
        // A clone (and any image moved directly) has nothing changed but
        // the cut-over snapshot (and a clone's carrier).
        if plan.facts.parent.is_some() || !plan.transfer.is_mirror() {
            let carrier = ImageAt {
                image: crate::plan::flat_name(&plan.image.name),
                snap: None,
                ..orig.clone()
            };
            if self.exists(&carrier)? {
                self.remove_image(&carrier)?;
                did.push(format!("removed {carrier}"));
            }
            if self.snap_id(&orig)?.is_some() {
                self.with_image(&plain(&orig), true, |img| img.snap_remove(&cut))?;
                did.push(format!("removed {orig}"));
            }
            self.forget_original(&plain(&orig), &mut did)?;
            return Ok(did);
        }
        let head = plain(&orig);
        if !self.exists(&head)? {
            return Ok(did);
        }
        let info = self.with_image(&head, false, |img| img.mirror_info())?;
        let pool_mode = plan.facts.pool_mode == crate::ceph::PoolMirrorMode::Pool;
        if plan.facts.mirroring.is_none() && info.state != ImageMirrorState::Disabled && !pool_mode
        {
            self.with_image(&head, true, |img| img.mirror_disable(false))?;
            did.push("mirroring disabled".into());
        }
        let before = self.with_image(&head, false, |img| img.features())?;
        let original = plan.facts.features;
        if before.0 & !Features::DEEP_FLATTEN.0 != original.0 & !Features::DEEP_FLATTEN.0 {
            let now = self.restore_features(&head, original)?;
            did.push(format!("features {now}"));
        }
        self.forget_original(&head, &mut did)?;
        Ok(did)
    }

    /// Removes the plan's record of what `image` was, once it is put back:
    /// a later plan must not take this one's id or features for its own.
    fn forget_original(&self, image: &ImageAt, did: &mut Vec<String>) -> anyhow::Result<()> {
        let key = crate::plan::original_key(&self.plan_id());
        if self
            .with_image(image, false, |img| img.metadata_get(&key))?
            .is_some()
        {
            self.with_image(image, true, |img| img.metadata_remove(&key))?;
            did.push(format!("{key} removed"));
        }
        Ok(())
    }

    /// Puts an image's features back to `original` (deep-flatten aside);
    /// returns the features it has then.
    fn restore_features(&self, image: &ImageAt, original: Features) -> anyhow::Result<Features> {
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
        self.with_image(image, false, |img| img.features())
    }

    /// Removes an image ferry made, with its snapshots; mirroring of it
    /// (image mode) is disabled first.
    fn remove_image(&self, at: &ImageAt) -> anyhow::Result<()> {
        let head = plain(at);
        let info = self.with_image(&head, false, |img| img.mirror_info())?;
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        if info.state != ImageMirrorState::Disabled
            && pool.mirror_mode()? == crate::ceph::PoolMirrorMode::Image
        {
            self.with_image(&head, true, |img| img.mirror_disable(false))?;
        }
        self.with_image(&head, true, |img| {
            for s in img.snapshots()? {
                if s.namespace == crate::ceph::SnapNamespace::User {
                    if img.snap_is_protected(&s.name)? {
                        img.snap_unprotect(&s.name)?;
                    }
                    img.snap_remove(&s.name)?;
                }
            }
            Ok(())
        })?;
        match pool.remove_image(&at.image) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
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
            Check::NotInUse { image } => self.users(image)?.is_empty(),
            Check::FeaturesPresent { image, features } => self.features(image)?.contains(*features),
            Check::FeaturesAbsent { image, features } => self.features(image)?.0 & features.0 == 0,
            Check::MirroringEnabled { image, mode } => {
                self.with_image(image, false, |img| img.mirror_mode())? == Some(*mode)
            }
            Check::MirroringDisabled { image } => {
                self.with_image(image, false, |img| img.mirror_info())?
                    .state
                    == ImageMirrorState::Disabled
            }
            // Snapshot mode: the mirror snapshot that carried it is complete
            // (one open reads both).
            Check::MirrorSynced {
                mirrored,
                mode: MirrorMode::Snapshot,
                ..
            } => {
                let name = mirrored
                    .snap
                    .as_deref()
                    .ok_or_else(|| anyhow!("{mirrored} names no snapshot"))?;
                let synced = self.with_image(&plain(mirrored), false, |img| {
                    let id = img.snapshots()?.into_iter().find(|s| s.name == name);
                    Ok(match id {
                        None => false,
                        Some(s) => complete_mirror_snapshot_after(&img.mirror_snapshots()?, s.id),
                    })
                });
                match synced {
                    Ok(b) => b,
                    Err(e) if not_found(&e) => false,
                    Err(e) => return Err(e),
                }
            }
            Check::MirrorSynced { mirrored, .. } => {
                match self.snap_id(mirrored)? {
                    None => false,
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
            Check::Verified {
                source,
                copy,
                origin,
            } => self.verified_sum(source, copy, origin)?.is_some(),
            Check::Published { image } => self.published(image)?,
            // A volume the stream path made is adopted once its pending
            // mark is gone.
            Check::VolumeAdopted { source_volume } => {
                self.adopted_volume(source_volume)?.is_some_and(|v| {
                    v.status == "available" && !v.metadata.contains_key(crate::plan::STREAM_PENDING)
                })
            }
            Check::VolumeCreated { source_volume } => self
                .adopted_volume(source_volume)?
                .is_some_and(|v| v.status != "creating" && !v.status.starts_with("error")),
            Check::StreamVerified { source_volume } => self
                .adopted_volume(source_volume)?
                .is_some_and(|v| v.metadata.contains_key(crate::plan::STREAM_DIGEST)),
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
        // What is awaited, in words (for NotInUse it reads the users
        // again): said once, and again when giving up.
        let describe = || -> anyhow::Result<String> {
            Ok(match check {
                    Check::NotInUse { image } => format!(
                        "{image} to be idle (in use: {}; stop the client or shut its server off)",
                        self.users(image)?.join("; ")
                    ),
                    Check::MirrorSynced { mirrored, .. } => format!("{mirrored} to be in sync"),
                    Check::Exists { image } => format!("{image} to appear"),
                    Check::MetadataPresent { image, key } if image.site == Site::Destination => {
                        format!("{key} on {image} (mirroring carries it)")
                    }
                    // A direct transfer's copy, run as its own part.
                    Check::SnapshotExists { image } if image.site == Site::Source => format!(
                        "the cut-over snapshot {image} (the source storage part takes it)"
                    ),
                    Check::Published { image } => format!(
                        "the verified copy {image} (the destination storage part publishes it after verify)"
                    ),
                    Check::SnapshotProtected { image } => format!(
                        "{image}, the parent this copy is a clone of, to be published and protected (the migration of that Glance image does it; or it must be at the destination)"
                    ),
                    Check::VolumeCreated { source_volume } => format!(
                        "the destination volume for source volume {source_volume} (the destination cloud part creates it)"
                    ),
                    Check::StreamVerified { source_volume } => format!(
                        "the stream of source volume {source_volume} (the conversion-hosts part)"
                    ),
                    Check::Verified { source, .. } if self.access.dst.is_none() => bail!(
                        "the copy of {source} is not known to be verified: give the destination storage part's hand-off ({HANDOFF} lines) with --verified"
                    ),
                    // The run state says the copy was made and verified, but
                    // its record, or the copy it names, is gone.
                    Check::Verified { copy, .. } => bail!(
                        "the copy {copy} is recorded in the run state as made, but is not there verified (deleted after the run?); to copy it again, remove the run state {} and run again (ferry plans again from what the source carries)",
                        self.path.display()
                    ),
                    other => bail!("step {} needs {other:?}, which does not hold", step.id),
                })
        };
        let mut waiting_for = String::new();
        // Readings that fail (a monitor or an API briefly away; a shared
        // reading's error reaches every image waiting on it) are waited
        // through as "not yet"; only errors that last ERROR_GRACE end it.
        // The stall check's readings count apart: the check's own reading
        // may succeed while the stall check's fail (a monitor away while
        // the OSDs answer), and its successes must not hide those.
        let mut failing = ReadFailures::new(ERROR_GRACE);
        let mut stall_failing = ReadFailures::new(ERROR_GRACE);
        let note = |text: &str| {
            tracing::warn!(
                "image {}: step {}: {text} (polling again)",
                i + 1,
                step.name
            )
        };
        loop {
            if failing.tolerate(self.holds(check), note)? == Some(true) {
                return Ok(());
            }
            if !said {
                waiting_for = describe()?;
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
                    let why = stall_failing
                        .tolerate(self.stalled(&plain(mirrored), &mut error_since), note)?
                        .flatten();
                    if let Some(why) = why {
                        return Err(
                            GaveUp(format!("stalled: {why} (waiting for {waiting_for})")).into(),
                        );
                    }
                }
            }
            if let Check::MirrorSynced { mirrored, mode, .. } = check {
                if last_progress.elapsed() >= Duration::from_secs(2) {
                    last_progress = Instant::now();
                    // Snapshot mode reads the image: a check's turn.
                    if *mode == MirrorMode::Snapshot {
                        self.observer.pace.turn();
                    }
                    // Progress is for the eyes: a failed reading of it
                    // shows none this time, it does not end the wait.
                    let shown = self
                        .sync_progress(i, &plain(mirrored), *mode, &mut meter, start.elapsed())
                        .unwrap_or_else(|e| {
                            tracing::debug!("progress of {mirrored}: {e:#}");
                            None
                        });
                    if let Some(text) = shown {
                        self.event(i, &step.name, "progress", &text);
                    }
                }
            }
            if let Some(why) = self.awaited_image_failed(check) {
                return Err(GaveUp(format!("{why} (waiting for {waiting_for})")).into());
            }
            if start.elapsed() > self.opts.wait_timeout {
                let last = failing
                    .last()
                    .or(stall_failing.last())
                    .map(|e| format!(" (the last reading failed: {e})"))
                    .unwrap_or_default();
                return Err(GaveUp(format!(
                    "gave up after {:?} waiting for {}{last}",
                    self.opts.wait_timeout,
                    describe()?
                ))
                .into());
            }
            std::thread::sleep(poll_interval(self.opts.poll, start.elapsed()));
            // However many images wait, their checks together keep one pace.
            self.observer.pace.turn();
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
            Action::RecordOriginal { image, record } => {
                let key = crate::plan::original_key(&record.plan);
                let keys = self.with_image(image, false, |img| img.metadata_list())?;
                if let Some((other, _)) = keys.iter().find(|(k, _)| {
                    crate::plan::original_key_plan(k).is_some_and(|id| id != record.plan)
                }) {
                    bail!(
                        "{image} carries {other}, the record of another plan: only one plan may move an image (finish or abandon that plan, then rbd image-meta remove {}/{} {other})",
                        image.pool,
                        image.image
                    );
                }
                if !keys.iter().any(|(k, _)| *k == key) {
                    self.with_image(image, true, |img| img.metadata_set(&key, &record.to_line()))?;
                }
                Ok(format!(
                    "features: {}; mirroring: {}",
                    record.features,
                    record
                        .mirroring
                        .map_or("disabled".to_string(), |m| m.to_string())
                ))
            }
            Action::RemoveMetadata { image, key } => {
                self.with_image(image, true, |img| img.metadata_remove(key))?;
                Ok(format!("{key} removed"))
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
                let head = plain(image);
                let frozen = step
                    .requires
                    .iter()
                    .any(|c| matches!(c, Check::NotInUse { .. }));
                self.freeze(image, frozen)?;
                // In snapshot mode a mirror snapshot carries the cut-over;
                // rbd-mirror transfers it while the next step hashes.
                let after = Check::MirrorSnapshotAfter {
                    image: image.clone(),
                };
                if *mode == MirrorMode::Snapshot && !self.holds(&after)? {
                    let id = self.with_image(&head, true, |img| img.mirror_snapshot_create())?;
                    return Ok(format!("{image}, mirror snapshot {id}"));
                }
                Ok(format!("{image}"))
            }
            Action::HashSource { image, mode } => {
                let name = image
                    .snap
                    .clone()
                    .ok_or_else(|| anyhow!("{image} names no snapshot"))?;
                let key = crate::plan::checksum_key(&name);
                let sent = crate::plan::checksum_sent_key(&name);
                let (sum, hashed) = match self.metadata(image, &key)? {
                    Some(sum) => (sum, false),
                    None => (self.digest(i, step, image, Phase::Preparing)?, true),
                };
                // On one handle: the digest, then on its way: in snapshot
                // mode with a mirror snapshot taken after it (again if an
                // earlier run stopped before the mark: one more is cheap),
                // in journal mode already.
                let snapshot = *mode == MirrorMode::Snapshot;
                let id = self.with_image(&plain(image), true, |img| {
                    if hashed {
                        img.metadata_set(&key, &sum)?;
                    }
                    let id = if snapshot {
                        Some(img.mirror_snapshot_create()?)
                    } else {
                        None
                    };
                    let mark =
                        id.map_or("journal".to_string(), |id| format!("mirror snapshot {id}"));
                    img.metadata_set(&sent, &mark)?;
                    Ok(id)
                })?;
                self.update(i, |s| s.source_checksum = Some(sum.clone()))?;
                let detail = id
                    .map(|id| format!(", mirror snapshot {id}"))
                    .unwrap_or_default();
                Ok(format!("digest {}{detail}", short(&sum)))
            }
            Action::FreezeSnapshot { image } => {
                let frozen = step
                    .requires
                    .iter()
                    .any(|c| matches!(c, Check::NotInUse { .. }));
                self.freeze(image, frozen)?;
                Ok(format!("{image}"))
            }
            Action::FlatCopy { from, to, features } => {
                // An unmarked copy is an interrupted one: afresh.
                if self.exists(to)? {
                    self.remove_image(to)?;
                }
                let pool = self.cluster(to.site)?.pool(&to.pool)?;
                let started = Instant::now();
                // ferry's engine, not librbd's copy: in Ceph 16.2 rbd_copy of
                // a clone at a snapshot leaves out the objects only its
                // parent holds (measured: a 64 MiB parent, 40 MiB of it
                // lost), and the cut-over digest, taken of this copy, would
                // not see it. The engine reads the parent's data through
                // the clone.
                space::writing_into(self.cluster(to.site)?, &to.pool, || {
                    Ok(crate::transfer::rbd::copy_image(
                        &pool,
                        &from.image,
                        from.snap.as_deref(),
                        &pool,
                        &to.image,
                        Some(*features),
                        &engine_options(&self.opts.buffers),
                        &mut self.progress(i, step, Phase::Preparing),
                    )?)
                })?;
                crate::transfer::rbd::forget_log(&pool, &to.image)?;
                pool.open_image(&to.image)?.metadata_set(
                    crate::plan::FLAT_OF,
                    &format!(
                        "{}/{}@{}",
                        from.pool,
                        from.image,
                        from.snap.as_deref().unwrap_or_default()
                    ),
                )?;
                Ok(format!(
                    "{to} ({features}), {:.1} s",
                    started.elapsed().as_secs_f64()
                ))
            }
            Action::RemoveImage { image } => {
                if self.exists(image)? {
                    self.remove_image(image)?;
                }
                Ok(format!("{image} removed"))
            }
            Action::CheckUnchanged { image } => {
                let snap = image.snap.clone().unwrap_or_default();
                let written =
                    self.with_image(&plain(image), false, |img| img.written_since(&snap))?;
                if written > 0 {
                    bail!(
                        "{} was written after the cut-over {snap} (about {} in changed objects): the copy does not hold those writes. Nothing is cleaned up; migrate the image again with a new plan, or remove the snapshot yourself once you accept the loss",
                        plain(image),
                        crate::check::human_bytes(written)
                    );
                }
                Ok("no writes since the cut-over".into())
            }
            Action::RemoveSnapshot { image } => {
                let name = image.snap.clone().unwrap_or_default();
                let head = plain(image);
                // The checksum set with the cut-over goes first, then the
                // snapshot (whose absence marks the step done).
                self.with_image(&head, true, |img| {
                    img.metadata_remove(&crate::plan::checksum_sent_key(&name))?;
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
                Ok("in sync".into())
            }
            Action::Copy {
                from,
                to,
                features,
                clone_of,
            } => {
                // From the cut-over snapshot (later syncs cannot change it)
                // into the partial name, hashing what it writes; a copy
                // interrupted earlier resumes with the chunks it lacks. With
                // a parent: a clone of it, written where the data differ.
                let dst_pool = self.dst()?.pool(&to.pool)?;
                // The mirrored image, or (direct) the source itself.
                let from_pool = self.cluster(from.site)?.pool(&from.pool)?;
                let parent_pool = match clone_of {
                    Some(p) => Some(self.dst()?.pool(&p.pool)?),
                    None => None,
                };
                let base = match (clone_of, &parent_pool) {
                    (Some(p), Some(pool)) => Some(crate::transfer::rbd::CloneOf {
                        pool,
                        image: &p.image,
                        snap: p.snap.as_deref().unwrap_or("snap"),
                    }),
                    _ => None,
                };
                let started = Instant::now();
                let out = space::writing_into(self.dst()?, &to.pool, || {
                    Ok(crate::transfer::rbd::copy_image_onto(
                        &from_pool,
                        &from.image,
                        from.snap.as_deref(),
                        base,
                        &dst_pool,
                        &to.image,
                        *features,
                        &engine_options(&self.opts.buffers),
                        &mut self.progress(i, step, Phase::Copying),
                    )?)
                })?;
                // The mark of a finished copy holds the digest of what it
                // wrote, which the verify compares.
                let snap = from.snap.as_deref().unwrap_or_default();
                if from.site == Site::Source {
                    // Direct: what was read of the cut-over is its digest,
                    // noted on the source as a mirror's hash-source would
                    // (the verify reads the copy back against it; cleanup
                    // checks the record against it).
                    self.with_image(&plain(from), true, |img| {
                        img.metadata_set(&crate::plan::checksum_key(snap), &out.digest)
                    })?;
                    self.update(i, |s| s.source_checksum = Some(out.digest.clone()))?;
                }
                dst_pool
                    .open_image(&to.image)?
                    .metadata_set(&crate::plan::copied_key(snap), &out.digest)?;
                crate::transfer::rbd::forget_log(&dst_pool, &to.image)?;
                Ok(format!(
                    "{}read {} bytes, wrote {} bytes, resumed {} of {} chunks, {:.1} s",
                    clone_of
                        .as_ref()
                        .map(|p| format!("a clone of {p}: "))
                        .unwrap_or_default(),
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
                origin,
            } => {
                // A record under this copy name of another source: refuse
                // before reading anything.
                self.record(copy, origin)?;
                if origin.fsid.is_empty() || origin.id.is_empty() {
                    bail!("the plan does not name the source of {copy} (made by an older ferry?): plan again");
                }
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
                let copy_id = self.with_image(partial, true, |img| {
                    img.metadata_set(&key, &sum)?;
                    img.id()
                })?;
                let record = crate::plan::record_object(&self.plan_id());
                let line = VerifiedRecord {
                    sha256: sum.clone(),
                    source: origin.clone(),
                    copy_id: Some(copy_id),
                }
                .to_line();
                self.dst()?
                    .pool(&copy.pool)?
                    .set_object_xattr(&record, &copy.image, &line)?;
                Ok(format!("digest {}", short(&sum)))
            }
            Action::Publish { partial, copy } => {
                if self.exists(partial)? {
                    self.dst()?
                        .pool(&copy.pool)?
                        .rename_image(&partial.image, &copy.image)?;
                }
                Ok(format!("{copy}"))
            }
            Action::ConfirmVerified {
                source,
                copy,
                mark,
                origin,
            } => {
                let sum = self
                    .verified_sum(source, copy, origin)?
                    .ok_or_else(|| anyhow!("the copy of {source} is not verified"))?;
                let snap = source.snap.as_deref().unwrap_or_default();
                self.with_image(&plain(mark), true, |img| {
                    img.metadata_set(&crate::plan::verified_key(snap), &sum)
                })?;
                Ok(format!("digest {}", short(&sum)))
            }
            Action::CheckSourceCloud {
                object,
                allow_in_use,
                detached,
            } => cloud::check_source(self, object, *allow_in_use, *detached),
            Action::DisableMirroring { image } => {
                self.with_image(image, true, |img| img.mirror_disable(false))?;
                Ok("disabled".into())
            }
            Action::CheckDestinationCloud {
                image,
                adoption,
                create,
            } => cloud::check_destination(self, image, adoption, *create),
            Action::CreateVolume { adoption, size_gb } => {
                stream::create_volume(self, i, step, adoption, *size_gb)
            }
            Action::StreamVolume {
                source_volume,
                hosts,
            } => stream::stream_volume(self, i, step, source_volume, hosts),
            Action::FinishVolume { adoption } => stream::finish_volume(self, adoption),
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
                let now = self.restore_features(image, original)?;
                Ok(format!("features: {now}"))
            }
        }
    }

    /// The digest of an image (at its snapshot), reading its allocated
    /// extents, with progress.
    fn digest(&self, i: usize, step: &Step, at: &ImageAt, phase: Phase) -> anyhow::Result<String> {
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        let out = crate::transfer::rbd::digest_image(
            &pool,
            &at.image,
            at.snap.as_deref(),
            &engine_options(&self.opts.buffers),
            &mut self.progress(i, step, phase),
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
        let cluster = self.cluster_view()?;
        let pool = self.pool_view(&mirrored.pool)?;
        let status = pool.local.get(&mirrored.image);
        match status {
            Some(l) if l.state == crate::ceph::SiteState::Error => {
                error_since.get_or_insert_with(Instant::now);
            }
            _ => *error_since = None,
        }
        Ok(stall::stall(&stall::Readings {
            cluster: dst.name(),
            health: &cluster.health,
            pools: &[mirrored.pool.as_str()],
            daemons: cluster.mirror_daemons,
            peers: pool.peers,
            local: status,
            error_for: error_since.map(|t| t.elapsed()).unwrap_or_default(),
        }))
    }

    /// The receiving cluster as all waits share it.
    fn cluster_view(&self) -> anyhow::Result<std::sync::Arc<observe::ClusterView>> {
        let dst = self.dst()?;
        self.observer.clusters.get(Site::Destination, || {
            Ok(observe::ClusterView {
                health: dst.health()?,
                mirror_daemons: dst.service_daemons("rbd-mirror")?.len(),
            })
        })
    }

    /// A pool of the receiving cluster as all waits share it: its peers and
    /// every mirrored image's local status, in one listing.
    fn pool_view(&self, pool: &str) -> anyhow::Result<std::sync::Arc<observe::PoolView>> {
        let dst = self.dst()?;
        self.observer
            .pools
            .get((Site::Destination, pool.to_string()), || {
                let p = dst.pool(pool)?;
                Ok(observe::PoolView {
                    peers: p.mirror_peers()?.len(),
                    local: p
                        .mirror_statuses()?
                        .into_iter()
                        .filter_map(|g| g.local().cloned().map(|l| (g.name, l)))
                        .collect(),
                })
            })
    }

    /// The engine's progress callback for a step: the board's bytes, and a
    /// progress event every 2 s.
    fn progress<'s>(
        &'s self,
        i: usize,
        step: &'s Step,
        phase: Phase,
    ) -> impl FnMut(u64, u64) -> bool + 's {
        let mut meter = Meter::default();
        let mut last = Instant::now();
        move |done, total| {
            let p = meter.sample(done, total, self.started.elapsed());
            self.board
                .lock()
                .unwrap()
                .bytes(i, phase, done, &p.bytes_text());
            if last.elapsed() >= Duration::from_secs(2) {
                last = Instant::now();
                self.event(i, &step.name, "progress", &p.to_string());
            }
            true
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
        match mode {
            MirrorMode::Snapshot => {
                // The newest mirror snapshot arriving: the cut-over's, or
                // one before it.
                let read = self.with_image(mirrored, false, |img| {
                    Ok((img.info()?, img.mirror_snapshots()?))
                });
                let (info, received) = match read {
                    Ok(r) => r,
                    Err(e) if not_found(&e) => return Ok(None),
                    Err(e) => return Err(e),
                };
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
                let view = self.pool_view(&mirrored.pool)?;
                let size = self.state.lock().unwrap().plan.images[i].facts.size;
                let text = view.local.get(&mirrored.image).map(|l| match l.progress() {
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
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        match pool.image_id_or_absent(&at.image)? {
            Some(None) => return Ok(None),
            Some(Some(id)) => {
                if let Some(snaps) = pool.snapshot_names(&id)? {
                    return Ok(snaps.into_iter().find(|(_, n)| n == name).map(|(id, _)| id));
                }
            }
            None => {}
        }
        let head = plain(at);
        match self.with_image(&head, false, |img| img.snapshots()) {
            Ok(snaps) => Ok(snaps.into_iter().find(|s| s.name == name).map(|s| s.id)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// When `check` waits for what another image of this run makes (a
    /// clone's parent, published and protected by that image's migration)
    /// and that image has failed in this run: why the wait is over.
    fn awaited_image_failed(&self, check: &Check) -> Option<String> {
        let Check::SnapshotProtected { image } = check else {
            return None;
        };
        let failed = self.failed.lock().unwrap().clone();
        if failed.is_empty() {
            return None;
        }
        let state = self.state.lock().unwrap();
        failed.into_iter().find_map(|k| {
            let other = &state.plan.images.get(k)?.image;
            (other.dest_pool == image.pool && other.dest_name == image.image).then(|| {
                format!(
                    "the migration of {} (image {}), which makes this copy's parent {image}, failed or was not begun in this run: fix what its error says and run again",
                    other.source_spec(),
                    k + 1
                )
            })
        })
    }

    fn holds_protected(&self, image: &ImageAt) -> anyhow::Result<bool> {
        self.holds(&Check::SnapshotProtected {
            image: image.clone(),
        })
    }
}

/// The source storage actions up to the cut-over: a failure in one of them
/// puts the source back as the plan found it.
fn prepares_source(action: &Action) -> bool {
    matches!(
        action,
        Action::DisableFeatures { .. }
            | Action::EnableFeatures { .. }
            | Action::EnableMirroring { .. }
            | Action::FreezeSnapshot { .. }
            | Action::FlatCopy { .. }
            | Action::CreateCutover { .. }
            | Action::HashSource { .. }
    )
}

/// The read-only checks of the clouds that open an image's plan
/// (check-destination-cloud, check-source-cloud), run for the whole batch
/// before any image begins; `run_image` then finds them done.
/// Nothing is recorded here: `run_image` runs (and records) them again
/// when the image begins, so a check is never older than its image's start.
fn check_inputs(ctx: &Ctx<'_>, i: usize) -> anyhow::Result<()> {
    let image = ImageSteps::of(ctx, i);
    for step in image.steps(ctx.role) {
        if !step.checks_inputs() {
            break;
        }
        // Recorded: as run_image judges it (a stream path volume that a
        // killed run left attached passed its check before).
        if image.done.contains(&step.id) {
            continue;
        }
        if !step.past_when.is_empty() && ctx.all_hold(&step.past_when)? {
            continue;
        }
        ctx.act(i, step).map_err(|e| failed(ctx, i, step, e))?;
    }
    Ok(())
}

/// An image's plan, and the steps its run state records as done.
struct ImageSteps {
    plan: ImagePlan,
    done: std::collections::BTreeSet<String>,
}

impl ImageSteps {
    fn of(ctx: &Ctx<'_>, i: usize) -> ImageSteps {
        // One lock, taken once (a second lock in the same expression, while
        // the first guard lives, would wait for itself).
        let state = ctx.state.lock().unwrap();
        ImageSteps {
            plan: state.plan.images[i].clone(),
            done: state.images[i].done.clone(),
        }
    }

    /// Whether a step past the input checks is recorded: an earlier run
    /// began this image.
    fn begun(&self) -> bool {
        self.plan
            .steps
            .iter()
            .any(|s| !s.checks_inputs() && self.done.contains(&s.id))
    }

    /// The steps of `role` (None: all), in order.
    fn steps(&self, role: Option<Role>) -> Vec<&Step> {
        self.plan
            .steps
            .iter()
            .filter(|s| role.is_none_or(|r| s.role == r))
            .collect()
    }

    /// Whether `steps[k]` is settled: recorded, and before the last
    /// recorded step (cleanup may have undone its effect on purpose); from
    /// the last recorded step on, Ceph's word counts.
    fn settled(&self, steps: &[&Step], k: usize) -> bool {
        let frontier = steps.iter().rposition(|s| self.done.contains(&s.id));
        self.done.contains(&steps[k].id) && frontier.is_some_and(|f| k < f)
    }
}

fn run_image(ctx: &Ctx<'_>, i: usize) -> anyhow::Result<()> {
    let image = ImageSteps::of(ctx, i);
    let steps = image.steps(ctx.role);
    // A step the next one does not follow runs alongside the steps after
    // it, until one that follows it (the source's hash beside the sync and
    // the copy); whatever runs alongside has finished before a failure is
    // handled (the source is put back) and before the image is done.
    std::thread::scope(|scope| {
        type Alongside<'s> = (
            &'s Step,
            std::thread::ScopedJoinHandle<'s, anyhow::Result<()>>,
        );
        let mut alongside: Vec<Alongside<'_>> = Vec::new();
        let join = |alongside: &mut Vec<Alongside<'_>>, which: &dyn Fn(&Step) -> bool| {
            let mut first: Option<anyhow::Error> = None;
            let (now, later): (Vec<_>, Vec<_>) = alongside.drain(..).partition(|(s, _)| which(s));
            alongside.extend(later);
            for (s, handle) in now {
                let r = handle
                    .join()
                    .unwrap_or_else(|p| Err(anyhow!("ferry panicked: {}", panic_text(&*p))));
                if let Err(e) = r {
                    match first {
                        None => first = Some(failed(ctx, i, s, e)),
                        // Only one error is the image's; the others are
                        // told as they are.
                        Some(_) => ctx.event(i, &s.name, "failed", &format!("{e:#}")),
                    }
                }
            }
            first.map_or(Ok(()), Err)
        };
        for (k, step) in steps.iter().copied().enumerate() {
            join(&mut alongside, &|s| step.after.contains(&s.id))?;
            let settled = image.settled(&steps, k);
            let beside = steps
                .get(k + 1)
                .is_some_and(|next| !next.after.contains(&step.id));
            if beside {
                alongside.push((step, scope.spawn(move || run_step(ctx, i, step, settled))));
            } else if let Err(e) = run_step(ctx, i, step, settled) {
                if let Err(b) = join(&mut alongside, &|_| true) {
                    ctx.event(i, &step.name, "failed", &format!("meanwhile: {b:#}"));
                }
                return Err(failed(ctx, i, step, e));
            }
        }
        join(&mut alongside, &|_| true)
    })
}

/// A step's failure, named, with the source put back when the step was one
/// that prepares it (before the cut-over nothing is worth keeping
/// half-done).
fn failed(ctx: &Ctx<'_>, i: usize, step: &Step, e: anyhow::Error) -> anyhow::Error {
    let e = e.context(format!(
        "step {} ({}) on {}",
        step.id,
        step.name,
        step.action_image()
    ));
    if !prepares_source(&step.action) {
        return e;
    }
    match ctx.put_back(i) {
        Ok(did) if did.is_empty() => e,
        Ok(did) => e.context(format!("the source is put back ({})", did.join(", "))),
        Err(p) => e.context(format!("putting the source back failed too: {p:#}")),
    }
}

/// Runs one step unless it is done (`settled`: recorded before the last
/// recorded step), and records it.
fn run_step(ctx: &Ctx<'_>, i: usize, step: &Step, settled: bool) -> anyhow::Result<()> {
    let recorded = ctx.image_state(i).done.contains(&step.id);
    if settled {
        ctx.board.lock().unwrap().step_done(i, &step.name, true);
        ctx.event(i, &step.name, "done", "(already)");
        return Ok(());
    }
    // A later step has moved on (the copy is verified, the cleanup has
    // begun): this one's effect may be undone on purpose.
    if !step.past_when.is_empty() && ctx.all_hold(&step.past_when)? {
        ctx.board.lock().unwrap().step_done(i, &step.name, true);
        ctx.event(i, &step.name, "done", "(past)");
        return Ok(());
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
        return Ok(());
    }
    ctx.board
        .lock()
        .unwrap()
        .phase(i, Phase::of_step(&step.name));
    for c in &step.requires {
        ctx.wait(i, step, c)?;
    }
    // Test builds only: a step that panics, to prove a panic fails the run.
    #[cfg(debug_assertions)]
    if std::env::var("FERRY_TEST_PANIC_IN_STEP").is_ok_and(|s| s == step.name) {
        panic!("FERRY_TEST_PANIC_IN_STEP={}", step.name);
    }
    let detail = {
        let _slot = if moves_data(&step.action) {
            match ctx.data_slots.try_take() {
                Some(slot) => Some(slot),
                None => {
                    ctx.event(
                        i,
                        &step.name,
                        "waiting",
                        &format!(
                            "for one of the {} data slots (--concurrency)",
                            ctx.opts.concurrency
                        ),
                    );
                    Some(ctx.data_slots.take())
                }
            }
        } else {
            None
        };
        ctx.act(i, step)?
    };
    for c in &step.done_when {
        if !ctx.holds(c)? {
            bail!("done but {c:?} does not hold");
        }
    }
    ctx.update(i, |s| {
        s.done.insert(step.id.clone());
    })?;
    ctx.board.lock().unwrap().step_done(i, &step.name, false);
    ctx.event(i, &step.name, "done", &detail);
    Ok(())
}

/// How long a wait sleeps before its next poll: a twentieth of the time
/// waited so far, at least `base` and at most 5 s. A short wait ends within
/// `base` of its condition; a long one (a sync of hours, a thousand images
/// waiting) polls ever less often, arriving at most 5 % late.
fn poll_interval(base: Duration, waited: Duration) -> Duration {
    (waited / 20).clamp(base, Duration::from_secs(5).max(base))
}

/// The data engine's settings for this run.
fn engine_options(budget: &Arc<crate::transfer::ChunkBudget>) -> crate::transfer::Options {
    // Tests simulate a crash in the middle of a copy with this: the process
    // ends right after that many chunks are recorded, one at a time.
    let crash: Option<u64> = std::env::var("FERRY_TEST_CRASH_AFTER_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok());
    crate::transfer::Options {
        budget: Some(Arc::clone(budget)),
        ..crate::transfer::Options::crashing_after(crash)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_panicking_image_fails_and_the_others_go_on() {
        let done = AtomicUsize::new(0);
        let reported = Mutex::new(Vec::new());
        let failures = each_image(
            &[0, 1, 2, 3, 4],
            2,
            |i| {
                if i == 1 {
                    panic!("boom at {i}");
                }
                if i == 3 {
                    bail!("plain error");
                }
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
            |i, r| reported.lock().unwrap().push((i, r.is_ok())),
        );
        assert_eq!(done.load(Ordering::SeqCst), 3);
        let mut reported = reported.into_inner().unwrap();
        reported.sort();
        assert_eq!(
            reported,
            [(0, true), (1, false), (2, true), (3, false), (4, true)],
            "a panicking image is reported failed like any other"
        );
        let got: Vec<(usize, String)> = failures.iter().map(|(i, e)| (*i, e.to_string())).collect();
        assert_eq!(
            got,
            [
                (1, "ferry panicked: boom at 1".to_string()),
                (3, "plain error".to_string())
            ]
        );
    }

    #[test]
    fn waits_poll_less_often_the_longer_they_wait() {
        let base = Duration::from_millis(500);
        let at = |s: u64| poll_interval(base, Duration::from_secs(s));
        assert_eq!(at(0), base);
        assert_eq!(at(10), base);
        assert_eq!(at(40), Duration::from_secs(2));
        assert_eq!(at(100), Duration::from_secs(5));
        assert_eq!(at(36_000), Duration::from_secs(5));
        // A poll slower than the cap is kept.
        assert_eq!(
            poll_interval(Duration::from_secs(9), Duration::from_secs(500)),
            Duration::from_secs(9)
        );
    }

    #[test]
    fn a_waits_failing_readings_are_not_yet_until_they_last_the_grace() {
        let mut notes = Vec::new();
        let mut f = ReadFailures::new(Duration::from_secs(3600));
        let err = || -> anyhow::Result<bool> { Err(anyhow!("monitor away")) };
        assert_eq!(
            f.tolerate(err(), |t| notes.push(t.to_string())).unwrap(),
            None
        );
        assert_eq!(
            f.tolerate(err(), |t| notes.push(t.to_string())).unwrap(),
            None
        );
        // Told once per row of failures.
        assert_eq!(notes, ["monitor away"]);
        assert_eq!(f.last(), Some("monitor away"));
        assert_eq!(f.tolerate(Ok(true), |_| {}).unwrap(), Some(true));
        assert_eq!(f.last(), None);
        // Failures that last the grace end the wait with their error.
        let mut f = ReadFailures::new(Duration::ZERO);
        let e = f.tolerate(err(), |_| {}).unwrap_err();
        assert!(format!("{e:#}").contains("monitor away"), "{e:#}");
    }

    #[test]
    fn data_slots_hold_no_more_than_their_number_at_once() {
        let slots = Slots::new(2);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let _slot = slots.take();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // All given back: two free again, not three.
        let (a, b) = (slots.try_take(), slots.try_take());
        assert!(a.is_some() && b.is_some());
        assert!(slots.try_take().is_none());
    }

    #[test]
    fn only_waits_that_gave_up_exit_2() {
        let waited = anyhow::Error::new(GaveUp("gave up after 3s".into())).context("step 4");
        assert!(gave_up(&waited));
        assert_eq!(crate::cli::exit_status(&waited), 2);
        let mismatch = anyhow!("checksums differ").context("step 5");
        assert_eq!(crate::cli::exit_status(&mismatch), 1);
        let mixed = anyhow::Error::new(RunFailed {
            message: "2 of 2 image(s) failed".into(),
            gave_up: false,
        });
        assert_eq!(crate::cli::exit_status(&mixed), 1);
        let all_waited = anyhow::Error::new(RunFailed {
            message: "1 of 2 image(s) failed".into(),
            gave_up: true,
        });
        assert_eq!(crate::cli::exit_status(&all_waited), 2);
    }

    fn record(pool: &str, image: &str) -> VerifiedRecord {
        VerifiedRecord {
            sha256: "ab".repeat(32),
            source: SourceId {
                fsid: "f-1".into(),
                pool: pool.into(),
                image: image.into(),
                id: "10ad".into(),
            },
            copy_id: Some("2f3c".into()),
        }
    }

    #[test]
    fn hand_off_lines_carry_whole_records_keyed_by_source() {
        let a = record("volumes", "volume-a b");
        let text = format!(
            "noise\n{HANDOFF} p1 {}\n{HANDOFF} p1 {}\n",
            a.to_line(),
            record("volumes", "x").to_line()
        );
        let got = parse_handoff(&text, "p1").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["volumes/volume-a b"], a);
        // A record of a ferry before copy ids reads as one without.
        let older = a.to_line().replace(",\"copy_id\":\"2f3c\"", "");
        assert_ne!(older, a.to_line());
        assert_eq!(VerifiedRecord::parse(&older).unwrap().copy_id, None);
        let e = parse_handoff(&text, "p2").unwrap_err().to_string();
        assert!(
            e.starts_with("hand-off line of plan p1, not of this plan p2"),
            "{e}"
        );
        // The older form (pool/image and a bare sum) is refused, not misread.
        let old = format!("{HANDOFF} p1 volumes/volume-a {}", "ab".repeat(32));
        let e = parse_handoff(&old, "p1").unwrap_err().to_string();
        assert!(e.contains("hand-off line not understood"), "{e}");
        let short = format!(
            "{HANDOFF} p1 {}",
            a.to_line().replace(&"ab".repeat(32), "ab")
        );
        let e = parse_handoff(&short, "p1").unwrap_err().to_string();
        assert!(e.contains("is not a SHA-256"), "{e}");
    }

    #[test]
    fn short_sums_from_remote_text_do_not_panic() {
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("0123456789abcdef0123"), "0123456789abcdef");
        assert_eq!(short("ééééééééé"), "éééééééé");
        assert_eq!(short("aéééééééé"), "aéééééééé");
    }
}
