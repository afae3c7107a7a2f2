//! The plan: what a migration does, as data. Per image, an ordered list of
//! typed steps, each tagged with the role that performs it, what must hold
//! before it runs, and what can be observed once it is done.
//!
//! Building a plan is pure (`build`); discovery (`discover`) only reads.
//! ferry's own execution and the per-role scripts are two readings of the
//! same `Plan`, so they cannot drift apart.

mod adopted;
mod build;
mod discover;
mod facts;
mod prepare;
mod rounds;
pub mod server;
mod step_name;
mod text;
mod validate;

pub use adopted::{
    replaced, whose, EarlierAdoption, Whose, ADOPTED_BY, COPY_DIGEST, REPLACED_BY, REPLACED_SOURCE,
};
pub use build::{build, AdoptOptions, BuildOptions, ServerOptions};
pub(crate) use discover::check_volume_status;
pub use discover::{
    derived_image_id, discover, published_parents, recorded_plan_id, resolve_entry, users_of,
};
pub use facts::{CephImage, ImageFacts, Recorded, StreamedVolume};
pub use prepare::{connect, prepare, Planned, Prepared, Purpose};
pub use rounds::{round_number, round_of, round_snap, ROUND_SNAP};
pub use step_name::StepName;
pub(crate) use text::{describe, type_words};
pub use text::{render_text, role_preview};
pub use validate::{Refused, BUNDLE_FORMAT};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ceph::{Features, MirrorMode};
use crate::spec::ImageRef;

/// Who performs a step; each role holds only its own credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Ceph admin of the source cluster.
    SourceStorage,
    /// Ceph admin of the destination cluster.
    DestinationStorage,
    /// Tenant admin of the source cloud.
    SourceCloud,
    /// Tenant admin of the destination cloud.
    DestinationCloud,
    /// Ceph admin of the source cluster, after the destination is verified.
    Cleanup,
    /// The stream path's operator: attaches each volume to its conversion
    /// host (a project member of both clouds) and streams between the hosts
    /// over ssh.
    ConversionHosts,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::SourceStorage => "source-storage",
            Role::DestinationStorage => "destination-storage",
            Role::SourceCloud => "source-cloud",
            Role::DestinationCloud => "destination-cloud",
            Role::Cleanup => "cleanup",
            Role::ConversionHosts => "conversion-hosts",
        })
    }
}

/// Which side of the migration a cluster, cloud or conversion host is: what
/// a check or action is about, and where `ferry check` found something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Site {
    Source,
    Destination,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Site::Source => "source",
            Site::Destination => "destination",
        })
    }
}

/// An image on one site, optionally at a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageAt {
    pub site: Site,
    pub pool: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snap: Option<String>,
}

impl std::fmt::Display for ImageAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.site, self.pool, self.image)?;
        if let Some(s) = &self.snap {
            write!(f, "@{s}")?;
        }
        Ok(())
    }
}

/// Prefix of the user snapshot that marks the cut-over point on the source:
/// `ferry-cutover-<plan id>`. It is mirrored in both modes, so the
/// destination sees by itself when the cut-over has arrived, and copies and
/// checksums read it. The plan id keeps a snapshot left by another plan from
/// being taken for this one's.
pub const CUTOVER_SNAP: &str = "ferry-cutover";

/// The cut-over snapshot's name for a plan.
pub fn cutover_snap(plan_id: &str) -> String {
    format!("{CUTOVER_SNAP}-{plan_id}")
}

/// The image metadata key holding the digest of a cut-over snapshot
/// (`crate::transfer::digest`: SHA-256 over its 4 MiB chunks' SHA-256s). The
/// source sets it; mirroring carries it to the destination (in both modes),
/// which verifies its copy against it without reading the source.
pub fn checksum_key(snap: &str) -> String {
    format!("{snap}{DIGEST_SUFFIX}")
}

/// How a [`checksum_key`] ends.
pub const DIGEST_SUFFIX: &str = ".digest";

/// The image metadata key the source sets once its digest
/// ([`checksum_key`]) is on its way: in snapshot mode, after the mirror
/// snapshot that carries it (its value: that snapshot's id); in journal
/// mode, at once (the journal carries the digest). It marks the
/// `hash-source` step done; nothing reads it on the destination.
pub fn checksum_sent_key(snap: &str) -> String {
    format!("{snap}.digest-sent")
}

