//! Volumes moved while a client keeps writing them (`ceph-testenv/hot-writer`,
//! a guest's stand-in): the copy must hold the last write made before the
//! writer stopped. The cold path (today's) waits for the writer to stop
//! before its cut-over; the warm path (`options.warm`) keeps the copy current
//! in rounds meanwhile.

use std::time::{Duration, Instant};

use ferry::ceph::Features;
use serde_json::Value;

use crate::common::{
    checksum, last_seq, mirror_daemon_shared, spec_in_temp_dir, unique, write_with_holes,
    HotWriter, ImageGuard, Region, Running, TestEnv,
};

const MIB: u64 = 1 << 20;

/// Writes per second of the writer: a busy guest's small writes.
const RATE: u32 = 100;

/// A 64 MiB source volume of random data written by a hot-writer while
/// `ferry run` (spec options `options`) moves it. `before_stop` watches the
/// run until the writer may stop (and checks what happened meanwhile); then
/// the writer stops and the run must end with a copy holding its last write,
/// equal to the source at the cut-over.
fn written_volume_moves(options: &str, before_stop: impl FnOnce(&Running, &str)) {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let v = unique("warm");
    let name = format!("volume-{v}");
    let dest_pool = env.var("DEST_CINDER_POOL").to_string();
    let size = 64 * MIB;
    {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        p.create_image(&name, size, Features::DEFAULT).unwrap();
        write_with_holes(&p.open_image(&name).unwrap(), size, (2 * MIB) as usize, 71);
    }
    // Declared first, dropped last: after the writer and the run.
    let _guards = [
        ImageGuard {
            cfg: env.admin("site-b"),
            pool: dest_pool.clone(),
            name: name.clone(),
        },
        ImageGuard {
            cfg: env.admin("site-a"),
            pool: "volumes".into(),
            name: name.clone(),
        },
    ];
    let writer = HotWriter::start(&env, "site-a", "volumes", &name, RATE, Region::DEFAULT);
    let (spec, state) = spec_in_temp_dir(&(env.spec_yaml(&format!("  - volume: {v}\n")) + options));
    let run = Running::start(&spec, &state, &["--wait-timeout", "120"]);
    let image = format!("volumes/{name}");
    before_stop(&run, &image);
    let stopped = Instant::now();
    let last = writer.stop();
    assert!(last > 0, "the writer wrote nothing");
    // The cut-over comes after the stop, the publish after the cut-over.
    let cut_over = run.until(Duration::from_secs(60), |e| {
        is(e, &image, "cut-over-snapshot", "done")
    });
    let published = run.until(Duration::from_secs(120), |e| {
        is(e, &image, "publish", "done")
    });
    let (status, stderr) = run.end_within(Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "ferry run: {stderr}");
    let (cut_at, _) = cut_over.unwrap_or_else(|| panic!("no cut-over of {image}: {stderr}"));
    assert!(
        cut_at > stopped,
        "the cut-over came before the writer stopped"
    );
    assert!(published.is_some(), "no publish of {image}: {stderr}");

    assert_eq!(
        last_seq(&env, "site-b", &dest_pool, &name),
        last,
        "the copy's last write"
    );
    let a = env.connect("site-a");
    let src = a.pool("volumes").unwrap();
    let cut = src
        .open_image_read_only(&name, None)
        .unwrap()
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .find(|n| n.starts_with("ferry-cutover"))
        .expect("the cut-over snapshot on the source");
    let at_cut = checksum(&src.open_image_read_only(&name, Some(&cut)).unwrap());
    let b = env.connect("site-b");
    let dest = b.pool(&dest_pool).unwrap();
    let copy = dest.open_image_read_only(&name, None).unwrap();
    assert_eq!(checksum(&copy), at_cut, "the copy against {name}@{cut}");
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

fn is(e: &Value, image: &str, step: &str, status: &str) -> bool {
    e["image"] == image && e["step"] == step && e["status"] == status
}

/// The cold path: ferry mirrors the volume, then waits at its cut-over for
/// the writer to stop (naming the image in use); the writer goes on a few
/// seconds while ferry waits, then stops, and ferry finishes.
#[test]
fn a_volume_written_until_the_cut_over_arrives_with_its_last_write() {
    written_volume_moves("options:\n  warm: false\n", |run, image| {
        let (_, waiting) = run
            .until(Duration::from_secs(60), |e| {
                is(e, image, "cut-over-snapshot", "waiting")
            })
            .expect("ferry waiting at the cut-over for the writer");
        let said = waiting["detail"].as_str().unwrap();
        assert!(said.contains("to be idle"), "{said}");
        // Written on while ferry waits: these writes must arrive too.
        std::thread::sleep(Duration::from_secs(3));
    });
}

/// The warm path: while the writer goes on, ferry copies in rounds; the
/// writer stops after the first round, whose copy is then stale, and the
/// final copy still holds its last write.
#[test]
fn a_volume_written_during_warm_rounds_arrives_with_its_last_write() {
    written_volume_moves(
        "options:\n  warm: true\n  warm_interval: 2\n",
        |run, image| {
            let round = run.until(Duration::from_secs(90), |e| {
                is(e, image, "warm-rounds", "round") || is(e, image, "cut-over-snapshot", "waiting")
            });
            let (_, e) = round.unwrap_or_else(|| {
                panic!("no round event of {image} in 90 s while the writer ran (or the run ended)")
            });
            assert_eq!(
                e["status"], "round",
                "ferry waited for the writer instead of copying in rounds: {e}"
            );
            std::thread::sleep(Duration::from_secs(2));
        },
    );
}
