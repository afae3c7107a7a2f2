//! The `create-volume` step kind. Stream path, destination cloud: a new volume
//! for the source volume, with the adoption's name, type, description and
//! metadata, marked [`STREAM_PENDING`]; waits until `available`.

use super::prelude::*;
use crate::openstack::Cinder;
use anyhow::Context;

/// Stream path, destination cloud: a new volume for the source volume,
/// with the adoption's name, type, description and metadata, marked
/// [`STREAM_PENDING`]; waits until `available`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVolume {
    pub adoption: VolumeAdoption,
    pub size_gb: u64,
}

impl Kind for CreateVolume {
    fn role(&self) -> Role {
        Role::DestinationCloud
    }

    fn subject(&self) -> ImageAt {
        in_cloud(Site::Destination, &self.adoption.source_volume)
    }

    fn describe(&self) -> String {
        let CreateVolume { adoption, size_gb } = self;
        format!(
            "create volume {:?} ({size_gb} GiB{}) for source volume {}, marked pending",
            adoption.name,
            type_words(adoption),
            adoption.source_volume
        )
    }

    fn script(&self, _st: &Step, plan: &Plan, _img: &ImagePlan) -> String {
        let CreateVolume {
            adoption: a,
            size_gb,
        } = self;
        let mut b = String::new();
        let create = cinder::create_volume(&a.new_volume(*size_gb, &plan.id));
        let src = q(&a.source_volume);
        let _ = writeln!(
            b,
            "if stream_target {src}; then\n  case $VOL_STATUS in error*) die \"volume $VOL made for source volume \"{src}\" is in $VOL_STATUS: delete it and run again\" ;; esac\nelse\n  need_cinder\n  judge_earlier {src} {}\n  [ -z \"$KEPT\" ] || die \"volume $KEPT, adopted earlier from \"{src}\", is to be kept, but it is not finished (available, without ferry_stream_pending): finish it with its own plan, or replace it\"\n  replace_earlier",
            a.earlier.as_str()
        );
        let _ = writeln!(
            b,
            "{}\n  case $CODE in 2*) ;; *) die \"creating volume \"{}\" gave HTTP $CODE: $OUT\" ;; esac\n  VOL=$(printf '%s' \"$OUT\" | jq -r .volume.id)\nfi",
            api::call(&create, &[]).lines("  ", "api_send"),
            q(&a.name)
        );
        let _ = writeln!(
            b,
            "wait_for \"volume $VOL to be available\" volume_status_is \"$VOL\" available\nsay \"volume $VOL available, pending\""
        );

        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let CreateVolume { adoption, size_gb } = self;
        create_volume(cx, i, step, adoption, *size_gb)
    }
}

/// The new volume for a source volume, marked pending; waits until it is
/// `available`.
fn create_volume(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    a: &VolumeAdoption,
    size_gb: u64,
) -> anyhow::Result<String> {
    let cloud = ctx.dst_cloud()?;
    let cinder = Cinder(cloud);
    let vol = match ctx.stream_target(&a.source_volume)? {
        Some(v) if v.status.starts_with("error") => bail!(
            "volume {} made for source volume {} is in {}: delete it and run again",
            v.id,
            a.source_volume,
            v.status
        ),
        Some(v) => v,
        None => {
            let found = ctx.adoptions(&a.source_volume)?;
            cloud::earlier_before_create(ctx, i, step, &cinder, &found.earlier, a)?;
            cinder
                .create_volume_from(&a.new_volume(size_gb, &ctx.plan_id()))
                .with_context(|| format!("creating volume {:?}", a.name))?
        }
    };
    let id = vol.id.clone();
    cloud::wait_status(ctx, i, step, &format!("volume {id}"), "available", || {
        let v = cinder.volume(&id)?;
        Ok((v.status.clone(), ()))
    })?;
    Ok(format!("volume {id} ({size_gb} GiB) available, pending"))
}
