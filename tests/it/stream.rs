//! The stream path between two conversion hosts: real sshd processes
//! (`ceph-testenv/convhost`), the system ssh, and this build's ferry as the
//! agent on both. A sparse file arrives equal with its holes kept, a used
//! target is cleared where the source has holes, a killed agent or a cut
//! link ends with a named error and the re-run sends only what is missing
//! or changed, and a block device (a loop device) takes a stream too.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::BoundedOutput;
use crate::common::{unique, Noise, TestEnv};

const MIB: u64 = 1 << 20;
/// Not a multiple of the 4 MiB chunk, nor of 4 KiB.
const SIZE: u64 = 37 * MIB + 12345;

/// The conversion hosts' ssh_config; panics with how to start them.
fn ssh_config() -> PathBuf {
    let env = TestEnv::load();
    let path = env.path("FERRY_TESTENV_DIR").join("convhost/ssh_config");
    assert!(
        path.exists(),
        "the conversion hosts are not set up ({} missing): run `ceph-testenv/convhost up` \
         (`ceph-testenv/testenv up` does)",
        path.display()
    );
    path
}

/// A directory of its own for a test's files (both hosts are this machine).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `len` bytes of noise at `offset` of `path` (made when missing).
fn write_noise(path: &Path, offset: u64, len: usize, seed: u64) {
    let mut buf = vec![0u8; len];
    Noise::new(seed).fill(&mut buf);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    f.write_all_at(&buf, offset).unwrap();
}

/// A sparse source of [`SIZE`] bytes with data at scattered offsets:
/// chunks 0, 2, 5, 6 and the short last one (9) hold data; 1, 3, 4, 7, 8
/// are holes.
fn sparse_source(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(SIZE).unwrap();
    write_noise(path, 0, MIB as usize, 1);
    write_noise(path, 9 * MIB + 4096, (MIB - 4096) as usize, 2);
    write_noise(path, 20 * MIB, 6 * MIB as usize, 3);
    write_noise(path, SIZE - 5000, 5000, 4);
}
const SPARSE_DATA_CHUNKS: u64 = 5;
const SPARSE_HOLES: u64 = 5;

/// A source of `chunks` full chunks of noise.
fn full_source(path: &Path, chunks: u64, seed: u64) {
    write_noise(path, 0, (chunks * 4 * MIB) as usize, seed);
}

/// The digest by the shell pipeline the rendered scripts use.
fn shell_digest(path: &Path) -> String {
    let out = Command::new("sh")
        .args([
            "-c",
            "split -b 4M --filter sha256sum <\"$0\" | cut -c1-64 | sha256sum | cut -c1-64",
        ])
        .arg(path)
        .output_bounded()
        .unwrap();
    assert!(out.status.success(), "the shell pipeline failed");
    let sum = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(sum.len(), 64, "{sum:?}");
    sum
}

fn same_bytes(a: &Path, b: &Path, len: u64) -> bool {
    Command::new("cmp")
        .arg("-s")
        .arg(format!("--bytes={len}"))
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

/// `ferry stream` from convhost-a:`from` to convhost-b:`to`, the agents
/// run with `agent_env` (test hooks), and `extra` arguments.
fn stream_command(from: &Path, to: &Path, agent_env: &[(&str, &str)], extra: &[&str]) -> Command {
    let mut remote = String::new();
    if !agent_env.is_empty() {
        remote.push_str("env ");
        for (k, v) in agent_env {
            remote.push_str(&format!("{k}={v} "));
        }
    }
    remote.push_str(env!("CARGO_BIN_EXE_ferry"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["stream", "--output", "json", "-F"])
        .arg(ssh_config())
        .arg("--from")
        .arg(format!("convhost-a:{}", from.display()))
        .arg("--to")
        .arg(format!("convhost-b:{}", to.display()))
        .args(["--remote-ferry", &remote])
        .args(extra);
    cmd
}

fn stream(from: &Path, to: &Path, agent_env: &[(&str, &str)], extra: &[&str]) -> Output {
    stream_command(from, to, agent_env, extra)
        .output_bounded()
        .unwrap()
}

/// The JSON report of a stream that must have succeeded.
fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "ferry stream failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "the stream was to fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_sparse_file_arrives_equal_with_the_shell_digest_and_its_holes_kept() {
    let dir = Scratch::new("stream-sparse");
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    sparse_source(&src);
    let r = report(&stream(&src, &dst, &[], &[]));
    assert_eq!(r["digest"], shell_digest(&src), "{r}");
    assert_eq!(shell_digest(&dst), shell_digest(&src));
    assert!(same_bytes(&src, &dst, SIZE), "the target differs");
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), SIZE);
    assert_eq!(r["chunks"], 10);
    assert_eq!(r["chunks_sent"], SPARSE_DATA_CHUNKS, "{r}");
    assert_eq!(r["chunks_hole"], SPARSE_HOLES, "{r}");
    assert_eq!(r["chunks_resumed"], 0);
    // Only the data went over the link (zero detection works in 4 KiB
    // blocks: the last 5000 bytes take three), and the target stays sparse.
    let data = MIB + (MIB - 4096) + 6 * MIB + 3 * 4096;
    assert!(r["bytes_sent"].as_u64().unwrap() <= data, "{r}");
    let allocated = std::fs::metadata(&dst).unwrap().blocks() * 512;
    assert!(
        allocated <= data + 64 * 1024,
        "the target allocated {allocated} bytes for {data} bytes of data"
    );

    // Again: nothing to send, the digests agree.
    let again = report(&stream(&src, &dst, &[], &[]));
    assert_eq!(again["chunks_sent"], 0, "{again}");
    assert_eq!(again["chunks_resumed"], SPARSE_DATA_CHUNKS);
    assert_eq!(again["digest"], r["digest"]);
}

