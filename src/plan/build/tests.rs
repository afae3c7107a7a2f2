use super::adopt::{adoption_for, manageable_description};
use super::*;
use crate::plan::CephImage;
use crate::plan::{Action, CloudObject, Plan, Role, Site, Step, StepName, ADOPTED_FROM};
use crate::spec::Snapshots;
use crate::steps;

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
        warm_interval: None,
        snapshots: crate::spec::Snapshots::Carry,
        servers: Default::default(),
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
        CephImage {
            features,
            ..CephImage::example()
        }
        .into(),
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
    f.ceph_mut().pool_mode = PoolMirrorMode::Pool;
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
    // The cut-over travels with its digest in the one mirror snapshot the
    // hash takes: the sync follows the hash; the verify follows the copy
    // and the hash.
    assert_eq!(steps[4].name, StepName::HashSource);
    assert_eq!(steps[5].after, vec![steps[4].id.clone()]);
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
    // user snapshot (left behind): none of it matters when nothing is
    // mirrored.
    let (r, mut f) = volume(Features::LAYERING);
    f.ceph_mut().user_snapshots = vec!["before-upgrade".into()];
    let o = BuildOptions {
        snapshots: Snapshots::Drop,
        ..direct(MirrorMode::Journal, true)
    };
    let plan = build(&o, &[(r, f)]);
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
    f.ceph_mut().parent = Some(crate::ceph::Parent {
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
    f.ceph_mut().parent.as_mut().unwrap().pool = "oscinder".into();
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
    f.ceph_mut().recorded = Some(crate::plan::Recorded {
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
    let Action::RemoveMetadata(steps::RemoveMetadata { key, .. }) = &steps.last().unwrap().action
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
    f2.ceph_mut().recorded.as_mut().unwrap().plan = "p9".into();
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
    let e =
        crate::plan::OriginalRecord::parse("ferry-plan-cd34.original", &rec.to_line()).unwrap_err();
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
    f.ceph_mut().in_use = true;
    f.ceph_mut().users =
        vec!["client.4100 at 10.0.0.5:0/1 (holds the exclusive lock: it writes)".into()];
    f.ceph_mut().user_snapshots = vec!["s1".into()];
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
        snapshots: vec![],
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
        snapshots,
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
        snapshots,
    }
}

#[test]
fn a_volume_moved_before_carries_none_of_ferrys_keys_to_its_new_volume() {
    let (r, _) = volume(Features::DEFAULT);
    let f = ImageFacts::streamed(&moved_before());
    let opts = BuildOptions {
        conversion: Some(conversion_hosts()),
        warm_interval: None,
        snapshots: crate::spec::Snapshots::Carry,
        ..adopting()
    };
    let plan = build(&opts, &[(r, f)]);
    let p = &plan.images[0];
    let Action::CreateVolume(steps::CreateVolume { adoption, size_gb }) = &p.steps[2].action else {
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
    let (r, _) = volume(Features::DEFAULT);
    let f = ImageFacts::streamed(&cloud_volume(true));
    let hosts = conversion_hosts();
    assert_eq!(hosts.source.connector_name(), "convhost-a");
    let opts = BuildOptions {
        conversion: Some(hosts.clone()),
        warm_interval: None,
        snapshots: crate::spec::Snapshots::Carry,
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
            f.ceph_mut().cloud = Some(obj);
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
    f.ceph_mut().cloud = Some(cloud_volume(false));
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
    f.ceph_mut().cloud = Some(cloud_volume(true));
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
    f.ceph_mut().cloud = Some(cloud_volume(false));
    let plan = build(&opts(MirrorMode::Snapshot, false), &[(r, f)]);
    assert!(plan.images[0].adoption.is_none());
    assert!(plan.images[0]
        .steps
        .iter()
        .all(|s| s.role != Role::DestinationCloud));
}

#[test]
fn dropped_user_snapshots_are_said_not_to_arrive_whatever_the_transfer() {
    for (o, mirrored) in [
        (opts(MirrorMode::Snapshot, true), true),
        (direct(MirrorMode::Snapshot, true), false),
    ] {
        let o = BuildOptions {
            snapshots: Snapshots::Drop,
            ..o
        };
        let (r, mut f) = volume(Features::DEFAULT);
        f.ceph_mut().user_snapshots = vec!["s1".into(), "s2".into()];
        let plan = build(&o, &[(r, f)]);
        let w = plan.images[0]
            .warnings
            .iter()
            .find(|w| w.starts_with("2 snapshot(s) dropped (options.snapshots: drop)"))
            .unwrap_or_else(|| panic!("{:?}", plan.images[0].warnings));
        assert!(w.ends_with("without s1, s2"), "{w}");
        assert_eq!(w.contains("mirrored"), mirrored, "{w}");
        let n = names(&plan);
        assert!(!n.contains(&StepName::CopySnapshots), "{n:?}");
        assert_eq!(the_copy(&plan).onto, None);
    }
}

/// The plan's copy step.
fn the_copy(plan: &Plan) -> &steps::CopyImage {
    plan.images[0]
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::Copy(c) => Some(c),
            _ => None,
        })
        .expect("a copy step")
}

/// The plan's copy-snapshots step.
fn copy_snapshots_of(plan: &Plan) -> (&Step, &steps::CopySnapshots) {
    plan.images[0]
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::CopySnapshots(c) => Some((s, c)),
            _ => None,
        })
        .expect("a copy-snapshots step")
}

