//! The `record-original` step kind. Note on the source image what it is before
//! anything changes ([`original_key`]); refuses when another plan's record is
//! there.

use super::prelude::*;

/// Note on the source image what it is before anything changes
/// ([`original_key`]); refuses when another plan's record is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordOriginal {
    pub image: ImageAt,
    pub record: OriginalRecord,
}

impl Kind for RecordOriginal {
    fn role(&self) -> Role {
        Role::SourceStorage
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let RecordOriginal { image, record } = self;
        format!(
            "note on {image} what it is before any change (features: {}; mirroring: {})",
            record.features,
            record
                .mirroring
                .map_or("disabled".to_string(), |m| m.to_string())
        )
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let RecordOriginal { image, record } = self;
        let mut b = String::new();
        let _ = writeln!(
            b,
            "record_original {} {} {}",
            spec(image),
            q(&crate::plan::original_key(&record.plan)),
            q(&record.to_line())
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let RecordOriginal { image, record } = self;
        let key = crate::plan::original_key(&record.plan);
        let keys = cx.metadata_list(image)?;
        if let Some((other, _)) = keys
            .iter()
            .find(|(k, _)| crate::plan::original_key_plan(k).is_some_and(|id| id != record.plan))
        {
            bail!(
                "{image} carries {other}, the record of another plan: only one plan may move an image (finish or abandon that plan, then rbd image-meta remove {}/{} {other})",
                image.pool,
                image.image
            );
        }
        if !keys.iter().any(|(k, _)| *k == key) {
            cx.with_image(image, true, |img| img.metadata_set(&key, &record.to_line()))?;
        }
        Ok(format!(
            "features: {}; mirroring: {}",
            record.features,
            record
                .mirroring
                .map_or("disabled".to_string(), |m| m.to_string())
        ))
    }
}
