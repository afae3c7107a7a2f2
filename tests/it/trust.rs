//! Results to trust: a failure never undoes work by itself (only Ceph
//! refusing a step, or the operator's `--undo`, puts the source back), the
//! source is looked at again before the cut-over's proof goes, and ferry
//! removes only images it made.

use std::path::Path;
use std::process::Output;

use ferry::ceph::{Features, ImageMirrorState};
use serde_json::Value;

use crate::common::{
    self, checksum, json_lines, mirror_daemon_shared, spec_in_temp_dir, unique, write_with_holes,
    BoundedOutput, ImageGuard, TestEnv,
};

const MIB: u64 = 1 << 20;

/// A source volume of random data with holes, removed with its copy at the
/// end; its checksum and a spec (with `options`) that moves it.
struct Volume {
    _guards: [ImageGuard; 2],
    name: String,
    want: String,
    spec: std::path::PathBuf,
    state: std::path::PathBuf,
}

impl Volume {
    fn new(env: &TestEnv, prefix: &str, seed: u64, options: &str) -> Volume {
        let v = unique(prefix);
        let name = format!("volume-{v}");
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        p.create_image(&name, 12 * MIB, Features::DEFAULT).unwrap();
        let img = p.open_image(&name).unwrap();
        write_with_holes(&img, 12 * MIB, (2 * MIB) as usize, seed);
        let want = checksum(&img);
        let guards = [
            ImageGuard {
                cfg: env.admin("site-b"),
                pool: env.var("DEST_CINDER_POOL").into(),
                name: name.clone(),
            },
            ImageGuard {
                cfg: env.admin("site-a"),
                pool: "volumes".into(),
                name: name.clone(),
            },
        ];
        let (spec, state) =
            spec_in_temp_dir(&(env.spec_yaml(&format!("  - volume: {v}\n")) + options));
        Volume {
            _guards: guards,
            name,
            want,
            spec,
            state,
        }
    }

    fn run(&self, extra: &[&str]) -> Output {
        common::ferry_run(&self.spec, &self.state, extra, None)
    }

    /// A run whose step `step` panics (test builds): the run stops there,
    /// having done the steps before it.
    fn run_stopping_at(&self, step: &str) -> Output {
        let out = common::ferry_run_command(&self.spec, &self.state, &[], None)
            .env("FERRY_TEST_PANIC_IN_STEP", step)
            .output_bounded()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        out
    }

    /// Features, mirroring state and ferry's plan records of the source.
    fn source(&self, env: &TestEnv) -> (Features, ImageMirrorState, Vec<String>) {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let img = p.open_image_read_only(&self.name, None).unwrap();
        let records = img
            .metadata_list()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("ferry-"))
            .collect();
        (
            img.features().unwrap(),
            img.mirror_info().unwrap().state,
            records,
        )
    }

    fn cutover_snaps(&self, env: &TestEnv) -> Vec<String> {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let img = p.open_image_read_only(&self.name, None).unwrap();
        img.snapshots()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .filter(|n| n.starts_with("ferry-cutover"))
            .collect()
    }

    fn copy_sum(&self, env: &TestEnv) -> String {
        let b = env.connect("site-b");
        let p = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
        let img = p.open_image_read_only(&self.name, None).unwrap();
        checksum(&img)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.spec.parent().unwrap_or(Path::new("/nonexistent")));
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Journal mode: features and mirroring changed, then a client holds the
/// image, so the cut-over's wait gives up (exit 2). Nothing is undone: the
/// source keeps journaling, mirroring and the plan's record, and once the
/// client is gone the run again finishes with the source's data. Before,
/// the timeout put the source back (mirroring disabled, which makes
/// rbd-mirror delete the replica), and the run again skipped the steps
/// that had been undone.
#[test]
fn a_wait_that_gives_up_undoes_nothing_and_the_run_again_finishes() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let vol = Volume::new(
        &env,
        "giveup",
        2601,
        "options: {mirror_mode: journal, cleanup: true}\n",
    );
    vol.run_stopping_at("cut-over-snapshot");
    let (features, mirroring, records) = vol.source(&env);
    assert!(features.contains(Features::JOURNALING), "{features}");
    assert_eq!(mirroring, ImageMirrorState::Enabled);
    assert_eq!(records.len(), 1, "{records:?}");

    // A running server holds the image.
    let holder = env.connect("site-a");
    let hp = holder.pool("volumes").unwrap();
    let held = hp.open_image(&vol.name).unwrap();
    held.lock_acquire_exclusive().unwrap();
    let out = vol.run(&["--wait-timeout", "5"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!text(&out).contains("put back"), "{}", text(&out));
    assert_eq!(
        vol.source(&env),
        (features, ImageMirrorState::Enabled, records),
        "the wait that gave up changed the source"
    );
    drop(held);
    drop(hp);
    drop(holder);

    let out = vol.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(vol.copy_sum(&env), vol.want);
    let (features, mirroring, records) = vol.source(&env);
    assert_eq!(features, Features::DEFAULT);
    assert_eq!(mirroring, ImageMirrorState::Disabled);
    assert!(
        records.iter().all(|k| k.ends_with(".verified")),
        "{records:?}"
    );
}

