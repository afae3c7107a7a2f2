//! The stream path through a migration spec, on the real test environment:
//! a volume of the source cloud's NFS backend (not on Ceph) and, with
//! `transfer: stream`, a volume of its RBD backend (the clusters' peering
//! unused) move through the two conversion hosts into new volumes of the
//! destination cloud, with name, type, bootable flag and metadata, and the
//! source's digest. An agent killed mid-stream, and ferry itself killed
//! mid-stream, leave nothing attached that a re-run does not remove, and the
//! re-run sends only the chunks that are missing.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferry::openstack::{Cinder, Cloud, Volume};
use ferry::transfer::digest::DigestWriter;
use serde_json::{json, Value};

use crate::common::BoundedOutput;
use crate::common::{
    checksum, mirror_daemon_shared, spec_in_temp_dir, step_events, unique, Noise, TestEnv,
};
use crate::it::openstack::{adopted, wait_volume, DestGuard, VolumeGuard};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const CHUNK: u64 = 4 * MIB;

/// Chunks of the 1 GiB NFS volume that hold data: every third one, 86 of
/// 256 (344 MiB), the last partly.
fn data_chunks() -> Vec<u64> {
    (0..256).filter(|c| c % 3 == 0).collect()
}

/// A source volume with a name, description, metadata, the bootable flag
/// and image metadata, of `volume_type`; deleted at the end.
fn source_volume<'c>(src: &'c Cloud, volume_type: &str) -> (VolumeGuard<'c>, Volume) {
    let name = unique(&format!("stream-{volume_type}"));
    let v = Cinder(src)
        .create_volume_from(&json!({
            "name": name, "size": 1, "volume_type": volume_type,
            "description": "moved by the stream path",
            "metadata": {"team": "blue"},
        }))
        .unwrap_or_else(|e| panic!("creating a {volume_type} volume: {e:#}"));
    let guard = VolumeGuard {
        cloud: src,
        id: v.id.clone(),
    };
    wait_volume(src, &v.id, "available");
    Cinder(src).set_bootable(&v.id, true).unwrap();
    let meta: BTreeMap<String, String> = [("os_distro".to_string(), "debian".to_string())].into();
    Cinder(src).set_image_metadata(&v.id, &meta).unwrap();
    let v = Cinder(src).volume(&v.id).unwrap();
    (guard, v)
}

