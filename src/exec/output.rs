//! What a run shows: its events (text lines or JSON), the live board on a
//! terminal, the batch line, and each step's progress. [`Output`] owns the
//! board and the writing of lines, so that lines never cut into each other
//! or into the live board.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::MutexGuard;

use super::*;

/// The one owner of what a run shows.
pub(super) struct Output {
    plan: Arc<Plan>,
    /// Line events as JSON on stdout instead of text on stderr.
    json: bool,
    /// Whether stderr is a terminal showing the live board (text output only).
    live: bool,
    started: Instant,
    board: Mutex<Board>,
    /// Lines of the live board currently drawn below the event lines; held
    /// while a line is written.
    drawn: Mutex<usize>,
}

impl Output {
    /// What a run of `plan` shows, from now.
    pub(super) fn new(plan: Arc<Plan>, json: bool) -> Output {
        let board = Board::new(
            plan.images
                .iter()
                .map(|p| (p.image.source_spec(), p.facts.size())),
        );
        Output {
            plan,
            json,
            live: !json && std::io::stderr().is_terminal(),
            started: Instant::now(),
            board: Mutex::new(board),
            drawn: Mutex::new(0),
        }
    }

    /// The board. A panic while it was held left at worst a row's figures
    /// stale: the run goes on with it.
    pub(super) fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lines of the board drawn, held while a line is written.
    fn drawn(&self) -> MutexGuard<'_, usize> {
        self.drawn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Time since the run began.
    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// An event of image `image`'s step `step`: a JSON line on stdout, or
    /// a text line on stderr (on a terminal, progress is the board's).
    pub(super) fn event(&self, image: usize, step: &str, status: &str, detail: &str) {
        let name = self.plan.images[image].image.source_spec();
        if self.json {
            let line = serde_json::json!({"image": name, "step": step, "status": status, "detail": detail});
            let _g = self.drawn();
            println!("{line}");
        } else if !(self.live && status == "progress") {
            // On a terminal the board shows progress; other events scroll above it.
            self.print_above_board(&format!("{name:<32} {step:<24} {status:<8} {detail}"));
        }
    }

    /// Prints a line; on a terminal, above the live board, which is redrawn.
    fn print_above_board(&self, line: &str) {
        let mut drawn = self.drawn();
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
        let lines = {
            let mut board = self.board();
            let batch = board.sample(self.elapsed());
            board.lines(&batch, terminal_width())
        };
        for l in &lines {
            let _ = writeln!(e, "{l}");
        }
        let _ = e.flush();
        lines.len()
    }

    /// Until `finished` is raised (then at once): redraws the live board,
    /// or reports the batch as a line every [`BATCH_EVERY`].
    /// At `-v`, a line of the load of the last [`LOAD_EVERY`] as well,
    /// with how many images wait (`parked`).
    pub(super) fn tick(&self, finished: &Flag, parked: &AtomicUsize) {
        let mut last_line = Instant::now();
        let mut lately = Load::now();
        while !finished.wait(REDRAW) {
            if lately.at.elapsed() >= LOAD_EVERY {
                let now = Load::now();
                tracing::info!(
                    "load lately: {}; {} images waiting",
                    now.since(&lately),
                    parked.load(Ordering::Relaxed)
                );
                lately = now;
            }
            if self.live {
                let mut drawn = self.drawn();
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
        let batch = self.board().sample(self.elapsed());
        let _g = self.drawn();
        if self.json {
            println!("{}", serde_json::json!({ "batch": batch }));
        } else {
            eprintln!("ferry: {batch}");
        }
    }

    /// Replaces the live board with the final batch line.
    pub(super) fn finish(&self) {
        if self.live {
            let mut drawn = self.drawn();
            let mut e = std::io::stderr().lock();
            erase(&mut e, *drawn);
            *drawn = 0;
            let b = self.board().sample(self.elapsed());
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
                clock(self.elapsed().as_secs())
            );
        } else {
            self.batch_line();
        }
    }
}

impl Ctx<'_> {
    /// An event of image `image`'s step (see [`Output::event`]).
    pub(crate) fn event(&self, image: usize, step: &str, status: &str, detail: &str) {
        self.output.event(image, step, status, detail);
    }

    /// The engine's progress callback for a step: the board's bytes, and a
    /// progress event every 2 s.
    pub(crate) fn progress<'s>(
        &'s self,
        i: usize,
        step: &'s Step,
        phase: Phase,
    ) -> impl FnMut(u64, u64) -> bool + 's {
        let mut meter = Meter::default();
        let mut last = Instant::now();
        move |done, total| {
            let p = meter.sample(done, total, self.output.elapsed());
            self.output.board().bytes(i, phase, done, &p.bytes_text());
            if last.elapsed() >= Duration::from_secs(2) {
                last = Instant::now();
                self.event(i, step.name.as_str(), "progress", &p.to_string());
            }
            true
        }
    }
}

/// How often the live board is redrawn, and how often the batch is reported
/// as a line (JSON, or text to a file or pipe).
const REDRAW: Duration = Duration::from_millis(500);

const BATCH_EVERY: Duration = Duration::from_secs(10);

/// How often the load of the time just past is logged (at `-v`): with many
/// images waiting, it shows what the waits cost the clusters and clouds,
/// apart from the checks every image has once at the start.
const LOAD_EVERY: Duration = Duration::from_secs(10);

/// The process's calls to the clusters and clouds so far, and when read.
pub(super) struct Load {
    at: Instant,
    calls: u64,
    opens: u64,
    requests: u64,
}

impl Load {
    pub(super) fn now() -> Load {
        Load {
            at: Instant::now(),
            calls: crate::ceph::calls_sent(),
            opens: crate::ceph::image_opens(),
            requests: crate::openstack::requests_sent(),
        }
    }

    /// The calls between `earlier` and this reading, and their rates.
    pub(super) fn since(&self, earlier: &Load) -> String {
        let secs = (self.at - earlier.at).as_secs_f64().max(0.001);
        let (calls, opens, requests) = (
            self.calls - earlier.calls,
            self.opens - earlier.opens,
            self.requests - earlier.requests,
        );
        format!(
            "{calls} Ceph calls ({:.1}/s; {opens} of them image opens, {:.1}/s), {requests} OpenStack requests ({:.1}/s) in {secs:.1} s",
            calls as f64 / secs,
            opens as f64 / secs,
            requests as f64 / secs
        )
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
    crate::sys::terminal::stderr_columns().unwrap_or(80)
}
