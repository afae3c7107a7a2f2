//! What discovery found of one image before anything is changed: an RBD
//! image of the source cluster, or a Cinder volume that streams through
//! the conversion hosts (of which only the cloud's volume is read).
//!
//! The plan keeps the facts as one record, as it always has: a streamed
//! volume's says `streamed: true` beside empty Ceph fields.

use serde::{Deserialize, Serialize};

use super::CloudObject;
use crate::ceph::{Features, MirrorMode, Parent, PoolMirrorMode};

/// What discovery found of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FactsRecord", try_from = "FactsRecord")]
// One a plan's image, never moved in bulk: not worth a box.
#[allow(clippy::large_enum_variant)]
pub enum ImageFacts {
    /// An RBD image of the source cluster, moved through Ceph.
    Ceph(CephImage),
    /// A Cinder volume that streams through the conversion hosts
    /// (`transfer: stream`, or a volume the source Ceph pool does not hold).
    Streamed(StreamedVolume),
}

/// What the source cluster says about an RBD image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CephImage {
    pub size: u64,
    /// Features before the migration: cleanup restores these.
    pub features: Features,
    /// User snapshots: mirrored too, but the copy is the cut-over alone.
    pub user_snapshots: Vec<String>,
    /// Mirroring mode if mirroring is already enabled.
    pub mirroring: Option<MirrorMode>,
    /// Whether a client other than ferry uses the image (`ceph::image_users`).
    pub in_use: bool,
    /// Who uses it, in words (empty when idle).
    pub users: Vec<String>,
    /// The snapshot this image is a clone of: a clone is copied out flat on
    /// the source first, and that copy is what is mirrored.
    pub parent: Option<Parent>,
    /// The source pool's mirroring mode.
    pub pool_mode: PoolMirrorMode,
    /// The RBD image's id in its pool (empty in plans of older versions).
    pub id: String,
    /// When a plan's record was found on the image (its state file or
    /// bundle lost): that plan, and what the image shows now. `features`
    /// and `mirroring` above are then the recorded ones.
    pub recorded: Option<Recorded>,
    /// The source cloud's volume or image behind it, when a cloud is given.
    pub cloud: Option<CloudObject>,
}

/// A volume that streams: what the source cloud says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedVolume {
    /// Its size in bytes, as the cloud gives it.
    pub size: u64,
    /// The source cloud's volume.
    pub volume: CloudObject,
}

/// A plan's record found on an image, beside what the image shows now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The plan that wrote the record (and began changing the image).
    pub plan: String,
    /// Features the image has now.
    pub features_now: Features,
    /// Mirroring the image has now.
    pub mirroring_now: Option<MirrorMode>,
}

impl ImageFacts {
    /// The facts of a volume that streams: its size, as the cloud says.
    pub fn streamed(volume: &CloudObject) -> ImageFacts {
        let size_gb = match volume {
            CloudObject::Volume { size_gb, .. } => *size_gb,
            CloudObject::Image { .. } => 0,
        };
        ImageFacts::Streamed(StreamedVolume {
            size: size_gb << 30,
            volume: volume.clone(),
        })
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            ImageFacts::Ceph(c) => c.size,
            ImageFacts::Streamed(s) => s.size,
        }
    }

    /// The source cloud's volume or image behind it, when a cloud is given.
    pub fn cloud(&self) -> Option<&CloudObject> {
        match self {
            ImageFacts::Ceph(c) => c.cloud.as_ref(),
            ImageFacts::Streamed(s) => Some(&s.volume),
        }
    }

    /// The RBD image's facts; none for a streamed volume.
    pub fn ceph(&self) -> Option<&CephImage> {
        match self {
            ImageFacts::Ceph(c) => Some(c),
            ImageFacts::Streamed(_) => None,
        }
    }

    /// The features the image had before the migration, which cleanup
    /// restores (a streamed volume has no RBD image, so none).
    pub fn original_features(&self) -> Features {
        self.ceph().map_or(Features(0), |c| c.features)
    }
}

#[cfg(test)]
impl CephImage {
    /// An idle 1 GiB image with the default features, unmirrored, in a
    /// pool mirrored per image: what the tests start from.
    pub fn example() -> CephImage {
        CephImage {
            size: 1 << 30,
            features: Features::DEFAULT,
            user_snapshots: vec![],
            mirroring: None,
            in_use: false,
            users: vec![],
            parent: None,
            pool_mode: PoolMirrorMode::Image,
            id: "10ad5eed".into(),
            recorded: None,
            cloud: None,
        }
    }
}

#[cfg(test)]
impl ImageFacts {
    /// The RBD image's facts, to change in a test.
    pub fn ceph_mut(&mut self) -> &mut CephImage {
        match self {
            ImageFacts::Ceph(c) => c,
            ImageFacts::Streamed(_) => panic!("a streamed volume has no RBD image"),
        }
    }
}

