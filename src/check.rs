//! `ferry check`: is everything in place to migrate? Connects to both
//! clusters, gathers what it finds (health, fullness, pool mirroring, peers,
//! rbd-mirror daemons, each listed image), then judges it in one pure
//! function, `assess`, that turns findings into problems with hints.

use std::path::PathBuf;

use serde::Serialize;

use crate::ceph::{
    CephError, Cluster, ClusterConfig, ErrorKind, Features, Health, ImageMirrorState, Locker,
    MirrorMode, MirrorPeer, Parent, PeerDirection, PoolMirrorMode, ServiceDaemon, SnapNamespace,
    Usage, Watcher,
};
use crate::plan::Site;
use crate::spec::{ImageKind, ImageRef, Spec, Transfer};
use crate::units::human_bytes;

/// Everything `check` found, and what it thinks of it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub source: SiteReport,
    pub destination: SiteReport,
    /// The clouds the spec names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clouds: Vec<CloudReport>,
    pub images: Vec<ImageReport>,
    /// The stream path's conversion hosts, when an image streams.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conversion_hosts: Vec<HostReport>,
    pub problems: Vec<Problem>,
}

/// A conversion host, as `ssh HOST <ferry> --version` found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    pub side: Site,
    pub ssh: String,
    /// What it answered (`ferry 0.1.0`).
    pub version: Option<String>,
    /// Why it did not.
    pub error: Option<String>,
}

/// Asks each conversion host for its ferry's version, both at once.
fn host_reports(c: &crate::spec::ConversionHosts) -> Vec<HostReport> {
    let probe = |side: Site, h: &crate::spec::ConversionHost| {
        let opts = crate::transfer::stream::relay::RelayOptions {
            ssh_options: [
                c.ssh_options.clone(),
                vec!["-o".into(), "ConnectTimeout=15".into()],
            ]
            .concat(),
            remote_ferry: h.ferry.clone(),
            ..Default::default()
        };
        let out = crate::transfer::stream::relay::ssh_command(&h.ssh, &opts, &["--version".into()])
            .stdin(std::process::Stdio::null())
            .output();
        let (version, error) = match out {
            Ok(o) if o.status.success() => (
                Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
                None,
            ),
            Ok(o) => (
                None,
                Some(format!(
                    "{} ({})",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("no message"),
                    o.status
                )),
            ),
            Err(e) => (None, Some(format!("running ssh: {e}"))),
        };
        HostReport {
            side,
            ssh: h.ssh.clone(),
            version,
            error,
        }
    };
    std::thread::scope(|sc| {
        let a = sc.spawn(|| probe(Site::Source, &c.source));
        let b = probe(Site::Destination, &c.destination);
        vec![a.join().expect("the probe does not panic"), b]
    })
}

impl CheckReport {
    /// True when nothing stands in the way of a migration.
    pub fn ok(&self) -> bool {
        !self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// What was found on one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct SiteReport {
    pub side: Site,
    pub cluster: String,
    pub conf: PathBuf,
    pub client: String,
    /// Why connecting failed, if it did.
    pub connect_error: Option<Failure>,
    pub fsid: Option<String>,
    pub health: Option<Health>,
    pub usage: Option<Usage>,
    pub pools: Vec<PoolReport>,
    /// rbd-mirror daemons registered with this cluster (destination only).
    pub rbd_mirror_daemons: Option<Vec<ServiceDaemon>>,
}

/// What was found in one cloud.
#[derive(Debug, Clone, Serialize)]
pub struct CloudReport {
    pub side: Site,
    /// The clouds.yaml entry (or `env`).
    pub name: String,
    pub region: Option<String>,
    /// Why connecting or authenticating failed, if it did.
    pub error: Option<String>,
    pub project_id: Option<String>,
    pub roles: Vec<String>,
    /// Service type → endpoint URL, or why none was found.
    pub endpoints: Vec<(String, Result<String, String>)>,
}

fn cloud_report(
    side: Site,
    name: &str,
    conn: &anyhow::Result<crate::openstack::Cloud>,
) -> CloudReport {
    use crate::openstack::Service;
    let mut r = CloudReport {
        side,
        name: name.into(),
        region: None,
        error: None,
        project_id: None,
        roles: vec![],
        endpoints: vec![],
    };
    match conn {
        Err(e) => r.error = Some(format!("{e:#}")),
        Ok(c) => {
            r.region = c.config().region.clone();
            r.project_id = c.project_id().ok();
            r.roles = c.roles().unwrap_or_default();
            for (label, svc) in [
                ("cinder", Service::BlockStorage),
                ("glance", Service::Image),
            ] {
                r.endpoints
                    .push((label.into(), c.endpoint(svc).map_err(|e| e.to_string())));
            }
        }
    }
    r
}

/// A Ceph error as the report keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<&CephError> for Failure {
    fn from(e: &CephError) -> Self {
        Failure {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// What a pool is for in the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolPurpose {
    /// Source Cinder pool (image-mode mirroring).
    Cinder,
    /// Source Glance pool (pool-mode mirroring).
    Glance,
    /// Destination pool receiving the mirrored Cinder images.
    MirroredCinder,
    /// Destination pool receiving the mirrored Glance images.
    MirroredGlance,
    /// Destination Cinder pool.
    DestCinder,
    /// Destination Glance pool.
    DestGlance,
}

impl PoolPurpose {
    fn describe(self) -> &'static str {
        match self {
            PoolPurpose::Cinder => "cinder",
            PoolPurpose::Glance => "glance",
            PoolPurpose::MirroredCinder => "mirrored cinder",
            PoolPurpose::MirroredGlance => "mirrored glance",
            PoolPurpose::DestCinder => "cinder",
            PoolPurpose::DestGlance => "glance",
        }
    }

    fn mirrored(self) -> bool {
        !matches!(self, PoolPurpose::DestCinder | PoolPurpose::DestGlance)
    }
}

/// What was found about one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolReport {
    pub name: String,
    pub purpose: PoolPurpose,
    pub error: Option<Failure>,
    pub mirror_mode: Option<PoolMirrorMode>,
    pub mirror_uuid: Option<String>,
    pub peers: Vec<MirrorPeer>,
}

