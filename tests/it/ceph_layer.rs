//! ferry's Ceph layer against real clusters: images, features, snapshots,
//! mirroring in both modes, global status and copies.

use std::time::Duration;

use ferry::ceph::{
    mirror_snapshot_arrived, Cluster, ErrorKind, Features, ImageMirrorState, MirrorMode,
    MirrorSnapState, PeerDirection, PoolMirrorMode, ReplayProgress, SnapNamespace,
};

use crate::common::{
    checksum, mirror_daemon_shared, unique, wait_for, write_with_holes, ImageGuard, TestEnv,
};

const MIB: u64 = 1 << 20;

/// Waits until the site-b copy of `volumes/name` exists and has `want`.
fn wait_replicated(env: &TestEnv, pool: &str, name: &str, want: &str) {
    let b = env.connect("site-b");
    let pool = b.pool(pool).unwrap();
    wait_for(
        &format!("{name} replicated to site-b"),
        Duration::from_secs(180),
        || {
            let img = pool.open_image_read_only(name, None).ok()?;
            (checksum(&img) == want).then_some(())
        },
    );
}

#[test]
fn snapshot_mode_image_with_holes_arrives_with_equal_checksum() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let name = unique("snap");
    let _guard = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    volumes
        .create_image(&name, 48 * MIB, Features::DEFAULT)
        .unwrap();
    let img = volumes.open_image(&name).unwrap();
    let written = write_with_holes(&img, 48 * MIB, 3 * MIB as usize, 11);
    assert!(written > 0 && written < 48 * MIB, "data with holes");
    let want = checksum(&img);

    img.mirror_enable(MirrorMode::Snapshot).unwrap();
    assert_eq!(img.mirror_mode().unwrap(), Some(MirrorMode::Snapshot));
    let info = img.mirror_info().unwrap();
    assert_eq!(info.state, ImageMirrorState::Enabled);
    assert!(info.primary);
    // A mirror snapshot taken after the peer is known carries the data across.
    let snap_id = img.mirror_snapshot_create().unwrap();
    let snaps = img.snapshots().unwrap();
    assert!(
        snaps
            .iter()
            .any(|s| s.id == snap_id && s.namespace == SnapNamespace::Mirror),
        "mirror snapshot listed: {snaps:?}"
    );

    let primary = img.mirror_snapshot(snap_id).unwrap();
    assert_eq!(primary.state, MirrorSnapState::Primary);
    assert_eq!(
        primary.peer_uuids.len(),
        1,
        "meant for the one peer: {primary:?}"
    );

    // Arrival is read from the receiving site's mirror snapshots, not from
    // the status (which refreshes only every ~30 s); then the data must match.
    let b = env.connect("site-b");
    let bpool = b.pool("volumes").unwrap();
    wait_for(
        "the cut-over snapshot on site-b",
        Duration::from_secs(180),
        || {
            let copy = bpool.open_image_read_only(&name, None).ok()?;
            let received = copy.mirror_snapshots().ok()?;
            mirror_snapshot_arrived(&received, snap_id).then_some(())
        },
    );
    let copy = bpool.open_image_read_only(&name, None).unwrap();
    assert_eq!(checksum(&copy), want, "arrived means the data is there");
    let binfo = copy.mirror_info().unwrap();
    assert!(!binfo.primary, "site-b holds the non-primary copy");
    assert_eq!(binfo.global_id, info.global_id);
    // librbd's global status on the primary shows the receiving site's state,
    // which the rbd CLI does not.
    let status = wait_for(
        "site-b's status of the image",
        Duration::from_secs(90),
        || {
            let st = img.mirror_global_status().ok()?;
            st.sites.iter().find(|s| !s.is_local() && s.up).cloned()
        },
    );
    assert!(
        status.summary() == "up+replaying" || status.summary() == "up+syncing",
        "remote site status {status:?}"
    );
}

