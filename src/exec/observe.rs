//! Shared observation for waits: what a thousand waiting images read of
//! their clusters costs what ten cost.
//!
//! - Readings of a whole cluster (health, rbd-mirror daemons), pool
//!   (peers, every image's mirroring status in one listing) or Cinder
//!   backend (its manageable list) are taken by one waiter at most once per
//!   `max_age`; every other waiter reads that copy.
//! - A check of one image (an image open, a Cinder or Glance request) takes
//!   a turn of one shared pace: however many images wait, the checks of
//!   them all come at most `per_second` a second. With few images waiting
//!   each still polls at its own interval; with many, each is checked less
//!   often, and the clusters see the same load.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ceph::{Health, SiteStatus};

/// How often the checks of all waiting images together may run, a second.
pub const CHECKS_PER_SECOND: f64 = 20.0;

/// How old a shared cluster or pool reading may be.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// What waits read of a receiving cluster.
#[derive(Debug)]
pub struct ClusterView {
    pub health: Health,
    /// OSDs up, of how many (None when that reading failed).
    pub osds: Option<(u32, u32)>,
    /// rbd-mirror daemons in its service map.
    pub mirror_daemons: usize,
}

/// What waits read of one pool of a receiving cluster.
#[derive(Debug)]
pub struct PoolView {
    /// Its mirror peers.
    pub peers: usize,
    /// Each mirrored image's local status, by image name.
    pub local: HashMap<String, SiteStatus>,
}

/// A reading, or the error taking it gave, and when it was taken.
type Slot<T> = Arc<Mutex<Option<(Instant, Result<Arc<T>, String>)>>>;

/// Readings shared by key, each taken again when older than `max_age`.
pub struct Shared<K, T> {
    max_age: Duration,
    slots: Mutex<HashMap<K, Slot<T>>>,
}

impl<K: Hash + Eq, T> Shared<K, T> {
    pub fn new(max_age: Duration) -> Self {
        Shared {
            max_age,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The reading of `key`: the shared one while fresh, else `read`'s. A
    /// caller arriving while another reads waits for that reading instead
    /// of taking its own. A failed reading is shared as well (for a second
    /// at most): with a monitor that does not answer, 200 waiting images
    /// must not each wait out its own timeout, one after another.
    pub fn get(&self, key: K, read: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<Arc<T>> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let mut held = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, r)) = &*held {
            let fresh = match r {
                Ok(_) => self.max_age,
                Err(_) => self.max_age.min(Duration::from_secs(1)),
            };
            if at.elapsed() < fresh {
                return r.clone().map_err(|e| anyhow::anyhow!(e));
            }
        }
        let r = read().map(Arc::new).map_err(|e| format!("{e:#}"));
        *held = Some((Instant::now(), r.clone()));
        r.map_err(|e| anyhow::anyhow!(e))
    }
}

/// One pace for many callers: turns come `1 / per_second` apart, in the
/// order they are asked for.
pub struct Pace {
    gap: Duration,
    next: Mutex<Instant>,
}

impl Pace {
    pub fn new(per_second: f64) -> Pace {
        Pace {
            gap: Duration::from_secs_f64(1.0 / per_second.max(0.001)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Blocks until the caller's turn.
    pub fn turn(&self) {
        let wait = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.gap;
            at - now
        };
        std::thread::sleep(wait);
    }
}

/// What a run's waits share.
pub struct Observer {
    pub clusters: Shared<crate::plan::Site, ClusterView>,
    pub pools: Shared<(crate::plan::Site, String), PoolView>,
    /// The names in Cinder's manageable list of a backend host.
    pub manageable: Shared<String, Vec<String>>,
    /// The Cinder backend host that stores in an RBD pool.
    pub hosts: Shared<String, String>,
    pub pace: Pace,
    /// Images parked in a wait now (for the run's load lines).
    pub parked: std::sync::atomic::AtomicUsize,
}

impl Observer {
    pub fn new() -> Observer {
        Observer {
            clusters: Shared::new(MAX_AGE),
            pools: Shared::new(MAX_AGE),
            manageable: Shared::new(MAX_AGE),
            hosts: Shared::new(Duration::from_secs(600)),
            pace: Pace::new(CHECKS_PER_SECOND),
            parked: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn many_waiters_share_one_reading_while_it_is_fresh() {
        let shared: Shared<&str, usize> = Shared::new(Duration::from_secs(60));
        let reads = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..50 {
                s.spawn(|| {
                    let v = shared
                        .get("site-b", || {
                            std::thread::sleep(Duration::from_millis(20));
                            Ok(reads.fetch_add(1, Ordering::SeqCst) + 7)
                        })
                        .unwrap();
                    assert_eq!(*v, 7);
                });
            }
        });
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Another key is its own reading.
        assert_eq!(*shared.get("site-a", || Ok(1)).unwrap(), 1);
    }

    #[test]
    fn an_old_or_failed_reading_is_taken_again() {
        let shared: Shared<u8, u32> = Shared::new(Duration::ZERO);
        assert_eq!(*shared.get(0, || Ok(1)).unwrap(), 1);
        assert_eq!(*shared.get(0, || Ok(2)).unwrap(), 2);
        // A failure is shared for a second, then read again.
        let fresh: Shared<u8, u32> = Shared::new(Duration::from_secs(60));
        assert!(fresh.get(0, || anyhow::bail!("down")).is_err());
        let e = fresh.get(0, || Ok(3)).unwrap_err();
        assert_eq!(e.to_string(), "down");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(*fresh.get(0, || Ok(3)).unwrap(), 3);
    }

    #[test]
    fn turns_of_all_callers_together_keep_the_pace() {
        // 10 a second: 8 callers' turns span at least 0.7 s, whoever asks.
        let pace = Pace::new(10.0);
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    pace.turn();
                    pace.turn();
                });
            }
        });
        assert!(start.elapsed() >= Duration::from_millis(700));
    }
}
