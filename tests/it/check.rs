//! `ferry check` end to end: the binary against the real clusters, healthy
//! and broken in each way an operator meets.

use std::process::Command;
use std::time::{Duration, Instant};

use ferry::ceph::Features;
use serde_json::Value;

use crate::common::BoundedOutput;
use crate::common::{
    ferry_with_spec, mirror_daemon_exclusive, mirror_daemon_shared, unique, wait_for, ImageGuard,
    TestEnv,
};

/// Runs `ferry check --output json` on spec text; returns exit code and report.
fn check(spec_text: &str) -> (i32, Value) {
    let out = ferry_with_spec(&["check", "--output", "json"], spec_text);
    let code = out.status.code().unwrap_or(-1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

fn problems(report: &Value) -> Vec<(String, String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["severity"].as_str().unwrap().to_string(),
                p["subject"].as_str().unwrap().to_string(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn errors(report: &Value) -> Vec<(String, String)> {
    problems(report)
        .into_iter()
        .filter(|p| p.0 == "error")
        .map(|p| (p.1, p.2))
        .collect()
}

#[test]
fn healthy_setup_with_an_image_is_ready() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let a = env.connect("site-a");
    let name = unique("check");
    let _g = ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    let volumes = a.pool("volumes").unwrap();
    volumes
        .create_image(&name, 3 << 20, Features::DEFAULT)
        .unwrap();
    volumes
        .open_image(&name)
        .unwrap()
        .snap_create("keep-me")
        .unwrap();

    let (code, r) = check(&env.spec_yaml(&format!("  - rbd: volumes/{name}\n")));
    assert_eq!(errors(&r), vec![], "{r:#}");
    assert_eq!(code, 0);
    assert_eq!(r["source"]["health"]["status"], "HEALTH_OK");
    assert_eq!(r["source"]["fsid"], env.var("SITE_A_FSID"));
    assert_eq!(
        r["destination"]["rbd_mirror_daemons"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let dpool = &r["destination"]["pools"][0];
    assert_eq!(dpool["name"], "volumes");
    assert_eq!(dpool["mirror_mode"], "image");
    assert_eq!(dpool["peers"][0]["direction"], "rx-only");
    let i = &r["images"][0];
    assert_eq!(i["size"], 3 << 20);
    assert_eq!(
        i["features"],
        serde_json::json!([
            "layering",
            "exclusive-lock",
            "object-map",
            "fast-diff",
            "deep-flatten"
        ])
    );
    assert_eq!(i["user_snapshots"], serde_json::json!(["keep-me"]));
    assert_eq!(i["watchers"], serde_json::json!([]));
    assert_eq!(
        problems(&r),
        vec![(
            "warning".to_string(),
            format!("site-a/volumes/{name}"),
            "1 snapshot(s) will be carried: keep-me".to_string()
        )]
    );
}

#[test]
fn missing_image_and_wrong_pool_are_errors() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (code, r) = check(&env.spec_yaml("  - volume: does-not-exist\n"));
    assert_eq!(code, 1);
    let e = errors(&r);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "site-a/volumes/volume-does-not-exist");
    assert!(e[0].1.starts_with("image not found"), "{}", e[0].1);

    let text = env
        .spec_yaml("")
        .replace("cinder: cinder-volumes", "cinder: no-such-pool");
    let (code, r) = check(&text);
    assert_eq!(code, 1);
    let p = r["problems"].as_array().unwrap();
    assert_eq!(p.len(), 1, "{r:#}");
    assert_eq!(p[0]["subject"], "site-b/no-such-pool");
    assert!(p[0]["hint"]
        .as_str()
        .unwrap()
        .contains("no pool \"no-such-pool\" on cluster site-b"));
}

#[test]
fn wrong_key_is_refused_with_a_clear_message() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let dir = std::env::temp_dir().join(unique("ferry-key"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("ceph-authtool")
        .arg("--gen-print-key")
        .output_bounded()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap();
    let keyring = dir.join("wrong.keyring");
    std::fs::write(
        &keyring,
        format!("[client.ferry-source]\n\tkey = {}\n", key.trim()),
    )
    .unwrap();
    let text = env
        .spec_yaml("")
        .replace(env.var("SITE_A_USER_KEYRING"), keyring.to_str().unwrap());
    let (code, r) = check(&text);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 1);
    let e = errors(&r);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "site-a");
    assert!(
        e[0].1.starts_with("cannot connect to the source cluster"),
        "{}",
        e[0].1
    );
    assert_eq!(r["source"]["connect_error"]["kind"], "permission-denied");
    assert!(r["problems"][0]["hint"]
        .as_str()
        .unwrap()
        .contains("refused client.ferry-source's key"));
}

#[test]
fn unreachable_monitor_times_out_instead_of_hanging() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let dir = std::env::temp_dir().join(unique("ferry-mon"));
    std::fs::create_dir_all(&dir).unwrap();
    // A port nothing listens on: connecting must give up after the timeout.
    let conf = dir.join("site-x.conf");
    std::fs::write(&conf, "[global]\nmon host = v2:127.0.0.1:21999\n").unwrap();
    let text = env.spec_yaml("").replacen(
        &format!("conf: {}", env.var("SITE_B_CONF")),
        &format!("conf: {}", conf.display()),
        1,
    ) + "options:\n  timeout_seconds: 3\n";
    let start = Instant::now();
    let (code, r) = check(&text);
    let took = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 1);
    assert!(took < Duration::from_secs(30), "check took {took:?}");
    let e = errors(&r);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "site-x");
    assert!(
        e[0].1
            .starts_with("cannot connect to the destination cluster"),
        "{}",
        e[0].1
    );
    assert!(r["problems"][0]["hint"]
        .as_str()
        .unwrap()
        .contains("no monitor answered"));
}

