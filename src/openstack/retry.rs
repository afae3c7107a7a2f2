//! Retries of OpenStack calls: which failures are worth another attempt,
//! how long to pause (jittered exponential backoff, `Retry-After`), and the
//! loop that gives up at a deadline. A migration runs for days through load
//! balancers that answer 502 now and then, and services that restart: one
//! such answer must not fail an image that waited an hour for its copy.
//!
//! The loop takes its clock as an argument, so the schedule is tested
//! without waiting and without a server.

use std::time::{Duration, Instant};

use reqwest::Method;

use super::session::ApiError;

/// How OpenStack calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The pause after the first failed attempt; each next one doubles.
    pub first: Duration,
    /// The longest pause.
    pub cap: Duration,
    /// No attempt starts later than this after the first one began.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_millis(500),
            cap: Duration::from_secs(15),
            deadline: Duration::from_secs(DEFAULT_DEADLINE_SECONDS),
        }
    }
}

/// The default total time a call is retried: long enough for a service or
/// Keystone to restart, short enough that a cloud that is really down is
/// reported within minutes.
pub const DEFAULT_DEADLINE_SECONDS: u64 = 120;

impl RetryPolicy {
    /// The policy with another deadline; a zero deadline never retries.
    pub fn with_deadline(self, deadline: Duration) -> Self {
        RetryPolicy { deadline, ..self }
    }

    /// The pause after `failures` failed attempts (1 or more), before
    /// jitter: `first` doubled for each failure after the first, at most
    /// `cap`. Pure.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first
            .checked_mul(1 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// [`backoff`](Self::backoff) with "equal jitter": half of it, plus up
    /// to the other half by `jitter` (0 ≤ jitter < 1), so that many clients
    /// failed by one outage do not come back at the same instant, while no
    /// pause is shorter than half the schedule's. Pure.
    pub fn pause(&self, failures: u32, jitter: f64) -> Duration {
        let b = self.backoff(failures);
        b / 2 + (b / 2).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Whether a call may be sent again after an attempt that may have reached
/// the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// As its method says ([`idempotent`]): GET, HEAD, PUT, DELETE and
    /// OPTIONS are sent again, POST and PATCH are not.
    ByMethod,
    /// The caller knows that sending it twice does what sending it once
    /// does (a POST action that sets a flag, a token request).
    Safe,
}

impl Repeat {
    /// Whether a call of `method` with this marking may be sent again.
    pub fn allows(self, method: &Method) -> bool {
        self == Repeat::Safe || idempotent(method)
    }
}

/// Whether HTTP says a request of `method` may be repeated (RFC 9110 9.2.2).
pub fn idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(method)
}

/// What one failed attempt allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Another attempt would fail the same way (4xx, a bad body).
    Never,
    /// The request may have been acted on (a timeout, a 5xx): again only if
    /// it may be repeated.
    IfRepeatable,
    /// The service did not act on it (no connection; 429): always again.
    Always,
}

/// What an answer's status allows. Pure.
pub fn status_retry(status: u16) -> Retry {
    match status {
        // Too Many Requests: refused before being acted on.
        429 => Retry::Always,
        // A proxy with no backend (502, 503, 504) or a service failing
        // midway (500): whether it acted is unknown.
        500 | 502 | 503 | 504 => Retry::IfRepeatable,
        _ => Retry::Never,
    }
}

/// What a failure to get an answer allows.
pub fn transport_retry(e: &reqwest::Error) -> Retry {
    if e.is_builder() || e.is_redirect() {
        Retry::Never
    } else if e.is_connect() {
        // Nothing was sent.
        Retry::Always
    } else {
        // Timed out, reset midway, or the body broke off: it may have been
        // acted on.
        Retry::IfRepeatable
    }
}

