//! Builds a plan from the spec and the discovered facts. Pure: the same
//! inputs always give the same plan, and nothing is read or written.
//!
//! An image's steps are built phase by phase over one [`names::Names`] (every
//! place the image's migration reads or writes, named once): `prepare`
//! (the clouds' checks, the preflight and the record), `cutover` (the
//! snapshot the copy is made from, and its digest), `mirror` (what
//! mirroring needs, mirroring itself and the wait for it), `copy` (the
//! copy, its verification and its final name), `adopt` (the destination
//! cloud's volume or image) and `cleanup`; a streamed volume is `stream`.

mod adopt;
mod cleanup;
mod copy;
mod cutover;
mod draft;
mod mirror;
mod names;
mod parent;
mod prepare;
mod servers;
mod snapshots;
mod stream;
mod warnings;

use std::collections::{BTreeMap, BTreeSet};

use crate::ceph::{Features, MirrorMode, PoolMirrorMode};
use crate::spec::{BootableTo, Clones, ImageKind, ImageRef, Snapshots, Transfer};

use super::{Adoption, CephImage, Check, ImageAt, ImageFacts, ImagePlan, Plan};
use draft::Draft;
use names::Names;
use parent::CloneBase;
pub use servers::ServerOptions;

/// The choices that shape a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Mirroring mode for Cinder-pool images (Glance pools mirror per pool,
    /// which carries only journaled images).
    pub mode: MirrorMode,
    /// Allow feature changes and the cut-over on images a client has open.
    pub allow_in_use: bool,
    /// Add the cleanup steps.
    pub cleanup: bool,
    pub source_cluster: String,
    pub destination_cluster: String,
    /// How the destination cloud adopts the copies, when one is given.
    pub adopt: Option<AdoptOptions>,
    /// Names the plan's cut-over snapshots.
    pub plan_id: String,
    /// The destination cluster's fsid, when known.
    pub destination_fsid: Option<String>,
    /// The source cluster's fsid, when known (the verified records name it).
    pub source_fsid: Option<String>,
    /// What a volume cloned from a Glance image becomes at the destination.
    pub clones: Clones,
    /// The source Glance pool (where a clone's parent is a Glance image).
    pub source_glance_pool: Option<String>,
    /// The destination Glance pool (where the parents' copies are).
    pub dest_glance_pool: Option<String>,
    /// Destination snapshots (`pool/image@snap`) found protected when
    /// planning: parents already at the destination.
    pub published_parents: BTreeSet<String>,
    /// What carries the data.
    pub transfer: Transfer,
    /// The stream path's conversion hosts.
    pub conversion: Option<crate::spec::ConversionHosts>,
    /// Seconds between warm rounds; None: no warm phase (the cold path).
    pub warm_interval: Option<u64>,
    /// Whether a volume's own snapshots travel with it.
    pub snapshots: Snapshots,
    /// The servers that move with their volumes.
    pub servers: ServerOptions,
}

/// The choices about adoption in the destination cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptOptions {
    /// Source volume type → destination volume type.
    pub volume_types: BTreeMap<String, String>,
    /// `host@backend#pool` given in the spec.
    pub cinder_host: Option<String>,
    pub bootable_to: BootableTo,
    /// What to do with another plan's adoption of the same source.
    pub earlier: crate::spec::EarlierAdoption,
}

