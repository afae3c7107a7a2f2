//! Plain data describing RBD images and mirroring: features, snapshots,
//! mirror modes and statuses. No I/O here.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// An RBD image's feature bits (librbd's `RBD_FEATURE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct Features(pub u64);

impl Features {
    pub const LAYERING: Features = Features(1 << 0);
    pub const STRIPINGV2: Features = Features(1 << 1);
    pub const EXCLUSIVE_LOCK: Features = Features(1 << 2);
    pub const OBJECT_MAP: Features = Features(1 << 3);
    pub const FAST_DIFF: Features = Features(1 << 4);
    pub const DEEP_FLATTEN: Features = Features(1 << 5);
    pub const JOURNALING: Features = Features(1 << 6);
    pub const DATA_POOL: Features = Features(1 << 7);
    pub const OPERATIONS: Features = Features(1 << 8);
    pub const MIGRATING: Features = Features(1 << 9);
    pub const NON_PRIMARY: Features = Features(1 << 10);
    pub const DIRTY_CACHE: Features = Features(1 << 11);

    /// The features `rbd create` gives a new image by default.
    /// The features an image can be created with (`operations`,
    /// `non-primary` and the like are set by librbd itself).
    pub const CREATABLE: Features = Features(
        Self::LAYERING.0
            | Self::STRIPINGV2.0
            | Self::EXCLUSIVE_LOCK.0
            | Self::OBJECT_MAP.0
            | Self::FAST_DIFF.0
            | Self::DEEP_FLATTEN.0
            | Self::JOURNALING.0,
    );
    pub const DEFAULT: Features = Features(
        Self::LAYERING.0
            | Self::EXCLUSIVE_LOCK.0
            | Self::OBJECT_MAP.0
            | Self::FAST_DIFF.0
            | Self::DEEP_FLATTEN.0,
    );

    const NAMES: [(Features, &'static str); 12] = [
        (Self::LAYERING, "layering"),
        (Self::STRIPINGV2, "striping"),
        (Self::EXCLUSIVE_LOCK, "exclusive-lock"),
        (Self::OBJECT_MAP, "object-map"),
        (Self::FAST_DIFF, "fast-diff"),
        (Self::DEEP_FLATTEN, "deep-flatten"),
        (Self::JOURNALING, "journaling"),
        (Self::DATA_POOL, "data-pool"),
        (Self::OPERATIONS, "operations"),
        (Self::MIGRATING, "migrating"),
        (Self::NON_PRIMARY, "non-primary"),
        (Self::DIRTY_CACHE, "dirty-cache"),
    ];

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// The features' names as `rbd info` prints them.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, n)| *n)
            .collect()
    }

    /// Parses a feature name (`exclusive-lock`, ...).
    pub fn from_name(name: &str) -> Option<Features> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(f, _)| *f)
    }
}

impl std::ops::BitOr for Features {
    type Output = Features;
    fn bitor(self, rhs: Features) -> Features {
        Features(self.0 | rhs.0)
    }
}

impl TryFrom<Vec<String>> for Features {
    type Error = String;

    /// Reads feature names back (state files, plans); an unknown name is an
    /// error rather than a feature silently lost.
    fn try_from(names: Vec<String>) -> Result<Features, String> {
        names.iter().try_fold(Features(0), |acc, n| {
            Features::from_name(n)
                .map(|f| acc | f)
                .ok_or_else(|| format!("unknown RBD feature {n:?}"))
        })
    }
}

impl Serialize for Features {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(", "))
    }
}

/// Size and layout of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub size: u64,
    pub object_size: u64,
    pub features: Features,
}

/// The namespace a snapshot lives in: user snapshots are the ones `rbd snap
/// ls` shows; mirror snapshots belong to snapshot-based mirroring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapNamespace {
    User,
    Group,
    Trash,
    Mirror,
    Unknown,
}

/// One snapshot of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub namespace: SnapNamespace,
}

/// The role a mirror snapshot plays on its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MirrorSnapState {
    Primary,
    PrimaryDemoted,
    NonPrimary,
    NonPrimaryDemoted,
}

/// What a mirror snapshot says about snapshot-based replication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorSnapshot {
    pub snap_id: u64,
    pub state: MirrorSnapState,
    /// On a receiving site: all of the primary snapshot's data has arrived.
    pub complete: bool,
    /// On a receiving site: the primary's mirror uuid and snapshot id it copies.
    pub primary_mirror_uuid: String,
    pub primary_snap_id: u64,
    /// On a receiving site: how far the copy has come, in objects.
    pub last_copied_object_number: u64,
    /// On the primary: the peers this snapshot is meant for (empty when it
    /// was taken before any peer registered, so nothing copies it).
    pub peer_uuids: Vec<String>,
}

