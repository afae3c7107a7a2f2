//! Helpers shared by the unit tests.

use std::path::PathBuf;

/// A new, empty directory for one test: `ferry-<name>-<pid>-<nanoseconds>`
/// under the system's temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ferry-{name}-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `len` pseudo-random bytes from `seed` (xorshift), none of them zero:
/// data that no zero detection mistakes for a hole.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8 | 1
        })
        .collect()
}
