//! Adoption bound to its plan, on the real test environment: a volume in
//! the destination cloud that another plan adopted from the same source (a
//! trial migration's, kept) is refused by default, naming it; kept or
//! replaced on request, as `ferry run`, `ferry run --role` and the script
//! each read the plan. Cinder's manageable list read page by page.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry::ceph::{Features, ImageMirrorState};
use ferry::openstack::{Cinder, Cloud, Glance, Service, Volume};
use reqwest::Method;

use crate::common::{self, checksum, mirror_daemon_shared, unique, write_sparse, BoundedOutput};
use crate::common::{spec_in_temp_dir, step_events, TestEnv};
use crate::it::openstack::{
    adopted, source_image, source_volume, wait_volume, DestGuard, ImageGuard, VolumeGuard,
};

const GIB: u64 = 1 << 30;

/// A kept trial migration's volume: an empty volume of the destination
/// cloud named `name`, marked as adopted from `source` by plan `plan`.
fn trial_adoption<'c>(dst: &'c Cloud, name: &str, source: &str, plan: &str) -> VolumeGuard<'c> {
    let meta: BTreeMap<String, String> = [
        ("ferry_source_volume".to_string(), source.to_string()),
        ("ferry_plan".to_string(), plan.to_string()),
        ("app".to_string(), "trial".to_string()),
    ]
    .into();
    let v = Cinder(dst)
        .create_volume(name, 1, Some("ceph"), &meta)
        .unwrap();
    wait_volume(dst, &v.id, "available");
    VolumeGuard {
        cloud: dst,
        id: v.id,
    }
}

/// The trial volume after a replace: renamed, its source mark moved, its
/// data and other metadata kept.
fn assert_replaced(trial: &Volume, name: &str, source: &str, trial_plan: &str, by: &str) {
    assert_eq!(
        trial.name.as_deref(),
        Some(format!("{name}.ferry-replaced-{by}").as_str()),
        "{trial:#?}"
    );
    let m = &trial.metadata;
    assert_eq!(m.get("ferry_source_volume"), None, "{m:?}");
    assert_eq!(
        m.get("ferry_replaced_source_volume").map(String::as_str),
        Some(source)
    );
    assert_eq!(m.get("ferry_replaced_by").map(String::as_str), Some(by));
    assert_eq!(m.get("ferry_plan").map(String::as_str), Some(trial_plan));
    assert_eq!(m.get("app").map(String::as_str), Some("trial"));
    assert_eq!(trial.status, "available");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `ferry run` with every credential: refused by default before anything
/// changes, naming the earlier volume; with `--earlier-adoption replace`
/// the verified copy is adopted under the planned name, the trial volume
/// renamed with its data kept, and the new volume holds the source's data.
#[test]
fn a_kept_trial_adoption_is_refused_and_replaced_on_request() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let name = unique("trial");
    let (vol, want) = source_volume(&env, &src, &name, 41);
    let _dest = DestGuard {
        cloud: &dst,
        volume_marker: Some(vol.id.clone()),
        image: None,
    };
    let trial = trial_adoption(&dst, &name, &vol.id, "7e57aaaa");
    let (spec, state) = spec_in_temp_dir(
        &(env.spec_yaml_with_clouds(&format!("  - volume: {name}\n"))
            + "options: {mirror_mode: snapshot, cleanup: true, volume_types: {ceph: ceph}}\n"),
    );
    let clouds = env.clouds_yaml();

    let out = common::ferry_run(&spec, &state, &[], Some(&clouds));
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "refused: {said}");
    assert!(
        said.contains(&format!(
            "source volume {} was adopted before, not by this plan",
            vol.id
        )) && said.contains(&format!(
            "volume {} {name:?} (available, adopted by plan 7e57aaaa)",
            trial.id
        )),
        "{said}"
    );
    assert!(said.contains("options.earlier_adoption"), "{said}");
    // Nothing changed: not the source, not the trial volume.
    let a = env.connect("site-a");
    let sp = a.pool("volumes").unwrap();
    let simg = sp
        .open_image_read_only(&format!("volume-{}", vol.id), None)
        .unwrap();
    assert_eq!(
        simg.mirror_info().unwrap().state,
        ImageMirrorState::Disabled
    );
    assert_eq!(simg.features().unwrap(), Features::DEFAULT);
    let t = Cinder(&dst).volume(&trial.id).unwrap();
    assert_eq!(t.name.as_deref(), Some(name.as_str()));

    let out = common::ferry_run(
        &spec,
        &state,
        &["--earlier-adoption", "replace"],
        Some(&clouds),
    );
    assert!(out.status.success(), "replace: {}", stderr(&out));
    let found = adopted(&dst, &vol.id);
    assert_eq!(found.len(), 1, "{found:#?}");
    let v = &found[0];
    assert_ne!(v.id, trial.id);
    assert_eq!(v.name.as_deref(), Some(name.as_str()));
    let plan = v.metadata.get("ferry_plan").cloned().unwrap_or_default();
    assert!(plan.len() == 8 && plan != "7e57aaaa", "{v:#?}");
    assert_eq!(
        v.metadata.get("ferry_copy_sha256").map(String::as_str),
        Some(want.as_str()),
        "ferry run reads the verified record: {v:#?}"
    );
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let img = pool
        .open_image_read_only(&format!("volume-{}", v.id), None)
        .unwrap();
    assert_eq!(checksum(&img), want);
    let t = Cinder(&dst).volume(&trial.id).unwrap();
    assert_replaced(&t, &name, &vol.id, "7e57aaaa", &plan);
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "volume {} {name:?}, an earlier adoption of the same source, is replaced by plan {plan}: renamed",
            trial.id
        )),
        "{said}"
    );

    // Again, without the option: this plan's adoption is found, nothing acts.
    let again = common::ferry_run(&spec, &state, &[], Some(&clouds));
    assert!(again.status.success(), "again: {}", stderr(&again));
    let ev = step_events(&again);
    assert!(
        ev.iter()
            .all(|e| e["detail"] == "(already)" || e["detail"] == "(past)"),
        "second run acted: {ev:#?}"
    );
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// Images of a pool, removed at the end.
struct Gone<'p>(&'p ferry::ceph::Pool<'p>, Vec<String>);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        for n in &self.1 {
            let _ = self.0.remove_image(n);
        }
    }
}

