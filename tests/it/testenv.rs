//! The test environment's own waits end: a volume Cinder cannot place, and a
//! backend the scheduler never lists, fail with the service's message within
//! their deadline instead of hanging (the demo and `testenv up` use these
//! same waits).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ferry::openstack::Cinder;

use crate::common::BoundedOutput;
use crate::common::{unique, TestEnv};
use crate::it::openstack::VolumeGuard;

fn script(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ceph-testenv/openstack");
    let t0 = Instant::now();
    let out = Command::new(path)
        .args(args)
        .envs(env.iter().copied())
        .output_bounded()
        .expect("running ceph-testenv/openstack");
    (out, t0.elapsed())
}

#[test]
fn a_volume_cinder_cannot_place_fails_the_fixture_with_cinders_message() {
    let _shared = crate::common::mirror_daemon_shared();
    let env = TestEnv::load();
    let name = unique("unplaceable");
    let (out, took) = script(
        &["volume", "source", &name, "ceph-unplaceable"],
        &[
            ("FERRY_WAIT_TIMEOUT", "120"),
            ("OS_CLIENT_CONFIG_FILE", env.var("CLOUDS_YAML")),
        ],
    );
    // Whatever happened, the volume goes.
    let src = env.cloud("source");
    for v in Cinder(&src).volumes(Some(&name)).unwrap() {
        drop(VolumeGuard {
            cloud: &src,
            id: v.id,
        });
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the fixture was made: {err}");
    assert!(
        took < Duration::from_secs(120),
        "it waited out the deadline ({took:?}) instead of stopping on `error`: {err}"
    );
    assert!(
        err.contains("is error") && err.contains("Could not find any available weighted backend"),
        "the message does not say why: {err}"
    );
}

#[test]
fn a_backend_the_scheduler_never_lists_ends_the_readiness_wait() {
    let _shared = crate::common::mirror_daemon_shared();
    let _env = TestEnv::load();
    let (out, took) = script(&["wait-pool", "site-a", "5", "ceph-nowhere"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a missing backend was ready: {err}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {err}");
    assert!(
        err.contains("not ready after 5 s")
            && err.contains("no pool of backend ceph-nowhere")
            && err.contains("#ceph-site-a"),
        "the message does not name what is missing and what is there: {err}"
    );
}
