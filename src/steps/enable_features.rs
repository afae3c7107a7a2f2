//! The `enable-features` step kind. Enable features, one at a time, in this
//! order.

use super::prelude::*;

/// Enable features, one at a time, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnableFeatures {
    pub image: ImageAt,
    pub features: Vec<Features>,
    /// Features the image has that a cluster may refuse journaling
    /// beside: disabled (in this order) only when enabling journaling
    /// is refused, then journaling is enabled again. Ceph 16.2 needs
    /// none of it; deep-flatten, once disabled, cannot come back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub make_room: Vec<Features>,
}

impl Kind for EnableFeatures {
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
        let EnableFeatures {
            image,
            features,
            make_room,
        } = self;
        let mut s = format!("enable {} on {image}", in_order(features));
        if !make_room.is_empty() {
            s.push_str(&format!(
                " (should the cluster refuse journaling beside them: disable {} first)",
                in_order(make_room)
            ));
        }
        s
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let mut b = String::new();
        let image = &self.image;
        for f in &self.features {
            for n in feature_names(*f) {
                if n == "journaling" && !self.make_room.is_empty() {
                    let room: Vec<&str> = self
                        .make_room
                        .iter()
                        .flat_map(|m| feature_names(*m))
                        .collect();
                    let _ = writeln!(b, "enable_journaling {} {}", spec(image), room.join(" "));
                } else {
                    let _ = writeln!(
                        b,
                        "feature_on {} {n} || rbdw feature enable {} {n}",
                        spec(image),
                        spec(image)
                    );
                }
            }
        }
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let EnableFeatures {
            image,
            features,
            make_room,
        } = self;
        let mut made_room = Vec::new();
        cx.with_image(image, true, |img| {
            for f in features {
                if img.features()?.contains(*f) {
                    continue;
                }
                match img.update_features(*f, true) {
                    Err(e)
                        if *f == Features::JOURNALING
                            && !make_room.is_empty()
                            && e.kind() == ErrorKind::InvalidArgument =>
                    {
                        for m in make_room {
                            if img.features()?.contains(*m) {
                                img.update_features(*m, false)?;
                                made_room.push(*m);
                            }
                        }
                        img.update_features(*f, true)?;
                    }
                    r => r?,
                }
            }
            Ok(())
        })?;
        let mut detail = feature_list(features);
        if !made_room.is_empty() {
            detail.push_str(&format!(
                " (the cluster refused journaling beside {}: disabled them)",
                feature_list(&made_room)
            ));
        }
        Ok(detail)
    }
}
