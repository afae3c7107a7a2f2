//! A connection to one Ceph cluster (librados, through the `ceph` crate's
//! declarations) and the cluster-wide queries ferry needs: fsid, health,
//! fullness, the service map.
//!
//! ferry opens its own handle with `rados_create2` instead of the crate's
//! `connect_to_ceph` because it must set the cluster name, the keyring and the
//! timeouts before connecting (the crate cannot), and close exactly once.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::OnceLock;
use std::time::Duration;

use ceph::rados as sys;
use libc::{c_char, size_t};
use serde::{Deserialize, Serialize};

use super::error::{check, cstring, CephError, Result};
use super::pool::Pool;

/// How to reach a cluster: its conf file, the cephx user and its keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Path of the cluster's conf file; its stem is the cluster name
    /// (`site-a.conf` → `site-a`), as the `rbd` CLI takes it.
    pub conf: PathBuf,
    /// Keyring file for `client`; without it the conf's `keyring` applies.
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    /// cephx user id without the `client.` prefix.
    #[serde(default = "default_client")]
    pub client: String,
}

fn default_client() -> String {
    "admin".to_string()
}

impl Default for ClusterConfig {
    /// No cluster: no conf named.
    fn default() -> ClusterConfig {
        ClusterConfig {
            conf: PathBuf::new(),
            keyring: None,
            client: default_client(),
        }
    }
}

impl ClusterConfig {
    /// The cluster name ferry derives from the conf file name.
    /// Whether a conf is named (a spec of the stream path alone names no
    /// cluster).
    pub fn is_given(&self) -> bool {
        !self.conf.as_os_str().is_empty()
    }

    pub fn cluster_name(&self) -> String {
        self.conf
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("ceph")
            .to_string()
    }
}

/// How long a connection waits for the cluster, by kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting and monitor commands: answered at once by a healthy
    /// cluster, so a short limit reports a wrong address or a lost quorum
    /// quickly.
    pub control: Duration,
    /// Operations on OSDs (reads and writes of images, their metadata and
    /// mirror status): a slow request while placement groups peer is
    /// normal and must not fail a copy an hour long, so this is longer.
    /// Zero: no limit (the copy's progress is then the sign of life).
    pub data: Duration,
}

impl Timeouts {
    /// One limit for everything: for reading a few facts (check, plan).
    pub fn uniform(limit: Duration) -> Timeouts {
        Timeouts {
            control: limit,
            data: limit,
        }
    }

    /// librados's settings for these limits, in whole seconds (zero data
    /// limit: none; a control limit is at least one second). Pure.
    pub fn settings(&self) -> [(&'static str, u64); 3] {
        let control = self.control.as_secs().max(1);
        let data = match self.data.as_secs() {
            0 if self.data.is_zero() => 0,
            s => s.max(1),
        };
        [
            ("client_mount_timeout", control),
            ("rados_mon_op_timeout", control),
            ("rados_osd_op_timeout", data),
        ]
    }
}

/// How long an OSD operation of [`Cluster::readings`] may take: a small
/// reading that takes longer is "not yet" to a wait, which reads again.
pub const READING_LIMIT: Duration = Duration::from_secs(10);

/// An open connection to a cluster. librados handles are thread-safe.
pub struct Cluster {
    handle: sys::rados_t,
    name: String,
    client: String,
    /// How this connection was made, for [`Cluster::readings`] and
    /// [`Cluster::reader`].
    cfg: ClusterConfig,
    timeouts: Timeouts,
    /// The connection [`Cluster::readings`] opens, once.
    readings: OnceLock<Box<Cluster>>,
    /// A second connection with one librados callback thread, made on the
    /// first read-only image open; see [`Cluster::reader`].
    reader: OnceLock<Box<Cluster>>,
    /// Whether this is such a reader connection.
    one_thread: bool,
}

// SAFETY: librados documents rados_t as safe to share between threads.
unsafe impl Send for Cluster {}
// SAFETY: as above; every method takes &self and librados locks internally.
unsafe impl Sync for Cluster {}

impl Cluster {
    /// Connects, failing within about `timeout` when no monitor answers;
    /// every later operation has the same limit.
    pub fn connect(cfg: &ClusterConfig, timeout: Duration) -> Result<Cluster> {
        Cluster::connect_with(cfg, Timeouts::uniform(timeout))
    }

