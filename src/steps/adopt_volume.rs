//! The `adopt-volume` step kind. Cinder manage-existing of the copy, then
//! bootable flag and image metadata; waits until `available`.

use super::prelude::*;
use crate::openstack::Cinder;
use anyhow::Context;

/// Cinder manage-existing of the copy, then bootable flag and image
/// metadata; waits until `available`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptVolume {
    pub image: ImageAt,
    pub adoption: VolumeAdoption,
}

impl Kind for AdoptVolume {
    fn role(&self) -> Role {
        Role::DestinationCloud
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Destination)]
    }

    fn describe(&self) -> String {
        let AdoptVolume { image, adoption } = self;
        format!(
            "manage {image} as volume {:?}{}{}",
            adoption.name,
            type_words(adoption),
            if adoption.bootable { ", bootable" } else { "" }
        )
    }

    fn script(&self, _st: &Step, plan: &Plan, _img: &ImagePlan) -> String {
        let AdoptVolume { image, adoption: a } = self;
        let mut b = String::new();
        let (host, metadata) = (api::HOST.stand_in(), a.adopted_metadata(&plan.id, None));
        let manage = cinder::manage(&a.manage(&host, &image.image, &metadata));
        let _ = writeln!(
            b,
            "KEPT=''\nif ! adopted {}; then\n  judge_earlier {} {}\n  if [ -z \"$KEPT\" ]; then\n    replace_earlier",
            q(&a.source_volume),
            q(&a.source_volume),
            a.earlier.as_str()
        );
        let _ = writeln!(
            b,
            "{}",
            api::call(&manage, &[api::HOST]).lines("    ", "api_send")
        );
        let _ = writeln!(b, "    case $CODE in 2*) ;; *) die \"manage-existing of \"{}\" gave HTTP $CODE: $OUT\" ;; esac\n    VOL=$(printf '%s' \"$OUT\" | jq -r .volume.id)\n  fi\nfi", q(&image.to_string()));
        let _ = writeln!(
            b,
            "if [ -n \"$KEPT\" ]; then\n  wait_for \"volume $KEPT to be available\" volume_status_is \"$KEPT\" available\n  say \"kept volume $KEPT, adopted earlier, as the adoption;\" {}\nelse",
            q(&format!("{image} is not adopted"))
        );
        let mut rest = String::new();
        let _ = writeln!(
            rest,
            "wait_for \"volume $VOL to be available\" volume_status_is \"$VOL\" available"
        );
        volume_settings(&mut rest, a);
        let _ = writeln!(
            rest,
            "say \"volume $VOL\" {}",
            q(&format!("{:?} available", a.name))
        );
        for l in rest.lines() {
            let _ = writeln!(b, "  {l}");
        }
        let _ = writeln!(b, "fi");

        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let AdoptVolume { image, adoption } = self;
        adopt_volume(cx, i, step, image, adoption)
    }
}

/// Manage-existing of the copy, then bootable flag and image metadata.
fn adopt_volume(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    image: &ImageAt,
    a: &VolumeAdoption,
) -> anyhow::Result<String> {
    let cloud = ctx.dst_cloud()?;
    let cinder = Cinder(cloud);
    let found = ctx.adoptions(&a.source_volume)?;
    let vol = match found.ours {
        Some(v) if v.status == "error" => bail!(
            "volume {} adopted from {} is in error: {}; delete it (the RBD image stays unless Cinder removed it) and run again",
            v.id,
            a.source_volume,
            cloud::volume_messages(cloud, &v.id)
        ),
        Some(v) => v,
        None => {
            let plan_id = ctx.plan_id();
            let choice = ctx.earlier_choice(a.earlier);
            match cloud::judge_earlier(&found.earlier, choice, &plan_id, &a.source_volume)? {
                cloud::Verdict::Keep(k) => {
                    let id = k.id.clone();
                    cloud::wait_status(ctx, i, step, &format!("volume {id}"), "available", || {
                        let v = cinder.volume(&id)?;
                        Ok((v.status.clone(), ()))
                    })?;
                    return Ok(format!(
                        "kept volume {id} {:?}, adopted earlier, as the adoption; {image} is not adopted",
                        k.name.as_deref().unwrap_or("")
                    ));
                }
                cloud::Verdict::Replace(r) => {
                    for said in cloud::replace_earlier(&cinder, &r, &plan_id)? {
                        ctx.event(i, step.name.as_str(), "replaced", &said);
                    }
                }
                cloud::Verdict::None => {}
            }
            let host = ctx.cinder_host(a.host.as_deref(), &image.pool)?;
            let digest = ctx.copy_digest(&a.source_volume)?;
            let metadata = a.adopted_metadata(&plan_id, digest.as_deref());
            cinder
                .manage(&a.manage(&host, &image.image, &metadata))
                .with_context(|| format!("managing {image}"))?
        }
    };
    let id = vol.id.clone();
    let what = format!("volume {id}");
    let vol = cloud::wait_status(ctx, i, step, &what, "available", || {
        let v = cinder.volume(&id)?;
        Ok((v.status.clone(), v))
    })
    .map_err(|e| {
        let says = cloud::volume_messages(cloud, &id);
        e.context(format!("adopting volume {id} ({says})"))
    })?;
    cloud::volume_settings(&cinder, &vol, a)?;
    Ok(format!("volume {id} {:?} available", a.name))
}
