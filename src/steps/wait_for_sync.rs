//! The `wait-for-sync` step kind. Wait, with progress, until the mirrored copy
//! has caught up.

use super::prelude::*;

/// Wait, with progress, until the mirrored copy has caught up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitForSync {
    pub source: ImageAt,
    pub mirrored: ImageAt,
    pub mode: MirrorMode,
}

impl Kind for WaitForSync {
    fn role(&self) -> Role {
        Role::DestinationStorage
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![
            ("source", &self.source, Place::Source),
            ("mirrored", &self.mirrored, Place::Destination),
        ]
    }

    fn describe(&self) -> String {
        let WaitForSync { mirrored, .. } = self;
        format!("wait until {mirrored} is in sync")
    }

    fn script(&self, st: &Step, plan: &Plan, img: &ImagePlan) -> String {
        let WaitForSync { mirrored, mode, .. } = self;
        let mut b = String::new();
        let c = cond(
            &Check::MirrorSynced {
                source: mirrored.clone(),
                mirrored: mirrored.clone(),
                mode: *mode,
            },
            st.role,
            plan,
            img,
        )
        .unwrap_or_default();
        let _ = writeln!(
            b,
            "wait_for {} {c}",
            q(&format!("{mirrored} to be in sync"))
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let WaitForSync {
            source,
            mirrored,
            mode,
        } = self;
        let synced = Check::MirrorSynced {
            source: source.clone(),
            mirrored: mirrored.clone(),
            mode: *mode,
        };
        cx.wait(i, step, &synced)?;
        Ok("in sync".into())
    }
}
