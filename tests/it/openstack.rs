//! The OpenStack half on the real test environment: volumes found in the
//! source Cinder, adopted by the destination Cinder (manage-existing), a
//! bootable volume registered in the destination Glance, re-runs that create
//! nothing, and bad inputs refused before anything changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use ferry::ceph::{Features, ImageMirrorState};
use ferry::openstack::{Cinder, Cloud, Glance, Service, Volume};
use ferry::transfer::digest_bytes;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::BoundedOutput;
use crate::common::{
    self, checksum, mirror_daemon_exclusive, mirror_daemon_shared, spec_in_temp_dir, step_events,
    unique, wait_for, write_sparse, TestEnv,
};

const GIB: u64 = 1 << 30;

/// A volume created through a cloud's Cinder, deleted at the end.
pub(crate) struct VolumeGuard<'c> {
    pub cloud: &'c Cloud,
    pub id: String,
}

impl Drop for VolumeGuard<'_> {
    fn drop(&mut self) {
        let _ = Cinder(self.cloud).delete_volume(&self.id);
    }
}

/// Volumes and images the run makes in the destination cloud, deleted at the end.
pub(crate) struct DestGuard<'c> {
    pub cloud: &'c Cloud,
    pub volume_marker: Option<String>,
    pub image: Option<String>,
}

impl Drop for DestGuard<'_> {
    fn drop(&mut self) {
        if let Some(src) = &self.volume_marker {
            for v in adopted(self.cloud, src) {
                let _ = Cinder(self.cloud).delete_volume(&v.id);
            }
        }
        if let Some(id) = &self.image {
            let _ = Glance(self.cloud).delete(id);
        }
    }
}

pub(crate) fn adopted(dst: &Cloud, source_id: &str) -> Vec<Volume> {
    Cinder(dst)
        .volumes_with_metadata("ferry_source_volume", source_id)
        .unwrap()
}

pub(crate) fn wait_volume(cloud: &Cloud, id: &str, status: &str) -> Volume {
    wait_for(
        &format!("volume {id} {status}"),
        Duration::from_secs(90),
        || {
            let v = Cinder(cloud).volume(id).unwrap();
            assert_ne!(v.status, "error", "volume {id} went to error");
            (v.status == status).then_some(v)
        },
    )
}

/// A 1 GiB source volume of type `ceph` with metadata and sparse random
/// data written into its RBD image; returns it and its checksum.
pub(crate) fn source_volume<'c>(
    env: &TestEnv,
    src: &'c Cloud,
    name: &str,
    seed: u64,
) -> (VolumeGuard<'c>, String) {
    let meta: BTreeMap<String, String> = [("app".to_string(), "db".to_string())].into();
    let v = Cinder(src)
        .create_volume(name, 1, Some("ceph"), &meta)
        .unwrap();
    let guard = VolumeGuard {
        cloud: src,
        id: v.id.clone(),
    };
    wait_volume(src, &v.id, "available");
    let a = env.connect("site-a");
    let pool = a.pool("volumes").unwrap();
    let img = pool.open_image(&format!("volume-{}", v.id)).unwrap();
    write_sparse(&img, GIB, 6, 1 << 20, seed);
    let sum = checksum(&img);
    (guard, sum)
}

fn spec_file(env: &TestEnv, images: &str, options: &str) -> (PathBuf, PathBuf) {
    spec_in_temp_dir(&(env.spec_yaml_with_clouds(images) + options))
}

fn ferry_run(spec: &Path, state: &Path, clouds: &Path) -> Output {
    common::ferry_run(spec, state, &[], Some(clouds))
}

