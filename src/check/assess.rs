//! Judging: the readiness rules, each a function over one part of the
//! report. Pure: everything they need is in the report. The problems come
//! out in the order of the rules below (sites, peering, rbd-mirror,
//! conversion hosts, images, clouds).

use crate::ceph::{ErrorKind, MirrorMode, MirrorPeer, PeerDirection, PoolMirrorMode};
use crate::plan::Site;
use crate::spec::{ImageKind, Snapshots, Transfer};
use crate::units::human_bytes;

use super::report::*;

/// Judges the findings. With `Transfer::Direct` nothing is mirrored: pool
/// mirroring, peers, rbd-mirror and mirrored snapshots do not matter.
/// `snapshots`: what happens to the images' own snapshots.
pub fn assess(
    report: &CheckReport,
    mode: MirrorMode,
    transfer: Transfer,
    snapshots: Snapshots,
) -> Vec<Problem> {
    let mirror = transfer.is_mirror();
    let mut out = Problems::default();
    // A site the spec names no cluster for (every volume streams).
    let sites = [&report.source, &report.destination]
        .into_iter()
        .filter(|s| !s.conf.as_os_str().is_empty());
    for site in sites {
        if !connected(site, &mut out) {
            continue;
        }
        health(site, &mut out);
        fullness(site, &mut out);
        for p in &site.pools {
            pool(site, p, mode, mirror, &mut out);
        }
    }
    if mirror {
        for dp in &report.destination.pools {
            peering(report, dp, &mut out);
        }
        if report.destination.connect_error.is_none() {
            rbd_mirror_daemons(&report.destination, &mut out);
        }
    }
    for h in &report.conversion_hosts {
        conversion_host(h, &mut out);
    }
    for img in &report.images {
        image(report, img, mirror, snapshots, &mut out);
    }
    for c in &report.clouds {
        cloud(c, &mut out);
    }
    out.0
}

/// The problems found so far, in the order the rules found them.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, severity: Severity, subject: String, message: String, hint: Option<String>) {
        self.0.push(Problem {
            severity,
            subject,
            message,
            hint,
        })
    }

    fn error(&mut self, subject: String, message: String, hint: Option<String>) {
        self.push(Severity::Error, subject, message, hint)
    }

    fn warning(&mut self, subject: String, message: String, hint: Option<String>) {
        self.push(Severity::Warning, subject, message, hint)
    }
}

/// A cluster that could not be connected to; false when nothing else about
/// it can be judged.
fn connected(site: &SiteReport, out: &mut Problems) -> bool {
    let Some(f) = &site.connect_error else {
        return true;
    };
    let hint = match f.kind {
        ErrorKind::PermissionDenied => format!(
            "the cluster refused client.{}'s key: check the keyring file and the client name in the spec",
            site.client
        ),
        ErrorKind::TimedOut => format!(
            "no monitor answered: check 'mon host' in {} and that the monitors are up and reachable",
            site.conf.display()
        ),
        ErrorKind::NotFound => {
            "a conf or keyring file named in the spec does not exist".to_string()
        }
        _ => "check the conf file, keyring and client name in the spec".to_string(),
    };
    out.error(
        site.cluster.clone(),
        format!("cannot connect to the {} cluster: {}", site.side, f.message),
        Some(hint),
    );
    false
}

/// A cluster not `HEALTH_OK`: an error at `HEALTH_ERR`, else a warning.
fn health(site: &SiteReport, out: &mut Problems) {
    let Some(h) = site.health.as_ref().filter(|h| h.status != "HEALTH_OK") else {
        return;
    };
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
    out.push(
        sev,
        site.cluster.clone(),
        format!("{} ({})", h.status, checks.join("; ")),
        None,
    );
}

/// A cluster 85% full deserves attention; 95% stands in the way.
fn fullness(site: &SiteReport, out: &mut Problems) {
    let Some(ratio) = site.usage.as_ref().map(|u| u.used_ratio()) else {
        return;
    };
    if ratio < 0.85 {
        return;
    }
    out.push(
        if ratio >= 0.95 {
            Severity::Error
        } else {
            Severity::Warning
        },
        site.cluster.clone(),
        format!("cluster is {:.0}% full", ratio * 100.0),
        Some("mirrored images and their copies need room on the destination".into()),
    );
}

