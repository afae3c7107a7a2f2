//! The `check-unchanged` step kind. Fails when the image was written after its
//! cut-over snapshot: those writes are not in the copy.

use super::prelude::*;

/// Fails when the image was written after its cut-over snapshot: those
/// writes are not in the copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckUnchanged {
    pub image: ImageAt,
}

impl Kind for CheckUnchanged {
    fn role(&self) -> Role {
        Role::Cleanup
    }

    fn rechecked(&self) -> bool {
        true
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let CheckUnchanged { image } = self;
        format!(
            "check nothing was written to the source after {image} (those writes are not in the copy)"
        )
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let CheckUnchanged { image } = self;
        let mut b = String::new();
        unchanged(&mut b, image);
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let CheckUnchanged { image } = self;
        cx.unchanged_since_cutover(image)?;
        Ok("no writes since the cut-over".into())
    }
}
