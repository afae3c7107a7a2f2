//! Mirroring: what the mirrored image needs (a clone's flat copy, or the
//! features its mode needs), mirroring enabled, and the wait for the
//! cut-over at the destination.

use crate::ceph::{Features, MirrorMode};
use crate::plan::{Action, Check, StepName};
use crate::steps;

use super::draft::draft;
use super::ImageBuild;

/// Features journal-based mirroring cannot coexist with, in the order they
/// must be disabled (deep-flatten first; in 16.2 disabling fast-diff also
/// takes object-map, so each is re-checked before it is disabled).
const JOURNAL_BLOCKERS: [Features; 3] = [
    Features::DEEP_FLATTEN,
    Features::FAST_DIFF,
    Features::OBJECT_MAP,
];

impl ImageBuild<'_> {
    /// The carrier made ready to mirror: a clone copied out flat, or the
    /// image given the features its mode needs. Nothing for a direct
    /// transfer: nothing is mirrored.
    pub(super) fn prepare_carrier(&mut self) {
        if self.direct {
            return;
        }
        if self.clone {
            self.copy_out_flat();
        } else if self.mode == MirrorMode::Snapshot
            && !self.facts.features.contains(Features::EXCLUSIVE_LOCK)
        {
            // The in-use rule tells writers by the exclusive lock.
            self.enable_features(vec![Features::EXCLUSIVE_LOCK], vec![]);
        } else if self.mode == MirrorMode::Journal {
            self.enable_journaling();
        }
    }

    /// A clone copied out flat from its frozen snapshot, with the features
    /// its mode mirrors.
    fn copy_out_flat(&mut self) {
        let features = if self.mode == MirrorMode::Journal {
            Features(Features::LAYERING.0 | Features::EXCLUSIVE_LOCK.0 | Features::JOURNALING.0)
        } else {
            Features(
                Features::LAYERING.0
                    | Features::EXCLUSIVE_LOCK.0
                    | Features::OBJECT_MAP.0
                    | Features::FAST_DIFF.0
                    | Features::DEEP_FLATTEN.0,
            )
        };
        let (from, to) = (&self.at.source_cut, &self.at.carrier);
        let step = draft(
            StepName::CopyOutFlat,
            Action::FlatCopy(steps::FlatCopy {
                from: from.clone(),
                to: to.clone(),
                features,
            }),
        )
        .requires(vec![Check::SnapshotExists {
            image: from.clone(),
        }])
        .done_when(vec![Check::MetadataPresent {
            image: to.clone(),
            key: crate::plan::FLAT_OF.into(),
        }])
        .past_when(self.source_past());
        self.steps.push(step);
    }

    /// Only what journaling needs is enabled; the features the manual
    /// procedure disables first are kept (Ceph 16.2 journals beside them,
    /// and deep-flatten never comes back), and disabled only if the cluster
    /// refuses journaling beside them.
    fn enable_journaling(&mut self) {
        let features = self.facts.features;
        let enable: Vec<Features> = [Features::EXCLUSIVE_LOCK, Features::JOURNALING]
            .into_iter()
            .filter(|f| !features.contains(*f))
            .collect();
        let make_room: Vec<Features> = JOURNAL_BLOCKERS
            .into_iter()
            .filter(|f| features.contains(*f))
            .collect();
        if enable.is_empty() {
            return;
        }
        let journaling = enable.contains(&Features::JOURNALING);
        if !make_room.is_empty() && journaling {
            self.warnings.push(format!(
                "journaling is enabled beside {}; should the cluster refuse it, they are disabled first{}",
                make_room
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if make_room.contains(&Features::DEEP_FLATTEN) {
                    " (deep-flatten cannot be enabled again)"
                } else {
                    ""
                }
            ));
        }
        self.enable_features(enable, if journaling { make_room } else { vec![] });
    }

    /// The features `enable` turned on, on an idle image (`make_room`:
    /// those disabled first should the cluster refuse them beside the
    /// others).
    fn enable_features(&mut self, enable: Vec<Features>, make_room: Vec<Features>) {
        self.added = enable.iter().fold(Features(0), |a, f| a | *f);
        let image = &self.at.carrier;
        let step = draft(
            StepName::EnableFeatures,
            Action::EnableFeatures(steps::EnableFeatures {
                image: image.clone(),
                features: enable,
                make_room,
            }),
        )
        .requires(self.idle())
        .done_when(vec![Check::FeaturesPresent {
            image: image.clone(),
            features: self.added,
        }])
        .past_when(self.source_past());
        self.steps.push(step);
    }

    /// Mirroring enabled on the carrier, unless its pool mirrors it by
    /// itself.
    pub(super) fn enable_mirroring(&mut self) {
        if self.pool_mode {
            return;
        }
        let (image, mode) = (&self.at.carrier, self.mode);
        let step = draft(
            StepName::EnableMirroring,
            Action::EnableMirroring(steps::EnableMirroring {
                image: image.clone(),
                mode,
            }),
        )
        .done_when(vec![Check::MirroringEnabled {
            image: image.clone(),
            mode,
        }])
        .past_when(self.source_past());
        self.steps.push(step);
    }

    /// While the image is in use: rounds that keep the destination's copy
    /// and both digests current, until it is idle. Not for a clone: it is
    /// frozen before its carrier is made. An image idle from the start
    /// takes no round.
    pub(super) fn warm_rounds(&mut self) {
        let Some(interval) = self.opts.warm_interval.filter(|_| self.warm()) else {
            return;
        };
        let at = &self.at;
        let step = draft(
            StepName::WarmRounds,
            Action::WarmRounds(steps::WarmRounds {
                image: at.carrier.clone(),
                mirrored: at.mirrored.clone(),
                partial: at.partial.clone(),
                features: Some(self.copy_features()),
                mode: self.mode,
                interval,
            }),
        )
        // Done once the image is idle (an image idle from the start needs
        // none); past once the cut-over is taken: no round after it, even
        // when the image is seen in use again (a guest started again, or
        // rbd-mirror opening a journaled image).
        .done_when(self.idle_now())
        .past_when(vec![Check::SnapshotExists {
            image: at.carrier_cut.clone(),
        }]);
        // The destination's side, for a run that holds it alone.
        let copy = draft(
            StepName::WarmCopy,
            Action::WarmCopy(steps::WarmCopy {
                mirrored: at.mirrored.clone(),
                cut: at.mirrored_cut.clone(),
                partial: at.partial.clone(),
                features: Some(self.copy_features()),
                mode: self.mode,
                interval,
            }),
        )
        .past_when(self.dest_past());
        self.steps.push(step);
        self.steps.push(copy);
    }

    /// The image is idle (no client holds it).
    fn idle_now(&self) -> Vec<Check> {
        vec![Check::NotInUse {
            image: self.at.carrier.clone(),
        }]
    }

    /// The steps a step follows: `step`, and with a warm phase both sides
    /// of the rounds too, so that a role's run, which holds one side, does
    /// not run the step beside its rounds.
    pub(super) fn after_warm(&self, step: StepName) -> Vec<StepName> {
        let mut after = vec![step];
        if self.warm() {
            for w in [StepName::WarmRounds, StepName::WarmCopy] {
                if !after.contains(&w) {
                    after.push(w);
                }
            }
        }
        after
    }

    /// Whether the image has a warm phase: mirrored, not a clone (a clone
    /// is frozen before its carrier is made), with warm rounds asked for.
    pub(super) fn warm(&self) -> bool {
        takes_rounds(self.opts, self.facts)
    }

    /// The wait for the cut-over at the destination: beside the source's
    /// digest, which only the verify needs.
    pub(super) fn wait_for_sync(&mut self) {
        let step = draft(
            StepName::WaitForSync,
            Action::WaitForSync(steps::WaitForSync {
                source: self.at.carrier.clone(),
                mirrored: self.at.mirrored_cut.clone(),
                mode: self.mode,
            }),
        )
        // In snapshot mode the cut-over travels with its digest, in the
        // mirror snapshot hash-source takes: the wait follows it. In
        // journal mode the cut-over is on its way at once, and the wait
        // goes on beside the hashing.
        .after(self.after_warm(match self.mode {
            MirrorMode::Snapshot => StepName::HashSource,
            MirrorMode::Journal => StepName::CutOverSnapshot,
        }))
        .requires(vec![Check::Exists {
            image: self.at.mirrored.clone(),
        }])
        .done_when(vec![self.synced()])
        .past_when(self.dest_past());
        self.steps.push(step);
    }
}

/// Whether an image has a warm phase: warm rounds are on, it is mirrored
/// (not a direct transfer), and it is no clone (a clone is frozen and
/// copied out flat, its carrier mirrored once).
pub(super) fn takes_rounds(opts: &super::BuildOptions, facts: &crate::plan::CephImage) -> bool {
    opts.warm_interval.is_some()
        && opts.transfer != crate::spec::Transfer::Direct
        && facts.parent.is_none()
}
