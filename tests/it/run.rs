//! `ferry run` end to end on the real clusters: both mirroring modes, Cinder
//! and Glance pools, cleanup, re-runs, a kill during the watch, a stall.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry::ceph::{Features, ImageMirrorState};
use serde_json::Value;

use crate::common::BoundedOutput;
use crate::common::{
    self, checksum, json_lines, mirror_daemon_exclusive, mirror_daemon_shared, spec_in_temp_dir,
    step_events, unique, wait_for, write_with_holes, ImageGuard, Running, TestEnv,
};

const MIB: u64 = 1 << 20;

/// A source image with random data and holes, removed (with its copies) at the end.
struct Moved {
    _guards: Vec<ImageGuard>,
}

fn source_image(env: &TestEnv, pool: &str, name: &str, size: u64, features: Features, seed: u64) {
    let a = env.connect("site-a");
    let p = a.pool(pool).unwrap();
    p.create_image(name, size, features).unwrap();
    let img = p.open_image(name).unwrap();
    write_with_holes(&img, size, (2 * MIB) as usize, seed);
}

fn moved(env: &TestEnv, pool: &str, name: &str, dest_pool: &str, dest: &str) -> Moved {
    Moved {
        _guards: vec![
            ImageGuard {
                cfg: env.admin("site-b"),
                pool: dest_pool.into(),
                name: dest.into(),
            },
            ImageGuard {
                cfg: env.admin("site-a"),
                pool: pool.into(),
                name: name.into(),
            },
        ],
    }
}

/// `count` source volumes of `size` with random data (seeds from `seed`),
/// removed with their copies at the end: their guards, their image names
/// and the spec's entries for them.
fn volumes_to_move(
    env: &TestEnv,
    tag: &str,
    count: u64,
    size: u64,
    seed: u64,
) -> (Vec<Moved>, Vec<String>, String) {
    let mut moved_images = Vec::new();
    let mut names = Vec::new();
    let mut entries = String::new();
    for k in 0..count {
        let v = unique(&format!("{tag}{k:02}"));
        let name = format!("volume-{v}");
        source_image(env, "volumes", &name, size, Features::DEFAULT, seed + k);
        moved_images.push(moved(
            env,
            "volumes",
            &name,
            env.var("DEST_CINDER_POOL"),
            &name,
        ));
        entries.push_str(&format!("  - volume: {v}\n"));
        names.push(name);
    }
    (moved_images, names, entries)
}

fn spec_file(env: &TestEnv, images: &str, options: &str) -> (PathBuf, PathBuf) {
    spec_in_temp_dir(&(env.spec_yaml(images) + options))
}

fn ferry_run(spec: &Path, state: &Path, extra: &[&str]) -> Output {
    common::ferry_run(spec, state, extra, None)
}

/// A run that must have succeeded; its stderr otherwise.
fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The batch progress events, oldest first.
fn batches(out: &Output) -> Vec<Value> {
    json_lines(out)
        .into_iter()
        .filter_map(|e| e.get("batch").cloned())
        .collect()
}

fn source_sum(env: &TestEnv, pool: &str, name: &str) -> String {
    let a = env.connect("site-a");
    let p = a.pool(pool).unwrap();
    let img = p.open_image_read_only(name, None).unwrap();
    checksum(&img)
}