/// What was found about one image to move.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub image: ImageRef,
    pub error: Option<Failure>,
    pub size: Option<u64>,
    pub features: Option<Features>,
    pub user_snapshots: Vec<String>,
    pub mirror_snapshots: usize,
    pub watchers: Vec<Watcher>,
    pub lockers: Vec<Locker>,
    /// Who uses the image, by the one rule (`ceph::image_users`).
    pub users: Vec<String>,
    /// The snapshot the image is a clone of.
    pub parent: Option<Parent>,
    /// The image starts with a LUKS header.
    pub encrypted: bool,
    pub mirroring: Option<MirrorMode>,
    pub primary: Option<bool>,
    /// The destination copy already exists (a previous run, or a name clash).
    pub dest_exists: Option<bool>,
    /// The volume takes the stream path (not read on the source cluster).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub streamed: bool,
}

impl ImageReport {
    /// In use: a client writes to it (`ceph::image_users`).
    pub fn in_use(&self) -> bool {
        !self.users.is_empty()
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Warning,
    Error,
}

/// Something that stands in the way (error) or deserves attention (warning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// What it is about: `site-b`, `site-a/volumes`, `site-a/volumes/volume-1`.
    pub subject: String,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

/// Runs the whole check. Connection failures do not abort it: they become
/// problems in the report.
pub fn run(spec: &Spec) -> CheckReport {
    let timeout = spec.timeout();
    // A spec whose volumes all stream may name no cluster: none is read.
    let connect_cluster = |c: &ClusterConfig| c.is_given().then(|| Cluster::connect(c, timeout));
    let src_conn = connect_cluster(&spec.source.cluster);
    let dst_conn = connect_cluster(&spec.destination.cluster);
    let connect = |name: &Option<String>| name.as_deref().map(crate::openstack::connect);
    let src_cloud = connect(&spec.source.cloud);
    let dst_cloud = connect(&spec.destination.cloud);
    // With a source cloud, entries name volumes and images that the cloud
    // resolves; an entry that does not resolve is a problem of its own.
    let mut unresolved = Vec::new();
    let refs: Vec<ImageRef> = match &src_cloud {
        Some(Ok(c)) => (0..spec.images.len())
            .flat_map(|i| match crate::plan::resolve_entry(spec, i, Some(c)) {
                Ok(found) => found.into_iter().map(|(r, _)| r).collect(),
                Err(e) => {
                    unresolved.push(Problem {
                        severity: Severity::Error,
                        subject: format!("images[{i}]"),
                        message: format!("{e:#}"),
                        hint: None,
                    });
                    Vec::new()
                }
            })
            .collect(),
        _ => spec.image_refs(),
    };

    let mut src_pools = vec![(spec.source.pools.cinder.clone(), PoolPurpose::Cinder)];
    if let Some(g) = &spec.source.pools.glance {
        src_pools.push((g.clone(), PoolPurpose::Glance));
    }
    let d = &spec.destination.pools;
    let mut dst_pools = vec![(
        d.mirrored_cinder
            .clone()
            .unwrap_or_else(|| spec.source.pools.cinder.clone()),
        PoolPurpose::MirroredCinder,
    )];
    if let Some(g) = d
        .mirrored_glance
        .clone()
        .or(spec.source.pools.glance.clone())
    {
        dst_pools.push((g, PoolPurpose::MirroredGlance));
    }
    dst_pools.push((d.cinder.clone(), PoolPurpose::DestCinder));
    if let Some(g) = &d.glance {
        dst_pools.push((g.clone(), PoolPurpose::DestGlance));
    }

    let site =
        |side, cfg: &ClusterConfig, conn: &Option<Result<Cluster, CephError>>, pools| match conn {
            Some(conn) => site_report(side, cfg, conn, pools),
            None => SiteReport::unread(side, "(none)".into(), PathBuf::new(), String::new()),
        };
    let source = site(Site::Source, &spec.source.cluster, &src_conn, &src_pools);
    let destination = site(
        Site::Destination,
        &spec.destination.cluster,
        &dst_conn,
        &dst_pools,
    );
    // Many images are read at once: each takes a dozen round trips.
    let (src, dst) = (
        src_conn.as_ref().and_then(|c| c.as_ref().ok()),
        dst_conn.as_ref().and_then(|c| c.as_ref().ok()),
    );
    let stream_all = spec.options.transfer == Transfer::Stream;
    let can_stream = spec.conversion_hosts.is_some() && spec.source.cloud.is_some();
    let images = crate::parallel::map(&refs, 16, |r| {
        let volume = r.kind == ImageKind::Cinder && spec.source.cloud.is_some();
        let streamed = || ImageReport {
            streamed: true,
            ..image_report(r.clone(), None, None)
        };
        if volume && stream_all {
            return streamed();
        }
        let i = image_report(r.clone(), src, dst);
        // A volume the source pool does not hold streams, as the plan has it.
        let missing = i
            .error
            .as_ref()
            .is_some_and(|f| f.kind == ErrorKind::NotFound);
        if volume && missing && can_stream {
            return streamed();
        }
        i
    });
    let conversion_hosts = match &spec.conversion_hosts {
        Some(c) if images.iter().any(|i| i.streamed) => host_reports(c),
        _ => Vec::new(),
    };
    let clouds = [
        (Site::Source, &spec.source.cloud, &src_cloud),
        (Site::Destination, &spec.destination.cloud, &dst_cloud),
    ]
    .into_iter()
    .filter_map(|(side, name, conn)| Some(cloud_report(side, name.as_deref()?, conn.as_ref()?)))
    .collect();
    let mut report = CheckReport {
        source,
        destination,
        clouds,
        images,
        conversion_hosts,
        problems: Vec::new(),
    };
    report.problems = assess(&report, spec.options.mirror_mode, spec.options.transfer);
    report.problems.extend(unresolved);
    report
}

impl SiteReport {
    /// A site nothing was read of yet.
    fn unread(side: Site, cluster: String, conf: PathBuf, client: String) -> SiteReport {
        SiteReport {
            side,
            cluster,
            conf,
            client,
            connect_error: None,
            fsid: None,
            health: None,
            usage: None,
            pools: Vec::new(),
            rbd_mirror_daemons: None,
        }
    }
}

fn site_report(
    side: Site,
    cfg: &ClusterConfig,
    conn: &Result<Cluster, CephError>,
    pools: &[(String, PoolPurpose)],
) -> SiteReport {
    let mut r = SiteReport::unread(
        side,
        cfg.cluster_name(),
        cfg.conf.clone(),
        cfg.client.clone(),
    );
    let c = match conn {
        Ok(c) => c,
        Err(e) => {
            r.connect_error = Some(e.into());
            return r;
        }
    };
    r.fsid = c.fsid().ok();
    r.health = c.health().ok();
    r.usage = c.usage().ok();
    if side == Site::Destination {
        r.rbd_mirror_daemons = c.service_daemons("rbd-mirror").ok();
    }
    for (name, purpose) in pools {
        let mut p = PoolReport {
            name: name.clone(),
            purpose: *purpose,
            error: None,
            mirror_mode: None,
            mirror_uuid: None,
            peers: Vec::new(),
        };
        match c.pool(name) {
            Err(e) => p.error = Some((&e).into()),
            Ok(pool) if purpose.mirrored() => {
                let gathered = (|| -> Result<(), CephError> {
                    p.mirror_mode = Some(pool.mirror_mode()?);
                    if p.mirror_mode != Some(PoolMirrorMode::Disabled) {
                        p.mirror_uuid = Some(pool.mirror_uuid()?);
                        p.peers = pool.mirror_peers()?;
                    }
                    Ok(())
                })();
                if let Err(e) = gathered {
                    p.error = Some((&e).into());
                }
            }
            Ok(_) => {}
        }
        r.pools.push(p);
    }
    r
}

fn image_report(image: ImageRef, src: Option<&Cluster>, dst: Option<&Cluster>) -> ImageReport {
    let mut r = ImageReport {
        image,
        error: None,
        size: None,
        features: None,
        user_snapshots: Vec::new(),
        mirror_snapshots: 0,
        watchers: Vec::new(),
        lockers: Vec::new(),
        users: Vec::new(),
        parent: None,
        encrypted: false,
        mirroring: None,
        primary: None,
        dest_exists: None,
        streamed: false,
    };
    if let Some(dst) = dst {
        r.dest_exists = dst
            .pool(&r.image.dest_pool)
            .and_then(|p| p.image_exists(&r.image.dest_name))
            .ok();
    }
    let Some(src) = src else {
        return r;
    };
    let gathered = (|| -> Result<(), CephError> {
        let pool = src.pool(&r.image.pool)?;
        // Read-only: it does not watch the image, so the watchers are others.
        let img = pool.open_image_read_only(&r.image.name, None)?;
        let info = img.info()?;
        r.size = Some(info.size);
        r.features = Some(info.features);
        for s in img.snapshots()? {
            // As a plan counts them: a snapshot in the trash (kept for a
            // clone) or of a group is no snapshot the user took of this image.
            match s.namespace {
                SnapNamespace::Mirror => r.mirror_snapshots += 1,
                SnapNamespace::User => r.user_snapshots.push(s.name),
                _ => {}
            }
        }
        r.watchers = img.watchers()?;
        r.lockers = img.lockers()?;
        r.users = crate::ceph::user_words(info.features, &r.watchers, &r.lockers);
        r.parent = img.parent()?;
        r.encrypted = img.has_luks_header()?;
        let mi = img.mirror_info()?;
        if mi.state != ImageMirrorState::Disabled {
            r.mirroring = img.mirror_mode()?;
            r.primary = Some(mi.primary);
        }
        Ok(())
    })();
    if let Err(e) = gathered {
        r.error = Some((&e).into());
    }
    r
}

/// Judges the findings. Pure: everything it needs is in the report.
/// With `Transfer::Direct` nothing is mirrored: pool mirroring, peers,
/// rbd-mirror and mirrored snapshots do not matter.
pub fn assess(report: &CheckReport, mode: MirrorMode, transfer: Transfer) -> Vec<Problem> {
    let mirror = transfer.is_mirror();
    let mut out = Vec::new();
    let mut push = |severity, subject: String, message: String, hint: Option<String>| {
        out.push(Problem {
            severity,
            subject,
            message,
            hint,
        })
    };
    // A site the spec names no cluster for (every volume streams).
    let sites = [&report.source, &report.destination]
        .into_iter()
        .filter(|s| !s.conf.as_os_str().is_empty());
    for site in sites {
        let subject = site.cluster.clone();
        if let Some(f) = &site.connect_error {
            let hint = match f.kind {
                ErrorKind::PermissionDenied => format!(
                    "the cluster refused client.{}'s key: check the keyring file and the client name in the spec",
                    site.client
                ),
                ErrorKind::TimedOut => format!(
                    "no monitor answered: check 'mon host' in {} and that the monitors are up and reachable",
                    site.conf.display()
                ),
                ErrorKind::NotFound => "a conf or keyring file named in the spec does not exist".to_string(),
                _ => "check the conf file, keyring and client name in the spec".to_string(),
            };
            push(
                Severity::Error,
                subject,
                format!("cannot connect to the {} cluster: {}", site.side, f.message),
                Some(hint),
            );
            continue;
        }
        if let Some(h) = &site.health {
            if h.status != "HEALTH_OK" {
                let sev = if h.status == "HEALTH_ERR" {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                let checks: Vec<String> = h
                    .checks
                    .iter()
                    .map(|c| format!("{}: {}", c.code, c.summary))
                    .collect();
                push(
                    sev,
                    subject.clone(),
                    format!("{} ({})", h.status, checks.join("; ")),
                    None,
                );
            }
        }
        if let Some(u) = &site.usage {
            let ratio = u.used_ratio();
            if ratio >= 0.85 {
                push(
                    if ratio >= 0.95 {
                        Severity::Error
                    } else {
                        Severity::Warning
                    },
                    subject.clone(),
                    format!("cluster is {:.0}% full", ratio * 100.0),
                    Some("mirrored images and their copies need room on the destination".into()),
                );
            }
        }
        for p in &site.pools {
            let subject = format!("{}/{}", site.cluster, p.name);
            if let Some(f) = &p.error {
                let hint = match f.kind {
                    ErrorKind::NotFound => format!(
                        "no pool {:?} on cluster {}: check the pool names in the spec ('ceph osd pool ls')",
                        p.name, site.cluster
                    ),
                    ErrorKind::PermissionDenied => format!(
                        "client.{} has no caps on this pool: grant 'profile rbd pool={}'",
                        site.client, p.name
                    ),
                    _ => String::new(),
                };
                push(
                    Severity::Error,
                    subject,
                    format!("{} pool: {}", p.purpose.describe(), f.message),
                    (!hint.is_empty()).then_some(hint),
                );
                continue;
            }
            if !p.purpose.mirrored() || !mirror {
                continue;
            }
            match p.mirror_mode {
                Some(PoolMirrorMode::Disabled) => push(
                    Severity::Error,
                    subject.clone(),
                    "mirroring is disabled on this pool".into(),
                    Some(format!(
                        "rbd mirror pool enable {} {}",
                        p.name,
                        if matches!(p.purpose, PoolPurpose::Cinder | PoolPurpose::MirroredCinder) {
                            "image"
                        } else {
                            "pool"
                        }
                    )),
                ),
                Some(PoolMirrorMode::Pool)
                    if mode == MirrorMode::Snapshot
                        && matches!(
                            p.purpose,
                            PoolPurpose::Cinder | PoolPurpose::MirroredCinder
                        ) =>
                {
                    push(
                        Severity::Error,
                        subject.clone(),
                        "pool-mode mirroring cannot carry snapshot-based mirroring".into(),
                        Some("use image mode on the Cinder pools, or mirror_mode: journal".into()),
                    )
                }
                _ => {}
            }
        }
    }

    // Peering: each destination mirrored pool must receive from the source pool.
    for dp in report.destination.pools.iter().filter(|_| mirror) {
        let src_purpose = match dp.purpose {
            PoolPurpose::MirroredCinder => PoolPurpose::Cinder,
            PoolPurpose::MirroredGlance => PoolPurpose::Glance,
            _ => continue,
        };
        if dp.error.is_some()
            || dp.mirror_mode != Some(PoolMirrorMode::Image)
                && dp.mirror_mode != Some(PoolMirrorMode::Pool)
        {
            continue;
        }
        let subject = format!("{}/{}", report.destination.cluster, dp.name);
        let receiving: Vec<&MirrorPeer> = dp
            .peers
            .iter()
            .filter(|p| p.direction != PeerDirection::TxOnly)
            .collect();
        if receiving.is_empty() {
            push(
                Severity::Error,
                subject,
                format!(
                    "no mirror peer receives into this pool from {}",
                    report.source.cluster
                ),
                Some(format!(
                    "on the source: rbd mirror pool peer bootstrap create {0} > token; on the destination: rbd mirror pool peer bootstrap import --direction rx-only {1} token",
                    report.source.pools.iter().find(|p| p.purpose == src_purpose).map_or("<pool>", |p| &p.name),
                    dp.name
                )),
            );
            continue;
        }
        let src_uuid = report
            .source
            .pools
            .iter()
            .find(|p| p.purpose == src_purpose)
            .and_then(|p| p.mirror_uuid.as_deref())
            .filter(|u| !u.is_empty());
        if let Some(src_uuid) = src_uuid {
            let known: Vec<&str> = receiving
                .iter()
                .map(|p| p.mirror_uuid.as_str())
                .filter(|u| !u.is_empty())
                .collect();
            if !known.is_empty() && !known.contains(&src_uuid) {
                push(
                    Severity::Error,
                    subject,
                    format!(
                        "this pool's peer is not the source pool (peer mirror uuid {}, source pool's {src_uuid})",
                        known.join(", ")
                    ),
                    Some("the destination is peered with another cluster or pool: check the spec's clusters".into()),
                );
            }
        }
    }
    if report.destination.connect_error.is_none() && mirror {
        match &report.destination.rbd_mirror_daemons {
            Some(d) if d.is_empty() => push(
                Severity::Error,
                report.destination.cluster.clone(),
                "no rbd-mirror daemon is running for the destination cluster".into(),
                Some(format!(
                    "start rbd-mirror on a host of {} (e.g. systemctl start ceph-rbd-mirror@<id>); nothing replicates without it",
                    report.destination.cluster
                )),
            ),
            None => push(
                Severity::Warning,
                report.destination.cluster.clone(),
                "could not read the service map to find rbd-mirror daemons".into(),
                None,
            ),
            _ => {}
        }
    }

    let here = concat!("ferry ", env!("CARGO_PKG_VERSION"));
    for h in &report.conversion_hosts {
        let subject = format!("conversion host {} ({})", h.ssh, h.side);
        match (&h.version, &h.error) {
            (_, Some(e)) => push(
                Severity::Error,
                subject,
                format!("cannot run ferry there over ssh: {e}"),
                Some(format!(
                    "ssh {} <ferry> --version must answer: install ferry there (or set its `ferry` command), and check the key, known_hosts and conversion_hosts.ssh_options",
                    h.ssh
                )),
            ),
            (Some(v), None) if v != here => push(
                Severity::Warning,
                subject,
                format!("runs {v}, this is {here}"),
                Some("the stream protocol refuses another version: install the same ferry".into()),
            ),
            _ => {}
        }
    }
    for img in &report.images {
        let subject = format!("{}/{}", report.source.cluster, img.image.source_spec());
        if img.streamed {
            continue;
        }
        if let Some(f) = &img.error {
            let message = if f.kind == ErrorKind::NotFound {
                format!("image not found ({})", f.message)
            } else {
                f.message.clone()
            };
            push(Severity::Error, subject, message, None);
            continue;
        }
        if img.encrypted {
            push(
                Severity::Error,
                subject.clone(),
                "encrypted (LUKS header): its key is in the source cloud's key manager, which ferry cannot carry yet".into(),
                Some("move it another way, or decrypt it first".into()),
            );
        }
        if let Some(p) = &img.parent {
            let how = if mirror {
                format!(
                    "copied out flat on the source first ({} more in pool {} until cleanup), and that copy is mirrored",
                    img.size.map(human_bytes).unwrap_or_default(),
                    img.image.pool
                )
            } else {
                "read through its parent".to_string()
            };
            push(
                Severity::Warning,
                subject.clone(),
                format!(
                    "a clone of {p} (clone v{}): {how}; it arrives as a flat image (with options.clones: clone-of-parent, as a clone of its Glance parent's destination copy when that can be had: `ferry plan` says which)",
                    p.clone_format
                ),
                None,
            );
        }
        if img.in_use() {
            push(
                Severity::Warning,
                subject.clone(),
                format!("in use: {}", img.users.join("; ")),
                Some("the cut-over waits until no client writes: shut the server off first (writes after the cut-over would not be moved)".into()),
            );
        }
        if !img.user_snapshots.is_empty() && mirror {
            push(
                Severity::Warning,
                subject.clone(),
                format!(
                    "{} snapshot(s) will be mirrored too: {}",
                    img.user_snapshots.len(),
                    img.user_snapshots.join(", ")
                ),
                Some("delete the snapshots that are not needed before migrating".into()),
            );
        }
        if img.primary == Some(false) {
            push(
                Severity::Error,
                subject.clone(),
                "image is a non-primary mirror copy on the source".into(),
                Some("the source must hold the primary image".into()),
            );
        }
        if img.dest_exists == Some(true) {
            push(
                Severity::Warning,
                subject,
                format!(
                    "{}/{} already exists on {}",
                    img.image.dest_pool, img.image.dest_name, report.destination.cluster
                ),
                Some("a previous run left it, or the name is taken: choose dest_name".into()),
            );
        }
    }
    for c in &report.clouds {
        let subject = format!("cloud {}", c.name);
        if let Some(e) = &c.error {
            push(
                Severity::Error,
                subject,
                e.clone(),
                Some("check clouds.yaml (OS_CLIENT_CONFIG_FILE) or the OS_* variables, and that Keystone is reachable".into()),
            );
            continue;
        }
        for (svc, ep) in &c.endpoints {
            if let Err(e) = ep {
                push(
                    Severity::Error,
                    subject.clone(),
                    e.clone(),
                    Some(format!("ferry needs the {svc} service: set region_name or interface in clouds.yaml")),
                );
            }
        }
        if c.side == Site::Destination && !c.roles.iter().any(|r| r == "admin") {
            push(
                Severity::Warning,
                subject,
                "the destination credentials lack the admin role, which Cinder's default policy requires for manage-existing and for listing backend pools".into(),
                Some("use an admin of the destination project, or a policy granting volume_extension:volume_manage; set destination.cinder_host".into()),
            );
        }
    }
    out
}

/// Renders the report for people.
pub fn render_text(r: &CheckReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for c in &r.clouds {
        let _ = writeln!(
            s,
            "{} cloud {}{}",
            c.side,
            c.name,
            c.region
                .as_deref()
                .map(|x| format!(" (region {x})"))
                .unwrap_or_default()
        );
        if c.error.is_some() {
            let _ = writeln!(s, "  not connected");
            continue;
        }
        let _ = writeln!(
            s,
            "  project     {} (roles: {})",
            c.project_id.as_deref().unwrap_or("?"),
            c.roles.join(", ")
        );
        for (svc, ep) in &c.endpoints {
            let _ = writeln!(
                s,
                "  {svc:<11} {}",
                match ep {
                    Ok(u) => u.clone(),
                    Err(_) => "MISSING".into(),
                }
            );
        }
    }
    for site in [&r.source, &r.destination]
        .into_iter()
        .filter(|s| !s.conf.as_os_str().is_empty())
    {
        let _ = writeln!(
            s,
            "{} cluster {} as client.{}{}",
            site.side,
            site.cluster,
            site.client,
            site.fsid
                .as_deref()
                .map(|f| format!(" (fsid {f})"))
                .unwrap_or_default()
        );
        if site.connect_error.is_some() {
            let _ = writeln!(s, "  not connected");
            continue;
        }
        if let Some(h) = &site.health {
            let _ = writeln!(s, "  health      {}", h.status);
        }
        if let Some(u) = &site.usage {
            let _ = writeln!(
                s,
                "  usage       {} of {} ({:.1}%)",
                human_bytes(u.used_bytes),
                human_bytes(u.total_bytes),
                u.used_ratio() * 100.0
            );
        }
        for p in &site.pools {
            let state = if p.error.is_some() {
                "ERROR".to_string()
            } else if let Some(m) = p.mirror_mode {
                let peers: Vec<String> = p
                    .peers
                    .iter()
                    .map(|x| {
                        format!(
                            "{} {}",
                            if x.site_name.is_empty() {
                                &x.uuid
                            } else {
                                &x.site_name
                            },
                            x.direction
                        )
                    })
                    .collect();
                format!(
                    "mirroring {m}{}",
                    if peers.is_empty() {
                        String::new()
                    } else {
                        format!(", peers: {}", peers.join(", "))
                    }
                )
            } else {
                "present".to_string()
            };
            let _ = writeln!(
                s,
                "  pool        {:<20} {:<16} {state}",
                p.name,
                p.purpose.describe()
            );
        }
        if let Some(d) = &site.rbd_mirror_daemons {
            let ids: Vec<String> = d
                .iter()
                .map(|d| format!("{} on {}", d.id, d.hostname))
                .collect();
            let _ = writeln!(
                s,
                "  rbd-mirror  {}",
                if ids.is_empty() {
                    "none running".to_string()
                } else {
                    ids.join(", ")
                }
            );
        }
    }
    if !r.images.is_empty() {
        let _ = writeln!(s, "images");
        for i in &r.images {
            let kind = match i.image.kind {
                ImageKind::Cinder => "cinder",
                ImageKind::Glance => "glance",
            };
            if i.error.is_some() {
                let _ = writeln!(s, "  {:<40} {kind:<7} ERROR", i.image.source_spec());
                continue;
            }
            if i.streamed {
                let _ = writeln!(
                    s,
                    "  {:<40} {kind:<7} streams through the conversion hosts",
                    i.image.source_spec()
                );
                continue;
            }
            let _ = writeln!(
                s,
                "  {:<40} {kind:<7} {:>10}  snaps {:<2} {}  [{}]{}",
                i.image.source_spec(),
                i.size.map(human_bytes).unwrap_or_default(),
                i.user_snapshots.len(),
                if i.in_use() { "IN USE" } else { "idle  " },
                i.features.map(|f| f.to_string()).unwrap_or_default(),
                i.mirroring
                    .map(|m| format!("  mirroring {m}"))
                    .unwrap_or_default(),
            );
        }
    }
    if !r.conversion_hosts.is_empty() {
        let _ = writeln!(s, "conversion hosts");
        for h in &r.conversion_hosts {
            let _ = writeln!(
                s,
                "  {:<11} {:<28} {}",
                h.side.to_string(),
                h.ssh,
                h.version.as_deref().unwrap_or("UNREACHABLE")
            );
        }
    }
    if !r.problems.is_empty() {
        let _ = writeln!(s, "problems");
        for p in &r.problems {
            let sev = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(s, "  {sev}: {}: {}", p.subject, p.message);
            if let Some(h) = &p.hint {
                let _ = writeln!(s, "      hint: {h}");
            }
        }
    }
    let errors = r
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = r.problems.len() - errors;
    let _ = writeln!(
        s,
        "{}: {errors} error(s), {warnings} warning(s)",
        if r.ok() { "ready" } else { "NOT READY" }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceph::HealthCheck;

    fn site(side: Site, cluster: &str, pools: Vec<PoolReport>) -> SiteReport {
        SiteReport {
            side,
            cluster: cluster.into(),
            conf: format!("/etc/ceph/{cluster}.conf").into(),
            client: "admin".into(),
            connect_error: None,
            fsid: Some("f".into()),
            health: Some(Health {
                status: "HEALTH_OK".into(),
                checks: vec![],
            }),
            usage: Some(Usage {
                total_bytes: 100,
                used_bytes: 10,
                avail_bytes: 90,
            }),
            pools,
            rbd_mirror_daemons: (side == Site::Destination).then(|| {
                vec![ServiceDaemon {
                    gid: "1".into(),
                    id: "b".into(),
                    hostname: "h".into(),
                    start_stamp: String::new(),
                }]
            }),
        }
    }

    fn pool(
        name: &str,
        purpose: PoolPurpose,
        mode: PoolMirrorMode,
        peers: Vec<MirrorPeer>,
    ) -> PoolReport {
        PoolReport {
            name: name.into(),
            purpose,
            error: None,
            mirror_mode: Some(mode),
            mirror_uuid: Some(format!("uuid-{name}-{purpose:?}")),
            peers,
        }
    }

    fn peer(direction: PeerDirection, mirror_uuid: &str) -> MirrorPeer {
        MirrorPeer {
            uuid: "p".into(),
            direction,
            site_name: "site-a".into(),
            mirror_uuid: mirror_uuid.into(),
            client_name: String::new(),
        }
    }

    fn healthy() -> CheckReport {
        let src_uuid = "uuid-volumes-Cinder";
        CheckReport {
            source: site(
                Site::Source,
                "site-a",
                vec![pool(
                    "volumes",
                    PoolPurpose::Cinder,
                    PoolMirrorMode::Image,
                    vec![peer(PeerDirection::TxOnly, "")],
                )],
            ),
            destination: site(
                Site::Destination,
                "site-b",
                vec![pool(
                    "volumes",
                    PoolPurpose::MirroredCinder,
                    PoolMirrorMode::Image,
                    vec![peer(PeerDirection::RxOnly, src_uuid)],
                )],
            ),
            clouds: vec![],
            images: vec![],
            conversion_hosts: vec![],
            problems: vec![],
        }
    }

    fn image(name: &str) -> ImageReport {
        ImageReport {
            image: ImageRef {
                kind: ImageKind::Cinder,
                pool: "volumes".into(),
                name: name.into(),
                mirrored_pool: "volumes".into(),
                dest_pool: "cinder-volumes".into(),
                dest_name: name.into(),
                new_name: None,
            },
            error: None,
            size: Some(1 << 30),
            features: Some(Features::DEFAULT),
            user_snapshots: vec![],
            mirror_snapshots: 0,
            watchers: vec![],
            lockers: vec![],
            users: vec![],
            parent: None,
            encrypted: false,
            mirroring: None,
            primary: None,
            dest_exists: Some(false),
            streamed: false,
        }
    }

    #[test]
    fn healthy_setup_has_no_problems() {
        let r = healthy();
        assert_eq!(assess(&r, MirrorMode::Snapshot, Transfer::Mirror), vec![]);
    }

    #[test]
    fn missing_rbd_mirror_daemon_is_an_error_with_a_hint() {
        let mut r = healthy();
        r.destination.rbd_mirror_daemons = Some(vec![]);
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].severity, Severity::Error);
        assert_eq!(
            p[0].message,
            "no rbd-mirror daemon is running for the destination cluster"
        );
        assert!(p[0].hint.as_deref().unwrap().contains("rbd-mirror"));
    }

    #[test]
    fn streamed_volumes_are_not_judged_as_images_and_their_hosts_must_answer() {
        let mut r = healthy();
        let mut gone = image("volume-nfs");
        gone.streamed = true;
        gone.size = None;
        gone.features = None;
        r.images = vec![gone];
        let here = concat!("ferry ", env!("CARGO_PKG_VERSION")).to_string();
        r.conversion_hosts = vec![
            HostReport {
                side: Site::Source,
                ssh: "convhost-a".into(),
                version: Some(here.clone()),
                error: None,
            },
            HostReport {
                side: Site::Destination,
                ssh: "convhost-b".into(),
                version: Some(here),
                error: None,
            },
        ];
        assert_eq!(assess(&r, MirrorMode::Snapshot, Transfer::Stream), vec![]);
        assert!(render_text(&r).contains("streams through the conversion hosts"));
        r.conversion_hosts[0].version = Some("ferry 0.0.1".into());
        r.conversion_hosts[1].version = None;
        r.conversion_hosts[1].error =
            Some("Permission denied (publickey). (exit status: 255)".into());
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Stream);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].severity, Severity::Warning);
        assert!(p[0].message.starts_with("runs ferry 0.0.1"), "{p:?}");
        assert_eq!(p[1].severity, Severity::Error);
        assert_eq!(p[1].subject, "conversion host convhost-b (destination)");
        assert!(p[1].message.contains("Permission denied"), "{p:?}");
    }

    #[test]
    fn a_direct_transfer_needs_neither_rbd_mirror_nor_peers_nor_pool_mirroring() {
        let mut r = healthy();
        r.destination.rbd_mirror_daemons = Some(vec![]);
        r.destination.pools[0].peers = vec![];
        for site in [&mut r.source, &mut r.destination] {
            for p in &mut site.pools {
                p.mirror_mode = Some(PoolMirrorMode::Disabled);
            }
        }
        assert_eq!(assess(&r, MirrorMode::Snapshot, Transfer::Direct), vec![]);
        // The same setup fails the mirror transfer several ways.
        assert!(assess(&r, MirrorMode::Snapshot, Transfer::Mirror).len() >= 3);
    }

    #[test]
    fn destination_pool_without_receiving_peer_is_an_error() {
        let mut r = healthy();
        r.destination.pools[0].peers = vec![peer(PeerDirection::TxOnly, "x")];
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].subject, "site-b/volumes");
        assert!(
            p[0].message.starts_with("no mirror peer receives"),
            "{}",
            p[0].message
        );
        assert!(p[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("bootstrap import --direction rx-only volumes"));
    }

    #[test]
    fn peer_with_another_clusters_uuid_is_an_error() {
        let mut r = healthy();
        r.destination.pools[0].peers = vec![peer(PeerDirection::RxOnly, "someone-else")];
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].message.contains("not the source pool"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn wrong_key_and_missing_pool_get_specific_hints() {
        let mut r = healthy();
        r.source.connect_error = Some(Failure {
            kind: ErrorKind::PermissionDenied,
            message: "rados_connect(x): EACCES (permission denied)".into(),
        });
        r.destination.pools[0].error = Some(Failure {
            kind: ErrorKind::NotFound,
            message: "rados_ioctx_create(site-b/nope): ENOENT (not found)".into(),
        });
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0]
            .message
            .starts_with("cannot connect to the source cluster"));
        assert!(p[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("refused client.admin's key"));
        assert!(p[1]
            .hint
            .as_deref()
            .unwrap()
            .contains("no pool \"volumes\" on cluster site-b"));
    }

    #[test]
    fn disabled_mirroring_and_pool_mode_with_snapshot_mirroring_are_errors() {
        let mut r = healthy();
        r.source.pools[0].mirror_mode = Some(PoolMirrorMode::Disabled);
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror);
        assert_eq!(
            p[0].hint.as_deref(),
            Some("rbd mirror pool enable volumes image")
        );
        let mut r = healthy();
        r.source.pools[0].mirror_mode = Some(PoolMirrorMode::Pool);
        assert_eq!(assess(&r, MirrorMode::Journal, Transfer::Mirror), vec![]);
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror);
        assert!(p[0].message.contains("snapshot-based"), "{p:?}");
    }

    #[test]
    fn image_problems_in_use_snapshots_missing_and_taken_name() {
        let mut r = healthy();
        let mut busy = image("volume-1");
        busy.users =
            vec!["client.4100 at 10.0.0.5:0/1 (holds the exclusive lock: it writes)".into()];
        busy.user_snapshots = vec!["before-upgrade".into()];
        busy.dest_exists = Some(true);
        let mut missing = image("volume-2");
        missing.error = Some(Failure {
            kind: ErrorKind::NotFound,
            message: "rbd_open_read_only(volumes/volume-2): ENOENT (not found)".into(),
        });
        r.images = vec![busy, missing];
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror);
        let msgs: Vec<(Severity, &str)> =
            p.iter().map(|p| (p.severity, p.message.as_str())).collect();
        assert_eq!(
            msgs[0],
            (
                Severity::Warning,
                "in use: client.4100 at 10.0.0.5:0/1 (holds the exclusive lock: it writes)"
            )
        );
        assert_eq!(
            msgs[1],
            (
                Severity::Warning,
                "1 snapshot(s) will be mirrored too: before-upgrade"
            )
        );
        assert_eq!(
            msgs[2],
            (
                Severity::Warning,
                "cinder-volumes/volume-1 already exists on site-b"
            )
        );
        assert_eq!(msgs[3].0, Severity::Error);
        assert!(msgs[3].1.starts_with("image not found"));
        assert_eq!(p[3].subject, "site-a/volumes/volume-2");
    }

    #[test]
    fn health_and_fullness_are_reported() {
        let mut r = healthy();
        r.destination.health = Some(Health {
            status: "HEALTH_WARN".into(),
            checks: vec![HealthCheck {
                code: "OSD_NEARFULL".into(),
                severity: "HEALTH_WARN".into(),
                summary: "1 nearfull osd(s)".into(),
                details: vec![],
            }],
        });
        r.destination.usage = Some(Usage {
            total_bytes: 100,
            used_bytes: 96,
            avail_bytes: 4,
        });
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror);
        assert_eq!(
            p[0].message,
            "HEALTH_WARN (OSD_NEARFULL: 1 nearfull osd(s))"
        );
        assert_eq!(p[1].severity, Severity::Error);
        assert_eq!(p[1].message, "cluster is 96% full");
    }

    #[test]
    fn text_report_ends_with_a_verdict() {
        let mut r = healthy();
        r.images = vec![image("volume-1")];
        let t = render_text(&r);
        assert!(t.contains("rbd-mirror  b on h"), "{t}");
        assert!(t.contains("volumes/volume-1"), "{t}");
        assert!(
            t.trim_end().ends_with("ready: 0 error(s), 0 warning(s)"),
            "{t}"
        );
        r.problems = assess(
            &{
                let mut x = r.clone();
                x.destination.rbd_mirror_daemons = Some(vec![]);
                x
            },
            MirrorMode::Snapshot,
            Transfer::Mirror,
        );
        assert!(render_text(&r)
            .trim_end()
            .ends_with("NOT READY: 1 error(s), 0 warning(s)"));
    }

    #[test]
    fn cloud_problems_are_reported() {
        let mut r = healthy();
        r.clouds = vec![
            CloudReport {
                side: Site::Source,
                name: "src".into(),
                region: None,
                error: Some("connecting to the source cloud: authentication failed".into()),
                project_id: None,
                roles: vec![],
                endpoints: vec![],
            },
            CloudReport {
                side: Site::Destination,
                name: "dst".into(),
                region: Some("b".into()),
                error: None,
                project_id: Some("p".into()),
                roles: vec!["member".into()],
                endpoints: vec![
                    ("block-storage".into(), Ok("http://c".into())),
                    (
                        "image".into(),
                        Err("no image service in the catalog".into()),
                    ),
                ],
            },
        ];
        let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror);
        let got: Vec<(Severity, &str, &str)> = p
            .iter()
            .map(|p| (p.severity, p.subject.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Severity::Error,
                    "cloud src",
                    "connecting to the source cloud: authentication failed"
                ),
                (Severity::Error, "cloud dst", "no image service in the catalog"),
                (
                    Severity::Warning,
                    "cloud dst",
                    "the destination credentials lack the admin role, which Cinder's default policy requires for manage-existing and for listing backend pools"
                ),
            ]
        );
        assert!(!r.ok() || p.iter().any(|x| x.severity == Severity::Error));
    }
}
