//! The `restore-features` step kind. Put back the features the plan found
//! (`ImagePlan::facts`).

use super::prelude::*;

/// Put back the features the plan found (`ImagePlan::facts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFeatures {
    pub image: ImageAt,
}

impl Kind for RestoreFeatures {
    fn role(&self) -> Role {
        Role::Cleanup
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let RestoreFeatures { image } = self;
        format!("restore the features the plan found on {image}")
    }

    fn script(&self, _st: &Step, _plan: &Plan, img: &ImagePlan) -> String {
        let RestoreFeatures { image } = self;
        let mut b = String::new();
        let orig = img.facts.original_features();
        for f in [Features::JOURNALING, Features::EXCLUSIVE_LOCK] {
            if !orig.contains(f) {
                let n = feature_names(f).join("");
                let _ = writeln!(
                    b,
                    "if feature_on {} {n}; then rbdw feature disable {} {n}; fi",
                    spec(image),
                    spec(image)
                );
            }
        }
        for f in [
            Features::EXCLUSIVE_LOCK,
            Features::OBJECT_MAP,
            Features::FAST_DIFF,
        ] {
            if orig.contains(f) {
                let n = feature_names(f).join("");
                let _ = writeln!(
                    b,
                    "feature_on {} {n} || rbdw feature enable {} {n}",
                    spec(image),
                    spec(image)
                );
            }
        }
        if orig.contains(Features::OBJECT_MAP) {
            let _ = writeln!(b, "rbdwl object-map rebuild {}", spec(image));
        }
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, _step: &Step) -> anyhow::Result<String> {
        let RestoreFeatures { image } = self;
        // The plan was made before anything changed.
        let original = cx.image_plan(i).facts.original_features();
        let now = cx.restore_features(image, original)?;
        Ok(format!("features: {now}"))
    }
}