/// Two volumes of different sizes (one renamed) and a Glance image, moved
/// in `mode` with cleanup; then a second run that must change nothing.
fn moves_volumes_and_a_glance_image_and_cleans_up(mode: &str) {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (cinder, glance) = (env.var("DEST_CINDER_POOL"), env.var("DEST_GLANCE_POOL"));
    let v1 = unique(&format!("{mode}1"));
    let v2 = unique(&format!("{mode}2"));
    let g1 = unique(&format!("{mode}img"));
    let (n1, n2) = (format!("volume-{v1}"), format!("volume-{v2}"));
    let renamed = unique(&format!("{mode}-renamed"));
    source_image(&env, "volumes", &n1, 24 * MIB, Features::DEFAULT, 1);
    source_image(&env, "volumes", &n2, 42 * MIB, Features::DEFAULT, 2);
    source_image(&env, "images", &g1, 16 * MIB, Features::LAYERING, 3);
    let _m = [
        moved(&env, "volumes", &n1, cinder, &n1),
        moved(&env, "volumes", &n2, cinder, &renamed),
        moved(&env, "images", &g1, glance, &g1),
    ];
    let want1 = source_sum(&env, "volumes", &n1);
    let want2 = source_sum(&env, "volumes", &n2);
    let wantg = source_sum(&env, "images", &g1);
    let images = format!(
        "  - volume: {v1}\n  - volume: {v2}\n    dest_name: {renamed}\n  - glance_image: {g1}\n"
    );
    let (spec, state) = spec_file(
        &env,
        &images,
        &format!("options: {{mirror_mode: {mode}, cleanup: true}}\n"),
    );

    let out = ferry_run(&spec, &state, &["--concurrency", "3"]);
    succeeded(&out);
    let ev = step_events(&out);
    let steps: Vec<&str> = ev.iter().filter_map(|e| e["step"].as_str()).collect();
    // Default features include deep-flatten, object-map and fast-diff:
    // journaling goes beside them, nothing is disabled.
    assert!(steps.contains(&"enable-mirroring"), "{steps:?}");
    assert!(!steps.contains(&"disable-features"), "{steps:?}");
    let last = batches(&out).pop().expect("a final batch event");
    assert_eq!(
        (&last["images"], &last["done"], &last["failed"]),
        (&Value::from(3), &Value::from(3), &Value::from(0)),
        "{last}"
    );
    assert_eq!(last["bytes_done"], last["bytes_total"], "{last}");

    let b = env.connect("site-b");
    let sum = |pool: &str, name: &str| {
        let p = b.pool(pool).unwrap();
        let img = p.open_image_read_only(name, None).unwrap();
        checksum(&img)
    };
    assert_eq!(sum(cinder, &n1), want1);
    assert_eq!(sum(cinder, &renamed), want2);
    assert_eq!(sum(glance, &g1), wantg);
    // Copies carry the source's features as found, never journaling.
    for (pool, name, features) in [
        (cinder, n1.as_str(), Features::DEFAULT),
        (cinder, renamed.as_str(), Features::DEFAULT),
        (glance, g1.as_str(), Features::LAYERING),
    ] {
        let p = b.pool(pool).unwrap();
        let img = p.open_image_read_only(name, None).unwrap();
        assert_eq!(img.features().unwrap(), features, "{pool}/{name}");
    }
    let gp = b.pool(glance).unwrap();
    assert!(gp
        .open_image(&g1)
        .unwrap()
        .snap_is_protected("snap")
        .unwrap());

    // Cleanup: no mirroring, every original feature back (deep-flatten,
    // object-map and fast-diff too: journal mode keeps them).
    let volume_features = Features::DEFAULT;
    let a = env.connect("site-a");
    for (pool, name, features) in [
        ("volumes", &n1, volume_features),
        ("volumes", &n2, volume_features),
        ("images", &g1, Features::LAYERING),
    ] {
        let p = a.pool(pool).unwrap();
        let img = p.open_image_read_only(name, None).unwrap();
        assert_eq!(
            img.mirror_info().unwrap().state,
            ImageMirrorState::Disabled,
            "{name}"
        );
        assert_eq!(img.features().unwrap(), features, "{name}");
        let left: Vec<String> = img
            .snapshots()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .filter(|n| n.starts_with("ferry-cutover"))
            .collect();
        assert!(left.is_empty(), "{name}: cleanup left {left:?}");
    }

    // A second run changes nothing.
    let again = ferry_run(&spec, &state, &[]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let ev = step_events(&again);
    assert!(!ev.is_empty());
    assert!(
        ev.iter()
            .all(|e| e["detail"] == "(already)" || e["detail"] == "(past)"),
        "second run acted: {ev:#?}"
    );
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn snapshot_mode_run_moves_volumes_and_a_glance_image_and_cleans_up() {
    moves_volumes_and_a_glance_image_and_cleans_up("snapshot");
}

#[test]
fn journal_mode_run_moves_volumes_and_a_glance_image_and_cleans_up() {
    moves_volumes_and_a_glance_image_and_cleans_up("journal");
}

#[test]
fn run_killed_during_the_watch_completes_when_run_again() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    // Journal mode: the watch lasts until rbd-mirror's status refreshes.
    let OneVolume {
        _moved,
        name,
        want,
        spec,
        state,
    } = OneVolume::new(
        &env,
        "kill",
        16 * MIB,
        5,
        "options: {mirror_mode: journal}\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--output", "json", "--state-dir"])
        .arg(&state)
        .arg(&spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut saw_wait = false;
    for line in BufReader::new(stdout).lines() {
        let e: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if e["step"] == "wait-for-sync" && e["status"] == "waiting" {
            saw_wait = true;
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(saw_wait, "the run reached the watch");

    let out = ferry_run(&spec, &state, &[]);
    succeeded(&out);
    let b = env.connect("site-b");
    let p = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    assert_eq!(
        checksum(&p.open_image_read_only(&name, None).unwrap()),
        want
    );
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn a_second_run_on_a_state_in_use_refuses_naming_the_first_ones_pid() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (_m, spec, state) = small_volume_spec(&env, "twice", 13);
    let mut first = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--output", "json", "--state-dir"])
        .arg(&state)
        .arg(&spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    // Its first step event: the first run has its state (and lock) by now.
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| serde_json::from_str::<Value>(&l).is_ok_and(|e| e.get("step").is_some()));
    assert!(started, "the first run reported no step");

    let begun = std::time::Instant::now();
    let second = ferry_run(&spec, &state, &[]);
    let took = begun.elapsed();
    let still_running = first.try_wait().unwrap().is_none();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "in use by another ferry run (pid {} on ",
            first.id()
        )),
        "{err}"
    );
    assert!(json_lines(&second).is_empty(), "no step reported: {err}");
    // Refused at once, not after connecting and reading the images.
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(still_running, "the first run ended before the second began");

    // The first run goes on undisturbed and finishes.
    lines.for_each(drop);
    let out = first.wait_with_output().unwrap();
    succeeded(&out);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// An 8 MiB source volume (removed with its copies at the end) and a spec
/// moving it with default options: the setup of the stall tests.
fn small_volume_spec(env: &TestEnv, prefix: &str, seed: u64) -> (Moved, PathBuf, PathBuf) {
    let one = OneVolume::new(env, prefix, 8 * MIB, seed, "");
    (one._moved, one.spec, one.state)
}

/// One source volume of random data with holes, the guard that removes it
/// and its copy, its checksum and a spec (with `options`) that moves it.
struct OneVolume {
    _moved: Moved,
    name: String,
    want: String,
    spec: PathBuf,
    state: PathBuf,
}

impl OneVolume {
    fn new(env: &TestEnv, prefix: &str, size: u64, seed: u64, options: &str) -> OneVolume {
        let v = unique(prefix);
        let name = format!("volume-{v}");
        source_image(env, "volumes", &name, size, Features::DEFAULT, seed);
        let moved = moved(env, "volumes", &name, env.var("DEST_CINDER_POOL"), &name);
        let want = source_sum(env, "volumes", &name);
        let (spec, state) = spec_file(env, &format!("  - volume: {v}\n"), options);
        OneVolume {
            _moved: moved,
            name,
            want,
            spec,
            state,
        }
    }
}

#[test]
fn stopped_rbd_mirror_is_reported_as_a_stall() {
    let _daemon = mirror_daemon_exclusive();
    let env = TestEnv::load();
    let (_m, spec, state) = small_volume_spec(&env, "stall", 6);
    env.stop_rbd_mirror();
    let out = std::panic::catch_unwind(|| {
        // Let the service map drop the daemon first.
        std::thread::sleep(Duration::from_secs(6));
        ferry_run(&spec, &state, &["--wait-timeout", "120"])
    });
    env.restart();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stalled: no rbd-mirror daemon is running for site-b"),
        "{err}"
    );
    // With the daemon back, the same run finishes.
    let out = ferry_run(&spec, &state, &[]);
    succeeded(&out);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn a_full_destination_pool_is_reported_as_a_stall() {
    let _daemon = mirror_daemon_exclusive();
    let env = TestEnv::load();
    let (_m, spec, state) = small_volume_spec(&env, "full", 7);
    let quota = |objects: &str| {
        env.cli(
            "ceph",
            "site-b",
            &[
                "osd",
                "pool",
                "set-quota",
                "volumes",
                "max_objects",
                objects,
            ],
        );
    };
    let pool_full = |want: bool| {
        let b = env.connect("site-b");
        wait_for(
            "POOL_FULL to follow the quota",
            Duration::from_secs(60),
            || {
                let h = b.health().unwrap();
                (h.checks.iter().any(|c| c.code == "POOL_FULL") == want).then_some(())
            },
        )
    };
    quota("1");
    let out = std::panic::catch_unwind(|| {
        pool_full(true);
        ferry_run(&spec, &state, &["--wait-timeout", "120"])
    });
    quota("0");
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stalled: pool 'volumes' is full (running out of quota) on site-b"),
        "{err}"
    );
    // With the quota lifted, the same run finishes.
    pool_full(false);
    let out = ferry_run(&spec, &state, &[]);
    succeeded(&out);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn a_new_spec_under_an_old_file_name_is_refused_saying_what_changed() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (_m, spec, state) = small_volume_spec(&env, "respec", 11);
    let out = ferry_run(&spec, &state, &[]);
    succeeded(&out);
    // Same file, same state directory, other images.
    let other = unique("respec-new");
    let name = format!("volume-{other}");
    source_image(&env, "volumes", &name, 8 * MIB, Features::DEFAULT, 12);
    let _m2 = moved(&env, "volumes", &name, env.var("DEST_CINDER_POOL"), &name);
    std::fs::write(&spec, env.spec_yaml(&format!("  - volume: {other}\n"))).unwrap();
    let out = ferry_run(&spec, &state, &[]);
    assert_eq!(out.status.code(), Some(1), "refused as an error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changed since the run in"), "{err}");
    assert!(
        err.contains(&format!("images newly listed: volume {other}")),
        "{err}"
    );
    assert!(json_lines(&out).is_empty(), "no step reported: {err}");
    // The new image was not touched.
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    let img = p.open_image_read_only(&name, None).unwrap();
    assert_eq!(img.mirror_info().unwrap().state, ImageMirrorState::Disabled);
    assert!(img.snapshots().unwrap().is_empty());
}