#[test]
fn a_target_replaced_between_runs_is_written_whole_and_one_overwritten_is_caught() {
    let dir = Scratch::new("stream-replaced");
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    sparse_source(&src);
    report(&stream(&src, &dst, &[], &[]));
    // A new file under the same path, of the same size, empty: the log of
    // the first run must not vouch for it.
    std::fs::remove_file(&dst).unwrap();
    std::fs::File::create(&dst).unwrap().set_len(SIZE).unwrap();
    let r = report(&stream(&src, &dst, &[], &[]));
    assert_eq!(r["chunks_resumed"], 0, "{r}");
    assert_eq!(r["chunks_sent"], SPARSE_DATA_CHUNKS, "{r}");
    assert_eq!(r["digest"], shell_digest(&src));
    assert_eq!(shell_digest(&dst), shell_digest(&src));
    // The same file, written by something else since: the spot check
    // finds it, says so, and the stream takes the whole image again.
    write_noise(&dst, 0, 4096, 5);
    let r = report(&stream(&src, &dst, &[], &[]));
    let why = r["restarted"].as_str().unwrap_or_default();
    assert!(why.contains("no longer holds"), "{r}");
    assert_eq!(r["chunks_sent"], SPARSE_DATA_CHUNKS, "{r}");
    assert_eq!(shell_digest(&dst), shell_digest(&src));
}

#[test]
fn a_used_target_full_of_garbage_ends_equal_to_the_source() {
    let dir = Scratch::new("stream-garbage");
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    sparse_source(&src);
    // Larger than the source: refused, untouched (the sender's size never
    // truncates a file that holds data).
    write_noise(&dst, 0, (SIZE + 3 * MIB) as usize, 77);
    let said = failed(&stream(&src, &dst, &[], &[]));
    assert!(said.contains("neither truncates nor grows"), "{said}");
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), SIZE + 3 * MIB);
    // Its size, garbage everywhere.
    std::fs::remove_file(&dst).unwrap();
    write_noise(&dst, 0, SIZE as usize, 77);
    let r = report(&stream(&src, &dst, &[], &[]));
    assert_eq!(r["chunks_zeroed"], SPARSE_HOLES, "{r}");
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), SIZE);
    assert!(same_bytes(&src, &dst, SIZE), "the target differs");
    assert_eq!(r["digest"], shell_digest(&dst));
}

#[test]
fn a_receiver_killed_mid_stream_resumes_with_only_the_missing_chunks() {
    let dir = Scratch::new("stream-kill-receiver");
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    full_source(&src, 12, 5);
    let out = stream(
        &src,
        &dst,
        &[("FERRY_TEST_RECEIVE_CRASH_AFTER_CHUNKS", "5")],
        &[],
    );
    let err = failed(&out);
    assert!(
        err.contains("the destination agent on convhost-b ended mid-stream"),
        "the error does not name the side that died: {err}"
    );
    let r = report(&stream(&src, &dst, &[], &[]));
    assert_eq!(r["chunks_resumed"], 5, "{r}");
    assert_eq!(r["chunks_sent"], 7, "{r}");
    assert_eq!(r["digest"], shell_digest(&src));
    assert!(same_bytes(&src, &dst, 48 * MIB));
}