impl BuildOptions {
    /// The options a spec sets.
    pub fn from_spec(spec: &crate::spec::Spec) -> BuildOptions {
        BuildOptions {
            mode: spec.options.mirror_mode,
            allow_in_use: spec.options.allow_in_use,
            cleanup: spec.options.cleanup,
            source_cluster: site_name(&spec.source.cluster, &spec.source.cloud),
            destination_cluster: site_name(&spec.destination.cluster, &spec.destination.cloud),
            plan_id: super::new_plan_id(),
            destination_fsid: None,
            source_fsid: None,
            clones: spec.options.clones,
            source_glance_pool: spec.source.pools.glance.clone(),
            dest_glance_pool: spec.destination.pools.glance.clone(),
            published_parents: BTreeSet::new(),
            transfer: spec.options.transfer,
            conversion: spec.conversion_hosts.clone(),
            warm_interval: spec
                .options
                .warm
                .then_some(spec.options.warm_interval.max(1)),
            snapshots: spec.options.snapshots,
            servers: ServerOptions {
                servers: Vec::new(),
                stop: spec.options.stop_servers,
                start: spec.options.start_servers,
                create: spec.servers_from.is_none(),
            },
            adopt: spec.destination.cloud.as_ref().map(|_| AdoptOptions {
                volume_types: spec.options.volume_types.clone(),
                cinder_host: spec.destination.cinder_host.clone(),
                bootable_to: spec.options.bootable_volumes,
                earlier: spec.options.earlier_adoption,
            }),
        }
    }
}

/// A site's name in the plan: its cluster's, or its cloud's when the spec
/// names no cluster (every volume streams).
fn site_name(c: &crate::ceph::ClusterConfig, cloud: &Option<String>) -> String {
    match (c.is_given(), cloud) {
        (false, Some(cloud)) => format!("cloud {cloud}"),
        _ => c.cluster_name(),
    }
}

/// Builds the whole plan.
pub fn build(opts: &BuildOptions, images: &[(ImageRef, ImageFacts)]) -> Plan {
    Plan {
        id: opts.plan_id.clone(),
        mode: opts.mode,
        source_cluster: opts.source_cluster.clone(),
        destination_cluster: opts.destination_cluster.clone(),
        destination_fsid: opts.destination_fsid.clone(),
        source_fsid: opts.source_fsid.clone(),
        cleanup: opts.cleanup,
        images: images
            .iter()
            .enumerate()
            .map(|(i, (r, f))| image_plan(opts, i + 1, r, f, images))
            .collect(),
    }
}

/// The mode an image is mirrored in: a pool-mode pool mirrors by journal.
pub fn image_mode(opts: &BuildOptions, r: &ImageRef, facts: &CephImage) -> MirrorMode {
    if let Some(m) = facts.mirroring {
        return m; // already mirroring: keep what the operator set up
    }
    if r.kind == ImageKind::Glance || facts.pool_mode == PoolMirrorMode::Pool {
        MirrorMode::Journal
    } else {
        opts.mode
    }
}

/// One image's plan as it is built: what it is, where it goes, and the
/// steps and warnings so far. Each phase adds its steps in `<phase>.rs`.
struct ImageBuild<'a> {
    opts: &'a BuildOptions,
    r: &'a ImageRef,
    facts: &'a CephImage,
    mode: MirrorMode,
    at: Names,
    /// Direct: ferry reads the cut-over snapshot on the source itself, a
    /// clone through its parent; nothing is mirrored.
    direct: bool,
    /// A clone (the image has a parent).
    clone: bool,
    /// A clone cannot be mirrored unless its parent is: it is copied out
    /// flat from its cut-over snapshot on the source, and that copy (the
    /// carrier) is what is mirrored; the clone itself only gets the
    /// snapshot.
    flat_carrier: bool,
    /// A pool-mode pool mirrors every journaled image by itself.
    pool_mode: bool,
    adoption: Option<Adoption>,
    /// The destination snapshot the copy is a clone of, when it is one.
    clone_of: Option<ImageAt>,
    /// The features ferry turns on for mirroring (cleanup turns them off).
    added: Features,
    steps: Vec<Draft>,
    warnings: Vec<String>,
}

/// One image's plan: its phases, in the order their steps run.
fn image_plan(
    opts: &BuildOptions,
    n: usize,
    r: &ImageRef,
    facts: &ImageFacts,
    images: &[(ImageRef, ImageFacts)],
) -> ImagePlan {
    let facts = match facts {
        ImageFacts::Ceph(c) => c,
        ImageFacts::Streamed(v) => return stream::stream_plan(opts, n, r, v),
    };
    let base = match &facts.parent {
        Some(p) => parent::clone_base(opts, p, images),
        None => CloneBase::Flat(None),
    };
    let mut b = ImageBuild::new(opts, r, facts, &base);
    b.warn(&base);
    b.warn_moved();
    b.prepare();
    b.freeze();
    b.prepare_carrier();
    if b.direct {
        b.copy_snapshots();
    } else {
        b.enable_mirroring();
        b.copy_snapshots();
        b.warm_rounds();
        b.cut_over();
        b.wait_for_sync();
    }
    b.stop_server(images);
    b.copy_and_verify();
    b.adopt();
    b.manage_snapshots();
    b.create_server(images);
    if opts.cleanup {
        b.cleanup();
    }
    b.finish(n)
}

