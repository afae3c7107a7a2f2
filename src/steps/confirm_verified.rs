//! The `confirm-verified` step kind. Note on the source image `mark` that the
//! copy of `source` (which holds the cut-over checksum) is verified
//! (`verified_key`), before cleanup changes anything.

use super::prelude::*;

/// Note on the source image `mark` that the copy of `source` (which
/// holds the cut-over checksum) is verified (`verified_key`), before
/// cleanup changes anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmVerified {
    pub source: ImageAt,
    pub copy: ImageAt,
    pub mark: ImageAt,
    #[serde(default)]
    pub origin: SourceId,
}

impl Kind for ConfirmVerified {
    fn role(&self) -> Role {
        Role::Cleanup
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![
            ("source", &self.source, Place::Source),
            ("copy", &self.copy, Place::Destination),
            ("mark", &self.mark, Place::Source),
        ]
    }

    fn describe(&self) -> String {
        let ConfirmVerified { mark, copy, .. } = self;
        format!("note on {mark} that {copy} is verified (from the hand-off)")
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let ConfirmVerified {
            source,
            mark,
            origin,
            ..
        } = self;
        let mut b = String::new();
        let s = source.snap.as_deref().unwrap_or_default();
        let _ = writeln!(
            b,
            "verified_source {} {} {} || die 'not verified'",
            spec(source),
            snap(source),
            q(&format!("{}/{}", origin.pool, origin.image))
        );
        let _ = writeln!(
            b,
            "rbdw image-meta set {} {} \"$OUT\"",
            spec(mark),
            q(&crate::plan::verified_key(s))
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let ConfirmVerified {
            source,
            copy,
            mark,
            origin,
        } = self;
        let sum = cx
            .verified_sum(source, copy, origin)?
            .ok_or_else(|| anyhow!("the copy of {source} is not verified"))?;
        let snap = source.snap.as_deref().unwrap_or_default();
        cx.with_image(&plain(mark), true, |img| {
            img.metadata_set(&crate::plan::verified_key(snap), &sum)
        })?;
        Ok(format!("digest {}", short(&sum)))
    }
}