    /// Connects, failing within about `timeouts.control` when no monitor
    /// answers; monitor commands have that limit, OSD operations
    /// `timeouts.data`.
    pub fn connect_with(cfg: &ClusterConfig, timeouts: Timeouts) -> Result<Cluster> {
        Cluster::connect_threads(cfg, timeouts, false)
    }

    /// The connection read-only images are opened on: the same cluster and
    /// user, with one librados callback thread (connected on first use).
    /// librbd 16.2 ends the open of an image at a snapshot on one callback
    /// thread, wakes the opener on another, then takes the image's state
    /// lock again: an image closed at once is freed under that lock (the
    /// process aborts with std::system_error in thread io_context_pool,
    /// segfaults or hangs). Every open of a clone opens its parent at a
    /// snapshot. With one callback thread the wake-up waits until that lock
    /// is let go. Images that are changed stay on the main connection: with
    /// one callback thread `rbd_snap_unprotect` hangs (librbd waits inside
    /// a callback for another one).
    pub(crate) fn reader(&self) -> Result<&Cluster> {
        if self.one_thread {
            return Ok(self);
        }
        if let Some(r) = self.reader.get() {
            return Ok(r);
        }
        let r = Cluster::connect_threads(&self.cfg, self.timeouts, true)?;
        // Two threads may connect at once; the second connection is dropped.
        let _ = self.reader.set(Box::new(r));
        Ok(self.reader.get().expect("set above"))
    }

    fn connect_threads(
        cfg: &ClusterConfig,
        timeouts: Timeouts,
        one_thread: bool,
    ) -> Result<Cluster> {
        let name = cfg.cluster_name();
        let what = || format!("{} as client.{}", cfg.conf.display(), cfg.client);
        let c_name = cstring("cluster name", &name)?;
        let c_user = cstring("client name", &format!("client.{}", cfg.client))?;
        let mut handle: sys::rados_t = ptr::null_mut();
        // SAFETY: out-pointer to a local; strings live across the call.
        let ret = unsafe { sys::rados_create2(&mut handle, c_name.as_ptr(), c_user.as_ptr(), 0) };
        check(ret, "rados_create2", what)?;
        // From here on, Drop shuts the handle down on any error.
        let cluster = Cluster {
            handle,
            name,
            client: cfg.client.clone(),
            cfg: cfg.clone(),
            timeouts,
            readings: OnceLock::new(),
            reader: OnceLock::new(),
            one_thread,
        };
        let conf = path_cstring("conf file", &cfg.conf)?;
        // SAFETY: handle is a created, unconnected cluster; conf outlives the call.
        let ret = unsafe { sys::rados_conf_read_file(cluster.handle, conf.as_ptr()) };
        check(ret, "rados_conf_read_file", || {
            cfg.conf.display().to_string()
        })?;
        if let Some(keyring) = &cfg.keyring {
            if !keyring.exists() {
                return Err(CephError::call(
                    "open keyring",
                    keyring.display().to_string(),
                    -libc::ENOENT,
                ));
            }
            cluster.conf_set("keyring", &keyring.to_string_lossy())?;
        }
        for (opt, secs) in timeouts.settings() {
            cluster.conf_set(opt, &secs.to_string())?;
        }
        // Clients must not open admin sockets next to the daemons' ones.
        cluster.conf_set("admin_socket", "")?;
        cluster.conf_set("rbd_cache", "false")?;
        cluster.conf_set("rbd_disable_zero_copy_writes", "false")?;
        if one_thread {
            cluster.conf_set("librados_thread_count", "1")?;
        }
        // SAFETY: handle is configured and not yet connected.
        let ret = unsafe { sys::rados_connect(cluster.handle) };
        check(ret, "rados_connect", what)?;
        Ok(cluster)
    }

    /// A connection for small readings (a header, an xattr, a mirror
    /// status) whose OSD operations give up after [`READING_LIMIT`] (or
    /// the control limit if shorter), not the data limit: with the OSDs
    /// gone, a wait's reading must fail
    /// within seconds and let the wait name why and keep its timeout,
    /// instead of hanging for the data limit (600 s by default). Opened on
    /// first use; this very connection when its limits are that short
    /// already.
    pub fn readings(&self) -> Result<&Cluster> {
        let short = Timeouts {
            control: self.timeouts.control,
            data: self.timeouts.control.min(READING_LIMIT),
        };
        let data = self.timeouts.data;
        if !data.is_zero() && data <= short.data {
            return Ok(self);
        }
        if let Some(c) = self.readings.get() {
            return Ok(c);
        }
        let c = Cluster::connect_with(&self.cfg, short)?;
        // Two threads may connect at once: one connection is kept.
        let _ = self.readings.set(Box::new(c));
        Ok(self.readings.get().expect("set above"))
    }

