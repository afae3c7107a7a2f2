//! Quantities written for people: the formatting helpers that `check`,
//! `plan` and `exec` share. It sits below all of them and imports nothing
//! of ferry, so each can use it without depending on another.

/// Bytes in binary units, e.g. `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds since the epoch, now (as snapshot timestamps and the run state
/// count them).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The time of day of a moment given in seconds since the epoch, in UTC:
/// `07:52:10 UTC`.
pub fn utc_time_of_day(unix: i64) -> String {
    let s = unix.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_are_utc_hours_minutes_and_seconds() {
        assert_eq!(utc_time_of_day(0), "00:00:00 UTC");
        assert_eq!(utc_time_of_day(1_796_542_550), "07:35:50 UTC");
        assert_eq!(utc_time_of_day(-1), "23:59:59 UTC");
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536 * 1024 * 1024), "1.5 GiB");
    }
}
