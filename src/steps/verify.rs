//! The `verify` step kind. Hash the partial copy and compare it with the
//! checksum the cut-over set on the source, read from the mirrored image
//! (`expected`).

use super::prelude::*;

/// Hash the partial copy and compare it with the checksum the cut-over
/// set on the source, read from the mirrored image (`expected`). When
/// equal: record it (`record_object`) and on the copy; when not: drop the
/// copied mark so that a re-run copies afresh.
///
/// A direct copy's digest is of the source's bytes as read and written;
/// the digest it noted on the source is `expected`'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verify {
    pub expected: ImageAt,
    pub partial: ImageAt,
    /// The copy's final name (the record is kept under it).
    pub copy: ImageAt,
    /// The source the copy is of, written into the record.
    #[serde(default)]
    pub origin: SourceId,
}

impl Kind for Verify {
    fn role(&self) -> Role {
        Role::DestinationStorage
    }

    fn subject(&self) -> ImageAt {
        self.partial.clone()
    }

    fn moves_data(&self) -> bool {
        true
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![
            ("expected", &self.expected, Place::Read),
            ("partial", &self.partial, Place::Destination),
            ("copy", &self.copy, Place::Destination),
        ]
    }

    fn describe(&self) -> String {
        let Verify {
            expected, partial, ..
        } = self;
        format!("compare the checksum of {partial} with the one {expected} carries")
    }

    fn script(&self, _st: &Step, plan: &Plan, _img: &ImagePlan) -> String {
        let Verify {
            expected,
            partial,
            copy,
            origin,
            ..
        } = self;
        let mut b = String::new();
        if origin.fsid.is_empty() || origin.id.is_empty() {
            let _ = writeln!(
                b,
                "die {}",
                q(&format!("the plan does not name the source of {copy} (made by an older ferry?): plan again"))
            );
        }
        let s = expected.snap.as_deref().unwrap_or_default();
        let key = crate::plan::checksum_key(s);
        let head = ImageAt {
            snap: None,
            ..expected.clone()
        };
        // Direct: the digest is on the source image.
        if expected.site == Site::Source {
            b.push_str(FROM_SOURCE);
        }
        let _ = writeln!(
            b,
            "rbdq image-meta get {} {} || die {}\nwant=$OUT\nFROM_ARGS=",
            spec(&head),
            q(&key),
            q(&format!("{head} carries no checksum ({key})"))
        );
        let _ = writeln!(b, "image_digest {}", spec(partial));
        let _ = writeln!(b, "if [ \"$SUM\" != \"$want\" ]; then\n  rbdw image-meta remove {} {}\n  die \"digests differ: source $want, copy $SUM; \"{}\" is kept for inspection, running again copies afresh\"\nfi", spec(partial), q(&crate::plan::copied_key(s)), q(&partial.to_string()));
        let _ = writeln!(
            b,
            "rbdw image-meta set {} {} \"$SUM\"",
            spec(partial),
            q(&key)
        );
        // The copy's id: the record says nothing once that image is gone.
        let _ = writeln!(
            b,
            "rbdq info --format json {} || die {}\ncid=$(printf '%s' \"$OUT\" | jq -er '.id // empty') || die \"rbd info gave no image id: $OUT\"",
            spec(partial),
            q(&format!("{partial} vanished before its record was written"))
        );
        let _ = writeln!(
            b,
            "rec=$(jq -cn --arg s \"$SUM\" --arg c \"$cid\" --argjson o {} '{{sha256: $s, source: $o, copy_id: $c}}')",
            q(&origin_json(origin))
        );
        let _ = writeln!(b, "bounded rados -p {} setxattr {} {} \"$rec\" 2>\"$ERR\" || die \"recording the verified copy: $(cat \"$ERR\")\"", q(&copy.pool), q(&crate::plan::record_object(&plan.id)), q(&copy.image));
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let Verify {
            expected,
            partial,
            copy,
            origin,
        } = self;
        // A record under this copy name of another source: refuse
        // before reading anything.
        cx.record(copy, origin)?;
        if origin.fsid.is_empty() || origin.id.is_empty() {
            bail!(
                "the plan does not name the source of {copy} (made by an older ferry?): plan again"
            );
        }
        // The digest the source took at the cut-over, carried by
        // mirroring, against the digest of what the copy wrote. A
        // copy made otherwise (a script's `rbd cp`), or --reread,
        // reads the copy back.
        let snap = expected.snap.as_deref().unwrap_or_default();
        let key = crate::plan::checksum_key(snap);
        let want = cx
            .metadata(expected, &key)?
            .ok_or_else(|| anyhow!("{expected} carries no checksum ({key})"))?;
        let sum = match cx.metadata(partial, &crate::plan::copied_key(snap))? {
            Some(written) if crate::transfer::is_digest(&written) && !cx.opts.reread => written,
            _ => cx.digest(i, step, partial, Phase::Verifying)?,
        };
        cx.update(i, |s| {
            s.source_checksum = Some(want.clone());
            s.destination_checksum = Some(sum.clone());
        })?;
        if sum != want {
            // Copy afresh on the next run; keep this one to look at.
            cx.with_image(partial, true, |img| {
                img.metadata_remove(&crate::plan::copied_key(snap))
            })?;
            crate::transfer::rbd::forget_log(&cx.dst()?.pool(&partial.pool)?, &partial.image)?;
            bail!("digests differ: source {want}, copy {sum}; {partial} is kept for inspection, running again copies afresh; nothing is cleaned up");
        }
        // On the copy (it stays with the image through adoption), then
        // in the record that marks it verified.
        let copy_id = cx.with_image(partial, true, |img| {
            img.metadata_set(&key, &sum)?;
            img.id()
        })?;
        let record = crate::plan::record_object(&cx.plan_id());
        let line = VerifiedRecord {
            sha256: sum.clone(),
            source: origin.clone(),
            copy_id: Some(copy_id),
        }
        .to_line();
        cx.dst()?
            .pool(&copy.pool)?
            .set_object_xattr(&record, &copy.image, &line)?;
        Ok(format!("digest {}", short(&sum)))
    }
}