#[test]
fn carried_snapshots_are_copied_after_mirroring_and_before_the_cut_over_oldest_first() {
    let (r, mut f) = volume(Features::DEFAULT);
    f.ceph_mut().user_snapshots = vec!["s1".into(), "s2".into()];
    let plan = build(&opts(MirrorMode::Snapshot, true), &[(r, f)]);
    let n = names(&plan);
    let at = |name| n.iter().position(|x| *x == name).unwrap();
    assert_eq!(
        at(StepName::CopySnapshots),
        at(StepName::EnableMirroring) + 1
    );
    assert_eq!(
        at(StepName::CutOverSnapshot),
        at(StepName::CopySnapshots) + 1
    );
    let (step, c) = copy_snapshots_of(&plan);
    assert_eq!(step.role, Role::DestinationStorage);
    assert_eq!(c.snapshots, ["s1", "s2"]);
    assert_eq!(c.from.to_string(), "destination:oscinder/volume-1");
    assert_eq!(
        c.to.to_string(),
        "destination:cinder-ceph-pa1-cl1/volume-1.ferry-partial"
    );
    assert_eq!(c.features, the_copy(&plan).features);
    // It waits for the last snapshot's data at the destination, not its
    // name alone; done once each snapshot and its digest are on the copy.
    let [Check::MirrorSynced { mirrored, .. }] = &step.requires[..] else {
        panic!("{:?}", step.requires)
    };
    assert_eq!(mirrored.snap.as_deref(), Some("s2"));
    assert_eq!(step.done_when.len(), 4);
    assert!(step.done_when.contains(&Check::MetadataPresent {
        image: c.to.clone(),
        key: "s1.digest".into()
    }));
    assert!(matches!(&step.past_when[..], [Check::Verified { .. }]));
    // The copy goes on from the last one.
    assert_eq!(the_copy(&plan).onto.as_deref(), Some("s2"));
    let w = &plan.images[0].warnings;
    assert!(
        w.iter()
            .any(|w| w.starts_with("2 snapshot(s) carried: s1, s2 (")),
        "{w:?}"
    );
    assert!(!w.iter().any(|w| w.contains("do not arrive")), "{w:?}");
    // A bundle may name the image's own snapshots, and no other.
    crate::plan::validate::check(&plan).unwrap();
    let mut forged = plan.clone();
    for s in &mut forged.images[0].steps {
        if let Action::CopySnapshots(c) = &mut s.action {
            c.snapshots.push("not-its-own".into());
        }
    }
    let e = crate::plan::validate::check(&forged).unwrap_err();
    assert!(e.field.ends_with("action.snapshots[2]"), "{e}");
    // Cleanup touches the source's own snapshots nowhere.
    for s in &plan.images[0].steps {
        if let Action::RemoveSnapshot(steps::RemoveSnapshot { image }) = &s.action {
            assert_eq!(image.snap, Some(crate::plan::cutover_snap("p1")));
        }
    }
}

#[test]
fn carried_snapshots_come_before_the_warm_rounds() {
    let warm = BuildOptions {
        warm_interval: Some(5),
        ..opts(MirrorMode::Journal, false)
    };
    let (r, mut f) = volume(Features::DEFAULT);
    f.ceph_mut().user_snapshots = vec!["a".into()];
    let n = names(&build(&warm, &[(r, f)]));
    let at = |name| n.iter().position(|x| *x == name).unwrap();
    assert_eq!(
        at(StepName::CopySnapshots),
        at(StepName::EnableMirroring) + 1
    );
    assert_eq!(at(StepName::WarmRounds), at(StepName::CopySnapshots) + 1);
    assert_eq!(at(StepName::WarmCopy), at(StepName::WarmRounds) + 1);
    assert_eq!(at(StepName::CutOverSnapshot), at(StepName::WarmCopy) + 1);
}

