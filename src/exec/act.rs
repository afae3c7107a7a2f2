//! What each step does (the plan's actions), and putting the source back
//! when a run fails before its cut-over.

use super::*;

impl Ctx<'_> {
    /// Takes the user snapshot `at` names, unless it exists. With `frozen`
    /// (the step required the image idle, and that was checked just before),
    /// ferry holds the exclusive lock across the snapshot so that no writer
    /// slips in after the check.
    pub(crate) fn freeze(&self, at: &ImageAt, frozen: bool) -> anyhow::Result<()> {
        let name = at
            .snap
            .clone()
            .ok_or_else(|| anyhow!("{at} names no snapshot"))?;
        if self.snap_id(at)?.is_some() {
            return Ok(());
        }
        self.with_image(&plain(at), true, |img| {
            let locked = frozen && img.features()?.contains(Features::EXCLUSIVE_LOCK);
            if locked {
                img.lock_acquire_exclusive()?;
            }
            img.snap_create(&name)?;
            if locked {
                img.lock_release()?;
            }
            Ok(())
        })
    }

    /// Removes what warm rounds left on the source image `head`: the
    /// plan's round snapshots and the hashes kept between rounds. Returns
    /// how many snapshots went.
    pub(crate) fn remove_rounds(&self, head: &ImageAt) -> anyhow::Result<usize> {
        let plan_id = self.plan_id();
        let pool = self.cluster(head.site)?.pool(&head.pool)?;
        crate::transfer::rbd::forget_digest(&pool, &head.image)?;
        self.with_image(head, true, |img| {
            let mut gone = 0;
            for s in img.snapshots()? {
                if crate::plan::round_number(&plan_id, &s.name).is_some() {
                    img.snap_remove(&s.name)?;
                    gone += 1;
                }
            }
            Ok(gone)
        })
    }

    /// After a failure before the cut-over: puts the source back as the plan
    /// found it (features, mirroring; a clone's flat copy and snapshot go).
    /// Deep-flatten, once disabled, cannot come back.
    pub(super) fn put_back(&self, i: usize) -> anyhow::Result<Vec<String>> {
        let plan = self.image_plan(i);
        let mut did = Vec::new();
        // A streamed volume's source is never changed.
        let (Some(facts), Some(_)) = (plan.facts.ceph(), &self.access.src) else {
            return Ok(did);
        };
        let cut = crate::plan::cutover_snap(&self.plan_id());
        let orig = ImageAt {
            site: Site::Source,
            pool: plan.image.pool.clone(),
            image: plan.image.name.clone(),
            snap: Some(cut.clone()),
        };
        // A clone (and any image moved directly) has nothing changed but
        // the cut-over snapshot (and a clone's carrier).
        if facts.parent.is_some() || !plan.transfer.is_mirror() {
            let carrier = ImageAt {
                image: crate::plan::flat_name(&plan.image.name),
                snap: None,
                ..orig.clone()
            };
            if self.exists(&carrier)? {
                if self.made_by_ferry(&carrier)? {
                    self.remove_image(&carrier)?;
                    did.push(format!("removed {carrier}"));
                } else {
                    did.push(format!("left {carrier} (not made by ferry)"));
                }
            }
            if self.snap_id(&orig)?.is_some() {
                self.with_image(&plain(&orig), true, |img| img.snap_remove(&cut))?;
                did.push(format!("removed {orig}"));
            }
            self.forget_original(&plain(&orig), &mut did)?;
            return Ok(did);
        }
        let head = plain(&orig);
        if !self.exists(&head)? {
            return Ok(did);
        }
        match self.remove_rounds(&head)? {
            0 => {}
            n => did.push(format!("{n} warm round snapshot(s) removed")),
        }
        let info = self.with_image(&head, false, |img| img.mirror_info())?;
        let pool_mode = facts.pool_mode == crate::ceph::PoolMirrorMode::Pool;
        if facts.mirroring.is_none() && info.state != ImageMirrorState::Disabled && !pool_mode {
            self.with_image(&head, true, |img| img.mirror_disable(false))?;
            did.push("mirroring disabled".into());
        }
        let before = self.with_image(&head, false, |img| img.features())?;
        let original = facts.features;
        if before.0 & !Features::DEEP_FLATTEN.0 != original.0 & !Features::DEEP_FLATTEN.0 {
            self.idle_for_features(&head, &did)?;
            let now = self.restore_features(&head, original)?;
            did.push(format!("features {now}"));
        }
        self.forget_original(&head, &mut did)?;
        Ok(did)
    }

    /// On the operator's word (`ferry run --undo`): puts the source back as
    /// the plan found it (features, mirroring, a clone's carrier), removes
    /// the cut-over snapshot and the digest keys set with it and the plan's
    /// record, and clears the image's run state, so that a run again starts
    /// it afresh. The copy's verified mark stays (the record that this plan
    /// moved the image); nothing on the destination is touched. Features
    /// are not changed under a client (it could freeze).
    pub(super) fn undo(&self, i: usize) -> anyhow::Result<Vec<String>> {
        let plan = self.image_plan(i);
        if self.access.src.is_none() {
            bail!("--undo puts the source back: run it with the source cluster's access (the whole plan, or --role source-storage)");
        }
        if matches!(plan.facts, crate::plan::ImageFacts::Streamed(_)) {
            self.update(i, |s| *s = ImageState::default())?;
            return Ok(vec![
                "nothing on the source to put back (stream path)".into()
            ]);
        }
        let head = plain(&plan.mirrored_source());
        let image = ImageAt {
            image: plan.image.name.clone(),
            ..head.clone()
        };
        if !self.exists(&image)? {
            self.update(i, |s| *s = ImageState::default())?;
            return Ok(vec![format!("{image} is not there")]);
        }
        let cut = crate::plan::cutover_snap(&self.plan_id());
        let mut did = self.put_back(i)?;
        // What put_back keeps on an image it leaves in place: the digest
        // keys, then the cut-over snapshot.
        if self.exists(&head)? {
            let keys = [
                crate::plan::checksum_sent_key(&cut),
                crate::plan::checksum_key(&cut),
            ];
            for key in keys {
                self.remove_key(&head, &key, &mut did)?;
            }
        }
        let at_cut = ImageAt {
            snap: Some(cut.clone()),
            ..image.clone()
        };
        if self.snap_id(&at_cut)?.is_some() {
            self.with_image(&image, true, |img| img.snap_remove(&cut))?;
            did.push(format!("removed {at_cut}"));
        }
        self.update(i, |s| *s = ImageState::default())?;
        if did.is_empty() {
            did.push("nothing to put back".into());
        }
        Ok(did)
    }

    /// Waits (up to a minute, or the run's wait timeout if shorter) until
    /// no client uses `image`, before its features are put back: a feature
    /// change can freeze a running client. rbd-mirror lets go of a
    /// journaled image within seconds of its mirroring being disabled.
    /// `did`: what was done so far, for the error.
    fn idle_for_features(&self, image: &ImageAt, did: &[String]) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.opts.wait_timeout.min(Duration::from_secs(60));
        loop {
            let users = self.users(image)?;
            if users.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{image} is in use ({}): its features are not put back, since a feature change could freeze its client (done so far: {}); stop it and run again with --undo",
                    users.join(", "),
                    if did.is_empty() { "nothing".to_string() } else { did.join(", ") }
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Removes the plan's record of what `image` was, once it is put back:
    /// a later plan must not take this one's id or features for its own.
    pub(super) fn forget_original(
        &self,
        image: &ImageAt,
        did: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        self.remove_key(image, &crate::plan::original_key(&self.plan_id()), did)
    }

    /// Removes image metadata `key` when it is there, noting it in `did`.
    fn remove_key(&self, image: &ImageAt, key: &str, did: &mut Vec<String>) -> anyhow::Result<()> {
        if self
            .with_image(image, false, |img| img.metadata_get(key))?
            .is_some()
        {
            self.with_image(image, true, |img| img.metadata_remove(key))?;
            did.push(format!("{key} removed"));
        }
        Ok(())
    }

    /// Puts an image's features back to `original` (deep-flatten aside);
    /// returns the features it has then.
    pub(crate) fn restore_features(
        &self,
        image: &ImageAt,
        original: Features,
    ) -> anyhow::Result<Features> {
        self.with_image(image, true, |img| {
            for f in [Features::JOURNALING, Features::EXCLUSIVE_LOCK] {
                if img.features()?.contains(f) && !original.contains(f) {
                    img.update_features(f, false)?;
                }
            }
            for f in [
                Features::EXCLUSIVE_LOCK,
                Features::OBJECT_MAP,
                Features::FAST_DIFF,
            ] {
                if original.contains(f) && !img.features()?.contains(f) {
                    img.update_features(f, true)?;
                }
            }
            // A re-enabled object map starts invalid; rebuilding also
            // makes fast-diff valid again.
            if original.contains(Features::OBJECT_MAP) {
                img.rebuild_object_map()?;
            }
            Ok(())
        })?;
        self.with_image(image, false, |img| img.features())
    }

    /// Whether ferry made the carrier `at`: it carries the
    /// [`crate::plan::FLAT_OF`] mark of a finished copy, or the copy log
    /// ferry's engine writes as it creates one.
    pub(super) fn made_by_ferry(&self, at: &ImageAt) -> anyhow::Result<bool> {
        let marked = self
            .with_image(&plain(at), false, |img| {
                img.metadata_get(crate::plan::FLAT_OF)
            })?
            .is_some();
        if marked {
            return Ok(true);
        }
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        Ok(crate::transfer::rbd::has_copy_log(&pool, &at.image)?)
    }

    /// Refuses to touch an image ferry did not make (see `made_by_ferry`).
    pub(crate) fn refuse_unless_made_by_ferry(&self, at: &ImageAt) -> anyhow::Result<()> {
        if !self.made_by_ferry(at)? {
            bail!(
                "{at} exists and ferry did not make it (no {} mark, no copy log of ferry's): ferry removes only its own; rename or remove it yourself, then run again",
                crate::plan::FLAT_OF
            );
        }
        Ok(())
    }

    /// Fails when the image was written (or discarded) after the cut-over
    /// snapshot `image` names: the copy does not hold those writes.
    pub(crate) fn unchanged_since_cutover(&self, image: &ImageAt) -> anyhow::Result<()> {
        let snap = image.snap.clone().unwrap_or_default();
        let written = self.with_image(&plain(image), false, |img| img.written_since(&snap))?;
        if written > 0 {
            bail!(
                "{} was written after the cut-over {snap} (about {} in changed objects): the copy does not hold those writes. Nothing is cleaned up; migrate the image again with a new plan, or remove the snapshot yourself once you accept the loss",
                plain(image),
                crate::units::human_bytes(written)
            );
        }
        Ok(())
    }

    /// Removes an image ferry made, with its snapshots; mirroring of it
    /// (image mode) is disabled first.
    pub(crate) fn remove_image(&self, at: &ImageAt) -> anyhow::Result<()> {
        let head = plain(at);
        let info = self.with_image(&head, false, |img| img.mirror_info())?;
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        if info.state != ImageMirrorState::Disabled
            && pool.mirror_mode()? == crate::ceph::PoolMirrorMode::Image
        {
            self.with_image(&head, true, |img| img.mirror_disable(false))?;
        }
        self.with_image(&head, true, |img| {
            for s in img.snapshots()? {
                if s.namespace == crate::ceph::SnapNamespace::User {
                    if img.snap_is_protected(&s.name)? {
                        img.snap_unprotect(&s.name)?;
                    }
                    img.snap_remove(&s.name)?;
                }
            }
            Ok(())
        })?;
        match pool.remove_image(&at.image) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub(super) fn act(&self, i: usize, step: &Step) -> anyhow::Result<String> {
        step.action.kind().execute(self, i, step)
    }

    /// The digest of an image (at its snapshot), reading its allocated
    /// extents, with progress.
    pub(crate) fn digest(
        &self,
        i: usize,
        step: &Step,
        at: &ImageAt,
        phase: Phase,
    ) -> anyhow::Result<String> {
        let pool = self.cluster(at.site)?.pool(&at.pool)?;
        let out = crate::transfer::rbd::digest_image(
            &pool,
            &at.image,
            at.snap.as_deref(),
            &engine_options(&self.opts.buffers),
            &mut self.progress(i, step, phase),
        )?;
        Ok(out.digest)
    }
}

/// The data engine's settings for this run.
pub(crate) fn engine_options(
    budget: &Arc<crate::transfer::ChunkBudget>,
) -> crate::transfer::Options {
    // Tests simulate a crash in the middle of a copy with this: the process
    // ends right after that many chunks are recorded, one at a time.
    let crash: Option<u64> = std::env::var("FERRY_TEST_CRASH_AFTER_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok());
    crate::transfer::Options {
        budget: Some(Arc::clone(budget)),
        ..crate::transfer::Options::crashing_after(crash)
    }
}

/// Features as a list for people.
pub(crate) fn feature_list(features: &[Features]) -> String {
    features
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
