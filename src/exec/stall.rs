//! Telling a stalled mirror from a slow one. Pure: the executor gathers the
//! readings every few seconds while it waits and stops the wait with the
//! reason this gives, instead of waiting out the timeout.

use std::time::Duration;

use crate::ceph::{Health, MirrorSnapState, MirrorSnapshot, ReplayProgress, SiteState, SiteStatus};

/// How long rbd-mirror may report an error for an image before the wait
/// stops: it retries by itself, so a short error is not a stall.
pub const ERROR_GRACE: Duration = Duration::from_secs(60);

/// What the executor read on the receiving cluster.
#[derive(Debug)]
pub struct Readings<'a> {
    /// Receiving cluster's name.
    pub cluster: &'a str,
    /// Its health, with details.
    pub health: &'a Health,
    /// Pools written to while waiting (the mirrored pool).
    pub pools: &'a [&'a str],
    /// rbd-mirror daemons in its service map.
    pub daemons: usize,
    /// Peers of the mirrored pool.
    pub peers: usize,
    /// The mirrored image's local status, once it exists.
    pub local: Option<&'a SiteStatus>,
    /// How long the local status has been in error so far.
    pub error_for: Duration,
}

/// The reason the wait cannot end by itself, if there is one.
pub fn stall(r: &Readings<'_>) -> Option<String> {
    let c = r.cluster;
    if r.daemons == 0 {
        return Some(format!(
            "no rbd-mirror daemon is running for {c}; start rbd-mirror and run again"
        ));
    }
    if r.peers == 0 {
        let pool = r.pools.first().copied().unwrap_or("?");
        return Some(format!(
            "pool {pool} on {c} has no mirror peer, so nothing can arrive; import the peer \
             (rbd mirror pool peer bootstrap import) and run again"
        ));
    }
    for check in &r.health.checks {
        match check.code.as_str() {
            "OSD_FULL" => {
                return Some(format!(
                    "{c} is full ({}: {}); writes are blocked until space is freed or added",
                    check.code, check.summary
                ))
            }
            "POOL_FULL" => {
                let hit = check.details.iter().find(|d| {
                    r.pools
                        .iter()
                        .any(|p| d.starts_with(&format!("pool '{p}' ")))
                });
                if let Some(d) = hit {
                    return Some(format!(
                        "{d} on {c}; writes to it are blocked until its quota is raised or space freed"
                    ));
                }
            }
            _ => {}
        }
    }
    if let Some(l) = r.local {
        if l.state == SiteState::Error && r.error_for >= ERROR_GRACE {
            return Some(format!(
                "rbd-mirror on {c} has reported an error for {} s: {}",
                r.error_for.as_secs(),
                if l.description.is_empty() {
                    "(no description)"
                } else {
                    &l.description
                }
            ));
        }
    }
    None
}

/// Why a cluster cannot serve reads or writes now, from its health and
/// its OSDs up (`osds`: up, of how many): no OSD up, or its placement
/// groups unavailable (`stale`, `down`, `inactive`). Unlike [`stall`]'s reasons this can pass by itself
/// (an OSD restarted): the wait names it and goes on until its timeout.
/// One OSD down among others is no outage: their replicas serve.
pub fn outage(cluster: &str, health: &Health, osds: Option<(u32, u32)>) -> Option<String> {
    let check = |code: &str| health.checks.iter().find(|c| c.code == code);
    if let Some((0, all)) = osds.filter(|(_, all)| *all > 0) {
        return Some(format!(
            "{cluster} {UNAVAILABLE} (no OSD up, 0 of {all}): reads and writes there wait \
             until its OSDs are back; start them (`ceph osd tree` shows which are down, an \
             OSD's log why it stopped, such as a full disk)"
        ));
    }
    let pgs = check("PG_AVAILABILITY")?;
    let osds = check("OSD_DOWN")
        .map(|d| format!(", {}", d.summary))
        .unwrap_or_default();
    Some(format!(
        "{cluster} {UNAVAILABLE} ({}{osds}): reads and writes there wait until its \
         OSDs are back; start the stopped OSDs (`ceph osd tree` shows which are down, an \
         OSD's log why it stopped, such as a full disk)",
        pgs.summary
    ))
}

/// The outage named when `cluster`'s monitors do not answer (`error`).
pub fn monitors_away(cluster: &str, error: &str) -> String {
    format!(
        "the monitors of {cluster} do not answer ({error}): nothing can be read there until \
         they are back; check that they run and have quorum (`ceph -s` on a monitor host)"
    )
}

const READS_TIME_OUT: &str = "reads of";
const UNAVAILABLE: &str = "cannot serve its data";

