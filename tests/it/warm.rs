//! Volumes moved while a client keeps writing them (`ceph-testenv/hot-writer`,
//! a guest's stand-in): the copy must hold the last write made before the
//! writer stopped. The cold path (today's) waits for the writer to stop
//! before its cut-over; the warm path (`options.warm`) keeps the copy current
//! in rounds meanwhile.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry::ceph::{Features, ImageMirrorState};
use serde_json::Value;

use crate::common::{
    checksum, last_seq, mirror_daemon_shared, spec_in_temp_dir, unique, write_with_holes,
    BoundedOutput, HotWriter, ImageGuard, Region, Running, TestEnv,
};
use crate::it::roles;

const MIB: u64 = 1 << 20;

/// Writes per second of the writer: a busy guest's small writes.
const RATE: u32 = 100;

/// A 64 MiB source volume of random data (with holes) that a test moves
/// while a hot-writer writes it, with a spec (options `options`) and a
/// state directory; the volume and its copy are removed at the end, after
/// whatever the test declared later (its writer, its run).
struct HotVolume {
    _guards: [ImageGuard; 2],
    env: TestEnv,
    /// The source image's name (`volume-<v>`).
    name: String,
    /// `volumes/<name>`, as events name it.
    image: String,
    /// The destination Cinder pool, where the copy goes under `name`.
    dest_pool: String,
    spec: PathBuf,
    state: PathBuf,
}

impl HotVolume {
    fn new(prefix: &str, seed: u64, options: &str) -> HotVolume {
        let env = TestEnv::load();
        let v = unique(prefix);
        let name = format!("volume-{v}");
        let dest_pool = env.var("DEST_CINDER_POOL").to_string();
        let size = 64 * MIB;
        {
            let a = env.connect("site-a");
            let p = a.pool("volumes").unwrap();
            p.create_image(&name, size, Features::DEFAULT).unwrap();
            write_with_holes(
                &p.open_image(&name).unwrap(),
                size,
                (2 * MIB) as usize,
                seed,
            );
        }
        let guards = [
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
        let (spec, state) =
            spec_in_temp_dir(&(env.spec_yaml(&format!("  - volume: {v}\n")) + options));
        HotVolume {
            _guards: guards,
            image: format!("volumes/{name}"),
            env,
            name,
            dest_pool,
            spec,
            state,
        }
    }

    /// A guest writing the volume, from now on.
    fn writer(&self) -> HotWriter {
        HotWriter::start(
            &self.env,
            "site-a",
            "volumes",
            &self.name,
            RATE,
            Region::DEFAULT,
        )
    }

    /// `ferry run` of the spec, under way.
    fn run(&self) -> Running {
        Running::start(&self.spec, &self.state, &["--wait-timeout", "120"])
    }

    /// Names of the source's snapshots that start with `prefix`.
    fn source_snaps(&self, prefix: &str) -> Vec<String> {
        let a = self.env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let img = p.open_image_read_only(&self.name, None).unwrap();
        img.snapshots()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    /// The checksum of the source at its (one) cut-over snapshot.
    fn at_cut_over(&self) -> String {
        let cuts = self.source_snaps("ferry-cutover");
        assert_eq!(
            cuts.len(),
            1,
            "one cut-over snapshot on the source: {cuts:?}"
        );
        let a = self.env.connect("site-a");
        let src = a.pool("volumes").unwrap();
        let img = src
            .open_image_read_only(&self.name, Some(&cuts[0]))
            .unwrap();
        checksum(&img)
    }

    /// The copy holds the writer's last write (`last`) and equals the
    /// source at the cut-over.
    fn copy_holds(&self, last: u64) {
        assert_eq!(
            last_seq(&self.env, "site-b", &self.dest_pool, &self.name),
            last,
            "the copy's last write against the writer's"
        );
        let at_cut = self.at_cut_over();
        let b = self.env.connect("site-b");
        let dest = b.pool(&self.dest_pool).unwrap();
        let copy = dest.open_image_read_only(&self.name, None).unwrap();
        assert_eq!(
            checksum(&copy),
            at_cut,
            "the copy against the source's cut-over"
        );
    }

    /// The source's mirroring state.
    fn mirroring(&self) -> ImageMirrorState {
        let a = self.env.connect("site-a");
        let p = a.pool("volumes").unwrap();
        let img = p.open_image_read_only(&self.name, None).unwrap();
        img.mirror_info().unwrap().state
    }
}

impl Drop for HotVolume {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.spec.parent().unwrap_or(Path::new("/nonexistent")));
    }
}