/// The file of an NFS volume where the conversion hosts mount the share.
fn nfs_file(env: &TestEnv, id: &str) -> PathBuf {
    let base = env.path("CONVHOST_NFS_MOUNT_BASE");
    let name = format!("volume-{id}");
    std::fs::read_dir(&base)
        .unwrap()
        .map(|d| d.unwrap().path().join(&name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no file {name} under {}", base.display()))
}

/// Data into the chunks [`data_chunks`] names (the last one only partly,
/// so that a chunk holds data and zeros); the rest stays holes. Returns the
/// digest, read whole.
fn fill_nfs(path: &Path) -> String {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut buf = vec![0u8; CHUNK as usize];
    for (k, c) in data_chunks().into_iter().enumerate() {
        Noise::new(500 + k as u64).fill(&mut buf);
        let len = if c == 255 { 5000 } else { CHUNK as usize };
        f.write_all_at(&buf[..len], c * CHUNK).unwrap();
    }
    f.sync_all().unwrap();
    let mut w = DigestWriter::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut w).unwrap();
    w.finish().0
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The spec: the test environment's clusters and clouds, `images`, the
/// conversion hosts (`ferry` run as `ferry_cmd` on both, the receiver's
/// record in `record`), and `options`.
fn spec_text(env: &TestEnv, images: &str, options: &str, ferry_cmd: &str, record: &Path) -> String {
    format!(
        "{}options:\n  volume_types: {{nfs: ceph}}\n{options}{}",
        env.spec_yaml_with_clouds(images),
        hosts_yaml(env, ("a", "b"), ferry_cmd, record),
    )
}

/// The spec's `conversion_hosts`: the source host is site `sites.0`'s, the
/// destination host (its record in `record`) site `sites.1`'s.
fn hosts_yaml(env: &TestEnv, sites: (&str, &str), ferry_cmd: &str, record: &Path) -> String {
    let dir = env.path("FERRY_TESTENV_DIR");
    let host = |name: &str, site: &str, extra: &str| {
        format!(
            "  {name}:\n    ssh: convhost-{site}\n    ip: 127.0.0.1\n    ferry: {}\n    nfs_mount_base: {}\n    ceph_conf: {}\n    ceph_keyring: {}\n{extra}",
            json!(ferry_cmd),
            json!(env.var("CONVHOST_NFS_MOUNT_BASE")),
            json!(dir.join(format!("site-{site}.conf"))),
            json!(dir.join(format!("site-{site}.client.cinder.keyring"))),
        )
    };
    format!(
        "conversion_hosts:\n  ssh_options: [\"-F\", {}]\n  stall_seconds: 30\n{}{}",
        json!(env.var("CONVHOST_SSH_CONFIG")),
        host("source", sites.0, ""),
        host(
            "destination",
            sites.1,
            &format!("    state_dir: {}\n", json!(record))
        ),
    )
}

/// `spec_text`'s spec without clusters or pools: the clouds, the images,
/// the options and the conversion hosts (every volume must stream).
fn without_clusters(text: &str, images: &str) -> String {
    let rest = &text[text.find("\noptions:\n").expect("options") + 1..];
    format!("source:\n  cloud: source\ndestination:\n  cloud: destination\nimages:\n{images}{rest}")
}

fn ferry() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// `ferry ARGS` with the test environment's clouds.yaml (and no OS_CLOUD).
fn ferry_cmd(env: &TestEnv, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(ferry());
    cmd.args(args)
        .env_remove("OS_CLOUD")
        .env("OS_CLIENT_CONFIG_FILE", env.clouds_yaml());
    cmd
}

fn run_cmd(env: &TestEnv, spec: &Path, state: &Path) -> Command {
    let mut cmd = ferry_cmd(env, &["run".as_ref(), "--output".as_ref(), "json".as_ref()]);
    cmd.arg("--state-dir").arg(state).arg(spec);
    cmd
}

/// A source volume of `volume_type` (see [`source_volume`]), and the guard
/// of what a run makes for it in the destination cloud.
fn moving<'c>(
    src: &'c Cloud,
    dst: &'c Cloud,
    volume_type: &str,
) -> (VolumeGuard<'c>, Volume, DestGuard<'c>) {
    let (vol, source) = source_volume(src, volume_type);
    let made = DestGuard {
        cloud: dst,
        volume_marker: Some(source.id.clone()),
        image: None,
    };
    (vol, source, made)
}

/// The stream step's report in a run's events: (sent, already there).
fn stream_counts(out: &std::process::Output) -> (u64, u64) {
    let done: Vec<Value> = step_events(out)
        .into_iter()
        .filter(|e| e["step"] == "stream" && e["status"] == "done")
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    let detail = done[0]["detail"].as_str().unwrap().to_string();
    let num = |after: &str| -> u64 {
        let i = detail.find(after).unwrap_or_else(|| panic!("{detail}"));
        detail[..i]
            .rsplit(|c: char| !c.is_ascii_digit())
            .find(|w| !w.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    (num(" chunk(s) sent"), num(" already there"))
}

/// No attachment is left on either volume, both `available`.
fn assert_free(cloud: &Cloud, id: &str) {
    let v = wait_volume(cloud, id, "available");
    assert!(v.attachments.is_empty(), "{id}: {:?}", v.attachments);
    let left = Cinder(cloud).attachments(id).unwrap();
    assert!(left.is_empty(), "{id}: attachments left: {left:?}");
}

fn assert_adopted(dst: &Cloud, source: &Volume, digest: &str) -> Volume {
    let found = adopted(dst, &source.id);
    assert_eq!(found.len(), 1, "{found:?}");
    let v = &found[0];
    assert_eq!(v.status, "available");
    assert_eq!(v.name.as_deref(), Some(source.name.as_deref().unwrap()));
    assert_eq!(v.volume_type.as_deref(), Some("ceph"));
    assert_eq!(v.size, 1);
    assert!(v.is_bootable(), "{v:?}");
    assert_eq!(v.description.as_deref(), Some("moved by the stream path"));
    assert_eq!(v.metadata.get("team").map(String::as_str), Some("blue"));
    assert_eq!(
        v.metadata.get("ferry_sha256").map(String::as_str),
        Some(digest)
    );
    assert!(!v.metadata.contains_key("ferry_stream_pending"), "{v:?}");
    assert_eq!(
        v.volume_image_metadata.get("os_distro").map(String::as_str),
        Some("debian")
    );
    v.clone()
}

/// The digest of the destination volume's RBD image, read there.
fn destination_digest(env: &TestEnv, id: &str) -> String {
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let img = pool.open_image(&format!("volume-{id}")).unwrap();
    checksum(&img)
}

#[test]
fn an_nfs_volume_streams_through_the_conversion_hosts_resuming_after_kills() {
    let _shared = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let (_vol, source, _made) = moving(&src, &dst, env.var("SOURCE_NFS_VOLUME_TYPE"));
    let want = fill_nfs(&nfs_file(&env, &source.id));
    let scratch = Scratch(std::env::temp_dir().join(unique("stream-path")));
    let record = scratch.0.join("record");
    std::fs::create_dir_all(&record).unwrap();
    let images = format!("  - volume: {}\n", source.id);

    // The plan: the volume is not in the source Ceph pool, so it streams.
    let (spec, state) = spec_in_temp_dir(&spec_text(&env, &images, "", ferry(), &record));
    let plan = ferry_cmd(
        &env,
        &[
            "plan".as_ref(),
            "--output".as_ref(),
            "json".as_ref(),
            spec.as_ref(),
        ],
    )
    .output_bounded()
    .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let steps: Vec<&str> = plan["images"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "check-destination-cloud",
            "check-source-cloud",
            "create-volume",
            "stream",
            "finish-volume"
        ]
    );
    assert_eq!(plan["images"][0]["transfer"], "stream");

    // 1. The destination agent dies after 5 chunks: the run fails naming
    // it, and ferry detaches both volumes.
    let crashing = format!("env FERRY_TEST_RECEIVE_CRASH_AFTER_CHUNKS=5 {}", ferry());
    let (spec1, state1) = spec_in_temp_dir(&spec_text(&env, &images, "", &crashing, &record));
    let out = run_cmd(&env, &spec1, &state1).output_bounded().unwrap();
    assert!(!out.status.success(), "the run was to fail");
    let err =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the destination agent on convhost-b"),
        "the error does not name the agent that died: {err}"
    );
    let made = adopted(&dst, &source.id);
    assert_eq!(made.len(), 1, "one volume made: {made:?}");
    let target = made[0].id.clone();
    assert!(made[0].metadata.contains_key("ferry_stream_pending"));
    assert!(!made[0].metadata.contains_key("ferry_sha256"));
    assert_free(&src, &source.id);
    assert_free(&dst, &target);

    // 1b. The source agent dies after 10 more chunks of data: named too,
    // and the re-run that follows resumes the chunks the target holds.
    let crashing = format!("env FERRY_TEST_SEND_CRASH_AFTER_CHUNKS=10 {}", ferry());
    let (spec1b, state1b) = spec_in_temp_dir(&spec_text(&env, &images, "", &crashing, &record));
    let out = run_cmd(&env, &spec1b, &state1b).output_bounded().unwrap();
    assert!(!out.status.success(), "the run was to fail");
    let err =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the source agent on convhost-a"),
        "the error does not name the agent that died: {err}"
    );
    assert_eq!(adopted(&dst, &source.id).len(), 1, "no second volume");
    assert_free(&src, &source.id);
    assert_free(&dst, &target);

    // 2. ferry itself is killed mid-stream (once the receiver's record
    // shows 24 chunks past the earlier runs'): its attachments stay behind.
    let log = std::fs::read_dir(&record)
        .unwrap()
        .map(|d| d.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "chunks"))
        .expect("the receiver's record");
    let before = std::fs::metadata(&log).unwrap().len();
    eprintln!("the record holds {} entries before the kill", before / 32);
    let mut child = run_cmd(&env, &spec, &state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        // Entry i at byte 32 i.
        if std::fs::metadata(&log).unwrap().len() >= before + 32 * 24 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let v = Cinder(&dst).volume(&target).unwrap();
    assert!(
        !v.metadata.contains_key("ferry_sha256"),
        "the stream finished before the kill"
    );
    // What a killed ferry leaves: both volumes attached to their hosts.
    assert_eq!(Cinder(&src).volume(&source.id).unwrap().status, "in-use");
    assert_eq!(v.status, "in-use");

    // 3. Again: the leftovers go, only the missing chunks are sent, and
    // the volume is adopted with the source's digest.
    let out = run_cmd(&env, &spec, &state).output_bounded().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detail = format!("{:?}", step_events(&out));
    assert!(
        detail.contains(&format!(
            "removed 1 leftover attachment(s) of {}",
            source.id
        )) && detail.contains(&format!("removed 1 leftover attachment(s) of {target}")),
        "{detail}"
    );
    let (sent, resumed) = stream_counts(&out);
    let data = data_chunks().len() as u64;
    assert!(resumed >= 20, "sent {sent}, resumed {resumed}");
    assert_eq!(sent + resumed, data, "sent {sent}, resumed {resumed}");
    let v = assert_adopted(&dst, &source, &want);
    assert_eq!(v.id, target, "the volume made first was filled");
    assert_eq!(destination_digest(&env, &v.id), want);
    assert_free(&src, &source.id);
    assert_free(&dst, &v.id);

    // A finished run changes nothing: every step is found done.
    let again = run_cmd(&env, &spec, &state).output_bounded().unwrap();
    assert!(again.status.success());
    let events = step_events(&again);
    assert!(
        events.iter().filter(|e| e["step"] != "-").all(|e| {
            e["status"] == "done" && (e["detail"] == "(already)" || e["detail"] == "(past)")
        }),
        "{events:?}"
    );
}

