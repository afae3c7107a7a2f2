//! The `remove-metadata` step kind. Remove image metadata ferry set (the last
//! cleanup step: the [`OriginalRecord`], once the image is put back).

use super::prelude::*;

/// Remove image metadata ferry set (the last cleanup step: the
/// [`OriginalRecord`], once the image is put back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveMetadata {
    pub image: ImageAt,
    pub key: String,
}

impl Kind for RemoveMetadata {
    fn role(&self) -> Role {
        Role::Cleanup
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let RemoveMetadata { image, key } = self;
        format!("remove {key} from {image} (the image is as it was)")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let RemoveMetadata { image, key } = self;
        let mut b = String::new();
        let _ = writeln!(
            b,
            "meta_absent {} {} || rbdw image-meta remove {} {}",
            spec(image),
            q(key),
            spec(image),
            q(key)
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let RemoveMetadata { image, key } = self;
        cx.with_image(image, true, |img| img.metadata_remove(key))?;
        Ok(format!("{key} removed"))
    }
}