/// The pause a `Retry-After` header asks for: delay-seconds or an HTTP date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), from `now` (Unix seconds). A date in
/// the past asks for no pause. Pure.
pub fn parse_retry_after(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate: day-name, DD Mon YYYY HH:MM:SS GMT
    let (_, rest) = value.split_once(", ")?;
    let mut parts = rest.split_whitespace();
    let (day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if zone != "GMT" || parts.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|m| *m == month)? + 1;
    let day: u32 = day.parse().ok()?;
    let year: u32 = year.parse().ok()?;
    let at = super::session::parse_utc(&format!("{year:04}-{m:02}-{day:02}T{time}Z"))?;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

/// One failed attempt, with what it allows.
#[derive(Debug)]
pub struct Failure {
    pub error: ApiError,
    pub retry: Retry,
    /// What the service asked for in `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure that ends the call at once.
    pub fn fatal(error: ApiError) -> Failure {
        Failure {
            error,
            retry: Retry::Never,
            retry_after: None,
        }
    }
}

/// Time as the retry loop sees it; tests pass a clock that does not wait.
pub trait Clock {
    /// Time since the first attempt began.
    fn elapsed(&self) -> Duration;
    fn sleep(&mut self, d: Duration);
    /// A number in [0, 1) for the jitter.
    fn jitter(&mut self) -> f64;
}

/// The real clock, started when made.
pub struct WallClock {
    start: Instant,
    draws: u64,
}

impl WallClock {
    pub fn start() -> WallClock {
        WallClock {
            start: Instant::now(),
            draws: 0,
        }
    }
}

impl Clock for WallClock {
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }

    fn jitter(&mut self) -> f64 {
        // std's randomly keyed hasher: enough to spread clients apart,
        // without a random-number crate for it.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        self.draws += 1;
        h.write_u64(self.draws);
        (h.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Makes `attempt` (given the attempt number, from 1) until it succeeds,
/// its failure allows no other attempt, or the next attempt would start
/// after the policy's deadline. `repeatable`: the call may be sent again
/// after an attempt that may have reached the service. The error returned
/// after more than one attempt says how many, over how long.
pub fn retrying<T>(
    policy: &RetryPolicy,
    repeatable: bool,
    clock: &mut dyn Clock,
    mut attempt: impl FnMut(u32) -> Result<T, Failure>,
) -> Result<T, ApiError> {
    let mut n = 0;
    loop {
        n += 1;
        let f = match attempt(n) {
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        let again = match f.retry {
            Retry::Never => false,
            Retry::IfRepeatable => repeatable,
            Retry::Always => true,
        };
        let pause = policy
            .pause(n, clock.jitter())
            .max(f.retry_after.unwrap_or_default());
        if !again || clock.elapsed() + pause > policy.deadline {
            return Err(if n > 1 {
                f.error.after(n, clock.elapsed())
            } else {
                f.error
            });
        }
        // The first retries of a passing hiccup are routine; from the third
        // on, something is wrong that an operator may want to know about.
        // The error names the call, its status and request id: no token.
        let status = f.error.status();
        let request = f.error.request_id().unwrap_or("-");
        let pause_ms = pause.as_millis() as u64;
        let error = chain(&f.error);
        if n >= 3 {
            tracing::warn!(
                attempt = n,
                ?status,
                request,
                pause_ms,
                error,
                "OpenStack call failed; retrying"
            );
        } else {
            tracing::debug!(
                attempt = n,
                ?status,
                request,
                pause_ms,
                error,
                "OpenStack call failed; retrying"
            );
        }
        clock.sleep(pause);
    }
}

/// An error and its causes on one line (a refused connection is a cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openstack::session::{ApiErrorKind, Tries};

    /// A clock that only pretends to sleep, and records the pauses.
    struct FakeClock {
        now: Duration,
        pauses: Vec<Duration>,
        jitter: f64,
    }

    impl FakeClock {
        fn new(jitter: f64) -> FakeClock {
            FakeClock {
                now: Duration::ZERO,
                pauses: Vec::new(),
                jitter,
            }
        }
    }

    impl Clock for FakeClock {
        fn elapsed(&self) -> Duration {
            self.now
        }
        fn sleep(&mut self, d: Duration) {
            self.now += d;
            self.pauses.push(d);
        }
        fn jitter(&mut self) -> f64 {
            self.jitter
        }
    }

    fn status(code: u16) -> Failure {
        Failure {
            error: ApiErrorKind::Status {
                cloud: "site-b".into(),
                method: "GET".into(),
                what: "/volumes/detail".into(),
                status: code,
                message: "Service Unavailable".into(),
                request_id: Some(format!("req-{code}")),
                tries: Tries::default(),
            }
            .into(),
            retry: status_retry(code),
            retry_after: None,
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn backoff_doubles_from_half_a_second_to_fifteen() {
        let p = RetryPolicy::default();
        let schedule: Vec<f64> = (1..=8).map(|n| p.backoff(n).as_secs_f64()).collect();
        assert_eq!(schedule, [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]);
        // No overflow, however many failures.
        assert_eq!(p.backoff(u32::MAX), secs(15.0));
        // Jitter spreads each pause over its upper half.
        assert_eq!(p.pause(3, 0.0), secs(1.0));
        assert_eq!(p.pause(3, 0.5), secs(1.5));
        assert!(p.pause(3, 0.999) < secs(2.0));
        assert_eq!(p.pause(3, 7.0), secs(2.0), "out-of-range jitter is clamped");
    }

    #[test]
    fn which_statuses_and_methods_are_retried() {
        assert_eq!(status_retry(429), Retry::Always);
        for s in [500, 502, 503, 504] {
            assert_eq!(status_retry(s), Retry::IfRepeatable, "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 501, 505] {
            assert_eq!(status_retry(s), Retry::Never, "{s}");
        }
        for m in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            assert!(Repeat::ByMethod.allows(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH] {
            assert!(!Repeat::ByMethod.allows(&m), "{m}");
            assert!(Repeat::Safe.allows(&m), "{m}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        // 1994-11-06T08:49:37Z
        let then = 784_111_777;
        assert_eq!(parse_retry_after("7", then), Some(secs(7.0)));
        assert_eq!(parse_retry_after(" 120 ", then), Some(secs(120.0)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", then - 30),
            Some(secs(30.0))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", then + 5),
            Some(Duration::ZERO),
            "a date past asks for no pause"
        );
        for bad in [
            "",
            "-3",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, then), None, "{bad:?}");
        }
    }

    #[test]
    fn a_get_answered_503_twice_succeeds_on_the_third_attempt() {
        let mut clock = FakeClock::new(0.0);
        let mut calls = 0;
        let r = retrying(&RetryPolicy::default(), true, &mut clock, |n| {
            calls += 1;
            assert_eq!(n, calls);
            if n < 3 {
                Err(status(503))
            } else {
                Ok("volumes")
            }
        });
        assert_eq!(r.unwrap(), "volumes");
        assert_eq!(calls, 3);
        assert_eq!(clock.pauses, [secs(0.25), secs(0.5)]);
    }

    #[test]
    fn a_post_is_not_sent_again_after_a_5xx_but_is_after_a_429() {
        let mut clock = FakeClock::new(0.0);
        let mut calls = 0;
        let e = retrying(&RetryPolicy::default(), false, &mut clock, |_| {
            calls += 1;
            Err::<(), _>(status(502))
        })
        .unwrap_err();
        assert_eq!(calls, 1, "the manage may have been acted on");
        assert_eq!(e.tries(), None);
        assert!(!e.to_string().contains("gave up"), "{e}");

        let mut calls = 0;
        let r = retrying(&RetryPolicy::default(), false, &mut clock, |n| {
            calls += 1;
            if n == 1 {
                Err(status(429))
            } else {
                Ok(())
            }
        });
        assert!(r.is_ok());
        assert_eq!(calls, 2, "a 429 was not acted on");
    }

    #[test]
    fn a_client_error_is_not_retried() {
        let mut clock = FakeClock::new(0.5);
        let mut calls = 0;
        let e = retrying(&RetryPolicy::default(), true, &mut clock, |_| {
            calls += 1;
            Err::<(), _>(status(404))
        })
        .unwrap_err();
        assert_eq!((calls, e.status()), (1, Some(404)));
        assert!(clock.pauses.is_empty());
    }

    #[test]
    fn retries_stop_at_the_deadline_and_say_how_many_over_how_long() {
        let mut clock = FakeClock::new(0.0);
        let policy = RetryPolicy::default();
        let e = retrying(&policy, true, &mut clock, |_| Err::<(), _>(status(503))).unwrap_err();
        // Half pauses (jitter 0): 0.25 0.5 1 2 4 7.5 7.5 ... within 120 s.
        let slept: Duration = clock.pauses.iter().sum();
        assert!(slept <= policy.deadline, "{slept:?}");
        assert!(slept + secs(7.5) > policy.deadline, "{slept:?}");
        let tries = e.tries().expect("tried more than once");
        assert_eq!(tries.attempts as usize, clock.pauses.len() + 1);
        assert_eq!(tries.over, slept);
        assert_eq!(e.request_id(), Some("req-503"));
        assert_eq!(
            e.to_string(),
            format!(
                "site-b: GET /volumes/detail: HTTP 503: Service Unavailable (request req-503); gave up after {} attempts over {:.1} s",
                tries.attempts,
                slept.as_secs_f64()
            )
        );
    }

    #[test]
    fn retry_after_is_honoured_and_one_past_the_deadline_gives_up_at_once() {
        let mut clock = FakeClock::new(0.0);
        let r = retrying(&RetryPolicy::default(), true, &mut clock, |n| {
            if n == 1 {
                Err(Failure {
                    retry_after: Some(secs(10.0)),
                    ..status(503)
                })
            } else {
                Ok(())
            }
        });
        assert!(r.is_ok());
        assert_eq!(clock.pauses, [secs(10.0)]);

        let mut clock = FakeClock::new(0.0);
        let mut calls = 0;
        let e = retrying(&RetryPolicy::default(), true, &mut clock, |_| {
            calls += 1;
            Err::<(), _>(Failure {
                retry_after: Some(secs(3600.0)),
                ..status(429)
            })
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(clock.pauses.is_empty());
        assert_eq!(e.status(), Some(429));
    }

    #[test]
    fn a_zero_deadline_never_retries() {
        let mut clock = FakeClock::new(0.0);
        let mut calls = 0;
        let policy = RetryPolicy::default().with_deadline(Duration::ZERO);
        let _ = retrying(&policy, true, &mut clock, |_| {
            calls += 1;
            Err::<(), _>(status(503))
        });
        assert_eq!(calls, 1);
    }

    #[test]
    fn wall_clock_jitter_stays_in_range_and_varies() {
        let mut c = WallClock::start();
        let draws: Vec<f64> = (0..64).map(|_| c.jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)), "{draws:?}");
        let mut distinct = draws.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert!(distinct.len() > 60, "{draws:?}");
    }
}
