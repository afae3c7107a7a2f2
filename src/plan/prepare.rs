//! The one planning service: connect to what the spec names, discover the
//! source images, build the plan. `ferry plan` and `ferry run` both plan
//! through here, under one rule for what is a warning and what an error
//! ([`Purpose::take`]).

use std::path::Path;

use anyhow::Context;

use super::{build, discover, published_parents, recorded_plan_id, BuildOptions, Plan, Site};
use crate::ceph::CephError;
use crate::connect::{named_cluster, Access, Policy};
use crate::spec::Spec;

/// Who a plan is made for; it decides what the destination's absence means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `ferry plan`: the plan is shown, or written as a bundle that the
    /// roles carry out, each with its own access (the destination storage
    /// part reads its cluster itself). A plan can be made without the
    /// destination cluster: it then lacks what only the destination knows
    /// (its fsid, the parents published there), and says so in warnings.
    /// Nothing of the destination cloud is read.
    Show,
    /// `ferry run`: this process acts on both sides itself, with the
    /// run's limits. A destination it cannot read is an error: a plan
    /// without the destination's fsid cannot register Glance images, and
    /// one that missed published parents copies clones flat for good.
    Run,
}

/// What reading the destination cluster can fail at. A plan can be made
/// without each; it then lacks what that reading gives.
enum Shortfall {
    Connect(CephError),
    Fsid(CephError),
    Parents(anyhow::Error),
}

impl Shortfall {
    /// What the plan lacks, for a warning.
    fn warning(&self) -> String {
        match self {
            Shortfall::Connect(e) => format!("the destination cluster cannot be read ({e}); the plan carries no destination fsid, which registering Glance images needs, and plans clones whose parent is not in this migration flat"),
            Shortfall::Fsid(e) => format!("the destination cluster's fsid cannot be read ({e}); the plan carries none, which registering Glance images needs"),
            Shortfall::Parents(e) => format!("the destination Glance pool cannot be read ({e:#}); clones whose parent is not in this migration are planned flat"),
        }
    }

    /// What was being done, for an error.
    fn error(self) -> anyhow::Error {
        match self {
            Shortfall::Connect(e) => {
                anyhow::Error::new(e).context("connecting to the destination cluster")
            }
            Shortfall::Fsid(e) => {
                anyhow::Error::new(e).context("reading the destination cluster's fsid")
            }
            Shortfall::Parents(e) => {
                e.context("reading the destination Glance pool for the clones' parents")
            }
        }
    }
}

impl Purpose {
    /// The one rule for problems met while planning. What the destination
    /// cluster could not give is a warning for a plan shown (see
    /// [`Purpose::Show`]) and an error for a run. Everything else is an
    /// error for both, and is returned where it happens: the source cluster
    /// and the clouds not reached (the plan is made of what they say),
    /// source images that cannot be read or are refused (in use, in
    /// another plan), the source fsid (the records on the images bind to
    /// it), two images copied to one name.
    fn take(self, shortfall: Shortfall, warnings: &mut Vec<String>) -> anyhow::Result<()> {
        match self {
            Purpose::Show => {
                warnings.push(shortfall.warning());
                Ok(())
            }
            Purpose::Run => Err(shortfall.error()),
        }
    }

    /// The connection limits: a plan shown reads a few facts and should
    /// fail soon; a run keeps its connections for the copies.
    pub fn policy(self, spec: &Spec) -> Policy {
        match self {
            Purpose::Show => Policy::reading(spec),
            Purpose::Run => Policy::running(spec),
        }
    }
}

/// What a planning step made, and the warnings it met on the way.
pub struct Planned<T> {
    pub value: T,
    pub warnings: Vec<String>,
}

impl<T> Planned<T> {
    /// Says each warning on stderr (`ferry: warning: ...`) and gives what
    /// was made: for the command line, where they are said as they come.
    pub fn warned(self) -> T {
        for w in &self.warnings {
            eprintln!("ferry: warning: {w}");
        }
        self.value
    }
}

