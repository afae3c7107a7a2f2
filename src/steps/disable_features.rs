//! The `disable-features` step kind. Disable features, one at a time, in this
//! order.

use super::prelude::*;

/// Disable features, one at a time, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisableFeatures {
    pub image: ImageAt,
    pub features: Vec<Features>,
}

impl Kind for DisableFeatures {
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
        let DisableFeatures { image, features } = self;
        format!("disable {} on {image}", in_order(features))
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let mut b = String::new();
        let image = &self.image;
        for f in &self.features {
            for n in feature_names(*f) {
                let _ = writeln!(
                    b,
                    "if feature_on {} {n}; then rbdw feature disable {} {n}; fi",
                    spec(image),
                    spec(image)
                );
            }
        }
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let DisableFeatures { image, features } = self;
        cx.with_image(image, true, |img| {
            for f in features {
                // Re-read each time: in 16.2 disabling fast-diff also
                // disables object-map.
                if img.features()?.contains(*f) {
                    img.update_features(*f, false)?;
                }
            }
            Ok(())
        })?;
        Ok(feature_list(features))
    }
}
