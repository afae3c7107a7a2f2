//! `ferry plan` end to end: discovery on the real source cluster feeds the
//! pure planner; nothing is changed.

use ferry::ceph::{Features, ImageMirrorState};
use serde_json::Value;

use crate::common::{ferry_with_spec, unique, ImageGuard, TestEnv};

#[test]
fn plan_reads_source_images_and_changes_nothing() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let name = unique("plan");
    let _g = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    volumes
        .create_image(&name, 5 << 20, Features::DEFAULT)
        .unwrap();
    let text = env.spec_yaml(&format!("  - rbd: volumes/{name}\n"))
        + "options: {mirror_mode: journal, cleanup: true}\n";
    let out = ferry_with_spec(&["plan", "--output", "json"], &text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let img = &plan["images"][0];
    assert_eq!(img["facts"]["size"], 5 << 20);
    assert_eq!(img["facts"]["in_use"], false);
    assert_eq!(img["facts"]["pool_mode"], "image");
    let steps: Vec<&str> = img["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "preflight",
            "record-original",
            "enable-features",
            "enable-mirroring",
            "warm-rounds",
            "warm-copy",
            "cut-over-snapshot",
            "hash-source",
            "wait-for-sync",
            "copy",
            "verify",
            "publish",
            "confirm-verified",
            "check-source-unchanged",
            "disable-mirroring",
            "remove-cut-over-snapshot",
            "restore-features",
            "forget-original"
        ]
    );
    // Planning wrote nothing: features and mirroring are as created, and
    // no record.
    let after = volumes.open_image_read_only(&name, None).unwrap();
    assert!(
        !after
            .metadata_list()
            .unwrap()
            .iter()
            .any(|(k, _)| k.starts_with("ferry-plan-")),
        "a record written by planning"
    );
    assert_eq!(after.features().unwrap(), Features::DEFAULT);
    assert_eq!(
        after.mirror_info().unwrap().state,
        ImageMirrorState::Disabled
    );
}

#[test]
fn plan_of_a_missing_image_fails_with_its_name() {
    let env = TestEnv::load();
    let out = ferry_with_spec(&["plan"], &env.spec_yaml("  - volume: nope\n"));
    assert_eq!(out.status.code(), Some(1), "an error, not a wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rbd_open_read_only(volumes/volume-nope): ENOENT (not found)"),
        "{err}"
    );
}

