//! The run's pipeline: images go through their steps on a few worker
//! threads, and an image that must wait (for sync, for an idle source, for
//! a data slot) parks and holds no thread. A few lookers take the parked
//! waits in turn, at the pace all waits share, and put an image whose wait
//! is over back in the workers' queue. So a thousand images in flight cost
//! what their work costs, not a thread each.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::wait::Waiting;
use super::{panic_text, run_image, Ctx, Flow, Lane};

/// How many threads look at parked waits: more than one, so that one slow
/// reading (a cluster timing out) does not hold up every other wait.
const LOOKERS: usize = 2;

/// How often images waiting for a data slot are offered one, at most
/// (slots freed by a worker are handed out at once).
const SLOT_TICK: Duration = Duration::from_millis(50);

/// Where the outcome of a step running alongside an image's lane will be
/// (the step runs in a side lane), and the lane when it waits for it.
#[derive(Default)]
pub struct Outcome {
    inner: Mutex<OutcomeState>,
}

#[derive(Default)]
struct OutcomeState {
    result: Option<anyhow::Result<()>>,
    /// The lane (of image `.0`) held until the outcome is in.
    held: Option<(usize, Lane)>,
}

impl Outcome {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutcomeState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts the outcome in; gives back the lane held until then, to go on.
    fn set(&self, r: anyhow::Result<()>) -> Option<(usize, Lane)> {
        let mut st = self.lock();
        st.result = Some(r);
        st.held.take()
    }

    pub fn is_set(&self) -> bool {
        self.lock().result.is_some()
    }

    /// Takes the outcome (once); it must be in.
    pub fn take(&self) -> anyhow::Result<()> {
        self.lock()
            .result
            .take()
            .unwrap_or_else(|| Err(anyhow::anyhow!("a step alongside has no outcome")))
    }

    /// Holds image `i`'s `lane` until the outcome is in; gives it back if
    /// it is in already.
    pub fn hold(&self, i: usize, lane: Lane) -> Result<(), Lane> {
        let mut st = self.lock();
        if st.result.is_some() {
            return Err(lane);
        }
        st.held = Some((i, lane));
        Ok(())
    }
}

/// What a worker does next for an image: go on from where its lane stands
/// (`None`: begin it), or fail it with the error its wait ended with.
struct Job {
    i: usize,
    lane: Option<Lane>,
    ended: Option<anyhow::Error>,
}

/// An image waiting for a requirement, looked at again at `due`.
struct Parked {
    i: usize,
    lane: Lane,
    waiting: Box<Waiting>,
    due: Instant,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Job>,
    parked: Vec<Parked>,
    /// Images waiting for a data slot, first come first served.
    for_slot: VecDeque<(usize, Lane)>,
    /// The next image of the order to begin.
    next: usize,
    /// Images begun and not finished (running, ready or parked).
    under_way: usize,
    failures: Vec<(usize, anyhow::Error)>,
}

impl Queue {
    fn all_done(&self, n: usize) -> bool {
        self.under_way == 0 && self.next >= n
    }
}

struct Shared<'o> {
    order: &'o [usize],
    in_flight: usize,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Shared<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks image `i`'s lane on `waiting`, looked at again after its
    /// pause; the run's load lines read how many are parked.
    fn park(&self, ctx: &Ctx<'_>, q: &mut Queue, i: usize, lane: Lane, waiting: Box<Waiting>) {
        let due = Instant::now() + waiting.pause(ctx.opts.poll);
        q.parked.push(Parked {
            i,
            lane,
            waiting,
            due,
        });
        ctx.observer.parked.store(q.parked.len(), Ordering::Relaxed);
    }

    /// Hands free data slots to the images waiting for one.
    fn hand_out_slots(&self, ctx: &Ctx<'_>) {
        let mut q = self.lock();
        let mut handed = false;
        while !q.for_slot.is_empty() {
            let Some(slot) = ctx.data_slots.try_take() else {
                break;
            };
            let (i, mut lane) = q.for_slot.pop_front().expect("not empty");
            lane.slot = Some(slot);
            q.ready.push_back(Job {
                i,
                lane: Some(lane),
                ended: None,
            });
            handed = true;
        }
        if handed {
            self.changed.notify_all();
        }
    }
}

/// Runs the images `order` lists, in that order, at most `in_flight` under
/// way at once, on `workers` threads; tells `report` each image's outcome;
/// returns the failures by image index. A panic fails its image (with the
/// panic's message), never the whole run silently: the others go on.
pub(super) fn run<'env>(
    ctx: &'env Ctx<'env>,
    order: &[usize],
    workers: usize,
    in_flight: usize,
    report: &(dyn Fn(usize, &anyhow::Result<()>) + Sync),
) -> Vec<(usize, anyhow::Error)> {
    let shared = Shared {
        order,
        in_flight: in_flight.max(1),
        queue: Mutex::new(Queue::default()),
        changed: Condvar::new(),
    };
    std::thread::scope(|s| {
        // An image's lane may have a step running beside it (the source's
        // digest beside the wait for the mirror): room for both.
        for _ in 0..workers.clamp(1, 2 * order.len().max(1)) {
            s.spawn(|| work(ctx, &shared, report));
        }
        for _ in 0..LOOKERS {
            s.spawn(|| look(ctx, &shared));
        }
    });
    let mut failures = std::mem::take(&mut shared.lock().failures);
    failures.sort_by_key(|(i, _)| *i);
    failures
}

