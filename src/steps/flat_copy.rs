//! The `flat-copy` step kind. Copy a clone's snapshot into a new, flat image in
//! the same pool with `features`, then mark it complete (`FLAT_OF`); a copy
//! found without the mark is incomplete and made afresh.

use super::prelude::*;

/// Copy a clone's snapshot into a new, flat image in the same pool with
/// `features`, then mark it complete (`FLAT_OF`); a copy found without
/// the mark is incomplete and made afresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlatCopy {
    pub from: ImageAt,
    pub to: ImageAt,
    pub features: Features,
}

impl Kind for FlatCopy {
    fn role(&self) -> Role {
        Role::SourceStorage
    }

    fn moves_data(&self) -> bool {
        true
    }

    fn prepares_source(&self) -> bool {
        true
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![
            ("from", &self.from, Place::Source),
            ("to", &self.to, Place::Source),
        ]
    }

    fn describe(&self) -> String {
        let FlatCopy { from, to, features } = self;
        format!("copy the clone {from} out flat to {to} ({features}); this copy is mirrored")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let FlatCopy { from, to, features } = self;
        let mut b = String::new();
        let feats = feature_args(*features);
        // An unmarked carrier may be an interrupted copy, or an image
        // that is not ferry's: a script cannot tell, so it asks.
        let _ = writeln!(
            b,
            "image_absent {} || die {}",
            spec(to),
            q(&format!("{to} exists without the {} mark of a finished copy: an interrupted copy (remove it: rbd rm {}/{}), or an image ferry did not make (rename it); then run again", crate::plan::FLAT_OF, to.pool, to.image))
        );
        let _ = writeln!(b, "say {}", q(&format!("copying {from} out flat to {to}")));
        let _ = writeln!(b, "copy_flat {} {}{feats}", with_snap(from), spec(to));
        let _ = writeln!(
            b,
            "rbdw image-meta set {} {} {}",
            spec(to),
            q(crate::plan::FLAT_OF),
            with_snap(from)
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let FlatCopy { from, to, features } = self;
        // Ferry's own unmarked copy is an interrupted one: afresh.
        // An image of that name ferry did not make is not its to
        // remove.
        if cx.exists(to)? {
            cx.refuse_unless_made_by_ferry(to)?;
            cx.remove_image(to)?;
        }
        let pool = cx.cluster(to.site)?.pool(&to.pool)?;
        let started = Instant::now();
        // ferry's engine, not librbd's copy: in Ceph 16.2 rbd_copy of
        // a clone at a snapshot leaves out the objects only its
        // parent holds (measured: a 64 MiB parent, 40 MiB of it
        // lost), and the cut-over digest, taken of this copy, would
        // not see it. The engine reads the parent's data through
        // the clone.
        space::writing_into(cx.cluster(to.site)?, &to.pool, || {
            Ok(crate::transfer::rbd::copy_image(
                &pool,
                &from.image,
                from.snap.as_deref(),
                &pool,
                &to.image,
                Some(*features),
                &engine_options(&cx.opts.buffers),
                &mut cx.progress(i, step, Phase::Preparing),
            )?)
        })?;
        crate::transfer::rbd::forget_log(&pool, &to.image)?;
        pool.open_image(&to.image)?.metadata_set(
            crate::plan::FLAT_OF,
            &format!(
                "{}/{}@{}",
                from.pool,
                from.image,
                from.snap.as_deref().unwrap_or_default()
            ),
        )?;
        Ok(format!(
            "{to} ({features}), {:.1} s",
            started.elapsed().as_secs_f64()
        ))
    }
}
