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

use crate::common::BoundedOutput;
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
pub(crate) fn volume_from_image(src: &Cloud, name: &str, image_id: &str) -> Volume {
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

/// A volume made from a Glance image through the source Cinder, and the
/// guards that remove it, its image and what the run makes at the
/// destination (fields drop in order: the clone before its image).
struct CloneFixture<'c> {
    vol: Volume,
    _dest: DestGuard<'c>,
    _vol: VolumeGuard<'c>,
    _image: ImageGuard<'c>,
}

impl<'c> CloneFixture<'c> {
    fn new(src: &'c Cloud, dst: &'c Cloud, image: &ferry::openstack::Image, name: &str) -> Self {
        let _image = ImageGuard(src, image.id.clone());
        let vol = volume_from_image(src, name, &image.id);
        CloneFixture {
            _dest: DestGuard {
                cloud: dst,
                volume_marker: Some(vol.id.clone()),
                image: Some(image.id.clone()),
            },
            _vol: VolumeGuard {
                cloud: src,
                id: vol.id.clone(),
            },
            _image,
            vol,
        }
    }
}

/// `options`: how the data moves (`mirror_mode: snapshot|journal`, or
/// `transfer: direct`).
fn clone_from_glance_moves(options: &str) {
    let mode = options;
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let image_name = unique("base");
    let (image, _) = source_image(&src, &image_name, 31);
    let name = unique("web");
    let fixture = CloneFixture::new(&src, &dst, &image, &name);
    let vol = &fixture.vol;
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
        "options: {{{options}, cleanup: true, bootable_volumes: cinder, volume_types: {{ceph: ceph}}}}\n"
    )));
    let plan = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan"])
        .arg(&spec)
        .env("OS_CLIENT_CONFIG_FILE", env.clouds_yaml())
        .output_bounded()
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
    if options.contains("direct") {
        // Read through its parent: no carrier was made, nothing mirrored.
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("copy-out-flat"),
            "a direct clone needs no flat copy on the source"
        );
        let mirrored_pool = b.pool("volumes").unwrap();
        let mirrored = mirrored_pool.open_image_read_only(&rbd_name, None);
        assert!(mirrored.is_err(), "nothing was to be mirrored");
    }
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn volume_cloned_from_a_glance_image_moves_flat_with_its_parent_snapshot_mode() {
    clone_from_glance_moves("mirror_mode: snapshot");
}

#[test]
fn volume_cloned_from_a_glance_image_moves_flat_with_its_parent_directly() {
    clone_from_glance_moves("transfer: direct");
}