/// How the destination cloud's part is run.
#[derive(Clone, Copy, PartialEq)]
enum Reader {
    Script,
    Ferry,
}

/// Runs the destination cloud's part of `bundle` with `choice` (None: the
/// plan's), waiting at most `wait` seconds.
fn cloud_part(
    env: &TestEnv,
    reader: Reader,
    dir: &Path,
    bundle: &Path,
    state: &str,
    choice: Option<&str>,
    wait: u64,
) -> Output {
    let mut cmd = match reader {
        Reader::Script => {
            let mut c = Command::new("sh");
            // Pages of one entry: the copy is on a later page.
            c.arg(dir.join("destination-cloud.sh"))
                .env("FERRY_WAIT_TIMEOUT", wait.to_string())
                .env("FERRY_MANAGEABLE_PAGE", "1");
            if let Some(ch) = choice {
                c.env("FERRY_EARLIER_ADOPTION", ch);
            }
            c
        }
        Reader::Ferry => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
            c.args([
                "run",
                "--yes",
                "--output",
                "json",
                "--role",
                "destination-cloud",
            ])
            .args(["--cloud", "destination", "--wait-timeout"])
            .arg(wait.to_string())
            .arg("--state-dir")
            .arg(dir.join(state));
            if let Some(ch) = choice {
                c.args(["--earlier-adoption", ch]);
            }
            c.arg(bundle);
            c
        }
    };
    let out = cmd
        .env("OS_CLIENT_CONFIG_FILE", env.clouds_yaml())
        .env("OS_CLOUD", "destination")
        .env("FERRY_POLL", "1")
        .output_bounded()
        .unwrap();
    eprintln!("--- {choice:?}: {}\n{}", out.status, stderr(&out));
    out
}

/// The plan bundle of a spec moving `images` (spec text), and the script
/// of its destination cloud part, in `dir`.
fn bundle(env: &TestEnv, dir: &Path, images: &str) -> (PathBuf, ferry::plan::Plan) {
    std::fs::create_dir_all(dir).unwrap();
    let bundle = crate::it::roles::plan_bundle(
        env,
        dir,
        &(env.spec_yaml_with_clouds(images)
            + "options: {mirror_mode: snapshot, cleanup: true, volume_types: {ceph: ceph}}\n"),
    );
    let script = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["script", "--role", "destination-cloud"])
        .arg(&bundle)
        .output_bounded()
        .unwrap();
    assert!(script.status.success());
    std::fs::write(dir.join("destination-cloud.sh"), &script.stdout).unwrap();
    let plan = serde_yaml::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    (bundle, plan)
}

