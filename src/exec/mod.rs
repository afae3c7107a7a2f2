//! Executes a plan with ferry's own Ceph access: every step checks the real
//! state first (a step whose `done_when` checks hold is skipped), waits for
//! what it requires, acts, proves it took effect, and is recorded in the run
//! state, so a re-run resumes and a finished run changes nothing.

mod act;
mod board;
mod checks;
pub(crate) mod cloud;
mod lane;
mod observe;
mod output;
mod pipeline;
mod progress;
mod records;
pub(crate) mod space;
mod stall;
mod state;
pub(crate) mod stream;
mod wait;

pub(crate) use act::{engine_options, feature_list};
pub use board::{clock, BatchProgress, Board, Phase};
use lane::{check_inputs, run_image, Flow, ImageSteps, Lane};
pub use progress::{Meter, Progress};

pub use state::{legacy_state_path, state_path, ImageState, RunState, StateLock};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::parallel::{Flag, Slot, Slots};
use crate::steps;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::ceph::{
    complete_mirror_snapshot_after, primary_mirror_snapshot_after, CephError, Cluster, ErrorKind,
    Features, Image, ImageMirrorState, MirrorMode, ReplayProgress,
};
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

/// A step that is not done yet and is to run again: its lane parks (no
/// thread held) until `until` holds or `at_most` has passed, then the
/// step's action runs again. Warm rounds end each round so.
#[derive(Debug, thiserror::Error)]
#[error("to run again once {until:?} holds, or after {at_most:?}")]
pub struct Again {
    pub until: Check,
    pub at_most: Duration,
}

impl Ctx<'_> {
    /// For a step that runs again and again (see [`Again`]): None while its
    /// wait is within `--wait-timeout` of its first turn (noted in the run
    /// state), or the seconds waited once beyond it; the next run then
    /// waits afresh.
    pub(crate) fn waited_too_long(&self, i: usize) -> anyhow::Result<Option<i64>> {
        let now = crate::units::unix_now();
        let since = match self.image_state(i).warm_since {
            Some(t) => t,
            None => {
                self.update(i, |s| s.warm_since = Some(now))?;
                now
            }
        };
        if now - since <= self.opts.wait_timeout.as_secs() as i64 {
            return Ok(None);
        }
        self.update(i, |s| s.warm_since = None)?;
        Ok(Some(now - since))
    }
}

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
    /// What to do with another plan's adoption of a source, overriding the
    /// plan's `earlier` (`ferry run --earlier-adoption`).
    pub earlier_adoption: Option<crate::spec::EarlierAdoption>,
    /// Put each image's source back instead of running (`--undo`).
    pub undo: bool,
    /// A role run's ssh options for the conversion hosts: the operator's,
    /// never the bundle's. None (a whole run): the spec's.
    pub ssh_options: Option<Vec<String>>,
}

pub use crate::connect::Access;

/// The destination storage part's hand-off, for a cleanup part: source
/// image (`pool/image`) → the record of its verified copy.
pub type Handoff = BTreeMap<String, VerifiedRecord>;

pub(crate) struct Ctx<'a> {
    pub(crate) access: Access,
    /// The hand-off a cleanup part was given (empty otherwise).
    pub(crate) verified: Handoff,
    /// The one role this run performs; None: all of them.
    role: Option<Role>,
    pub(crate) opts: &'a RunOptions,
    /// The plan, which the run never changes: read without a lock.
    plan: Arc<Plan>,
    /// What the images' steps recorded, and the state file.
    records: records::Records,
    /// The board, the events and the batch lines.
    output: output::Output,
    /// Steps that move data take one of these (`--concurrency`).
    data_slots: Arc<Slots>,
    /// What the waits of all images share (readings, the pace of checks).
    observer: observe::Observer,
    /// Images open at once through `with_image` ([`OPEN_AT_ONCE`]).
    open_slots: Arc<Slots>,
}

/// Images open at once for checks and short actions, whatever the number
/// of images in flight: each open holds a whole librbd configuration
/// (~0.3 MiB), and a batch of images opening theirs at once was most of a
/// run's memory. Most checks read image headers without an open now, so the
/// slots are mostly for actions, which hold theirs while librbd waits for
/// the monitor (a snapshot takes a second). 200 images at --concurrency 50
/// (bench-scale): 64 slots 49 s and 116 MiB max RSS, 24 slots 52 s and
/// 94 MiB, 16 slots 67 s and 88 MiB.
const OPEN_AT_ONCE: usize = 24;

/// Worker threads beyond `--concurrency`, for the short actions
/// (snapshots, features, adoption) while every data slot is busy.
const SHORT_ACTIONS: usize = 8;

