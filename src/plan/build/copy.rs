//! The copy at the destination, made under a partial name, verified against
//! the source's digest, and given its final name once verified.

use crate::ceph::Features;
use crate::plan::{Action, Check, StepName};
use crate::steps;

use super::draft::draft;
use super::ImageBuild;

impl ImageBuild<'_> {
    /// The features a copy is created with: the source's as found that can
    /// be created, without journaling (the destination pool is not
    /// mirrored).
    pub(super) fn copy_features(&self) -> Features {
        Features(self.facts.features.0 & Features::CREATABLE.0 & !Features::JOURNALING.0)
    }

    pub(super) fn copy_and_verify(&mut self) {
        self.copy();
        self.verify();
        let (partial, copy) = (&self.at.partial, &self.at.copy);
        let step = draft(
            StepName::Publish,
            Action::Publish(steps::Publish {
                partial: partial.clone(),
                copy: copy.clone(),
            }),
        )
        .requires(vec![self.verified()])
        .done_when(vec![
            self.verified(),
            Check::Absent {
                image: partial.clone(),
            },
        ]);
        self.steps.push(step);
    }

    /// The copy reads the cut-over: on the source (direct) or as mirrored.
    fn copy(&mut self) {
        let at = &self.at;
        let mut features = self.copy_features().0;
        let mut requires = vec![
            if self.direct {
                Check::SnapshotExists {
                    image: at.source_cut.clone(),
                }
            } else {
                self.synced()
            },
            Check::Absent {
                image: at.copy.clone(),
            },
        ];
        if let Some(p) = &self.clone_of {
            // A clone needs layering; it waits for its parent's published
            // copy.
            features |= Features::LAYERING.0;
            requires.push(Check::SnapshotProtected { image: p.clone() });
        }
        let step = draft(
            StepName::Copy,
            Action::Copy(steps::CopyImage {
                from: if self.direct {
                    at.source_cut.clone()
                } else {
                    at.mirrored_cut.clone()
                },
                to: at.partial.clone(),
                features: Some(Features(features)),
                clone_of: self.clone_of.clone(),
                onto: self.carried().last().cloned(),
            }),
        )
        .requires(requires)
        .done_when(vec![self.copied()])
        .past_when(self.dest_past());
        self.steps.push(step);
    }

    /// Mirror: the source's digest follows the data (mirroring carries it),
    /// and the copy's digest is of what it read from the mirrored image.
    /// Direct: the copy noted the digest of what it read on the source (and
    /// wrote); `--reread` reads the copy back.
    fn verify(&mut self) {
        let at = &self.at;
        let (expected, carries_sum, after) = if self.direct {
            (&at.source_cut, &at.source, vec![StepName::Copy])
        } else {
            (
                &at.mirrored_cut,
                &at.mirrored,
                vec![StepName::Copy, StepName::HashSource],
            )
        };
        let step = draft(
            StepName::Verify,
            Action::Verify(steps::Verify {
                expected: expected.clone(),
                partial: at.partial.clone(),
                copy: at.copy.clone(),
                origin: at.origin.clone(),
            }),
        )
        .after(after)
        .requires(vec![
            self.copied(),
            Check::MetadataPresent {
                image: carries_sum.clone(),
                key: at.sum_key.clone(),
            },
        ])
        .done_when(vec![self.verified()]);
        self.steps.push(step);
    }
}
