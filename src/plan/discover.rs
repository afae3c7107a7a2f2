//! Discovery: read what the plan depends on from the source cluster. Reads
//! only; nothing is changed.

use serde::{Deserialize, Serialize};

use crate::ceph::{
    CephError, Cluster, Features, ImageMirrorState, MirrorMode, PoolMirrorMode, SnapNamespace,
};
use crate::spec::{ImageRef, Spec};

/// What the source cluster says about one image before anything is changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    pub size: u64,
    /// Features before the migration: cleanup restores these.
    pub features: Features,
    /// User snapshots; they are mirrored too.
    pub user_snapshots: Vec<String>,
    /// Mirroring mode if mirroring is already enabled.
    pub mirroring: Option<MirrorMode>,
    /// Whether a client other than ferry watches the image.
    pub in_use: bool,
    /// The source pool's mirroring mode.
    pub pool_mode: PoolMirrorMode,
}

/// Reads the facts for every image of the spec from `source`, the already
/// connected source cluster.
pub fn discover(source: &Cluster, spec: &Spec) -> Result<Vec<(ImageRef, ImageFacts)>, CephError> {
    spec.image_refs()
        .into_iter()
        .map(|r| {
            let facts = image_facts(source, &r)?;
            Ok((r, facts))
        })
        .collect()
}

fn image_facts(cluster: &Cluster, r: &ImageRef) -> Result<ImageFacts, CephError> {
    let pool = cluster.pool(&r.pool)?;
    // Read-only: no watch of our own, so any watcher is someone else.
    let img = pool.open_image_read_only(&r.name, None)?;
    let info = img.info()?;
    let mirroring = match img.mirror_info()?.state {
        ImageMirrorState::Disabled => None,
        _ => img.mirror_mode()?,
    };
    Ok(ImageFacts {
        size: info.size,
        features: info.features,
        user_snapshots: img
            .snapshots()?
            .into_iter()
            .filter(|s| s.namespace == SnapNamespace::User)
            .map(|s| s.name)
            .collect(),
        mirroring,
        in_use: !img.watchers()?.is_empty(),
        pool_mode: pool.mirror_mode()?,
    })
}
