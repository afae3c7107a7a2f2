//! Judging: the readiness rules, each a function over the report. Pure:
//! everything they need is in the report.

use crate::ceph::{ErrorKind, MirrorMode, MirrorPeer, PeerDirection, PoolMirrorMode};
use crate::plan::Site;
use crate::spec::Transfer;
use crate::units::human_bytes;

use super::report::*;

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