pub(crate) fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "ferry failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn volume_found_by_name_is_adopted_by_the_destination_cinder() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let name = unique("db");
    let (vol, want) = source_volume(&env, &src, &name, 11);
    let new_name = format!("{name}-moved");
    let _dest = DestGuard {
        cloud: &dst,
        volume_marker: Some(vol.id.clone()),
        image: None,
    };
    let (spec, state) = spec_file(
        &env,
        &format!("  - volume: {name}\n    name: {new_name}\n"),
        "options: {mirror_mode: snapshot, cleanup: true, volume_types: {ceph: ceph}}\n",
    );
    let out = ferry_run(&spec, &state, &env.clouds_yaml());
    ok(&out);

    let found = adopted(&dst, &vol.id);
    assert_eq!(found.len(), 1, "{found:#?}");
    let v = &found[0];
    assert_eq!(v.status, "available");
    assert_eq!(v.name.as_deref(), Some(new_name.as_str()));
    assert_eq!(v.volume_type.as_deref(), Some("ceph"));
    assert!(!v.is_bootable());
    assert_eq!(v.metadata.get("app").map(String::as_str), Some("db"));
    // Manage renamed the copy to volume-<new id>; its data is the source's.
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let img = pool
        .open_image_read_only(&format!("volume-{}", v.id), None)
        .unwrap();
    assert_eq!(checksum(&img), want);
    // Cleanup gave the source back its state.
    let a = env.connect("site-a");
    let sp = a.pool("volumes").unwrap();
    let simg = sp
        .open_image_read_only(&format!("volume-{}", vol.id), None)
        .unwrap();
    assert_eq!(
        simg.mirror_info().unwrap().state,
        ImageMirrorState::Disabled
    );

    // Again: nothing new.
    let again = ferry_run(&spec, &state, &env.clouds_yaml());
    ok(&again);
    let ev = step_events(&again);
    assert!(
        ev.iter()
            .all(|e| e["detail"] == "(already)" || e["detail"] == "(past)"),
        "second run acted: {ev:#?}"
    );
    assert_eq!(adopted(&dst, &vol.id).len(), 1);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn bootable_volume_arrives_as_an_active_glance_image() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let name = unique("boot");
    let (vol, want) = source_volume(&env, &src, &name, 12);
    let cinder = Cinder(&src);
    cinder.set_bootable(&vol.id, true).unwrap();
    let meta: BTreeMap<String, String> = [("os_distro".to_string(), "debian".to_string())].into();
    cinder.set_image_metadata(&vol.id, &meta).unwrap();
    let image_id = ferry::plan::derived_image_id(&vol.id);
    let _dest = DestGuard {
        cloud: &dst,
        volume_marker: None,
        image: Some(image_id.clone()),
    };
    let (spec, state) = spec_file(
        &env,
        &format!("  - volume: {}\n", vol.id),
        "options: {mirror_mode: journal, cleanup: true}\n",
    );
    let out = ferry_run(&spec, &state, &env.clouds_yaml());
    ok(&out);

    let glance = Glance(&dst);
    let img = glance.image(&image_id).unwrap();
    assert_eq!(img.status, "active");
    assert_eq!(img.name.as_deref(), Some(name.as_str()));
    assert_eq!(img.disk_format.as_deref(), Some("raw"));
    let props = img.user_properties();
    assert_eq!(props.get("os_distro").map(String::as_str), Some("debian"));
    assert_eq!(
        props.get("ferry_source").cloned(),
        Some(format!("volume:{}", vol.id))
    );
    // What Glance serves is the source volume's content.
    let mut h = ferry::transfer::DigestWriter::new();
    glance.download(&image_id, &mut h).unwrap();
    assert_eq!(h.finish(), (want, GIB));
    // The source keeps its features (journal mode turned journaling on and
    // cleanup off again).
    let a = env.connect("site-a");
    let sp = a.pool("volumes").unwrap();
    let simg = sp
        .open_image_read_only(&format!("volume-{}", vol.id), None)
        .unwrap();
    assert!(!simg.features().unwrap().contains(Features::JOURNALING));

    let again = ferry_run(&spec, &state, &env.clouds_yaml());
    ok(&again);
    assert!(step_events(&again)
        .iter()
        .all(|e| e["detail"] == "(already)" || e["detail"] == "(past)"));
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// Runs a spec expected to fail; returns stderr. The source image must be
/// untouched: mirroring off, features as created.
fn refused(
    env: &TestEnv,
    images: &str,
    options: &str,
    clouds: &Path,
    source_rbd: Option<&str>,
) -> String {
    let (spec, state) = spec_file(env, images, options);
    let out = ferry_run(&spec, &state, clouds);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a refusal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(name) = source_rbd {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let img = p.open_image_read_only(name, None).unwrap();
        assert_eq!(img.mirror_info().unwrap().state, ImageMirrorState::Disabled);
        assert_eq!(img.features().unwrap(), Features::DEFAULT);
    }
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_inputs_are_refused_before_anything_changes() {
    let _shared = crate::common::mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let name = unique("bad");
    let (vol, _) = source_volume(&env, &src, &name, 13);
    let rbd = format!("volume-{}", vol.id);
    let clouds = env.clouds_yaml();
    let entry = format!("  - volume: {}\n", vol.id);

    let err = refused(&env, "  - volume: no-such-volume-x\n", "", &clouds, None);
    assert!(
        err.contains("no volume with id or name \"no-such-volume-x\" in cloud source"),
        "{err}"
    );

    let err = refused(
        &env,
        &entry,
        "options: {volume_types: {ceph: gold}}\n",
        &clouds,
        Some(&rbd),
    );
    assert!(
        err.contains("volume type \"gold\" does not exist in cloud destination"),
        "{err}"
    );

    let taken = Cinder(&dst)
        .create_volume(&name, 1, None, &BTreeMap::new())
        .unwrap();
    let _taken = VolumeGuard {
        cloud: &dst,
        id: taken.id.clone(),
    };
    let err = refused(&env, &entry, "", &clouds, Some(&rbd));
    assert!(
        err.contains(&format!(
            "a volume named \"{name}\" already exists in cloud destination"
        )),
        "{err}"
    );
    // In a batch, the good image listed first is not begun either: every
    // image's inputs are checked before any image starts.
    let good_name = unique("good");
    let (good, _) = source_volume(&env, &src, &good_name, 14);
    let good_rbd = format!("volume-{}", good.id);
    let err = refused(
        &env,
        &format!("  - volume: {}\n{entry}", good.id),
        "",
        &clouds,
        Some(&good_rbd),
    );
    assert!(
        err.contains("1 of 2 image(s) failed (the checks of their inputs, or later), so this run began no image"),
        "{err}"
    );
    assert!(
        err.contains(&format!("a volume named \"{name}\" already exists")),
        "{err}"
    );
    let b = env.connect("site-b");
    let copies = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    assert!(!copies.image_exists(&good_rbd).unwrap());
    assert!(!copies
        .image_exists(&format!("{good_rbd}.ferry-partial"))
        .unwrap());

    // Wrong password: a copy of clouds.yaml with the source's changed.
    let text = std::fs::read_to_string(&clouds).unwrap();
    let bad = std::env::temp_dir()
        .join(unique("clouds"))
        .with_extension("yaml");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("password:"))
        .unwrap();
    lines[at] = "      password: not-the-password".into();
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let err = refused(&env, &entry, "", &bad, Some(&rbd));
    assert!(
        err.contains("connecting to the source cloud \"source\""),
        "{err}"
    );
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password leaked: {err}"
    );
    let _ = std::fs::remove_file(&bad);

    // Attached to a server (reserved and attached through Cinder's API, as
    // Nova would): refused, since no compute service can say it is off (a
    // server Nova does not know is not known to be off).
    let server = "6f1a3c1e-0000-4000-8000-000000000001";
    let attachment = attach(&src, &vol.id, server);
    let err = refused(&env, &entry, "", &clouds, Some(&rbd));
    detach(&src, &vol.id, &attachment);
    assert!(
        err.contains(&format!("is attached to server {server}")),
        "{err}"
    );
}