#[test]
fn a_sender_killed_mid_stream_resumes_with_only_the_missing_chunks() {
    let dir = Scratch::new("stream-kill-sender");
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    full_source(&src, 12, 6);
    let out = stream(
        &src,
        &dst,
        &[("FERRY_TEST_SEND_CRASH_AFTER_CHUNKS", "4")],
        &[],
    );
    let err = failed(&out);
    assert!(
        err.contains("the source agent on convhost-a ended mid-stream"),
        "the error does not name the side that died: {err}"
    );
    let r = report(&stream(&src, &dst, &[], &[]));
    assert_eq!(r["chunks_resumed"], 4, "{r}");
    assert_eq!(r["chunks_sent"], 8, "{r}");
    assert_eq!(r["digest"], shell_digest(&src));
    assert!(same_bytes(&src, &dst, 48 * MIB));
}

#[test]
fn a_source_changed_after_a_kill_has_its_changed_chunks_sent_again() {
    let dir = Scratch::new("stream-changed");
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    full_source(&src, 10, 7);
    let out = stream(
        &src,
        &dst,
        &[("FERRY_TEST_RECEIVE_CRASH_AFTER_CHUNKS", "6")],
        &[],
    );
    failed(&out);
    // Chunks 0-5 arrived. Chunk 1 changes, chunk 4 becomes a hole (its
    // data punched out), chunk 8 (not arrived) changes too.
    write_noise(&src, 4 * MIB + 100, 10, 8);
    let punch = Command::new("fallocate")
        .args(["--punch-hole", "--offset"])
        .arg((16 * MIB).to_string())
        .arg("--length")
        .arg((4 * MIB).to_string())
        .arg(&src)
        .status()
        .unwrap();
    assert!(punch.success());
    write_noise(&src, 32 * MIB, 10, 9);
    let r = report(&stream(&src, &dst, &[], &[]));
    // Held: 0, 2, 3, 5; sent: 1 (changed) and 6-9 (missing); 4 a hole,
    // zeroed on the target.
    assert_eq!(r["chunks_resumed"], 4, "{r}");
    assert_eq!(r["chunks_sent"], 5, "{r}");
    assert_eq!(r["chunks_hole"], 1, "{r}");
    assert_eq!(r["chunks_zeroed"], 1, "{r}");
    assert_eq!(r["digest"], shell_digest(&src));
    assert!(same_bytes(&src, &dst, 40 * MIB));
}

/// The pid of the `ssh` child of `parent` whose command line names `host`.
fn ssh_child(parent: u32, host: &str) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"ssh")) && args.contains(&host.as_bytes())
            })
        })
}

