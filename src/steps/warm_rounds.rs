//! The `warm-rounds` step kind. While the source image is written (its
//! server runs), a round every `interval` seconds: a snapshot of the
//! source that mirroring carries, the source's digest brought up to it
//! (only the chunks changed since the round before are hashed), and, when
//! this run holds the destination too, the partial copy brought up to it
//! (only those chunks are copied). Once the image is idle the step ends,
//! and the cut-over after it costs what changed since the last round.

use std::time::Duration;

use super::prelude::*;
use crate::transfer::rbd::{copy_image_onto, digest_image_kept};

/// Rounds while `image` is in use; see the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmRounds {
    /// The source image (its head).
    pub image: ImageAt,
    /// The mirrored image at the destination (its head).
    pub mirrored: ImageAt,
    /// The copy under its partial name, which the rounds keep current.
    pub partial: ImageAt,
    /// The features the copy is created with (as the copy step's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    pub mode: MirrorMode,
    /// Seconds between two rounds.
    pub interval: u64,
}

/// Round snapshots kept on the source: the newest, and the one before it
/// (a copy still on its way from it finishes from there).
const KEPT_ROUNDS: u64 = 2;

impl Kind for WarmRounds {
    fn role(&self) -> Role {
        Role::SourceStorage
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![
            ("image", &self.image, Place::Source),
            ("mirrored", &self.mirrored, Place::Destination),
            ("partial", &self.partial, Place::Destination),
        ]
    }

    fn describe(&self) -> String {
        let WarmRounds {
            image,
            partial,
            interval,
            ..
        } = self;
        format!(
            "while {image} is in use: every {interval} s a round snapshot that mirroring carries, the digest and {partial} brought up to it (only what changed)"
        )
    }

    fn script(&self, st: &Step, plan: &Plan, img: &ImagePlan) -> String {
        let WarmRounds {
            image,
            mode,
            interval,
            ..
        } = self;
        let mut b = String::new();
        let idle = crate::render::cond(
            &Check::NotInUse {
                image: image.clone(),
            },
            st.role,
            plan,
            img,
        )
        .unwrap_or_else(|| "true".into());
        let prefix = format!("{}-{}-", crate::plan::ROUND_SNAP, plan.id);
        let _ = writeln!(
            b,
            "# Rounds while the image is in use: each snapshot is carried by mirroring,\n# so the cut-over carries only what changed since the last one. (The\n# destination part copies at the cut-over; ferry's own run also keeps the\n# copy current between rounds.) Bounded as every wait: FERRY_WAIT_TIMEOUT.\nrbdq snap ls --format json {img} || OUT='[]'\nn=$(printf '%s' \"$OUT\" | jq -r --arg p {p} '[.[] | .name | select(startswith($p)) | ltrimstr($p) | tonumber] | max // 0')\nwaited=0\nwhile ! {idle}; do\n  if [ \"$waited\" -ge \"$FERRY_WAIT_TIMEOUT\" ]; then\n    say \"gave up: \"{name}\" is still in use after $waited s of warm rounds (FERRY_WAIT_TIMEOUT; in use: $USERS); stop its client (shut its server off) and run this script again: the rounds go on from round $n\"\n    exit 2\n  fi\n  n=$((n + 1))\n  rbdw snap create {img}@{p}\"$n\"",
            img = spec(image),
            p = q(&prefix),
            name = q(&image.to_string()),
        );
        if *mode == MirrorMode::Snapshot {
            let _ = writeln!(b, "  rbdw mirror image snapshot {}", spec(image));
        }
        let _ = writeln!(
            b,
            "  old=$((n - {KEPT_ROUNDS}))\n  if [ \"$old\" -gt 0 ] && snap_exists {img} {p}\"$old\"; then rbdw snap rm {img}@{p}\"$old\"; fi\n  say \"round $n taken; next in {interval} s unless \"{name}\" is idle\"\n  sleep {interval}\n  waited=$((waited + {interval}))\ndone",
            img = spec(image),
            p = q(&prefix),
            name = q(&image.to_string()),
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let idle = Check::NotInUse {
            image: self.image.clone(),
        };
        let plan_id = cx.plan_id();
        let n = self.rounds_taken(cx, &plan_id)?;
        if cx.holds(&idle)? {
            return Ok(match n {
                0 => "idle: no round needed".into(),
                n => format!("idle after {n} round(s)"),
            });
        }
        // The warm phase is a wait: bounded by --wait-timeout from its
        // first round on.
        if let Some(waited) = cx.waited_too_long(i)? {
            let users = cx.users(&self.image)?.join("; ");
            bail!(crate::exec::GaveUp(format!(
                "{} is still in use after {waited} s of warm rounds (--wait-timeout; in use: {users}); stop its client (shut its server off) and run again: the rounds go on from round {n}",
                self.image,
            )));
        }
        let started = Instant::now();
        let taken_at = crate::units::unix_now();
        let (line, arrived) = self.round(cx, i, step, &plan_id, n + 1)?;
        let took = started.elapsed().as_secs_f64();
        // What the operator decides by: how current the destination is,
        // and about what a cut-over now costs (a round's work on what was
        // written since, and the cut-over's own snapshot).
        let current = if let Some(work) = arrived {
            format!(
                "in sync as of {}; a cut-over now takes about {:.0} s",
                crate::units::utc_time_of_day(taken_at),
                work.as_secs_f64().ceil()
            )
        } else {
            format!(
                "taken at {} and on its way",
                crate::units::utc_time_of_day(taken_at)
            )
        };
        cx.event(
            i,
            step.name.as_str(),
            "round",
            &format!("round {}: {current}; {line} in {took:.1} s", n + 1),
        );
        // The next round after the interval, or the cut-over as soon as
        // the image is idle; the lane holds no thread meanwhile.
        Err(crate::exec::Again {
            until: idle,
            at_most: Duration::from_secs(self.interval.max(1)).saturating_sub(started.elapsed()),
        }
        .into())
    }
}

impl WarmRounds {
    /// The newest round taken so far (0: none).
    fn rounds_taken(&self, cx: &Ctx<'_>, plan_id: &str) -> anyhow::Result<u64> {
        let snaps = cx.with_image(&self.image, false, |img| img.snapshots())?;
        Ok(snaps
            .iter()
            .filter_map(|s| crate::plan::round_number(plan_id, &s.name))
            .max()
            .unwrap_or(0))
    }

