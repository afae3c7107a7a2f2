//! The images real clouds hold, on the real test environment: Cinder volumes
//! cloned from Glance images (and those parents, which have children), a
//! layering-only image of an odd size, an image with user snapshots, and a
//! client writing to the source while ferry wants its cut-over.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ferry::ceph::{Features, ImageMirrorState, SnapNamespace};
use ferry::openstack::{Cinder, Cloud, Glance, Service, Volume};
use reqwest::Method;
use serde_json::json;

use crate::common::{
    self, checksum, mirror_daemon_shared, spec_in_temp_dir, unique, wait_for, write_sparse,
    write_with_holes, TestEnv,
};
use crate::it::openstack::{adopted, source_image, DestGuard, ImageGuard, VolumeGuard};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "ferry failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A volume created from a Glance image through the source Cinder: the RBD
/// driver makes it a clone of `images/<image id>@snap`.
fn volume_from_image(src: &Cloud, name: &str, image_id: &str) -> Volume {
    let reply: serde_json::Value = src
        .call_json(
            Service::BlockStorage,
            Method::POST,
            "/volumes",
            &[],
            Some(ferry::openstack::session::Body::Json(&json!({"volume": {
                "name": name, "size": 1, "volume_type": "ceph",
                "imageRef": image_id, "metadata": {"app": "web"}}}))),
        )
        .unwrap();
    let id = reply["volume"]["id"].as_str().unwrap().to_string();
    wait_for(
        &format!("volume {id} available"),
        Duration::from_secs(120),
        || {
            let v = Cinder(src).volume(&id).unwrap();
            assert_ne!(v.status, "error", "volume {id} went to error");
            (v.status == "available").then_some(v)
        },
    )
}

fn clone_from_glance_moves(mode: &str) {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let image_name = unique("base");
    let (image, _) = source_image(&src, &image_name, 31);
    let _image_guard = ImageGuard(&src, image.id.clone());
    let name = unique("web");
    let vol = volume_from_image(&src, &name, &image.id);
    // Declared after the image's guard: the clone goes first.
    let _vol_guard = VolumeGuard {
        cloud: &src,
        id: vol.id.clone(),
    };
    let _dest = DestGuard {
        cloud: &dst,
        volume_marker: Some(vol.id.clone()),
        image: Some(image.id.clone()),
    };
    let a = env.connect("site-a");
    let vp = a.pool("volumes").unwrap();
    let rbd_name = format!("volume-{}", vol.id);
    let (want, parent, features) = {
        let img = vp.open_image(&rbd_name).unwrap();
        let parent = img
            .parent()
            .unwrap()
            .expect("a volume from an image is a clone");
        assert_eq!(parent.pool, "images");
        assert_eq!(parent.image, image.id);
        assert_eq!(parent.snap, "snap");
        // Data written after creation, over the parent's and beside it.
        write_sparse(&img, GIB, 5, MIB as usize, 32);
        (checksum(&img), parent, img.features().unwrap())
    };

    let (spec, state) = spec_in_temp_dir(&(env.spec_yaml_with_clouds(&format!(
        "  - volume: {name}\n  - glance_image: {image_name}\n"
    )) + &format!(
        "options: {{mirror_mode: {mode}, cleanup: true, bootable_volumes: cinder, volume_types: {{ceph: ceph}}}}\n"
    )));
    let plan = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan"])
        .arg(&spec)
        .env("OS_CLIENT_CONFIG_FILE", env.clouds_yaml())
        .output()
        .unwrap();
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan_text.contains(&format!("a clone of {parent}")),
        "the plan does not say what happens to the clone: {plan_text}"
    );
    let out = common::ferry_run(&spec, &state, &[], Some(&env.clouds_yaml()));
    ok(&out);

    // The volume arrived flat, with the clone's data, adopted.
    let found = adopted(&dst, &vol.id);
    assert_eq!(found.len(), 1, "{found:#?}");
    let b = env.connect("site-b");
    let bp = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let copy = bp
        .open_image_read_only(&format!("volume-{}", found[0].id), None)
        .unwrap();
    assert_eq!(checksum(&copy), want, "{mode}: the volume's data differs");
    assert_eq!(copy.parent().unwrap(), None, "the copy is flat");
    // The parent, which has a child, arrived as an active image too.
    let g = Glance(&dst).image(&image.id).unwrap();
    assert_eq!(g.status, "active");

    // The clone itself: only its cut-over snapshot came and went; the
    // carrier is gone.
    let img = vp.open_image_read_only(&rbd_name, None).unwrap();
    assert_eq!(img.parent().unwrap().as_ref(), Some(&parent));
    assert_eq!(img.features().unwrap(), features);
    assert_eq!(img.mirror_info().unwrap().state, ImageMirrorState::Disabled);
    assert!(img
        .snapshots()
        .unwrap()
        .iter()
        .all(|s| s.namespace != SnapNamespace::User));
    let gone = vp.open_image_read_only(&format!("{rbd_name}.ferry-flat"), None);
    assert!(gone.is_err(), "the flat carrier was left behind");
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn volume_cloned_from_a_glance_image_moves_flat_with_its_parent_snapshot_mode() {
    clone_from_glance_moves("snapshot");
}

