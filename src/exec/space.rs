//! Full pools, named. A write into a pool over its quota (or on full OSDs)
//! does not fail in librados: it waits until the OSD operation times out,
//! and then says `ETIMEDOUT` about whatever call was waiting. A step that
//! writes asks the pool first, and again when it fails, so the message says
//! "pool cinder-volumes is full (quota 64.0 MiB)".

use anyhow::Context;

use crate::ceph::{Cluster, PoolSpace};
use crate::units::human_bytes;

/// Why `pool` takes no more writes, if it does not. Pure.
pub fn full_reason(pool: &str, space: &PoolSpace) -> Option<String> {
    if space.quota_bytes > 0 && space.stored_bytes >= space.quota_bytes {
        return Some(format!(
            "pool {pool} is full (quota {}, {} stored)",
            human_bytes(space.quota_bytes),
            human_bytes(space.stored_bytes)
        ));
    }
    if space.quota_objects > 0 && space.objects >= space.quota_objects {
        return Some(format!(
            "pool {pool} is full (quota {} objects)",
            space.quota_objects
        ));
    }
    if space.max_avail == Some(0) {
        return Some(format!("pool {pool} is full (its OSDs have no space left)"));
    }
    None
}

/// Why `pool` on `cluster` takes no more writes, as far as the monitors
/// tell; None when it does, or when they cannot be asked (the step's own
/// error then stands alone).
fn pool_full(cluster: &Cluster, pool: &str) -> Option<String> {
    match cluster.pool_space(pool) {
        Ok(space) => full_reason(pool, &space).map(|r| format!("{r} on {}", cluster.name())),
        Err(e) => {
            tracing::debug!(pool, error = %e, "reading the pool's quota and use");
            None
        }
    }
}

/// Runs `write`, a step that writes into `pool` of `cluster`: refused at
/// once when the pool is full (nothing is written; exit status 2, as a
/// stall), and its failure named by a full pool when the pool is full then.
pub fn writing_into<T>(
    cluster: &Cluster,
    pool: &str,
    write: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if let Some(why) = pool_full(cluster, pool) {
        return Err(super::GaveUp(format!(
            "{why}: nothing was written; raise its quota or free space, then run again"
        ))
        .into());
    }
    write().or_else(|e| match pool_full(cluster, pool) {
        Some(why) => Err(e).context(format!(
            "{why}: raise its quota or free space, then run again"
        )),
        None => Err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_pool_at_its_quota_or_on_full_osds_is_named_full() {
        let space = PoolSpace {
            quota_bytes: 64 * MIB,
            stored_bytes: 64 * MIB + 4096,
            objects: 17,
            max_avail: Some(6 << 30),
            ..PoolSpace::default()
        };
        assert_eq!(
            full_reason("cinder-volumes", &space).as_deref(),
            Some("pool cinder-volumes is full (quota 64.0 MiB, 64.0 MiB stored)")
        );
        let below = PoolSpace {
            stored_bytes: 63 * MIB,
            ..space
        };
        assert_eq!(full_reason("cinder-volumes", &below), None);
        let objects = PoolSpace {
            quota_objects: 17,
            ..below
        };
        assert_eq!(
            full_reason("v", &objects).as_deref(),
            Some("pool v is full (quota 17 objects)")
        );
        let osds = PoolSpace {
            max_avail: Some(0),
            ..PoolSpace::default()
        };
        assert_eq!(
            full_reason("v", &osds).as_deref(),
            Some("pool v is full (its OSDs have no space left)")
        );
        // No quota, room left, or a pool df does not list: not full.
        assert_eq!(full_reason("v", &PoolSpace::default()), None);
    }
}
