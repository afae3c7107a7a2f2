//! Shared helpers for tests against the real test environment
//! (`ceph-testenv/testenv up`): the env file, admin connections, unique
//! names, random data with holes, checksums, cleanup guards, a `ferry run`
//! watched as it goes, and a client writing an image as a guest does.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use ferry::ceph::{Cluster, ClusterConfig, ErrorKind, Image};

/// Tests that need rbd-mirror running take this for reading; the test that
/// stops the daemon takes it for writing, so they never overlap.
static MIRROR_DAEMON: RwLock<()> = RwLock::new(());

/// Held by tests that need rbd-mirror running (or whose report would change
/// without it). A panicking holder does not poison it for the others.
pub fn mirror_daemon_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MIRROR_DAEMON.read().unwrap_or_else(|e| e.into_inner())
}

/// Held by a test that stops rbd-mirror, or restarts a service other tests
/// use (Keystone, a Cinder API).
pub fn mirror_daemon_exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    MIRROR_DAEMON.write().unwrap_or_else(|e| e.into_inner())
}

/// The running test environment, read from its env file.
pub struct TestEnv {
    vars: HashMap<String, String>,
}

impl TestEnv {
    /// Loads the env file; panics with how to start the environment when it
    /// is missing, so a test never passes without it.
    pub fn load() -> TestEnv {
        let path = std::env::var_os("FERRY_TESTENV_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("ceph-testenv/state/env")
            });
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "test environment not found ({}: {e}). Start it with `ceph-testenv/testenv up` \
                 (or run `make test`, which does)",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TestEnv { vars }
    }

    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the testenv env file"))
    }

    pub fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(self.var(key))
    }

    /// Admin access to `site-a` or `site-b`.
    pub fn admin(&self, site: &str) -> ClusterConfig {
        let k = site_key(site);
        ClusterConfig {
            conf: self.path(&format!("{k}_CONF")),
            keyring: Some(self.path(&format!("{k}_ADMIN_KEYRING"))),
            client: "admin".into(),
        }
    }

    /// The least-privilege storage operator of `site-a` or `site-b`.
    pub fn operator(&self, site: &str) -> ClusterConfig {
        let k = site_key(site);
        ClusterConfig {
            conf: self.path(&format!("{k}_CONF")),
            keyring: Some(self.path(&format!("{k}_USER_KEYRING"))),
            client: self.var(&format!("{k}_USER")).to_string(),
        }
    }

    pub fn connect(&self, site: &str) -> Cluster {
        Cluster::connect(&self.admin(site), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("connecting to {site}: {e}"))
    }

    /// The demo spec `testenv up` writes, with `images` replaced.
    pub fn spec_yaml(&self, images_yaml: &str) -> String {
        let text = std::fs::read_to_string(self.path("FERRY_TESTENV_DIR").join("demo-spec.yaml"))
            .expect("demo-spec.yaml");
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("images:"))
            .map(|l| format!("{l}\n"))
            .collect();
        format!("{body}images:\n{images_yaml}")
    }

    /// The demo spec with both clouds of the test environment named.
    pub fn spec_yaml_with_clouds(&self, images_yaml: &str) -> String {
        self.spec_yaml(images_yaml)
            .replace("\nsource:\n", "\nsource:\n  cloud: source\n")
            .replace("\ndestination:\n", "\ndestination:\n  cloud: destination\n")
    }

    /// The test environment's clouds.yaml.
    pub fn clouds_yaml(&self) -> PathBuf {
        self.path("CLOUDS_YAML")
    }

    /// A connection to a cloud of the test environment's clouds.yaml.
    pub fn cloud(&self, name: &str) -> ferry::openstack::Cloud {
        let file = self.clouds_yaml().display().to_string();
        let cfg = ferry::openstack::config::load_with(name, &|k| {
            (k == "OS_CLIENT_CONFIG_FILE").then(|| file.clone())
        })
        .unwrap_or_else(|e| panic!("cloud {name}: {e}"));
        ferry::openstack::Cloud::connect(cfg).unwrap_or_else(|e| panic!("cloud {name}: {e:#}"))
    }

    /// Stops site-b's rbd-mirror daemon (SIGTERM; it leaves the service map).
    pub fn stop_rbd_mirror(&self) {
        let pid = std::fs::read_to_string(self.path("RBD_MIRROR_PID_FILE")).unwrap();
        let ok = Command::new("kill")
            .arg(pid.trim())
            .status()
            .unwrap()
            .success();
        assert!(ok, "stopping rbd-mirror");
    }

    /// The pid file of a site's monitor (`mon.a`), where its conf puts it.
    fn monitor_pid_file(&self, site: &str) -> PathBuf {
        self.path("FERRY_TESTENV_DIR")
            .join(site)
            .join("run/mon.a.pid")
    }

    /// Stops the monitor of `site` (SIGTERM, then SIGKILL after 30 s) and
    /// waits until it has exited. The guard starts it again when dropped,
    /// also when the test panics.
    pub fn stop_monitor(&self, site: &str) -> StoppedMonitor<'_> {
        let pid_file = self.monitor_pid_file(site);
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let pid = pid.trim().to_string();
        let guard = StoppedMonitor {
            env: self,
            site: site.to_string(),
        };
        let signal = |sig: &str| {
            let _ = Command::new("kill").args([sig, &pid]).status();
        };
        signal("-TERM");
        let start = Instant::now();
        while running(&pid) {
            if start.elapsed() > Duration::from_secs(30) {
                signal("-KILL");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        guard
    }

    /// Starts the monitor of `site` as `testenv up` does (`ceph-mon
    /// --cluster SITE -c SITE.conf -i a`, which daemonizes and writes its pid
    /// file), unless it runs; then waits until it answers.
    pub fn start_monitor(&self, site: &str) -> Result<(), String> {
        let pid_file = self.monitor_pid_file(site);
        let alive = std::fs::read_to_string(&pid_file).is_ok_and(|p| running(p.trim()));
        if !alive {
            let conf = self.path(&format!("{}_CONF", site_key(site)));
            let log = self
                .path("FERRY_TESTENV_DIR")
                .join(site)
                .join("log/mon.a.log");
            // Null streams: the daemon it forks would hold pipes open.
            let ok = daemon_command("ceph-mon")
                .args(["--cluster", site, "-c"])
                .arg(&conf)
                .args(["-i", "a"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map_err(|e| format!("running ceph-mon: {e}"))?
                .success();
            if !ok {
                return Err(format!(
                    "ceph-mon of {site} did not start (see {})",
                    log.display()
                ));
            }
        }
        let start = Instant::now();
        loop {
            let answered = Cluster::connect(&self.admin(site), Duration::from_secs(5))
                .map_err(|e| e.to_string())
                .and_then(|c| c.health().map_err(|e| e.to_string()));
            match answered {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > Duration::from_secs(60) => {
                    return Err(format!("the monitor of {site} does not answer: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Stops the OSD of `site` (`osd.0`; SIGTERM, so it has the monitor
    /// mark it down, as its peers would on a larger cluster) and waits until
    /// it has exited. The guard starts it again when dropped, also when the
    /// test panics, and waits until the cluster serves its data again.
    pub fn stop_osd(&self, site: &str) -> StoppedOsd<'_> {
        let pid_file = self
            .path("FERRY_TESTENV_DIR")
            .join(site)
            .join("run/osd.0.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let pid = pid.trim().to_string();
        let guard = StoppedOsd {
            env: self,
            site: site.to_string(),
        };
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while running(&pid) {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        guard
    }

    /// Starts the OSD of `site` as `testenv up` does, unless it runs; then
    /// waits until no OSD is down and every placement group is available.
    pub fn start_osd(&self, site: &str) -> Result<(), String> {
        let dir = self.path("FERRY_TESTENV_DIR").join(site);
        let alive =
            std::fs::read_to_string(dir.join("run/osd.0.pid")).is_ok_and(|p| running(p.trim()));
        if !alive {
            let conf = self.path(&format!("{}_CONF", site_key(site)));
            let ok = daemon_command("ceph-osd")
                .args(["--cluster", site, "-c"])
                .arg(&conf)
                .args(["-i", "0"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map_err(|e| format!("running ceph-osd: {e}"))?
                .success();
            if !ok {
                return Err(format!(
                    "ceph-osd of {site} did not start (see {})",
                    dir.join("log/osd.0.log").display()
                ));
            }
        }
        let start = Instant::now();
        loop {
            let health = Cluster::connect(&self.admin(site), Duration::from_secs(10))
                .map_err(|e| e.to_string())
                .and_then(|c| c.health().map_err(|e| e.to_string()));
            let serving = health.as_ref().is_ok_and(|h| {
                !h.checks
                    .iter()
                    .any(|c| c.code == "OSD_DOWN" || c.code == "PG_AVAILABILITY")
            });
            if serving {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(120) {
                return Err(format!("the OSD of {site} is not serving: {health:?}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Freezes site-b's rbd-mirror daemon (SIGSTOP) until the guard is
    /// dropped (SIGCONT), also when the test panics: what is mirrored
    /// waits meanwhile. Keep it short: after the manager's beacon grace
    /// (15 s in the test environment) the daemon leaves the service map.
    pub fn pause_rbd_mirror(&self) -> PausedRbdMirror {
        let pid = std::fs::read_to_string(self.path("RBD_MIRROR_PID_FILE")).unwrap();
        let pid = pid.trim().to_string();
        let ok = Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "pausing rbd-mirror");
        PausedRbdMirror { pid }
    }

    /// Starts whatever is stopped again (`testenv up`).
    pub fn restart(&self) {
        let up = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("ceph-testenv/testenv"))
            .arg("up")
            .env("FERRY_TESTENV_DIR", self.var("FERRY_TESTENV_DIR"))
            .status()
            .unwrap();
        assert!(up.success(), "testenv up");
    }

    /// Runs `ceph`/`rbd` as admin on a site, for test fixtures only.
    pub fn cli(&self, tool: &str, site: &str, args: &[&str]) -> String {
        let conf = self.path(&format!("{}_CONF", site_key(site)));
        let out = Command::new(tool)
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output_bounded()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A monitor [`TestEnv::stop_monitor`] stopped: started again on drop.
pub struct StoppedMonitor<'e> {
    env: &'e TestEnv,
    site: String,
}

impl Drop for StoppedMonitor<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.env.start_monitor(&self.site) {
            // A second panic while unwinding would abort the test binary.
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
    }
}

/// An OSD [`TestEnv::stop_osd`] stopped: started again on drop.
pub struct StoppedOsd<'e> {
    env: &'e TestEnv,
    site: String,
}

impl Drop for StoppedOsd<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.env.start_osd(&self.site) {
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
    }
}

/// rbd-mirror [`TestEnv::pause_rbd_mirror`] froze: thawed on drop.
pub struct PausedRbdMirror {
    pid: String,
}

impl Drop for PausedRbdMirror {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid]).status();
    }
}

/// A command starting daemon `program` without the file descriptors this
/// test inherited beyond 0-2 (as `without_inherited_fds` in
/// ceph-testenv/lib.sh does): a daemon keeping the lock file the tests run
/// under (`flock -s /tmp/ferry-testenv.lock cargo test`) would hold that
/// lock as long as it lives, and no test could take it exclusively again.
fn daemon_command(program: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(
            r#"for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then eval "exec $fd>&-"; fi; done; exec "$@""#,
        )
        .arg("bash")
        .arg(program);
    c
}

/// Whether process `pid` runs: exists and is not a zombie (a daemon's
/// parent is init here, which may reap it late).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn site_key(site: &str) -> &'static str {
    match site {
        "site-a" => "SITE_A",
        "site-b" => "SITE_B",
        other => panic!("unknown site {other}"),
    }
}

/// Writes `spec_text` to `migration.yaml` in a new temporary directory;
/// returns the spec path and a state directory beside it.
pub fn spec_in_temp_dir(spec_text: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(unique("ferry-spec"));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("migration.yaml");
    std::fs::write(&spec, spec_text).unwrap();
    (spec, dir.join("state"))
}

/// The `ferry run --output json` command of `spec` with its state in
/// `state`; `clouds` names the clouds.yaml to use. For a run a test sets
/// more on (an environment variable); else [`ferry_run`].
pub fn ferry_run_command(
    spec: &Path,
    state: &Path,
    extra: &[&str],
    clouds: Option<&Path>,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["run", "--output", "json", "--state-dir"])
        .arg(state)
        .args(extra)
        .arg(spec)
        .env_remove("OS_CLOUD");
    if let Some(c) = clouds {
        cmd.env("OS_CLIENT_CONFIG_FILE", c);
    }
    cmd
}

/// [`ferry_run_command`], run to its end.
pub fn ferry_run(
    spec: &Path,
    state: &Path,
    extra: &[&str],
    clouds: Option<&Path>,
) -> std::process::Output {
    ferry_run_command(spec, state, extra, clouds)
        .output_bounded()
        .unwrap()
}

/// Every JSON line ferry printed.
pub fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The per-image step events of a `--output json` run.
pub fn step_events(out: &std::process::Output) -> Vec<serde_json::Value> {
    json_lines(out)
        .into_iter()
        .filter(|e| e.get("image").is_some())
        .collect()
}

/// Runs the ferry binary with `args` followed by a spec file holding `spec_text`.
pub fn ferry_with_spec(args: &[&str], spec_text: &str) -> std::process::Output {
    let (spec, _) = spec_in_temp_dir(spec_text);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg(&spec)
        .output_bounded()
        .unwrap();
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
    out
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deterministic pseudo-random bytes (xorshift), seeded per image.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

/// Writes random data into every other `extent`-sized region, leaving holes
/// between; returns the bytes written.
pub fn write_with_holes(img: &Image<'_>, size: u64, extent: usize, seed: u64) -> u64 {
    let mut noise = Noise::new(seed);
    let mut buf = vec![0u8; extent];
    let mut written = 0;
    let mut off = 0u64;
    while off + extent as u64 <= size {
        noise.fill(&mut buf);
        img.write_at(off, &buf).expect("write");
        written += extent as u64;
        off += 2 * extent as u64 + 4096 * 3; // a hole, not object-aligned
    }
    written
}

/// Writes `count` random extents of `extent` bytes spread over the image
/// (the rest stays unallocated), as a mostly empty volume has.
pub fn write_sparse(img: &Image<'_>, size: u64, count: u64, extent: usize, seed: u64) {
    let mut noise = Noise::new(seed);
    let mut buf = vec![0u8; extent];
    let stride = size / count;
    for k in 0..count {
        noise.fill(&mut buf);
        img.write_at(k * stride + 4096 * k, &buf).expect("write");
    }
}

/// The digest of an image's contents (`ferry::transfer::digest`), as ferry
/// computes it: allocated extents only, holes as zeros.
pub fn checksum(img: &Image<'_>) -> String {
    use ferry::transfer::{rbd::RbdSource, transfer, HashOnly, NoLog, Options};
    let source = RbdSource::new(img).expect("checksum: image size");
    transfer::<_, HashOnly>(
        &source,
        None,
        &mut NoLog,
        &Options::default(),
        &mut |_, _| true,
    )
    .expect("checksum")
    .digest
}

/// Polls `f` until it returns Some or the deadline passes; panics naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Removes an image when dropped: disables mirroring first (which makes
/// rbd-mirror remove the peer's copy), removes snapshots, then the image.
pub struct ImageGuard {
    pub cfg: ClusterConfig,
    pub pool: String,
    pub name: String,
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let Ok(c) = Cluster::connect(&self.cfg, Duration::from_secs(10)) else {
            return;
        };
        let Ok(pool) = c.pool(&self.pool) else { return };
        // Again while it fails: rbd-mirror may hold a snapshot of its own
        // (a journal sync point) or a watch for a moment after mirroring
        // is disabled, and the image stays behind otherwise.
        for _ in 0..20 {
            if let Ok(img) = pool.open_image(&self.name) {
                let _ = img.mirror_disable(true);
                if let Ok(snaps) = img.snapshots() {
                    for s in snaps {
                        let _ = img.snap_unprotect(&s.name);
                        let _ = img.snap_remove(&s.name);
                    }
                }
            }
            match pool.remove_image(&self.name) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                _ => break,
            }
        }
    }
}

/// How long one command a test runs may take before it is killed and the
/// test fails with what it printed (`FERRY_TEST_COMMAND_SECONDS`, default
/// 900): a hung run fails its test instead of the whole suite's time limit.
pub fn command_limit() -> Duration {
    let secs = std::env::var("FERRY_TEST_COMMAND_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(900);
    Duration::from_secs(secs)
}

/// `Command::output` with a deadline ([`command_limit`]).
pub trait BoundedOutput {
    /// Runs the command to its end, collecting stdout and stderr; past the
    /// deadline it is killed (with its process group: ssh, agents, `sh`
    /// children) and the test panics with what it printed so far.
    fn output_bounded(&mut self) -> std::io::Result<std::process::Output>;
}

impl BoundedOutput for Command {
    fn output_bounded(&mut self) -> std::io::Result<std::process::Output> {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                buf
            })
        };
        let out = drain(Box::new(child.stdout.take().unwrap()));
        let err = drain(Box::new(child.stderr.take().unwrap()));
        let limit = command_limit();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > limit {
                // The whole group: a killed leader leaves its children
                // holding the pipes open otherwise.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                let (out, err) = (out.join().unwrap(), err.join().unwrap());
                panic!(
                    "{:?} was still running after {} s (FERRY_TEST_COMMAND_SECONDS) and was killed\nstderr:\n{}\nstdout:\n{}",
                    self,
                    limit.as_secs(),
                    String::from_utf8_lossy(&err),
                    String::from_utf8_lossy(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok(std::process::Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        })
    }
}

/// A `ferry run --output json` under way: its events as they arrive (with
/// when), and its stderr at the end. Killed when dropped before its end (a
/// failed test leaves no run waiting on).
pub struct Running {
    child: std::process::Child,
    events: std::sync::mpsc::Receiver<(Instant, serde_json::Value)>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    pub fn start(spec: &Path, state: &Path, extra: &[&str]) -> Running {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = ferry_run_command(spec, state, extra, None)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), serde_json::from_str(&line).unwrap()));
            }
        });
        Running {
            stderr: Some(drain(child.stderr.take().unwrap())),
            child,
            events,
        }
    }

    /// The first event (with when it came) that `want` picks, within
    /// `timeout`; None when the run ended or the time ran out before one.
    pub fn until(
        &self,
        timeout: Duration,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<(Instant, serde_json::Value)> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok((at, e)) if want(&e) => return Some((at, e)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Waits for the end, at most `limit` (then kills it): its status
    /// (None when killed) and stderr.
    pub fn end_within(mut self, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, stderr)
    }

    /// SIGKILL now, as `kill -9` or a crash of its host would end it: the
    /// events it printed that were not read yet, and its stderr.
    pub fn kill(mut self) -> (Vec<serde_json::Value>, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let mut rest = Vec::new();
        while let Ok((_, e)) = self.events.recv_timeout(Duration::from_secs(5)) {
            rest.push(e);
        }
        (rest, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A thread reading `r` to its end: what it read, as text.
fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = r.read_to_string(&mut text);
        text
    })
}

/// The hot region of an image that `ceph-testenv/hot-writer` writes, and
/// where its reader looks for the last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub offset_mib: u64,
    pub size_mib: u64,
}

impl Region {
    /// hot-writer's own default: 16 MiB at the start of the image.
    pub const DEFAULT: Region = Region {
        offset_mib: 0,
        size_mib: 16,
    };

    fn args(self) -> [String; 4] {
        [
            "--offset-mib".into(),
            self.offset_mib.to_string(),
            "--region-mib".into(),
            self.size_mib.to_string(),
        ]
    }
}

/// `ceph-testenv/hot-writer` with the admin conf of `site`.
fn hot_writer_command(env: &TestEnv, site: &str, mode: &str) -> Command {
    let mut cmd =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("ceph-testenv/hot-writer"));
    cmd.arg(mode)
        .arg("-c")
        .arg(env.path(&format!("{}_CONF", site_key(site))));
    cmd
}

