//! The cleanup, on the source once the copy is verified: the verification
//! handed over, the source checked unchanged, and what ferry added taken
//! away (mirroring, a clone's flat copy, the cut-over snapshot, features,
//! the original record).

use crate::ceph::Features;
use crate::plan::{Action, Check, StepName};
use crate::steps;

use super::draft::draft;
use super::ImageBuild;

impl ImageBuild<'_> {
    pub(super) fn cleanup(&mut self) {
        self.confirm();
        self.stop_mirroring();
        self.remove_cut_over();
        self.restore_features();
        // Last: the image is as it was, so its record has served.
        let (source, key) = (&self.at.source, &self.at.original_key);
        let step = draft(
            StepName::ForgetOriginal,
            Action::RemoveMetadata(steps::RemoveMetadata {
                image: source.clone(),
                key: key.clone(),
            }),
        )
        .requires(vec![self.confirmed()])
        .done_when(vec![Check::MetadataAbsent {
            image: source.clone(),
            key: key.clone(),
        }]);
        self.steps.push(step);
    }

    /// The source cannot see the destination: the copy's verification
    /// reaches it as a hand-off, noted on the source before anything else;
    /// every cleanup step requires that note. Then the source is checked
    /// for writes since the cut-over.
    fn confirm(&mut self) {
        let at = &self.at;
        let confirm = draft(
            StepName::ConfirmVerified,
            Action::ConfirmVerified(steps::ConfirmVerified {
                source: at.carrier_cut.clone(),
                copy: at.copy.clone(),
                mark: at.source.clone(),
                origin: at.origin.clone(),
            }),
        )
        .requires(vec![self.verified()])
        .done_when(vec![self.confirmed()]);
        let unchanged = draft(
            StepName::CheckSourceUnchanged,
            Action::CheckUnchanged(steps::CheckUnchanged {
                image: at.source_cut.clone(),
            }),
        )
        .requires(vec![self.confirmed()])
        .past_when(vec![Check::SnapshotAbsent {
            image: at.source_cut.clone(),
        }]);
        self.steps.push(confirm);
        self.steps.push(unchanged);
    }

    /// Mirroring is disabled where ferry enabled it: the image itself, or a
    /// clone's carrier (rbd-mirror then removes the mirrored copy), which
    /// is then removed.
    fn stop_mirroring(&mut self) {
        let carrier = &self.at.carrier;
        let gone = vec![Check::Absent {
            image: carrier.clone(),
        }];
        let mut drafts = Vec::new();
        if !self.direct && !self.pool_mode && (self.flat_carrier || self.facts.mirroring.is_none())
        {
            drafts.push(
                draft(
                    StepName::DisableMirroring,
                    Action::DisableMirroring(steps::DisableMirroring {
                        image: carrier.clone(),
                    }),
                )
                .requires(vec![self.confirmed()])
                .done_when(vec![Check::MirroringDisabled {
                    image: carrier.clone(),
                }])
                .past_when(if self.flat_carrier {
                    gone.clone()
                } else {
                    vec![]
                }),
            );
        }
        if self.flat_carrier {
            drafts.push(
                draft(
                    StepName::RemoveFlatCopy,
                    Action::RemoveImage(steps::RemoveImage {
                        image: carrier.clone(),
                    }),
                )
                .requires(vec![self.confirmed()])
                .done_when(gone),
            );
        }
        self.steps.extend(drafts);
    }

    /// The cut-over snapshot (on the image itself, also for a clone) and
    /// the checksum set with it (on the carrier, which is gone by now for a
    /// clone's flat copy).
    fn remove_cut_over(&mut self) {
        let at = &self.at;
        let mut gone = vec![Check::SnapshotAbsent {
            image: at.source_cut.clone(),
        }];
        if !self.flat_carrier {
            gone.push(Check::MetadataAbsent {
                image: at.carrier.clone(),
                key: at.sum_key.clone(),
            });
        }
        let step = draft(
            StepName::RemoveCutOverSnapshot,
            Action::RemoveSnapshot(steps::RemoveSnapshot {
                image: at.source_cut.clone(),
            }),
        )
        .requires(vec![self.confirmed()])
        .done_when(gone);
        self.steps.push(step);
    }

    /// The features ferry turned on, turned off again (a clone's flat copy
    /// had none of its own: it is gone).
    fn restore_features(&mut self) {
        if self.flat_carrier || self.added.0 == 0 {
            return;
        }
        let image = &self.at.carrier;
        let step = draft(
            StepName::RestoreFeatures,
            Action::RestoreFeatures(steps::RestoreFeatures {
                image: image.clone(),
            }),
        )
        // Feature changes can freeze a running client: never on an image in
        // use.
        .requires(vec![
            self.confirmed(),
            Check::NotInUse {
                image: image.clone(),
            },
        ])
        .done_when(vec![
            Check::FeaturesAbsent {
                image: image.clone(),
                features: self.added,
            },
            Check::FeaturesPresent {
                image: image.clone(),
                features: Features(self.facts.features.0 & !Features::DEEP_FLATTEN.0),
            },
        ]);
        self.steps.push(step);
    }
}