#[test]
fn volume_cloned_from_a_glance_image_moves_flat_with_its_parent_journal_mode() {
    clone_from_glance_moves("mirror_mode: journal");
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
fn a_writing_client_blocks_the_cut_over_in_both_modes_and_direct_until_it_stops() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    for mode in [
        "mirror_mode: snapshot",
        "mirror_mode: journal",
        "transfer: direct",
    ] {
        let id = unique("busy");
        let name = format!("volume-{id}");
        plain_image(&env, &name, 64 * MIB, Features::DEFAULT, 41);
        let writer = Writer::start(&env, &format!("volumes/{name}"));
        let (spec, state) = spec_in_temp_dir(
            &(env.spec_yaml(&format!("  - volume: {id}\n"))
                + &format!("options: {{{mode}, cleanup: true}}\n")),
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
        .output_bounded()
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
        .output_bounded()
        .unwrap();
    assert!(script.status.success());
    let path = dir.join("source-storage.sh");
    std::fs::write(&path, &script.stdout).unwrap();
    let out = Command::new("sh")
        .arg(&path)
        .env("FERRY_WAIT_TIMEOUT", "6")
        .env("FERRY_POLL", "2")
        .envs(source_storage_env(&env))
        .output_bounded()
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
            "--yes",
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
        .output_bounded()
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
        .output_bounded()
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
        .output_bounded()
        .unwrap();
    ok(&script);
    let path = dir.join("cleanup.sh");
    std::fs::write(&path, &script.stdout).unwrap();
    let out = Command::new("sh")
        .arg(&path)
        .arg(&verified)
        .envs(source_storage_env(&env))
        .output_bounded()
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
    // Every feature is as it was (journal mode disables none).
    assert_eq!(img.features().unwrap(), Features::DEFAULT);
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

/// A raw image of `size` bytes of noise uploaded through a cloud's Glance.
fn sized_source_image(src: &Cloud, name: &str, size: usize, seed: u64) -> ferry::openstack::Image {
    let mut data = vec![0u8; size];
    common::Noise::new(seed).fill(&mut data);
    let img = Glance(src)
        .create(&json!({"name": name, "disk_format": "raw", "container_format": "bare"}))
        .unwrap();
    src.call(
        Service::Image,
        Method::PUT,
        &format!("/v2/images/{}/file", img.id),
        &[("Content-Type", "application/octet-stream")],
        Some(ferry::openstack::session::Body::Raw(&data)),
    )
    .unwrap();
    img
}

/// `rbd du`'s used bytes of an image itself (a clone's own objects, not its
/// parent's).
fn used_bytes(env: &TestEnv, site: &str, spec: &str) -> u64 {
    let out = env.cli("rbd", site, &["du", "--format", "json", spec]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("snapshot").is_none())
        .and_then(|i| i["used_size"].as_u64())
        .unwrap_or_else(|| panic!("rbd du {spec}: {out}"))
}

#[test]
fn with_clone_of_parent_a_volume_from_a_glance_image_arrives_as_a_clone_of_its_parents_copy() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let image_name = unique("base");
    let image = sized_source_image(&src, &image_name, 64 << 20, 41);
    let name = unique("web");
    let fixture = CloneFixture::new(&src, &dst, &image, &name);
    let vol = &fixture.vol;
    let a = env.connect("site-a");
    let vp = a.pool("volumes").unwrap();
    let rbd_name = format!("volume-{}", vol.id);
    let (want, flat_equivalent) = {
        let img = vp.open_image(&rbd_name).unwrap();
        assert!(
            img.parent().unwrap().is_some(),
            "a volume from an image is a clone"
        );
        // Written after creation: data over the parent's and beside it, and
        // zeros over a whole object of the parent's data (the copy must hide
        // the parent there).
        write_sparse(&img, GIB, 4, MIB as usize, 42);
        img.write_at(8 * MIB + 4096, &[0x5a; 8192]).unwrap();
        img.write_at(16 * MIB, &vec![0u8; 4 * MIB as usize])
            .unwrap();
        // What a flat copy holds: every object with data, the parent's too.
        let flat: u64 = img
            .allocated(0, GIB, true)
            .unwrap()
            .iter()
            .map(|(_, l)| l)
            .sum();
        (checksum(&img), flat)
    };

    let (spec, state) = spec_in_temp_dir(&(env.spec_yaml_with_clouds(&format!(
        "  - volume: {name}\n  - glance_image: {image_name}\n"
    )) + "options: {mirror_mode: snapshot, cleanup: true, bootable_volumes: cinder, volume_types: {ceph: ceph}, clones: clone-of-parent}\n"));
    let dest_glance = env.var("DEST_GLANCE_POOL").to_string();
    let plan = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan"])
        .arg(&spec)
        .env("OS_CLIENT_CONFIG_FILE", env.clouds_yaml())
        .output_bounded()
        .unwrap();
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan_text.contains(&format!(
            "it arrives as a clone of destination:{dest_glance}/{}@snap (moved in this migration as image 2",
            image.id
        )),
        "the plan does not say the volume arrives as a clone: {plan_text}"
    );
    // The parent's migration fails (a panic in the step only a Glance image
    // has): the clone's copy, waiting for that parent, ends with the
    // parent's failure named, instead of waiting out --wait-timeout.
    let started = std::time::Instant::now();
    let failing = common::ferry_run_command(
        &spec,
        &state,
        &["--concurrency", "1"],
        Some(&env.clouds_yaml()),
    )
    .env("FERRY_TEST_PANIC_IN_STEP", "snapshot-and-protect")
    .output_bounded()
    .unwrap();
    let text = String::from_utf8_lossy(&failing.stderr);
    assert!(!failing.status.success(), "{text}");
    assert!(
        text.contains("2 of 2 image(s) failed")
            && text.contains("which makes this copy's parent")
            && text.contains("failed or was not begun in this run"),
        "the clone's wait does not end on its parent's failure: {text}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(300),
        "took {:?}",
        started.elapsed()
    );
    // One image at a time: the parent must go first, or the clone's copy
    // would wait for it forever. This run resumes the failed one.
    let out = common::ferry_run(
        &spec,
        &state,
        &["--concurrency", "1"],
        Some(&env.clouds_yaml()),
    );
    ok(&out);
    let copy_event = common::step_events(&out)
        .into_iter()
        .find(|e| {
            e["step"] == "copy"
                && e["status"] == "done"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("a clone of"))
        })
        .expect("the copy says it made a clone");
    eprintln!("copy: {}", copy_event["detail"]);

    // Adopted by Cinder (manage-existing takes a clone), a clone of the
    // parent's destination copy, with the source's data.
    let found = adopted(&dst, &vol.id);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].status, "available");
    let b = env.connect("site-b");
    let cinder_pool = env.var("DEST_CINDER_POOL").to_string();
    let bp = b.pool(&cinder_pool).unwrap();
    let dest_name = format!("volume-{}", found[0].id);
    let copy = bp.open_image_read_only(&dest_name, None).unwrap();
    let parent = copy.parent().unwrap().expect("the copy is a clone");
    assert_eq!(
        (
            parent.pool.as_str(),
            parent.image.as_str(),
            parent.snap.as_str()
        ),
        (dest_glance.as_str(), image.id.as_str(), "snap")
    );
    assert_eq!(checksum(&copy), want, "the clone reads as the source");
    // Its own objects: only those that differ from the parent.
    let used = used_bytes(&env, "site-b", &format!("{cinder_pool}/{dest_name}"));
    eprintln!(
        "volume of {} MiB: the clone's own objects {} MiB, a flat copy {} MiB",
        GIB / MIB,
        used / MIB,
        flat_equivalent / MIB
    );
    assert!(
        used * 3 < flat_equivalent,
        "used {used}, flat {flat_equivalent}"
    );
    assert!(used < GIB / 32, "used {used}");
    // The parent arrived as an active image, and keeps its child.
    let g = Glance(&dst).image(&image.id).unwrap();
    assert_eq!(g.status, "active");
    drop(copy);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// The scripts' `copy_onto_parent` (src/render/storage.sh), run with `sh`