#[test]
fn an_rbd_volume_streams_between_the_clouds_without_the_peering() {
    let _shared = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let (_vol, source, _made) = moving(&src, &dst, "ceph");
    let want = {
        let a = env.connect("site-a");
        let pool = a.pool(env.var("MIRROR_IMAGE_POOL")).unwrap();
        let img = pool.open_image(&format!("volume-{}", source.id)).unwrap();
        crate::common::write_sparse(&img, GIB, 9, MIB as usize, 77);
        checksum(&img)
    };
    let scratch = Scratch(std::env::temp_dir().join(unique("stream-rbd")));
    let images = format!("  - volume: {}\n", source.id);
    let text = spec_text(
        &env,
        &images,
        "  transfer: stream\n",
        ferry(),
        &scratch.0.join("record"),
    );
    let (spec, state) = spec_in_temp_dir(&text);
    let out = run_cmd(&env, &spec, &state).output_bounded().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The chunks write_sparse's nine 1 MiB extents touch.
    let stride = GIB / 9;
    let touched: std::collections::BTreeSet<u64> = (0..9)
        .flat_map(|k| {
            let off = k * stride + 4096 * k;
            [off / CHUNK, (off + MIB - 1) / CHUNK]
        })
        .collect();
    let (sent, resumed) = stream_counts(&out);
    assert_eq!((sent, resumed), (touched.len() as u64, 0));
    // Named as a volume of the cloud, not an image of the source pool.
    let named = format!("(cinder)/volume-{}", source.id);
    let events = step_events(&out);
    assert!(
        events.iter().all(|e| e["image"] == named.as_str()),
        "{events:?}"
    );
    let v = assert_adopted(&dst, &source, &want);
    assert_eq!(destination_digest(&env, &v.id), want);
    // Nothing on the source changed: no mirroring, no snapshot.
    let a = env.connect("site-a");
    let pool = a.pool(env.var("MIRROR_IMAGE_POOL")).unwrap();
    let img = pool.open_image(&format!("volume-{}", source.id)).unwrap();
    assert_eq!(
        img.mirror_info().unwrap().state,
        ferry::ceph::ImageMirrorState::Disabled
    );
    assert!(img.snapshots().unwrap().is_empty());
    assert_free(&src, &source.id);
    assert_free(&dst, &v.id);
}

