//! The batch board: where every image of a run stands, in bytes per phase,
//! and the batch's percent, rate and ETA derived from it. Pure: the
//! executor feeds it and prints what it renders.
//!
//! Each image weighs three times its size: mirrored, copied, verified. The
//! phases run at different speeds and mirror progress arrives in jumps, so
//! the rate is the average over the run so far (work found already done on
//! a resumed run left out), and the ETA is good for "minutes or hours", not
//! to the second.

use std::time::Duration;

use serde::Serialize;

use crate::plan::StepName;
use crate::units::human_bytes;

/// What an image is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Pending,
    Preparing,
    Mirroring,
    /// Warm rounds while the image is in use.
    Warm,
    Copying,
    Verifying,
    CleaningUp,
    Done,
    Failed,
}

impl Phase {
    /// The phase a plan step belongs to.
    pub fn of_step(name: StepName) -> Phase {
        match name {
            StepName::WaitForSync => Phase::Mirroring,
            StepName::WarmRounds | StepName::WarmCopy => Phase::Warm,
            StepName::Copy
            | StepName::CopySnapshots
            | StepName::SnapshotAndProtect
            | StepName::Stream => Phase::Copying,
            StepName::Verify => Phase::Verifying,
            StepName::DisableMirroring | StepName::RestoreFeatures | StepName::ForgetOriginal => {
                Phase::CleaningUp
            }
            _ => Phase::Preparing,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Preparing => "preparing",
            Phase::Mirroring => "mirroring",
            Phase::Warm => "warm",
            Phase::Copying => "copying",
            Phase::Verifying => "verifying",
            Phase::CleaningUp => "cleaning up",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    size: u64,
    phase: Phase,
    mirrored: u64,
    copied: u64,
    verified: u64,
    note: String,
}

impl Row {
    fn done_bytes(&self) -> u64 {
        self.mirrored.min(self.size) + self.copied.min(self.size) + self.verified.min(self.size)
    }
}

/// The batch as a whole at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchProgress {
    pub images: usize,
    pub done: usize,
    pub failed: usize,
    /// Bytes of work done: mirrored + copied + verified, over all images.
    pub bytes_done: u64,
    /// Three times the sum of image sizes.
    pub bytes_total: u64,
    /// Bytes of work per second, averaged over the run so far.
    pub rate: Option<f64>,
    pub eta_seconds: Option<u64>,
}

impl BatchProgress {
    pub fn percent(&self) -> f64 {
        if self.bytes_total == 0 {
            100.0
        } else {
            self.bytes_done as f64 * 100.0 / self.bytes_total as f64
        }
    }
}

impl std::fmt::Display for BatchProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} image(s) done",
            self.done + self.failed,
            self.images
        )?;
        if self.failed > 0 {
            write!(f, " ({} failed)", self.failed)?;
        }
        write!(f, ", {:.0}%", self.percent())?;
        if let Some(r) = self.rate.filter(|r| *r > 0.0) {
            write!(f, ", {}/s", human_bytes(r as u64))?;
        }
        if let Some(s) = self.eta_seconds {
            write!(f, ", ETA {}", clock(s))?;
        }
        Ok(())
    }
}

