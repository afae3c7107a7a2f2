//! OpenStack access: Keystone auth and catalog (clouds.yaml / `OS_*`),
//! and the Cinder and Glance calls ferry makes, on blocking reqwest.
//!
//! Written against the APIs directly rather than the `openstack_sdk` crate:
//! ferry needs a dozen calls, the crate's generated manage-existing call
//! declares its microversion range wrongly (min 3.16, max 3.15), and its
//! async, code-generated surface is far larger than what is used here.

pub mod attach;
pub mod cinder;
pub mod config;
pub mod glance;
pub mod paging;
pub mod retry;
pub mod session;

pub use attach::{AttachError, Connection, ConnectionKind, Connector, LocalAttachment};
pub use cinder::{BackendPool, Cinder, ManageRequest, Volume, VolumeType};
pub use config::{Auth, CloudConfig, ConfigError};
pub use glance::{Glance, Image};
pub use retry::{Repeat, RetryPolicy};
pub use session::{requests_sent, Answer, ApiError, ApiErrorKind, Cloud, Service};

/// Connects to a cloud named in clouds.yaml, or to the one the `OS_*`
/// variables describe when `name` is `env`, its calls retried under `retry`
/// (`crate::connect` says which policy).
pub fn connect_with(name: &str, retry: RetryPolicy) -> anyhow::Result<Cloud> {
    let cfg = if name == "env" {
        config::from_env(&|k| std::env::var(k).ok())?
    } else {
        config::load(name)?
    };
    Cloud::connect_with(cfg, retry)
}
