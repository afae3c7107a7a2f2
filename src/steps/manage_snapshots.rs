//! The `manage-snapshots` step kind. Once the copy is adopted, each
//! snapshot carried into it (`copy-snapshots`) is managed as a Cinder
//! snapshot of the adopted volume (`os-snapshot-manage`: the RBD driver
//! renames it `snapshot-<new id>` and protects it), with the name,
//! description and metadata of the source's snapshot; waits until each is
//! `available`. A snapshot managed earlier is found by its mark
//! (`plan::SNAPSHOT_FROM`), never managed twice.

use super::prelude::*;
use crate::openstack::Cinder;
use crate::plan::SnapshotAdoption;
use anyhow::Context;

/// Manages the carried snapshots of the copy adopted from `source_volume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManageSnapshots {
    /// The copy under its final name (Cinder renames it once adopted).
    pub image: ImageAt,
    /// The source volume the adopted volume is marked with.
    pub source_volume: String,
    /// The carried snapshots, oldest first.
    pub snapshots: Vec<SnapshotAdoption>,
}

impl Kind for ManageSnapshots {
    fn role(&self) -> Role {
        Role::DestinationCloud
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Destination)]
    }

    fn describe(&self) -> String {
        format!(
            "manage the snapshots {} of the volume adopted from {} as its Cinder snapshots",
            self.snapshots
                .iter()
                .map(|s| format!("{} ({:?})", s.rbd, s.name))
                .collect::<Vec<_>>()
                .join(", "),
            self.source_volume
        )
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let mut b = String::new();
        let _ = writeln!(
            b,
            "adopted {src}\nif [ -z \"$VOL\" ]; then\n  say {none}\nelse",
            src = q(&self.source_volume),
            none = q(&format!(
                "no volume adopted from {} by this plan (an earlier one kept?): its snapshots are not managed",
                self.source_volume
            )),
        );
        for s in &self.snapshots {
            let metadata = s.metadata.clone();
            let manage = cinder::manage_snapshot(&cinder::ManageSnapshot {
                volume_id: &api::VOL.stand_in(),
                source_name: &s.rbd,
                name: &s.name,
                description: s.description.as_deref(),
                metadata: &metadata,
            });
            let _ = writeln!(
                b,
                "  api_get \"$CINDER/snapshots/detail?volume_id=$VOL\"\n  [ \"$CODE\" = 200 ] || die \"listing the snapshots of volume $VOL gave HTTP $CODE: $OUT\"\n  SNAP=$(printf '%s' \"$OUT\" | jq -r --arg m {mark} '[.snapshots[] | select(.metadata.{key} == $m)][0].id // empty')\n  if [ -z \"$SNAP\" ]; then",
                mark = q(s.mark()),
                key = crate::plan::SNAPSHOT_FROM,
            );
            let _ = writeln!(
                b,
                "{}",
                api::call(&manage, &[api::VOL]).lines("    ", "api_send")
            );
            let _ = writeln!(
                b,
                "    case $CODE in 2*) ;; *) die \"managing snapshot \"{rbd}\" of volume $VOL gave HTTP $CODE: $OUT\" ;; esac\n    SNAP=$(printf '%s' \"$OUT\" | jq -r .snapshot.id)\n  fi\n  wait_for \"snapshot $SNAP to be available\" snapshot_status_is \"$SNAP\" available\n  say \"snapshot $SNAP\" {name}",
                rbd = q(&s.rbd),
                name = q(&format!("{:?} available", s.name)),
            );
        }
        let _ = writeln!(b, "fi");
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let cinder = Cinder(cx.dst_cloud()?);
        let Some(vol) = cx.adoptions(&self.source_volume)?.ours else {
            return Ok(format!(
                "no volume adopted from {} by this plan (an earlier one kept?): its snapshots are not managed",
                self.source_volume
            ));
        };
        let mut done = Vec::new();
        for s in &self.snapshots {
            // One listing per snapshot: a manage sent before a crash shows
            // up here, with its mark, and is not sent again.
            let existing = cinder.snapshots_of(&vol.id)?;
            let id = match existing.iter().find(|e| {
                e.metadata
                    .get(crate::plan::SNAPSHOT_FROM)
                    .map(String::as_str)
                    == Some(s.mark())
            }) {
                Some(e) => e.id.clone(),
                None => {
                    cinder
                        .manage_snapshot(&cinder::ManageSnapshot {
                            volume_id: &vol.id,
                            source_name: &s.rbd,
                            name: &s.name,
                            description: s.description.as_deref(),
                            metadata: &s.metadata,
                        })
                        .with_context(|| {
                            format!("managing snapshot {} of volume {}", s.rbd, vol.id)
                        })?
                        .id
                }
            };
            cloud::wait_status(cx, i, step, &format!("snapshot {id}"), "available", || {
                let v = cinder.snapshot(&id)?;
                Ok((v.status.clone(), ()))
            })?;
            done.push(format!("{} as {id}", s.rbd));
        }
        Ok(format!("volume {}: {}", vol.id, done.join(", ")))
    }
}