/// against site-b, and ferry's engine: a clone of the parent, with only the
/// differing chunks written, reading as the source.
#[test]
fn a_copy_onto_a_parent_writes_only_differing_chunks_and_reads_equal_in_the_script_and_ferry() {
    let env = TestEnv::load();
    let b = env.connect("site-b");
    let glance = env.var("DEST_GLANCE_POOL").to_string();
    let cinder = env.var("DEST_CINDER_POOL").to_string();
    let gp = b.pool(&glance).unwrap();
    let cp = b.pool(&cinder).unwrap();
    let (parent, source, to) = (unique("par"), unique("src"), unique("onto"));
    struct Gone<'a>(
        &'a ferry::ceph::Pool<'a>,
        &'a ferry::ceph::Pool<'a>,
        [String; 3],
    );
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            let _ = self.1.remove_image(&self.2[2]);
            if let Ok(i) = self.1.open_image(&self.2[1]) {
                let _ = i.snap_remove("cut");
            }
            let _ = self.1.remove_image(&self.2[1]);
            if let Ok(i) = self.0.open_image(&self.2[0]) {
                let _ = i.snap_unprotect("snap");
                let _ = i.snap_remove("snap");
            }
            let _ = self.0.remove_image(&self.2[0]);
        }
    }
    let _gone = Gone(&gp, &cp, [parent.clone(), source.clone(), to.clone()]);
    // Parent: 24 MiB of noise. Source (29 MiB + 1 KiB): the parent's data,
    // a changed block in chunk 1, zeros over chunk 2, new data after the
    // parent's end; its own odd size.
    let mut data = vec![0u8; 24 * MIB as usize];
    common::Noise::new(51).fill(&mut data);
    gp.create_image(&parent, data.len() as u64, Features::DEFAULT)
        .unwrap();
    let p = gp.open_image(&parent).unwrap();
    p.write_at(0, &data).unwrap();
    p.snap_create("snap").unwrap();
    p.snap_protect("snap").unwrap();
    drop(p);
    let size = 29 * MIB + 1024;
    cp.create_image(&source, size, Features::DEFAULT).unwrap();
    let s = cp.open_image(&source).unwrap();
    s.write_at(0, &data).unwrap();
    s.write_at(4 * MIB + 8192, &[7u8; 4096]).unwrap();
    s.write_at(8 * MIB, &vec![0u8; 4 * MIB as usize]).unwrap();
    let mut tail = vec![0u8; (5 * MIB + 1024) as usize];
    common::Noise::new(52).fill(&mut tail);
    s.write_at(24 * MIB, &tail).unwrap();
    s.snap_create("cut").unwrap();
    drop(s);

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/render");
    let script = format!(
        "set -eu\nROLE=test\n{}\n{}\ncopy_onto_parent \"$1\" \"$2\" \"$3\" --image-feature layering --image-feature exclusive-lock --image-feature object-map --image-feature fast-diff\n",
        std::fs::read_to_string(format!("{dir}/common.sh")).unwrap(),
        std::fs::read_to_string(format!("{dir}/storage.sh")).unwrap()
    );
    let out = Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(format!("{cinder}/{source}@cut"))
        .arg(format!("{glance}/{parent}@snap"))
        .arg(format!("{cinder}/{to}"))
        .env("CEPH_CONF", env.path("SITE_B_CONF"))
        .env(
            "CEPH_ARGS",
            format!(
                "--id {} --keyring {}",
                env.var("SITE_B_USER"),
                env.var("SITE_B_USER_KEYRING")
            ),
        )
        .output_bounded()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("wrote 4 of 8 chunk(s)"), "{said}");
    let got = cp.open_image_read_only(&to, None).unwrap();
    let want = checksum(&cp.open_image_read_only(&source, Some("cut")).unwrap());
    assert_eq!(checksum(&got), want);
    assert_eq!(got.info().unwrap().size, size);
    let pa = got.parent().unwrap().expect("a clone");
    assert_eq!(
        (pa.pool.as_str(), pa.image.as_str()),
        (glance.as_str(), parent.as_str())
    );
    let used = used_bytes(&env, "site-b", &format!("{cinder}/{to}"));
    assert!(used <= 4 * 4 * MIB, "used {used}");

    // The scripts' copy-out-flat of a clone at a snapshot holds the
    // objects only the parent has (`rbd cp` of 16.2 leaves them out).
    let (child, flat) = (unique("child"), unique("flat"));
    let _gone_child = Gone(&gp, &cp, [String::new(), child.clone(), flat.clone()]);
    let sh_run = |body: &str, args: &[String]| {
        let script = format!(
            "set -eu\nROLE=test\n{}\n{}\n{body}\n",
            std::fs::read_to_string(format!("{dir}/common.sh")).unwrap(),
            std::fs::read_to_string(format!("{dir}/storage.sh")).unwrap()
        );
        Command::new("sh")
            .args(["-c", &script, "sh"])
            .args(args)
            .env("CEPH_CONF", env.path("SITE_B_CONF"))
            .env(
                "CEPH_ARGS",
                format!(
                    "--id {} --keyring {}",
                    env.var("SITE_B_USER"),
                    env.var("SITE_B_USER_KEYRING")
                ),
            )
            .output_bounded()
            .unwrap()
    };
    cp.clone_image(&gp, &parent, "snap", &child, Features::DEFAULT, 2)
        .unwrap();
    let c = cp.open_image(&child).unwrap();
    c.write_at(4096, &[9u8; 8192]).unwrap();
    c.snap_create("cut").unwrap();
    drop(c);
    let out = sh_run(
        "copy_flat \"$1\" \"$2\" --image-feature layering",
        &[format!("{cinder}/{child}@cut"), format!("{cinder}/{flat}")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want_child = checksum(&cp.open_image_read_only(&child, Some("cut")).unwrap());
    let got = cp.open_image_read_only(&flat, None).unwrap();
    assert_eq!(got.parent().unwrap(), None);
    assert_eq!(
        checksum(&got),
        want_child,
        "the flat copy lacks the parent's data"
    );
    drop(got);

    // ferry's engine, onto the same parent from the same source.
    let engine = unique("onto");
    let _gone_too = Gone(&gp, &cp, [String::new(), String::new(), engine.clone()]);
    let out = ferry::transfer::rbd::copy_image_onto(
        &cp,
        &source,
        Some("cut"),
        Some(ferry::transfer::rbd::CloneOf {
            pool: &gp,
            image: &parent,
            snap: "snap",
        }),
        &cp,
        &engine,
        Some(Features::DEFAULT),
        &ferry::transfer::Options::default(),
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(out.digest, want);
    let got = cp.open_image_read_only(&engine, None).unwrap();
    assert_eq!(checksum(&got), want, "{out:?}");
    assert!(got.parent().unwrap().is_some());
    let used = used_bytes(&env, "site-b", &format!("{cinder}/{engine}"));
    assert!(used <= 4 * 4 * MIB, "used {used}");
}

/// The environment a source storage script runs with: that operator's
/// Ceph user only.
fn source_storage_env(env: &TestEnv) -> [(&'static str, String); 2] {
    [
        ("CEPH_CONF", env.var("SITE_A_CONF").to_string()),
        (
            "CEPH_ARGS",
            format!(
                "--id {} --keyring {}",
                env.var("SITE_A_USER"),
                env.var("SITE_A_USER_KEYRING")
            ),
        ),
    ]
}

/// The scripts' `image_users` (src/render/storage.sh) on an image, as ferry's
/// rule words it, one user a line.
fn shell_users(env: &TestEnv, spec: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/render");
    let script = format!(
        "ROLE=test\n{}\n{}\nimage_users \"$1\" || exit 9\nprintf '%s\\n' \"$USERS\"\n",
        std::fs::read_to_string(dir.join("common.sh")).unwrap(),
        std::fs::read_to_string(dir.join("storage.sh")).unwrap()
    );
    let out = Command::new("sh")
        .args(["-c", &script, "sh", spec])
        .envs(source_storage_env(env))
        .output_bounded()
        .unwrap();
    assert!(
        out.status.success(),
        "image_users {spec} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_scripts_and_ferry_name_the_same_users_by_the_same_rule() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    for features in [Features::DEFAULT, Features::LAYERING] {
        let name = unique("users");
        p.create_image(&name, 8 * MIB, features).unwrap();
        let spec = format!("volumes/{name}");
        let ferry_users = || {
            let img = p.open_image_read_only(&name, None).unwrap();
            ferry::plan::users_of(&img).unwrap()
        };
        assert_eq!(ferry_users(), Vec::<String>::new(), "{features}");
        assert_eq!(shell_users(&env, &spec), Vec::<String>::new(), "{features}");
        let writer = Writer::start(&env, &spec);
        let ours = ferry_users();
        assert_eq!(ours.len(), 1, "{features}: {ours:?}");
        assert_eq!(shell_users(&env, &spec), ours, "{features}");
        drop(writer);
        let _ = p.remove_image(&name);
    }
}

#[test]
fn an_encrypted_volume_is_refused_by_check_and_plan() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let p = a.pool("volumes").unwrap();
    let id = unique("luks");
    let name = format!("volume-{id}");
    p.create_image(&name, 8 * MIB, Features::DEFAULT).unwrap();
    {
        let img = p.open_image(&name).unwrap();
        let mut header = vec![0u8; 4096];
        header[..6].copy_from_slice(b"LUKS\xba\xbe");
        img.write_at(0, &header).unwrap();
    }
    let spec = env.spec_yaml(&format!("  - volume: {id}\n"));
    let plan = common::ferry_with_spec(&["plan"], &spec);
    let err = String::from_utf8_lossy(&plan.stderr);
    assert!(!plan.status.success(), "planned: {err}");
    assert!(err.contains("is encrypted (LUKS)"), "{err}");
    let check = common::ferry_with_spec(&["check"], &spec);
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{out}");
    assert!(out.contains("encrypted (LUKS header)"), "{out}");
    let _ = p.remove_image(&name);
}