#[test]
fn journal_mode_image_arrives_with_equal_checksum() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let name = unique("journal");
    let _guard = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    volumes
        .create_image(
            &name,
            24 * MIB,
            Features::LAYERING | Features::EXCLUSIVE_LOCK | Features::JOURNALING,
        )
        .unwrap();
    let img = volumes.open_image(&name).unwrap();
    write_with_holes(&img, 24 * MIB, MIB as usize, 23);
    let want = checksum(&img);
    img.mirror_enable(MirrorMode::Journal).unwrap();
    assert_eq!(img.mirror_mode().unwrap(), Some(MirrorMode::Journal));
    wait_replicated(&env, "volumes", &name, &want);
    // The receiving site's own status, parsed: journal replay, and (after a
    // refresh: the status lags the data by up to ~30 s) nothing behind.
    let b = env.connect("site-b");
    let bpool = b.pool("volumes").unwrap();
    let copy = bpool.open_image_read_only(&name, None).unwrap();
    wait_for(
        "journal replay with nothing behind",
        Duration::from_secs(120),
        || {
            let st = copy.mirror_global_status().ok()?;
            let p = st.local()?.progress();
            (matches!(p, ReplayProgress::Journal { .. }) && p.caught_up() == Some(true))
                .then_some(())
        },
    );
}

#[test]
fn journaling_needs_feature_changes_in_order_and_they_round_trip() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let name = unique("features");
    let _guard = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    volumes
        .create_image(&name, 8 * MIB, Features::DEFAULT)
        .unwrap();
    let img = volumes.open_image(&name).unwrap();
    assert_eq!(img.features().unwrap(), Features::DEFAULT);
    // journaling depends on exclusive-lock: librbd refuses, as a typed error.
    let plain = unique("plain");
    let _g2 = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: plain.clone(),
    };
    volumes
        .create_image(&plain, MIB, Features::LAYERING)
        .unwrap();
    let e = volumes
        .open_image(&plain)
        .unwrap()
        .update_features(Features::JOURNALING, true)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("rbd_update_features(volumes/{plain}): EINVAL")),
        "error names the call and the image: {e}"
    );
    // In 16.2 disabling fast-diff takes object-map with it, and disabling a
    // feature that is already off is EINVAL: change only what is still on.
    img.update_features(Features::DEEP_FLATTEN, false).unwrap();
    img.update_features(Features::FAST_DIFF, false).unwrap();
    let e = img
        .update_features(Features::DEEP_FLATTEN, false)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(!img.features().unwrap().contains(Features::OBJECT_MAP));
    img.update_features(Features::JOURNALING, true).unwrap();
    assert_eq!(
        img.features().unwrap(),
        Features::LAYERING | Features::EXCLUSIVE_LOCK | Features::JOURNALING
    );
    img.update_features(Features::JOURNALING, false).unwrap();
    img.update_features(Features::OBJECT_MAP | Features::FAST_DIFF, true)
        .unwrap();
    // deep-flatten cannot be enabled again once disabled: librbd refuses.
    let e = img
        .update_features(Features::DEEP_FLATTEN, true)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn copy_snapshots_and_protect_on_the_destination() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let b = env.connect("site-b");
    let src_pool = a.pool("volumes").unwrap();
    let dst_pool = b.pool(env.var("DEST_GLANCE_POOL")).unwrap();
    let name = unique("copy");
    let _g1 = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    let _g2 = ImageGuard {
        cfg: env.admin("site-b"),
        pool: env.var("DEST_GLANCE_POOL").into(),
        name: name.clone(),
    };
    src_pool
        .create_image(&name, 20 * MIB, Features::DEFAULT)
        .unwrap();
    let img = src_pool.open_image(&name).unwrap();
    write_with_holes(&img, 20 * MIB, 2 * MIB as usize, 5);
    img.snap_create("base").unwrap();
    // Data written after the snapshot must not be in a copy made from it.
    img.write_at(0, &[0xAB; 4096]).unwrap();
    let at_snap = src_pool.open_image_read_only(&name, Some("base")).unwrap();
    let want = checksum(&at_snap);
    assert_ne!(want, checksum(&img));

    // One process holds both clusters and copies across them.
    let mut last = (0, 0);
    at_snap
        .copy_to(&dst_pool, &name, None, |done, total| {
            last = (done, total);
            true
        })
        .unwrap();
    assert_eq!(last.1, 20 * MIB, "progress reports the total");
    let copy = dst_pool.open_image(&name).unwrap();
    assert_eq!(checksum(&copy), want);
    let e = at_snap
        .copy_to(&dst_pool, &name, None, |_, _| true)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exists, "{e}");

    copy.snap_create("snap").unwrap();
    assert!(!copy.snap_is_protected("snap").unwrap());
    copy.snap_protect("snap").unwrap();
    assert!(copy.snap_is_protected("snap").unwrap());
    let snaps = copy.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(
        (snaps[0].name.as_str(), snaps[0].namespace),
        ("snap", SnapNamespace::User)
    );
}