/// Planning reads plain images without opening them (`Pool::plain_image`):
/// for every shape a cloud holds, that read either gives what an open image
/// gives, or declines and leaves it to the open.
#[test]
fn plain_images_are_read_without_opening_and_the_others_are_left_to_an_open() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let tag = unique("plain");
    let name = |s: &str| format!("{tag}-{s}");
    let mut guards = Vec::new();
    let mut make = |s: &str, size: u64, features: Features| {
        volumes.create_image(&name(s), size, features).unwrap();
        guards.push(ImageGuard {
            cfg: env.admin("site-a"),
            pool: "volumes".into(),
            name: name(s),
        });
    };
    const MIB: u64 = 1 << 20;
    // Plain: the defaults with data and an odd size; with metadata; with a
    // LUKS header; exclusive-lock without layering (no parent to ask for).
    make("data", 9 * MIB + 4096, Features::DEFAULT);
    make("meta", 4 * MIB, Features::DEFAULT);
    make("luks", 4 * MIB, Features::DEFAULT);
    make("nolayering", 4 * MIB, Features(Features::EXCLUSIVE_LOCK.0));
    // Not plain: a snapshot; a clone; journaling and mirroring on; no
    // exclusive-lock (who has it open needs the watchers); a lock held.
    make("snap", 4 * MIB, Features::DEFAULT);
    make("parent", 4 * MIB, Features::DEFAULT);
    make("mirrored", 4 * MIB, Features::DEFAULT);
    make("oldfeatures", 4 * MIB, Features::LAYERING);
    make("locked", 4 * MIB, Features::DEFAULT);
    {
        let img = volumes.open_image(&name("data")).unwrap();
        img.write_at(0, &[7u8; 4096]).unwrap();
        img.write_at(9 * MIB, &[9u8; 4096]).unwrap();
        let img = volumes.open_image(&name("meta")).unwrap();
        img.metadata_set("conf_rbd_cache", "false").unwrap();
        img.metadata_set("app", "db").unwrap();
        let img = volumes.open_image(&name("luks")).unwrap();
        img.write_at(0, b"LUKS\xba\xbe\x00\x02").unwrap();
        let img = volumes.open_image(&name("snap")).unwrap();
        img.snap_create("s1").unwrap();
        let img = volumes.open_image(&name("parent")).unwrap();
        img.snap_create("base").unwrap();
        img.snap_protect("base").unwrap();
        let img = volumes.open_image(&name("mirrored")).unwrap();
        img.update_features(Features::JOURNALING, true).unwrap();
        img.mirror_enable(ferry::ceph::MirrorMode::Journal).unwrap();
    }
    volumes
        .clone_image(
            &volumes,
            &name("parent"),
            "base",
            &name("clone"),
            Features::DEFAULT,
            2,
        )
        .unwrap();
    // First to go: its parent's snapshot cannot be removed before it.
    guards.insert(
        0,
        ImageGuard {
            cfg: env.admin("site-a"),
            pool: "volumes".into(),
            name: name("clone"),
        },
    );
    // A writer holding the exclusive lock, as a running server's does.
    let holder = env.connect("site-a");
    let holder_pool = holder.pool("volumes").unwrap();
    let held = holder_pool.open_image(&name("locked")).unwrap();
    held.lock_acquire_exclusive().unwrap();

    for s in ["data", "meta", "luks", "nolayering"] {
        let plain = volumes
            .plain_image(&name(s))
            .unwrap()
            .unwrap_or_else(|| panic!("{s} is plain"));
        let img = volumes.open_image_read_only(&name(s), None).unwrap();
        let info = img.info().unwrap();
        assert_eq!(plain.id, img.id().unwrap(), "{s}");
        assert_eq!(plain.size, info.size, "{s}");
        assert_eq!(plain.features, info.features, "{s}");
        let mut meta = img.metadata_list().unwrap();
        meta.sort();
        let mut got = plain.metadata.clone();
        got.sort();
        assert_eq!(got, meta, "{s}");
        assert_eq!(plain.luks, img.has_luks_header().unwrap(), "{s}");
        assert!(img.snapshots().unwrap().is_empty(), "{s}");
        assert!(img.parent().unwrap().is_none(), "{s}");
    }
    assert_eq!(
        volumes.plain_image(&name("data")).unwrap().unwrap().size,
        9 * MIB + 4096
    );
    assert!(volumes.plain_image(&name("luks")).unwrap().unwrap().luks);
    assert_eq!(
        volumes
            .plain_image(&name("meta"))
            .unwrap()
            .unwrap()
            .metadata
            .len(),
        2
    );
    for s in [
        "snap",
        "parent",
        "clone",
        "mirrored",
        "oldfeatures",
        "locked",
    ] {
        assert_eq!(
            volumes.plain_image(&name(s)).unwrap(),
            None,
            "{s} is not plain"
        );
    }
    // Not there: declined, and the open names it.
    assert_eq!(volumes.plain_image(&name("missing")).unwrap(), None);

    // The reads a run's checks make without opening: whether an image is
    // there, its features and a metadata value, as an open gives them.
    assert_eq!(volumes.image_named(&name("missing")).unwrap(), Some(false));
    for s in [
        "data",
        "meta",
        "snap",
        "clone",
        "mirrored",
        "oldfeatures",
        "locked",
    ] {
        assert_eq!(volumes.image_named(&name(s)).unwrap(), Some(true), "{s}");
        let img = volumes.open_image_read_only(&name(s), None).unwrap();
        let id = volumes.image_id_of(&name(s)).unwrap().unwrap();
        assert_eq!(id, img.id().unwrap(), "{s}");
        assert_eq!(
            volumes.head_features(&id).unwrap(),
            Some(img.features().unwrap()),
            "{s}"
        );
        same_snapshots(&volumes, &img, &id, s);
        same_head(&volumes, &img, &id, s);
        let users = ferry::plan::users_of(&img).unwrap();
        let free = volumes.exclusive_lock_free(&id).unwrap().unwrap();
        // Free of writers by the lock means no users; the other way round
        // is left to an open.
        assert!(!free || users.is_empty(), "{s}: {users:?}");
        assert_eq!(
            free,
            !matches!(s, "locked" | "oldfeatures"),
            "{s}: {users:?}"
        );
        for key in ["app", "conf_rbd_cache", "absent"] {
            assert_eq!(
                volumes.head_metadata(&id, key).unwrap(),
                Some(img.metadata_get(key).unwrap()),
                "{s} {key}"
            );
        }
    }
    let mirrored_id = volumes.image_id_of(&name("mirrored")).unwrap().unwrap();
    assert_eq!(
        volumes.mirror_entry(&mirrored_id).unwrap(),
        Some(Some((
            ImageMirrorState::Enabled,
            ferry::ceph::MirrorMode::Journal
        )))
    );
    let parent_id = volumes.image_id_of(&name("parent")).unwrap().unwrap();
    let names: Vec<String> = volumes
        .snapshot_list(&parent_id)
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["base".to_string()]);
    assert_eq!(
        volumes
            .head_metadata(&volumes.image_id_of(&name("meta")).unwrap().unwrap(), "app")
            .unwrap(),
        Some(Some("db".to_string()))
    );
    drop(held);
}

