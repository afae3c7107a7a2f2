//! The cut-over: the snapshot the copy is made from, and its digest. A
//! direct transfer's cut-over, or a clone's frozen snapshot, is taken on
//! the image itself; a mirrored image's is a snapshot mirroring carries.

use crate::plan::{Action, Check, StepName};
use crate::steps;

use super::draft::draft;
use super::ImageBuild;

impl ImageBuild<'_> {
    /// The user snapshot taken under the exclusive lock when the image has
    /// it: a direct transfer's one change on the source (its cut-over), or
    /// a clone's, whose flat copy is then mirrored.
    pub(super) fn freeze(&mut self) {
        if !self.direct && !self.clone {
            return;
        }
        let image = &self.at.source_cut;
        let step = draft(
            if self.direct {
                StepName::CutOverSnapshot
            } else {
                StepName::FreezeSnapshot
            },
            Action::FreezeSnapshot(steps::FreezeSnapshot {
                image: image.clone(),
            }),
        )
        .requires(self.idle())
        .done_when(vec![Check::SnapshotExists {
            image: image.clone(),
        }])
        .past_when(self.source_past());
        self.steps.push(step);
    }

    /// The cut-over, in both modes: a user snapshot that mirroring carries
    /// to the destination, where its arrival is seen without the status;
    /// then its digest, which in snapshot mode travels with it in the one
    /// mirror snapshot `hash-source` takes.
    pub(super) fn cut_over(&mut self) {
        let (mode, cut) = (self.mode, &self.at.carrier_cut);
        let done = vec![Check::SnapshotExists { image: cut.clone() }];
        let snapshot = draft(
            StepName::CutOverSnapshot,
            Action::CreateCutover(steps::CreateCutover {
                image: cut.clone(),
                mode,
            }),
        )
        // A clone was frozen by its own snapshot; the carrier is ferry's.
        .requires(if self.clone { vec![] } else { self.idle() })
        .done_when(done)
        .past_when(self.source_past());
        // After the warm rounds, both sides of them (a role's run holds
        // one side, and must not take the cut-over beside its rounds).
        let snapshot = if self.warm() {
            snapshot.after(self.after_warm(StepName::WarmCopy))
        } else {
            snapshot
        };
        // Its digest, as image metadata that mirroring carries too. Only
        // the verify needs it: the sync and the copy go on meanwhile. Done
        // once the digest is on its way (`checksum_sent_key`).
        let carrier = &self.at.carrier;
        let hash = draft(
            StepName::HashSource,
            Action::HashSource(steps::HashSource {
                image: cut.clone(),
                mode,
            }),
        )
        .requires(vec![Check::SnapshotExists { image: cut.clone() }])
        .done_when(vec![
            Check::MetadataPresent {
                image: carrier.clone(),
                key: self.at.sum_key.clone(),
            },
            Check::MetadataPresent {
                image: carrier.clone(),
                key: crate::plan::checksum_sent_key(&self.at.cut),
            },
        ])
        .past_when(self.source_past());
        self.steps.push(snapshot);
        self.steps.push(hash);
    }
}
