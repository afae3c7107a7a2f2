//! Reading rbd-mirror's status descriptions. The description is free text
//! from the daemon; while replaying it is `replaying, ` followed by a JSON
//! document (a string holding JSON: parse twice). Pure, no I/O.

use serde::{Deserialize, Serialize};

use super::types::SiteState;

/// What a receiving site's status says about replication progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum ReplayProgress {
    /// Initial sync: `bootstrapping, IMAGE_SYNC/COPY_IMAGE 57%`.
    Bootstrapping { step: String, percent: Option<f64> },
    /// Journal-based replay.
    Journal {
        entries_behind_primary: u64,
        bytes_per_second: f64,
        /// Only reported while behind.
        seconds_until_synced: Option<f64>,
    },
    /// Snapshot-based replay.
    Snapshot {
        /// True while a snapshot is being copied.
        syncing: bool,
        syncing_percent: Option<f64>,
        /// Timestamp of the newest primary snapshot this site has.
        local_snapshot_timestamp: Option<i64>,
        /// Timestamp of the newest snapshot on the primary.
        remote_snapshot_timestamp: Option<i64>,
        bytes_per_second: f64,
        last_snapshot_bytes: Option<u64>,
    },
    /// Anything else (`status not found`, `stopped`, an error text).
    Other { description: String },
}

impl ReplayProgress {
    /// Whether the status shows the copy caught up, when it says so at all.
    /// Coarse: the daemon refreshes its status only about every 30 s.
    pub fn caught_up(&self) -> Option<bool> {
        match self {
            ReplayProgress::Bootstrapping { .. } => Some(false),
            ReplayProgress::Journal {
                entries_behind_primary,
                ..
            } => Some(*entries_behind_primary == 0),
            ReplayProgress::Snapshot {
                syncing,
                local_snapshot_timestamp,
                remote_snapshot_timestamp,
                ..
            } => Some(
                !syncing
                    && local_snapshot_timestamp.is_some()
                    && local_snapshot_timestamp == remote_snapshot_timestamp,
            ),
            ReplayProgress::Other { .. } => None,
        }
    }
}

#[derive(Deserialize)]
struct RawReplay {
    entries_behind_primary: Option<u64>,
    seconds_until_synced: Option<f64>,
    #[serde(default)]
    bytes_per_second: f64,
    replay_state: Option<String>,
    syncing_percent: Option<f64>,
    local_snapshot_timestamp: Option<i64>,
    remote_snapshot_timestamp: Option<i64>,
    last_snapshot_bytes: Option<u64>,
}

/// Parses a site's status description.
pub fn parse_description(state: SiteState, description: &str) -> ReplayProgress {
    let other = || ReplayProgress::Other {
        description: description.to_string(),
    };
    if let Some(rest) = description.strip_prefix("bootstrapping, ") {
        let (step, percent) = match rest.rsplit_once(' ') {
            Some((step, p)) if p.ends_with('%') => {
                (step.to_string(), p.trim_end_matches('%').parse().ok())
            }
            _ => (rest.to_string(), None),
        };
        return ReplayProgress::Bootstrapping { step, percent };
    }
    if state == SiteState::Syncing {
        return ReplayProgress::Bootstrapping {
            step: description.to_string(),
            percent: None,
        };
    }
    let Some(json) = description.strip_prefix("replaying, ") else {
        return other();
    };
    let Ok(raw) = serde_json::from_str::<RawReplay>(json) else {
        return other();
    };
    if let Some(entries) = raw.entries_behind_primary {
        return ReplayProgress::Journal {
            entries_behind_primary: entries,
            bytes_per_second: raw.bytes_per_second,
            seconds_until_synced: raw.seconds_until_synced,
        };
    }
    if let Some(rs) = raw.replay_state {
        return ReplayProgress::Snapshot {
            syncing: rs == "syncing",
            syncing_percent: raw.syncing_percent,
            local_snapshot_timestamp: raw.local_snapshot_timestamp,
            remote_snapshot_timestamp: raw.remote_snapshot_timestamp,
            bytes_per_second: raw.bytes_per_second,
            last_snapshot_bytes: raw.last_snapshot_bytes,
        };
    }
    other()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_sync_percent() {
        let p = parse_description(
            SiteState::Syncing,
            "bootstrapping, IMAGE_SYNC/COPY_IMAGE 57%",
        );
        assert_eq!(
            p,
            ReplayProgress::Bootstrapping {
                step: "IMAGE_SYNC/COPY_IMAGE".into(),
                percent: Some(57.0)
            }
        );
        assert_eq!(p.caught_up(), Some(false));
    }

    #[test]
    fn journal_replay_behind_and_caught_up() {
        let behind = parse_description(
            SiteState::Replaying,
            r#"replaying, {"bytes_per_second":1048576.0,"entries_behind_primary":120,"entries_per_second":30.0,"non_primary_position":{"entry_tid":3,"object_number":3,"tag_tid":1},"primary_position":{"entry_tid":123,"object_number":7,"tag_tid":1},"seconds_until_synced":4}"#,
        );
        assert_eq!(
            behind,
            ReplayProgress::Journal {
                entries_behind_primary: 120,
                bytes_per_second: 1048576.0,
                seconds_until_synced: Some(4.0)
            }
        );
        assert_eq!(behind.caught_up(), Some(false));
        let done = parse_description(
            SiteState::Replaying,
            r#"replaying, {"bytes_per_second":0.0,"entries_behind_primary":0,"entries_per_second":0.0}"#,
        );
        assert_eq!(done.caught_up(), Some(true));
    }

    #[test]
    fn snapshot_replay_idle_with_equal_timestamps_is_caught_up() {
        // As seen from Ceph 16.2's rbd-mirror.
        let idle = parse_description(
            SiteState::Replaying,
            r#"replaying, {"bytes_per_second":0.0,"bytes_per_snapshot":0.0,"last_snapshot_bytes":0,"last_snapshot_sync_seconds":0,"local_snapshot_timestamp":1795375978,"remote_snapshot_timestamp":1795375978,"replay_state":"idle"}"#,
        );
        assert_eq!(idle.caught_up(), Some(true));
        let syncing = parse_description(
            SiteState::Replaying,
            r#"replaying, {"bytes_per_second":5000.0,"local_snapshot_timestamp":1795375978,"remote_snapshot_timestamp":1795376000,"replay_state":"syncing","syncing_percent":40,"syncing_snapshot_timestamp":1795376000}"#,
        );
        let ReplayProgress::Snapshot {
            syncing: true,
            syncing_percent: Some(p),
            ..
        } = syncing
        else {
            panic!("{syncing:?}")
        };
        assert_eq!(p, 40.0);
        assert_eq!(syncing.caught_up(), Some(false));
    }

    #[test]
    fn other_texts_say_nothing_about_sync() {
        for d in [
            "status not found",
            "stopped",
            "replaying, not json",
            "local image is primary",
        ] {
            let p = parse_description(SiteState::Unknown, d);
            assert_eq!(p.caught_up(), None, "{d}");
        }
    }
}
