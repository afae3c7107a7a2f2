//! The block data engine on real RBD images: its digest equals the shell
//! pipeline's the rendered scripts use, a sparse copy keeps its holes, and
//! an interrupted copy (stopped, or the process killed) resumes with only
//! the chunks it lacks.

use std::process::{Command, Stdio};

use ferry::ceph::{Features, Image, Pool};
use ferry::transfer::rbd::{copy_image, digest_image, forget_log, log_object};
use ferry::transfer::{Options, TransferError};
use serde_json::Value;

use crate::common::BoundedOutput;
use crate::common::{
    checksum, mirror_daemon_shared, spec_in_temp_dir, step_events, unique, write_with_holes,
    ImageGuard, Noise, TestEnv,
};

const MIB: u64 = 1 << 20;
/// Not a multiple of the 4 MiB chunk, nor of 4 KiB.
const SIZE: u64 = 37 * MIB + 12345;

/// The digest by the shell pipeline the rendered scripts run.
fn shell_digest(env: &TestEnv, site: &str, spec: &str) -> String {
    let conf = env.path(if site == "site-a" {
        "SITE_A_CONF"
    } else {
        "SITE_B_CONF"
    });
    let out = Command::new("sh")
        .args([
            "-c",
            "set -e; rbd -c \"$0\" export --no-progress \"$1\" - | split -b 4M --filter sha256sum | cut -c1-64 | sha256sum | cut -c1-64",
        ])
        .arg(&conf)
        .arg(spec)
        .stderr(Stdio::inherit())
        .output_bounded()
        .unwrap();
    assert!(out.status.success(), "the shell pipeline failed");
    let sum = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(sum.len(), 64, "{sum:?}");
    sum
}

fn write_noise(img: &Image<'_>, offset: u64, len: usize, seed: u64) {
    let mut buf = vec![0u8; len];
    Noise::new(seed).fill(&mut buf);
    img.write_at(offset, &buf).unwrap();
}

/// Bytes the image has allocated, to the byte as librbd reports it.
fn allocated(img: &Image<'_>, offset: u64, len: u64) -> u64 {
    img.allocated(offset, len, false)
        .unwrap()
        .iter()
        .map(|(_, l)| l)
        .sum()
}

/// A sparse image in the destination's Cinder pool: data in objects 0, 2,
/// 5-6 and the short last one, the rest never written; snapshot `s` holds
/// that, the head has more written after it.
fn sparse_source(env: &TestEnv, pool: &Pool<'_>, name: &str) -> ImageGuard {
    pool.create_image(name, SIZE, Features::DEFAULT).unwrap();
    let guard = ImageGuard {
        cfg: env.admin("site-b"),
        pool: pool.name().to_string(),
        name: name.to_string(),
    };
    let img = pool.open_image(name).unwrap();
    write_noise(&img, 0, MIB as usize, 1);
    write_noise(&img, 9 * MIB + 4096, (MIB - 4096) as usize, 2);
    write_noise(&img, 20 * MIB, 6 * MIB as usize, 3);
    write_noise(&img, SIZE - 5000, 5000, 4);
    img.snap_create("s").unwrap();
    write_noise(&img, 13 * MIB, MIB as usize, 5);
    guard
}

fn dest_guard(env: &TestEnv, pool: &Pool<'_>, name: &str) -> ImageGuard {
    ImageGuard {
        cfg: env.admin("site-b"),
        pool: pool.name().to_string(),
        name: name.to_string(),
    }
}

#[test]
fn engine_digest_equals_the_shell_pipeline_and_reads_only_data() {
    let env = TestEnv::load();
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let name = unique("digest");
    let _g = sparse_source(&env, &pool, &name);

    let at_snap = digest_image(&pool, &name, Some("s"), &Options::default(), &mut |_, _| {
        true
    })
    .unwrap();
    let spec = format!("{}/{name}", pool.name());
    assert_eq!(
        at_snap.digest,
        shell_digest(&env, "site-b", &format!("{spec}@s"))
    );
    // Whole objects with data: 0, 2, 5, 6 and the last; no other reads.
    assert_eq!(at_snap.chunks, 10);
    assert_eq!(at_snap.chunks_read, 5);
    assert_eq!(at_snap.bytes_read, 4 * 4 * MIB + (SIZE - 36 * MIB));
    let head = digest_image(&pool, &name, None, &Options::default(), &mut |_, _| true).unwrap();
    assert_eq!(head.digest, shell_digest(&env, "site-b", &spec));
    assert_ne!(
        head.digest, at_snap.digest,
        "the snapshot is read, not the head"
    );
}