#[test]
fn a_panicking_step_fails_the_run_with_exit_1_and_a_rerun_finishes() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (_m, spec, state) = small_volume_spec(&env, "panic", 13);
    let out = common::ferry_run_command(&spec, &state, &[], None)
        .env("FERRY_TEST_PANIC_IN_STEP", "copy")
        .output_bounded()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("1 of 1 image(s) failed"), "{err}");
    assert!(
        err.contains("ferry panicked: FERRY_TEST_PANIC_IN_STEP=copy"),
        "{err}"
    );
    let failed: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|e| e["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let out = ferry_run(&spec, &state, &[]);
    succeeded(&out);
}

/// Journal mode changes the source's features (journaling on) and enables
/// mirroring; a run stopped after
/// that whose state file is then lost plans again from the record the source
/// carries, under the same plan id, and its cleanup restores the true
/// original features and turns mirroring off again.
#[test]
fn a_lost_state_file_is_recovered_from_the_record_on_the_source() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let v = unique("lost");
    let name = format!("volume-{v}");
    source_image(&env, "volumes", &name, 8 * MIB, Features::DEFAULT, 17);
    let cinder = env.var("DEST_CINDER_POOL");
    let _m = moved(&env, "volumes", &name, cinder, &name);
    let want = source_sum(&env, "volumes", &name);
    let (spec, state) = spec_file(
        &env,
        &format!("  - volume: {v}\n"),
        "options: {mirror_mode: journal, cleanup: true}\n",
    );

    // Stopped after the feature changes and the mirroring, before the
    // cut-over (a panic puts nothing back).
    let out = common::ferry_run_command(&spec, &state, &[], None)
        .env("FERRY_TEST_PANIC_IN_STEP", "cut-over-snapshot")
        .output_bounded()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let a = env.connect("site-a");
    let pool = a.pool("volumes").unwrap();
    let changed = Features::DEFAULT | Features::JOURNALING;
    {
        let img = pool.open_image_read_only(&name, None).unwrap();
        assert_eq!(img.features().unwrap(), changed);
        assert_ne!(img.mirror_info().unwrap().state, ImageMirrorState::Disabled);
    }
    // The state file (its journal folded in at the end of the run) and its
    // lock.
    let files: Vec<PathBuf> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let kept: Value = serde_yaml::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    let id = kept["plan"]["id"].as_str().unwrap().to_string();
    std::fs::remove_file(&files[0]).unwrap();

    // Planned again: the record's features and the same plan id.
    let plan = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan", "--output", "json"])
        .arg(&spec)
        .env_remove("OS_CLOUD")
        .output_bounded()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let p: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(p["id"], Value::from(id.as_str()));
    let facts = &p["images"][0]["facts"];
    assert_eq!(
        facts["features"],
        serde_json::json!([
            "layering",
            "exclusive-lock",
            "object-map",
            "fast-diff",
            "deep-flatten"
        ])
    );
    assert_eq!(facts["mirroring"], Value::Null);
    assert_eq!(facts["recorded"]["plan"], Value::from(id.as_str()));
    let text = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("plan")
        .arg(&spec)
        .env_remove("OS_CLOUD")
        .output_bounded()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("resumes plan {id}")), "{text}");

    let out = ferry_run(&spec, &state, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("plan {id} was begun on these images")),
        "{err}"
    );
    let b = env.connect("site-b");
    let copy = b.pool(cinder).unwrap();
    let copy = copy.open_image_read_only(&name, None).unwrap();
    assert_eq!(checksum(&copy), want);
    // The copy has the source's own features, not the journaled ones.
    assert_eq!(copy.features().unwrap(), Features::DEFAULT);
    let img = pool.open_image_read_only(&name, None).unwrap();
    assert_eq!(
        img.features().unwrap(),
        Features::DEFAULT,
        "the original features, journaling off"
    );
    assert_eq!(img.mirror_info().unwrap().state, ImageMirrorState::Disabled);
    let left: Vec<String> = img
        .metadata_list()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("ferry-plan-"))
        .collect();
    assert!(left.is_empty(), "cleanup left {left:?}");
    let snaps: Vec<String> = img
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(snaps.is_empty(), "{snaps:?}");
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// With one data slot (`--concurrency 1`) and three images in flight, the
/// images after the first are under way while the first one copies, and
/// each copy still ends equal to its source.
#[test]
fn images_are_prepared_and_mirrored_while_others_copy() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (_moved, names, entries) = volumes_to_move(&env, "pipe", 3, 8 * MIB, 40);
    let (spec, state) = spec_file(&env, &entries, "options: {mirror_mode: snapshot}\n");
    let out = ferry_run(&spec, &state, &["--concurrency", "1", "--in-flight", "3"]);
    succeeded(&out);
    let events = step_events(&out);
    let at = |image: &str, step: &str| {
        events
            .iter()
            .position(|e| {
                e["image"].as_str().is_some_and(|i| i.ends_with(image))
                    && e["step"] == step
                    && e["status"] == "done"
            })
            .unwrap_or_else(|| panic!("no {step} done for {image}: {events:#?}"))
    };
    let first_copy = names.iter().map(|n| at(n, "copy")).min().unwrap();
    // Before the first copy is done, every image has begun: one image
    // at a time would have prepared the second only after the first was
    // adopted.
    for n in &names {
        assert!(
            at(n, "preflight") < first_copy,
            "{n} was not under way before the first copy ended: {events:#?}"
        );
    }
    let b = env.connect("site-b");
    let cinder = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    for n in &names {
        let copy = cinder.open_image_read_only(n, None).unwrap();
        assert_eq!(checksum(&copy), source_sum(&env, "volumes", n), "{n}");
    }
}