    fn conf_set(&self, option: &str, value: &str) -> Result<()> {
        let o = cstring("config option", option)?;
        let v = cstring("config value", value)?;
        // SAFETY: handle is valid; strings outlive the call.
        let ret = unsafe { sys::rados_conf_set(self.handle, o.as_ptr(), v.as_ptr()) };
        check(ret, "rados_conf_set", || format!("{}: {option}", self.name)).map(|_| ())
    }

    /// The cluster name (from the conf file name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cephx user id this connection uses.
    pub fn client(&self) -> &str {
        &self.client
    }

    pub(crate) fn raw(&self) -> sys::rados_t {
        self.handle
    }

    /// The cluster's fsid.
    pub fn fsid(&self) -> Result<String> {
        let mut buf = [0 as c_char; 64];
        // SAFETY: buffer and its length match.
        let ret = unsafe { sys::rados_cluster_fsid(self.handle, buf.as_mut_ptr(), buf.len()) };
        check(ret, "rados_cluster_fsid", || self.name.clone())?;
        // SAFETY: librados NUL-terminates the fsid within the buffer.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
        Ok(s.to_string_lossy().into_owned())
    }

    /// Opens an I/O context on a pool.
    pub fn pool(&self, name: &str) -> Result<Pool<'_>> {
        Pool::open(self, name)
    }

    /// Runs a monitor command (JSON form) and returns its output buffer.
    pub fn mon_command(&self, cmd: &serde_json::Value) -> Result<Vec<u8>> {
        let text = cmd.to_string();
        let c_cmd = cstring("mon command", &text)?;
        super::counted(false);
        let mut cmds = [c_cmd.as_ptr()];
        let mut outbuf: *mut c_char = ptr::null_mut();
        let mut outbuf_len: size_t = 0;
        let mut outs: *mut c_char = ptr::null_mut();
        let mut outs_len: size_t = 0;
        // SAFETY: one command string; out-pointers to locals; no input buffer.
        let ret = unsafe {
            sys::rados_mon_command(
                self.handle,
                cmds.as_mut_ptr(),
                1,
                ptr::null(),
                0,
                &mut outbuf,
                &mut outbuf_len,
                &mut outs,
                &mut outs_len,
            )
        };
        // SAFETY: librados allocated these buffers with the given lengths.
        let out = unsafe { take_buffer(outbuf, outbuf_len) };
        // SAFETY: as above.
        let status = unsafe { take_buffer(outs, outs_len) };
        let prefix = cmd
            .get("prefix")
            .and_then(|p| p.as_str())
            .unwrap_or("?")
            .to_string();
        if ret < 0 {
            let mut e =
                CephError::call("rados_mon_command", format!("{}: {prefix}", self.name), ret);
            if let CephError::Call { detail, .. } = &mut e {
                let s = String::from_utf8_lossy(&status).trim().to_string();
                *detail = (!s.is_empty()).then_some(s);
            }
            return Err(e);
        }
        Ok(out)
    }

    fn mon_json<T: for<'de> Deserialize<'de>>(&self, prefix: &str) -> Result<T> {
        let out = self.mon_command(&serde_json::json!({"prefix": prefix, "format": "json"}))?;
        serde_json::from_slice(&out).map_err(|e| CephError::BadReply {
            op: "rados_mon_command",
            object: format!("{}: {prefix}", self.name),
            message: e.to_string(),
        })
    }

    /// How many OSDs are up, of how many (`osd stat`): an OSD that stops
    /// is marked down at once (or by its peers within seconds), long
    /// before its placement groups are reported stale.
    pub fn osds_up(&self) -> Result<(u32, u32)> {
        let raw: RawOsdStat = self.mon_json("osd stat")?;
        Ok((raw.num_up_osds, raw.num_osds))
    }

    /// Cluster health as the monitors report it.
    pub fn health(&self) -> Result<Health> {
        let out = self.mon_command(
            &serde_json::json!({"prefix": "health", "detail": "detail", "format": "json"}),
        )?;
        let raw: RawHealth = serde_json::from_slice(&out).map_err(|e| CephError::BadReply {
            op: "rados_mon_command",
            object: format!("{}: health detail", self.name),
            message: e.to_string(),
        })?;
        let mut checks: Vec<HealthCheck> = raw
            .checks
            .into_iter()
            .map(|(code, c)| HealthCheck {
                code,
                severity: c.severity,
                summary: c.summary.message,
                details: c.detail.into_iter().map(|d| d.message).collect(),
            })
            .collect();
        checks.sort_by(|a, b| a.code.cmp(&b.code));
        Ok(Health {
            status: raw.status,
            checks,
        })
    }

