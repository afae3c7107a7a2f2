//! Work over many items with a bounded number of threads, and the slots
//! that bound how many do a thing at once.

use std::sync::{Arc, Condvar, Mutex};

/// `f` of every item, in order, computed by up to `threads` threads.
pub fn map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(item) = items.get(k) else { break };
                let r = f(item);
                *results[k].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every item mapped")
        })
        .collect()
}

/// A counting semaphore: at most `n` holders at once, each holding a
/// [`Slot`] it can keep as long as it needs (in a struct, across calls).
#[derive(Debug)]
pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One slot of [`Slots`], given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Slots {
    pub fn new(n: usize) -> Arc<Slots> {
        Arc::new(Slots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        })
    }

    /// A slot if one is free now.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        (*free > 0).then(|| {
            *free -= 1;
            Slot(Arc::clone(self))
        })
    }

    /// A slot, waiting for one to be given back.
    pub fn take(self: &Arc<Self>) -> Slot {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(Arc::clone(self))
    }

    /// How many are free now.
    pub fn free(&self) -> usize {
        *self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// A flag one thread raises and others wait for, each with a limit: a
/// loop that does something every so often until told to stop ends as soon
/// as it is told, not at its next turn.
#[derive(Debug, Default)]
pub struct Flag {
    raised: Mutex<bool>,
    changed: Condvar,
}

impl Flag {
    pub fn raise(&self) {
        *self.raised.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    /// Waits until the flag is raised or `limit` passes; whether it is.
    pub fn wait(&self, limit: std::time::Duration) -> bool {
        let raised = self.raised.lock().unwrap_or_else(|p| p.into_inner());
        let (raised, _) = self
            .changed
            .wait_timeout_while(raised, limit, |r| !*r)
            .unwrap_or_else(|p| p.into_inner());
        *raised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_of_its_items() {
        let items: Vec<u64> = (0..200).collect();
        let out = map(&items, 7, |k| {
            // Later items finish first.
            std::thread::sleep(std::time::Duration::from_micros(200 - k));
            k * 2
        });
        assert_eq!(out, items.iter().map(|k| k * 2).collect::<Vec<_>>());
        assert!(map(&[] as &[u64], 4, |k| *k).is_empty());
    }

    #[test]
    fn a_raised_flag_ends_a_wait_at_once() {
        use std::time::{Duration, Instant};
        let flag = Flag::default();
        let t = Instant::now();
        assert!(!flag.wait(Duration::from_millis(20)));
        assert!(t.elapsed() >= Duration::from_millis(20));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(30));
                flag.raise();
            });
            let t = Instant::now();
            assert!(flag.wait(Duration::from_secs(60)));
            assert!(t.elapsed() < Duration::from_secs(30));
        });
        // Raised stays raised.
        assert!(flag.wait(Duration::ZERO));
    }

    #[test]
    fn slots_hold_no_more_than_their_number_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let slots = Slots::new(2);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let _slot = slots.take();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(30));
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
}