#[test]
fn sparse_copy_of_an_odd_size_has_an_equal_digest_and_keeps_its_holes() {
    let env = TestEnv::load();
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let (name, copy) = (unique("sparse-src"), unique("sparse-copy"));
    let _g = sparse_source(&env, &pool, &name);
    let _c = dest_guard(&env, &pool, &copy);

    let out = copy_image(
        &pool,
        &name,
        Some("s"),
        &pool,
        &copy,
        None,
        &Options::default(),
        &mut |_, _| true,
    )
    .unwrap();
    let want = shell_digest(&env, "site-b", &format!("{}/{name}@s", pool.name()));
    assert_eq!(out.digest, want);
    assert_eq!(
        shell_digest(&env, "site-b", &format!("{}/{copy}", pool.name())),
        want
    );
    let target = pool.open_image_read_only(&copy, None).unwrap();
    assert_eq!(checksum(&target), want);
    assert_eq!(target.info().unwrap().size, SIZE);
    assert_eq!(target.features().unwrap(), Features::DEFAULT);

    // Holes stay holes: nothing where the source has nothing, and about as
    // much allocated as the source (zero blocks inside written objects are
    // skipped; a write that starts inside a 4 KiB block covers that block).
    let source = pool.open_image_read_only(&name, Some("s")).unwrap();
    assert_eq!(allocated(&target, MIB, 3 * MIB), 0, "rest of object 0");
    assert_eq!(allocated(&target, 4 * MIB, 4 * MIB), 0, "object 1");
    assert_eq!(allocated(&target, 26 * MIB, 10 * MIB), 0, "objects 7-8");
    let (src_alloc, dst_alloc) = (allocated(&source, 0, SIZE), allocated(&target, 0, SIZE));
    assert!(
        dst_alloc <= src_alloc + 4096,
        "copy {dst_alloc} > source {src_alloc}"
    );
    let data = MIB + (MIB - 4096) + 6 * MIB + 5000;
    assert!(dst_alloc >= data, "copy {dst_alloc} < data {data}");
    // The last write starts 7345 bytes into the last chunk's second MiB:
    // from that 4 KiB block on, 8249 bytes.
    assert_eq!(out.bytes_written, 8 * MIB - 4096 + 8249);
    // The log is kept until the caller forgets it.
    let id = target.id().unwrap();
    assert!(!pool
        .read_object(&log_object(&id), 0, 32)
        .unwrap()
        .is_empty());
    forget_log(&pool, &copy).unwrap();
    assert!(pool
        .read_object(&log_object(&id), 0, 32)
        .unwrap()
        .is_empty());
}