#[test]
fn a_panicking_copy_progress_cancels_the_copy_and_resumes_the_panic() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let pool = a.pool("volumes").unwrap();
    let name = unique("copy-panic");
    let _g1 = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    let _g2 = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: format!("{name}-to"),
    };
    pool.create_image(&name, 8 * MIB, Features::DEFAULT)
        .unwrap();
    let img = pool.open_image(&name).unwrap();
    write_with_holes(&img, 8 * MIB, MIB as usize, 2);
    let mut calls = 0;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        img.copy_to(&pool, &format!("{name}-to"), None, |_, _| {
            calls += 1;
            panic!("progress panicked");
        })
    }));
    // Without the catch in the trampoline the process would abort here.
    let p = r.expect_err("the panic comes back to the caller");
    assert_eq!(p.downcast_ref::<&str>(), Some(&"progress panicked"));
    assert_eq!(calls, 1, "the copy was cancelled at the first panic");
}

#[test]
fn watchers_show_clients_that_hold_an_image_open() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let name = unique("watch");
    let _guard = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    volumes
        .create_image(&name, 4 * MIB, Features::DEFAULT)
        .unwrap();
    let ro = volumes.open_image_read_only(&name, None).unwrap();
    assert_eq!(
        ro.watchers().unwrap(),
        vec![],
        "a read-only handle does not watch"
    );
    let rw = volumes.open_image(&name).unwrap();
    assert_eq!(
        ro.watchers().unwrap().len(),
        1,
        "the read-write handle watches"
    );
    rw.write_at(0, &[1; 512]).unwrap();
    // A read-only handle does not see header changes: open a fresh one.
    let fresh = volumes.open_image_read_only(&name, None).unwrap();
    let lockers = fresh.lockers().unwrap();
    assert_eq!(lockers.len(), 1, "writing took the exclusive lock");
    assert!(lockers[0].cookie.starts_with("auto "), "{lockers:?}");
    rw.close().unwrap();
    assert_eq!(ro.watchers().unwrap(), vec![]);
}

#[test]
fn errors_are_typed_and_name_the_object() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let e = a.pool("no-such-pool").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("site-a/no-such-pool"), "{e}");
    let volumes = a.pool("volumes").unwrap();
    let e = volumes.open_image("no-such-image").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        "rbd_open(volumes/no-such-image): ENOENT (not found)"
    );
    let e = volumes.open_image("bad\0name").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn pools_peers_and_daemon_as_the_testenv_set_them_up() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let b = env.connect("site-b");
    assert_eq!(a.fsid().unwrap(), env.var("SITE_A_FSID"));
    assert_eq!(
        a.pool("volumes").unwrap().mirror_mode().unwrap(),
        PoolMirrorMode::Image
    );
    assert_eq!(
        a.pool("images").unwrap().mirror_mode().unwrap(),
        PoolMirrorMode::Pool
    );
    let peers = b.pool("volumes").unwrap().mirror_peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].direction, PeerDirection::RxOnly);
    assert_eq!(peers[0].site_name, "site-a");
    let daemons = b.service_daemons("rbd-mirror").unwrap();
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    assert_eq!(b.health().unwrap().status, "HEALTH_OK");
    assert!(b.usage().unwrap().total_bytes > 0);
}

#[test]
fn pool_space_reads_the_quota_and_room_the_monitors_report() {
    let env = TestEnv::load();
    let b = env.connect("site-b");
    let pool = env.var("DEST_CINDER_POOL");
    let space = b.pool_space(pool).unwrap();
    let cli: serde_json::Value = serde_json::from_str(&env.cli(
        "ceph",
        "site-b",
        &["osd", "pool", "get-quota", pool, "--format", "json"],
    ))
    .unwrap();
    assert_eq!(Some(space.quota_bytes), cli["quota_max_bytes"].as_u64());
    assert_eq!(Some(space.quota_objects), cli["quota_max_objects"].as_u64());
    assert!(space.max_avail.is_some_and(|a| a > 0), "{space:?}");
    let e = b.pool_space("no-such-pool").unwrap_err();
    assert!(e.to_string().contains("no-such-pool"), "{e}");
}

