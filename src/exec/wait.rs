//! Waiting for a condition: polling at a pace all images share, failing
//! readings taken as "not yet" for a grace, stalls named, progress shown.

use super::stall::{Nudging, Replay};
use super::*;

/// One image's wait for one check of one step, looked at again and again
/// (by the thread that waits, or by the pipeline while the image is
/// parked): while waiting for sync, it watches for a stopped rbd-mirror
/// instead of waiting forever, and shows progress.
pub(super) struct Waiting {
    i: usize,
    step: Step,
    check: Check,
    start: Instant,
    /// The "waiting for ..." event is out.
    said: bool,
    waiting_for: String,
    last_daemon_check: Instant,
    error_since: Option<Instant>,
    last_progress: Instant,
    meter: Meter,
    // Readings that fail (a monitor or an API briefly away; a shared
    // reading's error reaches every image waiting on it) are waited
    // through as "not yet"; only errors that last ERROR_GRACE end it.
    // The stall check's readings count apart: the check's own reading
    // may succeed while the stall check's fail (a monitor away while
    // the OSDs answer), and its successes must not hide those.
    failing: ReadFailures,
    stall_failing: ReadFailures,
    /// The outage named (OSDs or monitors away), while it lasts: the wait
    /// goes on through it to its timeout.
    outage: Option<String>,
    /// The last reading of the check, when it failed and may pass.
    failed: Option<String>,
    /// The nudges of a snapshot-mode replay that sits idle behind, and
    /// when the last one was taken (unix seconds).
    nudges: stall::Nudges,
    nudged_at: i64,
    /// The wait ends here whether the check holds or not (a step to run
    /// again, see [`Again`]).
    until: Option<Instant>,
}

impl Waiting {
    pub(super) fn new(i: usize, step: Step, check: Check) -> Waiting {
        let now = Instant::now();
        Waiting {
            i,
            step,
            check,
            start: now,
            said: false,
            waiting_for: String::new(),
            last_daemon_check: now,
            error_since: None,
            last_progress: now,
            meter: Meter::default(),
            failing: ReadFailures::new(ERROR_GRACE),
            stall_failing: ReadFailures::new(ERROR_GRACE),
            outage: None,
            failed: None,
            nudges: stall::Nudges::default(),
            nudged_at: 0,
            until: None,
        }
    }

    /// How long to pause before the next look.
    pub(super) fn pause(&self, base: Duration) -> Duration {
        poll_interval(base, self.start.elapsed())
    }