/// Runs `sh SCRIPT ARGS` with only what its part needs, and says how it went.
fn part(dir: &Path, role: &str, env: &[(&str, String)], args: &[&Path]) -> Command {
    let home = dir.join(format!("home-{role}"));
    std::fs::create_dir_all(&home).unwrap();
    let ferry_dir = Path::new(ferry()).parent().unwrap().display().to_string();
    let mut cmd = Command::new("sh");
    cmd.arg(dir.join(format!("{role}.sh")))
        .args(args)
        .env_clear()
        .env(
            "PATH",
            format!("{ferry_dir}:{}", std::env::var("PATH").unwrap()),
        )
        .env("HOME", &home)
        .env("FERRY_POLL", "1")
        .env("FERRY_WAIT_TIMEOUT", "300");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn ok(role: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{role}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The split parts of a stream plan, as scripts, the destination cloud's
/// started first (it makes the volume and then waits for the stream): the
/// conversion-hosts part streams it, the destination cloud part finishes
/// it; both again change nothing. The spec names no Ceph cluster at all:
/// clouds and conversion hosts are all the stream path needs.
#[test]
fn the_stream_path_scripts_in_role_order_move_an_nfs_volume() {
    let _shared = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let (_vol, source, _made) = moving(&src, &dst, env.var("SOURCE_NFS_VOLUME_TYPE"));
    let file = nfs_file(&env, &source.id);
    let want = {
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        let mut buf = vec![0u8; (3 * MIB) as usize];
        Noise::new(9).fill(&mut buf);
        f.write_all_at(&buf, 100 * MIB + 12345).unwrap();
        f.sync_all().unwrap();
        let mut w = DigestWriter::new();
        std::io::copy(&mut std::fs::File::open(&file).unwrap(), &mut w).unwrap();
        w.finish().0
    };
    let scratch = Scratch(std::env::temp_dir().join(unique("stream-roles")));
    let dir = scratch.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let images = format!("  - volume: {}\n", source.id);
    let spec = dir.join("migration.yaml");
    let text = spec_text(
        &env,
        &images,
        "  transfer: stream\n",
        ferry(),
        &dir.join("record"),
    );
    std::fs::write(&spec, without_clusters(&text, &images)).unwrap();
    // Nothing but the clouds and the hosts to check: ready.
    let checked = ferry_cmd(&env, &["check".as_ref(), spec.as_ref()])
        .output_bounded()
        .unwrap();
    ok("check", &checked);
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        report.contains("streams through the conversion hosts")
            && report.contains("ready: 0 error(s)"),
        "{report}"
    );
    let bundle = dir.join("plan.yaml");
    let planned = ferry_cmd(
        &env,
        &[
            "plan".as_ref(),
            "--bundle".as_ref(),
            bundle.as_ref(),
            spec.as_ref(),
        ],
    )
    .output_bounded()
    .unwrap();
    ok("plan", &planned);
    for role in ["source-cloud", "destination-cloud", "conversion-hosts"] {
        let out = Command::new(ferry())
            .args(["script", "--role", role])
            .arg(&bundle)
            .output_bounded()
            .unwrap();
        ok(role, &out);
        std::fs::write(dir.join(format!("{role}.sh")), &out.stdout).unwrap();
    }
    let clouds = env.clouds_yaml().display().to_string();
    let cloud = |name: &str| {
        vec![
            ("OS_CLIENT_CONFIG_FILE", clouds.clone()),
            ("OS_CLOUD", name.to_string()),
        ]
    };
    ok(
        "source-cloud",
        &part(&dir, "source-cloud", &cloud("source"), &[])
            .output_bounded()
            .unwrap(),
    );
    let dest_part = part(&dir, "destination-cloud", &cloud("destination"), &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let hosts_env = vec![
        ("OS_CLIENT_CONFIG_FILE", clouds.clone()),
        ("FERRY_SOURCE_CLOUD", "source".to_string()),
        ("FERRY_DESTINATION_CLOUD", "destination".to_string()),
    ];
    // ssh's options are the runner's own, after the bundle (a bundle
    // carries none).
    let ssh_config = env.path("CONVHOST_SSH_CONFIG");
    let hosts_args = [
        bundle.as_path(),
        "--ssh-config".as_ref(),
        ssh_config.as_path(),
    ];
    let streamed = part(&dir, "conversion-hosts", &hosts_env, &hosts_args)
        .output_bounded()
        .unwrap();
    ok("conversion-hosts", &streamed);
    let finished = dest_part.wait_with_output().unwrap();
    ok("destination-cloud", &finished);
    let v = assert_adopted(&dst, &source, &want);
    assert_eq!(destination_digest(&env, &v.id), want);
    assert_free(&src, &source.id);
    assert_free(&dst, &v.id);

    // Both again: every step is found done.
    let again = part(&dir, "destination-cloud", &cloud("destination"), &[])
        .output_bounded()
        .unwrap();
    ok("destination-cloud", &again);
    let words = String::from_utf8_lossy(&again.stderr).to_string();
    assert!(
        !words.lines().any(|l| l.ends_with("): done")),
        "a second run acted: {words}"
    );
    let again = part(&dir, "conversion-hosts", &hosts_env, &hosts_args)
        .output_bounded()
        .unwrap();
    ok("conversion-hosts", &again);
    assert_eq!(adopted(&dst, &source.id).len(), 1);
}

/// A source volume attached elsewhere (to a server, here to another host)
/// is refused before anything is made in the destination cloud, and its
/// attachment is left alone.
#[test]
fn a_volume_attached_elsewhere_is_refused_before_anything_is_made() {
    let _shared = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let (_vol, source, _made) = moving(&src, &dst, env.var("SOURCE_NFS_VOLUME_TYPE"));
    let elsewhere = ferry::openstack::Connector::new("elsewhere", "127.0.0.1");
    let att = Cinder(&src)
        .attach(
            &source.id,
            &elsewhere,
            &[ferry::openstack::ConnectionKind::Nfs],
        )
        .unwrap_or_else(|e| panic!("attach: {e:#}"));
    struct Detach<'c>(&'c Cloud, String);
    impl Drop for Detach<'_> {
        fn drop(&mut self) {
            let _ = Cinder(self.0).delete_attachment(&self.1);
        }
    }
    let _detach = Detach(&src, att.id.clone());
    let scratch = Scratch(std::env::temp_dir().join(unique("stream-busy")));
    let images = format!("  - volume: {}\n", source.id);
    let (spec, state) = spec_in_temp_dir(&spec_text(
        &env,
        &images,
        "",
        ferry(),
        &scratch.0.join("record"),
    ));
    let out = run_cmd(&env, &spec, &state).output_bounded().unwrap();
    assert!(!out.status.success(), "the run was to fail");
    let err =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is in-use: it streams only while attached to nothing"),
        "{err}"
    );
    assert!(adopted(&dst, &source.id).is_empty(), "nothing made");
    let v = Cinder(&src).volume(&source.id).unwrap();
    assert_eq!(v.status, "in-use");
    assert_eq!(
        Cinder(&src)
            .attachments(&source.id)
            .unwrap()
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        [att.id.as_str()],
        "its attachment is left alone"
    );
}