/// A client writing an image as a guest does (`ceph-testenv/hot-writer`:
/// 4 KiB records with increasing sequence numbers at random offsets of a
/// hot region), holding it open, and with exclusive-lock locked, until
/// [`HotWriter::stop`]. Stopped when dropped, also when the test panics.
pub struct HotWriter {
    child: Option<std::process::Child>,
    image: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl HotWriter {
    /// Starts writing `pool/image` on `site` at `rate` writes per second
    /// inside `region`; returns once the first write returned (the image is
    /// in use from then on).
    pub fn start(
        env: &TestEnv,
        site: &str,
        pool: &str,
        image: &str,
        rate: u32,
        region: Region,
    ) -> HotWriter {
        use std::io::BufRead;
        use std::process::Stdio;
        let image = format!("{pool}/{image}");
        let mut child = hot_writer_command(env, site, "write")
            .args(["--rate", &rate.to_string()])
            .args(region.args())
            .arg(&image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting hot-writer on {image}: {e}"));
        // Its first line says the first write returned; the rest is kept for
        // a failure's message.
        let (tx, first) = std::sync::mpsc::channel();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_line(&mut text);
            let _ = tx.send(text.clone());
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            text
        });
        let mut writer = HotWriter {
            child: Some(child),
            image,
            stderr: Some(stderr),
        };
        match first.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("hot-writer: writing") => writer,
            _ => {
                writer.end();
                let said = writer.stderr.take().unwrap().join().unwrap();
                panic!(
                    "hot-writer on {} did not start writing: {said}",
                    writer.image
                );
            }
        }
    }

    /// Stops the writer as a guest's shutdown would (SIGTERM: the write in
    /// flight finishes, the image is closed and its lock released); returns
    /// the sequence number of its last write.
    pub fn stop(mut self) -> u64 {
        let out = self.end();
        let said = self.stderr.take().unwrap().join().unwrap();
        let (status, stdout) = out.expect("hot-writer was stopped already");
        assert!(
            status.success(),
            "hot-writer on {} failed ({status}): {said}",
            self.image
        );
        stdout.trim().parse().unwrap_or_else(|e| {
            panic!(
                "hot-writer on {} printed {stdout:?} ({e}): {said}",
                self.image
            )
        })
    }

    /// SIGTERM, then SIGKILL after 30 s; its status and stdout, None when
    /// it was ended before.
    fn end(&mut self) -> Option<(std::process::ExitStatus, String)> {
        let mut child = self.child.take()?;
        let out = drain(child.stdout.take().unwrap());
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Some((status, out.join().unwrap()))
    }
}

impl Drop for HotWriter {
    fn drop(&mut self) {
        self.end();
    }
}

/// The sequence number of the last hot-writer write found in hot-writer's
/// default region of `pool/image_at` (`image` or `image@snap`) on `site`
/// (0: none).
pub fn last_seq(env: &TestEnv, site: &str, pool: &str, image_at: &str) -> u64 {
    last_seq_in(env, site, pool, image_at, Region::DEFAULT)
}

/// [`last_seq`] in `region`.
pub fn last_seq_in(env: &TestEnv, site: &str, pool: &str, image_at: &str, region: Region) -> u64 {
    let out = hot_writer_command(env, site, "last")
        .args(region.args())
        .arg(format!("{pool}/{image_at}"))
        .output_bounded()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hot-writer last {pool}/{image_at} on {site}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("hot-writer last {pool}/{image_at} printed {text:?}: {e}"))
}
