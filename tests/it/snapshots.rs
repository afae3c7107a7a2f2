//! A volume's own snapshots travel with it (`options.snapshots: carry`, the
//! default): the destination copy holds each under its name with the
//! source snapshot's data, and its head is the cut-over; with
//! `options.snapshots: drop` it holds none. With clouds, each arrives as a
//! Cinder snapshot of the adopted volume.

use std::time::Duration;

use ferry::ceph::{Features, Pool, SnapNamespace};
use ferry::openstack::{Cinder, Service};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{
    checksum, ferry_run, mirror_daemon_shared, spec_in_temp_dir, unique, wait_for, write_sparse,
    write_with_holes, ImageGuard, TestEnv,
};
use crate::it::openstack::{adopted, source_volume, DestGuard};

const MIB: u64 = 1 << 20;

/// A 32 MiB source volume with two snapshots whose data differ: written,
/// `s1`, written more, `s2`, written more. Returns its guards and the
/// digests of `s1`, `s2` and the head.
fn volume_with_two_snapshots(
    env: &TestEnv,
    name: &str,
    dest_pool: &str,
) -> (Vec<ImageGuard>, [String; 3]) {
    let size = 32 * MIB;
    let guards = vec![
        ImageGuard {
            cfg: env.admin("site-b"),
            pool: dest_pool.into(),
            name: name.into(),
        },
        ImageGuard {
            cfg: env.admin("site-a"),
            pool: "volumes".into(),
            name: name.into(),
        },
    ];
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    p.create_image(name, size, Features::DEFAULT).unwrap();
    {
        let img = p.open_image(name).unwrap();
        write_with_holes(&img, size, (2 * MIB) as usize, 11);
        img.snap_create("s1").unwrap();
        // Some chunks changed, some new, some untouched.
        write_sparse(&img, size, 5, 300_000, 12);
        img.snap_create("s2").unwrap();
        write_sparse(&img, size, 3, 700_000, 13);
        img.flush().unwrap();
    }
    let sums =
        [Some("s1"), Some("s2"), None].map(|s| checksum(&p.open_image_read_only(name, s).unwrap()));
    assert_ne!(sums[0], sums[1], "the snapshots' data must differ");
    assert_ne!(sums[1], sums[2], "the head must differ from s2");
    (guards, sums)
}

/// The user snapshots of `pool/name`, oldest first.
fn own_snapshots(pool: &Pool<'_>, name: &str) -> Vec<String> {
    let mut snaps = pool
        .open_image_read_only(name, None)
        .unwrap()
        .snapshots()
        .unwrap();
    snaps.sort_by_key(|s| s.id);
    snaps
        .into_iter()
        .filter(|s| s.namespace == SnapNamespace::User)
        .map(|s| s.name)
        .collect()
}

