//! The `stream-volume` step kind. Stream path: attaches the source volume to
//! the source conversion host and the new volume to the destination one,
//! streams the blocks between them, detaches both (whatever happened), and
//! notes the digest both ends computed on the new volume ([`STREAM_DIGEST`],
//! with the [`STREAM_VERIFIED`] mark of this plan).

use super::prelude::*;
use crate::openstack::Cinder;
use crate::plan::{stream_mark, STREAM_DIGEST, STREAM_VERIFIED};
use crate::spec::ConversionHosts;
use anyhow::Context;
use std::collections::BTreeMap;

/// Stream path: attaches the source volume to the source conversion
/// host and the new volume to the destination one, streams the blocks
/// between them, detaches both (whatever happened), and notes the digest
/// both ends computed on the new volume ([`STREAM_DIGEST`], with the
/// [`STREAM_VERIFIED`] mark of this plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamVolume {
    pub source_volume: String,
    pub hosts: crate::spec::ConversionHosts,
}

impl Kind for StreamVolume {
    fn role(&self) -> Role {
        Role::ConversionHosts
    }

    fn subject(&self) -> ImageAt {
        in_cloud(Site::Source, &self.source_volume)
    }

    fn moves_data(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let StreamVolume {
            source_volume,
            hosts,
        } = self;
        format!(
            "attach volume {source_volume} to {} and its new volume to {}, stream between them over ssh, verify, detach both",
            hosts.source.ssh, hosts.destination.ssh
        )
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        // The conversion-hosts part runs ferry itself (the renderer's
        // `conversion_hosts`).
        "die 'streaming is the conversion-hosts part (ferry run --role conversion-hosts)'\n"
            .to_string()
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let StreamVolume {
            source_volume,
            hosts,
        } = self;
        stream_volume(cx, i, step, source_volume, hosts)
    }
}

/// Attaches, streams, verifies, detaches.
fn stream_volume(
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
    let from_host = stream::connector(&hosts.source);
    let to_host = stream::connector(&hosts.destination);
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
    let from = stream::attach(src, source_volume, &from_host)?;
    let outcome = (|| {
        let to = stream::attach(dst, &target.id, &to_host)?;
        let streamed = stream::run_stream(ctx, i, step, source_volume, hosts, &from, &to);
        let detached = stream::detach(dst, &to);
        let report = streamed?;
        detached?;
        Ok::<_, anyhow::Error>(report)
    })();
    let detached = stream::detach(src, &from);
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
        short(&report.digest),
        target.id,
        report.chunks_sent,
        report.chunks_resumed,
        report.chunks_hole,
        report.bytes_carried,
        report.seconds
    ));
    Ok(said.join("; "))
}
