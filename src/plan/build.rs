//! Builds a plan from the spec and the discovered facts. Pure: the same
//! inputs always give the same plan, and nothing is read or written.

use std::collections::{BTreeMap, BTreeSet};

use crate::ceph::{Features, MirrorMode, Parent, PoolMirrorMode};
use crate::spec::{BootableTo, Clones, ImageKind, ImageRef, Transfer};
use crate::steps;

use super::{
    without_ferry_keys, Action, Adoption, Check, CloudObject, ImageAt, ImageFacts, ImagePlan,
    ImageRegistration, Plan, Role, Site, Step, StepName, VolumeAdoption, ADOPTED_FROM,
    REGISTERED_FROM,
};

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

/// Features journal-based mirroring cannot coexist with, in the order they
/// must be disabled (deep-flatten first; in 16.2 disabling fast-diff also
/// takes object-map, so each is re-checked before it is disabled).
const JOURNAL_BLOCKERS: [Features; 3] = [
    Features::DEEP_FLATTEN,
    Features::FAST_DIFF,
    Features::OBJECT_MAP,
];

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

/// What the destination copy of a clone is made from.
enum CloneBase {
    /// Flat: the clone does not qualify (the reason, for the warnings), or
    /// flat was asked for (None).
    Flat(Option<String>),
    /// A clone of this destination snapshot; `how` says where it comes from.
    Parent { snap: ImageAt, how: String },
}

/// Where a clone's destination copy comes from, with `clones:
/// clone-of-parent`: the destination copy of its Glance parent when that
/// parent moves in the same migration or was found at the destination.
fn clone_base(
    opts: &BuildOptions,
    parent: &Parent,
    images: &[(ImageRef, ImageFacts)],
) -> CloneBase {
    if opts.clones == Clones::Flat {
        return CloneBase::Flat(None);
    }
    let glance = opts.source_glance_pool.as_deref();
    if glance != Some(parent.pool.as_str()) || !parent.namespace.is_empty() {
        return CloneBase::Flat(Some(format!(
            "clones: clone-of-parent keeps clones of Glance images (in pool {}); its parent {parent} is not one: it arrives flat",
            glance.unwrap_or("(no source.pools.glance)")
        )));
    }
    let moved = images.iter().enumerate().find(|(_, (r, _))| {
        r.kind == ImageKind::Glance && r.pool == parent.pool && r.name == parent.image
    });
    if let Some((k, (r, _))) = moved {
        return CloneBase::Parent {
            snap: ImageAt {
                site: Site::Destination,
                pool: r.dest_pool.clone(),
                image: r.dest_name.clone(),
                snap: Some("snap".into()),
            },
            how: format!(
                "moved in this migration as image {}, whose copy it waits for",
                k + 1
            ),
        };
    }
    let Some(dest_pool) = opts.dest_glance_pool.as_deref() else {
        return CloneBase::Flat(Some(
            "clones: clone-of-parent needs destination.pools.glance: it arrives flat".into(),
        ));
    };
    let snap = ImageAt {
        site: Site::Destination,
        pool: dest_pool.to_string(),
        image: parent.image.clone(),
        snap: Some("snap".into()),
    };
    if opts
        .published_parents
        .contains(&format!("{}/{}@snap", snap.pool, snap.image))
    {
        return CloneBase::Parent {
            snap,
            how: "at the destination already".into(),
        };
    }
    CloneBase::Flat(Some(format!(
        "clones: clone-of-parent: its parent {parent} is not part of this migration, and {snap} was not found protected at the destination when planning: it arrives flat (add the Glance image to this migration to keep the volume a clone)"
    )))
}

/// The mode an image is mirrored in: a pool-mode pool mirrors by journal.
pub fn image_mode(opts: &BuildOptions, r: &ImageRef, facts: &ImageFacts) -> MirrorMode {
    if let Some(m) = facts.mirroring {
        return m; // already mirroring: keep what the operator set up
    }
    if r.kind == ImageKind::Glance || facts.pool_mode == PoolMirrorMode::Pool {
        MirrorMode::Journal
    } else {
        opts.mode
    }
}

/// A step before it gets its id.
struct Draft {
    name: StepName,
    role: Role,
    action: Action,
    requires: Vec<Check>,
    done_when: Vec<Check>,
    past_when: Vec<Check>,
    /// Names of the steps it follows; None: the step before it.
    after: Option<Vec<StepName>>,
}

fn draft(name: StepName, role: Role, action: Action) -> Draft {
    Draft {
        name,
        role,
        action,
        requires: vec![],
        done_when: vec![],
        past_when: vec![],
        after: None,
    }
}

impl Draft {
    fn requires(mut self, c: Vec<Check>) -> Draft {
        self.requires = c;
        self
    }
    fn done_when(mut self, c: Vec<Check>) -> Draft {
        self.done_when = c;
        self
    }
    fn past_when(mut self, c: Vec<Check>) -> Draft {
        self.past_when = c;
        self
    }
    /// Follows these steps (of this image) rather than the one before it:
    /// the step before may then run alongside it.
    fn after(mut self, names: Vec<StepName>) -> Draft {
        self.after = Some(names);
        self
    }
}

