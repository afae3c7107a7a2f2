//! Connecting to the clusters and clouds a migration names: the one place
//! that says how long a cluster may take to answer and how long a failing
//! OpenStack call is retried. `check`, `plan`, `run` and the role runs all
//! connect through here; what a failed connection means to each of them is
//! theirs to say (`check` reports it, `plan::connect` classifies it).

use std::time::Duration;

use crate::ceph::{CephError, Cluster, ClusterConfig, Timeouts};
use crate::openstack::{Cloud, RetryPolicy};
use crate::spec::Spec;

/// How long a cluster may take to answer, and how failing OpenStack calls
/// are retried.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
}

impl Policy {
    /// For reading a few facts (`check`, `plan`): every cluster operation
    /// has the spec's `timeout_seconds`, so a cluster that does not answer
    /// is reported soon; OpenStack calls are retried for
    /// `api_retry_seconds`.
    pub fn reading(spec: &Spec) -> Policy {
        Policy {
            timeouts: Timeouts::uniform(spec.timeout()),
            retry: spec.api_retry(),
        }
    }

    /// For a run: monitors have `timeout_seconds`, OSD operations
    /// `data_timeout_seconds` (a slow request while placement groups peer
    /// must not fail an hour-long copy); OpenStack calls as for reading.
    pub fn running(spec: &Spec) -> Policy {
        Policy {
            timeouts: spec.run_timeouts(),
            retry: spec.api_retry(),
        }
    }

    /// For a role run, which has no spec: the limits its flags give (as the
    /// spec's options would).
    pub fn given(control: Duration, data: Duration, retry: Duration) -> Policy {
        Policy {
            timeouts: Timeouts { control, data },
            retry: RetryPolicy::default().with_deadline(retry),
        }
    }
}

/// Connects to a cluster, failing within about the control limit when no
/// monitor answers.
pub fn cluster(cfg: &ClusterConfig, policy: &Policy) -> Result<Cluster, CephError> {
    Cluster::connect_with(cfg, policy.timeouts)
}

/// The cluster the spec names for one side, connected; None when it names
/// none (a spec whose volumes all stream may name no cluster).
pub fn named_cluster(cfg: &ClusterConfig, policy: &Policy) -> Option<Result<Cluster, CephError>> {
    cfg.is_given().then(|| cluster(cfg, policy))
}

/// Connects to a cloud named in clouds.yaml, or to the one the `OS_*`
/// variables describe when `name` is `env`; its calls retried under the
/// policy.
pub fn cloud(name: &str, policy: &Policy) -> anyhow::Result<Cloud> {
    crate::openstack::connect_with(name, policy.retry)
}

/// What a migration can reach: every cluster and cloud the spec names for
/// a whole run, one role's share for `--role`.
#[derive(Default)]
pub struct Access {
    pub src: Option<Cluster>,
    pub dst: Option<Cluster>,
    pub src_cloud: Option<Cloud>,
    pub dst_cloud: Option<Cloud>,
}

/// The words for a cluster connection that failed: which conf, as whom.
pub fn cluster_context(cfg: &ClusterConfig) -> String {
    format!(
        "connecting to {} as client.{}",
        cfg.conf.display(),
        cfg.client
    )
}