impl From<CephImage> for ImageFacts {
    fn from(c: CephImage) -> ImageFacts {
        ImageFacts::Ceph(c)
    }
}

/// The facts as the plan writes them: one record for both kinds.
#[derive(Serialize, Deserialize)]
struct FactsRecord {
    size: u64,
    features: Features,
    user_snapshots: Vec<String>,
    mirroring: Option<MirrorMode>,
    in_use: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    users: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<Parent>,
    pool_mode: PoolMirrorMode,
    #[serde(default)]
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recorded: Option<Recorded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cloud: Option<CloudObject>,
    /// Only the size and the cloud's volume were read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    streamed: bool,
}

impl From<ImageFacts> for FactsRecord {
    fn from(f: ImageFacts) -> FactsRecord {
        match f {
            ImageFacts::Ceph(c) => FactsRecord {
                size: c.size,
                features: c.features,
                user_snapshots: c.user_snapshots,
                mirroring: c.mirroring,
                in_use: c.in_use,
                users: c.users,
                parent: c.parent,
                pool_mode: c.pool_mode,
                id: c.id,
                recorded: c.recorded,
                cloud: c.cloud,
                streamed: false,
            },
            ImageFacts::Streamed(s) => FactsRecord {
                size: s.size,
                features: Features(0),
                user_snapshots: vec![],
                mirroring: None,
                in_use: false,
                users: vec![],
                parent: None,
                pool_mode: PoolMirrorMode::Disabled,
                id: String::new(),
                recorded: None,
                cloud: Some(s.volume),
                streamed: true,
            },
        }
    }
}

impl TryFrom<FactsRecord> for ImageFacts {
    type Error = &'static str;

    fn try_from(r: FactsRecord) -> Result<ImageFacts, Self::Error> {
        if r.streamed {
            let volume = r
                .cloud
                .ok_or("a streamed volume's facts name its cloud volume (cloud)")?;
            return Ok(ImageFacts::Streamed(StreamedVolume {
                size: r.size,
                volume,
            }));
        }
        Ok(ImageFacts::Ceph(CephImage {
            size: r.size,
            features: r.features,
            user_snapshots: r.user_snapshots,
            mirroring: r.mirroring,
            in_use: r.in_use,
            users: r.users,
            parent: r.parent,
            pool_mode: r.pool_mode,
            id: r.id,
            recorded: r.recorded,
            cloud: r.cloud,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume() -> CloudObject {
        CloudObject::Volume {
            id: "0d2f".into(),
            name: "db".into(),
            description: None,
            size_gb: 2,
            bootable: false,
            volume_type: None,
            metadata: Default::default(),
            image_metadata: Default::default(),
            status: "available".into(),
            encrypted: false,
            snapshots: vec![],
        }
    }

    #[test]
    fn a_streamed_volume_is_written_as_the_one_record_it_always_was() {
        let facts = ImageFacts::streamed(&volume());
        let yaml = serde_yaml::to_string(&facts).unwrap();
        let head = "size: 2147483648\nfeatures: []\nuser_snapshots: []\nmirroring: null\nin_use: false\npool_mode: disabled\nid: ''\ncloud:\n";
        assert!(yaml.starts_with(head), "{yaml}");
        assert!(yaml.ends_with("streamed: true\n"), "{yaml}");
        assert_eq!(serde_yaml::from_str::<ImageFacts>(&yaml).unwrap(), facts);
        let e = serde_yaml::from_str::<ImageFacts>(&format!(
            "{}streamed: true\n",
            head.trim_end_matches("cloud:\n")
        ))
        .unwrap_err();
        assert!(e.to_string().contains("name its cloud volume"), "{e}");
    }

    #[test]
    fn an_rbd_image_reads_back_as_itself() {
        let facts = ImageFacts::Ceph(CephImage {
            size: 1 << 30,
            features: Features::DEFAULT,
            user_snapshots: vec!["s1".into()],
            mirroring: Some(MirrorMode::Snapshot),
            in_use: true,
            users: vec!["client.1".into()],
            parent: None,
            pool_mode: PoolMirrorMode::Image,
            id: "10ad".into(),
            recorded: None,
            cloud: Some(volume()),
        });
        let yaml = serde_yaml::to_string(&facts).unwrap();
        assert!(!yaml.contains("streamed"), "{yaml}");
        assert_eq!(serde_yaml::from_str::<ImageFacts>(&yaml).unwrap(), facts);
        assert_eq!(facts.size(), 1 << 30);
        assert_eq!(facts.original_features(), Features::DEFAULT);
    }
}