/// An image deleted at the end.
pub(crate) struct ImageGuard<'c>(pub &'c Cloud, pub String);

impl Drop for ImageGuard<'_> {
    fn drop(&mut self) {
        let _ = Glance(self.0).delete(&self.1);
    }
}

/// A 6 MiB raw image of noise uploaded through a cloud's Glance; returns it
/// and its digest.
pub(crate) fn source_image(
    src: &Cloud,
    name: &str,
    seed: u64,
) -> (ferry::openstack::Image, String) {
    let mut data = vec![0u8; 6 << 20];
    crate::common::Noise::new(seed).fill(&mut data);
    let want = digest_bytes(&data);
    let img = Glance(src)
        .create(
            &json!({"name": name, "disk_format": "raw", "container_format": "bare",
                        "hw_disk_bus": "scsi", "min_ram": 256}),
        )
        .unwrap();
    src.call(
        Service::Image,
        Method::PUT,
        &format!("/v2/images/{}/file", img.id),
        &[("Content-Type", "application/octet-stream")],
        Some(ferry::openstack::session::Body::Raw(&data)),
    )
    .unwrap();
    (img, want)
}

#[test]
fn glance_image_found_by_name_is_registered_with_its_id_and_properties() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let name = unique("img");
    let (img, want) = source_image(&src, &name, 21);
    let _src_img = ImageGuard(&src, img.id.clone());
    let _dst_img = ImageGuard(&dst, img.id.clone());
    let (spec, state) = spec_file(
        &env,
        &format!("  - glance_image: {name}\n"),
        "options: {cleanup: true}\n",
    );
    let out = ferry_run(&spec, &state, &env.clouds_yaml());
    ok(&out);

    let got = Glance(&dst).image(&img.id).unwrap();
    assert_eq!(got.status, "active");
    assert_eq!(got.name.as_deref(), Some(name.as_str()));
    assert_eq!(got.min_ram, Some(256));
    let props = got.user_properties();
    assert_eq!(props.get("hw_disk_bus").map(String::as_str), Some("scsi"));
    assert_eq!(
        props.get("ferry_source").cloned(),
        Some(format!("image:{}", img.id))
    );
    let mut buf = Vec::new();
    Glance(&dst).download(&img.id, &mut buf).unwrap();
    assert_eq!(digest_bytes(&buf), want);

    let again = ferry_run(&spec, &state, &env.clouds_yaml());
    ok(&again);
    assert!(step_events(&again)
        .iter()
        .all(|e| e["detail"] == "(already)" || e["detail"] == "(past)"));
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn a_revoked_token_is_renewed_and_the_call_goes_through() {
    let _shared = crate::common::mirror_daemon_shared();
    let env = TestEnv::load();
    let src = env.cloud("source");
    assert_eq!(src.authentications(), 1);
    Cinder(&src).volume_types().unwrap();
    assert_eq!(src.authentications(), 1, "a valid token is reused");
    src.revoke_token().unwrap();
    // Glance has not seen the token yet (Cinder's auth middleware caches
    // tokens it validated for minutes), so it refuses the revoked one.
    Glance(&src).images_with("name", "none-such").unwrap();
    assert_eq!(
        src.authentications(),
        2,
        "the refused token was renewed once"
    );
}

