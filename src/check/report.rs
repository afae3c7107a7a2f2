//! What `ferry check` found and what it thinks of it: the report's types,
//! serialised as `ferry check --output json`.

use std::path::PathBuf;

use serde::Serialize;

use crate::ceph::{
    CephError, ErrorKind, Features, Health, Locker, MirrorMode, MirrorPeer, Parent, PoolMirrorMode,
    ServiceDaemon, Usage, Watcher,
};
use crate::plan::Site;
use crate::spec::ImageRef;

/// Everything `check` found, and what it thinks of it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub source: SiteReport,
    pub destination: SiteReport,
    /// The clouds the spec names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clouds: Vec<CloudReport>,
    pub images: Vec<ImageReport>,
    /// The stream path's conversion hosts, when an image streams.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conversion_hosts: Vec<HostReport>,
    pub problems: Vec<Problem>,
}

/// A conversion host, as `ssh HOST <ferry> --version` found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    pub side: Site,
    pub ssh: String,
    /// What it answered (`ferry 0.1.0`).
    pub version: Option<String>,
    /// Why it did not.
    pub error: Option<String>,
}

impl CheckReport {
    /// True when nothing stands in the way of a migration.
    pub fn ok(&self) -> bool {
        !self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// What was found on one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct SiteReport {
    pub side: Site,
    pub cluster: String,
    pub conf: PathBuf,
    pub client: String,
    /// Why connecting failed, if it did.
    pub connect_error: Option<Failure>,
    pub fsid: Option<String>,
    pub health: Option<Health>,
    pub usage: Option<Usage>,
    pub pools: Vec<PoolReport>,
    /// rbd-mirror daemons registered with this cluster (destination only).
    pub rbd_mirror_daemons: Option<Vec<ServiceDaemon>>,
}

/// What was found in one cloud.
#[derive(Debug, Clone, Serialize)]
pub struct CloudReport {
    pub side: Site,
    /// The clouds.yaml entry (or `env`).
    pub name: String,
    pub region: Option<String>,
    /// Why connecting or authenticating failed, if it did.
    pub error: Option<String>,
    pub project_id: Option<String>,
    pub roles: Vec<String>,
    /// Service type → endpoint URL, or why none was found.
    pub endpoints: Vec<(String, Result<String, String>)>,
}

/// A Ceph error as the report keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<&CephError> for Failure {
    fn from(e: &CephError) -> Self {
        Failure {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// What a pool is for in the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolPurpose {
    /// Source Cinder pool (image-mode mirroring).
    Cinder,
    /// Source Glance pool (pool-mode mirroring).
    Glance,
    /// Destination pool receiving the mirrored Cinder images.
    MirroredCinder,
    /// Destination pool receiving the mirrored Glance images.
    MirroredGlance,
    /// Destination Cinder pool.
    DestCinder,
    /// Destination Glance pool.
    DestGlance,
}

impl PoolPurpose {
    pub(super) fn describe(self) -> &'static str {
        match self {
            PoolPurpose::Cinder => "cinder",
            PoolPurpose::Glance => "glance",
            PoolPurpose::MirroredCinder => "mirrored cinder",
            PoolPurpose::MirroredGlance => "mirrored glance",
            PoolPurpose::DestCinder => "cinder",
            PoolPurpose::DestGlance => "glance",
        }
    }

    pub(super) fn mirrored(self) -> bool {
        !matches!(self, PoolPurpose::DestCinder | PoolPurpose::DestGlance)
    }
}

/// What was found about one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolReport {
    pub name: String,
    pub purpose: PoolPurpose,
    pub error: Option<Failure>,
    pub mirror_mode: Option<PoolMirrorMode>,
    pub mirror_uuid: Option<String>,
    pub peers: Vec<MirrorPeer>,
}

/// What was found about one image to move.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub image: ImageRef,
    pub error: Option<Failure>,
    pub size: Option<u64>,
    pub features: Option<Features>,
    pub user_snapshots: Vec<String>,
    pub mirror_snapshots: usize,
    pub watchers: Vec<Watcher>,
    pub lockers: Vec<Locker>,
    /// Who uses the image, by the one rule (`ceph::image_users`).
    pub users: Vec<String>,
    /// The snapshot the image is a clone of.
    pub parent: Option<Parent>,
    /// The image starts with a LUKS header.
    pub encrypted: bool,
    pub mirroring: Option<MirrorMode>,
    pub primary: Option<bool>,
    /// The destination copy already exists (a previous run, or a name clash).
    pub dest_exists: Option<bool>,
    /// The volume takes the stream path (not read on the source cluster).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub streamed: bool,
}

impl ImageReport {
    /// In use: a client writes to it (`ceph::image_users`).
    pub fn in_use(&self) -> bool {
        !self.users.is_empty()
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Warning,
    Error,
}

/// Something that stands in the way (error) or deserves attention (warning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// What it is about: `site-b`, `site-a/volumes`, `site-a/volumes/volume-1`.
    pub subject: String,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}
