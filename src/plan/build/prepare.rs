//! The first steps: the clouds' read-only checks, the source's preflight,
//! and the record of what the image was before anything changes.

use crate::plan::{Action, Adoption, Check, OriginalRecord, StepName};
use crate::steps;

use super::draft::draft;
use super::ImageBuild;

impl ImageBuild<'_> {
    pub(super) fn prepare(&mut self) {
        if let Some(a) = &self.adoption {
            // First, and reading only: bad destination inputs stop the run
            // before anything changes.
            let adopted = match a {
                Adoption::Volume(v) => Check::VolumeAdopted {
                    source_volume: v.source_volume.clone(),
                },
                Adoption::Image(g) => Check::ImageRegistered { id: g.id.clone() },
            };
            let step = draft(
                StepName::CheckDestinationCloud,
                Action::CheckDestinationCloud(steps::CheckDestinationCloud {
                    image: self.at.copy.clone(),
                    adoption: a.clone(),
                    create: false,
                }),
            )
            .past_when(vec![adopted]);
            self.steps.push(step);
        }
        if let Some(obj) = self.facts.cloud.as_ref().filter(|_| !self.is_root_disk()) {
            self.steps.push(draft(
                StepName::CheckSourceCloud,
                Action::CheckSourceCloud(steps::CheckSourceCloud {
                    object: obj.clone(),
                    // With warm rounds, an image in use is mirrored and
                    // copied while its server runs; the cut-over waits
                    // for it to be idle; a server ferry stops is in use
                    // until then.
                    allow_in_use: self.opts.allow_in_use || self.warm() || self.stops_server(),
                    detached: false,
                }),
            ));
        }
        let source = &self.at.source;
        let preflight = draft(
            StepName::Preflight,
            Action::Preflight(steps::Preflight {
                image: source.clone(),
            }),
        )
        .requires(vec![Check::Exists {
            image: source.clone(),
        }])
        .past_when(self.source_past());
        // Before the first change: what the image is, on the image itself,
        // so that a plan made again (state file or bundle lost) restores
        // the truth.
        let record = draft(
            StepName::RecordOriginal,
            Action::RecordOriginal(steps::RecordOriginal {
                image: source.clone(),
                record: OriginalRecord {
                    plan: self.opts.plan_id.clone(),
                    features: self.facts.features,
                    mirroring: self.facts.mirroring,
                },
            }),
        )
        .done_when(vec![Check::MetadataPresent {
            image: source.clone(),
            key: self.at.original_key.clone(),
        }])
        .past_when(self.source_past());
        self.steps.push(preflight);
        self.steps.push(record);
    }
}