#[test]
fn a_direct_transfer_carries_snapshots_read_on_the_source() {
    let (r, mut f) = volume(Features::DEFAULT);
    f.ceph_mut().user_snapshots = vec!["s1".into()];
    let plan = build(&direct(MirrorMode::Snapshot, false), &[(r, f)]);
    let n = names(&plan);
    let at = |name| n.iter().position(|x| *x == name).unwrap();
    assert_eq!(at(StepName::Copy), at(StepName::CopySnapshots) + 1);
    let (step, c) = copy_snapshots_of(&plan);
    assert_eq!(c.from.site, Site::Source);
    assert!(matches!(
        &step.requires[..],
        [Check::SnapshotExists { image }] if image.snap.as_deref() == Some("s1") && image.site == Site::Source
    ));
    crate::plan::validate::check(&plan).unwrap();
}

#[test]
fn a_clones_and_ferrys_own_snapshots_are_not_carried() {
    let (r, mut f) = volume(Features::DEFAULT);
    f.ceph_mut().user_snapshots = vec![
        "s1".into(),
        crate::plan::cutover_snap("old"),
        crate::plan::round_snap("old", 3),
    ];
    let plan = build(
        &opts(MirrorMode::Snapshot, false),
        &[(r.clone(), f.clone())],
    );
    assert_eq!(copy_snapshots_of(&plan).1.snapshots, ["s1"]);
    assert!(plan.images[0]
        .warnings
        .iter()
        .any(|w| w.starts_with("1 snapshot(s) carried: s1 (")));
    f.ceph_mut().parent = Some(crate::ceph::Parent {
        pool: "osglance".into(),
        namespace: String::new(),
        image: "abcd".into(),
        snap: "snap".into(),
        clone_format: 2,
        in_trash: false,
    });
    let plan = build(&opts(MirrorMode::Snapshot, false), &[(r, f)]);
    assert!(!names(&plan).contains(&StepName::CopySnapshots));
    assert!(plan.images[0]
        .warnings
        .iter()
        .any(|w| w.contains("a clone's snapshots cannot be carried")));
}

#[test]
fn an_adopted_volumes_carried_snapshots_are_managed_after_the_adoption_with_their_names() {
    let (r, mut f) = volume(Features::DEFAULT);
    let mut obj = cloud_volume(false);
    if let CloudObject::Volume { snapshots, .. } = &mut obj {
        *snapshots = vec![crate::plan::CloudSnapshot {
            id: "5a".into(),
            name: "before upgrade".into(),
            description: Some("taken\nby hand".into()),
            metadata: [
                ("app".to_string(), "db".to_string()),
                ("ferry_source_snapshot".to_string(), "old".to_string()),
            ]
            .into(),
        }];
    }
    f.ceph_mut().cloud = Some(obj);
    f.ceph_mut().user_snapshots = vec!["snapshot-5a".into(), "by-rbd".into()];
    let plan = build(&adopting(), &[(r, f)]);
    let n = names(&plan);
    let at = |name| n.iter().position(|x| *x == name).unwrap();
    assert_eq!(at(StepName::ManageSnapshots), at(StepName::AdoptVolume) + 1);
    let step = &plan.images[0].steps[at(StepName::ManageSnapshots)];
    assert_eq!(step.role, Role::DestinationCloud);
    assert!(matches!(&step.requires[..], [Check::VolumeAdopted { .. }]));
    let Action::ManageSnapshots(m) = &step.action else {
        panic!()
    };
    let [a, b] = &m.snapshots[..] else {
        panic!("{:?}", m.snapshots)
    };
    assert_eq!(
        (a.rbd.as_str(), a.name.as_str(), a.description.as_deref()),
        ("snapshot-5a", "before upgrade", Some("taken by hand"))
    );
    assert_eq!(a.metadata.get("app").map(String::as_str), Some("db"));
    assert_eq!(a.mark(), "5a");
    assert_eq!((b.name.as_str(), b.mark()), ("by-rbd", "rbd:by-rbd"));
    crate::plan::validate::check(&plan).unwrap();
    // Dropped: nothing to manage.
    let o = BuildOptions {
        snapshots: Snapshots::Drop,
        ..adopting()
    };
    let (r, f) = (plan.images[0].image.clone(), plan.images[0].facts.clone());
    assert!(!names(&build(&o, &[(r, f)])).contains(&StepName::ManageSnapshots));
}