/// Connects to the clusters and clouds the spec names, as `purpose` needs
/// them.
pub fn connect(spec: &Spec, purpose: Purpose) -> anyhow::Result<Planned<Access>> {
    let policy = purpose.policy(spec);
    let mut warnings = Vec::new();
    let src = named_cluster(&spec.source.cluster, &policy)
        .transpose()
        .context("connecting to the source cluster")?;
    let dst = match named_cluster(&spec.destination.cluster, &policy) {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            purpose.take(Shortfall::Connect(e), &mut warnings)?;
            None
        }
        None => None,
    };
    let cloud = |name: &Option<String>, site: Site| {
        name.as_deref()
            .map(|n| {
                crate::connect::cloud(n, &policy)
                    .with_context(|| format!("connecting to the {site} cloud {n:?}"))
            })
            .transpose()
    };
    let src_cloud = cloud(&spec.source.cloud, Site::Source)?;
    let dst_cloud = match purpose {
        Purpose::Run => cloud(&spec.destination.cloud, Site::Destination)?,
        Purpose::Show => None,
    };
    Ok(Planned {
        value: Access {
            src,
            dst,
            src_cloud,
            dst_cloud,
        },
        warnings,
    })
}

/// A plan made, and the id it took from the records on the images, if a
/// plan was begun on them before.
pub struct Prepared {
    pub plan: Plan,
    pub resumed: Option<String>,
}

/// Reads the source images of the spec at `spec_path` and what the
/// destination knows, through `access`, and builds the plan.
pub fn prepare(
    spec: &Spec,
    spec_path: &Path,
    access: &Access,
    purpose: Purpose,
) -> anyhow::Result<Planned<Prepared>> {
    let mut warnings = Vec::new();
    let facts = discover(access.src.as_ref(), spec, access.src_cloud.as_ref())
        .with_context(|| format!("reading the source images of {}", spec_path.display()))?;
    let mut opts = BuildOptions::from_spec(spec);
    opts.servers.servers = super::discover::discover_servers(spec, access.src_cloud.as_ref())?;
    if let Some(d) = &access.dst {
        match d.fsid() {
            Ok(f) => opts.destination_fsid = Some(f),
            Err(e) => purpose.take(Shortfall::Fsid(e), &mut warnings)?,
        }
        match published_parents(d, spec, &facts) {
            Ok(found) => opts.published_parents = found,
            Err(e) => purpose.take(Shortfall::Parents(e), &mut warnings)?,
        }
    }
    if let Some(s) = &access.src {
        opts.source_fsid = Some(s.fsid().context("reading the source cluster's fsid")?);
    }
    // A plan begun before (its bundle or run state lost) is made again
    // under its own id, from what it recorded on the images.
    let resumed = recorded_plan_id(&facts)?;
    if let Some(id) = &resumed {
        opts.plan_id = id.clone();
    }
    let plan = build(&opts, &facts);
    plan.check_destination_names()?;
    Ok(Planned {
        value: Prepared { plan, resumed },
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed_out() -> CephError {
        CephError::BadReply {
            op: "fsid",
            object: "site-b".into(),
            message: "no answer".into(),
        }
    }

    #[test]
    fn what_the_destination_cannot_give_warns_a_plan_shown_and_fails_a_run() {
        let mut warnings = Vec::new();
        Purpose::Show
            .take(Shortfall::Fsid(timed_out()), &mut warnings)
            .unwrap();
        Purpose::Show
            .take(
                Shortfall::Parents(anyhow::anyhow!("pool images: denied")),
                &mut warnings,
            )
            .unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].starts_with("the destination cluster's fsid cannot be read ("));
        assert!(
            warnings[1].ends_with("clones whose parent is not in this migration are planned flat")
        );

        let mut none = Vec::new();
        let e = Purpose::Run
            .take(Shortfall::Connect(timed_out()), &mut none)
            .unwrap_err();
        assert!(none.is_empty());
        assert_eq!(
            format!("{e:#}"),
            "connecting to the destination cluster: fsid(site-b): unexpected reply: no answer"
        );
    }
}