/// Whether outage `why` was named from failing readings alone (the
/// cluster's health said nothing): only more readings tell it is over.
pub fn from_readings(why: &str) -> bool {
    why.starts_with(READS_TIME_OUT)
}

/// Whether outage `why` is the cluster's own word that its data cannot be
/// read: readings of it would only take their timeout, and its health
/// tells when the outage is over. (With only the monitors away the OSDs
/// may still answer: readings go on.)
pub fn data_unavailable(why: &str) -> bool {
    why.contains(UNAVAILABLE)
}

/// The outage named when readings time out while the monitors answer and
/// the cluster's health (`status`) names nothing: an OSD that died without
/// being marked down yet (a cluster with one OSD takes up to 15 minutes).
pub fn reads_time_out(cluster: &str, health: &Health, error: &str) -> String {
    let mut status = health.status.clone();
    for c in &health.checks {
        status.push_str(&format!("; {}: {}", c.code, c.summary));
    }
    format!(
        "{READS_TIME_OUT} {cluster} time out ({error}) while its health says {status}: an OSD may \
         have stopped without being marked down yet; check its OSD processes and their logs \
         (`ceph osd tree`)"
    )
}

/// How a snapshot-mode replay stands, read from both sides' mirror
/// snapshots (exact and fresh, where the status is ~30 s old).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// A receiving mirror snapshot is being copied.
    Copying,
    /// Nothing is being copied while the primary holds `newer` mirror
    /// snapshots (meant for peers) past the last one copied (`copied`,
    /// the primary's snapshot id; 0 before the first).
    Behind { newer: usize, copied: u64 },
    /// The newest primary mirror snapshot has arrived.
    CaughtUp,
}

/// Reads [`Replay`] from the primary's mirror snapshots and the receiving
/// image's.
pub fn replay_of(primary: &[MirrorSnapshot], received: &[MirrorSnapshot]) -> Replay {
    let receiving = received
        .iter()
        .filter(|s| s.state == MirrorSnapState::NonPrimary);
    if receiving.clone().any(|s| !s.complete) {
        return Replay::Copying;
    }
    let copied = receiving.map(|s| s.primary_snap_id).max().unwrap_or(0);
    let newer = primary
        .iter()
        .filter(|s| {
            s.state == MirrorSnapState::Primary && !s.peer_uuids.is_empty() && s.snap_id > copied
        })
        .count();
    if newer == 0 {
        Replay::CaughtUp
    } else {
        Replay::Behind { newer, copied }
    }
}

/// How long rbd-mirror may sit idle behind the primary before a nudge: it
/// starts on a new mirror snapshot within seconds (measured: a 256 MiB
/// delta landed 2.7 s after the snapshot).
pub const NUDGE_AFTER: Duration = Duration::from_secs(20);
/// The least time between two nudges of one image.
pub const NUDGE_AGAIN: Duration = Duration::from_secs(30);
/// Nudges of one image at most; then, still idle behind, a stall.
pub const MAX_NUDGES: u32 = 3;

/// What a wait does about a replay that sits behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nudging {
    /// Nothing (copying, caught up, or not idle for long enough).
    Wait,
    /// Take one more mirror snapshot on the primary: rbd-mirror 16.2 can
    /// miss the mirror snapshots taken while an image's first one is
    /// copied, and stays idle until another one is taken.
    Nudge,
    /// The nudges did not help: why the wait cannot end by itself.
    Stalled(String),
}

/// The nudges of one image's wait. Pure: the caller passes the time.
#[derive(Debug, Default)]
pub struct Nudges {
    /// Since when the replay has been idle behind.
    behind_since: Option<Duration>,
    /// Nudges taken, and when the last one was.
    pub taken: u32,
    last: Option<Duration>,
}

impl Nudges {
    /// What to do at `now` (time since the wait began), given the replay
    /// and whether the receiving site's status says it is syncing (no
    /// nudge while it says so) or, written after the last nudge, that it
    /// believes it is caught up (what a stall needs before it is named).
    pub fn next(
        &mut self,
        now: Duration,
        replay: Replay,
        status_syncing: bool,
        believes_caught_up: bool,
    ) -> Nudging {
        let Replay::Behind { newer, copied } = replay else {
            self.behind_since = None;
            return Nudging::Wait;
        };
        let idle_for = now.saturating_sub(*self.behind_since.get_or_insert(now));
        let since_nudge = self.last.map(|l| now.saturating_sub(l));
        if self.taken < MAX_NUDGES {
            let due = idle_for >= NUDGE_AFTER && since_nudge.is_none_or(|d| d >= NUDGE_AGAIN);
            if status_syncing || !due {
                return Nudging::Wait;
            }
            self.taken += 1;
            self.last = Some(now);
            return Nudging::Nudge;
        }
        let quiet = since_nudge.unwrap_or(idle_for);
        if idle_for >= NUDGE_AFTER && quiet >= 2 * NUDGE_AGAIN && believes_caught_up {
            return Nudging::Stalled(format!(
                "rbd-mirror copies no more mirror snapshots: it is idle and its status says it is \
                 caught up while the primary holds {newer} newer one(s) than the last copied \
                 (primary snapshot {copied}), after {} nudge(s); restart rbd-mirror on the \
                 receiving cluster (it then looks at the image afresh) and run again",
                self.taken
            ));
        }
        Nudging::Wait
    }
}

