//! The `enable-mirroring` step kind. `rbd mirror image enable <image> <mode>`.

use super::prelude::*;

/// `rbd mirror image enable <image> <mode>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnableMirroring {
    pub image: ImageAt,
    pub mode: MirrorMode,
}

impl Kind for EnableMirroring {
    fn role(&self) -> Role {
        Role::SourceStorage
    }

    fn prepares_source(&self) -> bool {
        true
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let EnableMirroring { image, mode } = self;
        format!("enable {mode} mirroring of {image}")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let EnableMirroring { image, mode } = self;
        let mut b = String::new();
        let _ = writeln!(
            b,
            "mirroring_enabled {} {mode} || rbdw mirror image enable {} {mode}",
            spec(image),
            spec(image)
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let EnableMirroring { image, mode } = self;
        cx.with_image(image, true, |img| img.mirror_enable(*mode))?;
        Ok(mode.to_string())
    }
}