thread_local! {
    /// This thread holds an open slot (a nested open goes on without one).
    static HOLDS_OPEN_SLOT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An open slot of this thread, or nothing for a nested open.
struct OpenSlot(Option<Slot>);

impl OpenSlot {
    fn take(slots: &Arc<Slots>) -> OpenSlot {
        if HOLDS_OPEN_SLOT.get() {
            return OpenSlot(None);
        }
        let slot = slots.take();
        HOLDS_OPEN_SLOT.set(true);
        OpenSlot(Some(slot))
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        if self.0.take().is_some() {
            HOLDS_OPEN_SLOT.set(false);
        }
    }
}

/// Runs (or resumes) the migration of `spec`, every role. Returns the
/// state file path.
pub fn run(spec_path: &Path, spec: &Spec, opts: &RunOptions) -> anyhow::Result<PathBuf> {
    state_dir(opts)?;
    let path = state_path(&opts.state_dir, spec_path);
    // First of all: a second run on this state stops here, before it reads
    // anything it could act on.
    let _lock = StateLock::acquire(&path)?;
    let access = crate::plan::connect(spec, crate::plan::Purpose::Run)?.warned();
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
            let prepared =
                crate::plan::prepare(spec, spec_path, &access, crate::plan::Purpose::Run)?.warned();
            if let Some(id) = &prepared.resumed {
                eprintln!(
                    "ferry: no run state in {}, but plan {id} was begun on these images: resuming it, with the features and mirroring its records on the images give",
                    path.display()
                );
            }
            let s = RunState::for_spec(prepared.plan, spec);
            s.save(&path)?;
            s
        }
    };
    execute(state, path, access, BTreeMap::new(), None, opts)
}

