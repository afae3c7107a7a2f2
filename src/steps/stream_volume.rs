//! The `stream-volume` step kind. Stream path: attaches the source volume to
//! the source conversion host and the new volume to the destination one,
//! streams the blocks between them, detaches both (whatever happened), and
//! notes the digest both ends computed on the new volume ([`STREAM_DIGEST`],
//! with the [`STREAM_VERIFIED`] mark of this plan).

use super::prelude::*;

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
        stream::stream_volume(cx, i, step, source_volume, hosts)
    }
}
