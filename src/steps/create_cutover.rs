//! The `create-cutover` step kind. The cut-over: the user snapshot `image`
//! names. In snapshot mode the mirror snapshot that carries it is taken by
//! `hash-source`, once its digest is in the image metadata: data and digest
//! travel together, in one mirror snapshot.

use super::prelude::*;

/// The cut-over: the user snapshot `image` names (see the module).
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
        let _ = mode;
        format!("take the cut-over snapshot {image}")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        snap_create(&self.image)
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, step: &Step) -> anyhow::Result<String> {
        let image = &self.image;
        let frozen = step
            .requires
            .iter()
            .any(|c| matches!(c, Check::NotInUse { .. }));
        cx.freeze(image, frozen)?;
        Ok(format!("{image}"))
    }
}