/// A 64 MiB source volume of random data written by a hot-writer while
/// `ferry run` (spec options `options`) moves it. `before_stop` watches the
/// run until the writer may stop (and checks what happened meanwhile); then
/// the writer stops and the run must end with a copy holding its last write,
/// equal to the source at the cut-over.
fn written_volume_moves(options: &str, before_stop: impl FnOnce(&Running, &str)) {
    let _daemon = mirror_daemon_shared();
    let vol = HotVolume::new("warm", 71, options);
    let writer = vol.writer();
    let run = vol.run();
    let image = vol.image.clone();
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
    vol.copy_holds(last);
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

/// The warm options of these tests: rounds every 2 s.
const WARM: &str = "options:\n  warm: true\n  warm_interval: 2\n";

/// The number of a `warm-rounds` "round" event (`round <n>: ...`).
fn round_of(e: &Value) -> u64 {
    let detail = e["detail"].as_str().unwrap_or_default();
    detail
        .strip_prefix("round ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a round event without its number: {e}"))
}

/// The chunks a round's copy read, and the image's (`(<read> of <all>
/// chunks)` in its event).
fn chunks_of(e: &Value) -> (u64, u64) {
    let detail = e["detail"].as_str().unwrap_or_default();
    let found = detail.rsplit_once(" chunks)").and_then(|(head, _)| {
        let (_, nums) = head.rsplit_once('(')?;
        let (read, of) = nums.split_once(" of ")?;
        Some((read.parse().ok()?, of.parse().ok()?))
    });
    found.unwrap_or_else(|| panic!("a round event without its chunks: {e}"))
}

/// Every event `run` prints until it ends (at most `limit`).
fn events_to_the_end(run: &Running, limit: Duration) -> Vec<Value> {
    let seen = std::cell::RefCell::new(Vec::new());
    let _ = run.until(limit, |e| {
        seen.borrow_mut().push(e.clone());
        false
    });
    seen.into_inner()
}

/// `kill -9` of ferry in the middle of a warm round (round 2's snapshot
/// taken and sent, its wait at the destination under way), the writer
/// going on: the next run goes on with rounds after the last one taken,
/// and once the writer stops it finishes with a copy holding the last
/// write, equal to the source at the cut-over.
#[test]
fn a_run_killed_during_a_warm_round_goes_on_with_rounds_and_the_copy_holds_the_last_write() {
    let _daemon = mirror_daemon_shared();
    let vol = HotVolume::new("warmkill", 72, WARM);
    let image = vol.image.clone();
    let writer = vol.writer();
    let run = vol.run();
    run.until(Duration::from_secs(60), |e| {
        is(e, &image, "warm-rounds", "round")
    })
    .unwrap_or_else(|| panic!("no first round of {image} in 60 s"));
    // Round 1 is done: the next wait for a round's snapshot is round 2's.
    let (_, waiting) = run
        .until(Duration::from_secs(30), |e| {
            is(e, &image, "warm-rounds", "waiting")
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("ferry-round-"))
        })
        .unwrap_or_else(|| panic!("no wait for round 2 of {image} to reach the destination"));
    let (rest, stderr) = run.kill();
    eprintln!("killed at {waiting}; after it: {rest:?}");
    assert!(
        !rest
            .iter()
            .any(|e| is(e, &image, "cut-over-snapshot", "done")),
        "the kill came after the rounds: {rest:?}\n{stderr}"
    );
    let rounds = vol.source_snaps("ferry-round-");
    assert!(
        rounds.iter().any(|n| n.ends_with("-2")),
        "killed while waiting for {}, the source holds {rounds:?}",
        waiting["detail"]
    );

    // Run again, the writer still going.
    let run = vol.run();
    let (_, round) = run
        .until(Duration::from_secs(60), |e| {
            is(e, &image, "warm-rounds", "round") || is(e, &image, "cut-over-snapshot", "waiting")
        })
        .unwrap_or_else(|| panic!("no round of {image} in the run after the kill"));
    assert_eq!(round["status"], "round", "{round}");
    eprintln!("the run again: {round}");
    assert!(
        round_of(&round) >= 3,
        "the run after the kill took round {} again: {round}",
        round_of(&round)
    );
    // The round after that one is incremental again: only the chunks of
    // the writer's region are read.
    let (_, next) = run
        .until(Duration::from_secs(30), |e| {
            is(e, &image, "warm-rounds", "round")
        })
        .unwrap_or_else(|| panic!("no second round of {image} after the kill"));
    eprintln!("then: {next}");
    let (read, of) = chunks_of(&next);
    let hot = Region::DEFAULT.size_mib * MIB / ferry::transfer::CHUNK_SIZE;
    assert!(
        read <= hot && of == 64 * MIB / ferry::transfer::CHUNK_SIZE,
        "round {} read {read} of {of} chunks; the writer writes {hot}: {next}",
        round_of(&next)
    );
    let last = writer.stop();
    let seen = events_to_the_end(&run, Duration::from_secs(90));
    let (status, stderr) = run.end_within(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "ferry run: {stderr}");
    assert!(
        seen.iter().any(|e| is(e, &image, "verify", "done")),
        "no verify of {image}: {seen:?}"
    );
    vol.copy_holds(last);
}