/// Starts a stream of a 384 MiB source and, once data reaches the target,
/// signals the ssh process to `host` with `signal`; returns the stream's
/// output, how long it ran after the signal, and the paths.
fn cut(host: &str, signal: &str, stall: u64, dir: &Scratch) -> (Output, Duration) {
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    full_source(&src, 96, 10);
    let child = stream_command(&src, &dst, &[], &["--stall-timeout", &stall.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let ssh = loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the stream did not begin"
        );
        let arrived = std::fs::metadata(&dst).map_or(0, |m| m.blocks() * 512);
        if arrived > 8 * MIB {
            if let Some(p) = ssh_child(child.id(), host) {
                break p;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ok = Command::new("kill")
        .args([signal, &ssh.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "signalling ssh {ssh}");
    let cut_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = cut_at.elapsed();
    // A stopped ssh is killed by the relay; make sure of it either way.
    let _ = Command::new("kill")
        .args(["-KILL", &ssh.to_string()])
        .stderr(Stdio::null())
        .status();
    (out, took)
}

#[test]
fn a_killed_link_ends_with_a_named_error_and_the_rerun_resumes() {
    let dir = Scratch::new("stream-cut");
    let (out, took) = cut("convhost-b", "-KILL", 30, &dir);
    let err = failed(&out);
    assert!(
        err.contains("the destination agent on convhost-b ended mid-stream"),
        "{err}"
    );
    assert!(took < Duration::from_secs(15), "it took {took:?} to notice");
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    let r = report(&stream(&src, &dst, &[], &[]));
    let (sent, resumed) = (
        r["chunks_sent"].as_u64().unwrap(),
        r["chunks_resumed"].as_u64().unwrap(),
    );
    assert!(resumed > 0, "nothing was kept from the cut run: {r}");
    assert_eq!(sent + resumed, 96, "{r}");
    assert_eq!(r["digest"], shell_digest(&src));
}

#[test]
fn a_hung_link_ends_with_the_stall_error_within_the_timeout() {
    let dir = Scratch::new("stream-hang");
    let (out, took) = cut("convhost-a", "-STOP", 3, &dir);
    let err = failed(&out);
    assert!(
        err.contains("no data from the source agent on convhost-a for 3 s"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(2), "a stall exits 2: {err}");
    assert!(
        took < Duration::from_secs(3 + 5),
        "it took {took:?} to give up"
    );
}

/// A loop device over a file in `dir`, detached when dropped.
struct Loop(String);

impl Loop {
    fn new(backing: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output_bounded()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn a_block_device_full_of_garbage_takes_a_stream_and_reads_as_the_source() {
    let dir = Scratch::new("stream-loop");
    let (src, backing) = (dir.path("src"), dir.path("backing"));
    sparse_source(&src);
    write_noise(&backing, 0, (40 * MIB) as usize, 11);
    let dev = Loop::new(&backing);
    let state = dir.path("state");
    let dev_path = PathBuf::from(&dev.0);
    let out = stream(&src, &dev_path, &[], &[]);
    let err = failed(&out);
    assert!(err.contains("give --state-dir"), "{err}");
    let r = report(&stream(
        &src,
        &dev_path,
        &[],
        &["--state-dir", state.to_str().unwrap()],
    ));
    assert_eq!(r["chunks_zeroed"], SPARSE_HOLES, "{r}");
    assert!(same_bytes(&src, &dev_path, SIZE), "the device differs");
    assert_eq!(r["digest"], shell_digest(&src));
    // The device past the image is not touched.
    let mut tail = vec![0u8; 4096];
    std::fs::File::open(&dev_path)
        .unwrap()
        .read_exact_at(&mut tail, 40 * MIB - 4096)
        .unwrap();
    assert!(tail.iter().any(|b| *b != 0), "the device's tail was zeroed");
}

#[test]
fn a_side_that_cannot_start_is_named_with_its_own_words() {
    let dir = Scratch::new("stream-nostart");
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    let out = stream(&src, &dst, &[], &[]);
    let err = failed(&out);
    assert!(
        err.contains("the source agent on convhost-a ended before the stream began")
            && err.contains(&format!("opening {}", src.display())),
        "{err}"
    );
    sparse_source(&src);
    let bad = dir.path("no-such-dir/dst");
    let err = failed(&stream(&src, &bad, &[], &[]));
    assert!(
        err.contains("the destination agent on convhost-b: opening for writing"),
        "{err}"
    );
}

/// `rbd:POOL/IMAGE[@SNAP]?conf=..&id=admin&keyring=..` of a test site.
fn rbd_location(env: &TestEnv, site: &str, spec: &str) -> PathBuf {
    let cfg = env.admin(site);
    PathBuf::from(format!(
        "rbd:{spec}?conf={}&id=admin&keyring={}",
        cfg.conf.display(),
        cfg.keyring.unwrap().display()
    ))
}

/// Two clusters whose peering is not used: the source image's snapshot
/// is read by librbd on convhost-a and written into a destination image by
/// librbd on convhost-b. Holes stay holes; an image that held other data
/// is cleared where the source has holes; a killed receiver resumes.
#[test]
fn an_rbd_snapshot_streams_into_an_rbd_image_of_the_other_cluster() {
    use ferry::ceph::Features;
    let env = TestEnv::load();
    let dir = Scratch::new("stream-rbd");
    let (a, b) = (env.connect("site-a"), env.connect("site-b"));
    let (ap, bp) = (
        a.pool("volumes").unwrap(),
        b.pool("cinder-volumes").unwrap(),
    );
    let name = unique("stream-rbd");
    let size = 40 * MIB + 4096;
    let _guards = [
        crate::common::ImageGuard {
            cfg: env.admin("site-a"),
            pool: "volumes".into(),
            name: name.clone(),
        },
        crate::common::ImageGuard {
            cfg: env.admin("site-b"),
            pool: "cinder-volumes".into(),
            name: name.clone(),
        },
        crate::common::ImageGuard {
            cfg: env.admin("site-b"),
            pool: "cinder-volumes".into(),
            name: format!("{name}-used"),
        },
        crate::common::ImageGuard {
            cfg: env.admin("site-b"),
            pool: "cinder-volumes".into(),
            name: format!("{name}-killed"),
        },
    ];
    ap.create_image(&name, size, Features::DEFAULT).unwrap();
    let want = {
        let img = ap.open_image(&name).unwrap();
        crate::common::write_with_holes(&img, size, MIB as usize, 21);
        img.snap_create("s1").unwrap();
        // Written after the snapshot: not what moves.
        img.write_at(0, &[7u8; 4096]).unwrap();
        crate::common::checksum(&ap.open_image_read_only(&name, Some("s1")).unwrap())
    };
    let from = rbd_location(&env, "site-a", &format!("volumes/{name}@s1"));
    let to = rbd_location(&env, "site-b", &format!("cinder-volumes/{name}"));
    let state = dir.path("state");
    let state_arg = ["--state-dir", state.to_str().unwrap()];

    let r = report(&stream(&from, &to, &[], &state_arg));
    assert_eq!(r["digest"], want, "{r}");
    assert_eq!(r["chunks"], 11, "{r}");
    let copy = bp.open_image_read_only(&name, None).unwrap();
    assert_eq!(crate::common::checksum(&copy), want);
    // Holes stayed holes: the image made reads as zeros, only data went
    // (1 MiB extents every 2 MiB and 12 KiB: 20 MiB), and it is allocated
    // no more than the source.
    let allocated: u64 = copy
        .allocated(0, size, false)
        .unwrap()
        .iter()
        .map(|(_, l)| l)
        .sum();
    let at_source: u64 = ap
        .open_image_read_only(&name, Some("s1"))
        .unwrap()
        .allocated(0, size, false)
        .unwrap()
        .iter()
        .map(|(_, l)| l)
        .sum();
    // (librbd reports allocation coarser than the writes, alike on both.)
    assert!(
        allocated <= at_source,
        "{allocated} bytes allocated, the source {at_source}; {r}"
    );
    assert!(r["bytes_sent"].as_u64().unwrap() <= 21 * MIB, "{r}");

    // A receiver killed after 3 chunks; the re-run sends only the rest.
    let killed = rbd_location(&env, "site-b", &format!("cinder-volumes/{name}-killed"));
    let out = stream(
        &from,
        &killed,
        &[("FERRY_TEST_RECEIVE_CRASH_AFTER_CHUNKS", "3")],
        &state_arg,
    );
    failed(&out);
    let r = report(&stream(&from, &killed, &[], &state_arg));
    assert_eq!(r["digest"], want, "{r}");
    assert_eq!(r["chunks_resumed"], 3, "{r}");
    // 11 chunks: 3 resumed, 7 sent, the last one (4 KiB) a hole. (The
    // re-run's writes wait up to ~30 s for the killed agent's exclusive
    // lock on the image, which librbd breaks once its watch expires.)
    assert_eq!(r["chunks_sent"], 7, "{r}");
    assert_eq!(r["chunks_hole"], 1, "{r}");

    // Into an image that held other data everywhere: cleared where the
    // source has holes, equal at the end.
    let used = format!("{name}-used");
    bp.create_image(&used, size, Features::DEFAULT).unwrap();
    {
        let img = bp.open_image(&used).unwrap();
        let mut junk = vec![0u8; size as usize];
        crate::common::Noise::new(99).fill(&mut junk);
        img.write_at(0, &junk).unwrap();
    }
    let to_used = rbd_location(&env, "site-b", &format!("cinder-volumes/{used}"));
    let r = report(&stream(&from, &to_used, &[], &state_arg));
    assert_eq!(r["digest"], want, "{r}");
    assert_eq!(
        crate::common::checksum(&bp.open_image_read_only(&used, None).unwrap()),
        want
    );
}

/// `ferry stream` run on the destination side with `--to local:PATH`: its
/// receiving agent is its own child, the bytes cross one ssh connection.
#[test]
fn a_local_target_receives_from_a_remote_source_over_one_connection() {
    let dir = Scratch::new("stream-local");
    let (src, dst) = (dir.path("src"), dir.path("dst"));
    sparse_source(&src);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["stream", "--output", "json", "-F"])
        .arg(ssh_config())
        .arg("--from")
        .arg(format!("convhost-a:{}", src.display()))
        .arg("--to")
        .arg(format!("local:{}", dst.display()))
        .args(["--remote-ferry", env!("CARGO_BIN_EXE_ferry")])
        .output_bounded()
        .unwrap();
    let r = report(&out);
    assert_eq!(r["digest"], shell_digest(&src), "{r}");
    assert!(same_bytes(&src, &dst, SIZE), "the target differs");
    assert_eq!(r["chunks_sent"], SPARSE_DATA_CHUNKS, "{r}");
    assert_eq!(r["target"], format!("local:{}", dst.display()));
}