    /// Raw capacity and use of the whole cluster.
    pub fn usage(&self) -> Result<Usage> {
        let raw: RawDf = self.mon_json("df")?;
        Ok(Usage {
            total_bytes: raw.stats.total_bytes,
            used_bytes: raw.stats.total_used_raw_bytes,
            avail_bytes: raw.stats.total_avail_bytes,
        })
    }

    /// A pool's quotas and use (`osd pool get-quota`), and the room its
    /// OSDs have left for it (`df`).
    pub fn pool_space(&self, pool: &str) -> Result<PoolSpace> {
        let bad = |what: &str, e: serde_json::Error| CephError::BadReply {
            op: "rados_mon_command",
            object: format!("{}: {what} {pool}", self.name),
            message: e.to_string(),
        };
        let out = self.mon_command(&serde_json::json!({
            "prefix": "osd pool get-quota", "pool": pool, "format": "json"
        }))?;
        let q: RawQuota = serde_json::from_slice(&out).map_err(|e| bad("osd pool get-quota", e))?;
        let out = self.mon_command(&serde_json::json!({"prefix": "df", "format": "json"}))?;
        let df: RawPoolsDf = serde_json::from_slice(&out).map_err(|e| bad("df", e))?;
        Ok(PoolSpace {
            quota_bytes: q.quota_max_bytes,
            quota_objects: q.quota_max_objects,
            stored_bytes: q.current_num_bytes,
            objects: q.current_num_objects,
            max_avail: df
                .pools
                .iter()
                .find(|p| p.name == pool)
                .map(|p| p.stats.max_avail),
        })
    }

    /// Daemons of one service (e.g. `rbd-mirror`) registered in the service
    /// map, read from `status` so that a key with only monitor read caps works.
    pub fn service_daemons(&self, service: &str) -> Result<Vec<ServiceDaemon>> {
        let raw: RawStatus = self.mon_json("status")?;
        Ok(daemons_of(&raw, service))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: handle came from rados_create2 and is shut down only here.
        unsafe { sys::rados_shutdown(self.handle) };
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("client", &self.client)
            .finish()
    }
}

fn daemons_of(raw: &RawStatus, service: &str) -> Vec<ServiceDaemon> {
    let Some(svc) = raw.servicemap.services.get(service) else {
        return Vec::new();
    };
    svc.daemons
        .iter()
        // The "summary" entry is a string, not a daemon.
        .filter_map(|(gid, d)| Some((gid, serde_json::from_value::<RawDaemon>(d.clone()).ok()?)))
        .map(|(gid, d)| ServiceDaemon {
            gid: gid.clone(),
            id: d.metadata.get("id").cloned().unwrap_or_default(),
            hostname: d.metadata.get("hostname").cloned().unwrap_or_default(),
            start_stamp: d.start_stamp,
        })
        .collect()
}

/// Copies and frees a buffer librados allocated.
///
/// # Safety
/// `buf` must be null or a librados buffer of `len` bytes not yet freed.
unsafe fn take_buffer(buf: *mut c_char, len: size_t) -> Vec<u8> {
    if buf.is_null() {
        return Vec::new();
    }
    // SAFETY: per the function contract.
    let v = unsafe { std::slice::from_raw_parts(buf as *const u8, len) }.to_vec();
    // SAFETY: per the function contract; freed once.
    unsafe { sys::rados_buffer_free(buf) };
    v
}

fn path_cstring(what: &'static str, p: &Path) -> Result<std::ffi::CString> {
    cstring(what, &p.to_string_lossy())
}

/// Health status and its active checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `HEALTH_OK`, `HEALTH_WARN` or `HEALTH_ERR`.
    pub status: String,
    pub checks: Vec<HealthCheck>,
}

/// One active health check, e.g. `OSD_NEARFULL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub code: String,
    pub severity: String,
    pub summary: String,
    /// The detail lines, e.g. `pool 'volumes' is full (running out of quota)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// Raw capacity of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub avail_bytes: u64,
}

impl Usage {
    /// Used fraction of raw capacity, 0.0–1.0.
    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.used_bytes as f64 / self.total_bytes as f64
        }
    }
}