/// `kill -9` of ferry right after its cut-over snapshot (the writer
/// stopped, the copy not made yet): the next run takes no second cut-over
/// and finishes from it, the copy verified, holding the last write.
#[test]
fn a_run_killed_right_after_the_warm_cut_over_finishes_when_run_again() {
    let _daemon = mirror_daemon_shared();
    let vol = HotVolume::new("warmcut", 73, WARM);
    let image = vol.image.clone();
    let writer = vol.writer();
    let run = vol.run();
    run.until(Duration::from_secs(60), |e| {
        is(e, &image, "warm-rounds", "round")
    })
    .unwrap_or_else(|| panic!("no round of {image} in 60 s"));
    let last = writer.stop();
    run.until(Duration::from_secs(60), |e| {
        is(e, &image, "cut-over-snapshot", "done")
    })
    .unwrap_or_else(|| panic!("no cut-over of {image} in 60 s"));
    let (rest, stderr) = run.kill();
    eprintln!("killed after the cut-over; after it: {rest:?}");
    for step in ["copy", "verify", "publish"] {
        assert!(
            !rest.iter().any(|e| is(e, &image, step, "done")),
            "{step} was done before the kill: {rest:?}\n{stderr}"
        );
    }

    let run = vol.run();
    let seen = events_to_the_end(&run, Duration::from_secs(90));
    let (status, stderr) = run.end_within(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "ferry run: {stderr}");
    for step in ["verify", "publish"] {
        assert!(
            seen.iter().any(|e| is(e, &image, step, "done")),
            "no {step} of {image} in the run again: {seen:?}"
        );
    }
    assert!(
        !seen
            .iter()
            .any(|e| is(e, &image, "cut-over-snapshot", "done")
                && e["detail"] != "(already)"
                && e["detail"] != "(past)"),
        "the run again took the cut-over again: {seen:?}"
    );
    vol.copy_holds(last);
}