/// A pool that cannot be read, or whose mirroring cannot carry the mode.
fn pool(site: &SiteReport, p: &PoolReport, mode: MirrorMode, mirror: bool, out: &mut Problems) {
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
        out.error(
            subject,
            format!("{} pool: {}", p.purpose.describe(), f.message),
            (!hint.is_empty()).then_some(hint),
        );
        return;
    }
    if !p.purpose.mirrored() || !mirror {
        return;
    }
    let cinder = matches!(p.purpose, PoolPurpose::Cinder | PoolPurpose::MirroredCinder);
    match p.mirror_mode {
        Some(PoolMirrorMode::Disabled) => out.error(
            subject,
            "mirroring is disabled on this pool".into(),
            Some(format!(
                "rbd mirror pool enable {} {}",
                p.name,
                if cinder { "image" } else { "pool" }
            )),
        ),
        Some(PoolMirrorMode::Pool) if mode == MirrorMode::Snapshot && cinder => out.error(
            subject,
            "pool-mode mirroring cannot carry snapshot-based mirroring".into(),
            Some("use image mode on the Cinder pools, or mirror_mode: journal".into()),
        ),
        _ => {}
    }
}

/// Each destination mirrored pool must receive from its source pool.
fn peering(report: &CheckReport, dp: &PoolReport, out: &mut Problems) {
    let src_purpose = match dp.purpose {
        PoolPurpose::MirroredCinder => PoolPurpose::Cinder,
        PoolPurpose::MirroredGlance => PoolPurpose::Glance,
        _ => return,
    };
    if dp.error.is_some()
        || dp.mirror_mode != Some(PoolMirrorMode::Image)
            && dp.mirror_mode != Some(PoolMirrorMode::Pool)
    {
        return;
    }
    let subject = format!("{}/{}", report.destination.cluster, dp.name);
    let src_pool = report
        .source
        .pools
        .iter()
        .find(|p| p.purpose == src_purpose);
    let receiving: Vec<&MirrorPeer> = dp
        .peers
        .iter()
        .filter(|p| p.direction != PeerDirection::TxOnly)
        .collect();
    if receiving.is_empty() {
        out.error(
            subject,
            format!(
                "no mirror peer receives into this pool from {}",
                report.source.cluster
            ),
            Some(format!(
                "on the source: rbd mirror pool peer bootstrap create {0} > token; on the destination: rbd mirror pool peer bootstrap import --direction rx-only {1} token",
                src_pool.map_or("<pool>", |p| &p.name),
                dp.name
            )),
        );
        return;
    }
    let Some(src_uuid) = src_pool
        .and_then(|p| p.mirror_uuid.as_deref())
        .filter(|u| !u.is_empty())
    else {
        return;
    };
    let known: Vec<&str> = receiving
        .iter()
        .map(|p| p.mirror_uuid.as_str())
        .filter(|u| !u.is_empty())
        .collect();
    if !known.is_empty() && !known.contains(&src_uuid) {
        out.error(
            subject,
            format!(
                "this pool's peer is not the source pool (peer mirror uuid {}, source pool's {src_uuid})",
                known.join(", ")
            ),
            Some("the destination is peered with another cluster or pool: check the spec's clusters".into()),
        );
    }
}

/// Nothing replicates without an rbd-mirror daemon for the destination.
fn rbd_mirror_daemons(destination: &SiteReport, out: &mut Problems) {
    match &destination.rbd_mirror_daemons {
        Some(d) if d.is_empty() => out.error(
            destination.cluster.clone(),
            "no rbd-mirror daemon is running for the destination cluster".into(),
            Some(format!(
                "start rbd-mirror on a host of {} (e.g. systemctl start ceph-rbd-mirror@<id>); nothing replicates without it",
                destination.cluster
            )),
        ),
        None => out.warning(
            destination.cluster.clone(),
            "could not read the service map to find rbd-mirror daemons".into(),
            None,
        ),
        _ => {}
    }
}

/// A conversion host must run this very ferry (the stream protocol refuses
/// another version).
fn conversion_host(h: &HostReport, out: &mut Problems) {
    let here = concat!("ferry ", env!("CARGO_PKG_VERSION"));
    let subject = format!("conversion host {} ({})", h.ssh, h.side);
    match (&h.version, &h.error) {
        (_, Some(e)) => out.error(
            subject,
            format!("cannot run ferry there over ssh: {e}"),
            Some(format!(
                "ssh {} <ferry> --version must answer: install ferry there (or set its `ferry` command), and check the key, known_hosts and conversion_hosts.ssh_options",
                h.ssh
            )),
        ),
        (Some(v), None) if v != here => out.warning(
            subject,
            format!("runs {v}, this is {here}"),
            Some("the stream protocol refuses another version: install the same ferry".into()),
        ),
        _ => {}
    }
}

