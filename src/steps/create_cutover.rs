//! The `create-cutover` step kind. The cut-over: the user snapshot `image`
//! names, then, in snapshot mode, a mirror snapshot that carries it.

use super::prelude::*;

/// The cut-over: the user snapshot `image` names, then,
/// in snapshot mode, a mirror snapshot that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCutover {
    pub image: ImageAt,
    pub mode: MirrorMode,
}

impl Kind for CreateCutover {
    fn role(&self) -> Role {
        Role::SourceStorage
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let CreateCutover { image, mode } = self;
        match mode {
            MirrorMode::Snapshot => {
                format!("take the cut-over snapshot {image} and a mirror snapshot carrying it")
            }
            MirrorMode::Journal => format!("take the cut-over snapshot {image}"),
        }
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let CreateCutover { image, mode } = self;
        let mut b = String::new();
        b.push_str(&snap_create(image));
        if *mode == MirrorMode::Snapshot {
            let _ = writeln!(
                b,
                "mirror_snapshot_after {} {} || rbdw mirror image snapshot {}",
                spec(image),
                snap(image),
                spec(image)
            );
        }
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, step: &Step) -> anyhow::Result<String> {
        let CreateCutover { image, mode } = self;
        let head = plain(image);
        let frozen = step
            .requires
            .iter()
            .any(|c| matches!(c, Check::NotInUse { .. }));
        cx.freeze(image, frozen)?;
        // In snapshot mode a mirror snapshot carries the cut-over;
        // rbd-mirror transfers it while the next step hashes.
        let after = Check::MirrorSnapshotAfter {
            image: image.clone(),
        };
        if *mode == MirrorMode::Snapshot && !cx.holds(&after)? {
            let id = cx.with_image(&head, true, |img| img.mirror_snapshot_create())?;
            return Ok(format!("{image}, mirror snapshot {id}"));
        }
        Ok(format!("{image}"))
    }
}
