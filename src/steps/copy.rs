//! The `copy` step kind. Copy an image into another pool (same cluster, or with
//! a direct transfer from the source cluster's cut-over snapshot), creating the
//! copy with `features` (the source's as found, without journaling: the
//! destination pool is not mirrored), then mark it copied (`copied_key`).

use super::prelude::*;

/// Copy an image into another pool (same cluster, or with a direct
/// transfer from the source cluster's cut-over snapshot), creating the copy
/// with `features` (the source's as found, without journaling: the
/// destination pool is not mirrored), then mark it copied
/// (`copied_key`). `to` is the partial name.
///
/// With `clone_of` (`options.clones: clone-of-parent`), the copy is
/// created as a clone (format 2) of that destination snapshot (a Glance
/// image's `<id>@snap`) and only the chunks whose data differ from it
/// are written, zeros included where the parent has data: the clone
/// reads the same bytes, and its digest is the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyImage {
    pub from: ImageAt,
    pub to: ImageAt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_of: Option<ImageAt>,
    /// The snapshot of the source the copy holds already, when its own
    /// snapshots were carried into it (`copy-snapshots`, the last of
    /// them): the copy is brought from there to the cut-over, only what
    /// changed since written, and keeps its snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onto: Option<String>,
}

impl Kind for CopyImage {
    fn role(&self) -> Role {
        Role::DestinationStorage
    }

    fn moves_data(&self) -> bool {
        true
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        let mut v = vec![
            ("from", &self.from, Place::Read),
            ("to", &self.to, Place::Destination),
        ];
        if let Some(p) = &self.clone_of {
            v.push(("clone_of", p, Place::Destination));
        }
        v
    }

