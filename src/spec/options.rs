//! The spec's `options:`: how the whole migration goes (mirroring mode,
//! timeouts, cleanup, how clones and bootable volumes move, the transfer,
//! what to do with an earlier adoption), with their defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ceph::MirrorMode;

/// Options for the whole migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Mirroring mode for Cinder-pool images (default: snapshot).
    #[serde(default = "default_mode")]
    pub mirror_mode: MirrorMode,
    /// Seconds to wait for a monitor (connecting, commands) before giving
    /// up; `ferry check` and `ferry plan` wait this long for OSDs too
    /// (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Seconds an OSD operation of `ferry run` (reads and writes of the
    /// images, their metadata and mirror status) may take before it fails
    /// (default 600; 0: no limit). Longer than `timeout_seconds`: a slow
    /// request while placement groups peer must not fail an hour's copy.
    #[serde(default = "default_data_timeout")]
    pub data_timeout_seconds: u64,
    /// Seconds a failing OpenStack call (no connection, a timeout, HTTP
    /// 5xx or 429) is retried before the step fails (default 120; 0: not
    /// retried). Calls that create something are not sent twice.
    #[serde(default = "default_api_retry")]
    pub api_retry_seconds: u64,
    /// Change features of images that a client has open (default: refuse;
    /// doing so can freeze the server using the image).
    #[serde(default)]
    pub allow_in_use: bool,
    /// Include the cleanup steps: disable mirroring on the source images and
    /// restore their original features (default: off).
    #[serde(default)]
    pub cleanup: bool,
    /// Source volume type → destination volume type (default: the same name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_types: BTreeMap<String, String>,
    /// Where bootable volumes arrive when both clouds are given: `glance`
    /// (an image to boot new servers from; default) or `cinder` (a volume).
    #[serde(default)]
    pub bootable_volumes: BootableTo,
    /// What a volume cloned from a Glance image becomes at the destination:
    /// `flat` (default) or `clone-of-parent` (a clone of the destination
    /// copy of the same Glance image, holding only what differs).
    #[serde(default, skip_serializing_if = "Clones::is_flat")]
    pub clones: Clones,
    /// What carries the data: `mirror` (rbd-mirror, then a copy at the
    /// destination; default) or `direct` (ferry reads the cut-over snapshot
    /// on the source cluster and writes the destination pool itself).
    #[serde(default, skip_serializing_if = "Transfer::is_mirror")]
    pub transfer: Transfer,
    /// What to do when the destination cloud holds an adoption of the same
    /// source made by another plan (a trial migration's volume, kept):
    /// `refuse` (default), `keep` it as the adoption, or `replace` it with
    /// this plan's verified copy. `ferry run --earlier-adoption` overrides it.
    #[serde(default, skip_serializing_if = "EarlierAdoption::is_refuse")]
    pub earlier_adoption: EarlierAdoption,
    /// Warm migration (default: on): an image in use is mirrored while it
    /// is written, and every `warm_interval` seconds a round carries what
    /// changed and brings the destination's copy and both digests up to
    /// date, so that once it is idle the cut-over costs seconds whatever
    /// its size. Off: ferry waits for the image to be idle, then takes the
    /// cut-over and copies it whole (the cold path). An image idle from the
    /// start takes no round either way.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub warm: bool,
    /// Seconds between two warm rounds (default 10; at least 1).
    #[serde(
        default = "default_warm_interval",
        skip_serializing_if = "is_default_warm_interval"
    )]
    pub warm_interval: u64,
    /// What happens to a volume's own snapshots (Cinder's
    /// `snapshot-<id>`): `carry` (default) copies each into the
    /// destination copy under its name, oldest first, and (with clouds)
    /// manages it as a Cinder snapshot of the adopted volume; `drop`
    /// leaves them on the source (the copy is the cut-over alone).
    #[serde(default, skip_serializing_if = "Snapshots::is_carry")]
    pub snapshots: Snapshots,
    /// Servers (`server:` entries): ferry stops each (`os-stop`) when its
    /// volumes are ready for the cut-over (warm: a round of every volume
    /// has arrived) and waits for `SHUTOFF` (default: off; ferry waits for
    /// the operator to stop it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_servers: bool,
    /// Servers: the server ferry creates at the destination from the moved
    /// volumes is started (default: on); off: it is stopped once created.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub start_servers: bool,
    /// Source flavor name → destination flavor name (default: the same).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flavors: BTreeMap<String, String>,
    /// Source network name → destination network name (default: the
    /// same); an empty name leaves the network out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, String>,
    /// Source availability zone → destination zone (default: the same);
    /// an empty name lets the destination's scheduler choose.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub availability_zones: BTreeMap<String, String>,
}

/// What happens to a volume's own (user) snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Snapshots {
    /// They travel with the volume: the destination copy holds each, with
    /// the same data, under the same name.
    #[default]
    Carry,
    /// They stay on the source: the copy is the cut-over alone.
    Drop,
}

