//! Integration tests against the real two-cluster test environment
//! (`ceph-testenv/testenv up`). One binary, a module per capability.

mod common;

mod it {
    mod adopt;
    mod attach;
    mod ceph_layer;
    mod check;
    pub mod openstack;
    mod plan;
    pub mod roles;
    mod run;
    mod servers;
    pub mod shapes;
    mod snapshots;
    mod stream;
    mod stream_path;
    mod testenv;
    mod transfer;
    mod trust;
    mod warm;
}
