//! The `freeze-snapshot` step kind. A clone's cut-over: the user snapshot
//! `image` names, taken while ferry holds the exclusive lock (no client writes
//! meanwhile).

use super::prelude::*;

/// A clone's cut-over: the user snapshot `image` names, taken while
/// ferry holds the exclusive lock (no client writes meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeSnapshot {
    pub image: ImageAt,
}

impl Kind for FreezeSnapshot {
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
        let FreezeSnapshot { image } = self;
        format!("cut-over: snapshot {image} while holding the exclusive lock (no client may write)")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let FreezeSnapshot { image } = self;
        let mut b = String::new();
        b.push_str(&snap_create(image));
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, step: &Step) -> anyhow::Result<String> {
        let FreezeSnapshot { image } = self;
        let frozen = step
            .requires
            .iter()
            .any(|c| matches!(c, Check::NotInUse { .. }));
        cx.freeze(image, frozen)?;
        Ok(format!("{image}"))
    }
}
