//! Reading the conditions of a plan's steps on the clusters and clouds: an
//! image there, its features, metadata, snapshots and users, a verified
//! copy's record. Header reads first where they answer, an open otherwise.

use super::*;
use crate::ceph::HeaderSnapshot;

impl Ctx<'_> {
    pub(crate) fn exists(&self, at: &ImageAt) -> anyhow::Result<bool> {
        // Most answers need no open (its configuration costs ~1.5 ms of CPU
        // and memory while held): a format 2 image's id object, or nothing.
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        if let Some(known) = pool.image_named(&at.image)? {
            return Ok(known);
        }
        let head = plain(at);
        match self.with_image(&head, false, |_| Ok(())) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// An image's features (at its snapshot, if it names one).
    pub(super) fn features(&self, at: &ImageAt) -> anyhow::Result<Features> {
        if at.snap.is_none() {
            if let (pool, Some(Some(id))) = self.header_id(at)? {
                if let Some(f) = pool.head_features(&id)? {
                    return Ok(f);
                }
            }
        }
        self.with_image(at, false, |img| img.features())
    }

    /// A metadata value of an image (None when the image or key is missing).
    pub(crate) fn metadata(&self, at: &ImageAt, key: &str) -> anyhow::Result<Option<String>> {
        match self.header_id(at)? {
            (_, Some(None)) => return Ok(None),
            (pool, Some(Some(id))) => {
                if let Some(value) = pool.head_metadata(&id, key)? {
                    return Ok(value);
                }
            }
            (_, None) => {}
        }
        match self.with_image(&plain(at), false, |img| img.metadata_get(key)) {
            Ok(v) => Ok(v),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The SHA-256 the copy of `source` was verified with, as far as this
    /// run can see. The destination reads its record, which must name
    /// `origin`. The source reads its own note; or else takes the record
    /// (the destination's, or the hand-off's) only when it names this very
    /// image (cluster fsid, pool, name, id) and carries the cut-over's
    /// checksum: a record of other data is an error, never a success.
    pub(crate) fn verified_sum(
        &self,
        source: &ImageAt,
        copy: &ImageAt,
        origin: &SourceId,
    ) -> anyhow::Result<Option<String>> {
        let recorded = match self.access.dst {
            Some(_) => self.record(copy, origin)?,
            None => None,
        };
        if self.access.src.is_none() {
            return Ok(recorded.map(|r| r.sha256));
        }
        let snap = source.snap.as_deref().unwrap_or_default();
        // The record names the image itself (a clone, not the flat copy
        // mirrored in its place, which holds the checksum); the note that
        // it is verified goes on the image itself too.
        let origin_at = ImageAt {
            site: Site::Source,
            pool: origin.pool.clone(),
            image: origin.image.clone(),
            snap: None,
        };
        if let Some(v) = self.metadata(&origin_at, &crate::plan::verified_key(snap))? {
            return Ok(Some(v));
        }
        let key = format!("{}/{}", origin.pool, origin.image);
        let Some(rec) = recorded.or_else(|| self.verified.get(&key).cloned()) else {
            return Ok(None);
        };
        let live = SourceId {
            fsid: self.cluster(Site::Source)?.fsid()?,
            pool: origin.pool.clone(),
            image: origin.image.clone(),
            id: match self.header_id(&origin_at)? {
                (_, Some(Some(id))) => id,
                _ => self.with_image(&origin_at, false, |img| img.id())?,
            },
        };
        if rec.source != live {
            bail!(
                "the copy {copy} is recorded as verified for {}, not for this image ({live}): not the same data; nothing is cleaned up",
                rec.source
            );
        }
        match self.metadata(source, &crate::plan::checksum_key(snap))? {
            Some(sum) if sum == rec.sha256 => Ok(Some(sum)),
            Some(sum) => bail!(
                "the copy of {key} was verified with digest {}, but the cut-over {snap} has {sum}: not the same data; nothing is cleaned up",
                rec.sha256
            ),
            None => bail!("{source} has no checksum ({}): was the cut-over made by this plan?", crate::plan::checksum_key(snap)),
        }
    }

    /// This plan's record in the destination pool of the verified copy
    /// `copy`, when there is one; a record there of another source than
    /// `origin` (two images for one copy name) is an error.
    /// A record whose copy is gone (deleted after the run) is none: the
    /// copy is made and verified again.
    pub(crate) fn record(
        &self,
        copy: &ImageAt,
        origin: &SourceId,
    ) -> anyhow::Result<Option<VerifiedRecord>> {
        let Some(rec) = self.any_record(copy)? else {
            return Ok(None);
        };
        if rec.source != *origin {
            bail!(
                "the verified copy {copy} holds {}, not {origin}: two images for one copy name? nothing more is done with it",
                rec.source
            );
        }
        if let Some(id) = rec.copy_id.as_deref().filter(|id| !id.is_empty()) {
            let pool = self.dst()?.pool(&copy.pool)?;
            if !pool.image_id_live(id)? {
                tracing::warn!(
                    "the record of the verified copy {copy} names image id {id}, which pool {} no longer holds (or holds in its trash): the copy is made again",
                    copy.pool
                );
                return Ok(None);
            }
        }
        Ok(Some(rec))
    }

    /// This plan's record of `copy`, whatever source it names.
    pub(super) fn any_record(&self, copy: &ImageAt) -> anyhow::Result<Option<VerifiedRecord>> {
        let object = crate::plan::record_object(&self.plan_id());
        let Some(text) = self
            .dst()?
            .pool(&copy.pool)?
            .object_xattr(&object, &copy.image)?
        else {
            return Ok(None);
        };
        VerifiedRecord::parse(&text)
            .map(Some)
            .map_err(|e| anyhow!("the record of {copy} in {object}: {e}"))
    }

    /// The clients using an image, by the one rule (`ceph::image_users`).
    pub(crate) fn users(&self, at: &ImageAt) -> anyhow::Result<Vec<String>> {
        // Exclusive-lock held by nobody: nobody writes it; no open needed.
        if let (pool, Some(Some(id))) = self.header_id(at)? {
            if pool.exclusive_lock_free(&id)? == Some(true) {
                return Ok(Vec::new());
            }
        }
        self.with_image(&plain(at), false, |img| crate::plan::users_of(img))
    }

    pub(super) fn all_hold(&self, checks: &[Check]) -> anyhow::Result<bool> {
        for c in checks {
            if !self.holds(c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(crate) fn holds(&self, check: &Check) -> anyhow::Result<bool> {
        Ok(match check {
            Check::Exists { image } => self.exists(image)?,
            Check::Absent { image } => !self.exists(image)?,
            Check::NotInUse { image } => self.users(image)?.is_empty(),
            Check::FeaturesPresent { image, features } => self.features(image)?.contains(*features),
            Check::FeaturesAbsent { image, features } => self.features(image)?.0 & features.0 == 0,
            Check::MirroringEnabled { image, mode } => match self.header_mirror_entry(image)? {
                Some(entry) => {
                    entry.is_some_and(|(s, m)| s != ImageMirrorState::Disabled && m == *mode)
                }
                None => self.with_image(image, false, |img| img.mirror_mode())? == Some(*mode),
            },
            Check::MirroringDisabled { image } => match self.header_mirror_entry(image)? {
                Some(entry) => entry.is_none_or(|(s, _)| s == ImageMirrorState::Disabled),
                None => {
                    self.with_image(image, false, |img| img.mirror_info())?
                        .state
                        == ImageMirrorState::Disabled
                }
            },
            // Snapshot mode: the mirror snapshot that carried it is complete
            // (one open reads both).
            Check::MirrorSynced {
                mirrored,
                mode: MirrorMode::Snapshot,
                ..
            } => {
                let name = mirrored
                    .snap
                    .as_deref()
                    .ok_or_else(|| anyhow!("{mirrored} names no snapshot"))?;
                if let Some(snaps) = self.header_snapshots(mirrored)? {
                    return Ok(match snaps.iter().find(|s| s.name == name) {
                        None => false,
                        Some(s) => complete_mirror_snapshot_after(&mirror_of(&snaps), s.id),
                    });
                }
                let synced = self.with_image(&plain(mirrored), false, |img| {
                    let id = img.snapshots()?.into_iter().find(|s| s.name == name);
                    Ok(match id {
                        None => false,
                        Some(s) => complete_mirror_snapshot_after(&img.mirror_snapshots()?, s.id),
                    })
                });
                match synced {
                    Ok(b) => b,
                    Err(e) if not_found(&e) => false,
                    Err(e) => return Err(e),
                }
            }
            Check::MirrorSynced { mirrored, .. } => {
                match self.snap_id(mirrored)? {
                    None => false,
                    // Journal mode: replay creates the snapshot after every
                    // write before it, but an initial image sync creates it
                    // before copying its data. Only a status written after the
                    // snapshot appeared that says "replaying" (the sync is
                    // over) proves the data is there; the status refreshes
                    // about every 30 s.
                    Some(id) => {
                        let (since, status) = self.with_image(&plain(mirrored), false, |img| {
                            Ok((img.snap_timestamp(id)?, img.mirror_global_status()?))
                        })?;
                        status.local().is_some_and(|l| {
                            l.state == crate::ceph::SiteState::Replaying && l.last_update > since
                        })
                    }
                }
            }
            Check::SnapshotExists { image } => self.snap_id(image)?.is_some(),
            Check::MetadataPresent { image, key } => self.metadata(image, key)?.is_some(),
            Check::MetadataAbsent { image, key } => self.metadata(image, key)?.is_none(),
            Check::SnapshotAbsent { image } => self.snap_id(image)?.is_none(),
            Check::MirrorSnapshotAfter { image } => match self.snap_id(image)? {
                None => false,
                Some(id) => {
                    let mine = match self.header_snapshots(image)? {
                        Some(snaps) => mirror_of(&snaps),
                        None => {
                            self.with_image(&plain(image), false, |img| img.mirror_snapshots())?
                        }
                    };
                    primary_mirror_snapshot_after(&mine, id)
                }
            },
            Check::SnapshotProtected { image } => {
                let snap = image.snap.clone().unwrap_or_default();
                let head = plain(image);
                match self.with_image(&head, false, |img| img.snap_is_protected(&snap)) {
                    Ok(p) => p,
                    Err(e) if not_found(&e) => false,
                    Err(e) => return Err(e),
                }
            }
            Check::Verified {
                source,
                copy,
                origin,
            } => self.verified_sum(source, copy, origin)?.is_some(),
            Check::Published { image } => self.published(image)?,
            // A volume the stream path made is adopted once its pending
            // mark is gone.
            Check::VolumeAdopted { source_volume } => self.volume_adopted(source_volume)?,
            Check::VolumeCreated { source_volume } => self
                .stream_target(source_volume)?
                .is_some_and(|v| v.status != "creating" && !v.status.starts_with("error")),
            // Verified by this plan's stream, not by a key an earlier move
            // left (see `plan::stream_verified`).
            Check::StreamVerified { source_volume } => {
                let plan = self.plan_id();
                self.stream_target(source_volume)?.is_some_and(|v| {
                    crate::plan::stream_verified(&v.metadata, &plan, source_volume)
                })
            }
            Check::ImageRegistered { id } => self.image_registered(id)?,
            Check::ServerStopped { server } => self.server_stopped(server)?,
            Check::ServerCreated {
                source_server,
                start,
            } => self.server_made(source_server, if *start { "ACTIVE" } else { "SHUTOFF" })?,
            Check::RoundArrived { source, image } => {
                self.round_arrived(image)? || self.users(source)?.is_empty()
            }
        })
    }

    /// Whether the source server `id` is `SHUTOFF` (false: no such server).
    fn server_stopped(&self, id: &str) -> anyhow::Result<bool> {
        match crate::openstack::Nova(self.src_cloud()?).server(id) {
            Ok(s) => Ok(crate::openstack::compute::status(&s) == "SHUTOFF"),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the server this plan made for `source_server` has `status`.
    fn server_made(&self, source_server: &str, status: &str) -> anyhow::Result<bool> {
        let found =
            crate::openstack::Nova(self.dst_cloud()?).made_for(source_server, &self.plan_id())?;
        Ok(found
            .iter()
            .any(|s| crate::openstack::compute::status(s) == status))
    }

    /// Whether a warm round (or the cut-over) of this plan has arrived on
    /// the mirrored image `at`. A run without the destination cluster (the
    /// source cloud's part) cannot see it: its operator chooses the moment.
    fn round_arrived(&self, at: &ImageAt) -> anyhow::Result<bool> {
        if self.access.dst.is_none() {
            return Ok(true);
        }
        let plan = self.plan_id();
        let cut = crate::plan::cutover_snap(&plan);
        let names: Vec<String> = match self.header_snapshots(at)? {
            Some(snaps) => snaps.into_iter().map(|s| s.name).collect(),
            None => match self.with_image(&plain(at), false, |img| img.snapshots()) {
                Ok(snaps) => snaps.into_iter().map(|s| s.name).collect(),
                Err(e) if not_found(&e) => Vec::new(),
                Err(e) => return Err(e),
            },
        };
        Ok(names
            .iter()
            .any(|n| *n == cut || crate::plan::round_of(n).is_some_and(|(p, _)| p == plan)))
    }

    /// The snapshots of the image `at` names (its head), read from its
    /// header without an open: `Some(empty)` when there is no such image,
    /// None when the header does not answer (the caller opens it).
    fn header_snapshots(&self, at: &ImageAt) -> anyhow::Result<Option<Vec<HeaderSnapshot>>> {
        Ok(match self.header_id(at)? {
            (_, Some(None)) => Some(Vec::new()),
            (pool, Some(Some(id))) => pool.snapshot_list(&id)?,
            (_, None) => None,
        })
    }

    /// The mirroring entry (state, mode) of the image `at` names, read
    /// without an open: `Some(None)` when mirroring is disabled; `None`
    /// when the answer must come from an open (no such image, a format 1
    /// image, an entry not understood).
    #[allow(clippy::type_complexity)]
    fn header_mirror_entry(
        &self,
        at: &ImageAt,
    ) -> anyhow::Result<Option<Option<(ImageMirrorState, MirrorMode)>>> {
        Ok(match self.header_id(at)? {
            (pool, Some(Some(id))) => pool.mirror_entry(&id)?,
            _ => None,
        })
    }

    /// The size and object size of the image `at` names, at its head.
    pub(crate) fn size(&self, at: &ImageAt) -> anyhow::Result<(u64, u64)> {
        if let (pool, Some(Some(id))) = self.header_id(at)? {
            if let Some(size) = pool.head_size(&id)? {
                return Ok(size);
            }
        }
        let info = self.with_image(&plain(at), false, |img| img.info())?;
        Ok((info.size, info.object_size))
    }

    /// All metadata of the image `at` names.
    pub(crate) fn metadata_list(&self, at: &ImageAt) -> anyhow::Result<Vec<(String, String)>> {
        if let (pool, Some(Some(id))) = self.header_id(at)? {
            if let Some(all) = pool.head_metadata_list(&id)? {
                return Ok(all);
            }
        }
        self.with_image(&plain(at), false, |img| img.metadata_list())
    }

    /// The mirror snapshots of the image `at` names, oldest first.
    pub(super) fn mirror_snapshots(
        &self,
        at: &ImageAt,
    ) -> anyhow::Result<Vec<crate::ceph::MirrorSnapshot>> {
        if let (pool, Some(Some(id))) = self.header_id(at)? {
            if let Some(snaps) = pool.snapshot_list(&id)? {
                return Ok(mirror_of(&snaps));
            }
        }
        self.with_image(&plain(at), false, |img| img.mirror_snapshots())
    }

    /// The pool of the image `at` names and its id, read without an open
    /// (`Pool::image_id_or_absent`): `Some(None)` when there is no image of
    /// that name, `None` for a format 1 image (the caller opens it).
    fn header_id(
        &self,
        at: &ImageAt,
    ) -> anyhow::Result<(crate::ceph::Pool<'_>, Option<Option<String>>)> {
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        let id = pool.image_id_or_absent(&at.image)?;
        Ok((pool, id))
    }

    /// The id of the snapshot `at` names (None when there is none).
    pub(crate) fn snap_id(&self, at: &ImageAt) -> anyhow::Result<Option<u64>> {
        let name = at
            .snap
            .as_deref()
            .ok_or_else(|| anyhow!("{at} names no snapshot"))?;
        if let Some(snaps) = self.header_snapshots(at)? {
            return Ok(snaps.into_iter().find(|s| s.name == name).map(|s| s.id));
        }
        let head = plain(at);
        match self.with_image(&head, false, |img| img.snapshots()) {
            Ok(snaps) => Ok(snaps.into_iter().find(|s| s.name == name).map(|s| s.id)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) fn holds_protected(&self, image: &ImageAt) -> anyhow::Result<bool> {
        self.holds(&Check::SnapshotProtected {
            image: image.clone(),
        })
    }
}

/// The mirror snapshots among `snaps`, as `Image::mirror_snapshots` gives
/// them.
fn mirror_of(snaps: &[HeaderSnapshot]) -> Vec<crate::ceph::MirrorSnapshot> {
    snaps.iter().filter_map(|s| s.mirror.clone()).collect()
}
