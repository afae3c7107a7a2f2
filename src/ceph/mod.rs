//! Ceph access: librados (through the `ceph` crate's declarations) and a thin
//! librbd binding of our own. Every `unsafe` block in ferry lives below this
//! module; handles close on drop, and children borrow their parents
//! (`Image` → `Pool` → `Cluster`), so closing in the wrong order does not compile.
//!
//! librados and librbd calls block: call them from plain threads or
//! `spawn_blocking`, never directly on an async runtime.

mod aio;
mod clients;
mod cluster;
mod error;
mod ffi;
mod image;
mod pool;
mod status;
mod types;

pub use aio::{AioRead, AioWrite};
pub use clients::{image_users, user_words, ImageUser};
pub use cluster::{
    Cluster, ClusterConfig, Health, HealthCheck, PoolSpace, ServiceDaemon, Timeouts, Usage,
};
pub use error::{CephError, ErrorKind, Result};
pub use image::Image;
pub use pool::Pool;
pub use status::{parse_description, ReplayProgress};
pub use types::{
    complete_mirror_snapshot_after, mirror_snapshot_arrived, primary_mirror_snapshot_after,
    Features, ImageInfo, ImageMirrorInfo, ImageMirrorState, Locker, MirrorGlobalStatus, MirrorMode,
    MirrorPeer, MirrorSnapState, MirrorSnapshot, Parent, PeerDirection, PoolMirrorMode, SiteState,
    SiteStatus, SnapNamespace, Snapshot, Watcher,
};

/// The librbd version ferry is linked against, as `major.minor.extra`.
pub fn librbd_version() -> String {
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: three out-pointers to locals.
    unsafe { ffi::rbd_version(&mut a, &mut b, &mut c) };
    format!("{a}.{b}.{c}")
}