    /// Round `n`: its snapshot, the source's digest brought up to it, a
    /// mirror snapshot carrying it, the older rounds removed; then, with
    /// the destination's access, the copy brought up to it. What it did,
    /// and, when the copy is at the round, how long the part of it took
    /// that a cut-over does too (snapshots, digest, sync, copy).
    fn round(
        &self,
        cx: &Ctx<'_>,
        i: usize,
        step: &Step,
        plan_id: &str,
        n: u64,
    ) -> anyhow::Result<(String, Option<Duration>)> {
        let started = Instant::now();
        let name = crate::plan::round_snap(plan_id, n);
        let at = ImageAt {
            snap: Some(name.clone()),
            ..self.image.clone()
        };
        cx.freeze(&at, false)?;
        let src = cx.cluster(Site::Source)?.pool(&self.image.pool)?;
        let hashed = digest_image_kept(
            &src,
            &self.image.image,
            &name,
            &engine_options(&cx.opts.buffers),
            &mut cx.progress(i, step, Phase::Warm),
        )?;
        if self.mode == MirrorMode::Snapshot {
            cx.with_image(&self.image, true, |img| img.mirror_snapshot_create())?;
        }
        // The rounds before the one before this one are not needed (a
        // copy may still start from that one): removed once this round
        // is on its way, after what a cut-over would do too.
        let older = |prune: bool| {
            cx.with_image(&self.image, true, |img| {
                if prune {
                    img.mirror_snapshots_prune()?;
                }
                for s in img.snapshots()? {
                    if crate::plan::round_number(plan_id, &s.name)
                        .is_some_and(|k| k + KEPT_ROUNDS <= n)
                    {
                        img.snap_remove(&s.name)?;
                    }
                }
                Ok(())
            })
        };
        let mut line = format!("{} of the source hashed", human(hashed.bytes_read));
        // Idle meanwhile: the cut-over goes now; its copy starts from the
        // round before this one, which the destination keeps.
        if cx.access.dst.is_none()
            || cx.holds(&Check::NotInUse {
                image: self.image.clone(),
            })?
        {
            older(false)?;
            return Ok((line, None));
        }
        let mirrored = ImageAt {
            snap: Some(name.clone()),
            ..self.mirrored.clone()
        };
        cx.wait(
            i,
            step,
            &Check::MirrorSynced {
                source: at.clone(),
                mirrored: mirrored.clone(),
                mode: self.mode,
            },
        )?;
        let out = bring_up(cx, i, step, &mirrored, &self.partial, self.features)?;
        let _ = write!(
            line,
            ", {} copied into {} ({} of {} chunks)",
            human(out.bytes_written),
            self.partial,
            out.chunks_read,
            out.chunks
        );
        let work = started.elapsed();
        // Arrived: the mirror snapshots before it are not needed by the
        // peer any more; removed now, off the cut-over's path (where
        // librbd would remove one, a second monitor round trip).
        older(true)?;
        Ok((line, Some(work)))
    }
}

/// The partial copy brought up to `round` (the mirrored image at a warm
/// round): only the chunks changed since the round it holds are copied
/// (all of them the first time).
pub(super) fn bring_up(
    cx: &Ctx<'_>,
    i: usize,
    step: &Step,
    round: &ImageAt,
    partial: &ImageAt,
    features: Option<Features>,
) -> anyhow::Result<crate::transfer::Outcome> {
    let from = cx.dst()?.pool(&round.pool)?;
    let to = cx.dst()?.pool(&partial.pool)?;
    space::writing_into(cx.dst()?, &partial.pool, || {
        Ok(copy_image_onto(
            &from,
            &round.image,
            round.snap.as_deref(),
            None,
            &to,
            &partial.image,
            features,
            &engine_options(&cx.opts.buffers),
            &mut cx.progress(i, step, Phase::Warm),
        )?)
    })
}

fn human(bytes: u64) -> String {
    crate::units::human_bytes(bytes)
}
