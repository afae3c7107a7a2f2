//! ferry moves OpenStack block data (Cinder volumes, Glance images) between
//! two Ceph-backed clouds, letting Ceph's rbd-mirror carry the bytes.
//!
//! The library holds all logic; `main.rs` only parses arguments and calls it.

pub mod ceph;
