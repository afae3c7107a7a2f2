//! The stream path's steps: the destination volume made (marked pending),
//! filled through the conversion hosts, and finished. Each finds its own
//! earlier work by the adoption marker, so running again never makes a
//! second volume, and the stream step removes what an earlier run left
//! attached before it attaches again.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};

use super::{Ctx, Phase};
use crate::openstack::{Cinder, Connection, ConnectionKind, Connector, LocalAttachment};
use crate::plan::{
    stream_mark, Step, VolumeAdoption, ADOPTED_BY, STREAM_DIGEST, STREAM_PENDING, STREAM_VERIFIED,
};
use crate::spec::{ConversionHost, ConversionHosts};
use crate::transfer::stream::relay::{self, RelayOptions, Remote, StreamReport};

/// The connection types a conversion host can read or write.
const KINDS: [ConnectionKind; 2] = [ConnectionKind::Nfs, ConnectionKind::Rbd];

/// Where the receiver keeps its record when the spec names no place.
const DEFAULT_STATE_DIR: &str = "/var/lib/ferry/stream";

/// The new volume for a source volume, marked pending; waits until it is
/// `available`.
pub(crate) fn create_volume(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    a: &VolumeAdoption,
    size_gb: u64,
) -> anyhow::Result<String> {
    let cloud = ctx.dst_cloud()?;
    let cinder = Cinder(cloud);
    let vol = match ctx.stream_target(&a.source_volume)? {
        Some(v) if v.status.starts_with("error") => bail!(
            "volume {} made for source volume {} is in {}: delete it and run again",
            v.id,
            a.source_volume,
            v.status
        ),
        Some(v) => v,
        None => {
            let found = ctx.adoptions(&a.source_volume)?;
            super::cloud::earlier_before_create(ctx, i, step, &cinder, &found.earlier, a)?;
            cinder
                .create_volume_from(&a.new_volume(size_gb, &ctx.plan_id()))
                .with_context(|| format!("creating volume {:?}", a.name))?
        }
    };
    let id = vol.id.clone();
    super::cloud::wait_status(ctx, i, step, &format!("volume {id}"), "available", || {
        let v = cinder.volume(&id)?;
        Ok((v.status.clone(), ()))
    })?;
    Ok(format!("volume {id} ({size_gb} GiB) available, pending"))
}

/// Attaches, streams, verifies, detaches.
pub(crate) fn stream_volume(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    source_volume: &str,
    hosts: &ConversionHosts,
) -> anyhow::Result<String> {
    let src = ctx.src_cloud()?;
    let dst = ctx.dst_cloud()?;
    let target = ctx
        .stream_target(source_volume)?
        .ok_or_else(|| anyhow!("no destination volume was made for {source_volume}"))?;
    let from_host = connector(&hosts.source);
    let to_host = connector(&hosts.destination);
    // What a killed run left attached goes first; then both must be free.
    let mut said = Vec::new();
    for (cloud, id, c) in [
        (src, source_volume, &from_host),
        (dst, target.id.as_str(), &to_host),
    ] {
        let removed = Cinder(cloud)
            .remove_leftover_attachments(id, c)
            .with_context(|| format!("removing an earlier run's attachments of volume {id}"))?;
        if !removed.is_empty() {
            said.push(format!(
                "removed {} leftover attachment(s) of {id}",
                removed.len()
            ));
        }
    }
    let v = Cinder(src).volume(source_volume)?;
    if v.status != "available" {
        bail!(
            "source volume {source_volume} is {}: a volume streams only while nothing uses it (detach it from its server first)",
            v.status
        );
    }
    let from = attach(src, source_volume, &from_host)?;
    let outcome = (|| {
        let to = attach(dst, &target.id, &to_host)?;
        let streamed = run_stream(ctx, i, step, source_volume, hosts, &from, &to);
        let detached = detach(dst, &to);
        let report = streamed?;
        detached?;
        Ok::<_, anyhow::Error>(report)
    })();
    let detached = detach(src, &from);
    let report = outcome?;
    detached?;
    let mut meta = BTreeMap::new();
    meta.insert(STREAM_DIGEST.to_string(), report.digest.clone());
    // One request sets both: the mark is never there without its digest.
    meta.insert(
        STREAM_VERIFIED.to_string(),
        stream_mark(&ctx.plan_id(), source_volume, &report.digest),
    );
    Cinder(dst).set_metadata(&target.id, &meta)?;
    if let Some(why) = &report.restarted {
        said.push(why.clone());
    }
    said.push(format!(
        "digest {} into volume {}: {} chunk(s) sent, {} already there, {} hole(s); {} bytes carried in {:.1} s",
        super::short(&report.digest),
        target.id,
        report.chunks_sent,
        report.chunks_resumed,
        report.chunks_hole,
        report.bytes_carried,
        report.seconds
    ));
    Ok(said.join("; "))
}

/// How Cinder knows a conversion host.
fn connector(h: &ConversionHost) -> Connector {
    Connector::new(&h.connector_name(), &h.ip)
}

