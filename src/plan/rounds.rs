//! The names of a plan's warm round snapshots (`ferry-round-<plan id>-<n>`).

/// How a warm round's snapshot begins.
pub const ROUND_SNAP: &str = "ferry-round";

/// The snapshot of a plan's warm round `n` (from 1): each round's data is
/// what changed between the round before and it.
pub fn round_snap(plan_id: &str, n: u64) -> String {
    format!("{ROUND_SNAP}-{plan_id}-{n}")
}

/// The plan and the round a snapshot named `snap` is of, when it is a
/// round snapshot.
pub fn round_of(snap: &str) -> Option<(&str, u64)> {
    let (plan, n) = snap
        .strip_prefix(ROUND_SNAP)?
        .strip_prefix('-')?
        .rsplit_once('-')?;
    Some((plan, n.parse().ok()?))
}

/// The round a snapshot named `snap` is of, when it is one of this plan's.
pub fn round_number(plan_id: &str, snap: &str) -> Option<u64> {
    round_of(snap).and_then(|(plan, n)| (plan == plan_id).then_some(n))
}
