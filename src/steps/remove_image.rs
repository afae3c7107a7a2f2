//! The `remove-image` step kind. Remove an image ferry made (a clone's flat
//! carrier) with its snapshots.

use super::prelude::*;

/// Remove an image ferry made (a clone's flat carrier) with its snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveImage {
    pub image: ImageAt,
}

impl Kind for RemoveImage {
    fn role(&self) -> Role {
        Role::Cleanup
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let RemoveImage { image } = self;
        format!("remove {image} (ferry's flat copy)")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let RemoveImage { image } = self;
        let mut b = String::new();
        let _ = writeln!(
            b,
            "if image_exists {}; then\n  meta_present {} {} || die {}\n  remove_image {}\nfi",
            spec(image),
            spec(image),
            q(crate::plan::FLAT_OF),
            q(&format!(
                "{image} has no {} mark: ferry did not make it, and removes only its own",
                crate::plan::FLAT_OF
            )),
            spec(image)
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let RemoveImage { image } = self;
        if cx.exists(image)? {
            cx.refuse_unless_made_by_ferry(image)?;
            cx.remove_image(image)?;
        }
        Ok(format!("{image} removed"))
    }
}