    /// What is awaited, in words (for NotInUse it reads the users
    /// again): said once, and again when giving up.
    fn describe(&self, ctx: &Ctx<'_>) -> anyhow::Result<String> {
        let step = &self.step;
        Ok(match &self.check {
            Check::NotInUse { image } => format!(
                "{image} to be idle (in use: {}; stop the client or shut its server off)",
                ctx.users(image)?.join("; ")
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
            // A server's stop, until each of its volumes has a round there.
            Check::RoundArrived { image, .. } => format!("a warm round of {image} to arrive"),
            // A server's making, until each of its volumes is adopted.
            Check::VolumeAdopted { source_volume } => format!(
                "the volume adopted from {source_volume} (its own entry of the plan adopts it)"
            ),
            Check::Verified { source, .. } if ctx.access.dst.is_none() => bail!(
                "the copy of {source} is not known to be verified: give the destination storage part's hand-off ({HANDOFF} lines) with --verified"
            ),
            // The run state says the copy was made and verified, but
            // its record, or the copy it names, is gone.
            Check::Verified { copy, .. } => bail!(
                "the copy {copy} is recorded in the run state as made, but is not there verified (deleted after the run?); to copy it again, remove the run state {} and run again (ferry plans again from what the source carries)",
                ctx.records.path().display()
            ),
            other => bail!("step {} needs {other:?}, which does not hold", step.id),
        })
    }

    /// One look: `true` once the check holds, `false` for "not yet"
    /// (look again after [`Waiting::pause`]); an error ends the wait
    /// (a stall, a failed awaited image, the timeout, readings failing
    /// for longer than their grace while no outage is named).
    /// A wait for a step to run again: it ends when its check holds or at
    /// `at`, and says nothing (the step said what it did).
    pub(super) fn again(i: usize, step: Step, again: &Again) -> Waiting {
        let mut w = Waiting::new(i, step, again.until.clone());
        w.until = Some(Instant::now() + again.at_most);
        w.said = true;
        w
    }

    pub(super) fn look(&mut self, ctx: &Ctx<'_>) -> anyhow::Result<bool> {
        if self.until.is_some_and(|at| Instant::now() >= at) {
            return Ok(true);
        }
        let (i, name) = (self.i, self.step.name.as_str());
        let note =
            |text: &str| tracing::warn!("image {}: step {name}: {text} (polling again)", i + 1);
        if self.last_daemon_check.elapsed() >= Duration::from_secs(5) {
            self.last_daemon_check = Instant::now();
            self.look_for_stalls(ctx)?;
        }
        // Through a named outage the readings fail until it passes: the
        // wait's timeout, not their grace, ends it; and while the cluster
        // says its data cannot be read, they are not taken (each would
        // take its timeout) until its health looks better.
        self.failing.patient = self.outage.is_some();
        self.stall_failing.patient = self.outage.is_some();
        if !self.outage.as_deref().is_some_and(stall::data_unavailable) {
            let held = reading(|| ctx.holds(&self.check));
            self.failed = match &held {
                Err(e) if passing(e) => Some(format!("{e:#}")),
                _ => None,
            };
            if self.failing.tolerate(held, note)? == Some(true) {
                return Ok(true);
            }
        }
        if !self.said {
            self.waiting_for = reading(|| self.describe(ctx))?;
            ctx.event(i, name, "waiting", &format!("for {}", self.waiting_for));
            self.said = true;
        }
        if let Check::MirrorSynced { mirrored, mode, .. } = &self.check {
            if self.outage.is_none() && self.last_progress.elapsed() >= Duration::from_secs(2) {
                self.last_progress = Instant::now();
                // Snapshot mode reads the image: a check's turn.
                if *mode == MirrorMode::Snapshot {
                    ctx.observer.pace.turn();
                }
                // Progress is for the eyes: a failed reading of it
                // shows none this time, it does not end the wait.
                let shown = reading(|| {
                    ctx.sync_progress(
                        i,
                        &plain(mirrored),
                        *mode,
                        &mut self.meter,
                        self.start.elapsed(),
                    )
                })
                .unwrap_or_else(|e| {
                    tracing::debug!("progress of {mirrored}: {e:#}");
                    None
                });
                if let Some(text) = shown {
                    ctx.event(i, name, "progress", &text);
                }
            }
        }
        if let Some(why) = ctx.awaited_image_failed(&self.check) {
            return Err(GaveUp(format!("{why} (waiting for {})", self.waiting_for)).into());
        }
        if self.start.elapsed() > ctx.opts.wait_timeout {
            let last = self
                .failing
                .last()
                .or(self.stall_failing.last())
                .map(|e| format!(" (the last reading failed: {e})"))
                .unwrap_or_default();
            let stalled = self
                .outage
                .as_ref()
                .map(|why| format!("; stalled: {why}"))
                .unwrap_or_default();
            // Describing may read the cluster that is away.
            let what = reading(|| self.describe(ctx)).unwrap_or_else(|_| self.waiting_for.clone());
            return Err(GaveUp(format!(
                "gave up after {:?} waiting for {what}{last}{stalled}",
                ctx.opts.wait_timeout,
            ))
            .into());
        }
        Ok(false)
    }

    /// Every few seconds: a stall that ends the wait (no rbd-mirror, a
    /// full pool, an error that lasts), or an outage it waits through
    /// (the receiving cluster's data unavailable, its monitors silent,
    /// the wait's readings timing out); then a replay sitting idle is
    /// nudged.
    fn look_for_stalls(&mut self, ctx: &Ctx<'_>) -> anyhow::Result<()> {
        let (i, name) = (self.i, self.step.name.as_str());
        let note =
            |text: &str| tracing::warn!("image {}: step {name}: {text} (polling again)", i + 1);
        self.stall_failing.patient = self.outage.is_some();
        let mut outage = None;
        let mut failed = self.failed.clone();
        if let Some(mirrored) = arriving(&self.check) {
            let stalled = reading(|| ctx.stalled(&plain(mirrored), &mut self.error_since));
            if let (Err(e), None) = (&stalled, &failed) {
                failed = passing(e).then(|| format!("{e:#}"));
            }
            match self.stall_failing.tolerate(stalled, note)?.flatten() {
                Some(Stall::Ends(why)) => {
                    return Err(GaveUp(format!(
                        "stalled: {why} (waiting for {})",
                        self.waiting_for
                    ))
                    .into())
                }
                Some(Stall::Outage(why)) => outage = Some(why),
                None => {}
            }
        }
        if outage.is_none() {
            if let (Some(e), Some(site)) = (&failed, read_site(&self.check)) {
                outage = ctx.outage(site, e);
            }
        }
        self.name_outage(ctx, outage);
        self.nudge(ctx)
    }

    /// Says an outage when it is first named or changes, and when it is
    /// over.
    fn name_outage(&mut self, ctx: &Ctx<'_>, why: Option<String>) {
        if why == self.outage {
            return;
        }
        let (i, name) = (self.i, self.step.name.as_str());
        match &why {
            Some(w) => {
                tracing::warn!("image {}: step {name}: stalled: {w} (waiting on)", i + 1);
                ctx.event(i, name, "stalled", &format!("{w} (waiting on)"));
            }
            None => tracing::info!("image {}: step {name}: the outage is over", i + 1),
        }
        self.outage = why;
    }

    /// In snapshot mode, with the source at hand: a replay that sits idle
    /// behind the primary's mirror snapshots is nudged with one more, a
    /// few times ([`stall::Nudges`]); then it is a stall. A nudge that
    /// fails is said, and the wait goes on.
    fn nudge(&mut self, ctx: &Ctx<'_>) -> anyhow::Result<()> {
        let Some((source, mirrored)) = mirrored_pair(&self.check) else {
            return Ok(());
        };
        let (source, mirrored) = (&source, &mirrored);
        if self.outage.is_some() || ctx.cluster(Site::Source).is_err() {
            return Ok(());
        }
        let read = reading(|| -> anyhow::Result<_> {
            let primary = ctx.mirror_snapshots(source)?;
            let received = ctx.mirror_snapshots(mirrored)?;
            let view = ctx.pool_view(&mirrored.pool)?;
            Ok((primary, received, view))
        });
        let Ok((primary, received, view)) = read else {
            // The wait's own readings say what fails.
            return Ok(());
        };
        let local = view.local.get(&mirrored.image);
        let replay = stall::replay_of(&primary, &received);
        let next = self.nudges.next(
            self.start.elapsed(),
            replay,
            stall::status_syncing(local),
            stall::believes_caught_up(local, self.nudged_at),
        );
        let (i, name) = (self.i, self.step.name.as_str());
        match next {
            Nudging::Wait => Ok(()),
            Nudging::Stalled(why) => {
                Err(GaveUp(format!("stalled: {why} (waiting for {})", self.waiting_for)).into())
            }
            Nudging::Nudge => {
                let Replay::Behind { newer, copied } = replay else {
                    return Ok(());
                };
                let taken = ctx.with_image(source, true, |img| img.mirror_snapshot_create());
                let text = match taken {
                    Ok(id) => {
                        self.nudged_at = crate::units::unix_now();
                        format!(
                            "rbd-mirror sits idle while {} holds {newer} mirror snapshot(s) newer than the last copied (primary snapshot {copied}): took mirror snapshot {id} to wake it (nudge {} of {})",
                            plain(source),
                            self.nudges.taken,
                            stall::MAX_NUDGES
                        )
                    }
                    Err(e) => format!(
                        "rbd-mirror sits idle behind {}; a mirror snapshot to wake it failed: {e:#}",
                        plain(source)
                    ),
                };
                tracing::warn!("image {}: step {name}: {text}", i + 1);
                ctx.event(i, name, "nudged", &text);
                Ok(())
            }
        }
    }
}

/// What an arriving wait shows about the receiving cluster beyond "not
/// yet": a reason it cannot end by itself, or an outage it waits through.
pub(super) enum Stall {
    Ends(String),
    Outage(String),
}

/// The image a wait for mirroring waits to arrive, if it is one.
fn arriving(check: &Check) -> Option<&ImageAt> {
    match check {
        Check::MirrorSynced { mirrored, .. } => Some(mirrored),
        Check::Exists { image } if image.site == Site::Destination => Some(image),
        _ => None,
    }
}

/// The primary and receiving image (heads) of a wait for what snapshot
/// mirroring carries: the sync itself, or metadata such as the source's
/// digest (a journal-mode image has no mirror snapshots: never behind).
fn mirrored_pair(check: &Check) -> Option<(ImageAt, ImageAt)> {
    match check {
        Check::MirrorSynced {
            source,
            mirrored,
            mode: MirrorMode::Snapshot,
        } => Some((plain(source), plain(mirrored))),
        Check::MetadataPresent { image, .. } if image.site == Site::Destination => {
            let mirrored = plain(image);
            let source = ImageAt {
                site: Site::Source,
                ..mirrored.clone()
            };
            Some((source, mirrored))
        }
        _ => None,
    }
}

/// The cluster a check reads, where one does.
fn read_site(check: &Check) -> Option<Site> {
    match check {
        Check::MirrorSynced { mirrored, .. } => Some(mirrored.site),
        Check::Exists { image }
        | Check::NotInUse { image }
        | Check::SnapshotExists { image }
        | Check::SnapshotProtected { image }
        | Check::MetadataPresent { image, .. }
        | Check::RoundArrived { image, .. }
        | Check::Published { image } => Some(image.site),
        Check::Verified { copy, .. } => Some(copy.site),
        _ => None,
    }
}

thread_local! {
    /// Readings under way on this thread (see [`reading`]).
    static READING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `read` as a reading: its Ceph calls go through the clusters'
/// connections that give up soon ([`crate::ceph::Cluster::readings`]),
/// so a wait whose cluster lost its OSDs names it and keeps its timeout.
pub(super) fn reading<T>(read: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            READING.with(|r| r.set(r.get() - 1));
        }
    }
    READING.with(|r| r.set(r.get() + 1));
    let _leave = Leave;
    read()
}