/// Moves a volume with two snapshots with `ferry run` (`options`), with
/// cleanup: the copy's head must be the source's (idle: the cut-over is
/// the head), `check` judges its snapshots, and the source keeps its own.
fn moved_with(options: &str, check: impl FnOnce(&Pool<'_>, &str, &[String; 3])) {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let v = unique("snaps");
    let name = format!("volume-{v}");
    let dest_pool = env.var("DEST_CINDER_POOL").to_string();
    let (_guards, sums) = volume_with_two_snapshots(&env, &name, &dest_pool);
    let (spec, state) = spec_in_temp_dir(
        &(env.spec_yaml(&format!("  - volume: {v}\n")) + "options:\n  cleanup: true\n" + options),
    );
    let out = ferry_run(&spec, &state, &["--wait-timeout", "300"], None);
    assert!(
        out.status.success(),
        "ferry run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = env.connect("site-b");
    let dest = b.pool(&dest_pool).unwrap();
    assert_eq!(
        checksum(&dest.open_image_read_only(&name, None).unwrap()),
        sums[2],
        "the copy's head against the source at the cut-over"
    );
    check(&dest, &name, &sums);
    // Cleanup took ferry's snapshot away, and left the volume's own.
    let a = env.connect("site-a");
    assert_eq!(
        own_snapshots(&a.pool("volumes").unwrap(), &name),
        ["s1", "s2"]
    );
    // A second run finds everything done and changes nothing.
    let before = own_snapshots(&dest, &name);
    let again = ferry_run(&spec, &state, &[], None);
    assert!(
        again.status.success(),
        "ferry run again: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(own_snapshots(&dest, &name), before);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// Both snapshots arrive on the destination copy, in order, each with its
/// source snapshot's data and its digest noted on the copy.
fn snapshots_arrive(dest: &Pool<'_>, name: &str, sums: &[String; 3]) {
    assert_eq!(own_snapshots(dest, name), ["s1", "s2"]);
    let img = dest.open_image_read_only(name, None).unwrap();
    for (s, want) in ["s1", "s2"].iter().zip(sums) {
        let got = checksum(&dest.open_image_read_only(name, Some(s)).unwrap());
        assert_eq!(&got, want, "{name}@{s} against the source's");
        assert_eq!(
            img.metadata_get(&ferry::plan::checksum_key(s))
                .unwrap()
                .as_deref(),
            Some(want.as_str()),
            "the digest noted for {s}"
        );
    }
}

#[test]
fn a_volumes_two_snapshots_arrive_with_their_data_in_snapshot_mode() {
    moved_with("  mirror_mode: snapshot\n", snapshots_arrive);
}

#[test]
fn a_volumes_two_snapshots_arrive_with_their_data_in_journal_mode() {
    moved_with("  mirror_mode: journal\n", snapshots_arrive);
}

#[test]
fn dropped_snapshots_leave_the_copy_without_any() {
    moved_with("  snapshots: drop\n", |dest, name, _| {
        assert_eq!(own_snapshots(dest, name), Vec::<String>::new());
    });
}

/// Cinder snapshots of volumes, deleted (and waited gone) at the end, so
/// that their volumes can go.
struct CinderSnapshotsGuard<'c> {
    cloud: &'c ferry::openstack::Cloud,
    /// The volumes whose snapshots go; a source id also names the volumes
    /// adopted from it.
    volumes: Vec<String>,
    adopted_from: Option<String>,
}

impl Drop for CinderSnapshotsGuard<'_> {
    fn drop(&mut self) {
        let c = Cinder(self.cloud);
        let mut vols = self.volumes.clone();
        if let Some(src) = &self.adopted_from {
            vols.extend(adopted(self.cloud, src).into_iter().map(|v| v.id));
        }
        for v in &vols {
            for s in c.snapshots_of(v).unwrap_or_default() {
                let _ = delete_snapshot(self.cloud, &s.id);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline
            && vols
                .iter()
                .any(|v| !c.snapshots_of(v).unwrap_or_default().is_empty())
        {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn delete_snapshot(cloud: &ferry::openstack::Cloud, id: &str) -> Result<(), String> {
    cloud
        .call(
            Service::BlockStorage,
            Method::DELETE,
            &format!("/snapshots/{id}"),
            &[],
            None,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A Cinder snapshot of `volume` (waited available).
fn cinder_snapshot(
    cloud: &ferry::openstack::Cloud,
    volume: &str,
    name: &str,
    description: &str,
    metadata: Value,
) -> ferry::openstack::Snapshot {
    let body = json!({"snapshot": {"volume_id": volume, "name": name, "description": description, "metadata": metadata}});
    let v: Value = cloud
        .call_json(
            Service::BlockStorage,
            Method::POST,
            "/snapshots",
            &[],
            Some(ferry::openstack::session::Body::Json(&body)),
        )
        .unwrap();
    let id = v["snapshot"]["id"].as_str().unwrap().to_string();
    wait_for(
        &format!("snapshot {id} available"),
        Duration::from_secs(90),
        || {
            let s = Cinder(cloud).snapshot(&id).unwrap();
            assert_ne!(s.status, "error", "snapshot {id} went to error");
            (s.status == "available").then_some(s)
        },
    )
}

/// With both clouds: a volume with two Cinder snapshots (different data)
/// arrives as an adopted volume with both as its Cinder snapshots, their
/// names, descriptions and metadata kept, each holding its source
/// snapshot's data; a second run manages none again.
#[test]
fn a_volumes_cinder_snapshots_arrive_as_cinder_snapshots_of_the_adopted_volume() {
    cinder_snapshots_arrive("mirror_mode: snapshot");
}

/// The same, read on the source cluster itself (no mirroring).
#[test]
fn a_volumes_cinder_snapshots_arrive_in_a_direct_transfer() {
    cinder_snapshots_arrive("transfer: direct");
}

fn cinder_snapshots_arrive(transfer: &str) {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let name = unique("snapped");
    let (vol, _) = source_volume(&env, &src, &name, 21);
    let _dest = DestGuard {
        cloud: &dst,
        volume_marker: Some(vol.id.clone()),
        image: None,
    };
    // Dropped first: the snapshots before their volumes.
    let _dest_snaps = CinderSnapshotsGuard {
        cloud: &dst,
        volumes: vec![],
        adopted_from: Some(vol.id.clone()),
    };
    let _src_snaps = CinderSnapshotsGuard {
        cloud: &src,
        volumes: vec![vol.id.clone()],
        adopted_from: None,
    };
    let a = env.connect("site-a");
    let sp = a.pool("volumes").unwrap();
    let rbd_name = format!("volume-{}", vol.id);
    let first = cinder_snapshot(&src, &vol.id, "before", "the first", json!({"k": "1"}));
    write_sparse(&sp.open_image(&rbd_name).unwrap(), 1 << 30, 4, 1 << 20, 22);
    let second = cinder_snapshot(&src, &vol.id, "after", "the second", json!({"k": "2"}));
    write_sparse(&sp.open_image(&rbd_name).unwrap(), 1 << 30, 3, 1 << 20, 23);
    let want: Vec<String> = [&first, &second]
        .iter()
        .map(|s| {
            let at = format!("snapshot-{}", s.id);
            checksum(&sp.open_image_read_only(&rbd_name, Some(&at)).unwrap())
        })
        .collect();
    assert_ne!(want[0], want[1]);
    let (spec, state) = spec_in_temp_dir(
        &(env.spec_yaml_with_clouds(&format!("  - volume: {name}\n"))
            + &format!("options: {{{transfer}, cleanup: true, volume_types: {{ceph: ceph}}}}\n")),
    );
    let out = ferry_run(&spec, &state, &[], Some(&env.clouds_yaml()));
    assert!(
        out.status.success(),
        "ferry run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = adopted(&dst, &vol.id);
    assert_eq!(found.len(), 1, "{found:#?}");
    let new = &found[0];
    let mut snaps = Cinder(&dst).snapshots_of(&new.id).unwrap();
    // Managed within a second of each other, they may share created_at:
    // ordered by the mark of their source instead (the source's order).
    snaps.sort_by_key(|s| s.metadata.get("k").cloned());
    let said: Vec<(&str, &str, &str, &str, &str)> = snaps
        .iter()
        .map(|s| {
            (
                s.name.as_deref().unwrap_or(""),
                s.description.as_deref().unwrap_or(""),
                s.status.as_str(),
                s.metadata.get("k").map(String::as_str).unwrap_or(""),
                s.metadata
                    .get(ferry::plan::SNAPSHOT_FROM)
                    .map(String::as_str)
                    .unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            ("before", "the first", "available", "1", first.id.as_str()),
            ("after", "the second", "available", "2", second.id.as_str())
        ]
    );
    // The RBD driver renamed each to snapshot-<new id>; the data is the
    // source snapshot's.
    let b = env.connect("site-b");
    let dp = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    for (s, want) in snaps.iter().zip(&want) {
        let img = dp
            .open_image_read_only(
                &format!("volume-{}", new.id),
                Some(&format!("snapshot-{}", s.id)),
            )
            .unwrap();
        assert_eq!(&checksum(&img), want, "snapshot {:?}", s.name);
    }
    let again = ferry_run(&spec, &state, &[], Some(&env.clouds_yaml()));
    assert!(
        again.status.success(),
        "ferry run again: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(Cinder(&dst).snapshots_of(&new.id).unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}
