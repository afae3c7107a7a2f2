//! A volume's own snapshots (`options.snapshots: carry`): copied into the
//! destination copy before the warm rounds and the cut-over (which then
//! carry only what changed since the last of them), and, with clouds,
//! managed as Cinder snapshots of the adopted volume.

use crate::plan::{
    without_ferry_keys, Action, Adoption, Check, CloudObject, ImageAt, SnapshotAdoption, StepName,
    SNAPSHOT_FROM,
};
use crate::spec::{ImageKind, Snapshots};
use crate::steps;

use super::adopt::manageable_description;
use super::draft::draft;
use super::ImageBuild;

impl ImageBuild<'_> {
    /// The snapshots that travel with the image, oldest first: a volume's
    /// own, when carried. Not a Glance image's (its `snap` is made again
    /// at the destination) nor a clone's (its carrier is a flat copy of
    /// the cut-over alone); never ferry's own cut-over or rounds.
    pub(super) fn carried(&self) -> Vec<String> {
        if !self.carries_snapshots() {
            return Vec::new();
        }
        self.own_snapshots()
    }

    /// Whether this image's snapshots may travel: asked for, and a
    /// volume that is no clone and arrives as a volume (a Glance image
    /// has no snapshots of its own).
    pub(super) fn carries_snapshots(&self) -> bool {
        self.opts.snapshots == Snapshots::Carry
            && self.r.kind == ImageKind::Cinder
            && !self.clone
            && !matches!(self.adoption, Some(Adoption::Image(_)))
    }

    /// The image's user snapshots, ferry's own left out (a plan made
    /// again after its state was lost sees them).
    pub(super) fn own_snapshots(&self) -> Vec<String> {
        self.facts
            .user_snapshots
            .iter()
            .filter(|s| {
                !s.starts_with(crate::plan::CUTOVER_SNAP) && !s.starts_with(crate::plan::ROUND_SNAP)
            })
            .cloned()
            .collect()
    }

    /// The snapshots copied into the partial copy, oldest first; done once
    /// each is there with its digest noted.
    pub(super) fn copy_snapshots(&mut self) {
        let snaps = self.carried();
        let Some(last) = snaps.last() else {
            return;
        };
        let at = &self.at;
        let from = if self.direct {
            at.source.clone()
        } else {
            at.mirrored.clone()
        };
        let last_at = ImageAt {
            snap: Some(last.clone()),
            ..from.clone()
        };
        let arrived = if self.direct {
            Check::SnapshotExists { image: last_at }
        } else {
            // The snapshot's data is there, not only its name.
            Check::MirrorSynced {
                source: at.carrier.clone(),
                mirrored: last_at,
                mode: self.mode,
            }
        };
        let done = snaps
            .iter()
            .flat_map(|s| {
                [
                    Check::SnapshotExists {
                        image: ImageAt {
                            snap: Some(s.clone()),
                            ..at.partial.clone()
                        },
                    },
                    Check::MetadataPresent {
                        image: at.partial.clone(),
                        key: crate::plan::checksum_key(s),
                    },
                ]
            })
            .collect();
        let step = draft(
            StepName::CopySnapshots,
            Action::CopySnapshots(steps::CopySnapshots {
                from,
                to: at.partial.clone(),
                snapshots: snaps.clone(),
                features: Some(self.copy_features()),
            }),
        )
        .requires(vec![arrived])
        .done_when(done)
        .past_when(self.dest_past());
        self.steps.push(step);
    }

    /// With a volume adopted: each carried snapshot managed as a Cinder
    /// snapshot of it, with the name, description and metadata of the
    /// source's Cinder snapshot it was (an RBD snapshot Cinder did not
    /// make keeps its name). Idempotent by itself (each is found by its
    /// mark), so it has no `done_when`: a run records it.
    pub(super) fn manage_snapshots(&mut self) {
        let Some(Adoption::Volume(v)) = &self.adoption else {
            return;
        };
        let carried = self.carried();
        if carried.is_empty() {
            return;
        }
        let known: &[crate::plan::CloudSnapshot] = match &self.facts.cloud {
            Some(CloudObject::Volume { snapshots, .. }) => snapshots,
            _ => &[],
        };
        let snapshots = carried
            .into_iter()
            .map(|rbd| match known.iter().find(|c| c.rbd_name() == rbd) {
                Some(c) => {
                    let mut metadata = without_ferry_keys(&c.metadata);
                    metadata.insert(SNAPSHOT_FROM.into(), c.id.clone());
                    SnapshotAdoption {
                        rbd,
                        name: c.name.clone(),
                        description: c.description.as_deref().map(manageable_description),
                        metadata,
                    }
                }
                None => SnapshotAdoption {
                    name: rbd.clone(),
                    description: None,
                    metadata: [(SNAPSHOT_FROM.to_string(), format!("rbd:{rbd}"))].into(),
                    rbd,
                },
            })
            .collect();
        let step = draft(
            StepName::ManageSnapshots,
            Action::ManageSnapshots(steps::ManageSnapshots {
                image: self.at.copy.clone(),
                source_volume: v.source_volume.clone(),
                snapshots,
            }),
        )
        .requires(vec![Check::VolumeAdopted {
            source_volume: v.source_volume.clone(),
        }]);
        self.steps.push(step);
    }
}