/// `--undo` on the operator's word: the source back as found (features,
/// mirroring, cut-over snapshot, records), what was done said per image;
/// a run after it starts the image afresh and finishes.
#[test]
fn undo_puts_the_source_back_and_a_run_after_it_starts_afresh() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let vol = Volume::new(
        &env,
        "undo",
        2602,
        "options: {mirror_mode: journal, cleanup: true}\n",
    );
    vol.run_stopping_at("wait-for-sync");
    assert_eq!(vol.cutover_snaps(&env).len(), 1);
    let out = vol.run(&["--undo"]);
    assert!(out.status.success(), "{}", text(&out));
    let said: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|e| e["step"] == "undo")
        .collect();
    assert_eq!(said.len(), 1, "{}", text(&out));
    let detail = said[0]["detail"].as_str().unwrap_or_default().to_string();
    for what in ["mirroring disabled", "ferry-cutover", "removed"] {
        assert!(detail.contains(what), "{what}: {detail}");
    }
    let (features, mirroring, records) = vol.source(&env);
    assert_eq!(features, Features::DEFAULT);
    assert_eq!(mirroring, ImageMirrorState::Disabled);
    assert!(records.is_empty(), "{records:?}");
    assert!(vol.cutover_snaps(&env).is_empty());

    let out = vol.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(vol.copy_sum(&env), vol.want);
}

/// The cleanup stopped after its check that the source is unchanged; then
/// the guest discarded data. The next run looks again (the record of the
/// check is not proof), counts the discard as a change, and keeps the
/// cut-over snapshot. Before, the recorded check was skipped and the
/// snapshot removed, and a discard did not count.
#[test]
fn a_discard_after_a_checked_cleanup_stops_the_next_run() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let vol = Volume::new(
        &env,
        "discard",
        2603,
        "options: {mirror_mode: snapshot, cleanup: true}\n",
    );
    let out = vol.run_stopping_at("remove-cut-over-snapshot");
    let done: Vec<String> = common::step_events(&out)
        .iter()
        .filter(|e| e["status"] == "done")
        .filter_map(|e| e["step"].as_str().map(String::from))
        .collect();
    assert!(
        done.iter().any(|s| s == "check-source-unchanged"),
        "{done:?}"
    );
    // The guest discards the first 4 MiB (data: the image starts with it).
    {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let img = p.open_image(&vol.name).unwrap();
        img.write_zeroes(0, 4 * MIB).unwrap();
    }
    let out = vol.run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("was written after the cut-over"),
        "{}",
        text(&out)
    );
    assert_eq!(vol.cutover_snaps(&env).len(), 1, "the cut-over went");
}

/// A clone's carrier name (`<image>.ferry-flat`) taken by an image ferry
/// did not make: the run refuses to remove it, names it, and leaves its
/// data alone.
#[test]
fn an_image_under_the_carriers_name_that_ferry_did_not_make_is_left_alone() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    let (parent, v) = (unique("flatpar"), unique("flatkid"));
    let child = format!("volume-{v}");
    let squatter = format!("{child}.ferry-flat");
    p.create_image(&parent, 8 * MIB, Features::DEFAULT).unwrap();
    {
        let img = p.open_image(&parent).unwrap();
        write_with_holes(&img, 8 * MIB, MIB as usize, 2604);
        img.snap_create("base").unwrap();
        img.snap_protect("base").unwrap();
    }
    let _guards = [squatter.clone(), child.clone(), parent.clone()].map(|name| ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name,
    });
    p.clone_image(&p, &parent, "base", &child, Features::DEFAULT, 2)
        .unwrap();
    p.create_image(&squatter, 4 * MIB, Features::DEFAULT)
        .unwrap();
    let theirs = {
        let img = p.open_image(&squatter).unwrap();
        write_with_holes(&img, 4 * MIB, MIB as usize, 2605);
        checksum(&img)
    };
    let (spec, state) = spec_in_temp_dir(
        &(env.spec_yaml(&format!("  - volume: {v}\n"))
            + "options: {mirror_mode: snapshot, cleanup: true}\n"),
    );
    let out = common::ferry_run(&spec, &state, &[], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("ferry did not make it"),
        "{}",
        text(&out)
    );
    let img = p.open_image_read_only(&squatter, None).unwrap();
    assert_eq!(checksum(&img), theirs, "their image was changed");
    drop(img);
    {
        // The clone is as it was: its cut-over snapshot may stay (a run
        // again goes on), nothing else.
        let img = p.open_image_read_only(&child, None).unwrap();
        assert_eq!(img.mirror_info().unwrap().state, ImageMirrorState::Disabled);
    }
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}
