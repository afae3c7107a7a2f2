//! The `check-destination-cloud` step kind. Destination cloud, before anything
//! changes: the volume type exists, the name is free, the Cinder host is known.

use super::prelude::*;
use crate::openstack::{Cinder, Glance, Volume};
use crate::plan::{whose, REGISTERED_FROM, STREAM_PENDING};

/// Destination cloud, before anything changes: the volume type exists,
/// the name is free, the Cinder host is known. Reads only. With `create`
/// (the stream path) the volume is created, not managed: no Cinder host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDestinationCloud {
    pub image: ImageAt,
    pub adoption: Adoption,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
}

impl Kind for CheckDestinationCloud {
    fn role(&self) -> Role {
        Role::DestinationCloud
    }

    fn checks_inputs(&self) -> bool {
        true
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Destination)]
    }

    fn describe(&self) -> String {
        match (&self.adoption, self.create) {
            (Adoption::Volume(v), true) => format!(
                "check the destination cloud: volume type {}, name {:?} free",
                v.volume_type.as_deref().unwrap_or("(default)"),
                v.name,
            ),
            (Adoption::Volume(v), false) => format!(
                "check the destination cloud: volume type {}, name {:?} free, Cinder host {}",
                v.volume_type.as_deref().unwrap_or("(default)"),
                v.name,
                v.host.as_deref().unwrap_or("found by RBD pool")
            ),
            (Adoption::Image(g), _) => format!(
                "check the destination cloud: image id {} and name {:?} free",
                g.id, g.name
            ),
        }
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let CheckDestinationCloud {
            image,
            adoption,
            create,
        } = self;
        let mut b = String::new();
        match adoption {
            Adoption::Volume(v) => {
                let src = q(&v.source_volume);
                // The stream path goes on with an unfinished volume.
                let (how, find) = if *create {
                    ("made", "stream_target")
                } else {
                    ("adopted", "adopted")
                };
                let _ = writeln!(
                    b,
                    "if {find} {src}; then\n  say \"{how} already as volume $VOL\"\nelse\n  judge_earlier {src} {}",
                    v.earlier.as_str()
                );
                let _ = writeln!(
                    b,
                    "  if [ -n \"$KEPT\" ]; then\n    say \"keeps volume $KEPT, adopted earlier,\" {}\n  else",
                    q(&format!(
                        "as the adoption of {}: this plan's copy {image} is not adopted (remove it when it is not needed)",
                        v.source_volume
                    ))
                );
                if let Some(t) = &v.volume_type {
                    let _ = writeln!(b, "    volume_type_exists {} || die {}", q(t), q(&format!("volume type {t:?} does not exist in the destination cloud; map the source type with options.volume_types")));
                }
                let _ = writeln!(b, "    ! volume_named {} || die {}", q(&v.name), q(&format!("a volume named {:?} already exists in the destination cloud: choose another name (images[].name)", v.name)));
                let host = if *create { "" } else { ", host $HOST" };
                let _ = writeln!(
                    b,
                    "    say \"type \"{}\", name free{host}${{REPLACING:+, replaces the earlier adoption $REPLACING (renamed, data kept)}}\"\n  fi\nfi",
                    q(v.volume_type.as_deref().unwrap_or("(default)"))
                );
            }
            Adoption::Image(g) => {
                let _ = writeln!(b, "if osq image show -f json -- {}; then\n  if image_earlier {} {}; then\n    say {}\n  else\n    say 'registered already'\n  fi\nelse", q(&g.id), q(&g.id), g.earlier.as_str(), q(&format!("keeps image {}, registered earlier, as the registration: this plan's copy is not registered", g.id)));
                let _ = writeln!(b, "  osq image list --name={} -f value -c ID || true\n  [ -z \"$OUT\" ] || die {}\n  say 'image id and name free'\nfi", q(&g.name), q(&format!("an image named {:?} already exists in the destination cloud: choose another name (images[].name)", g.name)));
            }
        }
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let CheckDestinationCloud {
            image,
            adoption,
            create,
        } = self;
        check_destination(cx, image, adoption, *create)
    }
}