impl Snapshots {
    /// The default: carry.
    pub fn is_carry(&self) -> bool {
        *self == Snapshots::Carry
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The default time between two warm rounds, in seconds.
pub const DEFAULT_WARM_INTERVAL: u64 = 10;

fn default_warm_interval() -> u64 {
    DEFAULT_WARM_INTERVAL
}

fn is_default_warm_interval(s: &u64) -> bool {
    *s == DEFAULT_WARM_INTERVAL
}

/// What a plan does with an adoption of the same source that another plan
/// made in the destination cloud (found by its `ferry_source_volume` or
/// `ferry_source` mark, with another plan's `ferry_plan`, or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EarlierAdoption {
    /// Stop before anything changes, naming it (the operator decides).
    #[default]
    Refuse,
    /// Take it as this plan's adoption, untouched; this plan's verified copy
    /// is not adopted (it stays in the pool, unmanaged, and is named).
    Keep,
    /// Adopt this plan's copy in its place. The earlier volume is kept with
    /// its data, renamed `<name>.ferry-replaced-<plan id>`, its
    /// `ferry_source_volume` mark moved to `ferry_replaced_source_volume`
    /// and `ferry_replaced_by` set: delete it once the new one is trusted.
    /// Refused while it is attached to a server. Glance images cannot be
    /// replaced (Glance never gives an image id twice).
    Replace,
}

impl EarlierAdoption {
    /// The default: refuse.
    pub fn is_refuse(&self) -> bool {
        *self == EarlierAdoption::Refuse
    }

    /// Its name in a spec (and a script).
    pub fn as_str(self) -> &'static str {
        match self {
            EarlierAdoption::Refuse => "refuse",
            EarlierAdoption::Keep => "keep",
            EarlierAdoption::Replace => "replace",
        }
    }
}

/// What carries an image's data from the source cluster to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transfer {
    /// rbd-mirror carries it into the mirrored pool (snapshot or journal
    /// mode); ferry copies it from there into the destination pool. The
    /// clusters must peer; an image in use keeps replicating until its
    /// cut-over.
    #[default]
    Mirror,
    /// ferry's engine reads the cut-over snapshot on the source cluster and
    /// writes the destination pool, hashing in flight (`--reread` reads the
    /// copy back to verify it). No mirroring, no feature changes, and no flat
    /// copy of a clone on the source: one snapshot is all that changes
    /// there. The host running the copy needs both clusters.
    Direct,
    /// Cinder volumes only: each volume is attached to the source conversion
    /// host, a new volume of the destination cloud to the destination one,
    /// and ferry streams the blocks between them over ssh (see
    /// `conversion_hosts`). For volumes of any Cinder backend, and Ceph
    /// clusters that cannot peer; volumes that the source Ceph pool does not
    /// hold take this path by themselves when conversion hosts are given.
    Stream,
}

impl Transfer {
    /// The default: mirror.
    pub fn is_mirror(&self) -> bool {
        *self == Transfer::Mirror
    }
}

/// What a volume cloned from a Glance image becomes at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clones {
    /// A flat volume holding all its data (the parent's included).
    #[default]
    Flat,
    /// A clone of `<destination Glance pool>/<parent image>@snap`, written
    /// only where its data differ from the parent's (copy-on-write space
    /// savings kept, as in the source cloud). The parent must move in the
    /// same migration or be at the destination already; otherwise flat.
    CloneOfParent,
}

impl Clones {
    /// The default: flat.
    pub fn is_flat(&self) -> bool {
        *self == Clones::Flat
    }
}

impl BootableTo {
    /// Whether a volume goes to the destination Glance pool as an image.
    pub fn to_glance(self, bootable: bool) -> bool {
        bootable && self == BootableTo::Glance
    }
}

/// Where a bootable volume arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootableTo {
    #[default]
    Glance,
    Cinder,
}

fn default_mode() -> MirrorMode {
    MirrorMode::Snapshot
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECONDS
}

/// The default limit of a monitor operation (see
/// [`Options::timeout_seconds`]).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// A run's Ceph limits where no spec sets them (a role run of a bundle, a
/// stream agent's RBD endpoint): the spec's defaults.
pub const DEFAULT_RUN_TIMEOUTS: crate::ceph::Timeouts = crate::ceph::Timeouts {
    control: std::time::Duration::from_secs(DEFAULT_TIMEOUT_SECONDS),
    data: std::time::Duration::from_secs(DEFAULT_DATA_TIMEOUT_SECONDS),
};

fn default_data_timeout() -> u64 {
    DEFAULT_DATA_TIMEOUT_SECONDS
}

/// The default limit of an OSD operation during a run (see
/// [`Options::data_timeout_seconds`]).
pub const DEFAULT_DATA_TIMEOUT_SECONDS: u64 = 600;

fn default_api_retry() -> u64 {
    crate::openstack::retry::DEFAULT_DEADLINE_SECONDS
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mirror_mode: default_mode(),
            timeout_seconds: default_timeout(),
            data_timeout_seconds: default_data_timeout(),
            api_retry_seconds: default_api_retry(),
            allow_in_use: false,
            cleanup: false,
            volume_types: BTreeMap::new(),
            bootable_volumes: BootableTo::Glance,
            clones: Clones::Flat,
            transfer: Transfer::Mirror,
            earlier_adoption: EarlierAdoption::Refuse,
            warm: true,
            warm_interval: DEFAULT_WARM_INTERVAL,
            snapshots: Snapshots::Carry,
            stop_servers: false,
            start_servers: true,
            flavors: BTreeMap::new(),
            networks: BTreeMap::new(),
            availability_zones: BTreeMap::new(),
        }
    }
}