/// Runs (or resumes) one role's part of a plan bundle written by `ferry
/// plan`, with only that role's access. Its state file is
/// `<state dir>/<bundle name>.<role>.state.yaml`.
pub fn run_role(
    bundle: &Path,
    plan: Plan,
    role: Role,
    access: Access,
    verified: Handoff,
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
    execute(state, path, access, verified, Some(role), opts)
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
    verified: Handoff,
    role: Option<Role>,
    opts: &RunOptions,
) -> anyhow::Result<PathBuf> {
    let plan = Arc::clone(&state.plan);
    let ctx = Ctx {
        access,
        verified,
        role,
        opts,
        output: output::Output::new(Arc::clone(&plan), opts.json),
        plan,
        records: records::Records::new(state, path.clone()),
        data_slots: Slots::new(opts.concurrency),
        observer: observe::Observer::new(),
        open_slots: Slots::new(OPEN_AT_ONCE),
    };
    if opts.undo {
        return undo(&ctx, role);
    }
    let before = output::Load::now();
    let (n, order) = (ctx.plan.images.len(), ctx.plan.run_order());
    let finished = Flag::default();
    // Waiting images hold no thread: the workers are for work, the data
    // steps and as many more for short actions.
    let workers = opts
        .in_flight
        .max(opts.concurrency)
        .min(opts.concurrency + SHORT_ACTIONS);
    let failed_image = |i: usize, e: &anyhow::Error| {
        ctx.records.fail([i]);
        ctx.output.board().phase(i, Phase::Failed);
        ctx.event(i, "-", "failed", &format!("{e:#}"));
    };
    let mut checked_first = false;
    let failures = std::thread::scope(|s| {
        s.spawn(|| ctx.output.tick(&finished, &ctx.observer.parked));
        // Every image's read-only checks of the clouds first: a batch with
        // one bad input (a name taken, a type missing, a volume in use)
        // stops before anything changes on any image, however many are in
        // flight at once.
        let mut failures = each_image(
            &order,
            workers,
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
            ctx.records.fail(left);
            go
        };
        failures.extend(pipeline::run(
            &ctx,
            &go,
            workers,
            opts.in_flight.max(opts.concurrency),
            &|i, r| match r {
                Ok(()) => ctx.output.board().phase(i, Phase::Done),
                Err(e) => failed_image(i, e),
            },
        ));
        failures.sort_by_key(|(i, _)| *i);
        finished.raise();
        failures
    });
    ctx.output.finish();
    tracing::info!(
        "load: {}, at most {} images open at once",
        output::Load::now().since(&before),
        crate::ceph::images_open_at_most()
    );
    // The journal folded into the state file: one file to read or keep.
    ctx.records.save()?;
    if role == Some(Role::DestinationStorage) {
        ctx.hand_off()?;
    }
    if failures.is_empty() {
        return Ok(path);
    }
    let gave_up = failures.iter().all(|(_, e)| gave_up(e));
    let lines: Vec<String> = failures
        .iter()
        .map(|(i, e)| format!("{}: {e:#}", ctx.image_plan(*i).image.source_spec()))
        .collect();
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

/// `--undo`: every image's source put back (see `Ctx::undo`), each
/// told with what was done; the state kept so that a run again starts
/// afresh.
fn undo(ctx: &Ctx<'_>, role: Option<Role>) -> anyhow::Result<PathBuf> {
    if !matches!(role, None | Some(Role::SourceStorage) | Some(Role::Cleanup)) {
        bail!("--undo puts the source back: it is the source storage part's (--role source-storage), not the {} part's", role.map(|r| r.to_string()).unwrap_or_default());
    }
    let n = ctx.plan.images.len();
    let mut lines = Vec::new();
    for i in 0..n {
        let name = ctx.image_plan(i).image.source_spec();
        match ctx.undo(i) {
            Ok(did) => ctx.event(i, "undo", "done", &did.join(", ")),
            Err(e) => {
                ctx.event(i, "undo", "failed", &format!("{e:#}"));
                lines.push(format!("{name}: {e:#}"));
            }
        }
    }
    ctx.records.save()?;
    if lines.is_empty() {
        return Ok(ctx.records.path().to_path_buf());
    }
    Err(RunFailed {
        message: format!(
            "{} of {n} image(s) could not be put back (state kept in {}):\n  {}",
            lines.len(),
            ctx.records.path().display(),
            lines.join("\n  ")
        ),
        gave_up: false,
    }
    .into())
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
pub(crate) fn short(sum: &str) -> &str {
    sum.get(..16).unwrap_or(sum)
}

impl Ctx<'_> {
    pub(crate) fn cluster(&self, site: Site) -> anyhow::Result<&Cluster> {
        let (c, name) = match site {
            Site::Source => (&self.access.src, "source"),
            Site::Destination => (&self.access.dst, "destination"),
        };
        let c = c.as_ref().ok_or_else(|| match self.role {
            Some(r) => anyhow!("the {r} part has no access to the {name} cluster"),
            None => anyhow!("no access to the {name} cluster"),
        })?;
        // A wait's readings go through the connection that gives up soon.
        if wait::in_reading() {
            return Ok(c.readings()?);
        }
        Ok(c)
    }

    pub(crate) fn dst(&self) -> anyhow::Result<&Cluster> {
        self.cluster(Site::Destination)
    }

    pub(crate) fn plan_id(&self) -> String {
        self.plan.id.clone()
    }

    /// Image `i`'s plan (the run never changes the plan: no lock, no copy).
    pub(crate) fn image_plan(&self, i: usize) -> &ImagePlan {
        &self.plan.images[i]
    }

    pub(crate) fn with_image<T>(
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

    /// Prints the hand-off lines of the verified copies (stdout), for the
    /// cleanup part.
    fn hand_off(&self) -> anyhow::Result<()> {
        let verified = self
            .plan
            .images
            .iter()
            .flat_map(|p| &p.steps)
            .filter_map(|s| match &s.action {
                Action::Verify(steps::Verify { copy, origin, .. }) => Some((copy, origin)),
                _ => None,
            });
        for (copy, origin) in verified {
            if let Some(rec) = self.record(copy, origin)? {
                let line = format!("{HANDOFF} {} {}", self.plan.id, rec.to_line());
                if self.opts.json {
                    println!("{}", serde_json::json!({ "hand_off": line }));
                } else {
                    println!("{line}");
                }
            }
        }
        Ok(())
    }

    pub(crate) fn image_state(&self, i: usize) -> ImageState {
        self.records.image(i)
    }

    /// Changes image `i`'s record and records it (see [`records::Records::update`]).
    pub(crate) fn update(&self, i: usize, f: impl FnOnce(&mut ImageState)) -> anyhow::Result<()> {
        self.records.update(i, f)
    }

    /// A data slot for step `step` of image `i` if one is free now; if
    /// not, says that the step waits for one.
    fn data_slot_or_say(&self, i: usize, step: &Step) -> Option<Slot> {
        let slot = self.data_slots.try_take();
        if slot.is_none() {
            self.waiting_for_slot(i, step);
        }
        slot
    }

    /// Says that step `step` of image `i` waits for a data slot.
    fn waiting_for_slot(&self, i: usize, step: &Step) {
        self.event(
            i,
            step.name.as_str(),
            "waiting",
            &format!(
                "for one of the {} data slots (--concurrency)",
                self.opts.concurrency
            ),
        );
    }
}

/// Whether an error is Ceph's "no such image/pool/snapshot".
fn not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<CephError>()
        .is_some_and(|c| c.kind() == ErrorKind::NotFound)
}

/// The image `at` names, without its snapshot.
pub(crate) fn plain(at: &ImageAt) -> ImageAt {
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
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            },
            |i, r| reported.lock().unwrap().push((i, r.is_ok())),
        );
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 3);
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