/// Whether the receiving site's status shows a copy under way.
pub fn status_syncing(local: Option<&SiteStatus>) -> bool {
    local.is_some_and(|l| {
        matches!(
            l.progress(),
            ReplayProgress::Bootstrapping { .. } | ReplayProgress::Snapshot { syncing: true, .. }
        )
    })
}

/// Whether the receiving site's status, written at or after `after` (unix
/// seconds), says the replay is idle and caught up.
pub fn believes_caught_up(local: Option<&SiteStatus>, after: i64) -> bool {
    local.is_some_and(|l| {
        l.last_update >= after
            && l.state == SiteState::Replaying
            && matches!(l.progress(), p @ ReplayProgress::Snapshot { .. } if p.caught_up() == Some(true))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceph::HealthCheck;

    fn healthy() -> Health {
        Health {
            status: "HEALTH_OK".into(),
            checks: vec![],
        }
    }

    fn readings<'a>(health: &'a Health, local: Option<&'a SiteStatus>) -> Readings<'a> {
        Readings {
            cluster: "site-b",
            health,
            pools: &["volumes"],
            daemons: 1,
            peers: 1,
            local,
            error_for: Duration::ZERO,
        }
    }

    fn check(code: &str, summary: &str, details: &[&str]) -> Health {
        Health {
            status: "HEALTH_WARN".into(),
            checks: vec![HealthCheck {
                code: code.into(),
                severity: "HEALTH_WARN".into(),
                summary: summary.into(),
                details: details.iter().map(|d| d.to_string()).collect(),
            }],
        }
    }

    fn status(state: SiteState) -> SiteStatus {
        SiteStatus {
            mirror_uuid: String::new(),
            state,
            description: "failed to open remote image".into(),
            last_update: 0,
            up: true,
        }
    }

    #[test]
    fn a_healthy_receiver_is_not_stalled() {
        let h = healthy();
        let s = status(SiteState::Replaying);
        assert_eq!(stall(&readings(&h, Some(&s))), None);
        assert_eq!(stall(&readings(&h, None)), None);
    }

    #[test]
    fn no_daemon_and_no_peer_are_stalls() {
        let h = healthy();
        let mut r = readings(&h, None);
        r.daemons = 0;
        assert!(stall(&r)
            .unwrap()
            .starts_with("no rbd-mirror daemon is running for site-b"));
        r.daemons = 1;
        r.peers = 0;
        assert!(stall(&r)
            .unwrap()
            .starts_with("pool volumes on site-b has no mirror peer"));
    }

    #[test]
    fn a_full_pool_stalls_only_when_it_is_one_we_write_to() {
        let h = check(
            "POOL_FULL",
            "1 pool(s) full",
            &["pool 'volumes' is full (running out of quota)"],
        );
        assert_eq!(
            stall(&readings(&h, None)).unwrap(),
            "pool 'volumes' is full (running out of quota) on site-b; writes to it are \
             blocked until its quota is raised or space freed"
        );
        let other = check(
            "POOL_FULL",
            "1 pool(s) full",
            &["pool 'volumes-old' is full (running out of quota)"],
        );
        assert_eq!(stall(&readings(&other, None)), None);
        let osd = check("OSD_FULL", "1 full osd(s)", &[]);
        assert!(stall(&readings(&osd, None))
            .unwrap()
            .starts_with("site-b is full (OSD_FULL"));
    }

    #[test]
    fn unavailable_placement_groups_are_an_outage_one_osd_down_is_not() {
        let mut h = check("OSD_DOWN", "1 osds down", &["osd.0 is down"]);
        assert_eq!(
            outage("site-b", &h, Some((2, 3))),
            None,
            "replicas on other OSDs serve"
        );
        // None up: named at once, before the placement groups go stale.
        let none = outage("site-b", &h, Some((0, 1))).unwrap();
        assert!(
            none.starts_with("site-b cannot serve its data (no OSD up, 0 of 1): "),
            "{none}"
        );
        assert!(data_unavailable(&none));
        h.checks.push(HealthCheck {
            code: "PG_AVAILABILITY".into(),
            severity: "HEALTH_WARN".into(),
            summary: "Reduced data availability: 16 pgs stale".into(),
            details: vec![],
        });
        let why = outage("site-b", &h, None).unwrap();
        assert!(
            why.starts_with(
                "site-b cannot serve its data (Reduced data availability: 16 pgs stale, 1 osds down): "
            ),
            "{why}"
        );
        assert!(why.contains("start the stopped OSDs"), "{why}");
        // Readings of it are not taken; with monitors away, or readings
        // timing out under a quiet health, they go on.
        assert!(data_unavailable(&why));
        assert!(!data_unavailable(&monitors_away("site-b", "ETIMEDOUT")));
        let guess = reads_time_out("site-b", &healthy(), "rados_getxattr: ETIMEDOUT");
        assert!(
            from_readings(&guess) && !data_unavailable(&guess),
            "{guess}"
        );
        assert_eq!(outage("site-b", &healthy(), Some((1, 1))), None);
    }

    fn snap(id: u64, state: MirrorSnapState, complete: bool, primary: u64) -> MirrorSnapshot {
        MirrorSnapshot {
            snap_id: id,
            state,
            complete,
            primary_mirror_uuid: String::new(),
            primary_snap_id: primary,
            last_copied_object_number: 0,
            peer_uuids: if state == MirrorSnapState::Primary {
                vec!["peer".into()]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn the_replay_is_read_from_both_sides_mirror_snapshots() {
        use MirrorSnapState::{NonPrimary, Primary};
        // As seen: the first of three copied, the replayer idle.
        let primary = [
            snap(4, Primary, true, 0),
            snap(6, Primary, true, 0),
            snap(7, Primary, true, 0),
        ];
        let first = [snap(3, NonPrimary, true, 4)];
        assert_eq!(
            replay_of(&primary, &first),
            Replay::Behind {
                newer: 2,
                copied: 4
            }
        );
        let copying = [snap(3, NonPrimary, true, 4), snap(5, NonPrimary, false, 7)];
        assert_eq!(replay_of(&primary, &copying), Replay::Copying);
        let all = [snap(3, NonPrimary, true, 4), snap(5, NonPrimary, true, 7)];
        assert_eq!(replay_of(&primary, &all), Replay::CaughtUp);
        // A snapshot taken before the peer registered is meant for nobody.
        let mut unmeant = snap(9, Primary, true, 0);
        unmeant.peer_uuids.clear();
        assert_eq!(replay_of(&[unmeant], &all), Replay::CaughtUp);
    }

    #[test]
    fn an_idle_replay_behind_is_nudged_a_few_times_then_named_a_stall() {
        let s = Duration::from_secs;
        let behind = Replay::Behind {
            newer: 2,
            copied: 4,
        };
        let mut n = Nudges::default();
        assert_eq!(n.next(s(0), behind, false, true), Nudging::Wait);
        assert_eq!(n.next(s(19), behind, false, true), Nudging::Wait);
        // While the status says it syncs, no nudge.
        assert_eq!(n.next(s(20), behind, true, false), Nudging::Wait);
        assert_eq!(n.next(s(21), behind, false, false), Nudging::Nudge);
        assert_eq!(n.next(s(40), behind, false, false), Nudging::Wait);
        assert_eq!(n.next(s(51), behind, false, false), Nudging::Nudge);
        // Copying again: the next stretch behind starts afresh.
        assert_eq!(n.next(s(55), Replay::Copying, false, false), Nudging::Wait);
        assert_eq!(n.next(s(60), behind, false, false), Nudging::Wait);
        assert_eq!(
            n.next(s(80), behind, false, false),
            Nudging::Wait,
            "30 s apart"
        );
        assert_eq!(n.next(s(81), behind, false, false), Nudging::Nudge);
        assert_eq!(n.taken, MAX_NUDGES);
        // No more nudges; a stall only when the status, written after the
        // last nudge, says it is caught up.
        assert_eq!(n.next(s(200), behind, false, false), Nudging::Wait);
        let Nudging::Stalled(why) = n.next(s(201), behind, false, true) else {
            panic!("not stalled")
        };
        assert!(
            why.contains("after 3 nudge(s); restart rbd-mirror"),
            "{why}"
        );
        assert_eq!(n.next(s(202), Replay::CaughtUp, false, true), Nudging::Wait);
    }

    #[test]
    fn an_error_status_stalls_after_the_grace_period() {
        let h = healthy();
        let s = status(SiteState::Error);
        let mut r = readings(&h, Some(&s));
        r.error_for = Duration::from_secs(10);
        assert_eq!(stall(&r), None, "rbd-mirror retries by itself");
        r.error_for = ERROR_GRACE;
        assert_eq!(
            stall(&r).unwrap(),
            "rbd-mirror on site-b has reported an error for 60 s: failed to open remote image"
        );
    }
}
