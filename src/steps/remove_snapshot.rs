//! The `remove-snapshot` step kind. Remove a snapshot ferry made.

use super::prelude::*;

/// Remove a snapshot ferry made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveSnapshot {
    pub image: ImageAt,
}

impl Kind for RemoveSnapshot {
    fn role(&self) -> Role {
        Role::Cleanup
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let RemoveSnapshot { image } = self;
        format!("remove the snapshot {image}")
    }

    fn script(&self, _st: &Step, plan: &Plan, _img: &ImagePlan) -> String {
        let RemoveSnapshot { image } = self;
        let mut b = String::new();
        // Looked at again right before the proof of the copy goes.
        let _ = writeln!(b, "if snap_exists {} {}; then", spec(image), snap(image));
        unchanged(&mut b, image);
        let _ = writeln!(b, "fi");
        let sent = crate::plan::checksum_sent_key(image.snap.as_deref().unwrap_or_default());
        let _ = writeln!(
            b,
            "meta_absent {} {} || rbdw image-meta remove {} {}",
            spec(image),
            q(&sent),
            spec(image),
            q(&sent)
        );
        let key = crate::plan::checksum_key(image.snap.as_deref().unwrap_or_default());
        let _ = writeln!(
            b,
            "meta_absent {} {} || rbdw image-meta remove {} {}",
            spec(image),
            q(&key),
            spec(image),
            q(&key)
        );
        let prefix = format!("{}-{}-", crate::plan::ROUND_SNAP, plan.id);
        let _ = writeln!(
            b,
            r#"# warm round snapshots, if any
rbdq snap ls --format json {img} || OUT='[]'
for s in $(printf '%s' "$OUT" | jq -r --arg p {p} '.[] | .name | select(startswith($p))'); do
  rbdw snap rm {img}@"$s"
done"#,
            img = spec(image),
            p = q(&prefix),
        );
        let _ = writeln!(
            b,
            "snap_absent {} {} || rbdw snap rm {}",
            spec(image),
            snap(image),
            with_snap(image)
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let RemoveSnapshot { image } = self;
        let name = image.snap.clone().unwrap_or_default();
        let head = plain(image);
        // The cut-over is the proof of what the copy holds: looked
        // at again right before it goes, whatever an earlier run saw.
        if cx.snap_id(image)?.is_some() {
            cx.unchanged_since_cutover(image)?;
        }
        // The checksum set with the cut-over goes first, then the
        // snapshot (whose absence marks the step done).
        cx.with_image(&head, true, |img| {
            img.metadata_remove(&crate::plan::checksum_sent_key(&name))?;
            img.metadata_remove(&crate::plan::checksum_key(&name))
        })?;
        // What warm rounds left goes before the cut-over: its absence
        // marks the step done.
        let rounds = cx.remove_rounds(&head)?;
        if cx.snap_id(image)?.is_some() {
            cx.with_image(&head, true, |img| img.snap_remove(&name))?;
        }
        Ok(match rounds {
            0 => format!("{image} removed"),
            n => format!("{image} and {n} warm round snapshot(s) removed"),
        })
    }
}