    fn describe(&self) -> String {
        let CopyImage {
            from,
            to,
            features,
            clone_of,
            onto,
        } = self;
        if let Some(prev) = onto {
            return format!(
                "bring {to} (which holds the snapshots up to {prev}) to {from}, writing only what changed since {prev}"
            );
        }
        let f = features
            .map(|f| format!(" (features: {f})"))
            .unwrap_or_default();
        match clone_of {
            Some(p) => format!(
                "clone {p} as {to}{f}, then write the chunks of {from} whose data differ from it"
            ),
            None => format!("copy {from} to {to}{f}"),
        }
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let CopyImage {
            from,
            to,
            features,
            clone_of,
            onto,
        } = self;
        let mut b = String::new();
        let feats = features.map(feature_args).unwrap_or_default();
        let key = crate::plan::copied_key(from.snap.as_deref().unwrap_or_default());
        let direct = from.site == Site::Source;
        if let Some(prev) = onto {
            // The copy holds the carried snapshots: never removed, only
            // brought forward (import-diff takes the cut-over there, which
            // the copy does not keep).
            let cut = from.snap.as_deref().unwrap_or_default();
            let _ = writeln!(
                b,
                "if snap_absent {to} {cut}; then\n  say {say}\n  {read}import_since {from} {to} {prev}\n  FROM_ARGS=\nfi\nsnap_absent {to} {cut} || rbdw snap rm {to_cut}",
                to = spec(to),
                cut = q(cut),
                say = q(&format!("bringing {to} from its snapshot {prev} to {from}")),
                read = if direct {
                    format!("{}\n  ", FROM_SOURCE.trim_end())
                } else {
                    String::new()
                },
                from = with_snap(from),
                prev = q(prev),
                to_cut = with_snap(&ImageAt {
                    snap: Some(cut.to_string()),
                    ..to.clone()
                }),
            );
            if direct {
                b.push_str(FROM_SOURCE);
            }
            self.note_direct_digest(&mut b);
            let _ = writeln!(b, "rbdw image-meta set {} {} yes", spec(to), q(&key));
            return b;
        }
        let _ = writeln!(
            b,
            "# an interrupted copy is incomplete: start afresh\nimage_absent {} || rbdw rm {}",
            spec(to),
            spec(to)
        );
        if direct {
            // The source is read with its own options.
            b.push_str(FROM_SOURCE);
        }
        match clone_of {
            Some(p) => {
                let _ = writeln!(
                    b,
                    "say {}",
                    q(&format!("copying {from} to {to} as a clone of {p}, written only where its 4 MiB chunks differ from the parent's"))
                );
                let _ = writeln!(
                    b,
                    "copy_onto_parent {} {} {}{feats}",
                    with_snap(from),
                    with_snap(p),
                    spec(to)
                );
            }
            None if direct => {
                let _ = writeln!(b, "say {}", q(&format!("copying {from} to {to}")));
                let _ = writeln!(b, "copy_flat {} {}{feats}", with_snap(from), spec(to));
            }
            None => {
                let _ = writeln!(b, "say {}", q(&format!("copying {from} to {to}")));
                let _ = writeln!(
                    b,
                    "rbdwl cp --no-progress{feats} {} {}",
                    with_snap(from),
                    spec(to)
                );
            }
        }
        self.note_direct_digest(&mut b);
        let _ = writeln!(b, "rbdw image-meta set {} {} yes", spec(to), q(&key));
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let CopyImage {
            from,
            to,
            features,
            clone_of,
            onto,
        } = self;
        let dst = cx.dst()?.pool(&to.pool)?;
        if let Some(prev) = onto {
            // Only ferry's engine, by its log, knows what the copy holds;
            // starting afresh would remove the carried snapshots.
            if cx.exists(to)? && !crate::transfer::rbd::has_copy_log(&dst, &to.image)? {
                bail!(
                    "{to} holds the carried snapshots (up to {prev}) but no copy log of ferry's: it was made otherwise (a script's copy-snapshots?); bring it to {from} with the script's copy step, or remove {to} and run again to carry the snapshots afresh"
                );
            }
        }
        drop(dst);
        // From the cut-over snapshot (later syncs cannot change it)
        // into the partial name, hashing what it writes; a copy
        // interrupted earlier resumes with the chunks it lacks. With
        // a parent: a clone of it, written where the data differ.
        let dst_pool = cx.dst()?.pool(&to.pool)?;
        // The mirrored image, or (direct) the source itself.
        let from_pool = cx.cluster(from.site)?.pool(&from.pool)?;
        let parent_pool = match clone_of {
            Some(p) => Some(cx.dst()?.pool(&p.pool)?),
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
        let out = space::writing_into(cx.dst()?, &to.pool, || {
            Ok(crate::transfer::rbd::copy_image_onto(
                &from_pool,
                &from.image,
                from.snap.as_deref(),
                base,
                &dst_pool,
                &to.image,
                *features,
                &engine_options(&cx.opts.buffers),
                &mut cx.progress(i, step, Phase::Copying),
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
            cx.with_image(&plain(from), true, |img| {
                img.metadata_set(&crate::plan::checksum_key(snap), &out.digest)
            })?;
            cx.update(i, |s| s.source_checksum = Some(out.digest.clone()))?;
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
}

impl CopyImage {
    /// A direct copy's script: the cut-over's digest, noted on the source
    /// for the verify and the cleanup (as a mirror's hash-source does).
    /// FROM_ARGS is the source's then.
    fn note_direct_digest(&self, b: &mut String) {
        let from = &self.from;
        if from.site != Site::Source {
            return;
        }
        let sum = crate::plan::checksum_key(from.snap.as_deref().unwrap_or_default());
        let head = ImageAt {
            snap: None,
            ..from.clone()
        };
        let _ = writeln!(
            b,
            "image_digest {}\n# shellcheck disable=SC2086 # FROM_ARGS: words of options\nrbdw $FROM_ARGS image-meta set {} {} \"$SUM\"\nFROM_ARGS=",
            with_snap(from),
            spec(&head),
            q(&sum)
        );
    }
}