/// A copy deleted after a finished run leaves its verified record behind in
/// the destination pool; a run again must not call that copy done (the
/// record names the copy's RBD id, which is gone): it copies and verifies
/// again, and the copy is there at the end.
#[test]
fn a_copy_deleted_or_trashed_after_the_run_is_made_again_not_reported_done() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let OneVolume {
        _moved,
        name,
        want,
        spec,
        state,
    } = OneVolume::new(&env, "gone", 8 * MIB + 4096, 17, "");
    let out = ferry_run(&spec, &state, &[]);
    succeeded(&out);
    let dest_pool = env.var("DEST_CINDER_POOL");
    let b = env.connect("site-b");
    let p = b.pool(dest_pool).unwrap();
    // Moved to the trash (as `rbd trash mv` or Cinder's deferred deletion
    // do): its header stays, but it is no copy anyone can use.
    env.cli(
        "rbd",
        "site-b",
        &["trash", "mv", &format!("{dest_pool}/{name}")],
    );
    assert!(!p.image_exists(&name).unwrap());

    // The run state says the copy is made: the run stops, saying so and
    // what to do, instead of calling the image done.
    let out = ferry_run(&spec, &state, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is recorded in the run state as made, but is not there verified"),
        "{err}"
    );
    assert!(
        err.contains("no longer holds (or holds in its trash)"),
        "{err}"
    );
    // Without the run state, ferry plans again from the source's records
    // and makes the copy again; then once more with the copy removed.
    for round in ["trashed", "removed"] {
        if round == "removed" {
            p.remove_image(&name).unwrap();
        }
        std::fs::remove_dir_all(&state).unwrap();
        let out = ferry_run(&spec, &state, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{round}: {err}");
        let acted: Vec<String> = step_events(&out)
            .iter()
            .filter(|e| {
                e["status"] == "done" && !e["detail"].as_str().unwrap_or("").starts_with('(')
            })
            .map(|e| e["step"].as_str().unwrap_or("").to_string())
            .collect();
        for step in ["copy", "verify", "publish"] {
            assert!(
                acted.iter().any(|s| s == step),
                "{round}: {step} not run again: {acted:?}\n{err}"
            );
        }
        assert!(err.contains("the copy is made again"), "{round}: {err}");
        assert_eq!(
            checksum(&p.open_image_read_only(&name, None).unwrap()),
            want,
            "{round}"
        );
    }
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// A reading that fails while an image waits for its sync (site-b's
/// monitor is down, so monitor commands time out) is "not yet", not the
/// end of the image: the run polls on through a 20 s outage and completes
/// once the monitor is back, with a copy equal to its source.
#[test]
fn a_run_waits_for_sync_through_an_outage_of_the_destination_monitor() {
    let _alone = mirror_daemon_exclusive();
    let env = TestEnv::load();
    // Monitor commands give up after 5 s instead of 30: within the outage
    // a reading fails, rather than only taking long.
    let OneVolume {
        _moved,
        name,
        want,
        spec,
        state,
    } = OneVolume::new(
        &env,
        "monout",
        8 * MIB,
        19,
        "options: {mirror_mode: snapshot, timeout_seconds: 5}\n",
    );
    let mut run = common::ferry_run_command(&spec, &state, &[], None)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = run.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    // Each event with when it arrived.
    let (tx, events) = std::sync::mpsc::channel::<(Instant, Value)>();
    let stdout = BufReader::new(run.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), serde_json::from_str(&line).unwrap()));
        }
    });
    let is_sync_wait =
        |e: &Value, status: &str| e["step"] == "wait-for-sync" && e["status"] == status;
    let waiting = events.iter().any(|(_, e)| {
        is_sync_wait(&e, "waiting")
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("to be in sync"))
    });
    if !waiting {
        let _ = run.wait();
        panic!(
            "the run ended before it waited for the sync: {}",
            stderr.join().unwrap()
        );
    }
    let down = env.stop_monitor("site-b");
    std::thread::sleep(Duration::from_secs(20));
    let restarting = Instant::now();
    drop(down);
    let synced_at = events
        .iter()
        .find(|(_, e)| is_sync_wait(e, "done"))
        .map(|(at, _)| at);
    let status = run.wait().unwrap();
    let err = stderr.join().unwrap();
    assert!(status.success(), "the run failed through the outage: {err}");
    // The wait spanned the outage: it began before the monitor stopped
    // and ended after it was started again...
    let synced_at = synced_at.unwrap_or_else(|| panic!("no wait-for-sync done: {err}"));
    assert!(
        synced_at > restarting,
        "the sync was done during the outage: {err}"
    );
    // ...and met it: a reading failed, and was polled again.
    assert!(
        err.lines()
            .any(|l| l.contains("step wait-for-sync: ") && l.ends_with("(polling again)")),
        "{err}"
    );
    let b = env.connect("site-b");
    let p = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    assert_eq!(
        checksum(&p.open_image_read_only(&name, None).unwrap()),
        want
    );
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// A crash in any thread (a fault in ferry or in the Ceph libraries it
/// calls) says what it is and what to do, then still ends the process by
/// its signal (a core file where the system keeps them).
#[test]
fn a_crash_says_what_to_do_and_still_ends_by_its_signal() {
    use std::os::unix::process::ExitStatusExt;
    for (how, signal, name) in [
        ("segv", libc::SIGSEGV, "SIGSEGV"),
        // An abort: Ceph's failed assertions and uncaught exceptions.
        ("abort", libc::SIGABRT, "SIGABRT"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("--version")
            .env("FERRY_TEST_CRASH", how)
            .output_bounded()
            .unwrap();
        assert_eq!(out.status.signal(), Some(signal), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("ferry: crashed ({name}) in thread 'test-crash'")),
            "{err}"
        );
        assert!(
            err.contains("run the same command again to resume"),
            "{err}"
        );
        // The backtrace follows, a frame a line.
        assert!(err.lines().count() > 3, "{err}");
    }
}

