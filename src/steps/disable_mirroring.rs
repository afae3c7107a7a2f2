//! The `disable-mirroring` step kind. Disable mirroring on the source image
//! (rbd-mirror then removes the mirrored copy on the destination).

use super::prelude::*;

/// Disable mirroring on the source image (rbd-mirror then removes the
/// mirrored copy on the destination).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisableMirroring {
    pub image: ImageAt,
}

impl Kind for DisableMirroring {
    fn role(&self) -> Role {
        Role::Cleanup
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let DisableMirroring { image } = self;
        format!("disable mirroring of {image}")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let DisableMirroring { image } = self;
        let mut b = String::new();
        let _ = writeln!(b, "rbdw mirror image disable {}", spec(image));
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let DisableMirroring { image } = self;
        cx.with_image(image, true, |img| img.mirror_disable(false))?;
        Ok("disabled".into())
    }
}
