//! Gathering: connects to what the spec names and reads what `assess`
//! judges. Nothing fails here: a cluster, pool, image or host that cannot
//! be read is a finding of its own.

use std::path::PathBuf;

use crate::ceph::{
    CephError, Cluster, ClusterConfig, ErrorKind, ImageMirrorState, PoolMirrorMode, SnapNamespace,
};
use crate::connect::{named_cluster, Policy};
use crate::plan::Site;
use crate::spec::{ImageKind, ImageRef, Spec, Transfer};

use super::assess::assess;
use super::report::*;

/// Runs the whole check. Connection failures do not abort it: they become
/// problems in the report.
pub fn run(spec: &Spec) -> CheckReport {
    // A check reads a few facts, under the limits a plan is read with.
    let policy = Policy::reading(spec);
    // A spec whose volumes all stream may name no cluster: none is read.
    let src_conn = named_cluster(&spec.source.cluster, &policy);
    let dst_conn = named_cluster(&spec.destination.cluster, &policy);
    let cloud = |name: &Option<String>| name.as_deref().map(|n| crate::connect::cloud(n, &policy));
    let src_cloud = cloud(&spec.source.cloud);
    let dst_cloud = cloud(&spec.destination.cloud);
    let (refs, unresolved) = image_refs(spec, &src_cloud);
    let (src_pools, dst_pools) = pools(spec);
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
    let images = image_reports(
        spec,
        &refs,
        src_conn.as_ref().and_then(|c| c.as_ref().ok()),
        dst_conn.as_ref().and_then(|c| c.as_ref().ok()),
    );
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
    report.problems = assess(
        &report,
        spec.options.mirror_mode,
        spec.options.transfer,
        spec.options.snapshots,
    );
    report.problems.extend(unresolved);
    report
}

/// The images the spec names. With a source cloud, entries name volumes
/// and images that the cloud resolves; an entry that does not resolve is a
/// problem of its own.
fn image_refs(
    spec: &Spec,
    src_cloud: &Option<anyhow::Result<crate::openstack::Cloud>>,
) -> (Vec<ImageRef>, Vec<Problem>) {
    let Some(Ok(c)) = src_cloud else {
        return (spec.image_refs(), Vec::new());
    };
    let mut unresolved = Vec::new();
    let refs = (0..spec.images.len())
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
        .collect();
    (refs, unresolved)
}

/// The pools to read on one side, each with what it is for.
type Pools = Vec<(String, PoolPurpose)>;

/// The pools to read on the source and on the destination.
fn pools(spec: &Spec) -> (Pools, Pools) {
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
    (src_pools, dst_pools)
}

/// Each image read at once with others: each takes a dozen round trips.
/// A volume that streams is not read on the source cluster.
fn image_reports(
    spec: &Spec,
    refs: &[ImageRef],
    src: Option<&Cluster>,
    dst: Option<&Cluster>,
) -> Vec<ImageReport> {
    let stream_all = spec.options.transfer == Transfer::Stream;
    let can_stream = spec.conversion_hosts.is_some() && spec.source.cloud.is_some();
    crate::parallel::map(refs, 16, |r| {
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
    })
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
        let mut snaps = img.snapshots()?;
        // Oldest first, as a plan lists (and carries) them.
        snaps.sort_by_key(|s| s.id);
        for s in snaps {
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