#[test]
fn volume_cloned_from_a_glance_image_moves_flat_with_its_parent_journal_mode() {
    clone_from_glance_moves("journal");
}

/// `rbd bench` writing to an image on site-a for as long as it lives.
struct Writer(Child);

impl Writer {
    fn start(env: &TestEnv, spec: &str) -> Writer {
        let child = Command::new("rbd")
            .arg("-c")
            .arg(env.path("SITE_A_CONF"))
            .args([
                "bench",
                "--io-type",
                "write",
                "--io-size",
                "4K",
                "--io-pattern",
                "rand",
                "--io-total",
                "100G",
                spec,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Until it holds the lock.
        std::thread::sleep(Duration::from_secs(3));
        Writer(child)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cutover_snaps(env: &TestEnv, name: &str) -> Vec<String> {
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    let img = p.open_image_read_only(name, None).unwrap();
    img.snapshots()
        .unwrap()
        .into_iter()
        .filter(|s| s.name.starts_with("ferry-cutover"))
        .map(|s| s.name)
        .collect()
}

fn source_sum(env: &TestEnv, name: &str) -> String {
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    let img = p.open_image_read_only(name, None).unwrap();
    checksum(&img)
}

fn plain_image(env: &TestEnv, name: &str, size: u64, features: Features, seed: u64) -> String {
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    p.create_image(name, size, features).unwrap();
    let img = p.open_image(name).unwrap();
    write_with_holes(&img, size, MIB as usize, seed);
    checksum(&img)
}

#[test]
fn a_writing_client_blocks_the_cut_over_in_both_modes_until_it_stops() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    for mode in ["snapshot", "journal"] {
        let id = unique("busy");
        let name = format!("volume-{id}");
        plain_image(&env, &name, 64 * MIB, Features::DEFAULT, 41);
        let writer = Writer::start(&env, &format!("volumes/{name}"));
        let (spec, state) = spec_in_temp_dir(
            &(env.spec_yaml(&format!("  - volume: {id}\n"))
                + &format!("options: {{mirror_mode: {mode}, cleanup: true}}\n")),
        );
        let out = common::ferry_run(&spec, &state, &["--wait-timeout", "8"], None);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{mode}: moved while written: {text}");
        assert!(
            text.contains("holds the exclusive lock: it writes") && text.contains("client."),
            "{mode}: the message does not name the client: {text}"
        );
        assert_eq!(cutover_snaps(&env, &name), Vec::<String>::new(), "{mode}");
        // Once the client is gone, the same run goes through.
        drop(writer);
        let want = source_sum(&env, &name);
        let out = common::ferry_run(&spec, &state, &[], None);
        ok(&out);
        let b = env.connect("site-b");
        let bp = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
        let copy = bp.open_image_read_only(&name, None).unwrap();
        assert_eq!(checksum(&copy), want, "{mode}");
        drop(copy);
        let _ = bp.remove_image(&name);
        let _ = std::fs::remove_dir_all(spec.parent().unwrap());
    }
}

#[test]
fn a_writing_client_blocks_the_scripted_cut_over() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let id = unique("busy-sh");
    let name = format!("volume-{id}");
    plain_image(&env, &name, 32 * MIB, Features::DEFAULT, 43);
    let _writer = Writer::start(&env, &format!("volumes/{name}"));
    let (spec, _) = spec_in_temp_dir(
        &(env.spec_yaml(&format!("  - volume: {id}\n"))
            + "options: {mirror_mode: snapshot, cleanup: true}\n"),
    );
    let dir = spec.parent().unwrap();
    let bundle = dir.join("plan.yaml");
    let st = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("plan")
        .arg(&spec)
        .arg("--bundle")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let script = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["script"])
        .arg(&bundle)
        .args(["--role", "source-storage"])
        .output()
        .unwrap();
    assert!(script.status.success());
    let path = dir.join("source-storage.sh");
    std::fs::write(&path, &script.stdout).unwrap();
    let out = Command::new("sh")
        .arg(&path)
        .env("FERRY_WAIT_TIMEOUT", "6")
        .env("FERRY_POLL", "2")
        .env("CEPH_CONF", env.path("SITE_A_CONF"))
        .env(
            "CEPH_ARGS",
            format!(
                "--id {} --keyring {}",
                env.var("SITE_A_USER"),
                env.path("SITE_A_USER_KEYRING").display()
            ),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the script did not give up: {err}"
    );
    assert!(
        err.contains("holds the exclusive lock: it writes"),
        "the script does not name the client: {err}"
    );
    assert_eq!(cutover_snaps(&env, &name), Vec::<String>::new());
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    drop(_writer);
    let img = p.open_image(&name).unwrap();
    let _ = img.mirror_disable(true);
    drop(img);
    let _ = Command::new("rbd")
        .arg("-c")
        .arg(env.path("SITE_A_CONF"))
        .args(["snap", "purge", &format!("volumes/{name}")])
        .status();
    let _ = p.remove_image(&name);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn layering_only_odd_sized_and_snapshotted_images_move_with_equal_checksums() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let odd = unique("odd");
    let snapped = unique("snapped");
    let odd_name = format!("volume-{odd}");
    let snapped_name = format!("volume-{snapped}");
    // Not a multiple of the 4 MiB object size, and only layering.
    let want_odd = plain_image(
        &env,
        &odd_name,
        13 * MIB + 300 * 1024,
        Features::LAYERING,
        51,
    );
    let want_snapped = plain_image(&env, &snapped_name, 24 * MIB, Features::DEFAULT, 52);
    {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let img = p.open_image(&snapped_name).unwrap();
        img.snap_create("before-upgrade").unwrap();
        write_sparse(&img, 24 * MIB, 3, 4096, 53);
        img.snap_create("after-upgrade").unwrap();
    }
    let want_snapped = {
        let c = source_sum(&env, &snapped_name);
        assert_ne!(c, want_snapped);
        c
    };
    let (spec, state) = spec_in_temp_dir(
        &(env.spec_yaml(&format!("  - volume: {odd}\n  - volume: {snapped}\n"))
            + "options: {mirror_mode: snapshot, cleanup: true}\n"),
    );
    let out = common::ferry_run(&spec, &state, &[], None);
    ok(&out);
    let b = env.connect("site-b");
    let bp = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    for (n, want) in [(&odd_name, &want_odd), (&snapped_name, &want_snapped)] {
        let copy = bp.open_image_read_only(n, None).unwrap();
        assert_eq!(&checksum(&copy), want, "{n}");
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let src = p.open_image_read_only(n, None).unwrap();
        assert_eq!(copy.info().unwrap().size, src.info().unwrap().size);
    }
    // The layering-only image got exclusive-lock for the move, and lost it again.
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    let img = p.open_image_read_only(&odd_name, None).unwrap();
    assert_eq!(img.features().unwrap(), Features::LAYERING);
    let snaps: BTreeMap<String, SnapNamespace> = p
        .open_image_read_only(&snapped_name, None)
        .unwrap()
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.namespace))
        .collect();
    assert!(snaps.contains_key("before-upgrade") && snaps.contains_key("after-upgrade"));
    for n in [&odd_name, &snapped_name] {
        let _ = bp.remove_image(n);
    }
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// `ferry run BUNDLE --role ROLE` with that role's Ceph user only.
fn role_run(env: &TestEnv, bundle: &Path, role: &str, extra: &[&str]) -> Output {
    let site = if role == "destination-storage" {
        "B"
    } else {
        "A"
    };
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "run",
            "--output",
            "json",
            "--role",
            role,
            "--wait-timeout",
            "120",
        ])
        .arg("--state-dir")
        .arg(bundle.parent().unwrap().join("state"))
        .arg("--conf")
        .arg(env.path(&format!("SITE_{site}_CONF")))
        .args(["--id", env.var(&format!("SITE_{site}_USER"))])
        .arg("--keyring")
        .arg(env.path(&format!("SITE_{site}_USER_KEYRING")))
        .args(extra)
        .arg(bundle)
        .output()
        .unwrap()
}

