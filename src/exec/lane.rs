//! An image's steps, one after another in its lane: each step's first
//! checks (done already, or past), its wait for what it requires, its
//! action and its record; a step the next one does not follow runs
//! alongside in a side lane; a failure waits for what runs alongside, then
//! is named (and, when Ceph refused a step that prepares the source, the
//! source is put back). A lane that must wait parks and holds no thread
//! (`pipeline` looks at it again).

use super::*;

/// Whether a step reads or writes an image's data (and so takes a data
/// slot while it acts; its waits come before, without one).
fn moves_data(action: &Action) -> bool {
    action.kind().moves_data()
}

/// The source storage actions that prepare mirroring: when Ceph refuses one
/// of them (see [`refused`]), the plan cannot go on and the source is put
/// back as the plan found it. From the cut-over on, what is done is kept.
fn prepares_source(action: &Action) -> bool {
    action.kind().prepares_source()
}

/// Whether an error is Ceph refusing the call (an argument or a feature it
/// will not take, no permission, not supported, read-only): the same call
/// would be refused again. A wait that gave up, a lost connection, a
/// timeout, a busy image, a full pool or a panic is not: running again may
/// go on from where the run stopped, so nothing is undone for it.
fn refused(e: &anyhow::Error) -> bool {
    if gave_up(e) {
        return false;
    }
    e.chain()
        .filter_map(|c| c.downcast_ref::<CephError>())
        .any(|c| {
            matches!(
                c.kind(),
                ErrorKind::InvalidArgument
                    | ErrorKind::PermissionDenied
                    | ErrorKind::Unsupported
                    | ErrorKind::ReadOnly
            )
        })
}

/// The read-only checks of the clouds that open an image's plan
/// (check-destination-cloud, check-source-cloud), run for the whole batch
/// before any image begins; `run_image` then finds them done.
/// Nothing is recorded here: `run_image` runs (and records) them again
/// when the image begins, so a check is never older than its image's start.
pub(super) fn check_inputs(ctx: &Ctx<'_>, i: usize) -> anyhow::Result<()> {
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
        if !step.past_when.is_empty()
            && ctx.read_through(i, step, || ctx.all_hold(&step.past_when))?
        {
            continue;
        }
        ctx.act(i, step).map_err(|e| failed(ctx, i, step, e))?;
    }
    Ok(())
}

/// An image's plan, and the steps its run state records as done.
pub(super) struct ImageSteps<'a> {
    plan: &'a ImagePlan,
    done: BTreeSet<String>,
}

impl<'a> ImageSteps<'a> {
    pub(super) fn of(ctx: &'a Ctx<'_>, i: usize) -> ImageSteps<'a> {
        ImageSteps {
            plan: ctx.image_plan(i),
            done: ctx.records.done(i),
        }
    }

    /// Whether a step past the input checks is recorded: an earlier run
    /// began this image.
    pub(super) fn begun(&self) -> bool {
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
        !steps[k].rechecked() && self.done.contains(&steps[k].id) && frontier.is_some_and(|f| k < f)
    }
}

/// A step running alongside the steps after it, and where its outcome
/// will be.
type Alongside = (Step, Arc<pipeline::Outcome>);

/// Where a lane of an image's steps stands: the step it is at, how far
/// that step has come, and the steps running alongside. A lane that must
/// wait parks and holds no thread. An image has its own lane, and a side
/// lane for each step running alongside it.
#[derive(Default)]
pub(super) struct Lane {
    /// The step (index into the role's steps) the lane is at.
    k: usize,
    /// Step `k`'s first checks are done: it is neither done already nor past.
    entered: bool,
    /// How many of step `k`'s requirements hold.
    pub(super) held: usize,
    /// A data slot taken for step `k`.
    pub(super) slot: Option<Slot>,
    alongside: Vec<Alongside>,
    /// A side lane: it runs step `k` only, and its outcome goes here.
    pub(super) side: Option<Arc<pipeline::Outcome>>,
    /// A side lane's step is settled (see [`ImageSteps::settled`]), as
    /// judged when it was set off.
    settled: bool,
    /// Step `k` failed with this (`true`: named already, a failure of a
    /// step alongside); what runs alongside finishes first.
    failing: Option<(anyhow::Error, bool)>,
}

