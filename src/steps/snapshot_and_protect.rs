//! The `snapshot-and-protect` step kind. Create and protect a snapshot (Glance
//! clones from `<image>@snap`).

use super::prelude::*;

/// Create and protect a snapshot (Glance clones from `<image>@snap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAndProtect {
    pub image: ImageAt,
}

impl Kind for SnapshotAndProtect {
    fn role(&self) -> Role {
        Role::DestinationStorage
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Destination)]
    }

    fn describe(&self) -> String {
        let SnapshotAndProtect { image } = self;
        format!("create and protect {image}")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let SnapshotAndProtect { image } = self;
        let mut b = String::new();
        b.push_str(&snap_create(image));
        let _ = writeln!(
            b,
            "snap_protected {} {} || rbdw snap protect {}",
            spec(image),
            snap(image),
            with_snap(image)
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let SnapshotAndProtect { image } = self;
        let snap = image.snap.clone().unwrap_or_else(|| "snap".into());
        let head = plain(image);
        cx.with_image(&head, true, |img| {
            if !img.snapshots()?.iter().any(|s| s.name == snap) {
                img.snap_create(&snap)?;
            }
            if !img.snap_is_protected(&snap)? {
                img.snap_protect(&snap)?;
            }
            Ok(())
        })?;
        Ok(format!("{image}"))
    }
}
