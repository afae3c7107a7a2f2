//! The `finish-volume` step kind. Stream path, destination cloud: bootable flag
//! and image metadata, then the [`STREAM_PENDING`] mark goes: the volume is
//! adopted.

use super::prelude::*;
use crate::openstack::Cinder;
use crate::plan::{ADOPTED_BY, STREAM_DIGEST, STREAM_PENDING};

/// Stream path, destination cloud: bootable flag and image metadata,
/// then the [`STREAM_PENDING`] mark goes: the volume is adopted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishVolume {
    pub adoption: VolumeAdoption,
}

impl Kind for FinishVolume {
    fn role(&self) -> Role {
        Role::DestinationCloud
    }

    fn subject(&self) -> ImageAt {
        in_cloud(Site::Destination, &self.adoption.source_volume)
    }

    fn describe(&self) -> String {
        let FinishVolume { adoption } = self;
        let mut what = Vec::new();
        if adoption.bootable {
            what.push("bootable");
        }
        if !adoption.image_metadata.is_empty() {
            what.push("image metadata");
        }
        what.push("remove the pending mark");
        format!("finish volume {:?}: {}", adoption.name, what.join(", "))
    }

    fn script(&self, _st: &Step, plan: &Plan, _img: &ImagePlan) -> String {
        let FinishVolume { adoption: a } = self;
        let mut b = String::new();
        let src = q(&a.source_volume);
        let _ = writeln!(b, "stream_target {src} || die \"no destination volume was made for source volume \"{src}\nneed_cinder");
        let _ = writeln!(b, "[ \"$VOL_STATUS\" = available ] || die \"volume $VOL is $VOL_STATUS, not available (attached still? the conversion-hosts part detaches it when run again)\"");
        volume_settings(&mut b, a);
        // A volume an earlier plan began becomes this plan's.
        let vol = api::VOL.stand_in();
        let mark = [(crate::plan::ADOPTED_BY.to_string(), plan.id.clone())].into();
        let _ = writeln!(b, "{}\ncase $CODE in 2*) ;; *) die \"marking volume $VOL as this plan's gave HTTP $CODE: $OUT\" ;; esac", api::call(&cinder::set_metadata(&vol, &mark), &[api::VOL]).lines("", "api_send"));
        let _ = writeln!(b, "{}\ncase $CODE in 2* | 404) ;; *) die \"removing the pending mark of volume $VOL gave HTTP $CODE: $OUT\" ;; esac", api::call(&cinder::delete_metadata(&vol, crate::plan::STREAM_PENDING), &[api::VOL]).lines("", "api_send"));
        let _ = writeln!(
            b,
            "say \"volume $VOL\" {}",
            q(&format!("{:?} available", a.name))
        );

        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let FinishVolume { adoption } = self;
        finish_volume(cx, adoption)
    }
}

/// Bootable flag and image metadata, then the pending mark goes.
fn finish_volume(ctx: &Ctx<'_>, a: &VolumeAdoption) -> anyhow::Result<String> {
    let cinder = Cinder(ctx.dst_cloud()?);
    let vol = ctx
        .stream_target(&a.source_volume)?
        .ok_or_else(|| anyhow!("no destination volume was made for {}", a.source_volume))?;
    if vol.status != "available" {
        bail!(
            "volume {} is {}, not available (attached still? a re-run of the stream step detaches it)",
            vol.id,
            vol.status
        );
    }
    cloud::volume_settings(&cinder, &vol, a)?;
    // A volume an earlier plan began becomes this plan's before it counts
    // as adopted.
    let plan_id = ctx.plan_id();
    if vol.metadata.get(ADOPTED_BY) != Some(&plan_id) {
        cinder.set_metadata(&vol.id, &[(ADOPTED_BY.to_string(), plan_id)].into())?;
    }
    cinder.delete_metadata(&vol.id, STREAM_PENDING)?;
    Ok(format!(
        "volume {} {:?} available, digest {}",
        vol.id,
        a.name,
        vol.metadata
            .get(STREAM_DIGEST)
            .map(|d| short(d))
            .unwrap_or("?")
    ))
}