/// How a turn of a lane ended.
pub(super) enum Flow {
    /// Every step of the lane is done.
    Done,
    /// The lane waits for a requirement (`Some`: look at it again later)
    /// or for a data slot (`None`).
    Parked(Lane, Option<Box<wait::Waiting>>),
    /// The lane waits for a step running alongside; it is held by that
    /// step's outcome and goes on when the outcome is in.
    Joining,
}

/// Runs image `i`'s steps from where `lane` stands (its start: `None`)
/// until they are done or one must wait. A step the next one does not
/// follow runs alongside the steps after it, until one that follows it
/// (the source's hash beside the sync and the copy), in a side lane that
/// `set_off` hands to the pipeline; whatever runs alongside has finished
/// before a failure is handled (the source is put back) and before the
/// image is done. `ended`: the wait the lane was parked on ended with this
/// error.
pub(super) fn run_image(
    ctx: &Ctx<'_>,
    set_off: &dyn Fn(usize, Lane),
    i: usize,
    lane: Option<Lane>,
    ended: Option<anyhow::Error>,
) -> anyhow::Result<Flow> {
    let image = ImageSteps::of(ctx, i);
    let steps = image.steps(ctx.role);
    let mut lane = lane.unwrap_or_default();
    let step_at = |k: usize| {
        steps
            .get(k)
            .copied()
            .ok_or_else(|| anyhow!("image {} parked past its last step", i + 1))
    };
    if lane.side.is_some() {
        if let Some(e) = ended {
            return Err(e);
        }
        let step = step_at(lane.k)?;
        if !lane.entered {
            if enter(ctx, i, step, lane.settled)? {
                return Ok(Flow::Done);
            }
            lane.entered = true;
        }
        return match ready_to_act(ctx, i, step, lane).map_err(|(_, e)| e)? {
            Ready::Act(mut lane) => match act_and_record(ctx, i, step, lane.slot.take()) {
                Ok(()) => Ok(Flow::Done),
                Err(e) => match again(i, step, &e) {
                    Some(waiting) => Ok(Flow::Parked(lane, Some(waiting))),
                    None => Err(e),
                },
            },
            Ready::Not(flow) => Ok(flow),
        };
    }
    if let Some(e) = ended {
        lane.failing = Some((e, false));
    }
    if lane.failing.is_some() {
        return fail(ctx, i, step_at(lane.k)?, lane);
    }
    while let Some(&step) = steps.get(lane.k) {
        let k = lane.k;
        if !lane.entered {
            let which = |s: &Step| step.after.contains(&s.id);
            lane = match join(ctx, i, lane, &which) {
                Joined::Parked => return Ok(Flow::Joining),
                Joined::Done(lane, Ok(())) => lane,
                // A step's alongside failed (named by the join).
                Joined::Done(mut lane, Err(e)) => {
                    lane.failing = Some((e, true));
                    return fail(ctx, i, step, lane);
                }
            };
            let settled = image.settled(&steps, k);
            // Beside: the next step follows others of this lane's steps,
            // not this one. One that follows only another role's steps (a
            // role's run) follows this one.
            let beside = steps.get(k + 1).is_some_and(|next| {
                !next.after.contains(&step.id)
                    && next.after.iter().any(|a| steps.iter().any(|s| s.id == *a))
            });
            if beside {
                let outcome = Arc::new(pipeline::Outcome::default());
                set_off(
                    i,
                    Lane {
                        k,
                        side: Some(Arc::clone(&outcome)),
                        settled,
                        ..Lane::default()
                    },
                );
                lane.alongside.push((step.clone(), outcome));
                lane.k += 1;
                continue;
            }
            match enter(ctx, i, step, settled) {
                Ok(true) => {
                    lane.k += 1;
                    continue;
                }
                Ok(false) => lane.entered = true,
                Err(e) => {
                    lane.failing = Some((e, false));
                    return fail(ctx, i, step, lane);
                }
            }
        }
        lane = match ready_to_act(ctx, i, step, lane) {
            Ok(Ready::Act(lane)) => lane,
            Ok(Ready::Not(flow)) => return Ok(flow),
            Err((mut lane, e)) => {
                lane.failing = Some((e, false));
                return fail(ctx, i, step, lane);
            }
        };
        if let Err(e) = act_and_record(ctx, i, step, lane.slot.take()) {
            // To run again (a warm round done): parked until then, holding
            // nothing, the step still entered.
            if let Some(waiting) = again(i, step, &e) {
                return Ok(Flow::Parked(lane, Some(waiting)));
            }
            lane.failing = Some((e, false));
            return fail(ctx, i, step, lane);
        }
        lane = Lane {
            k: k + 1,
            alongside: std::mem::take(&mut lane.alongside),
            ..Lane::default()
        };
    }
    match join(ctx, i, lane, &|_| true) {
        Joined::Parked => Ok(Flow::Joining),
        Joined::Done(_, r) => r.map(|()| Flow::Done),
    }
}