/// True when the receiving site's mirror snapshots show that the primary's
/// snapshot `primary_snap_id` (or a later one) has arrived completely.
pub fn mirror_snapshot_arrived(received: &[MirrorSnapshot], primary_snap_id: u64) -> bool {
    received.iter().any(|s| {
        s.state == MirrorSnapState::NonPrimary && s.complete && s.primary_snap_id >= primary_snap_id
    })
}

/// On a receiving site: a complete mirror snapshot was taken after the local
/// snapshot `after`, so everything up to that snapshot has arrived.
pub fn complete_mirror_snapshot_after(received: &[MirrorSnapshot], after: u64) -> bool {
    received
        .iter()
        .any(|s| s.state == MirrorSnapState::NonPrimary && s.complete && s.snap_id > after)
}

/// On the primary: a mirror snapshot meant for peers was taken after the
/// snapshot `after`, so it will carry it to them.
pub fn primary_mirror_snapshot_after(mine: &[MirrorSnapshot], after: u64) -> bool {
    mine.iter().any(|s| {
        s.state == MirrorSnapState::Primary && !s.peer_uuids.is_empty() && s.snap_id > after
    })
}

/// A client watching an image (an attached VM, rbd-mirror, a mapped device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watcher {
    pub addr: String,
    pub id: i64,
    pub cookie: u64,
}

/// The snapshot a clone was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    pub pool: String,
    /// The pool namespace ("" for the default one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub image: String,
    pub snap: String,
    /// 1: the parent snapshot is protected; 2: clone v2 (the parent carries
    /// the `operations` feature while it has children).
    pub clone_format: u8,
    /// The parent image was moved to the trash (clone v2 allows that).
    #[serde(default)]
    pub in_trash: bool,
}

impl fmt::Display for Parent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = if self.namespace.is_empty() {
            String::new()
        } else {
            format!("{}/", self.namespace)
        };
        write!(f, "{}/{ns}{}@{}", self.pool, self.image, self.snap)
    }
}

/// A holder of a lock on an image (`rbd lock ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Locker {
    /// Entity, e.g. `client.4142`.
    pub client: String,
    /// `auto <n>` for the exclusive lock a running client holds.
    pub cookie: String,
    pub addr: String,
}

/// A pool's mirroring mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolMirrorMode {
    /// No mirroring.
    Disabled,
    /// Each image is enabled explicitly (`rbd mirror image enable`).
    Image,
    /// Every image with journaling is mirrored.
    Pool,
}

impl fmt::Display for PoolMirrorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolMirrorMode::Disabled => "disabled",
            PoolMirrorMode::Image => "image",
            PoolMirrorMode::Pool => "pool",
        })
    }
}

/// How an image is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MirrorMode {
    /// Journal-based: needs exclusive-lock and journaling on the image.
    Journal,
    /// Snapshot-based: periodic or explicit mirror snapshots, no journaling.
    Snapshot,
}

impl fmt::Display for MirrorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MirrorMode::Journal => "journal",
            MirrorMode::Snapshot => "snapshot",
        })
    }
}

/// Which way a mirror peer replicates, from the local pool's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerDirection {
    /// This cluster receives from the peer.
    RxOnly,
    /// This cluster sends to the peer.
    TxOnly,
    /// Both ways.
    RxTx,
}

impl fmt::Display for PeerDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerDirection::RxOnly => "rx-only",
            PeerDirection::TxOnly => "tx-only",
            PeerDirection::RxTx => "rx-tx",
        })
    }
}

/// A configured mirror peer of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorPeer {
    pub uuid: String,
    pub direction: PeerDirection,
    pub site_name: String,
    /// The peer's mirror uuid; empty until the peer's rbd-mirror has seen it.
    pub mirror_uuid: String,
    pub client_name: String,
}

/// Whether mirroring is enabled on an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageMirrorState {
    Disabling,
    Enabled,
    Disabled,
}

/// An image's mirroring identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageMirrorInfo {
    pub global_id: String,
    pub state: ImageMirrorState,
    pub primary: bool,
}

/// The replication state one site reports for an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteState {
    Unknown,
    Error,
    Syncing,
    StartingReplay,
    Replaying,
    StoppingReplay,
    Stopped,
}

impl SiteState {
    pub(crate) fn from_raw(v: i32) -> SiteState {
        match v {
            1 => SiteState::Error,
            2 => SiteState::Syncing,
            3 => SiteState::StartingReplay,
            4 => SiteState::Replaying,
            5 => SiteState::StoppingReplay,
            6 => SiteState::Stopped,
            _ => SiteState::Unknown,
        }
    }
}

impl fmt::Display for SiteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SiteState::Unknown => "unknown",
            SiteState::Error => "error",
            SiteState::Syncing => "syncing",
            SiteState::StartingReplay => "starting_replay",
            SiteState::Replaying => "replaying",
            SiteState::StoppingReplay => "stopping_replay",
            SiteState::Stopped => "stopped",
        })
    }
}