/// Reserves and attaches a volume to `server` through Cinder's API, as Nova
/// would; returns the attachment id.
fn attach(cloud: &Cloud, volume: &str, server: &str) -> String {
    let act = |body: Value| {
        cloud
            .call(
                Service::BlockStorage,
                Method::POST,
                &format!("/volumes/{volume}/action"),
                &[],
                Some(ferry::openstack::session::Body::Json(&body)),
            )
            .unwrap();
    };
    act(json!({"os-reserve": {}}));
    act(json!({"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb"}}));
    let v = wait_volume(cloud, volume, "in-use");
    v.attachments[0].attachment_id.clone().unwrap()
}

fn detach(cloud: &Cloud, volume: &str, attachment: &str) {
    cloud
        .call(
            Service::BlockStorage,
            Method::POST,
            &format!("/volumes/{volume}/action"),
            &[],
            Some(ferry::openstack::session::Body::Json(
                &json!({"os-detach": {"attachment_id": attachment}}),
            )),
        )
        .unwrap();
    wait_volume(cloud, volume, "available");
}

#[test]
fn lists_longer_than_a_page_are_read_to_their_end() {
    let _shared = crate::common::mirror_daemon_shared();
    let env = TestEnv::load();
    let src = env.cloud("source");
    let tag = unique("paged");
    // Glance pages at 25 images: 27 of them (records only, no data).
    let glance = Glance(&src);
    let images: Vec<ImageGuard> = (0..27)
        .map(|n| {
            let img = glance
                .create(&json!({"name": format!("{tag}-{n}"), "disk_format": "raw",
                                "container_format": "bare", "ferry_test_page": tag}))
                .unwrap();
            ImageGuard(&src, img.id)
        })
        .collect();
    let mut found: Vec<String> = glance
        .images_with("ferry_test_page", &tag)
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    let mut want: Vec<String> = images.iter().map(|g| g.1.clone()).collect();
    found.sort();
    want.sort();
    assert_eq!(found, want);

    // Cinder pages at osapi_max_limit; a page of one makes three pages.
    let cinder = Cinder(&src);
    let meta: BTreeMap<String, String> = [("ferry_test_page".to_string(), tag.clone())].into();
    let volumes: Vec<VolumeGuard> = (0..3)
        .map(|n| {
            let v = cinder
                .create_volume(&format!("{tag}-{n}"), 1, Some("ceph"), &meta)
                .unwrap();
            VolumeGuard {
                cloud: &src,
                id: v.id,
            }
        })
        .collect();
    // Deletable (by the guards) once created.
    for v in &volumes {
        wait_volume(&src, &v.id, "available");
    }
    let filter = ferry::openstack::cinder::urlencode(&json!({"ferry_test_page": tag}).to_string());
    let mut found: Vec<String> = cinder
        .volumes_from(&format!("/volumes/detail?limit=1&metadata={filter}"))
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    let mut want: Vec<String> = volumes.iter().map(|g| g.id.clone()).collect();
    found.sort();
    want.sort();
    assert_eq!(found, want);
}