/// A worker: takes ready images (or begins the next one), runs each until
/// it is done or parks.
fn work(ctx: &Ctx<'_>, shared: &Shared<'_>, report: &(dyn Fn(usize, &anyhow::Result<()>) + Sync)) {
    // A step set off to run alongside its image's lane: a job like any.
    let set_off = |i: usize, lane: Lane| {
        shared.lock().ready.push_back(Job {
            i,
            lane: Some(lane),
            ended: None,
        });
        shared.changed.notify_all();
    };
    let n = shared.order.len();
    loop {
        let job = {
            let mut q = shared.lock();
            loop {
                if let Some(job) = q.ready.pop_front() {
                    break Some(job);
                }
                if q.under_way < shared.in_flight && q.next < n {
                    let i = shared.order[q.next];
                    q.next += 1;
                    q.under_way += 1;
                    break Some(Job {
                        i,
                        lane: None,
                        ended: None,
                    });
                }
                if q.all_done(n) {
                    break None;
                }
                q = shared.changed.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some(Job { i, lane, ended }) = job else {
            shared.changed.notify_all();
            return;
        };
        let side = lane.as_ref().and_then(|l| l.side.clone());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_image(ctx, &set_off, i, lane, ended)
        }))
        .unwrap_or_else(|p| Err(anyhow::anyhow!("ferry panicked: {}", panic_text(&*p))));
        let finished = match r {
            Ok(Flow::Parked(lane, Some(waiting))) => {
                shared.park(ctx, &mut shared.lock(), i, lane, waiting);
                None
            }
            Ok(Flow::Parked(lane, None)) => {
                shared.lock().for_slot.push_back((i, lane));
                None
            }
            Ok(Flow::Joining) => None,
            Ok(Flow::Done) => Some(Ok(())),
            Err(e) => Some(Err(e)),
        };
        let finished = match (finished, side) {
            (Some(r), Some(outcome)) => {
                // A side lane's end: the image's lane held for it goes on.
                if let Some((j, lane)) = outcome.set(r) {
                    set_off(j, lane);
                }
                None
            }
            (finished, _) => finished,
        };
        if let Some(r) = finished {
            // A panic while reporting must not end the worker either.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| report(i, &r)));
            let mut q = shared.lock();
            q.under_way -= 1;
            if let Err(e) = r {
                q.failures.push((i, e));
            }
        }
        // This image's slot may be free now.
        shared.hand_out_slots(ctx);
        shared.changed.notify_all();
    }
}

/// A looker: takes the parked wait due first, when it is due, and looks at
/// it (at the shared pace); hands out data slots freed by steps running
/// alongside.
fn look(ctx: &Ctx<'_>, shared: &Shared<'_>) {
    let n = shared.order.len();
    loop {
        let due = {
            let mut q = shared.lock();
            loop {
                if q.all_done(n) {
                    return;
                }
                let now = Instant::now();
                let first = (0..q.parked.len()).min_by_key(|&k| q.parked[k].due);
                if let Some(k) = first.filter(|&k| q.parked[k].due <= now) {
                    let due = q.parked.swap_remove(k);
                    ctx.observer.parked.store(q.parked.len(), Ordering::Relaxed);
                    break due;
                }
                let until = first.map_or(Duration::from_millis(500), |k| q.parked[k].due - now);
                let until = if q.for_slot.is_empty() {
                    until
                } else {
                    until.min(SLOT_TICK)
                };
                q = shared
                    .changed
                    .wait_timeout(q, until)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                if !q.for_slot.is_empty() {
                    drop(q);
                    shared.hand_out_slots(ctx);
                    q = shared.lock();
                }
            }
        };
        let Parked {
            i,
            mut lane,
            mut waiting,
            ..
        } = due;
        // However many images wait, their checks together keep one pace.
        ctx.observer.pace.turn();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waiting.look(ctx)))
            .unwrap_or_else(|p| Err(anyhow::anyhow!("ferry panicked: {}", panic_text(&*p))));
        let mut q = shared.lock();
        match r {
            Ok(false) => {
                shared.park(ctx, &mut q, i, lane, waiting);
            }
            Ok(true) => {
                lane.held += 1;
                q.ready.push_back(Job {
                    i,
                    lane: Some(lane),
                    ended: None,
                });
            }
            Err(e) => q.ready.push_back(Job {
                i,
                lane: Some(lane),
                ended: Some(e),
            }),
        }
        drop(q);
        shared.changed.notify_all();
    }
}
