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
mod header;
mod image;
mod image_mirror;
mod pool;
mod status;
mod types;

pub use aio::{AioRead, AioWrite};
pub use clients::{image_users, user_words, ImageUser};
pub use cluster::{
    Cluster, ClusterConfig, Health, HealthCheck, PoolSpace, ServiceDaemon, Timeouts, Usage,
};
pub use error::{CephError, ErrorKind, Result};
pub use header::{HeaderSnapshot, PlainImage};
pub use image::Image;
pub use pool::Pool;
pub use status::{parse_description, ReplayProgress};
pub use types::{
    complete_mirror_snapshot_after, mirror_snapshot_arrived, primary_mirror_snapshot_after,
    Features, ImageInfo, ImageMirrorInfo, ImageMirrorState, Locker, MirrorGlobalStatus, MirrorMode,
    MirrorPeer, MirrorSnapState, MirrorSnapshot, Parent, PeerDirection, PoolMirrorMode, SiteState,
    SiteStatus, SnapNamespace, Snapshot, Watcher,
};

static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static OPENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Ceph reads and commands sent so far by this process (image opens,
/// monitor commands, object reads, pool-wide listings): the load a run
/// puts on the clusters, beside [`image_opens`].
pub fn calls_sent() -> u64 {
    CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Images opened so far by this process (each builds a whole librbd
/// configuration: the costliest call a wait can make).
pub fn image_opens() -> u64 {
    OPENS.load(std::sync::atomic::Ordering::Relaxed)
}

static OPEN_NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static OPEN_MOST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The most images this process has held open at once (each open holds a
/// copy of librbd's whole configuration, ~0.4 MiB: the largest share of a
/// run's memory after the libraries).
pub fn images_open_at_most() -> u64 {
    OPEN_MOST.load(std::sync::atomic::Ordering::Relaxed)
}

/// An image was opened (`true`) or closed.
fn open_now(opened: bool) {
    use std::sync::atomic::Ordering::Relaxed;
    if opened {
        let now = OPEN_NOW.fetch_add(1, Relaxed) + 1;
        OPEN_MOST.fetch_max(now, Relaxed);
    } else {
        OPEN_NOW.fetch_sub(1, Relaxed);
    }
}

fn counted(open: bool) {
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if open {
        OPENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The librbd version ferry is linked against, as `major.minor.extra`.
pub fn librbd_version() -> String {
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: three out-pointers to locals.
    unsafe { ffi::rbd_version(&mut a, &mut b, &mut c) };
    format!("{a}.{b}.{c}")
}