/// The size, metadata and mirroring entry the header and the pool's
/// mirroring object give equal an open image's; returns the entry.
fn same_head(
    pool: &ferry::ceph::Pool<'_>,
    img: &ferry::ceph::Image<'_>,
    id: &str,
    what: &str,
) -> Option<(ImageMirrorState, ferry::ceph::MirrorMode)> {
    let info = img.info().unwrap();
    assert_eq!(
        pool.head_size(id).unwrap(),
        Some((info.size, info.object_size)),
        "{what}"
    );
    let mut want = img.metadata_list().unwrap();
    want.sort();
    let mut got = pool
        .head_metadata_list(id)
        .unwrap()
        .expect("the header answers");
    got.sort();
    assert_eq!(got, want, "{what}");
    let mirror = img.mirror_info().unwrap();
    let want = (mirror.state != ImageMirrorState::Disabled)
        .then(|| (mirror.state, img.mirror_mode().unwrap().expect("a mode")));
    let got = pool
        .mirror_entry(id)
        .unwrap()
        .expect("the entry is understood");
    assert_eq!(got, want, "{what}");
    got
}

/// The snapshots the header gives equal an open image's: ids, names and,
/// for mirror snapshots, what they say.
fn same_snapshots(
    pool: &ferry::ceph::Pool<'_>,
    img: &ferry::ceph::Image<'_>,
    id: &str,
    what: &str,
) -> Vec<ferry::ceph::HeaderSnapshot> {
    let got = pool.snapshot_list(id).unwrap().expect("the header answers");
    let mut want: Vec<(u64, String)> = img
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    want.sort();
    let names: Vec<(u64, String)> = got.iter().map(|s| (s.id, s.name.clone())).collect();
    assert_eq!(names, want, "{what}");
    let mirror: Vec<_> = got.iter().filter_map(|s| s.mirror.clone()).collect();
    assert_eq!(mirror, img.mirror_snapshots().unwrap(), "{what}");
    got
}

/// Snapshot-based mirroring's snapshots, read from the header on both
/// sites: the primary's (with its peers) and the receiving site's (not
/// primary, complete, naming the primary's snapshot), as librbd reads them.
#[test]
fn mirror_snapshots_read_from_the_header_equal_librbds() {
    let _daemon = crate::common::mirror_daemon_shared();
    let env = TestEnv::load();
    let name = unique("hdrmirror");
    let _g = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    volumes
        .create_image(&name, 4 << 20, Features::DEFAULT)
        .unwrap();
    {
        let img = volumes.open_image(&name).unwrap();
        img.write_at(0, &[5u8; 8192]).unwrap();
        img.mirror_enable(ferry::ceph::MirrorMode::Snapshot)
            .unwrap();
    }
    let img = volumes.open_image_read_only(&name, None).unwrap();
    let id = volumes.image_id_of(&name).unwrap().unwrap();
    let primary = same_snapshots(&volumes, &img, &id, "primary");
    assert_eq!(
        same_head(&volumes, &img, &id, "primary"),
        Some((ImageMirrorState::Enabled, ferry::ceph::MirrorMode::Snapshot))
    );
    assert!(
        primary.iter().any(|s| s
            .mirror
            .as_ref()
            .is_some_and(|m| m.state == ferry::ceph::MirrorSnapState::Primary)),
        "{primary:?}"
    );
    let b = env.connect("site-b");
    let mirrored = b.pool("volumes").unwrap();
    let (img_b, id_b) = crate::common::wait_for(
        "the mirrored image's complete snapshot",
        std::time::Duration::from_secs(120),
        || {
            let img = mirrored.open_image_read_only(&name, None).ok()?;
            img.mirror_snapshots()
                .ok()?
                .iter()
                .any(|m| m.complete)
                .then(|| (img, mirrored.image_id_of(&name).unwrap().unwrap()))
        },
    );
    let received = same_snapshots(&mirrored, &img_b, &id_b, "receiving");
    same_head(&mirrored, &img_b, &id_b, "receiving");
    assert!(
        received.iter().any(|s| s.mirror.as_ref().is_some_and(|m| {
            m.state == ferry::ceph::MirrorSnapState::NonPrimary
                && m.complete
                && primary.iter().any(|p| p.id == m.primary_snap_id)
        })),
        "{received:?}"
    );
    drop(img_b);
    drop(img);
    let img = volumes.open_image(&name).unwrap();
    img.mirror_disable(true).unwrap();
}
