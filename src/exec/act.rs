//! What each step does (the plan's actions), and putting the source back
//! when a run fails before its cut-over.

use super::*;

impl Ctx<'_> {
    /// Takes the user snapshot `at` names, unless it exists. With `frozen`
    /// (the step required the image idle, and that was checked just before),
    /// ferry holds the exclusive lock across the snapshot so that no writer
    /// slips in after the check.
    pub(super) fn freeze(&self, at: &ImageAt, frozen: bool) -> anyhow::Result<()> {
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

    /// After a failure before the cut-over: puts the source back as the plan
    /// found it (features, mirroring; a clone's flat copy and snapshot go).
    /// Deep-flatten, once disabled, cannot come back.
    pub(super) fn put_back(&self, i: usize) -> anyhow::Result<Vec<String>> {
        let plan = self.state.lock().unwrap().plan.images[i].clone();
        let mut did = Vec::new();
        if self.access.src.is_none() {
            return Ok(did);
        }
        let cut = crate::plan::cutover_snap(&self.plan_id());
        let orig = ImageAt {
            site: Site::Source,
            pool: plan.image.pool.clone(),
            image: plan.image.name.clone(),
            snap: Some(cut.clone()),
        };
        // A clone (and any image moved directly) has nothing changed but
        // the cut-over snapshot (and a clone's carrier).
        if plan.facts.parent.is_some() || !plan.transfer.is_mirror() {
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
        let info = self.with_image(&head, false, |img| img.mirror_info())?;
        let pool_mode = plan.facts.pool_mode == crate::ceph::PoolMirrorMode::Pool;
        if plan.facts.mirroring.is_none() && info.state != ImageMirrorState::Disabled && !pool_mode
        {
            self.with_image(&head, true, |img| img.mirror_disable(false))?;
            did.push("mirroring disabled".into());
        }
        let before = self.with_image(&head, false, |img| img.features())?;
        let original = plan.facts.features;
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
        let plan = self.state.lock().unwrap().plan.images[i].clone();
        if self.access.src.is_none() {
            bail!("--undo puts the source back: run it with the source cluster's access (the whole plan, or --role source-storage)");
        }
        if plan.facts.streamed {
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
    pub(super) fn restore_features(
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
    fn refuse_unless_made_by_ferry(&self, at: &ImageAt) -> anyhow::Result<()> {
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
    fn unchanged_since_cutover(&self, image: &ImageAt) -> anyhow::Result<()> {
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
    pub(super) fn remove_image(&self, at: &ImageAt) -> anyhow::Result<()> {
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
        match &step.action {
            Action::Preflight { image } => {
                let plan = self.state.lock().unwrap().plan.images[i].clone();
                let dest = ImageAt {
                    site: Site::Destination,
                    pool: plan.image.dest_pool.clone(),
                    image: plan.image.dest_name.clone(),
                    snap: None,
                };
                let st = self.image_state(i);
                let copied = plan
                    .steps
                    .iter()
                    .any(|s| s.name == "copy" && st.done.contains(&s.id));
                // A run that sees the destination refuses a taken name
                // before changing the source.
                if !copied && self.access.dst.is_some() && self.exists(&dest)? {
                    bail!("{dest} already exists: choose another dest_name, or remove it");
                }
                let (size, _) = self.size(image)?;
                Ok(format!("{size} bytes"))
            }
            Action::RecordOriginal { image, record } => {
                let key = crate::plan::original_key(&record.plan);
                let keys = self.metadata_list(image)?;
                if let Some((other, _)) = keys.iter().find(|(k, _)| {
                    crate::plan::original_key_plan(k).is_some_and(|id| id != record.plan)
                }) {
                    bail!(
                        "{image} carries {other}, the record of another plan: only one plan may move an image (finish or abandon that plan, then rbd image-meta remove {}/{} {other})",
                        image.pool,
                        image.image
                    );
                }
                if !keys.iter().any(|(k, _)| *k == key) {
                    self.with_image(image, true, |img| img.metadata_set(&key, &record.to_line()))?;
                }
                Ok(format!(
                    "features: {}; mirroring: {}",
                    record.features,
                    record
                        .mirroring
                        .map_or("disabled".to_string(), |m| m.to_string())
                ))
            }
            Action::RemoveMetadata { image, key } => {
                self.with_image(image, true, |img| img.metadata_remove(key))?;
                Ok(format!("{key} removed"))
            }
            Action::DisableFeatures { image, features } => {
                self.with_image(image, true, |img| {
                    for f in features {
                        // Re-read each time: in 16.2 disabling fast-diff also
                        // disables object-map.
                        if img.features()?.contains(*f) {
                            img.update_features(*f, false)?;
                        }
                    }
                    Ok(())
                })?;
                Ok(feature_list(features))
            }
            Action::EnableFeatures {
                image,
                features,
                make_room,
            } => {
                let mut made_room = Vec::new();
                self.with_image(image, true, |img| {
                    for f in features {
                        if img.features()?.contains(*f) {
                            continue;
                        }
                        match img.update_features(*f, true) {
                            Err(e)
                                if *f == Features::JOURNALING
                                    && !make_room.is_empty()
                                    && e.kind() == ErrorKind::InvalidArgument =>
                            {
                                for m in make_room {
                                    if img.features()?.contains(*m) {
                                        img.update_features(*m, false)?;
                                        made_room.push(*m);
                                    }
                                }
                                img.update_features(*f, true)?;
                            }
                            r => r?,
                        }
                    }
                    Ok(())
                })?;
                let mut detail = feature_list(features);
                if !made_room.is_empty() {
                    detail.push_str(&format!(
                        " (the cluster refused journaling beside {}: disabled them)",
                        feature_list(&made_room)
                    ));
                }
                Ok(detail)
            }
            Action::EnableMirroring { image, mode } => {
                self.with_image(image, true, |img| img.mirror_enable(*mode))?;
                Ok(mode.to_string())
            }
            Action::CreateCutover { image, mode } => {
                let head = plain(image);
                let frozen = step
                    .requires
                    .iter()
                    .any(|c| matches!(c, Check::NotInUse { .. }));
                self.freeze(image, frozen)?;
                // In snapshot mode a mirror snapshot carries the cut-over;
                // rbd-mirror transfers it while the next step hashes.
                let after = Check::MirrorSnapshotAfter {
                    image: image.clone(),
                };
                if *mode == MirrorMode::Snapshot && !self.holds(&after)? {
                    let id = self.with_image(&head, true, |img| img.mirror_snapshot_create())?;
                    return Ok(format!("{image}, mirror snapshot {id}"));
                }
                Ok(format!("{image}"))
            }
            Action::HashSource { image, mode } => {
                let name = image
                    .snap
                    .clone()
                    .ok_or_else(|| anyhow!("{image} names no snapshot"))?;
                let key = crate::plan::checksum_key(&name);
                let sent = crate::plan::checksum_sent_key(&name);
                let (sum, hashed) = match self.metadata(image, &key)? {
                    Some(sum) => (sum, false),
                    None => (self.digest(i, step, image, Phase::Preparing)?, true),
                };
                // On one handle: the digest, then on its way: in snapshot
                // mode with a mirror snapshot taken after it (again if an
                // earlier run stopped before the mark: one more is cheap),
                // in journal mode already.
                let snapshot = *mode == MirrorMode::Snapshot;
                let id = self.with_image(&plain(image), true, |img| {
                    if hashed {
                        img.metadata_set(&key, &sum)?;
                    }
                    let id = if snapshot {
                        Some(img.mirror_snapshot_create()?)
                    } else {
                        None
                    };
                    let mark =
                        id.map_or("journal".to_string(), |id| format!("mirror snapshot {id}"));
                    img.metadata_set(&sent, &mark)?;
                    Ok(id)
                })?;
                self.update(i, |s| s.source_checksum = Some(sum.clone()))?;
                let detail = id
                    .map(|id| format!(", mirror snapshot {id}"))
                    .unwrap_or_default();
                Ok(format!("digest {}{detail}", short(&sum)))
            }
            Action::FreezeSnapshot { image } => {
                let frozen = step
                    .requires
                    .iter()
                    .any(|c| matches!(c, Check::NotInUse { .. }));
                self.freeze(image, frozen)?;
                Ok(format!("{image}"))
            }
            Action::FlatCopy { from, to, features } => {
                // Ferry's own unmarked copy is an interrupted one: afresh.
                // An image of that name ferry did not make is not its to
                // remove.
                if self.exists(to)? {
                    self.refuse_unless_made_by_ferry(to)?;
                    self.remove_image(to)?;
                }
                let pool = self.cluster(to.site)?.pool(&to.pool)?;
                let started = Instant::now();
                // ferry's engine, not librbd's copy: in Ceph 16.2 rbd_copy of
                // a clone at a snapshot leaves out the objects only its
                // parent holds (measured: a 64 MiB parent, 40 MiB of it
                // lost), and the cut-over digest, taken of this copy, would
                // not see it. The engine reads the parent's data through
                // the clone.
                space::writing_into(self.cluster(to.site)?, &to.pool, || {
                    Ok(crate::transfer::rbd::copy_image(
                        &pool,
                        &from.image,
                        from.snap.as_deref(),
                        &pool,
                        &to.image,
                        Some(*features),
                        &engine_options(&self.opts.buffers),
                        &mut self.progress(i, step, Phase::Preparing),
                    )?)
                })?;
                crate::transfer::rbd::forget_log(&pool, &to.image)?;
                pool.open_image(&to.image)?.metadata_set(
                    crate::plan::FLAT_OF,
                    &format!(
                        "{}/{}@{}",
                        from.pool,
                        from.image,
                        from.snap.as_deref().unwrap_or_default()
                    ),
                )?;
                Ok(format!(
                    "{to} ({features}), {:.1} s",
                    started.elapsed().as_secs_f64()
                ))
            }
            Action::RemoveImage { image } => {
                if self.exists(image)? {
                    self.refuse_unless_made_by_ferry(image)?;
                    self.remove_image(image)?;
                }
                Ok(format!("{image} removed"))
            }
            Action::CheckUnchanged { image } => {
                self.unchanged_since_cutover(image)?;
                Ok("no writes since the cut-over".into())
            }
            Action::RemoveSnapshot { image } => {
                let name = image.snap.clone().unwrap_or_default();
                let head = plain(image);
                // The cut-over is the proof of what the copy holds: looked
                // at again right before it goes, whatever an earlier run saw.
                if self.snap_id(image)?.is_some() {
                    self.unchanged_since_cutover(image)?;
                }
                // The checksum set with the cut-over goes first, then the
                // snapshot (whose absence marks the step done).
                self.with_image(&head, true, |img| {
                    img.metadata_remove(&crate::plan::checksum_sent_key(&name))?;
                    img.metadata_remove(&crate::plan::checksum_key(&name))
                })?;
                if self.snap_id(image)?.is_some() {
                    self.with_image(&head, true, |img| img.snap_remove(&name))?;
                }
                Ok(format!("{image} removed"))
            }
            Action::WaitForSync {
                source,
                mirrored,
                mode,
            } => {
                let synced = Check::MirrorSynced {
                    source: source.clone(),
                    mirrored: mirrored.clone(),
                    mode: *mode,
                };
                self.wait(i, step, &synced)?;
                Ok("in sync".into())
            }
            Action::Copy {
                from,
                to,
                features,
                clone_of,
            } => {
                // From the cut-over snapshot (later syncs cannot change it)
                // into the partial name, hashing what it writes; a copy
                // interrupted earlier resumes with the chunks it lacks. With
                // a parent: a clone of it, written where the data differ.
                let dst_pool = self.dst()?.pool(&to.pool)?;
                // The mirrored image, or (direct) the source itself.
                let from_pool = self.cluster(from.site)?.pool(&from.pool)?;
                let parent_pool = match clone_of {
                    Some(p) => Some(self.dst()?.pool(&p.pool)?),
                    None => None,
                };
                let base = match (clone_of, &parent_pool) {
                    (Some(p), Some(pool)) => Some(crate::transfer::rbd::CloneOf {
                        pool,
                        image: &p.image,
                        snap: p.snap.as_deref().unwrap_or("snap"),
                    }),
                    _ => None,
                };
                let started = Instant::now();
                let out = space::writing_into(self.dst()?, &to.pool, || {
                    Ok(crate::transfer::rbd::copy_image_onto(
                        &from_pool,
                        &from.image,
                        from.snap.as_deref(),
                        base,
                        &dst_pool,
                        &to.image,
                        *features,
                        &engine_options(&self.opts.buffers),
                        &mut self.progress(i, step, Phase::Copying),
                    )?)
                })?;
                // The mark of a finished copy holds the digest of what it
                // wrote, which the verify compares.
                let snap = from.snap.as_deref().unwrap_or_default();
                if from.site == Site::Source {
                    // Direct: what was read of the cut-over is its digest,
                    // noted on the source as a mirror's hash-source would
                    // (the verify reads the copy back against it; cleanup
                    // checks the record against it).
                    self.with_image(&plain(from), true, |img| {
                        img.metadata_set(&crate::plan::checksum_key(snap), &out.digest)
                    })?;
                    self.update(i, |s| s.source_checksum = Some(out.digest.clone()))?;
                }
                dst_pool
                    .open_image(&to.image)?
                    .metadata_set(&crate::plan::copied_key(snap), &out.digest)?;
                crate::transfer::rbd::forget_log(&dst_pool, &to.image)?;
                Ok(format!(
                    "{}read {} bytes, wrote {} bytes, resumed {} of {} chunks, {:.1} s",
                    clone_of
                        .as_ref()
                        .map(|p| format!("a clone of {p}: "))
                        .unwrap_or_default(),
                    out.bytes_read,
                    out.bytes_written,
                    out.chunks_resumed,
                    out.chunks,
                    started.elapsed().as_secs_f64()
                ))
            }
            Action::SnapshotAndProtect { image } => {
                let snap = image.snap.clone().unwrap_or_else(|| "snap".into());
                let head = plain(image);
                self.with_image(&head, true, |img| {
                    if !img.snapshots()?.iter().any(|s| s.name == snap) {
                        img.snap_create(&snap)?;
                    }
                    if !img.snap_is_protected(&snap)? {
                        img.snap_protect(&snap)?;
                    }
                    Ok(())
                })?;
                Ok(format!("{image}"))
            }
            Action::Verify {
                expected,
                partial,
                copy,
                origin,
            } => {
                // A record under this copy name of another source: refuse
                // before reading anything.
                self.record(copy, origin)?;
                if origin.fsid.is_empty() || origin.id.is_empty() {
                    bail!("the plan does not name the source of {copy} (made by an older ferry?): plan again");
                }
                // The digest the source took at the cut-over, carried by
                // mirroring, against the digest of what the copy wrote. A
                // copy made otherwise (a script's `rbd cp`), or --reread,
                // reads the copy back.
                let snap = expected.snap.as_deref().unwrap_or_default();
                let key = crate::plan::checksum_key(snap);
                let want = self
                    .metadata(expected, &key)?
                    .ok_or_else(|| anyhow!("{expected} carries no checksum ({key})"))?;
                let sum = match self.metadata(partial, &crate::plan::copied_key(snap))? {
                    Some(written) if crate::transfer::is_digest(&written) && !self.opts.reread => {
                        written
                    }
                    _ => self.digest(i, step, partial, Phase::Verifying)?,
                };
                self.update(i, |s| {
                    s.source_checksum = Some(want.clone());
                    s.destination_checksum = Some(sum.clone());
                })?;
                if sum != want {
                    // Copy afresh on the next run; keep this one to look at.
                    self.with_image(partial, true, |img| {
                        img.metadata_remove(&crate::plan::copied_key(snap))
                    })?;
                    crate::transfer::rbd::forget_log(
                        &self.dst()?.pool(&partial.pool)?,
                        &partial.image,
                    )?;
                    bail!("digests differ: source {want}, copy {sum}; {partial} is kept for inspection, running again copies afresh; nothing is cleaned up");
                }
                // On the copy (it stays with the image through adoption), then
                // in the record that marks it verified.
                let copy_id = self.with_image(partial, true, |img| {
                    img.metadata_set(&key, &sum)?;
                    img.id()
                })?;
                let record = crate::plan::record_object(&self.plan_id());
                let line = VerifiedRecord {
                    sha256: sum.clone(),
                    source: origin.clone(),
                    copy_id: Some(copy_id),
                }
                .to_line();
                self.dst()?
                    .pool(&copy.pool)?
                    .set_object_xattr(&record, &copy.image, &line)?;
                Ok(format!("digest {}", short(&sum)))
            }
            Action::Publish { partial, copy } => {
                if self.exists(partial)? {
                    self.dst()?
                        .pool(&copy.pool)?
                        .rename_image(&partial.image, &copy.image)?;
                }
                Ok(format!("{copy}"))
            }
            Action::ConfirmVerified {
                source,
                copy,
                mark,
                origin,
            } => {
                let sum = self
                    .verified_sum(source, copy, origin)?
                    .ok_or_else(|| anyhow!("the copy of {source} is not verified"))?;
                let snap = source.snap.as_deref().unwrap_or_default();
                self.with_image(&plain(mark), true, |img| {
                    img.metadata_set(&crate::plan::verified_key(snap), &sum)
                })?;
                Ok(format!("digest {}", short(&sum)))
            }
            Action::CheckSourceCloud {
                object,
                allow_in_use,
                detached,
            } => cloud::check_source(self, object, *allow_in_use, *detached),
            Action::DisableMirroring { image } => {
                self.with_image(image, true, |img| img.mirror_disable(false))?;
                Ok("disabled".into())
            }
            Action::CheckDestinationCloud {
                image,
                adoption,
                create,
            } => cloud::check_destination(self, image, adoption, *create),
            Action::CreateVolume { adoption, size_gb } => {
                stream::create_volume(self, i, step, adoption, *size_gb)
            }
            Action::StreamVolume {
                source_volume,
                hosts,
            } => stream::stream_volume(self, i, step, source_volume, hosts),
            Action::FinishVolume { adoption } => stream::finish_volume(self, adoption),
            Action::AdoptVolume { image, adoption } => {
                cloud::adopt_volume(self, i, step, image, adoption)
            }
            Action::RegisterImage {
                image,
                registration,
            } => cloud::register_image(self, i, step, image, registration),
            Action::RestoreFeatures { image } => {
                // The plan was made before anything changed.
                let original = self.state.lock().unwrap().plan.images[i].facts.features;
                let now = self.restore_features(image, original)?;
                Ok(format!("features: {now}"))
            }
        }
    }

    /// The digest of an image (at its snapshot), reading its allocated
    /// extents, with progress.
    pub(super) fn digest(
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
fn engine_options(budget: &Arc<crate::transfer::ChunkBudget>) -> crate::transfer::Options {
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
fn feature_list(features: &[Features]) -> String {
    features
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