/// Sixteen threads opening `volumes/name` read-only (at `snap`) through
/// ferry's open path and closing it at once, for 10 s; returns the opens.
/// A hang in librbd fails the test (abort after 120 s), not the suite.
fn open_and_close_from_many_threads(a: &Cluster, name: &str, snap: Option<&str>) -> u64 {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let waited = finished.recv_timeout(Duration::from_secs(120));
        if waited == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            eprintln!("image opens hung for 120 s");
            std::process::abort();
        }
    });
    let opens = std::sync::atomic::AtomicU64::new(0);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let pool = a.pool("volumes").unwrap();
                while std::time::Instant::now() < until {
                    let img = pool.open_image_read_only(name, snap).unwrap();
                    assert_eq!(img.info().unwrap().size, 4 * MIB);
                    drop(img);
                    opens.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    done.send(()).unwrap();
    // The loop ran (a crash would have ended the process before here).
    let opens = opens.into_inner();
    eprintln!("{opens} opens of {name} in 10 s");
    assert!(opens > 100, "{opens}");
    opens
}

/// librbd 16.2 ends an open at a snapshot on a librados callback thread,
/// wakes the opener on another, then takes the image's state lock again:
/// an image closed in between is freed under that lock (the process aborts
/// with std::system_error in thread io_context_pool, segfaults or hangs in
/// that lock). Short checks open, read and close like this thousands of
/// times a run. Opened through ferry's open path (the head, then the
/// snapshot set, on a connection with one callback thread), sixteen
/// threads opening one image at a snapshot and closing it at once for
/// 10 s end without a crash and read the snapshot, not the head. (Opened
/// at the snapshot on the main connection, this failed in 5 tries of 5:
/// an abort, two SIGSEGV, two hangs.)
#[test]
fn snapshot_opens_closed_at_once_from_many_threads_do_not_crash() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let name = unique("openclose");
    let _guard = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    volumes
        .create_image(&name, 4 * MIB, Features::DEFAULT)
        .unwrap();
    let head = volumes.open_image(&name).unwrap();
    head.write_at(0, &[7u8; 4096]).unwrap();
    head.snap_create("s").unwrap();
    // The head moves on: an open that stayed at the head would see it.
    head.write_at(0, &[9u8; 4096]).unwrap();
    head.resize(8 * MIB).unwrap();
    drop(head);
    let e = volumes
        .open_image_read_only(&name, Some("nope"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains(&format!("{name}@nope")), "{e}");
    open_and_close_from_many_threads(&a, &name, Some("s"));
    let img = volumes.open_image_read_only(&name, Some("s")).unwrap();
    let mut buf = [0u8; 4096];
    assert_eq!(img.read_at(0, &mut buf).unwrap(), buf.len());
    assert_eq!(buf, [7u8; 4096]);
}

/// Every open of a clone makes librbd open its parent at a snapshot, the
/// same race as above whoever opens the clone at its head: ferry's
/// read-only opens run on a connection with one callback thread, where
/// the opener's wake-up waits its turn. (With the head-then-snapshot open
/// alone, on the main connection, this aborted or segfaulted in 2 tries of
/// 3.)
#[test]
fn clone_opens_closed_at_once_from_many_threads_do_not_crash() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let parent = unique("openparent");
    let child = unique("openclone");
    // Declared first, dropped last: the parent goes after its clone.
    let _parent_guard = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: parent.clone(),
    };
    let _child_guard = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: child.clone(),
    };
    volumes
        .create_image(&parent, 4 * MIB, Features::DEFAULT)
        .unwrap();
    volumes
        .open_image(&parent)
        .unwrap()
        .snap_create("base")
        .unwrap();
    volumes
        .clone_image(&volumes, &parent, "base", &child, Features::DEFAULT, 2)
        .unwrap();
    open_and_close_from_many_threads(&a, &child, None);
}