impl<'a> ImageBuild<'a> {
    fn new(
        opts: &'a BuildOptions,
        r: &'a ImageRef,
        facts: &'a CephImage,
        base: &CloneBase,
    ) -> ImageBuild<'a> {
        let direct = opts.transfer == Transfer::Direct;
        let clone = facts.parent.is_some();
        let flat_carrier = clone && !direct;
        ImageBuild {
            opts,
            r,
            facts,
            mode: image_mode(opts, r, facts),
            at: Names::of(opts, r, facts, flat_carrier),
            direct,
            clone,
            flat_carrier,
            pool_mode: facts.pool_mode == PoolMirrorMode::Pool,
            adoption: match (&opts.adopt, &facts.cloud) {
                // A server's volumes stay volumes: the new server boots
                // from them.
                (Some(a), Some(obj)) if servers::server_of(opts, obj.id()).is_some() => {
                    let a = AdoptOptions {
                        bootable_to: BootableTo::Cinder,
                        ..a.clone()
                    };
                    Some(adopt::adoption_for(&a, r, obj))
                }
                (Some(a), Some(obj)) => Some(adopt::adoption_for(a, r, obj)),
                _ => None,
            },
            clone_of: match base {
                CloneBase::Parent { snap, .. } => Some(snap.clone()),
                CloneBase::Flat(_) => None,
            },
            added: Features(0),
            steps: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The steps that change the image wait for it to be idle, unless
    /// allowed otherwise.
    fn idle(&self) -> Vec<Check> {
        if self.opts.allow_in_use {
            vec![]
        } else {
            vec![Check::NotInUse {
                image: self.at.source.clone(),
            }]
        }
    }

    /// The cut-over has arrived at the destination.
    fn synced(&self) -> Check {
        Check::MirrorSynced {
            source: self.at.carrier.clone(),
            mirrored: self.at.mirrored_cut.clone(),
            mode: self.mode,
        }
    }

    /// The copy is verified (its record names the source).
    fn verified(&self) -> Check {
        Check::Verified {
            source: self.at.carrier_cut.clone(),
            copy: self.at.copy.clone(),
            origin: self.at.origin.clone(),
        }
    }

    /// The verification handed to the source, noted on the image itself (a
    /// clone's carrier goes at cleanup).
    fn confirmed(&self) -> Check {
        Check::MetadataPresent {
            image: self.at.source.clone(),
            key: super::verified_key(&self.at.cut),
        }
    }

    /// The copy is written whole under its partial name.
    fn copied(&self) -> Check {
        Check::MetadataPresent {
            image: self.at.partial.clone(),
            key: super::copied_key(&self.at.cut),
        }
    }

    /// Once the cleanup has confirmed the copy, the source storage steps are
    /// past: running them again must not start the migration over.
    fn source_past(&self) -> Vec<Check> {
        vec![self.confirmed()]
    }

    /// The destination storage steps are past once the copy is verified: it
    /// may since have been adopted (renamed by Cinder) and the mirrored
    /// image removed by the cleanup.
    fn dest_past(&self) -> Vec<Check> {
        vec![self.verified()]
    }

    fn finish(self, n: usize) -> ImagePlan {
        ImagePlan {
            image: self.r.clone(),
            mode: self.mode,
            transfer: self.opts.transfer,
            facts: ImageFacts::Ceph(self.facts.clone()),
            adoption: self.adoption,
            warnings: self.warnings,
            steps: draft::chain(n, self.steps),
        }
    }
}

#[cfg(test)]
mod tests;