#[test]
fn writes_after_the_cut_over_stop_the_cleanup_in_ferry_and_in_the_script() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let id = unique("late");
    let name = format!("volume-{id}");
    plain_image(&env, &name, 16 * MIB, Features::DEFAULT, 61);
    let (spec, _) = spec_in_temp_dir(
        &(env.spec_yaml(&format!("  - volume: {id}\n"))
            + "options: {mirror_mode: snapshot, cleanup: true}\n"),
    );
    let dir = spec.parent().unwrap().to_path_buf();
    let bundle = dir.join("plan.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("plan")
        .arg(&spec)
        .arg("--bundle")
        .arg(&bundle)
        .output()
        .unwrap();
    ok(&out);
    ok(&role_run(&env, &bundle, "source-storage", &[]));
    let dest = role_run(&env, &bundle, "destination-storage", &[]);
    ok(&dest);
    let verified = dir.join("verified.txt");
    let lines: String = common::json_lines(&dest)
        .iter()
        .filter_map(|l| l["hand_off"].as_str().map(|h| format!("{h}\n")))
        .collect();
    assert!(lines.contains("ferry-verified"), "no hand-off: {lines}");
    std::fs::write(&verified, lines).unwrap();
    // The server was started again too early: it writes after the cut-over.
    {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let img = p.open_image(&name).unwrap();
        write_sparse(&img, 16 * MIB, 2, 4096, 62);
    }
    let out = role_run(
        &env,
        &bundle,
        "cleanup",
        &["--verified", verified.to_str().unwrap()],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "cleanup went on: {text}");
    assert!(
        text.contains("was written after the cut-over") && text.contains("Nothing is cleaned up"),
        "{text}"
    );
    assert_eq!(cutover_snaps(&env, &name).len(), 1, "the cut-over went");
    // The script says the same.
    let script = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("script")
        .arg(&bundle)
        .args(["--role", "cleanup"])
        .output()
        .unwrap();
    ok(&script);
    let path = dir.join("cleanup.sh");
    std::fs::write(&path, &script.stdout).unwrap();
    let out = Command::new("sh")
        .arg(&path)
        .arg(&verified)
        .env("CEPH_CONF", env.path("SITE_A_CONF"))
        .env(
            "CEPH_ARGS",
            format!(
                "--id {} --keyring {}",
                env.var("SITE_A_USER"),
                env.path("SITE_A_USER_KEYRING").display()
            ),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("was written after the cut-over"), "{err}");
    assert_eq!(cutover_snaps(&env, &name).len(), 1);
    {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let img = p.open_image(&name).unwrap();
        assert_eq!(
            img.mirror_info().unwrap().state,
            ImageMirrorState::Enabled,
            "mirroring was disabled"
        );
        let _ = img.mirror_disable(false);
    }
    let _ = Command::new("rbd")
        .arg("-c")
        .arg(env.path("SITE_A_CONF"))
        .args(["snap", "purge", &format!("volumes/{name}")])
        .status();
    let a = env.connect("site-a");
    let _ = a.pool("volumes").unwrap().remove_image(&name);
    let b = env.connect("site-b");
    let _ = b
        .pool(env.var("DEST_CINDER_POOL"))
        .unwrap()
        .remove_image(&name);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_failure_before_the_cut_over_puts_the_source_back() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    // A pool without mirroring: journaling goes on, then enabling mirroring
    // fails (EINVAL).
    let pool = unique("nomirror");
    env.cli(
        "ceph",
        "site-a",
        &["osd", "pool", "create", &pool, "8", "8"],
    );
    env.cli("rbd", "site-a", &["pool", "init", &pool]);
    let a = env.connect("site-a");
    let p = a.pool(&pool).unwrap();
    let name = "volume-put-back";
    p.create_image(name, 8 * MIB, Features::DEFAULT).unwrap();
    let spec_text = env
        .spec_yaml("  - volume: put-back\n")
        .replace("cinder: volumes", &format!("cinder: {pool}"))
        .replace(
            &format!("keyring: {}", env.var("SITE_A_USER_KEYRING")),
            &format!("keyring: {}", env.var("SITE_A_ADMIN_KEYRING")),
        )
        .replace("client: ferry-source", "client: admin")
        + "options: {mirror_mode: journal, cleanup: true}\n";
    let (spec, state) = spec_in_temp_dir(&spec_text);
    let out = common::ferry_run(&spec, &state, &["--wait-timeout", "20"], None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("enable-mirroring") && text.contains("the source is put back"),
        "{text}"
    );
    let img = p.open_image_read_only(name, None).unwrap();
    // Deep-flatten cannot come back; everything else is as it was.
    assert_eq!(
        img.features().unwrap(),
        Features(Features::DEFAULT.0 & !Features::DEEP_FLATTEN.0)
    );
    // Nor does the plan's record of the image stay: the image is as it was.
    let records: Vec<String> = img
        .metadata_list()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("ferry-plan-"))
        .collect();
    assert!(records.is_empty(), "{records:?}");
    drop(img);
    drop(p);
    drop(a);
    env.cli(
        "ceph",
        "site-a",
        &[
            "osd",
            "pool",
            "rm",
            &pool,
            &pool,
            "--yes-i-really-really-mean-it",
        ],
    );
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}