/// When a step ended asking to run again ([`super::Again`]): the wait its
/// lane parks on until then.
fn again(i: usize, step: &Step, e: &anyhow::Error) -> Option<Box<wait::Waiting>> {
    let again = e.downcast_ref::<super::Again>()?;
    Some(Box::new(wait::Waiting::again(i, step.clone(), again)))
}

/// Whether a lane's entered step can act now.
enum Ready {
    /// Its requirements hold and it has the data slot it needs.
    Act(Lane),
    /// It waits (the lane parked).
    Not(Flow),
}

/// Looks at the requirements of `step` not yet seen to hold, then takes
/// the data slot it needs: the lane acts, or parks to wait. An error ends
/// the wait (given with the lane, whose side steps must finish first).
fn ready_to_act(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    mut lane: Lane,
) -> Result<Ready, (Lane, anyhow::Error)> {
    while let Some(check) = step.requires.get(lane.held) {
        let mut waiting = wait::Waiting::new(i, step.clone(), check.clone());
        match waiting.look(ctx) {
            Ok(true) => lane.held += 1,
            Ok(false) => return Ok(Ready::Not(Flow::Parked(lane, Some(Box::new(waiting))))),
            Err(e) => return Err((lane, e)),
        }
    }
    if moves_data(&step.action) && lane.slot.is_none() {
        match ctx.data_slot_or_say(i, step) {
            Some(slot) => lane.slot = Some(slot),
            None => return Ok(Ready::Not(Flow::Parked(lane, None))),
        }
    }
    Ok(Ready::Act(lane))
}

/// The failure of the lane's step `lane.k` (in `lane.failing`), once what
/// runs alongside has finished: named, the source put back (see
/// [`failed`]); a failure meanwhile is told.
fn fail(ctx: &Ctx<'_>, i: usize, step: &Step, lane: Lane) -> anyhow::Result<Flow> {
    match join(ctx, i, lane, &|_| true) {
        Joined::Parked => Ok(Flow::Joining),
        Joined::Done(mut lane, meanwhile) => {
            if let Err(b) = meanwhile {
                ctx.event(
                    i,
                    step.name.as_str(),
                    "failed",
                    &format!("meanwhile: {b:#}"),
                );
            }
            match lane.failing.take().expect("a failing lane") {
                (e, true) => Err(e),
                (e, false) => Err(failed(ctx, i, step, e)),
            }
        }
    }
}

/// What a lane's join of the steps alongside came to.
enum Joined {
    /// All of them are done: the first failure among them is the image's
    /// (named), the others are told.
    Done(Lane, anyhow::Result<()>),
    /// One is not done yet: the lane is held by its outcome.
    Parked,
}

/// Joins the steps running alongside that `which` picks: when one is not
/// done, the lane parks on its outcome (holding no thread) and is looked at
/// again when that outcome is in.
fn join(ctx: &Ctx<'_>, i: usize, mut lane: Lane, which: &dyn Fn(&Step) -> bool) -> Joined {
    while let Some(p) = lane
        .alongside
        .iter()
        .position(|(s, o)| which(s) && !o.is_set())
    {
        let outcome = Arc::clone(&lane.alongside[p].1);
        match outcome.hold(i, lane) {
            Ok(()) => return Joined::Parked,
            Err(back) => lane = back,
        }
    }
    let mut first: Option<anyhow::Error> = None;
    let (now, later): (Vec<_>, Vec<_>) = lane.alongside.drain(..).partition(|(s, _)| which(s));
    lane.alongside.extend(later);
    for (s, outcome) in now {
        if let Err(e) = outcome.take() {
            match first {
                None => first = Some(failed(ctx, i, &s, e)),
                // Only one error is the image's; the others are
                // told as they are.
                Some(_) => ctx.event(i, s.name.as_str(), "failed", &format!("{e:#}")),
            }
        }
    }
    Joined::Done(lane, first.map_or(Ok(()), Err))
}