/// A service the adoption needs stops right after the copy (the run then
/// waits to adopt) and starts again 8 s later: ferry's calls are retried,
/// and the run completes with the volume adopted and its data equal. Holds
/// the environment alone: other tests would meet the outage too.
fn a_run_completes_through_an_outage_of(service: &str, met: bool) {
    let _alone = mirror_daemon_exclusive();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let name = unique("outage");
    let (vol, want) = source_volume(&env, &src, &name, 17);
    let _dest = DestGuard {
        cloud: &dst,
        volume_marker: Some(vol.id.clone()),
        image: None,
    };
    let (spec, state) = spec_file(
        &env,
        &format!("  - volume: {name}\n"),
        "options: {mirror_mode: snapshot, volume_types: {ceph: ceph}}\n",
    );
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--output", "json", "--state-dir"])
        .arg(&state)
        .arg(&spec)
        .env_remove("OS_CLOUD")
        .env("OS_CLIENT_CONFIG_FILE", env.clouds_yaml())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(run.stdout.take().unwrap()));
    let copied = lines.by_ref().map_while(Result::ok).any(|l| {
        serde_json::from_str::<Value>(&l)
            .is_ok_and(|e| e["step"] == "copy" && e["status"] == "done")
    });
    assert!(copied, "the run ended before its copy was done");
    let restart = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ceph-testenv/openstack"),
    )
    .args(["restart", service, "8"])
    .output_bounded()
    .unwrap();
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    lines.for_each(drop);
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the run failed through the {service} outage: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The outage was met, not missed: calls failed and were retried.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.contains("OpenStack call failed; retrying"),
        met,
        "{service}: {err}"
    );
    let found = adopted(&dst, &vol.id);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].status, "available");
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let img = pool
        .open_image_read_only(&format!("volume-{}", found[0].id), None)
        .unwrap();
    assert_eq!(checksum(&img), want);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn a_run_completes_through_a_restart_of_the_destination_cinder_api() {
    a_run_completes_through_an_outage_of("cinder-api-site-b", true);
}

#[test]
fn a_run_completes_through_a_restart_of_keystone() {
    // ferry's token is still valid and cinder-api keeps the tokens it has
    // validated: the outage is not even seen.
    a_run_completes_through_an_outage_of("keystone", false);
}