/// Images that wait hold no thread: 40 images waiting for their mirrors
/// (the destination storage part of a plan whose source part has not run)
/// keep a run at its workers (`--concurrency` + 8), its two lookers and its
/// board, where a thread per image in flight held 40 more; all 40 are
/// still looked at, and each gives up at the wait's timeout.
#[test]
fn waiting_images_hold_no_thread() {
    // rbd-mirror stays up (a stopped one would end these waits as stalls).
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let tag = unique("park");
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let names: Vec<String> = (0..40).map(|k| format!("{tag}-{k:02}")).collect();
    let _guards: Vec<ImageGuard> = names
        .iter()
        .map(|n| {
            let name = format!("volume-{n}");
            volumes
                .create_image(&name, 4 * MIB, Features::DEFAULT)
                .unwrap();
            ImageGuard {
                cfg: env.admin("site-a"),
                pool: "volumes".into(),
                name,
            }
        })
        .collect();
    let images: String = names.iter().map(|n| format!("  - volume: {n}\n")).collect();
    let (spec, state) =
        spec_in_temp_dir(&(env.spec_yaml(&images) + "options: {mirror_mode: snapshot}\n"));
    let bundle = spec.with_file_name("plan.yaml");
    let planned = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan", "--bundle"])
        .arg(&bundle)
        .arg(&spec)
        .output_bounded()
        .unwrap();
    assert!(planned.status.success(), "{planned:?}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "run",
            "--output",
            "json",
            "--role",
            "destination-storage",
            "--yes",
        ])
        .args([
            "--in-flight",
            "40",
            "--concurrency",
            "1",
            "--wait-timeout",
            "12",
        ])
        .arg("--conf")
        .arg(env.path("SITE_B_CONF"))
        .args(["--id", env.var("SITE_B_USER"), "--keyring"])
        .arg(env.path("SITE_B_USER_KEYRING"))
        .arg("--state-dir")
        .arg(&state)
        .arg(&bundle)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let most = most_ferry_threads(&mut child, Duration::from_secs(8));
    let out = child.wait_with_output().unwrap();
    // Every image waited and gave up at the timeout (exit 2: run again
    // later), none failed otherwise.
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let gave_up = json_lines(&out)
        .iter()
        .filter(|e| {
            e["status"] == "failed"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("gave up after"))
        })
        .count();
    assert_eq!(gave_up, 40, "{}", String::from_utf8_lossy(&out.stderr));
    // Main, board, two lookers, nine workers (1 + 8), and a little room.
    assert!(most > 0, "no thread of the run was seen");
    assert!(
        most <= 16,
        "{most} ferry threads while 40 images waited (a thread per image would be over 40)"
    );
}

