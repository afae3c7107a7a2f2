//! What the plan warns of for an image before its steps: what ferry carries
//! differently from the source, what it finds begun, and what the operator
//! must keep in mind until cleanup.

use crate::ceph::MirrorMode;
use crate::plan::{Adoption, CloudObject};
use crate::spec::Snapshots;

use super::{CloneBase, ImageBuild};

impl ImageBuild<'_> {
    /// The image's warnings, in the order the plan lists them (a journal
    /// mode's feature warning follows, from the mirror phase).
    pub(super) fn warn(&mut self, base: &CloneBase) {
        let (opts, facts) = (self.opts, self.facts);
        let cut = &self.at.cut;
        let mut warnings = Vec::new();
        if let (
            Some(Adoption::Volume(v)),
            Some(CloudObject::Volume {
                description: Some(d),
                ..
            }),
        ) = (&self.adoption, &facts.cloud)
        {
            if v.description.as_deref() != Some(d.as_str()) {
                warnings.push(
                    "the description holds line breaks or other control characters, which Cinder's manage-existing refuses: it is carried with spaces in their place".into(),
                );
            }
        }
        if let Some(rec) = &facts.recorded {
            warnings.push(format!(
                "begun before by plan {} (its state was lost): its record on the image gives the original features ({}) and mirroring ({}), restored at cleanup; the image now has features ({}) and mirroring ({})",
                rec.plan,
                facts.features,
                mirroring_words(facts.mirroring),
                rec.features_now,
                mirroring_words(rec.mirroring_now),
            ));
        }
        warnings.extend(self.snapshot_warning());
        if facts.in_use {
            let who = facts.users.join("; ");
            warnings.push(if opts.allow_in_use {
                format!("in use, and allowed ({who}): feature changes on an in-use image can freeze its server, and writes after the cut-over are not moved")
            } else {
                format!("in use ({who}): the steps that need an idle image wait until no client uses it")
            });
        }
        warnings.push(format!(
            "from the cut-over snapshot {cut} until cleanup confirms the copy, keep the source stopped: writes after the cut-over are not moved (cleanup reports them and stops)"
        ));
        warnings.extend(self.clone_warnings(base));
        if !opts.cleanup {
            warnings.push(format!(
                "without cleanup the snapshot {cut} stays on the source (Cinder cannot delete a volume that has snapshots)"
            ));
        }
        self.warnings = warnings;
    }

    /// What happens to the image's own snapshots, when it has any.
    fn snapshot_warning(&self) -> Option<String> {
        let snaps = self.own_snapshots();
        if snaps.is_empty() {
            return None;
        }
        let (n, list) = (snaps.len(), snaps.join(", "));
        if self.carries_snapshots() {
            let managed = if matches!(self.adoption, Some(Adoption::Volume(_))) {
                ", then managed as Cinder snapshots of the adopted volume (names kept)"
            } else {
                ""
            };
            return Some(format!(
                "{n} snapshot(s) carried: {list} (copied into the copy in order, each under its name, before the cut-over{managed})"
            ));
        }
        let how = if self.direct {
            ""
        } else {
            " (mirrored to the destination cluster, which costs time)"
        };
        let why = if self.opts.snapshots == Snapshots::Drop {
            "dropped (options.snapshots: drop)"
        } else if self.clone {
            "do not arrive (a clone's snapshots cannot be carried)"
        } else if matches!(self.adoption, Some(Adoption::Image(_))) {
            "do not arrive (it arrives as a Glance image)"
        } else {
            "do not arrive (a Glance image's own snapshot is made again at the destination)"
        };
        Some(format!(
            "{n} snapshot(s) {why}{how}: the copy is the cut-over alone, without {list}"
        ))
    }

    /// How a clone is carried and what it arrives as.
    fn clone_warnings(&self, base: &CloneBase) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(p) = &self.facts.parent {
            let arrives = match base {
                CloneBase::Parent { snap, how } => format!(
                    "it arrives as a clone of {snap} ({how}), written only where its data differ"
                ),
                CloneBase::Flat(_) => "it arrives flat".into(),
            };
            let how = if self.direct {
                "read through its parent".to_string()
            } else {
                format!(
                    "copied out flat on the source first ({} in pool {} until cleanup), mirrored as {}",
                    crate::units::human_bytes(self.facts.size),
                    self.r.pool,
                    self.at.carrier.image
                )
            };
            warnings.push(format!(
                "a clone of {p} (clone v{}): {how}; {arrives}",
                p.clone_format
            ));
        }
        if let CloneBase::Flat(Some(why)) = base {
            warnings.push(why.clone());
        }
        warnings
    }
}

fn mirroring_words(m: Option<MirrorMode>) -> String {
    m.map_or("disabled".into(), |m| format!("{m} mode"))
}
