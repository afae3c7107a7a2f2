use super::*;
use crate::ceph::PoolMirrorMode;
use crate::plan::{build, AdoptOptions, BuildOptions, ImageFacts};
use crate::spec::{BootableTo, ImageKind, ImageRef};

fn plan(mode: MirrorMode) -> Plan {
    let opts = BuildOptions {
        mode,
        allow_in_use: false,
        cleanup: true,
        source_cluster: "site-a".into(),
        destination_cluster: "site-b".into(),
        adopt: Some(AdoptOptions {
            volume_types: Default::default(),
            cinder_host: None,
            bootable_to: BootableTo::Glance,
        }),
        plan_id: "0123abcd".into(),
        destination_fsid: Some("22477561-5e0d".into()),
    };
    let volume = |bootable: bool, name: &str| {
        (
            ImageRef {
                kind: ImageKind::Cinder,
                pool: "volumes".into(),
                name: format!("volume-{name}"),
                mirrored_pool: "volumes".into(),
                dest_pool: if bootable {
                    "glance-images"
                } else {
                    "cinder-volumes"
                }
                .into(),
                dest_name: format!("volume-{name}"),
                new_name: None,
            },
            ImageFacts {
                size: 1 << 30,
                features: Features::DEFAULT,
                user_snapshots: vec![],
                mirroring: None,
                in_use: false,
                users: vec![],
                parent: None,
                pool_mode: PoolMirrorMode::Image,
                cloud: Some(CloudObject::Volume {
                    id: name.into(),
                    name: "it's a db".into(),
                    description: None,
                    size_gb: 1,
                    bootable,
                    volume_type: Some("ceph".into()),
                    metadata: [("app".to_string(), "db $HOME".to_string())].into(),
                    image_metadata: [("os_distro".to_string(), "debian".to_string())].into(),
                    status: "available".into(),
                    encrypted: false,
                }),
            },
        )
    };
    build(&opts, &[volume(false, "v1"), volume(true, "v2")])
}

const ROLES: [Role; 5] = [
    Role::SourceCloud,
    Role::SourceStorage,
    Role::DestinationStorage,
    Role::DestinationCloud,
    Role::Cleanup,
];

#[test]
fn quoting_keeps_every_character_literal() {
    assert_eq!(q("it's"), r"'it'\''s'");
    assert_eq!(q("$HOME `x`"), "'$HOME `x`'");
}

#[test]
fn each_role_gets_only_its_steps_and_tools() {
    let p = plan(MirrorMode::Snapshot);
    for role in ROLES {
        let s = script(&p, role);
        assert!(s.starts_with("#!/bin/sh\n"), "{role}");
        assert!(s.contains("\nset -eu\n"), "{role}");
        for st in p.images.iter().flat_map(|i| &i.steps) {
            let marker = format!("\n# {} {}:", st.id, st.name);
            assert_eq!(s.contains(&marker), st.role == role, "{role}: {marker}");
        }
        let cloud = matches!(role, Role::SourceCloud | Role::DestinationCloud);
        assert_eq!(s.contains("rbdw "), !cloud, "{role}");
        assert_eq!(
            s.contains("\nlogin\n"),
            role == Role::DestinationCloud,
            "{role}"
        );
    }
    let dst = script(&p, Role::DestinationStorage);
    assert!(dst.contains("printf '%s %s %s %s\\n' ferry-verified \"$PLAN\" 'volumes/volume-v1'"));
    assert!(script(&p, Role::Cleanup).contains("HANDOFF=${1:-}"));
}

#[test]
fn snapshot_and_journal_modes_wait_differently() {
    let snap = script(&plan(MirrorMode::Snapshot), Role::DestinationStorage);
    let journal = script(&plan(MirrorMode::Journal), Role::DestinationStorage);
    assert!(snap.contains("mirror_synced_snapshot 'volumes/volume-v1' 'ferry-cutover-0123abcd'"));
    assert!(journal.contains("mirror_synced_journal 'volumes/volume-v1' 'ferry-cutover-0123abcd'"));
    let src = script(&plan(MirrorMode::Journal), Role::SourceStorage);
    assert!(src.contains("rbdw feature enable 'volumes/volume-v1' journaling"));
    assert!(!src.contains("mirror image snapshot"));
}

#[test]
fn values_from_the_source_are_quoted() {
    let s = script(&plan(MirrorMode::Snapshot), Role::DestinationCloud);
    // A name with a quote and metadata with a dollar sign stay literal.
    assert!(s.contains(r#""name":"it'\''s a db""#), "{s}");
    assert!(s.contains(r#""app":"db $HOME""#));
}

#[test]
fn every_script_passes_shellcheck() {
    let Ok(out) = std::process::Command::new("shellcheck")
        .arg("--version")
        .output()
    else {
        panic!("shellcheck is not installed (ceph-testenv/testenv install adds it)");
    };
    assert!(out.status.success());
    for mode in [MirrorMode::Snapshot, MirrorMode::Journal] {
        let p = plan(mode);
        for role in ROLES {
            let dir = std::env::temp_dir().join(format!("ferry-sc-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let f = dir.join(format!("{role}-{mode}.sh"));
            std::fs::write(&f, script(&p, role)).unwrap();
            let out = std::process::Command::new("shellcheck")
                .args(["-s", "sh"])
                .arg(&f)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{role} ({mode}): {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}