/// The most threads of ferry's own a running ferry had, sampled until it
/// ends or for `at_most`. ferry's threads are named after the program;
/// librados and librbd name theirs (msgr-worker-0, safe_timer, ...).
fn most_ferry_threads(child: &mut std::process::Child, at_most: Duration) -> usize {
    let pid = child.id();
    let count = || -> usize {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|comm| comm.trim() == "ferry")
                    .count()
            })
            .unwrap_or(0)
    };
    let mut most = 0;
    let start = Instant::now();
    while start.elapsed() < at_most && child.try_wait().ok().flatten().is_none() {
        most = most.max(count());
        std::thread::sleep(Duration::from_millis(100));
    }
    most
}

/// A step alongside the image's own (the source's hash, beside the sync
/// and the copy) holds no thread while it waits for a data slot: twelve
/// images with one data slot keep a run at its workers (1 + 8), lookers,
/// board and main thread, where each hash held a thread of its own; each
/// copy still ends equal to its source.
#[test]
fn a_hash_waiting_for_a_data_slot_holds_no_thread() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (_moved, names, entries) = volumes_to_move(&env, "side", 12, 4 * MIB, 70);
    let (spec, state) = spec_file(&env, &entries, "options: {mirror_mode: snapshot}\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "run",
            "--output",
            "json",
            "--concurrency",
            "1",
            "--in-flight",
            "12",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg(&spec)
        // To files: a pipe nobody reads until the end could fill.
        .stdout(std::fs::File::create(spec.with_file_name("out")).unwrap())
        .stderr(std::fs::File::create(spec.with_file_name("err")).unwrap())
        .spawn()
        .unwrap();
    let most = most_ferry_threads(&mut child, Duration::from_secs(600));
    let out = Output {
        status: child.wait().unwrap(),
        stdout: std::fs::read(spec.with_file_name("out")).unwrap(),
        stderr: std::fs::read(spec.with_file_name("err")).unwrap(),
    };
    succeeded(&out);
    // The case came up: hashes waited for the one slot.
    let slot_waits = step_events(&out)
        .iter()
        .filter(|e| {
            e["step"] == "hash-source"
                && e["status"] == "waiting"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("data slots"))
        })
        .count();
    assert!(slot_waits > 0, "no hash waited for a data slot");
    assert!(most > 0, "no thread of the run was seen");
    // Main, board, two lookers, nine workers (1 + 8), and room for the
    // short-lived ones (a transfer's completion waiter, the lookers'
    // parallel readings): 17 was seen once in a full suite run. A thread
    // per hash was 22.
    assert!(
        most <= 18,
        "{most} ferry threads with 12 images and one data slot ({slot_waits} hashes waited for it)"
    );
    let b = env.connect("site-b");
    let cinder = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    for n in &names {
        let copy = cinder.open_image_read_only(n, None).unwrap();
        assert_eq!(checksum(&copy), source_sum(&env, "volumes", n), "{n}");
    }
}