/// `75 s`, `12 min 5 s`, `2 h 3 min`.
pub fn clock(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// Every image's standing, fed by the executor.
#[derive(Debug)]
pub struct Board {
    rows: Vec<Row>,
    /// The first sample: (time, bytes moved by then).
    first: Option<(Duration, u64)>,
    /// Bytes of work found already done (a resumed run): part of the
    /// percent, not of the rate.
    found_done: u64,
}

impl Board {
    /// A board for images given as (name, size).
    pub fn new(images: impl IntoIterator<Item = (String, u64)>) -> Board {
        Board {
            rows: images
                .into_iter()
                .map(|(name, size)| Row {
                    name,
                    size,
                    phase: Phase::Pending,
                    mirrored: 0,
                    copied: 0,
                    verified: 0,
                    note: String::new(),
                })
                .collect(),
            first: None,
            found_done: 0,
        }
    }

    /// Image `i` entered `phase`; finishing a phase counts its bytes whole.
    pub fn phase(&mut self, i: usize, phase: Phase) {
        let r = &mut self.rows[i];
        if phase != r.phase {
            r.note.clear();
        }
        r.phase = phase;
        let size = r.size;
        let at_least = |v: &mut u64, from: Phase| {
            if phase_rank(phase) > phase_rank(from) && phase != Phase::Failed {
                *v = size;
            }
        };
        at_least(&mut r.mirrored, Phase::Mirroring);
        at_least(&mut r.copied, Phase::Copying);
        at_least(&mut r.verified, Phase::Verifying);
    }

    /// A finished step: its phase's bytes are all done. `already`: it was
    /// found done, so its bytes did not move in this run.
    pub fn step_done(&mut self, i: usize, step: StepName, already: bool) {
        let r = &mut self.rows[i];
        let before = r.done_bytes();
        match Phase::of_step(step) {
            Phase::Mirroring => r.mirrored = r.size,
            Phase::Copying => r.copied = r.size,
            Phase::Verifying => r.verified = r.size,
            _ => {}
        }
        if already {
            self.found_done += r.done_bytes() - before;
        }
    }

    /// Bytes done in the current phase of image `i`, with a short note.
    pub fn bytes(&mut self, i: usize, phase: Phase, done: u64, note: &str) {
        let r = &mut self.rows[i];
        let v = match phase {
            Phase::Mirroring => &mut r.mirrored,
            Phase::Copying => &mut r.copied,
            Phase::Verifying => &mut r.verified,
            _ => return,
        };
        *v = done.min(r.size);
        r.note = note.to_string();
    }

    /// A note for image `i` without a byte count (e.g. "3 entries behind").
    pub fn note(&mut self, i: usize, note: &str) {
        self.rows[i].note = note.to_string();
    }

    /// Samples the batch at time `at` (any monotonic origin).
    pub fn sample(&mut self, at: Duration) -> BatchProgress {
        let bytes_done: u64 = self.rows.iter().map(Row::done_bytes).sum();
        let bytes_total: u64 = self.rows.iter().map(|r| 3 * r.size).sum();
        let moved = bytes_done.saturating_sub(self.found_done);
        let (t0, m0) = *self.first.get_or_insert((at, moved));
        let secs = at.saturating_sub(t0).as_secs_f64();
        let rate = (secs > 0.0).then(|| moved.saturating_sub(m0) as f64 / secs);
        let active = self
            .rows
            .iter()
            .any(|r| !matches!(r.phase, Phase::Done | Phase::Failed));
        let eta_seconds = rate
            .filter(|r| *r > 0.0 && active)
            .map(|r| (bytes_total.saturating_sub(bytes_done) as f64 / r).ceil() as u64);
        BatchProgress {
            images: self.rows.len(),
            done: self.rows.iter().filter(|r| r.phase == Phase::Done).count(),
            failed: self
                .rows
                .iter()
                .filter(|r| r.phase == Phase::Failed)
                .count(),
            bytes_done,
            bytes_total,
            rate,
            eta_seconds,
        }
    }

    /// The live display: one line per image at work, then the batch line,
    /// each cut to `width` characters.
    pub fn lines(&self, batch: &BatchProgress, width: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !matches!(r.phase, Phase::Pending | Phase::Done | Phase::Failed))
            .map(|r| {
                let pct = match r.phase {
                    Phase::Mirroring => Some(r.mirrored),
                    Phase::Copying => Some(r.copied),
                    Phase::Verifying => Some(r.verified),
                    _ => None,
                }
                .map(|d| format!(" {:>3}%", (d * 100).checked_div(r.size).unwrap_or(100)))
                .unwrap_or_default();
                let note = if r.note.is_empty() {
                    String::new()
                } else {
                    format!("  {}", r.note)
                };
                format!("  {:<32} {:<11}{pct}{note}", r.name, r.phase.label())
            })
            .collect();
        out.push(format!("ferry: {batch}"));
        out.into_iter().map(|l| cut(&l, width)).collect()
    }
}