/// The image metadata key the cleanup sets on the source once the copy is
/// known to be verified (its value: the verified digest). It stays after
/// cleanup as the record that this plan moved the image, and keeps the
/// source storage steps from starting the migration again.
pub fn verified_key(snap: &str) -> String {
    format!("{snap}.verified")
}

/// The image metadata key that marks a finished (not yet verified) copy.
pub fn copied_key(snap: &str) -> String {
    format!("{snap}.copied")
}

/// The RADOS object in a destination pool whose extended attributes record
/// the copies this plan verified there (attribute: the copy's final image
/// name; value: its digest). It survives the copy's adoption (Cinder
/// renames the image) and the mirrored image's removal at cleanup.
pub fn record_object(plan_id: &str) -> String {
    format!("ferry-verified-{plan_id}")
}

/// Which source image a copy holds: the source cluster's fsid, the pool, the
/// image's name and its id (never reused, unlike the name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
    pub fsid: String,
    pub pool: String,
    pub image: String,
    pub id: String,
}

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} (id {}) of cluster {}",
            self.pool, self.image, self.id, self.fsid
        )
    }
}

/// The destination's record of a verified copy (the value of its attribute
/// on `record_object`, and the body of a hand-off line): which source the
/// copy holds, and the cut-over's SHA-256 it was verified against. One line
/// of JSON, so any name fits. Fields a later ferry adds are read past (a
/// record is checked by its source and digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedRecord {
    pub sha256: String,
    pub source: SourceId,
    /// The RBD id of the copy verified: the copy is that image whatever
    /// it is named later (publish renames it, Cinder's manage-existing
    /// too), and a record whose image is gone (deleted after the run) says
    /// nothing any more. Records of an older ferry have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_id: Option<String>,
}

impl VerifiedRecord {
    /// The record as one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a record serialises")
    }

    /// Reads a record; a record of an older ferry (a bare checksum) or any
    /// other text is refused with what it is.
    pub fn parse(text: &str) -> Result<VerifiedRecord, String> {
        let r: VerifiedRecord = serde_json::from_str(text.trim()).map_err(|e| {
            format!(
                "not a verified record ({e}): {:?}{}",
                text.chars().take(80).collect::<String>(),
                if text.trim().len() == 64 {
                    " looks like a record of an older ferry: verify again with this one"
                } else {
                    ""
                }
            )
        })?;
        if r.sha256.len() != 64 || !r.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "the record's sha256 {:?} is not a SHA-256",
                r.sha256
            ));
        }
        Ok(r)
    }
}

/// The image metadata key where a plan notes, on the source image itself,
/// what the image was before the plan changed anything:
/// `ferry-plan-<plan id>.original`.
pub fn original_key(plan_id: &str) -> String {
    format!("{ORIGINAL_PREFIX}{plan_id}{ORIGINAL_SUFFIX}")
}

const ORIGINAL_PREFIX: &str = "ferry-plan-";
const ORIGINAL_SUFFIX: &str = ".original";

/// The plan id an image metadata key names, when it is an [`original_key`].
pub fn original_key_plan(key: &str) -> Option<&str> {
    key.strip_prefix(ORIGINAL_PREFIX)?
        .strip_suffix(ORIGINAL_SUFFIX)
        .filter(|id| !id.is_empty())
}

/// What a source image was before a plan changed it (the value of its
/// [`original_key`], one line of JSON). Written before the first change, so
/// a plan made again after its state file or bundle was lost reads the
/// truth rather than the features ferry changed, and takes the same plan id
/// (its cut-over snapshot's name). The cleanup removes it last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginalRecord {
    /// The plan that wrote it.
    pub plan: String,
    pub features: Features,
    /// Mirroring mode before the plan (None: disabled).
    pub mirroring: Option<MirrorMode>,
}

impl OriginalRecord {
    /// The record as one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a record serialises")
    }

    /// Reads the record found under `key`; one that is not a record, or
    /// names another plan than its key, is refused with what it is.
    pub fn parse(key: &str, text: &str) -> Result<OriginalRecord, String> {
        let r: OriginalRecord = serde_json::from_str(text.trim()).map_err(|e| {
            format!(
                "{key} is not a record of the image before a plan ({e}): {:?}",
                text.chars().take(120).collect::<String>()
            )
        })?;
        if original_key_plan(key) != Some(r.plan.as_str()) {
            return Err(format!("{key} holds a record of plan {:?}", r.plan));
        }
        Ok(r)
    }
}