#[test]
fn stopped_copy_resumes_with_only_the_chunks_it_lacks() {
    let env = TestEnv::load();
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let (name, copy) = (unique("resume-src"), unique("resume-copy"));
    let _g = sparse_source(&env, &pool, &name);
    let _c = dest_guard(&env, &pool, &copy);
    let full = digest_image(&pool, &name, Some("s"), &Options::default(), &mut |_, _| {
        true
    })
    .unwrap();
    let opts = Options {
        depth: 1,
        ..Options::default()
    };

    // Stop once the first 12 MiB (objects 0 and 2 read) are covered.
    let err = copy_image(
        &pool,
        &name,
        Some("s"),
        &pool,
        &copy,
        None,
        &opts,
        &mut |done, _| done < 12 * MIB,
    )
    .unwrap_err();
    assert!(matches!(err, TransferError::Stopped { .. }), "{err}");

    let again = copy_image(
        &pool,
        &name,
        Some("s"),
        &pool,
        &copy,
        None,
        &opts,
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(again.digest, full.digest);
    assert_eq!(again.chunks_resumed, 2, "objects 0 and 2");
    assert_eq!(again.chunks_read + again.chunks_resumed, full.chunks_read);
    assert_eq!(again.bytes_read, full.bytes_read - 2 * 4 * MIB);
    let target = pool.open_image_read_only(&copy, None).unwrap();
    assert_eq!(checksum(&target), full.digest);

    // A later state of the same image (here: its head, written after the
    // snapshot) goes on from this whole copy: only the chunks changed
    // since the snapshot are read, and the copy ends equal to the head.
    let head = digest_image(&pool, &name, None, &Options::default(), &mut |_, _| true).unwrap();
    let later = copy_image(
        &pool,
        &name,
        None,
        &pool,
        &copy,
        None,
        &opts,
        &mut |_, _| true,
    )
    .unwrap();
    assert_ne!(later.digest, full.digest);
    assert_eq!(later.digest, head.digest);
    assert!(
        later.chunks_resumed > 0 && later.chunks_read < head.chunks_read,
        "went on from the snapshot: {later:?}"
    );
    let target = pool.open_image_read_only(&copy, None).unwrap();
    assert_eq!(checksum(&target), head.digest);
    drop(target);
    forget_log(&pool, &copy).unwrap();
}

/// `ferry run` dies (as if killed) in the middle of the destination copy;
/// the re-run reads only the chunks that were not yet copied.
#[test]
fn run_killed_during_the_copy_resumes_with_the_missing_chunks() {
    killed_during_the_copy("mirror_mode: snapshot");
}

/// The same with a direct transfer, whose copy reads the source cluster;
/// nothing but the cut-over snapshot and its digest changes on the source.
#[test]
fn direct_run_killed_during_the_copy_resumes_with_the_missing_chunks() {
    killed_during_the_copy("transfer: direct");
}

fn killed_during_the_copy(options: &str) {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let v = unique("killcopy");
    let name = format!("volume-{v}");
    let cinder = env.var("DEST_CINDER_POOL");
    let size = 40 * MIB + 4096;
    {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        p.create_image(&name, size, Features::DEFAULT).unwrap();
        // Data in every object but the last 4 KiB one.
        write_with_holes(&p.open_image(&name).unwrap(), size, MIB as usize, 9);
    }
    let _guards = [
        ImageGuard {
            cfg: env.admin("site-b"),
            pool: cinder.into(),
            name: name.clone(),
        },
        ImageGuard {
            cfg: env.admin("site-b"),
            pool: cinder.into(),
            name: ferry::plan::partial_name(&name),
        },
        ImageGuard {
            cfg: env.admin("site-a"),
            pool: "volumes".into(),
            name: name.clone(),
        },
    ];
    let want = {
        let a = env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let sum = checksum(&p.open_image_read_only(&name, None).unwrap());
        sum
    };
    let (spec, state) = spec_in_temp_dir(
        &(env.spec_yaml(&format!("  - volume: {v}\n")) + &format!("options: {{{options}}}\n")),
    );
    let run = |crash: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["run", "--output", "json", "--state-dir"])
            .arg(&state)
            .arg(&spec)
            .env_remove("OS_CLOUD");
        if let Some(n) = crash {
            cmd.env("FERRY_TEST_CRASH_AFTER_CHUNKS", n);
        }
        cmd.output_bounded().unwrap()
    };

    let crashed = run(Some("3"));
    assert!(
        !crashed.status.success(),
        "the first run was to die in the copy"
    );
    let copied = |out: &std::process::Output| {
        step_events(out)
            .into_iter()
            .any(|e| e["step"] == "copy" && e["status"] == "done")
    };
    assert!(!copied(&crashed), "it died before the copy ended");

    let out = run(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detail: Value = step_events(&out)
        .into_iter()
        .find(|e| e["step"] == "copy" && e["status"] == "done")
        .expect("the re-run copied")["detail"]
        .clone();
    let detail = detail.as_str().unwrap().to_string();
    println!("the re-run's copy: {detail}");
    let number = |after: &str| -> u64 {
        let rest =
            &detail[detail.find(after).unwrap_or_else(|| panic!("{detail}")) + after.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (read, resumed, chunks) = (number("read "), number("resumed "), number(" of "));
    assert_eq!(chunks, 11, "{detail}");
    // The first ten chunks hold data (the last 4 KiB are a hole): each one
    // not resumed is read whole, once. The crash left three chunks in the
    // log; the hole chunk may be one of them.
    assert_eq!(resumed, 3, "{detail}");
    assert!(
        read == (10 - resumed) * 4 * MIB || read == (11 - resumed) * 4 * MIB,
        "{detail}"
    );

    let b = env.connect("site-b");
    let p = b.pool(cinder).unwrap();
    assert_eq!(
        checksum(&p.open_image_read_only(&name, None).unwrap()),
        want
    );
    if options.contains("direct") {
        // Never mirrored (no copy in the mirrored pool either), features as
        // they were; the cut-over snapshot carries the digest verified.
        let a = env.connect("site-a");
        let source_pool = a.pool("volumes").unwrap();
        let img = source_pool.open_image_read_only(&name, None).unwrap();
        assert_eq!(
            img.mirror_info().unwrap().state,
            ferry::ceph::ImageMirrorState::Disabled
        );
        assert_eq!(img.features().unwrap(), Features::DEFAULT);
        assert!(b
            .pool("volumes")
            .unwrap()
            .open_image_read_only(&name, None)
            .is_err());
        let verified = step_events(&out)
            .into_iter()
            .find(|e| e["step"] == "verify" && e["status"] == "done")
            .expect("verified");
        let sum = verified["detail"].as_str().unwrap().to_string();
        let meta = img.metadata_list().unwrap();
        let digest = meta
            .iter()
            .find(|(k, _)| k.ends_with(".digest"))
            .map(|(_, v)| v.clone())
            .expect("the cut-over's digest on the source");
        assert!(
            sum.contains(&digest[..12]),
            "verify said {sum}, the source holds {digest}"
        );
    }
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// The engine's copy speed beside `rbd bench --io-type write` and `rbd cp`
/// on the destination Cinder pool, same data, same run.
/// `cargo test --test tests copy_speed -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn copy_speed_beside_rbd_bench_write() {
    let env = TestEnv::load();
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let mib: u64 = std::env::var("FERRY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let size = mib * MIB;
    let (src, copy, cp, bench) = (
        unique("speed-src"),
        unique("speed-copy"),
        unique("speed-cp"),
        unique("speed-bench"),
    );
    let _g: Vec<ImageGuard> = [&src, &copy, &cp, &bench]
        .iter()
        .map(|n| dest_guard(&env, &pool, n))
        .collect();
    pool.create_image(&src, size, Features::DEFAULT).unwrap();
    {
        let img = pool.open_image(&src).unwrap();
        let mut noise = Noise::new(17);
        let mut buf = vec![0u8; 4 * MIB as usize];
        for k in 0..size / (4 * MIB) {
            noise.fill(&mut buf);
            img.write_at(k * 4 * MIB, &buf).unwrap();
        }
    }
    let spec = |n: &str| format!("{}/{n}", pool.name());
    let rate = |secs: f64| size as f64 / secs / 1e6;

    pool.create_image(&bench, size, Features::DEFAULT).unwrap();
    let t = std::time::Instant::now();
    let total = format!("{mib}M");
    env.cli(
        "rbd",
        "site-b",
        &[
            "bench",
            "--io-type",
            "write",
            "--io-size",
            "4M",
            "--io-threads",
            "16",
            "--io-total",
            &total,
            "--io-pattern",
            "seq",
            &spec(&bench),
        ],
    );
    let bench_rate = rate(t.elapsed().as_secs_f64());

    let mut opts = Options::default();
    if let Some(depth) = std::env::var("FERRY_BENCH_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.depth = depth;
    }
    let t = std::time::Instant::now();
    let out = copy_image(&pool, &src, None, &pool, &copy, None, &opts, &mut |_, _| {
        true
    })
    .unwrap();
    let engine_rate = rate(t.elapsed().as_secs_f64());
    assert_eq!(out.bytes_written, size);
    forget_log(&pool, &copy).unwrap();

    let t = std::time::Instant::now();
    env.cli(
        "rbd",
        "site-b",
        &["cp", "--no-progress", &spec(&src), &spec(&cp)],
    );
    let cp_rate = rate(t.elapsed().as_secs_f64());

    println!(
        "depth {}: {mib} MiB random on {}: rbd bench write {bench_rate:.0} MB/s, ferry copy (read+hash+write) {engine_rate:.0} MB/s ({:.0} %), rbd cp {cp_rate:.0} MB/s",
        opts.depth,
        pool.name(),
        100.0 * engine_rate / bench_rate
    );
}