/// The guest writes again after the warm path's cut-over (its server
/// started again too early): the writes are not in the copy, so the run
/// stops at its check that the source is unchanged (or before), says so,
/// and the source keeps its mirroring and its cut-over snapshot. The cold
/// path's counterpart is in trust.rs.
#[test]
fn a_guest_writing_again_after_the_warm_cut_over_stops_the_run_before_its_cleanup() {
    let _daemon = mirror_daemon_shared();
    let vol = HotVolume::new("warmagain", 74, &format!("{WARM}  cleanup: true\n"));
    let image = vol.image.clone();
    let writer = vol.writer();
    let run = vol.run();
    run.until(Duration::from_secs(60), |e| {
        is(e, &image, "warm-rounds", "round")
    })
    .unwrap_or_else(|| panic!("no round of {image} in 60 s"));
    writer.stop();
    run.until(Duration::from_secs(60), |e| {
        is(e, &image, "cut-over-snapshot", "done")
    })
    .unwrap_or_else(|| panic!("no cut-over of {image} in 60 s"));
    let again = vol.writer();

    let seen = events_to_the_end(&run, Duration::from_secs(90));
    let (status, stderr) = run.end_within(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(
        stderr.contains("was written after the cut-over"),
        "{stderr}"
    );
    let failed: Vec<&Value> = seen
        .iter()
        .filter(|e| e["image"] == image.as_str() && e["status"] == "failed")
        .collect();
    // Caught at the check, or before it: never by a step after it.
    let caught_at = [
        "hash-source",
        "wait-for-sync",
        "copy",
        "verify",
        "publish",
        "confirm-verified",
        "check-source-unchanged",
    ];
    assert!(
        failed.iter().any(|e| {
            let detail = e["detail"].as_str().unwrap_or_default();
            detail.contains("was written after the cut-over")
                && caught_at.iter().any(|s| detail.contains(&format!("({s})")))
        }),
        "not failed by the check (or before it), saying the source changed: {failed:?}"
    );
    for step in [
        "disable-mirroring",
        "remove-cut-over-snapshot",
        "restore-features",
        "forget-original",
    ] {
        assert!(
            !seen.iter().any(|e| is(e, &image, step, "done")),
            "{step} was done: {seen:?}"
        );
        assert!(
            !failed.iter().any(|e| e["step"] == step),
            "failed at {step}, past the check: {failed:?}"
        );
    }
    drop(again);
    assert_eq!(
        vol.source_snaps("ferry-cutover").len(),
        1,
        "the cut-over went"
    );
    assert_eq!(vol.mirroring(), ImageMirrorState::Enabled, "mirroring went");
}

/// A role's script run in the background, its stderr read line by line;
/// killed (with its children) when dropped before its end.
struct Background {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    said: Vec<String>,
}

impl Background {
    fn start(mut cmd: Command) -> Background {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let err = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Background {
            child,
            lines,
            said: Vec::new(),
        }
    }

    /// The first line `want` picks within `timeout`; None when the script
    /// ended or the time ran out first.
    fn until(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            self.said.push(line.clone());
            if want(&line) {
                return Some(line);
            }
        }
    }

    /// Waits for the end (at most `limit`): its status, and all it said.
    fn end_within(mut self, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
        while self.until(limit, |_| false).is_some() {}
        let status = self.child.try_wait().unwrap().or_else(|| {
            std::thread::sleep(Duration::from_secs(1));
            self.child.try_wait().unwrap()
        });
        (status, self.said.join("\n"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// The split roles' scripts move a volume in use: the source storage
/// script, started while the guest writes, takes rounds until the volume
/// is idle, then its cut-over; the destination storage and cleanup scripts
/// follow in role order. The copy holds the last write, and the cleanup
/// leaves no round snapshot on the source.
#[test]
fn the_role_scripts_move_a_volume_in_use_with_rounds_until_it_is_idle() {
    let _daemon = mirror_daemon_shared();
    let vol = HotVolume::new("warmsh", 75, &format!("{WARM}  cleanup: true\n"));
    let env = &vol.env;
    let writer = vol.writer();
    let dir = vol.spec.parent().unwrap().to_path_buf();
    let bundle = dir.join("plan.yaml");
    let planned = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan", "--bundle"])
        .arg(&bundle)
        .arg(&vol.spec)
        .env_remove("OS_CLOUD")
        .output_bounded()
        .unwrap();
    roles::ok("plan", &planned);
    let plan: ferry::plan::Plan =
        serde_yaml::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    let split = roles::Split {
        env,
        dir: dir.clone(),
        bundle,
        runner: roles::Runner::Script,
        direct: false,
    };
    for role in roles::ROLES {
        roles::render(&split, role);
    }
    roles::ok("source-cloud", &split.run("source-cloud", 60, None));

    let mut cmd = split.command("source-storage", Path::new("sh"));
    cmd.arg(dir.join("source-storage.sh"))
        .env("FERRY_WAIT_TIMEOUT", "120");
    let mut source = Background::start(cmd);
    let first = ferry::plan::round_snap(&plan.id, 1);
    source
        .until(Duration::from_secs(60), |l| l.contains("round 1 taken"))
        .unwrap_or_else(|| {
            panic!(
                "no round from the source storage script in 60 s: {:#?}",
                source.said
            )
        });
    assert!(
        vol.source_snaps(&first).len() == 1,
        "the script said round 1 without its snapshot {first}"
    );
    // A second round, so that one round is removed by the script itself.
    source
        .until(Duration::from_secs(30), |l| l.contains("round 3 taken"))
        .unwrap_or_else(|| panic!("no third round: {:#?}", source.said));
    assert!(
        vol.source_snaps(&first).is_empty(),
        "round 1 kept beside round 3: {:?}",
        vol.source_snaps("ferry-round-")
    );
    let last = writer.stop();
    let (status, said) = source.end_within(Duration::from_secs(90));
    assert!(
        status.is_some_and(|s| s.success()),
        "source-storage ({status:?}):\n{said}"
    );
    assert_eq!(vol.source_snaps("ferry-cutover").len(), 1, "{said}");
    let at_cut = vol.at_cut_over();

    let out = split.run("destination-storage", 120, None);
    roles::ok("destination-storage", &out);
    let handoff = dir.join("verified.txt");
    std::fs::write(&handoff, split.handoff(&out)).unwrap();
    let handed = ferry::exec::parse_handoff(&split.handoff(&out), &plan.id).unwrap();
    assert_eq!(handed[&vol.image].sha256, at_cut, "the verified checksum");
    for role in ["destination-cloud", "cleanup"] {
        roles::ok(role, &split.run(role, 120, Some(&handoff)));
    }

    assert_eq!(
        last_seq(env, "site-b", &vol.dest_pool, &vol.name),
        last,
        "the copy's last write against the writer's"
    );
    let b = env.connect("site-b");
    let dest = b.pool(&vol.dest_pool).unwrap();
    let copy = dest.open_image_read_only(&vol.name, None).unwrap();
    assert_eq!(checksum(&copy), at_cut, "the copy against the cut-over");
    assert_eq!(
        vol.source_snaps("ferry-").len(),
        0,
        "{:?}",
        vol.source_snaps("")
    );
    assert_eq!(vol.mirroring(), ImageMirrorState::Disabled);
}

/// A guest that never stops: the source storage part's rounds give up at
/// the wait timeout (exit 2, naming the image still in use), whether ferry
/// runs it (`ferry run --role source-storage --wait-timeout`) or its
/// script does (`FERRY_WAIT_TIMEOUT`): one wait, read alike by the plan's
/// two interpreters. Before, the script's rounds went on for as long as
/// the guest wrote.
#[test]
fn warm_rounds_give_up_at_the_wait_timeout_in_ferry_and_in_the_script() {
    let _daemon = mirror_daemon_shared();
    let vol = HotVolume::new("warmbound", 76, WARM);
    let writer = vol.writer();
    let dir = vol.spec.parent().unwrap().to_path_buf();
    let bundle = dir.join("plan.yaml");
    let planned = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan", "--bundle"])
        .arg(&bundle)
        .arg(&vol.spec)
        .env_remove("OS_CLOUD")
        .output_bounded()
        .unwrap();
    roles::ok("plan", &planned);
    let split = |runner| roles::Split {
        env: &vol.env,
        dir: dir.clone(),
        bundle: bundle.clone(),
        runner,
        direct: false,
    };

    let out = split(roles::Runner::Ferry).run("source-storage", 6, None);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "ferry: {said}");
    assert!(said.contains("still in use"), "ferry: {said}");
    let ferrys = vol
        .source_snaps("ferry-round-")
        .iter()
        .filter_map(|n| n.rsplit('-').next()?.parse::<u64>().ok())
        .max()
        .expect("ferry gave up without a round");

    let script = split(roles::Runner::Script);
    roles::render(&script, "source-storage");
    let mut cmd = script.command("source-storage", Path::new("sh"));
    cmd.arg(dir.join("source-storage.sh"))
        .env("FERRY_WAIT_TIMEOUT", "6");
    let (status, said) = Background::start(cmd).end_within(Duration::from_secs(40));
    assert!(
        status.is_some(),
        "the source storage script still took rounds 40 s after its start, with FERRY_WAIT_TIMEOUT=6:\n{said}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(2), "script: {said}");
    assert!(said.contains("still in use"), "script: {said}");
    // Its rounds go on from ferry's.
    let next = format!("round {} taken", ferrys + 1);
    assert!(said.contains(&next), "{next}: {said}");
    assert!(
        vol.source_snaps("ferry-cutover").is_empty(),
        "a cut-over while the guest writes"
    );
    // The guest wrote all along (a writer that died would make the image
    // idle, and the rounds end as they should).
    assert!(writer.stop() > 0);
}