/// Whether this thread is inside [`reading`].
pub(super) fn in_reading() -> bool {
    READING.with(|r| r.get() > 0)
}

impl Ctx<'_> {
    /// Waits until `check` holds, on this thread (a wait inside an action,
    /// or of a step that runs alongside others); a run's own lane of an
    /// image parks instead ([`Waiting`] looked at by the pipeline).
    pub(crate) fn wait(&self, i: usize, step: &Step, check: &Check) -> anyhow::Result<()> {
        let mut waiting = Waiting::new(i, step.clone(), check.clone());
        while !waiting.look(self)? {
            std::thread::sleep(waiting.pause(self.opts.poll));
            // However many images wait, their checks together keep one pace.
            self.observer.pace.turn();
        }
        Ok(())
    }

    /// Reads the receiving cluster and says why the mirror of `mirrored`
    /// cannot progress, if it cannot: a stall that ends the wait, or an
    /// outage (its data unavailable) that it waits through. `error_since`
    /// carries when rbd-mirror started reporting an error for it, across
    /// calls.
    pub(super) fn stalled(
        &self,
        mirrored: &ImageAt,
        error_since: &mut Option<Instant>,
    ) -> anyhow::Result<Option<Stall>> {
        let dst = self.dst()?;
        let cluster = self.cluster_view()?;
        // Before the pool's readings, which need the OSDs.
        if let Some(why) = stall::outage(dst.name(), &cluster.health, cluster.osds) {
            return Ok(Some(Stall::Outage(why)));
        }
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
        })
        .map(Stall::Ends))
    }

    /// Why readings of `site` fail (`failed`, the last error), when its
    /// health or its silent monitors say: the outage a wait names.
    pub(super) fn outage(&self, site: Site, failed: &str) -> Option<String> {
        let name = self.cluster(site).ok()?.name().to_string();
        match reading(|| self.cluster_view_of(site)) {
            Ok(view) => Some(
                stall::outage(&name, &view.health, view.osds)
                    .unwrap_or_else(|| stall::reads_time_out(&name, &view.health, failed)),
            ),
            Err(e) if passing(&e) => Some(stall::monitors_away(&name, &format!("{e:#}"))),
            Err(_) => None,
        }
    }

    /// The receiving cluster as all waits share it.
    pub(super) fn cluster_view(&self) -> anyhow::Result<std::sync::Arc<observe::ClusterView>> {
        self.cluster_view_of(Site::Destination)
    }

    /// A cluster as all waits share it: its health (a monitor command,
    /// which needs no OSD), and on the receiving one its rbd-mirror daemons.
    pub(super) fn cluster_view_of(
        &self,
        site: Site,
    ) -> anyhow::Result<std::sync::Arc<observe::ClusterView>> {
        let c = self.cluster(site)?;
        self.observer.clusters.get(site, || {
            Ok(observe::ClusterView {
                health: c.health()?,
                osds: c.osds_up().ok(),
                mirror_daemons: match site {
                    Site::Destination => c.service_daemons("rbd-mirror")?.len(),
                    Site::Source => 0,
                },
            })
        })
    }

    /// A pool of the receiving cluster as all waits share it: its peers and
    /// every mirrored image's local status, in one listing.
    pub(super) fn pool_view(
        &self,
        pool: &str,
    ) -> anyhow::Result<std::sync::Arc<observe::PoolView>> {
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

    /// How far the mirror has come: snapshot mode from the receiving mirror
    /// snapshot's copied objects; journal mode from the status description.
    pub(super) fn sync_progress(
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
                let read = self
                    .size(mirrored)
                    .and_then(|size| Ok((size, self.mirror_snapshots(mirrored)?)));
                let ((size, object_size), received) = match read {
                    Ok(r) => r,
                    Err(e) if not_found(&e) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let Some(s) = received.last() else {
                    return Ok(Some(
                        "waiting for the first mirror snapshot to start".into(),
                    ));
                };
                let objects = size.div_ceil(object_size.max(1));
                let done_objects = if s.complete {
                    objects
                } else {
                    s.last_copied_object_number
                };
                let p = meter.sample(done_objects * object_size, size, at);
                self.output
                    .board()
                    .bytes(i, Phase::Mirroring, p.done, &p.bytes_text());
                Ok(Some(p.to_string()))
            }
            MirrorMode::Journal => {
                let view = self.pool_view(&mirrored.pool)?;
                let size = self.image_plan(i).facts.size();
                let text = view.local.get(&mirrored.image).map(|l| match l.progress() {
                    ReplayProgress::Bootstrapping { step, percent } => {
                        let pct = percent.unwrap_or(0.0);
                        let done = (size as f64 * pct / 100.0) as u64;
                        let text = format!("initial sync {step} {pct}%");
                        self.output.board().bytes(i, Phase::Mirroring, done, &text);
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
                            crate::units::human_bytes(bytes_per_second as u64),
                            seconds_until_synced
                                .map(|s| format!(", ETA {s:.0} s"))
                                .unwrap_or_default()
                        );
                        self.output.board().bytes(i, Phase::Mirroring, size, &text);
                        text
                    }
                    _ => {
                        let text = l.summary();
                        self.output.board().note(i, &text);
                        text
                    }
                });
                Ok(text)
            }
        }
    }

    /// When `check` waits for what another image of this run makes (a
    /// clone's parent, published and protected by that image's migration)
    /// and that image has failed in this run: why the wait is over.
    pub(super) fn awaited_image_failed(&self, check: &Check) -> Option<String> {
        let Check::SnapshotProtected { image } = check else {
            return None;
        };
        self.records.find_failed(|k| {
            let other = &self.plan.images.get(k)?.image;
            (other.dest_pool == image.pool && other.dest_name == image.image).then(|| {
                format!(
                    "the migration of {} (image {}), which makes this copy's parent {image}, failed or was not begun in this run: fix what its error says and run again",
                    other.source_spec(),
                    k + 1
                )
            })
        })
    }
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
    /// Failures past the grace are still "not yet" (an outage is named).
    patient: bool,
}

