//! A volume's own snapshots travel with it (`options.snapshots: carry`, the
//! default): the destination copy holds each under its name with the
//! source snapshot's data, and its head is the cut-over; with
//! `options.snapshots: drop` it holds none.

use ferry::ceph::{Features, Pool, SnapNamespace};

use crate::common::{
    checksum, ferry_run, mirror_daemon_shared, spec_in_temp_dir, unique, write_sparse,
    write_with_holes, ImageGuard, TestEnv,
};

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
