//! Where a clone's destination copy comes from: a clone of its Glance
//! parent's destination copy, or a flat image.

use crate::ceph::Parent;
use crate::plan::{ImageAt, ImageFacts, Site};
use crate::spec::{Clones, ImageKind, ImageRef};

use super::BuildOptions;

/// What the destination copy of a clone is made from.
pub(super) enum CloneBase {
    /// Flat: the clone does not qualify (the reason, for the warnings), or
    /// flat was asked for (None).
    Flat(Option<String>),
    /// A clone of this destination snapshot; `how` says where it comes from.
    Parent { snap: ImageAt, how: String },
}

/// Where a clone's destination copy comes from, with `clones:
/// clone-of-parent`: the destination copy of its Glance parent when that
/// parent moves in the same migration or was found at the destination.
pub(super) fn clone_base(
    opts: &BuildOptions,
    parent: &Parent,
    images: &[(ImageRef, ImageFacts)],
) -> CloneBase {
    if opts.clones == Clones::Flat {
        return CloneBase::Flat(None);
    }
    let glance = opts.source_glance_pool.as_deref();
    if glance != Some(parent.pool.as_str()) || !parent.namespace.is_empty() {
        return CloneBase::Flat(Some(format!(
            "clones: clone-of-parent keeps clones of Glance images (in pool {}); its parent {parent} is not one: it arrives flat",
            glance.unwrap_or("(no source.pools.glance)")
        )));
    }
    let moved = images.iter().enumerate().find(|(_, (r, _))| {
        r.kind == ImageKind::Glance && r.pool == parent.pool && r.name == parent.image
    });
    if let Some((k, (r, _))) = moved {
        return CloneBase::Parent {
            snap: ImageAt {
                site: Site::Destination,
                pool: r.dest_pool.clone(),
                image: r.dest_name.clone(),
                snap: Some("snap".into()),
            },
            how: format!(
                "moved in this migration as image {}, whose copy it waits for",
                k + 1
            ),
        };
    }
    let Some(dest_pool) = opts.dest_glance_pool.as_deref() else {
        return CloneBase::Flat(Some(
            "clones: clone-of-parent needs destination.pools.glance: it arrives flat".into(),
        ));
    };
    let snap = ImageAt {
        site: Site::Destination,
        pool: dest_pool.to_string(),
        image: parent.image.clone(),
        snap: Some("snap".into()),
    };
    if opts
        .published_parents
        .contains(&format!("{}/{}@snap", snap.pool, snap.image))
    {
        return CloneBase::Parent {
            snap,
            how: "at the destination already".into(),
        };
    }
    CloneBase::Flat(Some(format!(
        "clones: clone-of-parent: its parent {parent} is not part of this migration, and {snap} was not found protected at the destination when planning: it arrives flat (add the Glance image to this migration to keep the volume a clone)"
    )))
}