impl ReadFailures {
    fn new(grace: Duration) -> ReadFailures {
        ReadFailures {
            grace,
            since: None,
            patient: false,
        }
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
        if since.elapsed() >= self.grace && !self.patient {
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

/// Takes `read` until it succeeds, through `passing` failures that last
/// less than `grace` in a row (`note` is told the first), sleeping
/// `pause(time since the first try)` between tries; any other failure (an
/// answer: denied, not the same data) ends it at once. A reading at a
/// step's edge (is the step done already? did its action take?) so gets
/// the patience a wait's readings get: a cluster away for a moment does
/// not fail an image between its steps.
pub(super) fn read_through<T>(
    grace: Duration,
    mut read: impl FnMut() -> anyhow::Result<T>,
    passing: impl Fn(&anyhow::Error) -> bool,
    mut note: impl FnMut(&str),
    mut pause: impl FnMut(Duration),
) -> anyhow::Result<T> {
    let mut failing = ReadFailures::new(grace);
    let start = Instant::now();
    loop {
        let r = match read() {
            Err(e) if !passing(&e) => return Err(e),
            r => r,
        };
        if let Some(v) = failing.tolerate(r, &mut note)? {
            return Ok(v);
        }
        pause(start.elapsed());
    }
}

/// Whether a failed reading may pass if asked again: Ceph gave no answer
/// in time, or lost the connection (not: denied, not found, refused).
/// OpenStack calls retry on their own (`api_retry_seconds`).
pub(super) fn passing(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<CephError>()
            .is_some_and(|c| matches!(c.kind(), ErrorKind::TimedOut | ErrorKind::Other))
    })
}

impl Ctx<'_> {
    /// [`read_through`] with a wait's grace and pace, for step `step` of
    /// image `i`.
    pub(super) fn read_through<T>(
        &self,
        i: usize,
        step: &Step,
        mut read: impl FnMut() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let r = read_through(
            ERROR_GRACE,
            || reading(&mut read),
            passing,
            |text| {
                tracing::warn!(
                    "image {}: step {}: {text} (reading again)",
                    i + 1,
                    step.name
                )
            },
            |waited| std::thread::sleep(poll_interval(self.opts.poll, waited)),
        );
        // Readings that failed for the whole grace: a named outage is a
        // wait that gave up (run again later), not a failure.
        match r {
            Err(e) if passing(&e) => {
                let text = format!("{e:#}");
                let named: Vec<String> = [Site::Destination, Site::Source]
                    .into_iter()
                    .filter_map(|site| self.outage(site, &text))
                    .collect();
                // What a cluster's health says first, else a guess.
                let outage = named
                    .iter()
                    .find(|why| !stall::from_readings(why))
                    .or(named.first());
                match outage {
                    Some(why) => Err(GaveUp(format!("stalled: {why}")).into()),
                    None => Err(e),
                }
            }
            r => r,
        }
    }
}