/// Reads the destination cloud and refuses bad inputs before anything
/// changes anywhere.
fn check_destination(
    ctx: &Ctx<'_>,
    image: &ImageAt,
    adoption: &Adoption,
    create: bool,
) -> anyhow::Result<String> {
    let cloud = ctx.dst_cloud()?;
    match adoption {
        Adoption::Volume(v) => {
            let found = ctx.adoptions(&v.source_volume)?;
            if let Some(done) = &found.ours {
                let how = if create { "made" } else { "adopted" };
                return Ok(format!("{how} already as volume {}", done.id));
            }
            if create {
                if let Some(p) = ctx.stream_target(&v.source_volume)? {
                    return Ok(format!(
                        "made already as volume {} (unfinished, by plan {}): this plan goes on with it",
                        p.id,
                        p.metadata.get(STREAM_PENDING).map_or("?", String::as_str)
                    ));
                }
            }
            let plan_id = ctx.plan_id();
            let choice = ctx.earlier_choice(v.earlier);
            let replacing = match cloud::judge_earlier(&found.earlier, choice, &plan_id, &v.source_volume)? {
                cloud::Verdict::Keep(k) => {
                    return Ok(format!(
                        "keeps volume {} {:?}, adopted earlier ({}), as the adoption of {}: this plan's copy {image} is not adopted (remove it when it is not needed)",
                        k.id,
                        k.name.as_deref().unwrap_or(""),
                        found.earlier[0].1.describe(&plan_id),
                        v.source_volume
                    ))
                }
                cloud::Verdict::Replace(r) => r.iter().map(|v| v.id.clone()).collect(),
                cloud::Verdict::None => Vec::new(),
            };
            let cinder = Cinder(cloud);
            if let Some(t) = &v.volume_type {
                let types = cinder.volume_types()?;
                if !types.iter().any(|x| &x.name == t || &x.id == t) {
                    bail!(
                        "volume type {t:?} does not exist in cloud {} (types: {}); map the source type with options.volume_types",
                        cloud.name(),
                        types.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                    );
                }
            }
            // A volume about to be replaced gives its name up.
            let taken: Vec<Volume> = cinder
                .volumes(Some(&v.name))?
                .into_iter()
                .filter(|t| !replacing.contains(&t.id))
                .collect();
            let replaces = if replacing.is_empty() {
                String::new()
            } else {
                format!(
                    ", replaces the earlier adoption {} (renamed, data kept)",
                    replacing.join(", ")
                )
            };
            if let Some(other) = taken.first() {
                bail!(
                    "a volume named {:?} already exists in cloud {} ({}): choose another name (images[].name)",
                    v.name,
                    cloud.name(),
                    other.id
                );
            }
            if create {
                return Ok(format!(
                    "type {}, name free{replaces}",
                    v.volume_type.as_deref().unwrap_or("(default)")
                ));
            }
            let host = ctx.cinder_host(v.host.as_deref(), &image.pool)?;
            Ok(format!(
                "type {}, name free, host {host}{replaces}",
                v.volume_type.as_deref().unwrap_or("(default)")
            ))
        }
        Adoption::Image(g) => {
            let glance = Glance(cloud);
            match glance.image(&g.id) {
                Ok(existing) => {
                    let props = existing.user_properties();
                    if !props.contains_key(REGISTERED_FROM) {
                        bail!(
                            "image id {} is taken in cloud {} by {:?}, which ferry did not register",
                            g.id,
                            cloud.name(),
                            existing.name.unwrap_or_default()
                        );
                    }
                    let plan_id = ctx.plan_id();
                    return cloud::earlier_image(
                        &g.id,
                        &whose(&props, &plan_id, None),
                        ctx.earlier_choice(g.earlier),
                        &plan_id,
                    );
                }
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(other) = glance.images_with("name", &g.name)?.first() {
                bail!(
                    "an image named {:?} already exists in cloud {} ({}): choose another name (images[].name)",
                    g.name,
                    cloud.name(),
                    other.id
                );
            }
            Ok(format!("image id and name {:?} free", g.name))
        }
    }
}
