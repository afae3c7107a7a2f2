//! The places an image's migration reads and writes, named once: the
//! phase builders take every image and key their steps name from here.

use crate::plan::{CephImage, ImageAt, Site, SourceId};
use crate::spec::ImageRef;

use super::BuildOptions;

/// Every image, snapshot and key an image's steps name.
pub(super) struct Names {
    /// The cut-over snapshot's name (`ferry-cutover-<plan>`).
    pub cut: String,
    /// The source image itself, at its head.
    pub source: ImageAt,
    /// Its cut-over snapshot: what a direct transfer reads, and what a
    /// clone's flat copy is made from.
    pub source_cut: ImageAt,
    /// What is mirrored: the image itself, or a clone's flat copy on the
    /// source (the carrier).
    pub carrier: ImageAt,
    /// The carrier's cut-over snapshot.
    pub carrier_cut: ImageAt,
    /// The carrier's mirrored image at the destination.
    pub mirrored: ImageAt,
    /// The cut-over snapshot as mirrored: what a mirrored copy reads.
    pub mirrored_cut: ImageAt,
    /// The copy while it is written and verified, under its partial name.
    pub partial: ImageAt,
    /// The copy under its final name.
    pub copy: ImageAt,
    /// The copy's snapshot a Glance image is registered at (and that clones
    /// of it are cloned from).
    pub copy_snap: ImageAt,
    /// The source image, as the copy's records name it.
    pub origin: SourceId,
    /// The key of the source's digest at the cut-over.
    pub sum_key: String,
    /// The key of the image's original record.
    pub original_key: String,
}

impl Names {
    pub(super) fn of(
        opts: &BuildOptions,
        r: &ImageRef,
        facts: &CephImage,
        flat_carrier: bool,
    ) -> Names {
        let at = |site: Site, pool: &str, image: &str, snap: Option<&str>| ImageAt {
            site,
            pool: pool.to_string(),
            image: image.to_string(),
            snap: snap.map(str::to_string),
        };
        let cut = crate::plan::cutover_snap(&opts.plan_id);
        let carrier = if flat_carrier {
            crate::plan::flat_name(&r.name)
        } else {
            r.name.clone()
        };
        let copy = at(Site::Destination, &r.dest_pool, &r.dest_name, None);
        Names {
            source: at(Site::Source, &r.pool, &r.name, None),
            source_cut: at(Site::Source, &r.pool, &r.name, Some(&cut)),
            carrier: at(Site::Source, &r.pool, &carrier, None),
            carrier_cut: at(Site::Source, &r.pool, &carrier, Some(&cut)),
            mirrored: at(Site::Destination, &r.mirrored_pool, &carrier, None),
            mirrored_cut: at(Site::Destination, &r.mirrored_pool, &carrier, Some(&cut)),
            partial: at(
                Site::Destination,
                &r.dest_pool,
                &crate::plan::partial_name(&r.dest_name),
                None,
            ),
            copy_snap: ImageAt {
                snap: Some("snap".into()),
                ..copy.clone()
            },
            copy,
            origin: SourceId {
                fsid: opts.source_fsid.clone().unwrap_or_default(),
                pool: r.pool.clone(),
                image: r.name.clone(),
                id: facts.id.clone(),
            },
            sum_key: crate::plan::checksum_key(&cut),
            original_key: crate::plan::original_key(&opts.plan_id),
            cut,
        }
    }
}