#[test]
fn a_warm_plan_takes_rounds_after_mirroring_and_before_the_cut_over_except_for_clones_and_direct() {
    let warm = BuildOptions {
        warm_interval: Some(7),
        ..opts(MirrorMode::Snapshot, true)
    };
    let plan = build(&warm, &[volume(Features::DEFAULT)]);
    let n = names(&plan);
    let at = |name| n.iter().position(|x| *x == name).unwrap();
    assert_eq!(at(StepName::WarmRounds), at(StepName::EnableMirroring) + 1);
    assert_eq!(at(StepName::WarmCopy), at(StepName::WarmRounds) + 1);
    assert_eq!(at(StepName::CutOverSnapshot), at(StepName::WarmCopy) + 1);
    let copy = &plan.images[0].steps[at(StepName::WarmCopy)];
    assert_eq!(copy.role, Role::DestinationStorage);
    let step = &plan.images[0].steps[at(StepName::WarmRounds)];
    assert_eq!(step.role, Role::SourceStorage);
    let Action::WarmRounds(w) = &step.action else {
        panic!()
    };
    assert_eq!(
        (w.interval, w.partial.image.as_str()),
        (7, "volume-1.ferry-partial")
    );
    // Done once the image is idle, past once the cut-over is taken; the
    // cut-over still waits for idle.
    assert!(matches!(&step.done_when[..], [Check::NotInUse { .. }]));
    assert!(matches!(
        &step.past_when[..],
        [Check::SnapshotExists { .. }]
    ));
    let cut = &plan.images[0].steps[at(StepName::CutOverSnapshot)];
    assert!(cut
        .requires
        .iter()
        .any(|c| matches!(c, Check::NotInUse { .. })));
    // A clone is frozen first; a direct transfer mirrors nothing.
    let mut clone = volume(Features::DEFAULT);
    clone.1.ceph_mut().parent = Some(crate::ceph::Parent {
        pool: "osglance".into(),
        namespace: String::new(),
        image: "abcd".into(),
        snap: "snap".into(),
        clone_format: 2,
        in_trash: false,
    });
    assert!(!names(&build(&warm, &[clone])).contains(&StepName::WarmRounds));
    let direct = BuildOptions {
        warm_interval: Some(7),
        ..direct(MirrorMode::Snapshot, true)
    };
    assert!(!names(&build(&direct, &[volume(Features::DEFAULT)])).contains(&StepName::WarmRounds));
}

#[test]
fn round_snapshots_are_told_apart_by_plan_and_number() {
    let name = crate::plan::round_snap("abc", 12);
    assert_eq!(name, "ferry-round-abc-12");
    assert_eq!(crate::plan::round_number("abc", &name), Some(12));
    assert_eq!(crate::plan::round_number("abd", &name), None);
    assert_eq!(crate::plan::round_number("abc", "ferry-cutover-abc"), None);
}

/// Two volumes of one server (boot `1`, data `2`), with clouds.
fn server_volumes() -> Vec<(ImageRef, ImageFacts)> {
    let mut out = Vec::new();
    for (id, name) in [("1", "volume-1"), ("2", "volume-2")] {
        let (mut r, mut f) = volume(Features::DEFAULT);
        r.name = name.into();
        r.dest_name = name.into();
        let mut obj = cloud_volume(id == "1");
        if let CloudObject::Volume { id: i, .. } = &mut obj {
            *i = id.into();
        }
        f.ceph_mut().cloud = Some(obj);
        out.push((r, f));
    }
    out
}

fn server_def() -> crate::plan::server::ServerDef {
    crate::plan::server::ServerDef {
        id: "s1".into(),
        name: "web".into(),
        flavor: "m1.small".into(),
        key_name: None,
        security_groups: vec![],
        metadata: Default::default(),
        tags: vec![],
        availability_zone: None,
        description: None,
        volumes: vec!["1".into(), "2".into()],
        networks: vec![],
        root_disk: None,
        moved_to: None,
    }
}

fn serving(warm: bool, stop: bool) -> BuildOptions {
    BuildOptions {
        warm_interval: warm.then_some(10),
        servers: ServerOptions {
            servers: vec![server_def()],
            stop,
            start: true,
            create: true,
        },
        ..adopting()
    }
}

