//! The stream path: a Cinder volume streamed between the conversion hosts
//! into a new volume of the destination cloud.

use std::collections::BTreeMap;

use crate::plan::{
    Action, Adoption, Check, CloudObject, ImageAt, ImageFacts, ImagePlan, Site, StepName,
    StreamedVolume, VolumeAdoption,
};
use crate::spec::{BootableTo, ImageRef, Transfer};
use crate::steps;

use super::adopt::adoption_for;
use super::draft::{chain, draft};
use super::{AdoptOptions, BuildOptions};

/// A Cinder volume on the stream path: nothing on the source changes but
/// two attachments, made and removed by the stream step. The destination
/// cloud makes the volume first (marked pending, so that a re-run finds it
/// and nothing takes it for adopted), the stream fills and verifies it, and
/// the destination cloud finishes it (bootable flag, image metadata, the
/// mark removed).
pub(super) fn stream_plan(
    opts: &BuildOptions,
    n: usize,
    r: &ImageRef,
    facts: &StreamedVolume,
) -> ImagePlan {
    let obj = &facts.volume;
    let adoption = stream_adoption(opts, r, obj);
    let size_gb = match obj {
        CloudObject::Volume { size_gb, .. } => *size_gb,
        CloudObject::Image { .. } => unreachable!("only volumes stream"),
    };
    let hosts = opts
        .conversion
        .clone()
        .expect("the spec names conversion hosts when a volume streams");
    let source_volume = adoption.source_volume.clone();
    let adopted = Check::VolumeAdopted {
        source_volume: source_volume.clone(),
    };
    let created = Check::VolumeCreated {
        source_volume: source_volume.clone(),
    };
    let streamed = Check::StreamVerified {
        source_volume: source_volume.clone(),
    };
    let dest = ImageAt {
        site: Site::Destination,
        pool: "(cloud)".into(),
        image: adoption.name.clone(),
        snap: None,
    };
    let steps = vec![
        draft(
            StepName::CheckDestinationCloud,
            Action::CheckDestinationCloud(steps::CheckDestinationCloud {
                image: dest,
                adoption: Adoption::Volume(adoption.clone()),
                create: true,
            }),
        )
        .past_when(vec![created.clone()]),
        draft(
            StepName::CheckSourceCloud,
            Action::CheckSourceCloud(steps::CheckSourceCloud {
                object: obj.clone(),
                allow_in_use: false,
                detached: true,
            }),
        ),
        draft(
            StepName::CreateVolume,
            Action::CreateVolume(steps::CreateVolume {
                adoption: adoption.clone(),
                size_gb,
            }),
        )
        .done_when(vec![created.clone()])
        // An earlier adoption kept (`earlier: keep`) stands for this one.
        .past_when(vec![adopted.clone()]),
        draft(
            StepName::Stream,
            Action::StreamVolume(steps::StreamVolume {
                source_volume: source_volume.clone(),
                hosts,
            }),
        )
        .requires(vec![created])
        .done_when(vec![streamed.clone()])
        .past_when(vec![adopted.clone()]),
        draft(
            StepName::FinishVolume,
            Action::FinishVolume(steps::FinishVolume {
                adoption: adoption.clone(),
            }),
        )
        .requires(vec![streamed])
        .done_when(vec![adopted]),
    ];
    ImagePlan {
        image: r.clone(),
        mode: opts.mode,
        transfer: Transfer::Stream,
        facts: ImageFacts::Streamed(facts.clone()),
        adoption: Some(Adoption::Volume(adoption)),
        warnings: vec![],
        steps: chain(n, steps),
    }
}

/// The new volume a streamed volume becomes: a volume, bootable or not,
/// made by the destination cloud (so on no host the spec names).
fn stream_adoption(opts: &BuildOptions, r: &ImageRef, obj: &CloudObject) -> VolumeAdoption {
    let a = opts.adopt.clone().unwrap_or(AdoptOptions {
        volume_types: BTreeMap::new(),
        cinder_host: None,
        bootable_to: BootableTo::Cinder,
        earlier: Default::default(),
    });
    let cinder = AdoptOptions {
        bootable_to: BootableTo::Cinder,
        ..a
    };
    match adoption_for(&cinder, r, obj) {
        Adoption::Volume(mut v) => {
            v.host = None;
            v
        }
        Adoption::Image(_) => unreachable!("bootable_to: cinder gives volumes"),
    }
}