/// A step's failure, named. When Ceph refused a step that prepares the
/// source (the plan cannot go on), the source is put back and the image's
/// record cleared, so that a run again starts it afresh; any other failure
/// (a wait that gave up, a lost connection, a crash) keeps what is done.
fn failed(ctx: &Ctx<'_>, i: usize, step: &Step, e: anyhow::Error) -> anyhow::Error {
    let refusal = prepares_source(&step.action) && refused(&e);
    let e = e.context(format!(
        "step {} ({}) on {}",
        step.id,
        step.name,
        step.action_image()
    ));
    if !refusal {
        return e;
    }
    match ctx.put_back(i) {
        Ok(did) => {
            if let Err(f) = ctx.update(i, |s| *s = ImageState::default()) {
                return e.context(format!(
                    "the source is put back, but its record is not cleared: {f:#}"
                ));
            }
            if did.is_empty() {
                e
            } else {
                e.context(format!("the source is put back ({})", did.join(", ")))
            }
        }
        Err(p) => e.context(format!("putting the source back failed too: {p:#}")),
    }
}

/// A step's first checks: whether it is done already (`settled`, past, or
/// its effect observed; recorded then); if not, the image's phase becomes
/// the step's. `true`: done already.
fn enter(ctx: &Ctx<'_>, i: usize, step: &Step, settled: bool) -> anyhow::Result<bool> {
    let recorded = ctx.image_state(i).done.contains(&step.id);
    if settled {
        ctx.output.board().step_done(i, step.name, true);
        ctx.event(i, step.name.as_str(), "done", "(already)");
        return Ok(true);
    }
    // A later step has moved on (the copy is verified, the cleanup has
    // begun): this one's effect may be undone on purpose.
    if !step.past_when.is_empty() && ctx.read_through(i, step, || ctx.all_hold(&step.past_when))? {
        ctx.output.board().step_done(i, step.name, true);
        ctx.event(i, step.name.as_str(), "done", "(past)");
        return Ok(true);
    }
    let observed = !step.done_when.is_empty()
        && ctx.read_through(i, step, || ctx.all_hold(&step.done_when))?;
    // Ceph's word over the state file's: a recorded step whose effect is
    // gone runs again; one whose effect is there is done.
    if observed || (recorded && step.done_when.is_empty() && !step.rechecked()) {
        if !recorded {
            ctx.update(i, |s| {
                s.done.insert(step.id.clone());
            })?;
        }
        ctx.output.board().step_done(i, step.name, true);
        ctx.event(i, step.name.as_str(), "done", "(already)");
        return Ok(true);
    }
    ctx.output.board().phase(i, Phase::of_step(step.name));
    Ok(false)
}

/// A step's action (its requirements hold; a data step holds `slot`),
/// the proof that it took effect, and its record.
fn act_and_record(ctx: &Ctx<'_>, i: usize, step: &Step, slot: Option<Slot>) -> anyhow::Result<()> {
    // Test builds only: a step that panics, to prove a panic fails the run.
    #[cfg(debug_assertions)]
    if std::env::var("FERRY_TEST_PANIC_IN_STEP").is_ok_and(|s| s == step.name.as_str()) {
        panic!("FERRY_TEST_PANIC_IN_STEP={}", step.name);
    }
    let detail = {
        let _slot = slot;
        ctx.act(i, step)?
    };
    for c in &step.done_when {
        if !ctx.read_through(i, step, || ctx.holds(c))? {
            bail!("done but {c:?} does not hold");
        }
    }
    ctx.update(i, |s| {
        s.done.insert(step.id.clone());
    })?;
    ctx.output.board().step_done(i, step.name, false);
    ctx.event(i, step.name.as_str(), "done", &detail);
    Ok(())
}