/// The status one site reports for a mirrored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteStatus {
    /// Empty for the local site, the peer's mirror uuid for remote ones.
    pub mirror_uuid: String,
    pub state: SiteState,
    /// Free text from rbd-mirror; for replaying images a JSON document.
    pub description: String,
    /// Unix time of the last update.
    pub last_update: i64,
    /// Whether an rbd-mirror daemon is currently reporting for this site.
    pub up: bool,
}

impl SiteStatus {
    /// The state as `rbd mirror image status` prints it: `up+replaying`.
    pub fn summary(&self) -> String {
        format!("{}+{}", if self.up { "up" } else { "down" }, self.state)
    }

    /// Replication progress read from the description.
    pub fn progress(&self) -> super::status::ReplayProgress {
        super::status::parse_description(self.state, &self.description)
    }

    /// True for the status the local cluster reports about itself.
    pub fn is_local(&self) -> bool {
        self.mirror_uuid.is_empty()
    }
}

/// Mirroring status of one image as seen from every site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorGlobalStatus {
    pub name: String,
    pub info: ImageMirrorInfo,
    pub sites: Vec<SiteStatus>,
}

impl MirrorGlobalStatus {
    /// The local site's status, if one was reported.
    pub fn local(&self) -> Option<&SiteStatus> {
        self.sites.iter().find(|s| s.is_local())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_match_rbd_info() {
        assert_eq!(
            Features::DEFAULT.names(),
            vec![
                "layering",
                "exclusive-lock",
                "object-map",
                "fast-diff",
                "deep-flatten"
            ]
        );
        assert_eq!(Features(0).to_string(), "");
    }

    #[test]
    fn features_round_trip_through_names() {
        let f = Features::EXCLUSIVE_LOCK | Features::JOURNALING;
        let names: Vec<String> = f.names().iter().map(|s| s.to_string()).collect();
        assert_eq!(Features::try_from(names), Ok(f));
        assert!(Features::try_from(vec!["nope".to_string()]).is_err());
        assert_eq!(
            Features::from_name("journaling"),
            Some(Features::JOURNALING)
        );
        assert_eq!(Features::from_name("nope"), None);
    }

    fn received(primary_snap_id: u64, complete: bool) -> MirrorSnapshot {
        MirrorSnapshot {
            snap_id: 100 + primary_snap_id,
            state: MirrorSnapState::NonPrimary,
            complete,
            primary_mirror_uuid: "a".into(),
            primary_snap_id,
            last_copied_object_number: 0,
            peer_uuids: vec![],
        }
    }

    #[test]
    fn mirror_snapshot_arrives_only_when_complete_at_or_after_the_cut_over() {
        assert!(!mirror_snapshot_arrived(&[], 7));
        assert!(
            !mirror_snapshot_arrived(&[received(5, true)], 7),
            "older snapshot"
        );
        assert!(
            !mirror_snapshot_arrived(&[received(7, false)], 7),
            "still copying"
        );
        assert!(mirror_snapshot_arrived(
            &[received(5, true), received(7, true)],
            7
        ));
        assert!(
            mirror_snapshot_arrived(&[received(9, true)], 7),
            "a later one holds it too"
        );
        let mut primary = received(7, true);
        primary.state = MirrorSnapState::Primary;
        assert!(
            !mirror_snapshot_arrived(&[primary], 7),
            "primary snapshots do not count"
        );
    }

    #[test]
    fn site_status_summary_reads_like_the_cli() {
        let s = SiteStatus {
            mirror_uuid: String::new(),
            state: SiteState::from_raw(4),
            description: "replaying".into(),
            last_update: 0,
            up: true,
        };
        assert_eq!(s.summary(), "up+replaying");
        assert!(s.is_local());
        let down = SiteStatus {
            up: false,
            state: SiteState::from_raw(6),
            ..s
        };
        assert_eq!(down.summary(), "down+stopped");
    }

    #[test]
    fn mirror_snapshots_after_a_user_snapshot() {
        let snap = |id, state, complete, peers: &[&str]| MirrorSnapshot {
            snap_id: id,
            state,
            complete,
            primary_mirror_uuid: String::new(),
            primary_snap_id: 0,
            last_copied_object_number: 0,
            peer_uuids: peers.iter().map(|p| p.to_string()).collect(),
        };
        use MirrorSnapState::*;
        let received = [
            snap(3, NonPrimary, true, &[]),
            snap(6, NonPrimary, false, &[]),
        ];
        assert!(
            !complete_mirror_snapshot_after(&received, 5),
            "the later one is still copying"
        );
        assert!(complete_mirror_snapshot_after(&received, 2));
        let mine = [snap(4, Primary, true, &[]), snap(8, Primary, true, &["p"])];
        assert!(
            !primary_mirror_snapshot_after(&mine[..1], 3),
            "meant for no peer"
        );
        assert!(primary_mirror_snapshot_after(&mine, 7));
        assert!(!primary_mirror_snapshot_after(&mine, 8));
    }
}
