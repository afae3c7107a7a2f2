//! Work over many items with a bounded number of threads.

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
}
