//! ferry moves OpenStack block data (Cinder volumes, Glance images) between
//! two Ceph-backed clouds, letting Ceph's rbd-mirror carry the bytes.
//!
//! The library holds all logic; `main.rs` only parses arguments and calls
//! `cli::run`. `spec` parsing, `plan::build` and `check::assess` are pure; `ceph` is the only
//! module that talks to Ceph. `unsafe` is refused everywhere but in `ceph`
//! (librados and librbd) and `sys` (the system calls std does not wrap).

#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod ceph;
pub mod check;
pub mod cli;
pub mod connect;
pub mod exec;
pub mod openstack;
pub mod osm;
pub(crate) mod parallel;
pub mod plan;
pub mod render;
pub mod spec;
pub mod steps;
#[allow(unsafe_code)]
pub mod sys;

#[cfg(test)]
mod props;
#[cfg(test)]
pub(crate) mod testutil;
pub mod transfer;
pub mod units;
