//! The `warm-copy` step kind: the destination's side of the warm rounds,
//! for a run that holds the destination storage alone (`ferry run --role
//! destination-storage`): as the source's rounds arrive, the partial copy
//! is brought up to the newest (only the chunks changed since the round it
//! holds), until the cut-over arrives. A run that holds the source too has
//! done this within each round.

use std::time::Duration;

use super::prelude::*;

/// The partial copy kept at the newest arrived round; see the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmCopy {
    /// The mirrored image at the destination (its head).
    pub mirrored: ImageAt,
    /// The cut-over as mirrored: once it is there, the rounds are over.
    pub cut: ImageAt,
    /// The copy under its partial name.
    pub partial: ImageAt,
    /// The features the copy is created with (as the copy step's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    pub mode: MirrorMode,
    /// Seconds between two rounds of the source.
    pub interval: u64,
}

impl Kind for WarmCopy {
    fn role(&self) -> Role {
        Role::DestinationStorage
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![
            ("mirrored", &self.mirrored, Place::Destination),
            ("cut", &self.cut, Place::Destination),
            ("partial", &self.partial, Place::Destination),
        ]
    }

    fn describe(&self) -> String {
        let WarmCopy {
            mirrored, partial, ..
        } = self;
        format!(
            "until the cut-over arrives: {partial} brought up to each warm round of {mirrored} as it arrives (only what changed)"
        )
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        "# Warm rounds: ferry's own run keeps the copy current as they arrive;\n# this script copies at the cut-over.\n".into()
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        if cx.access.src.is_some() {
            return Ok("kept current by the rounds".into());
        }
        let arrived = Check::SnapshotExists {
            image: self.cut.clone(),
        };
        let there = cx.exists(&self.mirrored)?;
        if there && cx.holds(&arrived)? {
            return Ok("the cut-over has arrived".into());
        }
        // A wait like any: bounded by --wait-timeout from its first turn.
        if let Some(waited) = cx.waited_too_long(i)? {
            bail!(crate::exec::GaveUp(format!(
                "gave up after {waited} s waiting for the cut-over {} (the source storage part takes it once the image is idle); run again later: the copy goes on from the round it holds",
                self.cut
            )));
        }
        let again = crate::exec::Again {
            until: arrived,
            at_most: Duration::from_secs(self.interval.max(2) / 2),
        };
        if !there {
            return Err(again.into());
        }
        let Some(round) = self.newest_arrived(cx)? else {
            return Err(again.into());
        };
        let started = Instant::now();
        let at = ImageAt {
            snap: Some(round.clone()),
            ..self.mirrored.clone()
        };
        let out = super::warm_rounds::bring_up(cx, i, step, &at, &self.partial, self.features)?;
        if out.chunks_read > 0 {
            cx.event(
                i,
                step.name.as_str(),
                "round",
                &format!(
                    "{} brought up to {round}: {} copied ({} of {} chunks) in {:.1} s",
                    self.partial,
                    crate::units::human_bytes(out.bytes_written),
                    out.chunks_read,
                    out.chunks,
                    started.elapsed().as_secs_f64()
                ),
            );
        }
        Err(again.into())
    }
}

impl WarmCopy {
    /// The newest round of this plan that has arrived whole at the
    /// destination, if any.
    fn newest_arrived(&self, cx: &Ctx<'_>) -> anyhow::Result<Option<String>> {
        let plan_id = cx.plan_id();
        let snaps = cx.with_image(&self.mirrored, false, |img| img.snapshots())?;
        let mut rounds: Vec<(u64, String)> = snaps
            .into_iter()
            .filter_map(|s| crate::plan::round_number(&plan_id, &s.name).map(|n| (n, s.name)))
            .collect();
        rounds.sort();
        for (_, name) in rounds.into_iter().rev() {
            let at = ImageAt {
                snap: Some(name.clone()),
                ..self.mirrored.clone()
            };
            let synced = Check::MirrorSynced {
                source: at.clone(),
                mirrored: at,
                mode: self.mode,
            };
            if cx.holds(&synced)? {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }
}