/// The name a copy has until it is verified; only a verified copy gets its
/// final name, which is how the destination cloud sees that it may adopt.
pub fn partial_name(image: &str) -> String {
    format!("{image}.ferry-partial")
}

/// The flat copy of a clone that is mirrored in its place (the carrier).
pub fn flat_name(image: &str) -> String {
    format!("{image}.ferry-flat")
}

/// The image metadata key on a carrier marking its copy complete; the value
/// names what it was copied from (`pool/image@snap`).
pub const FLAT_OF: &str = "ferry-flat-of";

/// A new plan id: 8 hex digits from the clock and the process.
pub fn new_plan_id() -> String {
    use sha2::{Digest, Sha256};
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = Sha256::digest(format!("{t}:{}", std::process::id()).as_bytes());
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// A state of the world that can be observed (through librbd, or `rbd` in a
/// script). Steps use checks as preconditions and as proof of completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "kebab-case")]
pub enum Check {
    /// The image exists.
    Exists { image: ImageAt },
    /// The image does not exist.
    Absent { image: ImageAt },
    /// No client watches the image (no running VM uses it).
    NotInUse { image: ImageAt },
    /// All of these features are enabled.
    FeaturesPresent { image: ImageAt, features: Features },
    /// None of these features is enabled.
    FeaturesAbsent { image: ImageAt, features: Features },
    /// Mirroring is enabled on the image in this mode.
    MirroringEnabled { image: ImageAt, mode: MirrorMode },
    /// Mirroring is disabled on the image.
    MirroringDisabled { image: ImageAt },
    /// The destination's mirrored copy holds the cut-over snapshot: it has
    /// the snapshot `mirrored` names and, in snapshot mode, a complete mirror
    /// snapshot taken after it.
    MirrorSynced {
        source: ImageAt,
        mirrored: ImageAt,
        mode: MirrorMode,
    },
    /// The snapshot exists and is protected.
    SnapshotProtected { image: ImageAt },
    /// The snapshot exists.
    SnapshotExists { image: ImageAt },
    /// The image has metadata under this key.
    MetadataPresent { image: ImageAt, key: String },
    /// The image has no metadata under this key.
    MetadataAbsent { image: ImageAt, key: String },
    /// The snapshot does not exist.
    SnapshotAbsent { image: ImageAt },
    /// The source has a mirror snapshot taken after this snapshot, which
    /// carries it to the peers (snapshot mode).
    MirrorSnapshotAfter { image: ImageAt },
    /// The copy was verified against the checksum taken at the cut-over.
    /// The destination reads its own record (`record_object`); the source,
    /// which cannot see the destination, reads its `verified_key` metadata,
    /// or the hand-off line the destination storage part printed.
    Verified {
        /// The source at the cut-over snapshot (it holds the checksum).
        source: ImageAt,
        /// The verified copy under its final name.
        copy: ImageAt,
        /// The source the record must name: a record of another image under
        /// the same copy name is refused, never taken for this one's.
        #[serde(default)]
        origin: SourceId,
    },
    /// The verified copy is under its final name (with `snap` set: and that
    /// snapshot is protected, for Glance). Storage sees the image; the
    /// destination cloud sees it in Cinder's manageable volumes, or Glance
    /// accepts it as a location.
    Published { image: ImageAt },
    /// The destination cloud has an `available` volume adopted from this
    /// source volume by this plan (its `ferry_source_volume` metadata names
    /// the source, `ferry_plan` this plan and `ferry_copy_sha256`, where
    /// noted and known, the verified copy's digest: see [`whose`]), or,
    /// when the adoption says `earlier: keep`, by another plan.
    VolumeAdopted { source_volume: String },
    /// The destination cloud has this image, `active`, registered by this
    /// plan (its `ferry_plan` property), or, with `earlier: keep`, by
    /// another.
    ImageRegistered { id: String },
    /// The source cloud's server is stopped (`SHUTOFF`).
    ServerStopped { server: String },
    /// The destination cloud has the server this plan made for this source
    /// server (its `ferry_source_server` and `ferry_plan` metadata), up
    /// (`ACTIVE`, or `SHUTOFF` when it is not to be started).
    ServerCreated { source_server: String, start: bool },
    /// Ready for the server's stop: the mirrored `image` holds a round
    /// snapshot of this plan, or no client writes the `source`. A run
    /// without the destination cluster takes it as holding (its operator
    /// chooses the moment).
    RoundArrived { source: ImageAt, image: ImageAt },
    /// The destination cloud has a volume made for this source volume (found
    /// by its `ferry_source_volume` metadata), created and not in error.
    VolumeCreated { source_volume: String },
    /// The volume made for this source volume holds the stream's data,
    /// verified by this plan: its [`STREAM_VERIFIED`] mark names this plan,
    /// this source volume and its [`STREAM_DIGEST`] ([`stream_verified`]).
    StreamVerified { source_volume: String },
}

/// What the source cloud said about the OpenStack object behind an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CloudObject {
    Volume {
        id: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        size_gb: u64,
        bootable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        volume_type: Option<String>,
        #[serde(default)]
        metadata: BTreeMap<String, String>,
        #[serde(default)]
        image_metadata: BTreeMap<String, String>,
        status: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        encrypted: bool,
        /// Its Cinder snapshots (read when they are carried), oldest first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        snapshots: Vec<CloudSnapshot>,
    },
    Image {
        id: String,
        name: String,
        disk_format: String,
        container_format: String,
        min_disk: u64,
        min_ram: u64,
        #[serde(default)]
        properties: BTreeMap<String, String>,
    },
}

