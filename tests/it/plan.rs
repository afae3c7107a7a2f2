//! `ferry plan` end to end: discovery on the real source cluster feeds the
//! pure planner; nothing is changed.

use ferry::ceph::{Features, ImageMirrorState};
use serde_json::Value;

use crate::common::{ferry_with_spec, unique, ImageGuard, TestEnv};

#[test]
fn plan_reads_source_images_and_changes_nothing() {
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    let name = unique("plan");
    let _g = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    volumes
        .create_image(&name, 5 << 20, Features::DEFAULT)
        .unwrap();
    let text = env.spec_yaml(&format!("  - rbd: volumes/{name}\n"))
        + "options: {mirror_mode: journal, cleanup: true}\n";
    let out = ferry_with_spec(&["plan", "--output", "json"], &text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let img = &plan["images"][0];
    assert_eq!(img["facts"]["size"], 5 << 20);
    assert_eq!(img["facts"]["in_use"], false);
    assert_eq!(img["facts"]["pool_mode"], "image");
    let steps: Vec<&str> = img["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "preflight",
            "record-original",
            "disable-features",
            "enable-features",
            "enable-mirroring",
            "cut-over-snapshot",
            "hash-source",
            "wait-for-sync",
            "copy",
            "verify",
            "publish",
            "confirm-verified",
            "check-source-unchanged",
            "disable-mirroring",
            "remove-cut-over-snapshot",
            "restore-features",
            "forget-original"
        ]
    );
    // Planning wrote nothing: features and mirroring are as created, and
    // no record.
    let after = volumes.open_image_read_only(&name, None).unwrap();
    assert!(
        !after
            .metadata_list()
            .unwrap()
            .iter()
            .any(|(k, _)| k.starts_with("ferry-plan-")),
        "a record written by planning"
    );
    assert_eq!(after.features().unwrap(), Features::DEFAULT);
    assert_eq!(
        after.mirror_info().unwrap().state,
        ImageMirrorState::Disabled
    );
}

#[test]
fn plan_of_a_missing_image_fails_with_its_name() {
    let env = TestEnv::load();
    let out = ferry_with_spec(&["plan"], &env.spec_yaml("  - volume: nope\n"));
    assert_eq!(out.status.code(), Some(1), "an error, not a wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rbd_open_read_only(volumes/volume-nope): ENOENT (not found)"),
        "{err}"
    );
}