fn event_is(e: &Value, step: &str, status: &str) -> bool {
    e["step"] == step && e["status"] == status
}

/// site-b's only OSD stops while an image waits for its sync (the issue's
/// destination that died of a full disk): the wait names it within a
/// minute (its readings give up after the monitors' limit, not the data
/// limit of 600 s, and the cluster's health says why), waits on to its
/// timeout and ends with exit 2; with the OSD back, the run finishes and
/// the copy equals its source. Stops a daemon: run it alone (flock -x).
#[test]
fn a_destination_that_loses_its_osds_is_named_and_the_wait_gives_up_at_its_timeout() {
    let _alone = mirror_daemon_exclusive();
    let env = TestEnv::load();
    let OneVolume {
        _moved,
        name,
        want,
        spec,
        state,
    } = OneVolume::new(
        &env,
        "osdout",
        8 * MIB,
        23,
        "options: {mirror_mode: snapshot}\n",
    );
    // rbd-mirror frozen: the wait is under way when the OSD stops.
    let paused = env.pause_rbd_mirror();
    let run = Running::start(&spec, &state, &["--wait-timeout", "60"]);
    let waiting = run.until(Duration::from_secs(60), |e| {
        event_is(e, "wait-for-sync", "waiting")
    });
    let down = env.stop_osd("site-b");
    let stopped = Instant::now();
    drop(paused);
    if waiting.is_none() {
        drop(down);
        let (_, err) = run.end_within(Duration::from_secs(60));
        panic!("the run did not wait for the sync: {err}");
    }
    // Named from the health once it says so (readings timing out may be
    // named first, while the health says only that an OSD is down).
    let named = run.until(Duration::from_secs(90), |e| {
        event_is(e, "wait-for-sync", "stalled")
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("cannot serve its data"))
    });
    let (status, err) = run.end_within(Duration::from_secs(90));
    let ended = stopped.elapsed();
    drop(down);
    let status = status.unwrap_or_else(|| panic!("still running {ended:?} after the stop: {err}"));
    let (at, named) = named.unwrap_or_else(|| panic!("no stall named: {err}"));
    let detail = named["detail"].as_str().unwrap_or_default();
    assert!(
        at.duration_since(stopped) < Duration::from_secs(60),
        "named {:?} after the OSD stopped: {detail}",
        at.duration_since(stopped)
    );
    assert!(
        detail.starts_with("site-b cannot serve its data ("),
        "{detail}"
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("; stalled: site-b cannot serve its data"),
        "{err}"
    );
    // At the wait's timeout, not at a reading's data limit.
    assert!(
        ended < Duration::from_secs(100),
        "ended {ended:?} after the stop: {err}"
    );
    // With the OSD back, the same run finishes.
    let out = ferry_run(&spec, &state, &[]);
    succeeded(&out);
    let b = env.connect("site-b");
    let p = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    assert_eq!(
        checksum(&p.open_image_read_only(&name, None).unwrap()),
        want
    );
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// Issue 26: mirror snapshots taken while an image's first mirror snapshot
/// is still being copied. rbd-mirror 16.2 was seen to sit idle after such a
/// first sync (`up+replaying`, `replay_state: idle`, both timestamps at the
/// first snapshot), copying nothing more, while ferry waited in silence.
/// Here the test takes two mirror snapshots on the source as soon as the
/// first one is arriving (ferry's cut-over takes its own meanwhile): the
/// run finishes on its own with a copy equal to its source, and any nudge
/// ferry gave (one more mirror snapshot when the replay sat idle behind the
/// primary) is said in its output and was followed by the sync.
#[test]
fn mirror_snapshots_taken_during_the_first_sync_do_not_stop_the_run() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let OneVolume {
        _moved,
        name,
        want,
        spec,
        state,
    } = OneVolume::new(
        &env,
        "firstsync",
        256 * MIB,
        29,
        "options: {mirror_mode: snapshot}\n",
    );
    let run = Running::start(&spec, &state, &["--wait-timeout", "240"]);
    // The first mirror snapshot arriving on site-b: take two more.
    let b = env.connect("site-b");
    let arriving = wait_for("the first sync to begin", Duration::from_secs(120), || {
        let p = b.pool("volumes").ok()?;
        let img = p.open_image_read_only(&name, None).ok()?;
        let snaps = img.mirror_snapshots().ok()?;
        snaps.first().map(|s| s.complete)
    });
    let a = env.connect("site-a");
    let pool = a.pool("volumes").unwrap();
    let img = pool.open_image(&name).unwrap();
    let taken = [
        img.mirror_snapshot_create().unwrap(),
        img.mirror_snapshot_create().unwrap(),
    ];
    drop(img);
    let mut nudges = Vec::new();
    while let Some((_, e)) = run.until(Duration::from_secs(300), |e| {
        e["status"] == "nudged" || event_is(e, "wait-for-sync", "done")
    }) {
        if e["status"] == "nudged" {
            nudges.push(e["detail"].as_str().unwrap_or_default().to_string());
        } else {
            break;
        }
    }
    let (status, err) = run.end_within(Duration::from_secs(300));
    let status = status.unwrap_or_else(|| panic!("the run did not finish: {err}"));
    assert!(status.success(), "{err}");
    eprintln!(
        "first mirror snapshot complete when the test took {taken:?}: {arriving}; nudges: {nudges:?}"
    );
    for n in &nudges {
        assert!(n.starts_with("rbd-mirror sits idle while "), "{n}");
        assert!(n.contains("took mirror snapshot"), "{n}");
    }
    let p = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    assert_eq!(
        checksum(&p.open_image_read_only(&name, None).unwrap()),
        want
    );
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}