fn phase_rank(p: Phase) -> u8 {
    match p {
        Phase::Pending => 0,
        Phase::Preparing => 1,
        Phase::Mirroring => 2,
        Phase::Warm => 2,
        Phase::Copying => 3,
        Phase::Verifying => 4,
        Phase::CleaningUp => 5,
        Phase::Done => 6,
        Phase::Failed => 7,
    }
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        s.chars()
            .take(width.saturating_sub(1))
            .chain(['…'])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn board() -> Board {
        Board::new([
            ("volumes/volume-a".to_string(), 100 * MIB),
            ("images/g".to_string(), 50 * MIB),
        ])
    }

    #[test]
    fn percent_weighs_mirror_copy_and_verify_by_size() {
        let mut b = board();
        let p = b.sample(Duration::from_secs(0));
        assert_eq!((p.bytes_done, p.bytes_total, p.done), (0, 450 * MIB, 0));
        b.phase(0, Phase::Mirroring);
        b.bytes(0, Phase::Mirroring, 50 * MIB, "");
        assert_eq!(b.sample(Duration::from_secs(1)).bytes_done, 50 * MIB);
        // Entering copy means the mirror is whole.
        b.phase(0, Phase::Copying);
        b.bytes(0, Phase::Copying, 25 * MIB, "");
        assert_eq!(b.sample(Duration::from_secs(2)).bytes_done, 125 * MIB);
        b.phase(0, Phase::Done);
        b.phase(1, Phase::Done);
        let p = b.sample(Duration::from_secs(3));
        assert_eq!((p.bytes_done, p.done, p.percent()), (450 * MIB, 2, 100.0));
        assert_eq!(p.eta_seconds, None, "nothing left, no ETA");
    }

    #[test]
    fn rate_is_the_average_since_the_first_sample_and_gives_an_eta() {
        let mut b = Board::new([("a".to_string(), 100 * MIB)]);
        b.phase(0, Phase::Mirroring);
        assert_eq!(b.sample(Duration::from_secs(5)).rate, None);
        b.bytes(0, Phase::Mirroring, 10 * MIB, "");
        let p = b.sample(Duration::from_secs(6));
        assert_eq!(p.rate, Some((10 * MIB) as f64));
        assert_eq!(p.eta_seconds, Some(29)); // 290 MiB of work left at 10 MiB/s
        b.bytes(0, Phase::Mirroring, 40 * MIB, "");
        let p = b.sample(Duration::from_secs(9));
        // 40 MiB in 4 s, not the 30 MiB in the last 3 s
        assert_eq!(p.rate, Some((10 * MIB) as f64));
        assert_eq!(p.eta_seconds, Some(26));
    }

    #[test]
    fn work_found_done_counts_in_the_percent_but_not_the_rate() {
        let mut b = Board::new([("a".to_string(), 100 * MIB)]);
        b.step_done(0, StepName::WaitForSync, true);
        b.step_done(0, StepName::Copy, true);
        b.sample(Duration::from_secs(0));
        b.phase(0, Phase::Verifying);
        b.bytes(0, Phase::Verifying, 10 * MIB, "");
        let p = b.sample(Duration::from_secs(1));
        assert_eq!(p.bytes_done, 210 * MIB);
        assert_eq!(p.rate, Some((10 * MIB) as f64));
        assert_eq!(p.eta_seconds, Some(9));
    }

    #[test]
    fn a_failed_image_counts_as_finished_but_keeps_its_bytes() {
        let mut b = board();
        b.phase(1, Phase::Mirroring);
        b.bytes(1, Phase::Mirroring, 10 * MIB, "");
        b.phase(1, Phase::Failed);
        let p = b.sample(Duration::from_secs(0));
        assert_eq!((p.failed, p.bytes_done), (1, 10 * MIB));
        assert_eq!(p.to_string(), "1 of 2 image(s) done (1 failed), 2%");
    }

    #[test]
    fn lines_show_images_at_work_and_the_batch() {
        let mut b = board();
        b.phase(0, Phase::Copying);
        b.bytes(0, Phase::Copying, 30 * MIB, "30.0 MiB of 100.0 MiB");
        b.sample(Duration::from_secs(0));
        let p = b.sample(Duration::from_secs(0));
        let lines = b.lines(&p, 200);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[0],
            "  volumes/volume-a                 copying      30%  30.0 MiB of 100.0 MiB"
        );
        assert_eq!(lines[1], "ferry: 0 of 2 image(s) done, 29%");
        let narrow = b.lines(&p, 20);
        assert_eq!(narrow[0].chars().count(), 20);
        assert!(narrow[0].ends_with('…'));
    }

    #[test]
    fn clock_reads_like_a_person_would_say_it() {
        assert_eq!(clock(42), "42 s");
        assert_eq!(clock(725), "12 min 5 s");
        assert_eq!(clock(7385), "2 h 3 min");
    }
}
