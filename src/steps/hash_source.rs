//! The `hash-source` step kind. The cut-over snapshot's digest into the image
//! metadata (`checksum_key`), which mirroring carries to the destination's
//! verify; in snapshot mode, a mirror snapshot then carries it.

use super::prelude::*;

/// The cut-over snapshot's digest into the image metadata
/// (`checksum_key`), which mirroring carries to the destination's
/// verify; in snapshot mode, a mirror snapshot then carries it. It
/// needs only the cut-over, and nothing but the verify needs it, so
/// ferry hashes while rbd-mirror transfers and the copy runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashSource {
    pub image: ImageAt,
    pub mode: MirrorMode,
}

impl Kind for HashSource {
    fn role(&self) -> Role {
        Role::SourceStorage
    }

    fn moves_data(&self) -> bool {
        true
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let HashSource { image, mode } = self;
        match mode {
            MirrorMode::Snapshot => format!(
                "hash {image} into the image metadata and take a mirror snapshot carrying it"
            ),
            MirrorMode::Journal => format!("hash {image} into the image metadata"),
        }
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let HashSource { image, mode } = self;
        let mut b = String::new();
        let key = crate::plan::checksum_key(image.snap.as_deref().unwrap_or_default());
        let _ = writeln!(
            b,
            "if ! meta_present {} {}; then\n  image_digest {}\n  rbdw image-meta set {} {} \"$SUM\"\nfi",
            spec(image),
            q(&key),
            with_snap(image),
            spec(image),
            q(&key),
        );
        let sent = q(&crate::plan::checksum_sent_key(
            image.snap.as_deref().unwrap_or_default(),
        ));
        if *mode == MirrorMode::Snapshot {
            let _ = writeln!(
                b,
                "# a mirror snapshot carries the digest; the mark says it is on its way\nrbdw mirror image snapshot {}\nrbdw image-meta set {} {sent} 'mirror snapshot'",
                spec(image),
                spec(image)
            );
        } else {
            let _ = writeln!(
                b,
                "# the journal carries the digest\nrbdw image-meta set {} {sent} journal",
                spec(image)
            );
        }
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let HashSource { image, mode } = self;
        let name = image
            .snap
            .clone()
            .ok_or_else(|| anyhow!("{image} names no snapshot"))?;
        let key = crate::plan::checksum_key(&name);
        let sent = crate::plan::checksum_sent_key(&name);
        // After warm rounds, only what changed since the last one is
        // hashed: the source keeps the hashes of that round.
        let pool = cx.cluster(image.site)?.pool(&image.pool)?;
        let kept = crate::transfer::rbd::has_digest(&pool, &image.image)?;
        let (sum, hashed) = match cx.metadata(image, &key)? {
            Some(sum) => (sum, false),
            None if kept => {
                let out = crate::transfer::rbd::digest_image_kept(
                    &pool,
                    &image.image,
                    &name,
                    &engine_options(&cx.opts.buffers),
                    &mut cx.progress(i, step, Phase::Preparing),
                )?;
                (out.digest, true)
            }
            None => (cx.digest(i, step, image, Phase::Preparing)?, true),
        };
        // On one handle: the digest, then on its way: in snapshot
        // mode with a mirror snapshot taken after it (again if an
        // earlier run stopped before the mark: one more is cheap),
        // in journal mode already.
        let snapshot = *mode == MirrorMode::Snapshot;
        let id = cx.with_image(&plain(image), true, |img| {
            if hashed {
                img.metadata_set(&key, &sum)?;
            }
            let id = if snapshot {
                Some(img.mirror_snapshot_create()?)
            } else {
                None
            };
            let mark = id.map_or("journal".to_string(), |id| format!("mirror snapshot {id}"));
            img.metadata_set(&sent, &mark)?;
            Ok(id)
        })?;
        if kept {
            crate::transfer::rbd::forget_digest(&pool, &image.image)?;
        }
        cx.update(i, |s| s.source_checksum = Some(sum.clone()))?;
        let detail = id
            .map(|id| format!(", mirror snapshot {id}"))
            .unwrap_or_default();
        Ok(format!("digest {}{detail}", short(&sum)))
    }
}
