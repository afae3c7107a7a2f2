//! OpenStack access: Keystone auth and catalog (clouds.yaml / `OS_*`),
//! and the Cinder and Glance calls ferry makes, on blocking reqwest.
//!
//! Written against the APIs directly rather than the `openstack_sdk` crate:
//! ferry needs a dozen calls, the crate's generated manage-existing call
//! declares its microversion range wrongly (min 3.16, max 3.15), and its
//! async, code-generated surface is far larger than what is used here.

pub mod api;
pub mod attach;
pub mod cinder;
pub mod config;
pub mod glance;
pub mod paging;
pub mod request;
pub mod retry;
pub mod session;

pub use attach::{AttachError, Connection, ConnectionKind, Connector, LocalAttachment};
pub use cinder::{BackendPool, Cinder, Volume, VolumeType};
pub use config::{Auth, CloudConfig, ConfigError};
pub use glance::{Glance, Image};
pub use request::Request;
pub use retry::{Repeat, RetryPolicy};
pub use session::{requests_sent, Answer, ApiError, ApiErrorKind, Cloud, Service};

/// Connects to a cloud named in clouds.yaml, or to the one the `OS_*`
/// variables describe when `name` is `env`.
pub fn connect(name: &str) -> anyhow::Result<Cloud> {
    connect_with(name, RetryPolicy::default())
}

/// [`connect`], its calls retried under `retry`.
pub fn connect_with(name: &str, retry: RetryPolicy) -> anyhow::Result<Cloud> {
    let cfg = if name == "env" {
        config::from_env(&|k| std::env::var(k).ok())?
    } else {
        config::load(name)?
    };
    Cloud::connect_with(cfg, retry)
}

/// Connects to the cloud a spec names for one side, if it names one.
pub fn connect_side(
    name: Option<&str>,
    side: &str,
    retry: RetryPolicy,
) -> anyhow::Result<Option<Cloud>> {
    use anyhow::Context;
    name.map(|n| {
        connect_with(n, retry).with_context(|| format!("connecting to the {side} cloud {n:?}"))
    })
    .transpose()
}
