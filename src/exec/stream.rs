//! What the stream path's step kinds (`src/steps/`: create-volume,
//! stream-volume, finish-volume) share when ferry executes them: attaching
//! a volume to its conversion host and detaching it again, and running the
//! relay between the hosts.

use anyhow::{anyhow, bail, Context};

use super::{Ctx, Phase};
use crate::openstack::{Cinder, Connection, ConnectionKind, Connector, LocalAttachment};
use crate::plan::Step;
use crate::spec::{ConversionHost, ConversionHosts};
use crate::transfer::stream::relay::{self, RelayOptions, Remote, StreamReport};

/// The connection types a conversion host can read or write.
pub(crate) const KINDS: [ConnectionKind; 2] = [ConnectionKind::Nfs, ConnectionKind::Rbd];

/// Where the receiver keeps its record when the spec names no place.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/ferry/stream";

/// How Cinder knows a conversion host.
pub(crate) fn connector(h: &ConversionHost) -> Connector {
    Connector::new(&h.connector_name(), &h.ip)
}

pub(crate) fn attach(
    cloud: &crate::openstack::Cloud,
    volume: &str,
    host: &Connector,
) -> anyhow::Result<LocalAttachment> {
    Cinder(cloud)
        .attach(volume, host, &KINDS)
        .with_context(|| format!("attaching volume {volume} to {}", host.host))
}

pub(crate) fn detach(cloud: &crate::openstack::Cloud, a: &LocalAttachment) -> anyhow::Result<()> {
    Cinder(cloud).delete_attachment(&a.id).with_context(|| {
        format!(
            "detaching volume {} (attachment {}; a re-run removes it)",
            a.volume_id, a.id
        )
    })
}

/// The path an agent on `h` opens for an attached volume: a file under the
/// host's NFS mount base, or an RBD image through that user's keyring.
pub(crate) fn location(h: &ConversionHost, c: &Connection) -> anyhow::Result<String> {
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

pub(crate) fn run_stream(
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
