//! The `preflight` step kind. Read-only checks; refuses to go on when one
//! fails.

use super::prelude::*;

/// Read-only checks; refuses to go on when one fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preflight {
    pub image: ImageAt,
}

impl Kind for Preflight {
    fn role(&self) -> Role {
        Role::SourceStorage
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Source)]
    }

    fn describe(&self) -> String {
        let Preflight { image } = self;
        format!("check {image} exists; note size, snapshots, users")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let Preflight { image } = self;
        let mut b = String::new();
        let _ = writeln!(
            b,
            "image_exists {} || die {}",
            spec(image),
            q(&format!("{image} does not exist"))
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, _step: &Step) -> anyhow::Result<String> {
        let Preflight { image } = self;
        let plan = cx.image_plan(i);
        let dest = ImageAt {
            site: Site::Destination,
            pool: plan.image.dest_pool.clone(),
            image: plan.image.dest_name.clone(),
            snap: None,
        };
        let st = cx.image_state(i);
        let copied = plan
            .steps
            .iter()
            .any(|s| s.name == StepName::Copy && st.done.contains(&s.id));
        // A run that sees the destination refuses a taken name
        // before changing the source.
        if !copied && cx.access.dst.is_some() && cx.exists(&dest)? {
            bail!("{dest} already exists: choose another dest_name, or remove it");
        }
        let (size, _) = cx.size(image)?;
        Ok(format!("{size} bytes"))
    }
}
