//! The `publish` step kind. Rename the verified partial copy to its final name.

use super::prelude::*;

/// Rename the verified partial copy to its final name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub partial: ImageAt,
    pub copy: ImageAt,
}

impl Kind for Publish {
    fn role(&self) -> Role {
        Role::DestinationStorage
    }

    fn subject(&self) -> ImageAt {
        self.copy.clone()
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![
            ("partial", &self.partial, Place::Destination),
            ("copy", &self.copy, Place::Destination),
        ]
    }

    fn describe(&self) -> String {
        let Publish { partial, copy } = self;
        format!("rename the verified {partial} to {}", copy.image)
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let Publish { partial, copy } = self;
        let mut b = String::new();
        let _ = writeln!(
            b,
            "image_absent {} || rbdw rename {} {}",
            spec(partial),
            spec(partial),
            spec(copy)
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let Publish { partial, copy } = self;
        if cx.exists(partial)? {
            cx.dst()?
                .pool(&copy.pool)?
                .rename_image(&partial.image, &copy.image)?;
        }
        Ok(format!("{copy}"))
    }
}