/// A daemon registered in the service map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDaemon {
    pub gid: String,
    pub id: String,
    pub hostname: String,
    pub start_stamp: String,
}

#[derive(Deserialize)]
struct RawHealth {
    status: String,
    #[serde(default)]
    checks: std::collections::BTreeMap<String, RawCheck>,
}

#[derive(Deserialize)]
struct RawCheck {
    severity: String,
    summary: RawSummary,
    #[serde(default)]
    detail: Vec<RawSummary>,
}

#[derive(Deserialize)]
struct RawSummary {
    message: String,
}

#[derive(Deserialize)]
struct RawOsdStat {
    num_osds: u32,
    num_up_osds: u32,
}

#[derive(Deserialize)]
struct RawDf {
    stats: RawDfStats,
}

#[derive(Deserialize)]
struct RawDfStats {
    total_bytes: u64,
    total_avail_bytes: u64,
    total_used_raw_bytes: u64,
}

/// A pool's quotas and use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSpace {
    /// Bytes the pool may hold (0: no quota).
    pub quota_bytes: u64,
    /// Objects the pool may hold (0: no quota).
    pub quota_objects: u64,
    /// Bytes stored (what the quota counts).
    pub stored_bytes: u64,
    pub objects: u64,
    /// Bytes the pool can still take before its OSDs are full, when `df`
    /// lists the pool.
    pub max_avail: Option<u64>,
}

#[derive(Deserialize)]
struct RawQuota {
    #[serde(default)]
    quota_max_bytes: u64,
    #[serde(default)]
    quota_max_objects: u64,
    #[serde(default)]
    current_num_bytes: u64,
    #[serde(default)]
    current_num_objects: u64,
}

#[derive(Deserialize)]
struct RawPoolsDf {
    #[serde(default)]
    pools: Vec<RawPoolDf>,
}

#[derive(Deserialize)]
struct RawPoolDf {
    name: String,
    stats: RawPoolDfStats,
}

#[derive(Deserialize)]
struct RawPoolDfStats {
    #[serde(default)]
    max_avail: u64,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    servicemap: RawServiceMap,
}

#[derive(Deserialize, Default)]
struct RawServiceMap {
    #[serde(default)]
    services: std::collections::BTreeMap<String, RawService>,
}

#[derive(Deserialize)]
struct RawService {
    #[serde(default)]
    daemons: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawDaemon {
    #[serde(default)]
    start_stamp: String,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_data_limits_go_to_their_own_settings() {
        let t = Timeouts {
            control: Duration::from_secs(30),
            data: Duration::from_secs(600),
        };
        assert_eq!(
            t.settings(),
            [
                ("client_mount_timeout", 30),
                ("rados_mon_op_timeout", 30),
                ("rados_osd_op_timeout", 600)
            ]
        );
        let none = Timeouts {
            control: Duration::ZERO,
            data: Duration::ZERO,
        };
        // No data limit is librados's 0; a control limit never is.
        assert_eq!(none.settings()[0].1, 1);
        assert_eq!(none.settings()[2].1, 0);
        let short = Timeouts::uniform(Duration::from_millis(300));
        assert_eq!(short.settings()[2].1, 1, "a limit below a second is one");
    }

    #[test]
    fn cluster_name_comes_from_conf_file_stem() {
        let cfg = ClusterConfig {
            conf: "/etc/ceph/site-a.conf".into(),
            keyring: None,
            client: "admin".into(),
        };
        assert_eq!(cfg.cluster_name(), "site-a");
    }

    #[test]
    fn service_map_daemons_skip_the_summary_entry() {
        let json = r#"{"servicemap":{"services":{"rbd-mirror":{"daemons":{"summary":"",
            "4142":{"start_stamp":"2026-11-22T19:32:42","gid":4142,
            "metadata":{"id":"b","hostname":"vm"}}}}}}}"#;
        let raw: RawStatus = serde_json::from_str(json).unwrap();
        let daemons = daemons_of(&raw, "rbd-mirror");
        assert_eq!(daemons.len(), 1);
        assert_eq!(daemons[0].id, "b");
        assert_eq!(daemons[0].gid, "4142");
        assert!(daemons_of(&raw, "rgw").is_empty());
    }

    #[test]
    fn usage_ratio_handles_empty_cluster() {
        let u = Usage {
            total_bytes: 0,
            used_bytes: 0,
            avail_bytes: 0,
        };
        assert_eq!(u.used_ratio(), 0.0);
    }
}