/// The volumes real clouds hold most: made from a Glance image (the RBD
/// driver clones them from the image's snapshot). Two of them, one written
/// over its parent, stream at once with `transfer: stream`; each arrives
/// whole (read through its parent), bootable, with the image's properties.
#[test]
fn volumes_cloned_from_a_glance_image_stream_two_at_once() {
    let _shared = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let (image, _) = crate::it::openstack::source_image(&src, &unique("stream-base"), 41);
    // Locals drop in reverse: the clones go before their image.
    let _image = crate::it::openstack::ImageGuard(&src, image.id.clone());
    let vols: Vec<Volume> = (0..2)
        .map(|k| {
            crate::it::shapes::volume_from_image(
                &src,
                &unique(&format!("stream-clone{k}")),
                &image.id,
            )
        })
        .collect();
    let _vols: Vec<VolumeGuard> = vols
        .iter()
        .map(|v| VolumeGuard {
            cloud: &src,
            id: v.id.clone(),
        })
        .collect();
    let _made: Vec<DestGuard> = vols
        .iter()
        .map(|v| DestGuard {
            cloud: &dst,
            volume_marker: Some(v.id.clone()),
            image: None,
        })
        .collect();
    let a = env.connect("site-a");
    let pool = a.pool(env.var("MIRROR_IMAGE_POOL")).unwrap();
    let want: Vec<String> = vols
        .iter()
        .enumerate()
        .map(|(k, v)| {
            let img = pool.open_image(&format!("volume-{}", v.id)).unwrap();
            assert!(img.parent().unwrap().is_some(), "a clone of the image");
            if k == 0 {
                crate::common::write_sparse(&img, GIB, 5, MIB as usize, 78);
            }
            checksum(&img)
        })
        .collect();
    assert_ne!(want[0], want[1]);
    let scratch = Scratch(std::env::temp_dir().join(unique("stream-clones")));
    let images: String = vols
        .iter()
        .map(|v| format!("  - volume: {}\n", v.id))
        .collect();
    let text = spec_text(
        &env,
        &images,
        "  transfer: stream\n",
        ferry(),
        &scratch.0.join("record"),
    );
    let (spec, state) = spec_in_temp_dir(&text);
    let out = run_cmd(&env, &spec, &state)
        .args(["--concurrency", "2"])
        .output_bounded()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for (v, want) in vols.iter().zip(&want) {
        let found = adopted(&dst, &v.id);
        assert_eq!(found.len(), 1, "{found:?}");
        let got = &found[0];
        assert_eq!(got.status, "available");
        assert!(got.is_bootable(), "{got:?}");
        assert_eq!(got.metadata.get("app").map(String::as_str), Some("web"));
        // The image's properties go along; what Cinder derived from the
        // source cloud's Glance image (its id, name, checksum) does not.
        assert_eq!(
            got.volume_image_metadata
                .get("hw_disk_bus")
                .map(String::as_str),
            Some("scsi"),
            "{got:?}"
        );
        assert!(v.volume_image_metadata.contains_key("image_id"), "{v:?}");
        assert!(
            !got.volume_image_metadata.contains_key("image_id"),
            "{got:?}"
        );
        assert_eq!(&destination_digest(&env, &got.id), want);
        assert_free(&src, &v.id);
        assert_free(&dst, &got.id);
    }
}