#[test]
fn pools_without_a_peer_are_reported() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let pool = unique("nopeer");
    for site in ["site-a", "site-b"] {
        env.cli("ceph", site, &["osd", "pool", "create", &pool, "8"]);
        env.cli("rbd", site, &["pool", "init", &pool]);
        env.cli("rbd", site, &["mirror", "pool", "enable", &pool, "image"]);
    }
    let text = env
        .spec_yaml("")
        .replace("cinder: volumes", &format!("cinder: {pool}"))
        .replace(
            "mirrored_cinder: volumes",
            &format!("mirrored_cinder: {pool}"),
        );
    // The operators' keys have no caps on the new pool: check as admin.
    let text = text
        .replace(
            env.var("SITE_A_USER_KEYRING"),
            env.var("SITE_A_ADMIN_KEYRING"),
        )
        .replace(
            env.var("SITE_B_USER_KEYRING"),
            env.var("SITE_B_ADMIN_KEYRING"),
        )
        .replace("client: ferry-source", "client: admin")
        .replace("client: ferry-dest", "client: admin");
    let (code, r) = check(&text);
    for site in ["site-a", "site-b"] {
        env.cli(
            "ceph",
            site,
            &[
                "osd",
                "pool",
                "rm",
                &pool,
                &pool,
                "--yes-i-really-really-mean-it",
            ],
        );
    }
    assert_eq!(code, 1);
    let e = errors(&r);
    assert_eq!(
        e,
        vec![(
            format!("site-b/{pool}"),
            "no mirror peer receives into this pool from site-a".to_string()
        )]
    );
}

#[test]
fn stopped_rbd_mirror_daemon_is_reported() {
    let _daemon = mirror_daemon_exclusive();
    let env = TestEnv::load();
    env.stop_rbd_mirror();
    let result = std::panic::catch_unwind(|| {
        wait_for(
            "check to report the stopped daemon",
            Duration::from_secs(90),
            || {
                let (code, r) = check(&env.spec_yaml(""));
                let e = errors(&r);
                (code == 1 && !e.is_empty()).then_some(e)
            },
        )
    });
    // Restart it whatever happened, so the other tests have a daemon.
    env.restart();
    let e = result.unwrap();
    assert_eq!(
        e,
        vec![(
            "site-b".to_string(),
            "no rbd-mirror daemon is running for the destination cluster".to_string()
        )]
    );
}