fn step_of(plan: &Plan, i: usize, name: StepName) -> Option<&Step> {
    plan.images[i].steps.iter().find(|s| s.name == name)
}

#[test]
fn a_warm_server_is_stopped_beside_its_rounds_once_every_volume_has_a_round_there() {
    let plan = build(&serving(true, true), &server_volumes());
    for i in 0..2 {
        let img = &plan.images[i];
        let stop = step_of(&plan, i, StepName::StopServer).expect("each volume stops it");
        let rounds = step_of(&plan, i, StepName::WarmRounds).unwrap();
        let cut = step_of(&plan, i, StepName::CutOverSnapshot).unwrap();
        assert_eq!(stop.role, Role::SourceCloud);
        // Beside the rounds: both follow the same step, the cut-over both.
        assert_eq!(stop.after, rounds.after);
        assert!(!rounds.after.contains(&stop.id));
        assert!(cut.after.contains(&stop.id) && cut.after.contains(&rounds.id));
        let pos = |n| img.steps.iter().position(|s| s.name == n).unwrap();
        assert!(pos(StepName::StopServer) < pos(StepName::WarmRounds));
        // A round of both volumes, at the destination.
        let arrived: Vec<&str> = stop
            .requires
            .iter()
            .filter_map(|c| match c {
                Check::RoundArrived { image, .. } => Some(image.image.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(arrived, ["volume-1", "volume-2"]);
        assert_eq!(
            stop.done_when,
            [Check::ServerStopped {
                server: "s1".into()
            }]
        );
        // In use until ferry stops it.
        match &img.steps[1].action {
            Action::CheckSourceCloud(c) => assert!(c.allow_in_use),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_cold_server_is_stopped_right_before_the_cut_over() {
    let plan = build(&serving(false, true), &server_volumes());
    let img = &plan.images[0];
    let k = img
        .steps
        .iter()
        .position(|s| s.name == StepName::StopServer)
        .unwrap();
    assert_eq!(img.steps[k + 1].name, StepName::CutOverSnapshot);
    assert_eq!(img.steps[k + 1].after, [img.steps[k].id.clone()]);
    assert!(img.steps[k].requires.is_empty(), "nothing to wait for cold");
}

#[test]
fn the_server_is_made_once_in_the_plan_of_its_last_volume_after_all_are_adopted() {
    let plan = build(&serving(true, false), &server_volumes());
    assert!(
        step_of(&plan, 0, StepName::StopServer).is_none(),
        "not asked to stop it"
    );
    assert!(step_of(&plan, 0, StepName::CreateServer).is_none());
    let img = &plan.images[1];
    let create = step_of(&plan, 1, StepName::CreateServer).unwrap();
    assert_eq!(create.role, Role::DestinationCloud);
    let adopt = img
        .steps
        .iter()
        .position(|s| s.name == StepName::AdoptVolume)
        .unwrap();
    let at = img.steps.iter().position(|s| s.id == create.id).unwrap();
    assert!(at > adopt);
    assert_eq!(
        create.requires,
        [Check::VolumeAdopted {
            source_volume: "1".into()
        }]
    );
    match &create.action {
        Action::CreateServer(c) => {
            assert_eq!(c.server.boot_volume(), "1");
            assert!(c.start);
        }
        other => panic!("{other:?}"),
    }
    // Its flavor and networks are read before anything changes.
    let check = img
        .steps
        .iter()
        .position(|s| s.name == StepName::CheckDestinationServer)
        .unwrap();
    let preflight = img
        .steps
        .iter()
        .position(|s| s.name == StepName::Preflight)
        .unwrap();
    assert!(check < preflight);
    assert!(img.steps[check].checks_inputs());
    // The boot volume stays a volume (not a Glance image).
    assert!(matches!(
        plan.images[0].adoption,
        Some(crate::plan::Adoption::Volume(_))
    ));
}

#[test]
fn a_server_moved_before_is_said_on_its_images() {
    let mut o = serving(true, true);
    o.servers.servers[0].moved_to = Some("plan p0: server \"web\" of the destination cloud".into());
    let plan = build(&o, &server_volumes());
    for img in &plan.images {
        assert!(
            img.warnings
                .iter()
                .any(|w| w.contains("stopped for a move before (plan p0")),
            "{:?}",
            img.warnings
        );
    }
    let plan = build(&serving(true, true), &server_volumes());
    assert!(!plan.images[0]
        .warnings
        .iter()
        .any(|w| w.contains("move before")));
}