/// How long a wait sleeps before its next poll: a twentieth of the time
/// waited so far, at least `base` and at most 5 s. A short wait ends within
/// `base` of its condition; a long one (a sync of hours, a thousand images
/// waiting) polls ever less often, arriving at most 5 % late.
pub(super) fn poll_interval(base: Duration, waited: Duration) -> Duration {
    (waited / 20).clamp(base, Duration::from_secs(5).max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_reading_at_a_steps_edge_is_taken_again_through_passing_failures() {
        // Fails twice, then reads: the value, one note, two pauses.
        let (mut tries, mut notes, mut pauses) = (0, Vec::new(), 0);
        let away = || -> anyhow::Error {
            CephError::call("rados_mon_command", "status".to_string(), -libc::ETIMEDOUT).into()
        };
        let v = read_through(
            Duration::from_secs(3600),
            || {
                tries += 1;
                if tries <= 2 {
                    Err(away().context("reading site-b"))
                } else {
                    Ok(tries)
                }
            },
            passing,
            |t| notes.push(t.to_string()),
            |_| pauses += 1,
        )
        .unwrap();
        assert_eq!((v, pauses), (3, 2));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].starts_with("reading site-b: "), "{notes:?}");
        // Failures that last the grace end it with their error.
        let mut tries = 0;
        let e = read_through(
            Duration::ZERO,
            || -> anyhow::Result<bool> {
                tries += 1;
                Err(away())
            },
            passing,
            |_| {},
            |_| {},
        )
        .unwrap_err();
        assert_eq!(tries, 1);
        assert!(format!("{e:#}").contains("still failing"), "{e:#}");
        // An answer is not asked again: denied, or a verdict on the data.
        for answer in [
            CephError::call("rbd_open", "volumes/x".to_string(), -libc::EACCES).into(),
            anyhow!("the copy was verified with another digest: not the same data"),
        ] {
            let mut answer = Some(answer);
            let mut tries = 0;
            let e = read_through(
                Duration::from_secs(3600),
                || -> anyhow::Result<bool> {
                    tries += 1;
                    Err(answer.take().unwrap_or_else(|| anyhow!("asked twice")))
                },
                passing,
                |_| {},
                |_| {},
            )
            .unwrap_err();
            assert_eq!(tries, 1, "{e:#}");
        }
    }
}