/// The digest of the RBD image of volume `id` in `site`'s Cinder pool
/// (`pool_var` names it in the environment).
fn volume_digest(env: &TestEnv, site: &str, pool_var: &str, id: &str) -> String {
    let c = env.connect(site);
    let pool = c.pool(env.var(pool_var)).unwrap();
    let img = pool.open_image(&format!("volume-{id}")).unwrap();
    checksum(&img)
}

#[test]
fn a_volume_moved_twice_through_the_stream_path_arrives_with_its_data_both_times() {
    let _shared = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let (_vol, source, _made) = moving(&src, &dst, "ceph");
    let want = {
        let a = env.connect("site-a");
        let pool = a.pool(env.var("MIRROR_IMAGE_POOL")).unwrap();
        let img = pool.open_image(&format!("volume-{}", source.id)).unwrap();
        crate::common::write_sparse(&img, GIB, 3, MIB as usize, 31);
        checksum(&img)
    };
    let scratch = Scratch(std::env::temp_dir().join(unique("stream-twice")));
    // Out: source cloud to destination cloud.
    let text = spec_text(
        &env,
        &format!("  - volume: {}\n", source.id),
        "  transfer: stream\n",
        ferry(),
        &scratch.0.join("record-b"),
    );
    let (spec, state) = spec_in_temp_dir(&text);
    let out = run_cmd(&env, &spec, &state).output_bounded().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = assert_adopted(&dst, &source, &want);
    assert_eq!(
        volume_digest(&env, "site-b", "DEST_CINDER_POOL", &first.id),
        want
    );
    assert!(first.metadata.contains_key("ferry_stream_verified"));

    // Back: the moved volume, carrying ferry's keys of the first move, into
    // the source cloud through the hosts the other way round.
    let _back = DestGuard {
        cloud: &src,
        volume_marker: Some(first.id.clone()),
        image: None,
    };
    let text = format!(
        "source:\n  cloud: destination\ndestination:\n  cloud: source\nimages:\n  - volume: {}\n    name: {}\noptions:\n  volume_types: {{ceph: ceph}}\n  transfer: stream\n{}",
        first.id,
        unique("stream-back"),
        hosts_yaml(&env, ("b", "a"), ferry(), &scratch.0.join("record-a")),
    );
    let (spec, state) = spec_in_temp_dir(&text);
    let out = run_cmd(&env, &spec, &state).output_bounded().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = adopted(&src, &first.id);
    assert_eq!(found.len(), 1, "{found:?}");
    let second = &found[0];
    assert_eq!(
        volume_digest(&env, "site-a", "MIRROR_IMAGE_POOL", &second.id),
        want,
        "the volume moved back does not hold the source's data"
    );
    let (sent, _) = stream_counts(&out);
    assert!(sent > 0, "the second move streamed nothing");
    // The second volume's keys are the second move's, none the first's.
    assert_eq!(
        second.metadata.get("ferry_sha256").map(String::as_str),
        Some(want.as_str())
    );
    let mark = &second.metadata["ferry_stream_verified"];
    assert!(
        mark.ends_with(&format!(" {} {want}", first.id)),
        "{mark} names another source"
    );
    assert_ne!(mark, &first.metadata["ferry_stream_verified"]);
    assert!(!second.metadata.contains_key("ferry_stream_pending"));
    assert_eq!(
        second.metadata.get("team").map(String::as_str),
        Some("blue")
    );
    assert_free(&dst, &first.id);
    assert_free(&src, &second.id);
}