/// What happens to an image's own snapshots (ferry's own left out), as a
/// plan decides it (`plan::build`'s `carries_snapshots`).
fn own_snapshots(
    img: &ImageReport,
    mirror: bool,
    snapshots: Snapshots,
    subject: &str,
    out: &mut Problems,
) {
    let own: Vec<&str> = img
        .user_snapshots
        .iter()
        .map(String::as_str)
        .filter(|s| {
            !s.starts_with(crate::plan::CUTOVER_SNAP) && !s.starts_with(crate::plan::ROUND_SNAP)
        })
        .collect();
    if own.is_empty() {
        return;
    }
    let (n, list) = (own.len(), own.join(", "));
    let carried = snapshots == Snapshots::Carry
        && img.image.kind == ImageKind::Cinder
        && img.parent.is_none();
    if carried {
        out.warning(
            subject.to_string(),
            format!("{n} snapshot(s) will be carried: {list}"),
            Some(format!(
                "{}copied into the destination copy oldest first, each under its name (they cost destination space); options.snapshots: drop leaves them on the source",
                if mirror { "mirrored too (which costs time), then " } else { "" }
            )),
        );
    } else if mirror {
        let why = match (snapshots, img.parent.is_some()) {
            (Snapshots::Drop, _) => " (options.snapshots: drop)",
            (_, true) => " (a clone's snapshots cannot be carried)",
            _ => "",
        };
        out.warning(
            subject.to_string(),
            format!("{n} snapshot(s) will be mirrored too, but do not arrive in the copy{why}: {list}"),
            Some("the copy is the cut-over alone: keep the snapshots you need on the source, and delete the others before migrating (they cost mirroring time)".into()),
        );
    }
}

/// An image to move: readable, not encrypted, primary; clones, users,
/// snapshots and a taken destination name deserve attention. A streamed
/// volume is not read on the source cluster, so nothing is judged here.
fn image(
    report: &CheckReport,
    img: &ImageReport,
    mirror: bool,
    snapshots: Snapshots,
    out: &mut Problems,
) {
    let subject = format!("{}/{}", report.source.cluster, img.image.source_spec());
    if img.streamed {
        return;
    }
    if let Some(f) = &img.error {
        let message = if f.kind == ErrorKind::NotFound {
            format!("image not found ({})", f.message)
        } else {
            f.message.clone()
        };
        out.error(subject, message, None);
        return;
    }
    if img.encrypted {
        out.error(
            subject.clone(),
            "encrypted (LUKS header): its key is in the source cloud's key manager, which ferry cannot carry yet".into(),
            Some("move it another way, or decrypt it first".into()),
        );
    }
    clone_of(img, mirror, &subject, out);
    if img.in_use() {
        out.warning(
            subject.clone(),
            format!("in use: {}", img.users.join("; ")),
            Some("the cut-over waits until no client writes: shut the server off first (writes after the cut-over would not be moved)".into()),
        );
    }
    own_snapshots(img, mirror, snapshots, &subject, out);
    if img.primary == Some(false) {
        out.error(
            subject.clone(),
            "image is a non-primary mirror copy on the source".into(),
            Some("the source must hold the primary image".into()),
        );
    }
    if img.dest_exists == Some(true) {
        out.warning(
            subject,
            format!(
                "{}/{} already exists on {}",
                img.image.dest_pool, img.image.dest_name, report.destination.cluster
            ),
            Some("a previous run left it, or the name is taken: choose dest_name".into()),
        );
    }
}

/// A clone arrives flat, and mirroring first copies it out on the source.
fn clone_of(img: &ImageReport, mirror: bool, subject: &str, out: &mut Problems) {
    let Some(p) = &img.parent else {
        return;
    };
    let how = if mirror {
        format!(
            "copied out flat on the source first ({} more in pool {} until cleanup), and that copy is mirrored",
            img.size.map(human_bytes).unwrap_or_default(),
            img.image.pool
        )
    } else {
        "read through its parent".to_string()
    };
    out.warning(
        subject.to_string(),
        format!(
            "a clone of {p} (clone v{}): {how}; it arrives as a flat image (with options.clones: clone-of-parent, as a clone of its Glance parent's destination copy when that can be had: `ferry plan` says which)",
            p.clone_format
        ),
        None,
    );
}

/// A cloud must authenticate and offer Cinder and Glance; the destination's
/// credentials need the admin role for manage-existing.
fn cloud(c: &CloudReport, out: &mut Problems) {
    let subject = format!("cloud {}", c.name);
    if let Some(e) = &c.error {
        out.error(
            subject,
            e.clone(),
            Some("check clouds.yaml (OS_CLIENT_CONFIG_FILE) or the OS_* variables, and that Keystone is reachable".into()),
        );
        return;
    }
    for (svc, ep) in &c.endpoints {
        if let Err(e) = ep {
            out.error(
                subject.clone(),
                e.clone(),
                Some(format!(
                    "ferry needs the {svc} service: set region_name or interface in clouds.yaml"
                )),
            );
        }
    }
    if c.side == Site::Destination && !c.roles.iter().any(|r| r == "admin") {
        out.warning(
            subject,
            "the destination credentials lack the admin role, which Cinder's default policy requires for manage-existing and for listing backend pools".into(),
            Some("use an admin of the destination project, or a policy granting volume_extension:volume_manage; set destination.cinder_host".into()),
        );
    }
}