/// The destination cloud's part alone, read by the script and by `ferry
/// run --role`: refuses a kept trial adoption by default, keeps it on
/// request (adopting nothing), and replaces it once the verified copy is
/// published (here an image written under the copy's name).
fn the_cloud_part_refuses_keeps_and_replaces(reader: Reader) {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let tag = if reader == Reader::Script {
        "sh"
    } else {
        "run"
    };
    let name = unique(&format!("trial-{tag}"));
    let (vol, _) = source_volume(&env, &src, &name, 43);
    let _dest = DestGuard {
        cloud: &dst,
        volume_marker: Some(vol.id.clone()),
        image: None,
    };
    let trial = trial_adoption(&dst, &name, &vol.id, "7e57bbbb");
    let dir: PathBuf = std::env::temp_dir().join(unique(&format!("ferry-adopt-{tag}")));
    let (bundle, plan) = bundle(&env, &dir, &format!("  - volume: {name}\n"));

    // Refused, naming it, before anything changes.
    let out = cloud_part(&env, reader, &dir, &bundle, "s1", None, 3);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "refused: {said}");
    assert!(
        said.contains(&format!(
            "source volume {} was adopted before, not by this plan ({})",
            vol.id, plan.id
        )) && said.contains(&format!(
            "volume {} {name:?} (available, adopted by plan 7e57bbbb)",
            trial.id
        )),
        "{said}"
    );
    // Kept: it stands for this plan's adoption; nothing is adopted or waited for.
    let out = cloud_part(&env, reader, &dir, &bundle, "s2", Some("keep"), 3);
    let said = stderr(&out);
    assert!(out.status.success(), "keep: {said}");
    assert!(
        said.contains(&format!("keeps volume {}", trial.id)),
        "{said}"
    );
    assert_eq!(adopted(&dst, &vol.id).len(), 1);
    let t = Cinder(&dst).volume(&trial.id).unwrap();
    assert_eq!(t.name.as_deref(), Some(name.as_str()));

    // The verified copy published: an image under the copy's final name.
    let copy = plan.images[0]
        .steps
        .iter()
        .find_map(|s| match &s.action {
            ferry::plan::Action::AdoptVolume(ferry::steps::AdoptVolume { image, .. }) => {
                Some(image.image.clone())
            }
            _ => None,
        })
        .unwrap();
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    // Listed before the copy (Cinder sorts by name, descending).
    let first = format!("zzzz-{name}");
    let _gone = Gone(&pool, vec![first.clone()]);
    pool.create_image(&first, 1 << 20, Features::DEFAULT)
        .unwrap();
    pool.create_image(&copy, GIB, Features::DEFAULT).unwrap();
    let want = {
        let img = pool.open_image(&copy).unwrap();
        write_sparse(&img, GIB, 4, 1 << 20, 44);
        checksum(&img)
    };
    let out = cloud_part(&env, reader, &dir, &bundle, "s3", Some("replace"), 120);
    let said = stderr(&out);
    assert!(out.status.success(), "replace: {said}");
    let found = adopted(&dst, &vol.id);
    assert_eq!(found.len(), 1, "{found:#?}");
    let v = &found[0];
    assert_ne!(v.id, trial.id);
    assert_eq!(v.name.as_deref(), Some(name.as_str()));
    assert_eq!(
        v.metadata.get("ferry_plan").map(String::as_str),
        Some(plan.id.as_str())
    );
    let img = pool
        .open_image_read_only(&format!("volume-{}", v.id), None)
        .unwrap();
    assert_eq!(checksum(&img), want);
    let t = Cinder(&dst).volume(&trial.id).unwrap();
    assert_replaced(&t, &name, &vol.id, "7e57bbbb", &plan.id);

    // Again, with the plan's own choice (refuse): this plan's adoption is
    // found; nothing is refused or acted on. (The script's replace run
    // checked the same after its adopt step: `volume_adopted` held.)
    if reader == Reader::Script {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let out = cloud_part(&env, reader, &dir, &bundle, "s3", None, 3);
    let said = stderr(&out);
    assert!(out.status.success(), "again: {said}");
    assert!(!said.contains("renamed"), "{said}");
    assert_eq!(adopted(&dst, &vol.id).len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_destination_cloud_script_refuses_keeps_and_replaces_an_earlier_adoption() {
    the_cloud_part_refuses_keeps_and_replaces(Reader::Script);
}

#[test]
fn the_destination_cloud_role_run_refuses_keeps_and_replaces_an_earlier_adoption() {
    the_cloud_part_refuses_keeps_and_replaces(Reader::Ferry);
}

/// Cinder's manageable list in pages of one: every image of the pool is
/// read, the later pages' too (Cinder links no next page and cuts a page at
/// its osapi_max_limit without a word).
#[test]
fn manageable_volumes_are_read_past_the_first_page() {
    let env = TestEnv::load();
    let dst = env.cloud("destination");
    let b = env.connect("site-b");
    let pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let tag = unique("manageable");
    let names: Vec<String> = (0..3).map(|n| format!("{tag}-{n}")).collect();
    let _gone = Gone(&pool, names.clone());
    for n in &names {
        pool.create_image(n, 1 << 20, Features::DEFAULT).unwrap();
    }
    let cinder = Cinder(&dst);
    let host = cinder
        .backend_pools()
        .unwrap()
        .into_iter()
        .find(|p| {
            p.rbd_location()
                .is_some_and(|(_, rbd)| rbd == env.var("DEST_CINDER_POOL"))
        })
        .expect("a backend of the destination Cinder pool")
        .name;
    let one = cinder.manageable_paged(&host, 1).unwrap();
    let all = cinder.manageable(&host).unwrap();
    // Pages of one: as many pages as images, each read.
    assert!(one.len() >= 3, "{one:?}");
    for n in &names {
        assert!(one.iter().any(|(m, _)| m == n), "{n} missing: {one:?}");
        assert!(all.iter().any(|(m, _)| m == n), "{n} missing: {all:?}");
    }
    let mut a: Vec<&str> = one.iter().map(|(m, _)| m.as_str()).collect();
    a.sort();
    a.dedup();
    assert_eq!(a.len(), one.len(), "no page read twice");
}

/// A Glance image another plan registered under this plan's image id (the
/// source image's): refused by default, naming it, by the script and by
/// `ferry run --role`; kept on request; never replaced (Glance does not
/// give an image id twice).
#[test]
fn an_earlier_glance_registration_is_refused_kept_on_request_and_never_replaced() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let name = unique("trial-img");
    let (img, _) = source_image(&src, &name, 45);
    let _src_img = ImageGuard(&src, img.id.clone());
    // The trial's registration: active, marked as ferry's by another plan.
    let trial = Glance(&dst)
        .create(
            &serde_json::json!({"id": img.id, "name": name, "disk_format": "raw",
            "container_format": "bare", "ferry_source": format!("image:{}", img.id),
            "ferry_plan": "7e57eeee"}),
        )
        .unwrap();
    let _dst_img = ImageGuard(&dst, trial.id.clone());
    dst.call(
        Service::Image,
        Method::PUT,
        &format!("/v2/images/{}/file", img.id),
        &[("Content-Type", "application/octet-stream")],
        Some(ferry::openstack::session::Body::Raw(&[0u8; 4096])),
    )
    .unwrap();
    let dir: PathBuf = std::env::temp_dir().join(unique("ferry-adopt-img"));
    let (bundle, plan) = bundle(&env, &dir, &format!("  - glance_image: {name}\n"));
    for reader in [Reader::Ferry, Reader::Script] {
        let state = if reader == Reader::Ferry { "f" } else { "s" };
        let out = cloud_part(&env, reader, &dir, &bundle, state, None, 3);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "refused: {said}");
        assert!(
            said.contains(&format!(
                "image {} was registered earlier by plan 7e57eeee, not by this plan ({})",
                img.id, plan.id
            )),
            "{said}"
        );
        let out = cloud_part(&env, reader, &dir, &bundle, state, Some("replace"), 3);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "replace refused: {said}");
        assert!(
            said.contains("Glance never gives an image id twice"),
            "{said}"
        );
        let out = cloud_part(&env, reader, &dir, &bundle, state, Some("keep"), 3);
        let said = stderr(&out);
        assert!(out.status.success(), "keep: {said}");
        assert!(
            said.contains(&format!(
                "keeps image {}, registered earlier by plan 7e57eeee",
                img.id
            )),
            "{said}"
        );
        let kept = Glance(&dst).image(&img.id).unwrap();
        assert_eq!(
            kept.user_properties().get("ferry_plan").map(String::as_str),
            Some("7e57eeee")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
