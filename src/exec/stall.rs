//! Telling a stalled mirror from a slow one. Pure: the executor gathers the
//! readings every few seconds while it waits and stops the wait with the
//! reason this gives, instead of waiting out the timeout.

use std::time::Duration;

use crate::ceph::{Health, SiteState, SiteStatus};

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