fn attach(
    cloud: &crate::openstack::Cloud,
    volume: &str,
    host: &Connector,
) -> anyhow::Result<LocalAttachment> {
    Cinder(cloud)
        .attach(volume, host, &KINDS)
        .with_context(|| format!("attaching volume {volume} to {}", host.host))
}

fn detach(cloud: &crate::openstack::Cloud, a: &LocalAttachment) -> anyhow::Result<()> {
    Cinder(cloud).delete_attachment(&a.id).with_context(|| {
        format!(
            "detaching volume {} (attachment {}; a re-run removes it)",
            a.volume_id, a.id
        )
    })
}

/// The path an agent on `h` opens for an attached volume: a file under the
/// host's NFS mount base, or an RBD image through that user's keyring.
pub fn location(h: &ConversionHost, c: &Connection) -> anyhow::Result<String> {
    match c {
        Connection::Nfs(n) => {
            if n.format != "raw" {
                bail!(
                    "the volume's file on {} is {} (only raw volumes stream)",
                    n.export,
                    n.format
                );
            }
            let base = h.nfs_mount_base.as_deref().ok_or_else(|| {
                anyhow!(
                    "the volume is on the NFS share {}: give conversion_hosts' nfs_mount_base for {}, where that host mounts it",
                    n.export,
                    h.ssh
                )
            })?;
            Ok(n.path_under(std::path::Path::new(base))
                .display()
                .to_string())
        }
        Connection::Rbd(r) => {
            let mut s = format!("rbd:{}/{}", r.pool, r.image);
            let mut q = Vec::new();
            if let Some(conf) = &h.ceph_conf {
                q.push(format!("conf={conf}"));
            }
            if let Some(u) = &r.user {
                q.push(format!("id={u}"));
            }
            if let Some(k) = &h.ceph_keyring {
                q.push(format!("keyring={k}"));
            }
            if !q.is_empty() {
                s.push('?');
                s.push_str(&q.join("&"));
            }
            Ok(s)
        }
    }
}

fn run_stream(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    source_volume: &str,
    hosts: &ConversionHosts,
    from: &LocalAttachment,
    to: &LocalAttachment,
) -> anyhow::Result<StreamReport> {
    let from = Remote {
        host: hosts.source.ssh.clone(),
        path: location(&hosts.source, &from.connection)?,
    };
    let to = Remote {
        host: hosts.destination.ssh.clone(),
        path: location(&hosts.destination, &to.connection)?,
    };
    let opts = RelayOptions {
        ssh_options: ctx
            .opts
            .ssh_options
            .clone()
            .unwrap_or_else(|| hosts.ssh_options.clone()),
        remote_ferry: hosts.source.ferry.clone(),
        target_ferry: Some(hosts.destination.ferry.clone()),
        stall: std::time::Duration::from_secs(hosts.stall_seconds),
        state_dir: Some(
            hosts
                .destination
                .state_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
        ),
        identity: Some(format!("cinder volume {source_volume}")),
        ..RelayOptions::default()
    };
    ctx.event(
        i,
        step.name.as_str(),
        "progress",
        &format!("streaming {from} to {to}"),
    );
    let mut progress = ctx.progress(i, step, Phase::Copying);
    relay::stream_observed(&from, &to, &opts, &mut |done, size| {
        progress(done, size);
    })
    .map_err(|e| {
        let gave_up = matches!(e, crate::transfer::stream::StreamError::Stalled { .. });
        let message = format!("streaming {from} to {to}: {e}");
        if gave_up {
            anyhow::Error::new(super::GaveUp(message))
        } else {
            anyhow!(message)
        }
    })
}

/// Bootable flag and image metadata, then the pending mark goes.
pub(crate) fn finish_volume(ctx: &Ctx<'_>, a: &VolumeAdoption) -> anyhow::Result<String> {
    let cinder = Cinder(ctx.dst_cloud()?);
    let vol = ctx
        .stream_target(&a.source_volume)?
        .ok_or_else(|| anyhow!("no destination volume was made for {}", a.source_volume))?;
    if vol.status != "available" {
        bail!(
            "volume {} is {}, not available (attached still? a re-run of the stream step detaches it)",
            vol.id,
            vol.status
        );
    }
    super::cloud::volume_settings(&cinder, &vol, a)?;
    // A volume an earlier plan began becomes this plan's before it counts
    // as adopted.
    let plan_id = ctx.plan_id();
    if vol.metadata.get(ADOPTED_BY) != Some(&plan_id) {
        cinder.set_metadata(&vol.id, &[(ADOPTED_BY.to_string(), plan_id)].into())?;
    }
    cinder.delete_metadata(&vol.id, STREAM_PENDING)?;
    Ok(format!(
        "volume {} {:?} available, digest {}",
        vol.id,
        a.name,
        vol.metadata
            .get(STREAM_DIGEST)
            .map(|d| super::short(d))
            .unwrap_or("?")
    ))
}
