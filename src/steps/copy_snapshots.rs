//! The `copy-snapshots` step kind. A volume's own snapshots travel with it:
//! before the warm rounds and the cut-over, each is copied into the copy
//! (under its partial name), oldest first, and taken there under the same
//! name. The first is copied whole; each later one writes only the chunks
//! changed since the one before (the engine's per-chunk log says the copy
//! holds the image whole at it), and so do the rounds and the cut-over
//! after them. Each snapshot's digest is noted on the copy (`<snap>.digest`,
//! as `plan::checksum_key`), so that it can be compared with the source's.

use super::prelude::*;
use crate::transfer::rbd::copy_image_onto;

/// Copies the snapshots `snapshots` of `from` (the mirrored image, or the
/// source for a direct transfer) into `to`, oldest first; see the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySnapshots {
    /// The image read, at its head (each snapshot is read in turn).
    pub from: ImageAt,
    /// The copy under its partial name.
    pub to: ImageAt,
    /// The snapshots, oldest first.
    pub snapshots: Vec<String>,
    /// The features the copy is created with (as the copy step's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
}

impl Kind for CopySnapshots {
    fn role(&self) -> Role {
        Role::DestinationStorage
    }

    fn moves_data(&self) -> bool {
        true
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![
            ("from", &self.from, Place::Read),
            ("to", &self.to, Place::Destination),
        ]
    }

    fn describe(&self) -> String {
        let CopySnapshots {
            from,
            to,
            snapshots,
            ..
        } = self;
        format!(
            "copy the snapshots {} of {from} into {to}, oldest first, each under its name (after the first, only what changed since the one before)",
            snapshots.join(", ")
        )
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let CopySnapshots {
            from,
            to,
            snapshots,
            features,
        } = self;
        let mut b = String::new();
        let direct = from.site == Site::Source;
        let feats = features.map(feature_args).unwrap_or_default();
        let _ = writeln!(
            b,
            "# Each snapshot: what changed since the one before, written into the copy\n# (rbd export-diff | rbd import-diff, which takes the snapshot there too),\n# then its digest noted on the copy."
        );
        let mut prev: Option<&String> = None;
        for s in snapshots {
            let at = ImageAt {
                snap: Some(s.clone()),
                ..from.clone()
            };
            // The source's options for what reads it (a direct transfer);
            // none for the copy.
            let read = |indent: &str| {
                if direct {
                    format!("{}\n{indent}", FROM_SOURCE.trim_end())
                } else {
                    String::new()
                }
            };
            let _ = writeln!(b, "if snap_absent {} {}; then", spec(to), q(s));
            if prev.is_none() {
                let _ = writeln!(
                    b,
                    "  if image_absent {to}; then\n    {read}rbdq info --format json {at} || die {gone}\n    FROM_ARGS=\n    rbdw create --size \"$(printf '%s' \"$OUT\" | jq -r .size)B\"{feats} {to}\n  fi",
                    to = spec(to),
                    at = with_snap(&at),
                    gone = q(&format!("{at} is gone")),
                    read = read("    "),
                );
            }
            let _ = writeln!(
                b,
                "  say {}\n  {}import_since {} {}{}\n  FROM_ARGS=\nfi",
                q(&format!("carrying snapshot {s} into {to}")),
                read("  "),
                with_snap(&at),
                spec(to),
                prev.map(|p| format!(" {}", q(p))).unwrap_or_default(),
            );
            let key = crate::plan::checksum_key(s);
            let mine = ImageAt {
                snap: Some(s.clone()),
                ..to.clone()
            };
            let _ = writeln!(
                b,
                "if meta_absent {to} {key}; then\n  image_digest {mine}\n  rbdw image-meta set {to} {key} \"$SUM\"\nfi",
                to = spec(to),
                key = q(&key),
                mine = with_snap(&mine),
            );
            prev = Some(s);
        }
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let CopySnapshots {
            from,
            to,
            snapshots,
            features,
        } = self;
        let from_pool = cx.cluster(from.site)?.pool(&from.pool)?;
        let dst_pool = cx.dst()?.pool(&to.pool)?;
        let have: Vec<String> = match dst_pool.open_image_read_only(&to.image, None) {
            Ok(img) => img.snapshots()?.into_iter().map(|s| s.name).collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        // The engine carries the data of one size: a volume extended
        // between its snapshots would need the copy resized between them.
        let sizes = snapshots
            .iter()
            .map(|s| cx.with_image(&snap_of(from, s), false, |img| Ok(img.info()?.size)))
            .collect::<anyhow::Result<Vec<u64>>>()?;
        if sizes.windows(2).any(|w| w[0] != w[1]) {
            bail!(
                "{from} changed size between its snapshots ({}): ferry carries the snapshots of one size only; move it with options.snapshots: drop, or remove the older snapshots",
                snapshots
                    .iter()
                    .zip(&sizes)
                    .map(|(s, n)| format!("{s}: {n} bytes"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let started = Instant::now();
        let (mut carried, mut written) = (Vec::new(), 0u64);
        for s in snapshots {
            if have.contains(s) {
                continue;
            }
            // Onto the copy as it is (whole at the snapshot before, or
            // interrupted on its way to this one): only what is missing.
            let out = space::writing_into(cx.dst()?, &to.pool, || {
                Ok(copy_image_onto(
                    &from_pool,
                    &from.image,
                    Some(s),
                    None,
                    &dst_pool,
                    &to.image,
                    *features,
                    &engine_options(&cx.opts.buffers),
                    &mut cx.progress(i, step, Phase::Copying),
                )?)
            })?;
            written += out.bytes_written;
            // The digest before the snapshot: a snapshot there is whole
            // and noted.
            let img = dst_pool.open_image(&to.image)?;
            img.metadata_set(&crate::plan::checksum_key(s), &out.digest)?;
            img.snap_create(s)?;
            img.close()?;
            cx.event(
                i,
                step.name.as_str(),
                "progress",
                &format!(
                    "snapshot {s} carried: {} written, digest {}",
                    crate::units::human_bytes(out.bytes_written),
                    short(&out.digest)
                ),
            );
            carried.push(s.as_str());
        }
        Ok(match carried.len() {
            0 => format!("{to} had the snapshots already"),
            _ => format!(
                "{} carried ({} written, {:.1} s)",
                carried.join(", "),
                crate::units::human_bytes(written),
                started.elapsed().as_secs_f64()
            ),
        })
    }
}

/// `at`'s image at snapshot `snap`.
fn snap_of(at: &ImageAt, snap: &str) -> ImageAt {
    ImageAt {
        snap: Some(snap.to_string()),
        ..at.clone()
    }
}
