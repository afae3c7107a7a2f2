//! The destination cloud's part: a Glance image's copy snapshotted and
//! protected, then the copy adopted as a volume or registered as an image;
//! and what each adoption carries from the source.

use std::collections::BTreeMap;

use crate::plan::{
    without_ferry_keys, Action, Adoption, Check, CloudObject, ImageRegistration, StepName,
    VolumeAdoption, ADOPTED_FROM, REGISTERED_FROM,
};
use crate::spec::{ImageKind, ImageRef};
use crate::steps;

use super::draft::draft;
use super::{AdoptOptions, ImageBuild};

impl ImageBuild<'_> {
    pub(super) fn adopt(&mut self) {
        let (copy, at_snap) = (&self.at.copy, &self.at.copy_snap);
        if self.r.kind == ImageKind::Glance || matches!(self.adoption, Some(Adoption::Image(_))) {
            let step = draft(
                StepName::SnapshotAndProtect,
                Action::SnapshotAndProtect(steps::SnapshotAndProtect {
                    image: at_snap.clone(),
                }),
            )
            .requires(vec![Check::Exists {
                image: copy.clone(),
            }])
            .done_when(vec![Check::SnapshotProtected {
                image: at_snap.clone(),
            }]);
            self.steps.push(step);
        }
        let step = match &self.adoption {
            Some(Adoption::Volume(v)) => draft(
                StepName::AdoptVolume,
                Action::AdoptVolume(steps::AdoptVolume {
                    image: copy.clone(),
                    adoption: v.clone(),
                }),
            )
            .requires(vec![Check::Published {
                image: copy.clone(),
            }])
            .done_when(vec![Check::VolumeAdopted {
                source_volume: v.source_volume.clone(),
            }]),
            Some(Adoption::Image(g)) => draft(
                StepName::RegisterImage,
                Action::RegisterImage(steps::RegisterImage {
                    image: at_snap.clone(),
                    registration: g.clone(),
                }),
            )
            .requires(vec![Check::Published {
                image: at_snap.clone(),
            }])
            .done_when(vec![Check::ImageRegistered { id: g.id.clone() }]),
            None => return,
        };
        self.steps.push(step);
    }
}

/// Image metadata Cinder derives itself; the rest are image properties.
const DERIVED_IMAGE_METADATA: &[&str] = &[
    "image_id",
    "image_name",
    "checksum",
    "size",
    "container_format",
    "disk_format",
    "min_disk",
    "min_ram",
    "owner_specified.openstack.md5",
    "owner_specified.openstack.sha256",
    "owner_specified.openstack.object",
];

/// The image metadata a copy carries: neither what Cinder derives itself
/// nor ferry's own keys. Pure.
fn carried_image_metadata(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    without_ferry_keys(m)
        .into_iter()
        .filter(|(k, _)| !DERIVED_IMAGE_METADATA.contains(&k.as_str()))
        .collect()
}

/// A description as Cinder's manage-existing takes it: its schema allows
/// printable characters only (volume create allows line breaks), so each
/// control character becomes a space. Pure.
pub(super) fn manageable_description(d: &str) -> String {
    d.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// What the destination cloud does with one copy. Pure.
pub(super) fn adoption_for(a: &AdoptOptions, r: &ImageRef, obj: &CloudObject) -> Adoption {
    match obj {
        CloudObject::Volume {
            id,
            name,
            description,
            size_gb,
            bootable,
            volume_type,
            metadata,
            image_metadata,
            ..
        } => {
            let new_name = r.new_name.clone().unwrap_or_else(|| name.clone());
            if a.bootable_to.to_glance(*bootable) {
                let mut properties = carried_image_metadata(image_metadata);
                properties.insert(REGISTERED_FROM.into(), format!("volume:{id}"));
                let num = |k: &str| image_metadata.get(k).and_then(|v| v.parse().ok());
                Adoption::Image(ImageRegistration {
                    id: r.dest_name.clone(),
                    name: new_name,
                    disk_format: "raw".into(),
                    container_format: "bare".into(),
                    min_disk: num("min_disk").unwrap_or(*size_gb).max(*size_gb),
                    min_ram: num("min_ram").unwrap_or(0),
                    properties,
                    earlier: a.earlier,
                })
            } else {
                // ferry's own keys describe an earlier move: carried, they
                // would make a new volume look streamed and verified.
                let mut metadata = without_ferry_keys(metadata);
                metadata.insert(ADOPTED_FROM.into(), id.clone());
                Adoption::Volume(VolumeAdoption {
                    source_volume: id.clone(),
                    name: new_name,
                    description: description.as_deref().map(manageable_description),
                    volume_type: volume_type
                        .as_ref()
                        .map(|t| a.volume_types.get(t).cloned().unwrap_or_else(|| t.clone())),
                    bootable: *bootable,
                    metadata,
                    image_metadata: carried_image_metadata(image_metadata),
                    host: a.cinder_host.clone(),
                    earlier: a.earlier,
                })
            }
        }
        CloudObject::Image {
            id,
            name,
            disk_format,
            container_format,
            min_disk,
            min_ram,
            properties,
        } => {
            let mut properties = without_ferry_keys(properties);
            properties.insert(REGISTERED_FROM.into(), format!("image:{id}"));
            Adoption::Image(ImageRegistration {
                id: r.dest_name.clone(),
                name: r.new_name.clone().unwrap_or_else(|| name.clone()),
                disk_format: disk_format.clone(),
                container_format: container_format.clone(),
                min_disk: *min_disk,
                min_ram: *min_ram,
                properties,
                earlier: a.earlier,
            })
        }
    }
}