fn image_plan(
    opts: &BuildOptions,
    n: usize,
    r: &ImageRef,
    facts: &ImageFacts,
    images: &[(ImageRef, ImageFacts)],
) -> ImagePlan {
    if facts.streamed {
        return stream_plan(opts, n, r, facts);
    }
    let mode = image_mode(opts, r, facts);
    let at = |site: Site, pool: &str, image: &str, snap: Option<String>| ImageAt {
        site,
        pool: pool.to_string(),
        image: image.to_string(),
        snap,
    };
    let cut = super::cutover_snap(&opts.plan_id);
    // Direct: ferry reads the cut-over snapshot on the source itself, a
    // clone through its parent; nothing is mirrored.
    let direct = opts.transfer == Transfer::Direct;
    // A clone cannot be mirrored unless its parent is: it is copied out flat
    // from its cut-over snapshot on the source, and that copy (the carrier)
    // is what is mirrored; the clone itself only gets the snapshot.
    let clone = facts.parent.is_some();
    let carrier_is_flat = clone && !direct;
    let carrier = if carrier_is_flat {
        super::flat_name(&r.name)
    } else {
        r.name.clone()
    };
    let orig = at(Site::Source, &r.pool, &r.name, None);
    let orig_cut = at(Site::Source, &r.pool, &r.name, Some(cut.clone()));
    let src = at(Site::Source, &r.pool, &carrier, None);
    let src_cut = at(Site::Source, &r.pool, &carrier, Some(cut.clone()));
    let mirrored = at(Site::Destination, &r.mirrored_pool, &carrier, None);
    let mirrored_cut = at(
        Site::Destination,
        &r.mirrored_pool,
        &carrier,
        Some(cut.clone()),
    );
    let dest = at(Site::Destination, &r.dest_pool, &r.dest_name, None);
    let partial = at(
        Site::Destination,
        &r.dest_pool,
        &super::partial_name(&r.dest_name),
        None,
    );
    let idle = if opts.allow_in_use {
        vec![]
    } else {
        vec![Check::NotInUse {
            image: orig.clone(),
        }]
    };
    let synced = Check::MirrorSynced {
        source: src.clone(),
        mirrored: mirrored_cut.clone(),
        mode,
    };
    let origin = super::SourceId {
        fsid: opts.source_fsid.clone().unwrap_or_default(),
        pool: r.pool.clone(),
        image: r.name.clone(),
        id: facts.id.clone(),
    };
    let verified = Check::Verified {
        source: src_cut.clone(),
        copy: dest.clone(),
        origin: origin.clone(),
    };
    let sum_key = super::checksum_key(&cut);
    // Noted on the image itself (a clone's carrier goes at cleanup).
    let confirmed = Check::MetadataPresent {
        image: orig.clone(),
        key: super::verified_key(&cut),
    };
    let copied = Check::MetadataPresent {
        image: partial.clone(),
        key: super::copied_key(&cut),
    };

    let adoption = match (&opts.adopt, &facts.cloud) {
        (Some(a), Some(obj)) => Some(adoption_for(a, r, obj)),
        _ => None,
    };

    let mut steps: Vec<Draft> = Vec::new();
    if let Some(a) = &adoption {
        // First, and reading only: bad destination inputs stop the run
        // before anything changes.
        let adopted = match a {
            Adoption::Volume(v) => Check::VolumeAdopted {
                source_volume: v.source_volume.clone(),
            },
            Adoption::Image(g) => Check::ImageRegistered { id: g.id.clone() },
        };
        steps.push(
            draft(
                StepName::CheckDestinationCloud,
                Role::DestinationCloud,
                Action::CheckDestinationCloud(steps::CheckDestinationCloud {
                    image: dest.clone(),
                    adoption: a.clone(),
                    create: false,
                }),
            )
            .past_when(vec![adopted]),
        );
    }
    if let Some(obj) = &facts.cloud {
        steps.push(draft(
            StepName::CheckSourceCloud,
            Role::SourceCloud,
            Action::CheckSourceCloud(steps::CheckSourceCloud {
                object: obj.clone(),
                allow_in_use: opts.allow_in_use,
                detached: false,
            }),
        ));
    }
    // Once the cleanup has confirmed the copy, the source storage steps are
    // past: running them again must not start the migration over.
    let source_past = vec![confirmed.clone()];
    steps.push(
        draft(
            StepName::Preflight,
            Role::SourceStorage,
            Action::Preflight(steps::Preflight {
                image: orig.clone(),
            }),
        )
        .requires(vec![Check::Exists {
            image: orig.clone(),
        }])
        .past_when(source_past.clone()),
    );
    // Before the first change: what the image is, on the image itself, so
    // that a plan made again (state file or bundle lost) restores the truth.
    let original = super::original_key(&opts.plan_id);
    steps.push(
        draft(
            StepName::RecordOriginal,
            Role::SourceStorage,
            Action::RecordOriginal(steps::RecordOriginal {
                image: orig.clone(),
                record: super::OriginalRecord {
                    plan: opts.plan_id.clone(),
                    features: facts.features,
                    mirroring: facts.mirroring,
                },
            }),
        )
        .done_when(vec![Check::MetadataPresent {
            image: orig.clone(),
            key: original.clone(),
        }])
        .past_when(source_past.clone()),
    );

    let mut added = Features(0);
    let mut warnings = Vec::new();
    if let (
        Some(Adoption::Volume(v)),
        Some(CloudObject::Volume {
            description: Some(d),
            ..
        }),
    ) = (&adoption, &facts.cloud)
    {
        if v.description.as_deref() != Some(d.as_str()) {
            warnings.push(
                "the description holds line breaks or other control characters, which Cinder's manage-existing refuses: it is carried with spaces in their place".into(),
            );
        }
    }
    if let Some(rec) = &facts.recorded {
        warnings.push(format!(
            "begun before by plan {} (its state was lost): its record on the image gives the original features ({}) and mirroring ({}), restored at cleanup; the image now has features ({}) and mirroring ({})",
            rec.plan,
            facts.features,
            mirroring_words(facts.mirroring),
            rec.features_now,
            mirroring_words(rec.mirroring_now),
        ));
    }
    if !facts.user_snapshots.is_empty() && !direct {
        warnings.push(format!(
            "{} snapshot(s) are mirrored too: {}",
            facts.user_snapshots.len(),
            facts.user_snapshots.join(", ")
        ));
    }
    if facts.in_use {
        let who = facts.users.join("; ");
        warnings.push(if opts.allow_in_use {
            format!("in use, and allowed ({who}): feature changes on an in-use image can freeze its server, and writes after the cut-over are not moved")
        } else {
            format!("in use ({who}): the steps that need an idle image wait until no client uses it")
        });
    }
    warnings.push(format!(
        "from the cut-over snapshot {cut} until cleanup confirms the copy, keep the source stopped: writes after the cut-over are not moved (cleanup reports them and stops)"
    ));
    let base = match &facts.parent {
        Some(p) => clone_base(opts, p, images),
        None => CloneBase::Flat(None),
    };
    if let Some(p) = &facts.parent {
        let arrives = match &base {
            CloneBase::Parent { snap, how } => format!(
                "it arrives as a clone of {snap} ({how}), written only where its data differ"
            ),
            CloneBase::Flat(_) => "it arrives flat".into(),
        };
        let how = if direct {
            "read through its parent".to_string()
        } else {
            format!(
                "copied out flat on the source first ({} in pool {} until cleanup), mirrored as {carrier}",
                crate::check::human_bytes(facts.size),
                r.pool
            )
        };
        warnings.push(format!(
            "a clone of {p} (clone v{}): {how}; {arrives}",
            p.clone_format
        ));
    }
    if let CloneBase::Flat(Some(why)) = &base {
        warnings.push(why.clone());
    }
    let clone_of = match base {
        CloneBase::Parent { snap, .. } => Some(snap),
        CloneBase::Flat(_) => None,
    };
    if !opts.cleanup {
        warnings.push(format!(
            "without cleanup the snapshot {cut} stays on the source (Cinder cannot delete a volume that has snapshots)"
        ));
    }
    if direct || clone {
        // The user snapshot taken under the exclusive lock when the image
        // has it: a direct transfer's one change on the source (its
        // cut-over), or a clone's, whose flat copy is then mirrored.
        steps.push(
            draft(
                if direct {
                    StepName::CutOverSnapshot
                } else {
                    StepName::FreezeSnapshot
                },
                Role::SourceStorage,
                Action::FreezeSnapshot(steps::FreezeSnapshot {
                    image: orig_cut.clone(),
                }),
            )
            .requires(idle.clone())
            .done_when(vec![Check::SnapshotExists {
                image: orig_cut.clone(),
            }])
            .past_when(source_past.clone()),
        );
    }
    if direct {
        // Nothing is mirrored: no flat copy, no feature change.
    } else if clone {
        let features = if mode == MirrorMode::Journal {
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
        steps.push(
            draft(
                StepName::CopyOutFlat,
                Role::SourceStorage,
                Action::FlatCopy(steps::FlatCopy {
                    from: orig_cut.clone(),
                    to: src.clone(),
                    features,
                }),
            )
            .requires(vec![Check::SnapshotExists {
                image: orig_cut.clone(),
            }])
            .done_when(vec![Check::MetadataPresent {
                image: src.clone(),
                key: super::FLAT_OF.into(),
            }])
            .past_when(source_past.clone()),
        );
    } else if mode == MirrorMode::Snapshot && !facts.features.contains(Features::EXCLUSIVE_LOCK) {
        // The in-use rule tells writers by the exclusive lock.
        added = Features::EXCLUSIVE_LOCK;
        steps.push(
            draft(
                StepName::EnableFeatures,
                Role::SourceStorage,
                Action::EnableFeatures(steps::EnableFeatures {
                    image: src.clone(),
                    features: vec![Features::EXCLUSIVE_LOCK],
                    make_room: vec![],
                }),
            )
            .requires(idle.clone())
            .done_when(vec![Check::FeaturesPresent {
                image: src.clone(),
                features: added,
            }])
            .past_when(source_past.clone()),
        );
    } else if mode == MirrorMode::Journal {
        // Only what journaling needs is enabled; the features the manual
        // procedure disables first are kept (Ceph 16.2 journals beside
        // them, and deep-flatten never comes back), and disabled only if
        // the cluster refuses journaling beside them.
        let enable: Vec<Features> = [Features::EXCLUSIVE_LOCK, Features::JOURNALING]
            .into_iter()
            .filter(|f| !facts.features.contains(*f))
            .collect();
        added = enable.iter().fold(Features(0), |a, f| a | *f);
        let make_room: Vec<Features> = JOURNAL_BLOCKERS
            .into_iter()
            .filter(|f| facts.features.contains(*f))
            .collect();
        if !enable.is_empty() {
            if !make_room.is_empty() && enable.contains(&Features::JOURNALING) {
                warnings.push(format!(
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
            steps.push(
                draft(
                    StepName::EnableFeatures,
                    Role::SourceStorage,
                    Action::EnableFeatures(steps::EnableFeatures {
                        image: src.clone(),
                        features: enable,
                        make_room: if added.contains(Features::JOURNALING) {
                            make_room
                        } else {
                            vec![]
                        },
                    }),
                )
                .requires(idle.clone())
                .done_when(vec![Check::FeaturesPresent {
                    image: src.clone(),
                    features: added,
                }])
                .past_when(source_past.clone()),
            );
        }
    }
    // A pool-mode pool mirrors every journaled image by itself.
    let pool_mode = facts.pool_mode == PoolMirrorMode::Pool;
    if !direct {
        mirror_steps(
            &mut steps,
            MirrorSteps {
                pool_mode,
                clone,
                mode,
                cut: &cut,
                src: &src,
                src_cut: &src_cut,
                mirrored: &mirrored,
                mirrored_cut: &mirrored_cut,
                synced: &synced,
                idle: &idle,
                source_past,
                dest_past: vec![verified.clone()],
                sum_key: &sum_key,
            },
        );
    }
    let dest_past = vec![verified.clone()];
    let mut copy_features = facts.features.0 & Features::CREATABLE.0 & !Features::JOURNALING.0;
    let mut copy_requires = vec![
        if direct {
            Check::SnapshotExists {
                image: orig_cut.clone(),
            }
        } else {
            synced.clone()
        },
        Check::Absent {
            image: dest.clone(),
        },
    ];
    if let Some(p) = &clone_of {
        // A clone needs layering; it waits for its parent's published copy.
        copy_features |= Features::LAYERING.0;
        copy_requires.push(Check::SnapshotProtected { image: p.clone() });
    }
    steps.push(
        draft(
            StepName::Copy,
            Role::DestinationStorage,
            Action::Copy(steps::CopyImage {
                from: if direct {
                    orig_cut.clone()
                } else {
                    mirrored_cut.clone()
                },
                to: partial.clone(),
                features: Some(Features(copy_features)),
                clone_of: clone_of.clone(),
            }),
        )
        .requires(copy_requires)
        .done_when(vec![copied.clone()])
        .past_when(dest_past),
    );
    // Mirror: the source's digest follows the data (mirroring carries it),
    // and the copy's digest is of what it read from the mirrored image.
    // Direct: the copy noted the digest of what it read on the source (and
    // wrote); `--reread` reads the copy back.
    let (expected, carries_sum, after) = if direct {
        (orig_cut.clone(), orig.clone(), vec![StepName::Copy])
    } else {
        (
            mirrored_cut.clone(),
            mirrored.clone(),
            vec![StepName::Copy, StepName::HashSource],
        )
    };
    steps.push(
        draft(
            StepName::Verify,
            Role::DestinationStorage,
            Action::Verify(steps::Verify {
                expected,
                partial: partial.clone(),
                copy: dest.clone(),
                origin: origin.clone(),
            }),
        )
        .after(after)
        .requires(vec![
            copied,
            Check::MetadataPresent {
                image: carries_sum,
                key: sum_key.clone(),
            },
        ])
        .done_when(vec![verified.clone()]),
    );
    steps.push(
        draft(
            StepName::Publish,
            Role::DestinationStorage,
            Action::Publish(steps::Publish {
                partial: partial.clone(),
                copy: dest.clone(),
            }),
        )
        .requires(vec![verified.clone()])
        .done_when(vec![verified.clone(), Check::Absent { image: partial }]),
    );
    let at_snap = ImageAt {
        snap: Some("snap".into()),
        ..dest.clone()
    };
    if r.kind == ImageKind::Glance || matches!(adoption, Some(Adoption::Image(_))) {
        steps.push(
            draft(
                StepName::SnapshotAndProtect,
                Role::DestinationStorage,
                Action::SnapshotAndProtect(steps::SnapshotAndProtect {
                    image: at_snap.clone(),
                }),
            )
            .requires(vec![Check::Exists {
                image: dest.clone(),
            }])
            .done_when(vec![Check::SnapshotProtected {
                image: at_snap.clone(),
            }]),
        );
    }
    match &adoption {
        Some(Adoption::Volume(v)) => steps.push(
            draft(
                StepName::AdoptVolume,
                Role::DestinationCloud,
                Action::AdoptVolume(steps::AdoptVolume {
                    image: dest.clone(),
                    adoption: v.clone(),
                }),
            )
            .requires(vec![Check::Published {
                image: dest.clone(),
            }])
            .done_when(vec![Check::VolumeAdopted {
                source_volume: v.source_volume.clone(),
            }]),
        ),
        Some(Adoption::Image(g)) => steps.push(
            draft(
                StepName::RegisterImage,
                Role::DestinationCloud,
                Action::RegisterImage(steps::RegisterImage {
                    image: at_snap.clone(),
                    registration: g.clone(),
                }),
            )
            .requires(vec![Check::Published {
                image: at_snap.clone(),
            }])
            .done_when(vec![Check::ImageRegistered { id: g.id.clone() }]),
        ),
        None => {}
    }
    if opts.cleanup {
        // The source cannot see the destination: the copy's verification
        // reaches it as a hand-off, noted on the source before anything
        // else; every cleanup step requires that note.
        steps.push(
            draft(
                StepName::ConfirmVerified,
                Role::Cleanup,
                Action::ConfirmVerified(steps::ConfirmVerified {
                    source: src_cut.clone(),
                    copy: dest.clone(),
                    mark: orig.clone(),
                    origin: origin.clone(),
                }),
            )
            .requires(vec![verified])
            .done_when(vec![confirmed.clone()]),
        );
        steps.push(
            draft(
                StepName::CheckSourceUnchanged,
                Role::Cleanup,
                Action::CheckUnchanged(steps::CheckUnchanged {
                    image: orig_cut.clone(),
                }),
            )
            .requires(vec![confirmed.clone()])
            .past_when(vec![Check::SnapshotAbsent {
                image: orig_cut.clone(),
            }]),
        );
        // Mirroring is disabled where ferry enabled it: the image itself, or
        // a clone's carrier (rbd-mirror then removes the mirrored copy).
        if !direct && !pool_mode && (clone || facts.mirroring.is_none()) {
            let gone = if clone {
                vec![Check::Absent { image: src.clone() }]
            } else {
                vec![]
            };
            steps.push(
                draft(
                    StepName::DisableMirroring,
                    Role::Cleanup,
                    Action::DisableMirroring(steps::DisableMirroring { image: src.clone() }),
                )
                .requires(vec![confirmed.clone()])
                .done_when(vec![Check::MirroringDisabled { image: src.clone() }])
                .past_when(gone),
            );
        }
        if clone && !direct {
            steps.push(
                draft(
                    StepName::RemoveFlatCopy,
                    Role::Cleanup,
                    Action::RemoveImage(steps::RemoveImage { image: src.clone() }),
                )
                .requires(vec![confirmed.clone()])
                .done_when(vec![Check::Absent { image: src.clone() }]),
            );
        }
        // The cut-over snapshot (on the image itself, also for a clone) and
        // the checksum set with it (on the carrier, which is gone by now for
        // a clone).
        let mut snapshot_gone = vec![Check::SnapshotAbsent {
            image: orig_cut.clone(),
        }];
        if !clone || direct {
            snapshot_gone.push(Check::MetadataAbsent {
                image: src.clone(),
                key: sum_key,
            });
        }
        steps.push(
            draft(
                StepName::RemoveCutOverSnapshot,
                Role::Cleanup,
                Action::RemoveSnapshot(steps::RemoveSnapshot {
                    image: orig_cut.clone(),
                }),
            )
            .requires(vec![confirmed.clone()])
            .done_when(snapshot_gone),
        );
        if !carrier_is_flat && added.0 != 0 {
            steps.push(
                draft(
                    StepName::RestoreFeatures,
                    Role::Cleanup,
                    Action::RestoreFeatures(steps::RestoreFeatures { image: src.clone() }),
                )
                // Feature changes can freeze a running client: never on an
                // image in use.
                .requires(vec![
                    confirmed.clone(),
                    Check::NotInUse { image: src.clone() },
                ])
                .done_when(vec![
                    Check::FeaturesAbsent {
                        image: src.clone(),
                        features: added,
                    },
                    Check::FeaturesPresent {
                        image: src.clone(),
                        features: Features(facts.features.0 & !Features::DEEP_FLATTEN.0),
                    },
                ]),
            );
        }
    }

    if opts.cleanup {
        // Last: the image is as it was, so its record has served.
        steps.push(
            draft(
                StepName::ForgetOriginal,
                Role::Cleanup,
                Action::RemoveMetadata(steps::RemoveMetadata {
                    image: orig.clone(),
                    key: original.clone(),
                }),
            )
            .requires(vec![confirmed.clone()])
            .done_when(vec![Check::MetadataAbsent {
                image: orig.clone(),
                key: original,
            }]),
        );
    }

    ImagePlan {
        image: r.clone(),
        mode,
        transfer: opts.transfer,
        facts: facts.clone(),
        adoption,
        warnings,
        steps: chain(n, steps),
    }
}

/// The steps with their ids and order.
fn chain(n: usize, steps: Vec<Draft>) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    for (j, d) in steps.into_iter().enumerate() {
        let after = match &d.after {
            None => out.last().map(|p| vec![p.id.clone()]).unwrap_or_default(),
            Some(names) => names
                .iter()
                .map(|name| {
                    out.iter()
                        .find(|p| p.name == *name)
                        .unwrap_or_else(|| panic!("{} follows {name}, planned before it", d.name))
                        .id
                        .clone()
                })
                .collect(),
        };
        out.push(Step {
            id: format!("{n}.{}", j + 1),
            name: d.name,
            role: d.role,
            action: d.action,
            after,
            requires: d.requires,
            done_when: d.done_when,
            past_when: d.past_when,
        });
    }
    out
}

/// A Cinder volume on the stream path: nothing on the source changes but
/// two attachments, made and removed by the stream step. The destination
/// cloud makes the volume first (marked pending, so that a re-run finds it
/// and nothing takes it for adopted), the stream fills and verifies it, and
/// the destination cloud finishes it (bootable flag, image metadata, the
/// mark removed).
fn stream_plan(opts: &BuildOptions, n: usize, r: &ImageRef, facts: &ImageFacts) -> ImagePlan {
    let obj = facts
        .cloud
        .as_ref()
        .expect("a streamed volume was found through the source cloud");
    let a = opts.adopt.clone().unwrap_or(AdoptOptions {
        volume_types: BTreeMap::new(),
        cinder_host: None,
        bootable_to: BootableTo::Cinder,
        earlier: Default::default(),
    });
    // A streamed volume arrives as a volume, bootable or not.
    let adoption = match adoption_for(
        &AdoptOptions {
            bootable_to: BootableTo::Cinder,
            ..a
        },
        r,
        obj,
    ) {
        Adoption::Volume(mut v) => {
            v.host = None;
            v
        }
        Adoption::Image(_) => unreachable!("bootable_to: cinder gives volumes"),
    };
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
            Role::DestinationCloud,
            Action::CheckDestinationCloud(steps::CheckDestinationCloud {
                image: dest,
                adoption: Adoption::Volume(adoption.clone()),
                create: true,
            }),
        )
        .past_when(vec![created.clone()]),
        draft(
            StepName::CheckSourceCloud,
            Role::SourceCloud,
            Action::CheckSourceCloud(steps::CheckSourceCloud {
                object: obj.clone(),
                allow_in_use: false,
                detached: true,
            }),
        ),
        draft(
            StepName::CreateVolume,
            Role::DestinationCloud,
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
            Role::ConversionHosts,
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
            Role::DestinationCloud,
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
        facts: facts.clone(),
        adoption: Some(Adoption::Volume(adoption)),
        warnings: vec![],
        steps: chain(n, steps),
    }
}

/// What the mirror transfer's own steps are made of.
struct MirrorSteps<'a> {
    /// A pool-mode pool mirrors every journaled image by itself.
    pool_mode: bool,
    clone: bool,
    mode: MirrorMode,
    cut: &'a str,
    /// The image mirrored: the image itself, or a clone's carrier.
    src: &'a ImageAt,
    src_cut: &'a ImageAt,
    mirrored: &'a ImageAt,
    mirrored_cut: &'a ImageAt,
    synced: &'a Check,
    idle: &'a [Check],
    source_past: Vec<Check>,
    /// The destination storage steps are past once the copy is verified:
    /// it may since have been adopted (renamed by Cinder) and the mirrored
    /// image removed by the cleanup.
    dest_past: Vec<Check>,
    sum_key: &'a str,
}

/// Mirroring enabled, the cut-over and its digest on their way, and the
/// wait for them at the destination.
fn mirror_steps(steps: &mut Vec<Draft>, m: MirrorSteps<'_>) {
    if !m.pool_mode {
        steps.push(
            draft(
                StepName::EnableMirroring,
                Role::SourceStorage,
                Action::EnableMirroring(steps::EnableMirroring {
                    image: m.src.clone(),
                    mode: m.mode,
                }),
            )
            .done_when(vec![Check::MirroringEnabled {
                image: m.src.clone(),
                mode: m.mode,
            }])
            .past_when(m.source_past.clone()),
        );
    }
    // The cut-over, in both modes: a user snapshot that mirroring carries
    // to the destination, where its arrival is seen without the status.
    let mut cutover_done = vec![Check::SnapshotExists {
        image: m.src_cut.clone(),
    }];
    if m.mode == MirrorMode::Snapshot {
        cutover_done.push(Check::MirrorSnapshotAfter {
            image: m.src_cut.clone(),
        });
    }
    steps.push(
        draft(
            StepName::CutOverSnapshot,
            Role::SourceStorage,
            Action::CreateCutover(steps::CreateCutover {
                image: m.src_cut.clone(),
                mode: m.mode,
            }),
        )
        // A clone was frozen by its own snapshot; the carrier is ferry's.
        .requires(if m.clone { vec![] } else { m.idle.to_vec() })
        .done_when(cutover_done)
        .past_when(m.source_past.clone()),
    );
    // Its digest, as image metadata that mirroring carries too. Only the
    // verify needs it: the sync and the copy go on meanwhile. Done once
    // the digest is on its way (`checksum_sent_key`).
    steps.push(
        draft(
            StepName::HashSource,
            Role::SourceStorage,
            Action::HashSource(steps::HashSource {
                image: m.src_cut.clone(),
                mode: m.mode,
            }),
        )
        .requires(vec![Check::SnapshotExists {
            image: m.src_cut.clone(),
        }])
        .done_when(vec![
            Check::MetadataPresent {
                image: m.src.clone(),
                key: m.sum_key.to_string(),
            },
            Check::MetadataPresent {
                image: m.src.clone(),
                key: super::checksum_sent_key(m.cut),
            },
        ])
        .past_when(m.source_past),
    );
    steps.push(
        draft(
            StepName::WaitForSync,
            Role::DestinationStorage,
            Action::WaitForSync(steps::WaitForSync {
                source: m.src.clone(),
                mirrored: m.mirrored_cut.clone(),
                mode: m.mode,
            }),
        )
        .after(vec![StepName::CutOverSnapshot])
        .requires(vec![Check::Exists {
            image: m.mirrored.clone(),
        }])
        .done_when(vec![m.synced.clone()])
        .past_when(m.dest_past),
    );
}

fn mirroring_words(m: Option<MirrorMode>) -> String {
    m.map_or("disabled".into(), |m| format!("{m} mode"))
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
pub fn manageable_description(d: &str) -> String {
    d.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// What the destination cloud does with one copy. Pure.
pub fn adoption_for(a: &AdoptOptions, r: &ImageRef, obj: &CloudObject) -> Adoption {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn opts(mode: MirrorMode, cleanup: bool) -> BuildOptions {
        BuildOptions {
            mode,
            allow_in_use: false,
            cleanup,
            source_cluster: "ceph".into(),
            destination_cluster: "cephpa1".into(),
            adopt: None,
            plan_id: "p1".into(),
            destination_fsid: None,
            source_fsid: None,
            clones: Clones::Flat,
            source_glance_pool: Some("osglance".into()),
            dest_glance_pool: Some("glance-ct1-cl1".into()),
            published_parents: BTreeSet::new(),
            transfer: Transfer::Mirror,
            conversion: None,
        }
    }

    fn volume(features: Features) -> (ImageRef, ImageFacts) {
        (
            ImageRef {
                kind: ImageKind::Cinder,
                pool: "oscinder".into(),
                name: "volume-1".into(),
                mirrored_pool: "oscinder".into(),
                dest_pool: "cinder-ceph-pa1-cl1".into(),
                dest_name: "volume-1".into(),
                new_name: None,
            },
            ImageFacts {
                id: "10ad5eed".into(),
                size: 1 << 30,
                features,
                user_snapshots: vec![],
                mirroring: None,
                in_use: false,
                users: vec![],
                parent: None,
                pool_mode: PoolMirrorMode::Image,
                recorded: None,
                cloud: None,
                streamed: false,
            },
        )
    }

    fn glance(features: Features) -> (ImageRef, ImageFacts) {
        let (mut r, mut f) = volume(features);
        r.kind = ImageKind::Glance;
        r.pool = "osglance".into();
        r.name = "abcd".into();
        r.mirrored_pool = "osglance".into();
        r.dest_pool = "glance-ct1-cl1".into();
        r.dest_name = "abcd".into();
        f.pool_mode = PoolMirrorMode::Pool;
        (r, f)
    }

    fn names(plan: &Plan) -> Vec<StepName> {
        plan.images[0].steps.iter().map(|s| s.name).collect()
    }

    #[test]
    fn snapshot_mode_needs_no_feature_changes() {
        let plan = build(
            &opts(MirrorMode::Snapshot, false),
            &[volume(Features::DEFAULT)],
        );
        assert_eq!(
            names(&plan),
            [
                StepName::Preflight,
                StepName::RecordOriginal,
                StepName::EnableMirroring,
                StepName::CutOverSnapshot,
                StepName::HashSource,
                StepName::WaitForSync,
                StepName::Copy,
                StepName::Verify,
                StepName::Publish
            ]
        );
        let steps = &plan.images[0].steps;
        assert_eq!(steps[2].role, Role::SourceStorage);
        assert_eq!(steps[5].role, Role::DestinationStorage);
        // The source's hash runs beside the sync and the copy: the sync
        // follows the cut-over, the verify follows the copy and the hash.
        assert_eq!(steps[4].name, StepName::HashSource);
        assert_eq!(steps[5].after, vec![steps[3].id.clone()]);
        assert_eq!(
            steps[7].after,
            vec![steps[6].id.clone(), steps[4].id.clone()]
        );
        // The copy is made under a partial name and gets its final name only
        // once verified.
        let Action::Copy(steps::CopyImage { to, .. }) = &steps[6].action else {
            panic!()
        };
        assert_eq!(to.image, "volume-1.ferry-partial");
        assert_eq!(steps[8].requires[0], steps[7].done_when[0]);
        assert!(matches!(steps[7].done_when[0], Check::Verified { .. }));
        assert_eq!(
            steps[3].requires,
            vec![Check::NotInUse {
                image: steps[0].action_image()
            }]
        );
        assert_eq!(plan.steps_for(Role::Cleanup).count(), 0);
    }

    fn direct(mode: MirrorMode, cleanup: bool) -> BuildOptions {
        BuildOptions {
            transfer: Transfer::Direct,
            ..opts(mode, cleanup)
        }
    }

    #[test]
    fn a_direct_transfer_changes_nothing_on_the_source_but_its_snapshot() {
        // Journal mode asked for, an image lacking exclusive-lock, with a
        // user snapshot: none of it matters when nothing is mirrored.
        let (r, mut f) = volume(Features::LAYERING);
        f.user_snapshots = vec!["before-upgrade".into()];
        let plan = build(&direct(MirrorMode::Journal, true), &[(r, f)]);
        assert_eq!(
            names(&plan),
            [
                StepName::Preflight,
                StepName::RecordOriginal,
                StepName::CutOverSnapshot,
                StepName::Copy,
                StepName::Verify,
                StepName::Publish,
                StepName::ConfirmVerified,
                StepName::CheckSourceUnchanged,
                StepName::RemoveCutOverSnapshot,
                StepName::ForgetOriginal
            ]
        );
        let img = &plan.images[0];
        assert_eq!(img.transfer, Transfer::Direct);
        assert!(!img.warnings.iter().any(|w| w.contains("mirrored too")));
        let steps = &img.steps;
        let cut = ImageAt {
            site: Site::Source,
            pool: "oscinder".into(),
            image: "volume-1".into(),
            snap: Some(crate::plan::cutover_snap("p1")),
        };
        assert_eq!(
            steps[2].action,
            Action::FreezeSnapshot(steps::FreezeSnapshot { image: cut.clone() })
        );
        assert_eq!(
            steps[2].requires,
            vec![Check::NotInUse {
                image: ImageAt {
                    snap: None,
                    ..cut.clone()
                }
            }]
        );
        // The copy reads the cut-over on the source cluster, once it exists.
        let Action::Copy(steps::CopyImage { from, to, .. }) = &steps[3].action else {
            panic!("{:?}", steps[3].action)
        };
        assert_eq!(from, &cut);
        assert_eq!(to.site, Site::Destination);
        assert_eq!(steps[3].role, Role::DestinationStorage);
        assert_eq!(
            steps[3].requires[0],
            Check::SnapshotExists { image: cut.clone() }
        );
        // The verify compares with the digest noted on the source.
        let Action::Verify(steps::Verify { expected, .. }) = &steps[4].action else {
            panic!()
        };
        assert_eq!(expected, &cut);
        assert_eq!(steps[4].after, vec![steps[3].id.clone()]);
        assert!(steps[4].requires.contains(&Check::MetadataPresent {
            image: ImageAt {
                snap: None,
                ..cut.clone()
            },
            key: crate::plan::checksum_key(&crate::plan::cutover_snap("p1")),
        }));
    }

    #[test]
    fn a_direct_clone_is_read_through_its_parent_with_no_flat_copy_on_the_source() {
        let plan = build(
            &direct(MirrorMode::Snapshot, true),
            &[clone_of_glance_image()],
        );
        let n = names(&plan);
        assert!(!n.contains(&StepName::CopyOutFlat), "{n:?}");
        assert!(!n.contains(&StepName::RemoveFlatCopy), "{n:?}");
        assert!(!n.contains(&StepName::DisableMirroring), "{n:?}");
        let copy = plan.images[0]
            .steps
            .iter()
            .find(|s| s.name == StepName::Copy)
            .unwrap();
        assert_eq!(copy.action_image().image, "volume-1");
        assert_eq!(plan.images[0].mirrored_source().image, "volume-1");
        assert!(plan.images[0]
            .warnings
            .iter()
            .any(|w| w.contains("read through its parent")));
    }

    fn clone_of_glance_image() -> (ImageRef, ImageFacts) {
        let (r, mut f) = volume(Features::DEFAULT);
        f.parent = Some(crate::ceph::Parent {
            pool: "osglance".into(),
            namespace: String::new(),
            image: "abcd".into(),
            snap: "snap".into(),
            clone_format: 2,
            in_trash: false,
        });
        (r, f)
    }

    #[test]
    fn a_clone_is_frozen_copied_out_flat_and_its_carrier_is_mirrored() {
        for mode in [MirrorMode::Snapshot, MirrorMode::Journal] {
            let plan = build(&opts(mode, true), &[clone_of_glance_image()]);
            assert_eq!(
                names(&plan),
                [
                    StepName::Preflight,
                    StepName::RecordOriginal,
                    StepName::FreezeSnapshot,
                    StepName::CopyOutFlat,
                    StepName::EnableMirroring,
                    StepName::CutOverSnapshot,
                    StepName::HashSource,
                    StepName::WaitForSync,
                    StepName::Copy,
                    StepName::Verify,
                    StepName::Publish,
                    StepName::ConfirmVerified,
                    StepName::CheckSourceUnchanged,
                    StepName::DisableMirroring,
                    StepName::RemoveFlatCopy,
                    StepName::RemoveCutOverSnapshot,
                    StepName::ForgetOriginal,
                ],
                "{mode}"
            );
            let steps = &plan.images[0].steps;
            // Nothing but a snapshot touches the clone itself: no feature
            // change, and mirroring, copy and cleanup are on the carrier.
            for s in steps {
                if let Action::EnableMirroring(steps::EnableMirroring { image, .. })
                | Action::DisableMirroring(steps::DisableMirroring { image }) = &s.action
                {
                    assert_eq!(image.image, "volume-1.ferry-flat");
                }
                assert!(!matches!(
                    s.action,
                    Action::EnableFeatures(steps::EnableFeatures { .. })
                        | Action::DisableFeatures(steps::DisableFeatures { .. })
                        | Action::RestoreFeatures(steps::RestoreFeatures { .. })
                ));
            }
            let Action::FlatCopy(steps::FlatCopy { from, features, .. }) = &steps[3].action else {
                panic!("{:?}", steps[3].action)
            };
            assert_eq!(
                from.to_string(),
                "source:oscinder/volume-1@ferry-cutover-p1"
            );
            assert_eq!(
                features.contains(Features::JOURNALING),
                mode == MirrorMode::Journal
            );
            // The freeze waits for an idle clone; the verified note goes on
            // the clone, which stays.
            assert!(steps[2]
                .requires
                .iter()
                .any(|c| matches!(c, Check::NotInUse { image } if image.image == "volume-1")));
            let Action::ConfirmVerified(steps::ConfirmVerified { source, mark, .. }) =
                &steps[11].action
            else {
                panic!()
            };
            assert_eq!(source.image, "volume-1.ferry-flat");
            assert_eq!(mark.image, "volume-1");
            assert_eq!(
                plan.images[0].mirrored_source().image,
                "volume-1.ferry-flat"
            );
        }
    }

    fn copy_of(plan: &Plan, k: usize) -> &Step {
        plan.images[k]
            .steps
            .iter()
            .find(|s| s.name == StepName::Copy)
            .unwrap()
    }

    fn clone_of(step: &Step) -> Option<&ImageAt> {
        match &step.action {
            Action::Copy(steps::CopyImage { clone_of, .. }) => clone_of.as_ref(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clone_of_parent_clones_the_parents_destination_copy_and_waits_for_it() {
        let mut o = opts(MirrorMode::Snapshot, true);
        o.clones = Clones::CloneOfParent;
        // The clone listed before its parent.
        let plan = build(&o, &[clone_of_glance_image(), glance(Features::LAYERING)]);
        let copy = copy_of(&plan, 0);
        let parent = clone_of(copy).expect("a clone of the parent's copy");
        assert_eq!(
            parent.to_string(),
            "destination:glance-ct1-cl1/abcd@snap",
            "where the parent's snapshot-and-protect puts it"
        );
        let Action::SnapshotAndProtect(steps::SnapshotAndProtect { image }) = &plan.images[1]
            .steps
            .iter()
            .find(|s| s.name == StepName::SnapshotAndProtect)
            .unwrap()
            .action
        else {
            panic!()
        };
        assert_eq!(image, parent);
        // The copy waits for the published parent, after the sync.
        assert_eq!(
            copy.requires.last(),
            Some(&Check::SnapshotProtected {
                image: parent.clone()
            })
        );
        assert!(matches!(copy.requires[0], Check::MirrorSynced { .. }));
        let Action::Copy(steps::CopyImage { features, .. }) = &copy.action else {
            panic!()
        };
        assert!(features.unwrap().contains(Features::LAYERING));
        // The parent goes first, however the spec lists them.
        assert_eq!(plan.run_order(), [1, 0]);
        let w = plan.images[0].warnings.join("\n");
        assert!(
            w.contains("it arrives as a clone of destination:glance-ct1-cl1/abcd@snap (moved in this migration as image 2"),
            "{w}"
        );
        // The parent itself is an ordinary Glance image; verify, publish
        // and cleanup of the clone are unchanged.
        assert!(clone_of(copy_of(&plan, 1)).is_none());
        let flat = build(
            &opts(MirrorMode::Snapshot, true),
            &[clone_of_glance_image()],
        );
        assert_eq!(names(&plan), names(&flat));
        assert_eq!(plan.run_order(), [1, 0]);
    }

    #[test]
    fn clone_of_parent_uses_a_parent_found_at_the_destination_or_says_it_goes_flat() {
        let mut o = opts(MirrorMode::Journal, false);
        o.clones = Clones::CloneOfParent;
        // Neither in the migration nor at the destination: flat, and said.
        let plan = build(&o, &[clone_of_glance_image()]);
        let copy = copy_of(&plan, 0);
        assert!(clone_of(copy).is_none());
        assert!(!copy
            .requires
            .iter()
            .any(|c| matches!(c, Check::SnapshotProtected { .. })));
        let w = plan.images[0].warnings.join("\n");
        assert!(w.contains("it arrives flat"), "{w}");
        assert!(
            w.contains("its parent osglance/abcd@snap is not part of this migration, and destination:glance-ct1-cl1/abcd@snap was not found protected at the destination when planning: it arrives flat"),
            "{w}"
        );
        assert_eq!(plan.run_order(), [0]);
        // Found there when planning: a clone of it.
        o.published_parents = ["glance-ct1-cl1/abcd@snap".to_string()].into();
        let plan = build(&o, &[clone_of_glance_image()]);
        assert_eq!(
            clone_of(copy_of(&plan, 0))
                .map(|p| p.to_string())
                .as_deref(),
            Some("destination:glance-ct1-cl1/abcd@snap")
        );
        let w = plan.images[0].warnings.join("\n");
        assert!(w.contains("(at the destination already)"), "{w}");
        // A parent outside the Glance pool (a volume cloned from a volume
        // snapshot) is not a Glance image: flat, and said.
        let (r, mut f) = clone_of_glance_image();
        f.parent.as_mut().unwrap().pool = "oscinder".into();
        let plan = build(&o, &[(r, f)]);
        assert!(clone_of(copy_of(&plan, 0)).is_none());
        let w = plan.images[0].warnings.join("\n");
        assert!(
            w.contains("keeps clones of Glance images (in pool osglance)"),
            "{w}"
        );
        // The default is flat, and says nothing more.
        let plan = build(
            &opts(MirrorMode::Journal, false),
            &[clone_of_glance_image()],
        );
        assert!(clone_of(copy_of(&plan, 0)).is_none());
        assert!(!plan.images[0]
            .warnings
            .iter()
            .any(|w| w.contains("clone-of-parent")));
    }

    #[test]
    fn a_clone_of_parent_plan_round_trips_and_older_plans_read_as_flat() {
        let mut o = opts(MirrorMode::Snapshot, true);
        o.clones = Clones::CloneOfParent;
        let plan = build(&o, &[clone_of_glance_image(), glance(Features::LAYERING)]);
        let yaml = serde_yaml::to_string(&plan).unwrap();
        assert!(yaml.contains("clone_of:"), "{yaml}");
        assert_eq!(serde_yaml::from_str::<Plan>(&yaml).unwrap(), plan);
        let flat = build(
            &opts(MirrorMode::Snapshot, true),
            &[clone_of_glance_image()],
        );
        let yaml = serde_yaml::to_string(&flat).unwrap();
        assert!(!yaml.contains("clone_of"), "{yaml}");
    }

    #[test]
    fn snapshot_mode_turns_exclusive_lock_on_to_tell_writers_and_cleanup_turns_it_off() {
        let plan = build(
            &opts(MirrorMode::Snapshot, true),
            &[volume(Features::LAYERING)],
        );
        let n = names(&plan);
        assert_eq!(
            &n[..4],
            [
                StepName::Preflight,
                StepName::RecordOriginal,
                StepName::EnableFeatures,
                StepName::EnableMirroring
            ]
        );
        assert!(n.contains(&StepName::RestoreFeatures));
        let restore = plan.images[0]
            .steps
            .iter()
            .find(|s| s.name == StepName::RestoreFeatures)
            .unwrap();
        assert!(restore
            .requires
            .iter()
            .any(|c| matches!(c, Check::NotInUse { .. })));
    }

    /// A journaled image whose plan p0 lost its state after the feature
    /// changes: planned again from its record.
    fn recorded_volume() -> (ImageRef, ImageFacts) {
        let (r, mut f) = volume(Features::DEFAULT);
        f.recorded = Some(crate::plan::Recorded {
            plan: "p0".into(),
            features_now: Features::LAYERING | Features::EXCLUSIVE_LOCK | Features::JOURNALING,
            mirroring_now: Some(MirrorMode::Journal),
        });
        (r, f)
    }

    #[test]
    fn a_plan_made_again_takes_the_recorded_id_and_restores_the_recorded_features() {
        let images = [recorded_volume()];
        let mut o = opts(MirrorMode::Journal, true);
        o.plan_id = crate::plan::recorded_plan_id(&images).unwrap().unwrap();
        let plan = build(&o, &images);
        assert_eq!(plan.id, "p0");
        let steps = &plan.images[0].steps;
        let Action::RecordOriginal(steps::RecordOriginal { record, .. }) = &steps[1].action else {
            panic!("{:?}", steps[1].action)
        };
        assert_eq!(
            record,
            &crate::plan::OriginalRecord {
                plan: "p0".into(),
                features: Features::DEFAULT,
                mirroring: None
            }
        );
        let n = names(&plan);
        // The recorded state, not the changed one: mirroring was off, so
        // cleanup turns it off; the features come back.
        assert!(n.contains(&StepName::DisableMirroring), "{n:?}");
        let restore = steps
            .iter()
            .find(|s| s.name == StepName::RestoreFeatures)
            .unwrap();
        assert!(restore.done_when.contains(&Check::FeaturesAbsent {
            image: steps[0].action_image(),
            features: Features::JOURNALING,
        }));
        assert!(restore.done_when.contains(&Check::FeaturesPresent {
            image: steps[0].action_image(),
            features: Features::LAYERING
                | Features::EXCLUSIVE_LOCK
                | Features::OBJECT_MAP
                | Features::FAST_DIFF,
        }));
        let Action::RemoveMetadata(steps::RemoveMetadata { key, .. }) =
            &steps.last().unwrap().action
        else {
            panic!()
        };
        assert_eq!(key, "ferry-plan-p0.original");
        assert!(
            plan.images[0].warnings[0].starts_with("begun before by plan p0"),
            "{:?}",
            plan.images[0].warnings
        );
        let text = crate::plan::render_text(&plan);
        assert!(
            text.contains("resumes plan p0: begun before on oscinder/volume-1"),
            "{text}"
        );
    }

    #[test]
    fn images_begun_by_two_plans_cannot_be_planned_together() {
        let (r, f) = volume(Features::DEFAULT);
        assert_eq!(
            crate::plan::recorded_plan_id(&[(r.clone(), f.clone())]).unwrap(),
            None
        );
        let (mut r2, mut f2) = recorded_volume();
        r2.name = "volume-2".into();
        f2.recorded.as_mut().unwrap().plan = "p9".into();
        let e = crate::plan::recorded_plan_id(&[recorded_volume(), (r, f), (r2, f2)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plan p0: oscinder/volume-1; plan p9: oscinder/volume-2"),
            "{e}"
        );
    }

    #[test]
    fn descriptions_lose_only_what_manage_existing_refuses() {
        assert_eq!(
            manageable_description("it's \"q\" $(x) `y`\r\n\tz é"),
            "it's \"q\" $(x) `y`   z é"
        );
    }

    #[test]
    fn original_records_name_their_plan() {
        let rec = crate::plan::OriginalRecord {
            plan: "ab12".into(),
            features: Features::DEFAULT,
            mirroring: Some(MirrorMode::Snapshot),
        };
        let key = crate::plan::original_key("ab12");
        assert_eq!(key, "ferry-plan-ab12.original");
        assert_eq!(crate::plan::original_key_plan(&key), Some("ab12"));
        assert_eq!(crate::plan::original_key_plan("ferry-plan-.original"), None);
        assert_eq!(
            crate::plan::original_key_plan("ferry-cutover-ab12.digest"),
            None
        );
        assert_eq!(
            crate::plan::OriginalRecord::parse(&key, &rec.to_line()),
            Ok(rec.clone())
        );
        let e = crate::plan::OriginalRecord::parse("ferry-plan-cd34.original", &rec.to_line())
            .unwrap_err();
        assert!(e.contains("record of plan \"ab12\""), "{e}");
        let e = crate::plan::OriginalRecord::parse(&key, "layering").unwrap_err();
        assert!(e.contains("is not a record"), "{e}");
    }

    #[test]
    fn cleanup_checks_for_writes_after_the_cut_over_first() {
        let plan = build(
            &opts(MirrorMode::Snapshot, true),
            &[volume(Features::DEFAULT)],
        );
        let n = names(&plan);
        let confirm = n
            .iter()
            .position(|s| *s == StepName::ConfirmVerified)
            .unwrap();
        assert_eq!(n[confirm + 1], StepName::CheckSourceUnchanged);
    }

    #[test]
    fn copies_are_created_without_internal_feature_bits() {
        let (r, f) = glance(Features(Features::DEFAULT.0 | Features::OPERATIONS.0));
        let plan = build(&opts(MirrorMode::Snapshot, false), &[(r, f)]);
        let copy = plan.images[0]
            .steps
            .iter()
            .find_map(|s| match &s.action {
                Action::Copy(steps::CopyImage { features, .. }) => *features,
                _ => None,
            })
            .unwrap();
        assert!(!copy.contains(Features::OPERATIONS));
        assert!(!copy.contains(Features::JOURNALING));
        assert!(copy.contains(Features::DEEP_FLATTEN));
    }

    #[test]
    fn steps_are_chained_with_stable_ids() {
        let plan = build(
            &opts(MirrorMode::Snapshot, false),
            &[volume(Features::DEFAULT), volume(Features::DEFAULT)],
        );
        let second = &plan.images[1].steps;
        assert_eq!(second[0].id, "2.1");
        assert!(second[0].after.is_empty());
        assert_eq!(second[1].after, vec!["2.1".to_string()]);
    }

    #[test]
    fn journal_mode_enables_only_what_it_needs_and_cleanup_restores() {
        let plan = build(
            &opts(MirrorMode::Journal, true),
            &[volume(Features::DEFAULT)],
        );
        assert_eq!(
            names(&plan),
            [
                StepName::Preflight,
                StepName::RecordOriginal,
                StepName::EnableFeatures,
                StepName::EnableMirroring,
                StepName::CutOverSnapshot,
                StepName::HashSource,
                StepName::WaitForSync,
                StepName::Copy,
                StepName::Verify,
                StepName::Publish,
                StepName::ConfirmVerified,
                StepName::CheckSourceUnchanged,
                StepName::DisableMirroring,
                StepName::RemoveCutOverSnapshot,
                StepName::RestoreFeatures,
                StepName::ForgetOriginal
            ]
        );
        let steps = &plan.images[0].steps;
        // The cut-over is a named snapshot that the copy and the checksum read.
        assert_eq!(
            steps[4].done_when,
            vec![Check::SnapshotExists {
                image: ImageAt {
                    snap: Some("ferry-cutover-p1".into()),
                    ..steps[0].action_image()
                }
            },],
            "journal mode needs no mirror snapshot"
        );
        // The digest goes into the metadata, which the journal carries.
        assert!(matches!(
            &steps[5].action,
            Action::HashSource(steps::HashSource {
                mode: MirrorMode::Journal,
                ..
            })
        ));
        assert!(steps[8].requires.contains(&Check::MetadataPresent {
            image: ImageAt {
                site: Site::Destination,
                snap: None,
                ..steps[0].action_image()
            },
            key: "ferry-cutover-p1.digest".into()
        }));
        let Action::Copy(steps::CopyImage { from, .. }) = &steps[7].action else {
            panic!()
        };
        assert_eq!(
            from.to_string(),
            "destination:oscinder/volume-1@ferry-cutover-p1"
        );
        // Nothing is disabled: journaling goes beside object-map, fast-diff
        // and deep-flatten, which are disabled only if the cluster refuses.
        assert!(!steps.iter().any(|s| matches!(
            s.action,
            Action::DisableFeatures(steps::DisableFeatures { .. })
        )));
        let Action::EnableFeatures(steps::EnableFeatures {
            features,
            make_room,
            ..
        }) = &steps[2].action
        else {
            panic!("{:?}", steps[2].action)
        };
        assert_eq!(
            features,
            &[Features::JOURNALING],
            "exclusive-lock is already on"
        );
        assert_eq!(
            make_room,
            &[
                Features::DEEP_FLATTEN,
                Features::FAST_DIFF,
                Features::OBJECT_MAP
            ]
        );
        // Cleanup takes journaling off and puts every feature back.
        let restore = &steps[14];
        assert_eq!(restore.role, Role::Cleanup);
        assert!(restore.done_when.contains(&Check::FeaturesAbsent {
            image: steps[0].action_image(),
            features: Features::JOURNALING,
        }));
        assert!(restore.done_when.contains(&Check::FeaturesPresent {
            image: steps[0].action_image(),
            features: Features::LAYERING
                | Features::EXCLUSIVE_LOCK
                | Features::OBJECT_MAP
                | Features::FAST_DIFF,
        }));
        assert!(plan.images[0].warnings[1].starts_with(
            "journaling is enabled beside deep-flatten, fast-diff, object-map; should the cluster refuse it"
        ));
        // Nothing destroys source data before the checksums agree.
        for s in &steps[9..] {
            assert!(s
                .requires
                .iter()
                .any(|c| matches!(c, Check::Verified { .. })
                    || matches!(c, Check::MetadataPresent { key, .. } if key.ends_with(".verified"))));
        }
    }

    #[test]
    fn glance_image_in_a_pool_mode_pool_is_journaled_and_protected() {
        let plan = build(
            &opts(MirrorMode::Snapshot, true),
            &[glance(Features::LAYERING)],
        );
        assert_eq!(plan.images[0].mode, MirrorMode::Journal);
        assert_eq!(
            names(&plan),
            [
                StepName::Preflight,
                StepName::RecordOriginal,
                StepName::EnableFeatures,
                StepName::CutOverSnapshot,
                StepName::HashSource,
                StepName::WaitForSync,
                StepName::Copy,
                StepName::Verify,
                StepName::Publish,
                StepName::SnapshotAndProtect,
                StepName::ConfirmVerified,
                StepName::CheckSourceUnchanged,
                StepName::RemoveCutOverSnapshot,
                StepName::RestoreFeatures,
                StepName::ForgetOriginal
            ]
        );
        let Action::SnapshotAndProtect(steps::SnapshotAndProtect { image }) =
            &plan.images[0].steps[9].action
        else {
            panic!()
        };
        assert_eq!(image.to_string(), "destination:glance-ct1-cl1/abcd@snap");
    }

    #[test]
    fn in_use_images_wait_unless_allowed() {
        let (r, mut f) = volume(Features::DEFAULT);
        f.in_use = true;
        f.users = vec!["client.4100 at 10.0.0.5:0/1 (holds the exclusive lock: it writes)".into()];
        f.user_snapshots = vec!["s1".into()];
        let mut o = opts(MirrorMode::Journal, false);
        let plan = build(&o, &[(r.clone(), f.clone())]);
        assert!(plan.images[0].steps[2]
            .requires
            .iter()
            .any(|c| matches!(c, Check::NotInUse { .. })));
        let w = &plan.images[0].warnings;
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w[1].contains("client.4100 at 10.0.0.5:0/1"), "{w:?}");
        assert!(w[2].contains("keep the source stopped"), "{w:?}");
        o.allow_in_use = true;
        let plan = build(&o, &[(r, f)]);
        assert!(plan.images[0].steps.iter().all(|s| !s
            .requires
            .iter()
            .any(|c| matches!(c, Check::NotInUse { .. }))));
    }

    #[test]
    fn plan_round_trips_through_yaml_and_json() {
        let plan = build(
            &opts(MirrorMode::Journal, true),
            &[volume(Features::DEFAULT), glance(Features::LAYERING)],
        );
        let yaml = serde_yaml::to_string(&plan).unwrap();
        assert_eq!(serde_yaml::from_str::<Plan>(&yaml).unwrap(), plan);
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    }

    fn cloud_volume(bootable: bool) -> CloudObject {
        CloudObject::Volume {
            id: "1".into(),
            name: "db".into(),
            description: Some("primary".into()),
            size_gb: 20,
            bootable,
            volume_type: Some("fast".into()),
            metadata: [("app".to_string(), "db".to_string())].into(),
            image_metadata: [
                ("os_distro".to_string(), "debian".to_string()),
                ("image_id".to_string(), "old".to_string()),
                ("min_ram".to_string(), "512".to_string()),
            ]
            .into(),
            status: "available".into(),
            encrypted: false,
        }
    }

    fn adopting() -> BuildOptions {
        BuildOptions {
            adopt: Some(AdoptOptions {
                volume_types: [("fast".to_string(), "ssd".to_string())].into(),
                cinder_host: None,
                bootable_to: BootableTo::Glance,
                earlier: Default::default(),
            }),
            ..opts(MirrorMode::Snapshot, true)
        }
    }

    fn conversion_hosts() -> crate::spec::ConversionHosts {
        crate::spec::ConversionHosts {
            source: crate::spec::ConversionHost {
                ssh: "ops@convhost-a".into(),
                name: None,
                ip: "10.0.0.5".into(),
                ferry: "ferry".into(),
                nfs_mount_base: None,
                ceph_conf: None,
                ceph_keyring: None,
                state_dir: None,
            },
            destination: crate::spec::ConversionHost {
                ssh: "convhost-b".into(),
                name: None,
                ip: "10.1.0.5".into(),
                ferry: "ferry".into(),
                nfs_mount_base: None,
                ceph_conf: None,
                ceph_keyring: None,
                state_dir: None,
            },
            ssh_options: vec![],
            stall_seconds: 60,
        }
    }

    /// A volume ferry moved before carries ferry's keys of that move.
    fn moved_before() -> CloudObject {
        let CloudObject::Volume {
            id,
            name,
            description,
            size_gb,
            bootable,
            volume_type,
            mut metadata,
            mut image_metadata,
            status,
            encrypted,
        } = cloud_volume(false)
        else {
            unreachable!()
        };
        for (k, v) in [
            ("ferry_sha256", "0123abcd"),
            ("ferry_stream_verified", "old-plan 0 0123abcd"),
            ("ferry_stream_pending", "old-plan"),
            ("ferry_source_volume", "0"),
            ("ferry_future_key", "x"),
        ] {
            metadata.insert(k.into(), v.into());
        }
        image_metadata.insert("ferry_source".into(), "volume:0".into());
        CloudObject::Volume {
            id,
            name,
            description,
            size_gb,
            bootable,
            volume_type,
            metadata,
            image_metadata,
            status,
            encrypted,
        }
    }

    #[test]
    fn a_volume_moved_before_carries_none_of_ferrys_keys_to_its_new_volume() {
        let (r, mut f) = volume(Features::DEFAULT);
        f.cloud = Some(moved_before());
        f.streamed = true;
        let opts = BuildOptions {
            conversion: Some(conversion_hosts()),
            ..adopting()
        };
        let plan = build(&opts, &[(r, f)]);
        let p = &plan.images[0];
        let Action::CreateVolume(steps::CreateVolume { adoption, size_gb }) = &p.steps[2].action
        else {
            panic!("{:?}", p.steps[2])
        };
        let keys: Vec<&str> = adoption.metadata.keys().map(String::as_str).collect();
        assert_eq!(keys, ["app", "ferry_source_volume"]);
        assert_eq!(adoption.metadata["ferry_source_volume"], "1");
        assert!(adoption
            .image_metadata
            .keys()
            .all(|k| !k.starts_with("ferry_")));
        // The new volume: the user's keys, this source, this plan's mark.
        let body = adoption.new_volume(*size_gb, "p1");
        assert_eq!(
            body["metadata"],
            serde_json::json!({"app": "db", "ferry_plan": "p1", "ferry_source_volume": "1", "ferry_stream_pending": "p1"})
        );
        // The stream is done only by this plan's mark, not a key's presence.
        assert_eq!(
            p.steps[3].done_when,
            vec![Check::StreamVerified {
                source_volume: "1".into()
            }]
        );
        let CloudObject::Volume { metadata, .. } = moved_before() else {
            unreachable!()
        };
        assert!(!crate::plan::stream_verified(&metadata, "p1", "1"));
    }

    #[test]
    fn an_adopted_copy_or_registered_image_carries_none_of_ferrys_keys() {
        let (r, _) = volume(Features::DEFAULT);
        let a = AdoptOptions {
            volume_types: BTreeMap::new(),
            cinder_host: None,
            bootable_to: BootableTo::Cinder,
            earlier: Default::default(),
        };
        let Adoption::Volume(v) = adoption_for(&a, &r, &moved_before()) else {
            panic!()
        };
        assert_eq!(v.metadata.len(), 2, "{:?}", v.metadata);
        assert_eq!(v.metadata["ferry_source_volume"], "1");
        let glance = AdoptOptions {
            bootable_to: BootableTo::Glance,
            ..a
        };
        let CloudObject::Volume { metadata, .. } = moved_before() else {
            unreachable!()
        };
        let img = CloudObject::Image {
            id: "9".into(),
            name: "img".into(),
            disk_format: "raw".into(),
            container_format: "bare".into(),
            min_disk: 1,
            min_ram: 0,
            properties: metadata,
        };
        let Adoption::Image(g) = adoption_for(&glance, &r, &img) else {
            panic!()
        };
        let keys: Vec<&str> = g.properties.keys().map(String::as_str).collect();
        assert_eq!(keys, ["app", "ferry_source"]);
        assert_eq!(g.properties["ferry_source"], "image:9");
    }

    #[test]
    fn a_streamed_volume_is_made_streamed_and_finished_with_nothing_on_the_source() {
        let (r, mut f) = volume(Features::DEFAULT);
        f.cloud = Some(cloud_volume(true));
        f.streamed = true;
        let hosts = conversion_hosts();
        assert_eq!(hosts.source.connector_name(), "convhost-a");
        let opts = BuildOptions {
            conversion: Some(hosts.clone()),
            ..adopting()
        };
        let plan = build(&opts, &[(r, f)]);
        let p = &plan.images[0];
        assert_eq!(p.transfer, Transfer::Stream);
        let steps: Vec<(StepName, Role)> = p.steps.iter().map(|s| (s.name, s.role)).collect();
        assert_eq!(
            steps,
            [
                (StepName::CheckDestinationCloud, Role::DestinationCloud),
                (StepName::CheckSourceCloud, Role::SourceCloud),
                (StepName::CreateVolume, Role::DestinationCloud),
                (StepName::Stream, Role::ConversionHosts),
                (StepName::FinishVolume, Role::DestinationCloud),
            ]
        );
        // Nothing on the source but reading it; no Ceph step at all.
        assert!(p.steps.iter().all(|s| !matches!(
            s.role,
            Role::SourceStorage | Role::DestinationStorage | Role::Cleanup
        )));
        // A bootable volume arrives as a bootable volume (not a Glance
        // image), with the mapped type, and no manage-existing host.
        let Some(Adoption::Volume(v)) = &p.adoption else {
            panic!("{:?}", p.adoption)
        };
        assert!(v.bootable);
        assert_eq!(v.volume_type.as_deref(), Some("ssd"));
        assert_eq!(v.host, None);
        assert!(matches!(
            &p.steps[0].action,
            Action::CheckDestinationCloud(steps::CheckDestinationCloud { create: true, .. })
        ));
        assert!(matches!(
            &p.steps[2].action,
            Action::CreateVolume(steps::CreateVolume { size_gb: 20, .. })
        ));
        let src = "1".to_string();
        assert_eq!(
            p.steps[3].requires,
            vec![Check::VolumeCreated {
                source_volume: src.clone()
            }]
        );
        assert_eq!(
            p.steps[3].done_when,
            vec![Check::StreamVerified {
                source_volume: src.clone()
            }]
        );
        assert_eq!(
            p.steps[4].done_when,
            vec![Check::VolumeAdopted { source_volume: src }]
        );
        assert!(matches!(
            &p.steps[3].action,
            Action::StreamVolume(steps::StreamVolume { hosts: h, .. }) if *h == hosts
        ));
        // The plan reads back as it was written.
        let text = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&text).unwrap(), plan);
    }

    #[test]
    fn two_images_named_alike_in_the_destination_cloud_are_refused_unnamed_ones_not() {
        let two = |first: &str, second: &str, bootable: bool| {
            let mut images = Vec::new();
            for (n, name) in [first, second].into_iter().enumerate() {
                let (mut r, mut f) = volume(Features::DEFAULT);
                r.name = format!("volume-{n}");
                r.dest_name = r.name.clone();
                let mut obj = cloud_volume(bootable);
                if let CloudObject::Volume { id, name: nm, .. } = &mut obj {
                    *id = n.to_string();
                    *nm = name.to_string();
                }
                f.cloud = Some(obj);
                images.push((r, f));
            }
            build(&adopting(), &images).check_destination_names()
        };
        let err = two("db", "db", false).unwrap_err().to_string();
        assert!(
            err.contains(
                "oscinder/volume-0 and oscinder/volume-1 would both become the volume named \"db\""
            ),
            "{err}"
        );
        assert!(err.contains("images[].name"), "{err}");
        let err = two("db", "db", true).unwrap_err().to_string();
        assert!(err.contains("the Glance image named \"db\""), "{err}");
        two("db", "web", false).unwrap();
        // Unnamed volumes are common (Nova's boot volumes) and clash with
        // nothing: Cinder's names are no keys.
        two("", "", false).unwrap();
    }

    #[test]
    fn adopted_volume_is_checked_first_and_managed_after_verify() {
        let (r, mut f) = volume(Features::DEFAULT);
        f.cloud = Some(cloud_volume(false));
        let plan = build(&adopting(), &[(r, f)]);
        let p = &plan.images[0];
        let names: Vec<StepName> = p.steps.iter().map(|s| s.name).collect();
        assert_eq!(names[0], StepName::CheckDestinationCloud);
        let verify = names.iter().position(|n| *n == StepName::Verify).unwrap();
        assert_eq!(names[verify + 1], StepName::Publish);
        assert_eq!(names[verify + 2], StepName::AdoptVolume);
        assert_eq!(p.steps[0].role, Role::DestinationCloud);
        let Some(Adoption::Volume(v)) = &p.adoption else {
            panic!("{:?}", p.adoption)
        };
        assert_eq!(v.name, "db");
        assert_eq!(v.volume_type.as_deref(), Some("ssd"), "mapped");
        assert_eq!(v.metadata.get(ADOPTED_FROM).map(String::as_str), Some("1"));
        assert_eq!(v.metadata.get("app").map(String::as_str), Some("db"));
        assert!(!v.image_metadata.contains_key("image_id"));
        let adopt = &p.steps[verify + 2];
        assert_eq!(
            adopt.done_when,
            vec![Check::VolumeAdopted {
                source_volume: "1".into()
            }]
        );
    }

    #[test]
    fn bootable_volume_is_registered_as_an_image() {
        let (mut r, mut f) = volume(Features::DEFAULT);
        r.dest_pool = "glance-ct1-cl1".into();
        r.dest_name = "uuid-1".into();
        r.new_name = Some("db-image".into());
        f.cloud = Some(cloud_volume(true));
        let plan = build(&adopting(), &[(r, f)]);
        let p = &plan.images[0];
        let names: Vec<StepName> = p.steps.iter().map(|s| s.name).collect();
        assert!(names.contains(&StepName::SnapshotAndProtect), "{names:?}");
        assert!(names.contains(&StepName::RegisterImage), "{names:?}");
        assert!(!names.contains(&StepName::AdoptVolume), "{names:?}");
        let Some(Adoption::Image(g)) = &p.adoption else {
            panic!("{:?}", p.adoption)
        };
        assert_eq!(g.id, "uuid-1");
        assert_eq!(g.name, "db-image");
        assert_eq!((g.min_disk, g.min_ram), (20, 512));
        assert_eq!(
            g.properties.keys().collect::<Vec<_>>(),
            vec!["ferry_source", "os_distro"]
        );
        assert_eq!(g.properties["ferry_source"], "volume:1");
    }

    #[test]
    fn without_a_destination_cloud_nothing_is_adopted() {
        let (r, mut f) = volume(Features::DEFAULT);
        f.cloud = Some(cloud_volume(false));
        let plan = build(&opts(MirrorMode::Snapshot, false), &[(r, f)]);
        assert!(plan.images[0].adoption.is_none());
        assert!(plan.images[0]
            .steps
            .iter()
            .all(|s| s.role != Role::DestinationCloud));
    }
}
