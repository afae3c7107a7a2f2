//! Progress maths for waits: percent, rate and ETA from successive samples
//! of bytes done. Pure.

use std::time::Duration;

/// One progress reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// Bytes per second over the last interval, once two samples exist.
    pub rate: Option<f64>,
    /// Time left at that rate.
    pub eta: Option<Duration>,
}

impl Progress {
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            self.done.min(self.total) as f64 * 100.0 / self.total as f64
        }
    }
}

impl Progress {
    /// Bytes, rate and ETA without the percent: `20.0 MiB of 100.0 MiB, 10.0 MiB/s, ETA 8 s`.
    pub fn bytes_text(&self) -> String {
        use crate::units::human_bytes;
        let mut s = format!(
            "{} of {}",
            human_bytes(self.done.min(self.total)),
            human_bytes(self.total)
        );
        if let Some(r) = self.rate {
            s += &format!(", {}/s", human_bytes(r as u64));
        }
        if let Some(e) = self.eta {
            s += &format!(", ETA {} s", e.as_secs());
        }
        s
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.bytes_text();
        match text.split_once(", ") {
            Some((bytes, rest)) => write!(f, "{:.0}% ({bytes}), {rest}", self.percent()),
            None => write!(f, "{:.0}% ({text})", self.percent()),
        }
    }
}

/// Remembers the previous sample to derive a rate.
#[derive(Debug, Default)]
pub struct Meter {
    last: Option<(u64, Duration)>,
}

impl Meter {
    /// Records `done` of `total` bytes at time `at` (any monotonic origin).
    pub fn sample(&mut self, done: u64, total: u64, at: Duration) -> Progress {
        let rate = self.last.and_then(|(d0, t0)| {
            let dt = at.checked_sub(t0)?.as_secs_f64();
            (dt > 0.0 && done >= d0).then(|| (done - d0) as f64 / dt)
        });
        self.last = Some((done, at));
        let eta = rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(total.saturating_sub(done) as f64 / r));
        Progress {
            done,
            total,
            rate,
            eta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_come_from_the_last_interval() {
        let mut m = Meter::default();
        let p = m.sample(0, 100 << 20, Duration::from_secs(10));
        assert_eq!((p.rate, p.eta), (None, None));
        let p = m.sample(20 << 20, 100 << 20, Duration::from_secs(12));
        assert_eq!(p.rate, Some((10 << 20) as f64));
        assert_eq!(p.eta, Some(Duration::from_secs(8)));
        assert_eq!(
            p.to_string(),
            "20% (20.0 MiB of 100.0 MiB), 10.0 MiB/s, ETA 8 s"
        );
    }

    #[test]
    fn no_motion_gives_no_eta_and_overshoot_caps_at_100() {
        let mut m = Meter::default();
        m.sample(5, 10, Duration::from_secs(1));
        let p = m.sample(5, 10, Duration::from_secs(2));
        assert_eq!(p.rate, Some(0.0));
        assert_eq!(p.eta, None);
        let p = m.sample(12, 10, Duration::from_secs(3));
        assert_eq!(p.percent(), 100.0);
    }
}
