//! The `check-source-cloud` step kind. Source cloud, before the cut-over: the
//! volume or image is still there and idle (volume available, or its servers
//! shut off).

use super::prelude::*;
use crate::openstack::{Cinder, Glance};

/// Source cloud, before the cut-over: the volume or image is still
/// there and idle (volume available, or its servers shut off). Reads only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSourceCloud {
    pub object: CloudObject,
    pub allow_in_use: bool,
    /// The volume must be attached to nothing (`available`): the stream
    /// path attaches it to its conversion host.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
}

impl Kind for CheckSourceCloud {
    fn role(&self) -> Role {
        Role::SourceCloud
    }

    fn subject(&self) -> ImageAt {
        in_cloud(Site::Source, self.object.id())
    }

    fn checks_inputs(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let CheckSourceCloud {
            object,
            detached,
            allow_in_use,
        } = self;
        match object {
            CloudObject::Volume { id, name, .. } => format!(
                "check the source cloud: volume {name:?} ({id}) is {}",
                if *detached {
                    "attached to nothing"
                } else if *allow_in_use {
                    "available or in use"
                } else {
                    "idle"
                }
            ),
            CloudObject::Image { id, name, .. } => {
                format!("check the source cloud: image {name:?} ({id}) is active")
            }
        }
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let CheckSourceCloud {
            object,
            allow_in_use,
            detached,
        } = self;
        let mut b = String::new();
        match object {
            CloudObject::Volume { id, .. } => {
                let _ = writeln!(b, "vol={}", q(id));
                let _ = writeln!(
                    b,
                    "osq volume show -f json -- \"$vol\" || die \"volume $vol is gone from the source cloud\""
                );
                let _ = writeln!(b, "status=$(printf '%s' \"$OUT\" | jq -r .status)");
                if !allow_in_use {
                    let _ = writeln!(
                        b,
                        "servers=$(printf '%s' \"$OUT\" | jq -r '.attachments[]?.server_id')"
                    );
                }
                let _ = writeln!(b, "case $status in available | in-use) ;; *) die \"volume $vol is $status: only available or in-use volumes can move\" ;; esac");
                if *detached {
                    let _ = writeln!(b, "[ \"$status\" = available ] || die \"volume $vol is $status: it streams only while attached to nothing (detach it from its server first)\"");
                }
                if !allow_in_use {
                    let _ = writeln!(b, "for srv in $servers; do\n  osq server show \"$srv\" -f value -c status || die \"volume $vol is attached to server $srv, which cannot be read\"\n  [ \"$OUT\" = SHUTOFF ] || die \"volume $vol is attached to server $srv, which is $OUT: shut it off (or detach the volume) first\"\ndone");
                }
                let _ = writeln!(b, "say \"volume $vol is $status\"");
            }
            CloudObject::Image { id, .. } => {
                let _ = writeln!(b, "img={}", q(id));
                let _ = writeln!(
                    b,
                    "osq image show -f value -c status -- \"$img\" || die \"image $img is gone from the source cloud\""
                );
                let _ = writeln!(
                    b,
                    "[ \"$OUT\" = active ] || die \"image $img is $OUT, not active\""
                );
            }
        }
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let CheckSourceCloud {
            object,
            allow_in_use,
            detached,
        } = self;
        check_source(cx, object, *allow_in_use, *detached)
    }
}

/// Reads the source cloud before the cut-over: the volume is still there
/// and idle (available, or its servers shut off), or the image active.
fn check_source(
    ctx: &Ctx<'_>,
    object: &CloudObject,
    allow_in_use: bool,
    detached: bool,
) -> anyhow::Result<String> {
    let cloud = ctx.src_cloud()?;
    match object {
        CloudObject::Volume { id, .. } => {
            let v = Cinder(cloud).volume(id)?;
            if detached && v.status != "available" {
                bail!(
                    "volume {id} is {}: it streams only while attached to nothing (detach it from its server first)",
                    v.status
                );
            }
            crate::plan::check_volume_status(cloud, &v, allow_in_use)?;
            Ok(format!("volume {id} is {}", v.status))
        }
        CloudObject::Image { id, .. } => {
            let img = Glance(cloud).image(id)?;
            if img.status != "active" {
                bail!("image {id} is {}, not active", img.status);
            }
            Ok(format!("image {id} is active"))
        }
    }
}