/// A Cinder snapshot of a source volume, as the source cloud said (its RBD
/// snapshot is `snapshot-<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudSnapshot {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl CloudSnapshot {
    /// The RBD snapshot Cinder's RBD driver keeps it as.
    pub fn rbd_name(&self) -> String {
        format!("snapshot-{}", self.id)
    }
}

/// Metadata of a Cinder snapshot ferry managed at the destination: what it
/// was at the source (the source snapshot's id, or `rbd:<name>` for an RBD
/// snapshot Cinder did not make). A re-run finds it by this.
pub const SNAPSHOT_FROM: &str = "ferry_source_snapshot";

/// How the destination cloud adopts one carried snapshot of a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAdoption {
    /// The RBD snapshot on the copy (its name at the source).
    pub rbd: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Carried metadata, plus [`SNAPSHOT_FROM`].
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl SnapshotAdoption {
    /// The mark it is found by once managed.
    pub fn mark(&self) -> &str {
        self.metadata
            .get(SNAPSHOT_FROM)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

impl CloudObject {
    /// The volume's or image's id in the source cloud.
    pub fn id(&self) -> &str {
        match self {
            CloudObject::Volume { id, .. } | CloudObject::Image { id, .. } => id,
        }
    }
}

/// Metadata key that marks a volume ferry adopted, holding the source id.
pub const ADOPTED_FROM: &str = "ferry_source_volume";
/// Image property naming where ferry brought an image from.
pub const REGISTERED_FROM: &str = "ferry_source";
/// Metadata of a destination volume the stream path made and has not
/// finished (its value: the plan id); [`Check::VolumeAdopted`] does not hold
/// while it is there.
pub const STREAM_PENDING: &str = "ferry_stream_pending";
/// Metadata of a destination volume the stream path filled: the digest both
/// conversion hosts computed (`crate::transfer::digest`).
pub const STREAM_DIGEST: &str = "ferry_sha256";
/// Metadata of a destination volume the stream path filled: which plan
/// filled it from which source volume with which digest ([`stream_mark`]).
/// [`Check::StreamVerified`] holds only when it names this plan and source.
pub const STREAM_VERIFIED: &str = "ferry_stream_verified";
/// The start of every metadata key and image property ferry sets: none is
/// carried from a source to its destination (a volume ferry moved before
/// carries them, and they describe that move, not this one).
pub const FERRY_KEY_PREFIX: &str = "ferry_";

/// The value of [`STREAM_VERIFIED`]: plan `plan_id` streamed source volume
/// `source_volume` and both ends computed `digest`. Pure: the scripts'
/// `stream_verified` builds the same string.
pub fn stream_mark(plan_id: &str, source_volume: &str, digest: &str) -> String {
    format!("{plan_id} {source_volume} {digest}")
}

/// Whether a volume's `metadata` says plan `plan_id` filled it from
/// `source_volume`, verified: a [`STREAM_DIGEST`] and a [`STREAM_VERIFIED`]
/// mark naming this plan, this source and that digest. A key's presence
/// alone says nothing (an earlier move's keys may be there). Pure.
pub fn stream_verified(
    metadata: &BTreeMap<String, String>,
    plan_id: &str,
    source_volume: &str,
) -> bool {
    metadata.get(STREAM_DIGEST).is_some_and(|d| {
        !d.is_empty()
            && metadata.get(STREAM_VERIFIED) == Some(&stream_mark(plan_id, source_volume, d))
    })
}

/// `metadata` without ferry's own keys ([`FERRY_KEY_PREFIX`]). Pure.
pub fn without_ferry_keys(metadata: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    metadata
        .iter()
        .filter(|(k, _)| !k.starts_with(FERRY_KEY_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// How the destination cloud adopts a copy as a volume (manage-existing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAdoption {
    pub source_volume: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Destination volume type (mapped from the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    pub bootable: bool,
    /// Carried metadata, plus the adoption marker.
    pub metadata: BTreeMap<String, String>,
    /// Carried image metadata (bootable volumes).
    #[serde(default)]
    pub image_metadata: BTreeMap<String, String>,
    /// `host@backend#pool`, when the spec gives it; otherwise found from the
    /// destination cloud's backend pools by the RBD pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What to do with another plan's adoption of the same source.
    #[serde(default, skip_serializing_if = "EarlierAdoption::is_refuse")]
    pub earlier: EarlierAdoption,
}

impl VolumeAdoption {
    /// The `volume` of Cinder's `POST /volumes` that the stream path makes
    /// for it: the adoption's name, description, type and metadata, marked
    /// [`STREAM_PENDING`] by plan `plan_id`. Pure: ferry and the scripts
    /// send the same.
    pub fn new_volume(&self, size_gb: u64, plan_id: &str) -> serde_json::Value {
        let mut metadata = self.adopted_metadata(plan_id, None);
        metadata.insert(STREAM_PENDING.into(), plan_id.into());
        crate::openstack::api::cinder::new_volume(
            &self.name,
            size_gb,
            self.description.as_deref(),
            self.volume_type.as_deref(),
            &metadata,
        )
    }
}

/// How the destination cloud registers a copy as a Glance image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRegistration {
    /// The new image's id (also the RBD image name).
    pub id: String,
    pub name: String,
    pub disk_format: String,
    pub container_format: String,
    pub min_disk: u64,
    pub min_ram: u64,
    /// Carried properties, plus where the image came from.
    pub properties: BTreeMap<String, String>,
    /// What to do with another plan's registration of the same id.
    #[serde(default, skip_serializing_if = "EarlierAdoption::is_refuse")]
    pub earlier: EarlierAdoption,
}

/// What the destination cloud does with a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "as", rename_all = "kebab-case")]
pub enum Adoption {
    Volume(VolumeAdoption),
    Image(ImageRegistration),
}

use crate::steps;
pub use crate::steps::Action;

/// One step of an image's migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Stable id: `<image index>.<step index>`, e.g. `2.4`.
    pub id: String,
    /// Which step of the migration it is, e.g. `enable-mirroring`.
    pub name: StepName,
    pub role: Role,
    pub action: Action,
    /// Ids of steps that must be done first.
    pub after: Vec<String>,
    /// What must hold before the step may act.
    pub requires: Vec<Check>,
    /// What shows the step is done; a step whose checks all hold is skipped.
    pub done_when: Vec<Check>,
    /// What shows the migration has gone past this step (a later step may
    /// have undone its effect on purpose); a step whose checks all hold is
    /// skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past_when: Vec<Check>,
}

impl Step {
    /// A read-only check of the clouds that opens an image's plan
    /// (check-destination-cloud, check-source-cloud): `ferry run` and the
    /// scripts run these for every image before they begin any image.
    pub fn checks_inputs(&self) -> bool {
        self.action.kind().checks_inputs()
    }

    /// A read-only check whose answer can change after it passed (the
    /// source unchanged since the cut-over): never taken as done from a
    /// record, so every run that goes on past it looks again.
    pub fn rechecked(&self) -> bool {
        self.action.kind().rechecked()
    }

    /// The image the step acts on (for copies and comparisons: the source).
    pub fn action_image(&self) -> ImageAt {
        self.action.kind().subject()
    }
}

/// The steps for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePlan {
    pub image: ImageRef,
    /// How this image is mirrored (Glance pools: always journal).
    pub mode: MirrorMode,
    /// What carries the data (mirror unless the spec says direct).
    #[serde(default, skip_serializing_if = "crate::spec::Transfer::is_mirror")]
    pub transfer: crate::spec::Transfer,
    /// What discovery found, kept so that cleanup can restore it.
    pub facts: ImageFacts,
    /// What the destination cloud does with the copy, if a cloud adopts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adoption: Option<Adoption>,
    /// Things the operator should know before running it.
    pub warnings: Vec<String>,
    pub steps: Vec<Step>,
}

impl ImagePlan {
    /// The source image that is mirrored and holds the cut-over checksum:
    /// the image itself, or a clone's flat carrier (mirror transfer only).
    pub fn mirrored_source(&self) -> ImageAt {
        let clone = self.facts.ceph().is_some_and(|c| c.parent.is_some());
        let image = if clone && self.transfer.is_mirror() {
            flat_name(&self.image.name)
        } else {
            self.image.name.clone()
        };
        ImageAt {
            site: Site::Source,
            pool: self.image.pool.clone(),
            image,
            snap: None,
        }
    }

    /// Gives back what reading left unused: serde grows a list read from
    /// YAML from four places up, so a step's one check (256 bytes) held a
    /// kilobyte, and a plan a third more memory than its steps take.
    pub fn compact(&mut self) {
        self.steps.shrink_to_fit();
        for s in &mut self.steps {
            s.after.shrink_to_fit();
            s.requires.shrink_to_fit();
            s.done_when.shrink_to_fit();
            s.past_when.shrink_to_fit();
        }
    }
}

/// A whole migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Names this plan's cut-over snapshots (`ferry-cutover-<id>`).
    #[serde(default)]
    pub id: String,
    /// Mirroring mode for Cinder-pool images.
    pub mode: MirrorMode,
    pub source_cluster: String,
    pub destination_cluster: String,
    /// The destination cluster's fsid, when the planner could read it (the
    /// destination cloud needs it for Glance locations and to find the
    /// Cinder backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_fsid: Option<String>,
    /// The source cluster's fsid (the verified records name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_fsid: Option<String>,
    /// Whether cleanup steps are included.
    pub cleanup: bool,
    pub images: Vec<ImagePlan>,
}

impl Plan {
    /// Refuses two images of this plan that the destination cloud would
    /// give the same (non-empty) name: each one's input check looks for a
    /// volume or image of its name before either exists, so both would pass
    /// and the second make a name the first already holds. Pure.
    pub fn check_destination_names(&self) -> anyhow::Result<()> {
        let mut seen: BTreeMap<(&str, &str), &ImagePlan> = BTreeMap::new();
        for img in &self.images {
            let (kind, name) = match &img.adoption {
                Some(Adoption::Volume(v)) => ("volume", v.name.as_str()),
                Some(Adoption::Image(g)) => ("Glance image", g.name.as_str()),
                None => continue,
            };
            if name.is_empty() {
                continue;
            }
            if let Some(first) = seen.insert((kind, name), img) {
                anyhow::bail!(
                    "{} and {} would both become the {kind} named {name:?} in the destination cloud: give one of them another name (images[].name)",
                    first.image.source_spec(),
                    img.image.source_spec()
                );
            }
        }
        Ok(())
    }

    /// The order images are worked on: as listed, except that an image
    /// whose destination copy another image's copy clones (a Glance parent)
    /// goes first, so that a limited concurrency (or a script, one image
    /// after the other) never waits for a parent that has not started.
    pub fn run_order(&self) -> Vec<usize> {
        let parents: std::collections::BTreeSet<(&str, &str)> = self
            .images
            .iter()
            .flat_map(|i| &i.steps)
            .filter_map(|s| match &s.action {
                Action::Copy(steps::CopyImage {
                    clone_of: Some(p), ..
                }) => Some((p.pool.as_str(), p.image.as_str())),
                _ => None,
            })
            .collect();
        let is_parent = |i: &ImagePlan| {
            parents.contains(&(i.image.dest_pool.as_str(), i.image.dest_name.as_str()))
        };
        let (mut first, rest): (Vec<usize>, Vec<usize>) =
            (0..self.images.len()).partition(|&k| is_parent(&self.images[k]));
        first.extend(rest);
        first
    }

    /// Every step of one role, in execution order per image.
    pub fn steps_for(&self, role: Role) -> impl Iterator<Item = (&ImagePlan, &Step)> {
        self.images.iter().flat_map(move |i| {
            i.steps
                .iter()
                .filter(move |s| s.role == role)
                .map(move |s| (i, s))
        })
    }
}

/// A plan bundle's text: a comment, the format line
/// ([`BUNDLE_FORMAT`]), then the plan. The conversion hosts' ssh options
/// are left out: ssh runs on the machine of whoever runs the stream part,
/// with their options (`ferry run --role conversion-hosts --ssh-option`),
/// and a bundle that sets any is refused.
pub fn bundle_text(plan: &Plan) -> Result<String, serde_yaml::Error> {
    let mut plan = plan.clone();
    for step in plan.images.iter_mut().flat_map(|i| &mut i.steps) {
        if let Action::StreamVolume(steps::StreamVolume { hosts, .. }) = &mut step.action {
            hosts.ssh_options.clear();
        }
    }
    Ok(format!(
        "# ferry plan bundle {}: what each role runs (ferry script / ferry run --role).\n# No secrets: every role brings its own credentials.\n{}: {BUNDLE_FORMAT}\n{}",
        plan.id,
        validate::FORMAT_KEY,
        serde_yaml::to_string(&plan)?
    ))
}

/// Reads a plan bundle as untrusted input: a format this ferry writes, then
/// the plan, then what its steps may do ([`validate`]'s checks). The error
/// names the field.
pub fn read_bundle(text: &str) -> anyhow::Result<Plan> {
    validate::check_format(text)?;
    let plan = parse_bundle(text)?;
    validate::check(&plan)?;
    Ok(plan)
}

/// Reads a plan bundle's YAML (as `ferry plan --bundle` writes it) one
/// image at a time: serde_yaml holds a whole document's events at once,
/// ~10x the text (a bundle of 1,000 images, 10 MB, took 100 MB to read).
/// The images are the one list at the top level; each item is read on its
/// own, the rest as a plan with no image. Text of any other shape, or an
/// item that does not read, is read whole, so that errors keep their
/// lines.
pub fn parse_bundle(text: &str) -> Result<Plan, serde_yaml::Error> {
    let piecewise = || -> Option<Plan> {
        let (head, items) = split_top_level_list(text, "images")?;
        let mut plan: Plan = serde_yaml::from_str(&head).ok()?;
        for item in items {
            let mut images: Vec<ImagePlan> = serde_yaml::from_str(item).ok()?;
            images.iter_mut().for_each(ImagePlan::compact);
            plan.images.append(&mut images);
        }
        Some(plan)
    };
    match piecewise() {
        Some(plan) => Ok(plan),
        None => serde_yaml::from_str(text).map(|mut plan: Plan| {
            plan.images.iter_mut().for_each(ImagePlan::compact);
            plan
        }),
    }
}

/// The text without the block list under the top-level key `key` (which
/// it gives as `key: []`), and that list's items, each with its own
/// lines: an item begins with `- ` at the first column and runs to the next
/// such line or top-level key. None when `key:` opens no block list there.
pub(crate) fn split_top_level_list<'t>(text: &'t str, key: &str) -> Option<(String, Vec<&'t str>)> {
    let opener = format!("{key}:");
    let mut head = String::with_capacity(1024);
    let mut items: Vec<&str> = Vec::new();
    let mut in_list = false;
    let mut found = false;
    let mut item_start: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let at = offset;
        offset += line.len();
        let bare = line.trim_end_matches(['\n', '\r']);
        let top = !bare.is_empty() && !bare.starts_with([' ', '\t', '#']);
        if in_list && top && !bare.starts_with("- ") && bare != "-" {
            if let Some(s) = item_start.take() {
                items.push(&text[s..at]);
            }
            in_list = false;
        }
        if in_list {
            if bare.starts_with("- ") || bare == "-" {
                if let Some(s) = item_start.replace(at) {
                    items.push(&text[s..at]);
                }
            }
            continue;
        }
        if bare == opener && !found {
            found = true;
            in_list = true;
            head.push_str(&format!("{key}: []\n"));
            continue;
        }
        head.push_str(line);
    }
    if let Some(s) = item_start {
        items.push(&text[s..]);
    }
    found.then_some((head, items))
}
