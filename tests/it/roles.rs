//! Split roles on the real test environment: a plan bundle, then each role's
//! part run on its own, in a shell that holds only that role's credentials
//! (the least-privilege Ceph users, a clouds.yaml with one cloud): as the
//! generated shell scripts, and as `ferry run --role`. Both end where one
//! `ferry run` with every credential ends, re-running changes nothing, and
//! a destination part started too early waits and stops cleanly.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry::ceph::{Features, ImageMirrorState};
use ferry::openstack::{Cinder, Glance};

use crate::common::BoundedOutput;
use crate::common::{checksum, json_lines, mirror_daemon_shared, unique, TestEnv};
use crate::it::openstack::{
    adopted, source_image, source_volume, DestGuard, ImageGuard, VolumeGuard,
};

pub(crate) const ROLES: [&str; 5] = [
    "source-cloud",
    "source-storage",
    "destination-storage",
    "destination-cloud",
    "cleanup",
];

/// How a role's part is run.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Runner {
    Script,
    Ferry,
}

pub(crate) struct Split<'e> {
    pub(crate) env: &'e TestEnv,
    pub(crate) dir: PathBuf,
    pub(crate) bundle: PathBuf,
    pub(crate) runner: Runner,
    /// The plan's transfer is direct.
    pub(crate) direct: bool,
}

impl Split<'_> {
    /// A clouds.yaml holding only the cloud `name`.
    fn clouds_yaml(&self, name: &str) -> PathBuf {
        let all: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(self.env.clouds_yaml()).unwrap())
                .unwrap();
        let one = serde_yaml::to_string(&serde_yaml::Mapping::from_iter([(
            "clouds".into(),
            serde_yaml::Mapping::from_iter([(name.into(), all["clouds"][name].clone())]).into(),
        )]))
        .unwrap();
        let path = self.dir.join(format!("clouds-{name}.yaml"));
        std::fs::write(&path, one).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A command with a clean environment that holds only `role`'s credentials.
    pub(crate) fn command(&self, role: &str, program: &Path) -> Command {
        let home = self.dir.join(format!("home-{role}"));
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", &home)
            .env("FERRY_POLL", "1");
        match role {
            "source-cloud" | "destination-cloud" => {
                let cloud = if role == "source-cloud" {
                    "source"
                } else {
                    "destination"
                };
                cmd.env("OS_CLIENT_CONFIG_FILE", self.clouds_yaml(cloud))
                    .env("OS_CLOUD", cloud);
            }
            _ => {
                let (conf, user, keyring) = self.ceph(role);
                cmd.env("CEPH_CONF", conf).env(
                    "CEPH_ARGS",
                    format!("--id {user} --keyring {}", keyring.display()),
                );
                if role == "destination-storage" && self.direct {
                    // A direct copy reads the source: its storage user too.
                    let (conf, user, keyring) = self.ceph("source-storage");
                    cmd.env(
                        "FERRY_SOURCE_CEPH_ARGS",
                        format!(
                            "-c {} --id {user} --keyring {}",
                            conf.display(),
                            keyring.display()
                        ),
                    );
                }
            }
        }
        cmd
    }

    /// The conf, user and keyring of a storage role.
    fn ceph(&self, role: &str) -> (PathBuf, String, PathBuf) {
        let site = if role == "destination-storage" {
            "B"
        } else {
            "A"
        };
        (
            self.env.path(&format!("SITE_{site}_CONF")),
            self.env.var(&format!("SITE_{site}_USER")).to_string(),
            self.env.path(&format!("SITE_{site}_USER_KEYRING")),
        )
    }

    /// Runs one role's part; `wait` bounds its waits (seconds).
    pub(crate) fn run(&self, role: &str, wait: u64, handoff: Option<&Path>) -> Output {
        let out = match self.runner {
            Runner::Script => {
                let script = self.dir.join(format!("{role}.sh"));
                let mut cmd = self.command(role, Path::new("sh"));
                cmd.arg(&script).env("FERRY_WAIT_TIMEOUT", wait.to_string());
                if let Some(h) = handoff {
                    cmd.arg(h);
                }
                cmd.output_bounded().unwrap()
            }
            Runner::Ferry => {
                let mut cmd = self.command(role, Path::new(env!("CARGO_BIN_EXE_ferry")));
                cmd.args([
                    "run",
                    "--output",
                    "json",
                    "--role",
                    role,
                    "--yes",
                    "--wait-timeout",
                ])
                .arg(wait.to_string())
                .arg("--state-dir")
                .arg(self.dir.join("state"));
                match role {
                    "source-cloud" => {
                        cmd.args(["--cloud", "source"]);
                    }
                    "destination-cloud" => {
                        cmd.args(["--cloud", "destination"]);
                    }
                    _ => {
                        let (conf, user, keyring) = self.ceph(role);
                        cmd.arg("--conf")
                            .arg(conf)
                            .args(["--id", &user, "--keyring"])
                            .arg(keyring);
                        if role == "destination-storage" && self.direct {
                            let (conf, user, keyring) = self.ceph("source-storage");
                            cmd.arg("--source-conf")
                                .arg(conf)
                                .args(["--source-id", &user, "--source-keyring"])
                                .arg(keyring);
                        }
                    }
                }
                if let Some(h) = handoff {
                    cmd.arg("--verified").arg(h);
                }
                cmd.arg(&self.bundle).output_bounded().unwrap()
            }
        };
        eprintln!(
            "--- {role}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The hand-off lines a destination storage run printed.
    pub(crate) fn handoff(&self, out: &Output) -> String {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        match self.runner {
            Runner::Script => text,
            Runner::Ferry => json_lines(out)
                .iter()
                .filter_map(|l| l["hand_off"].as_str().map(|s| format!("{s}\n")))
                .collect(),
        }
    }

    /// Whether a second run acted: a step that had something to do.
    fn acted(&self, out: &Output) -> Vec<String> {
        match self.runner {
            Runner::Script => String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| l.ends_with("): done") && !l.contains("(check-source-cloud)"))
                .map(str::to_string)
                .collect(),
            Runner::Ferry => json_lines(out)
                .iter()
                .filter(|e| e["status"] == "done" && e["step"] != "check-source-cloud")
                .filter(|e| e["detail"] != "(already)" && e["detail"] != "(past)")
                .map(|e| e.to_string())
                .collect(),
        }
    }
}

/// Writes `spec_text` as `dir`'s migration.yaml and plans its bundle
/// (plan.yaml, with every credential of the test environment); its path.
pub(crate) fn plan_bundle(env: &TestEnv, dir: &Path, spec_text: &str) -> PathBuf {
    let spec = dir.join("migration.yaml");
    std::fs::write(&spec, spec_text).unwrap();
    let bundle = dir.join("plan.yaml");
    let planned = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan", "--bundle"])
        .arg(&bundle)
        .arg(&spec)
        .env("OS_CLIENT_CONFIG_FILE", env.clouds_yaml())
        .env_remove("OS_CLOUD")
        .output_bounded()
        .unwrap();
    ok("plan", &planned);
    bundle
}

pub(crate) fn ok(role: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{role} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mode`: snapshot or journal mirroring, or direct (the transfer).
fn split_roles(mode: &str, runner: Runner) {
    let options = match mode {
        "direct" => "transfer: direct".to_string(),
        m => format!("mirror_mode: {m}"),
    };
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let tag = format!(
        "{}-{mode}",
        if runner == Runner::Script {
            "sh"
        } else {
            "run"
        }
    );
    let vname = unique(&format!("vol-{tag}"));
    let (vol, vol_sum): (VolumeGuard, String) = source_volume(&env, &src, &vname, 31);
    let iname = unique(&format!("img-{tag}"));
    let (img, img_sum) = source_image(&src, &iname, 32);
    let _src_img = ImageGuard(&src, img.id.clone());
    let _dst_img = ImageGuard(&dst, img.id.clone());
    let _dest = DestGuard {
        cloud: &dst,
        volume_marker: Some(vol.id.clone()),
        image: None,
    };

    // The plan bundle, by whoever sees the source (here with every key).
    let dir = std::env::temp_dir().join(unique(&format!("ferry-roles-{tag}")));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = plan_bundle(
        &env,
        &dir,
        &(env.spec_yaml_with_clouds(&format!("  - volume: {vname}\n  - glance_image: {iname}\n"))
            + &format!("options: {{{options}, cleanup: true, volume_types: {{ceph: ceph}}}}\n")),
    );
    let text = std::fs::read_to_string(&bundle).unwrap();
    // No secret of any cloud or Ceph user is in it.
    let clouds: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(env.clouds_yaml()).unwrap()).unwrap();
    let mut secrets: Vec<String> = clouds["clouds"]
        .as_mapping()
        .unwrap()
        .values()
        .filter_map(|c| c["auth"]["password"].as_str().map(str::to_string))
        .collect();
    for k in ["SITE_A_USER_KEYRING", "SITE_B_USER_KEYRING"] {
        let ring = std::fs::read_to_string(env.path(k)).unwrap();
        secrets.extend(
            ring.lines()
                .filter_map(|l| l.trim().strip_prefix("key = ").map(str::to_string)),
        );
    }
    assert!(secrets.len() >= 4, "{} secrets found", secrets.len());
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "the bundle holds a secret");
    }
    let split = Split {
        env: &env,
        dir: dir.clone(),
        bundle: bundle.clone(),
        runner,
        direct: mode == "direct",
    };
    if runner == Runner::Script {
        for role in ROLES {
            let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
                .args(["script", "--role", role])
                .arg(&bundle)
                .output_bounded()
                .unwrap();
            ok(role, &out);
            std::fs::write(dir.join(format!("{role}.sh")), &out.stdout).unwrap();
        }
    }
    let plan: ferry::plan::Plan = serde_yaml::from_str(&text).unwrap();
    let record = ferry::plan::record_object(&plan.id);
    let b = env.connect("site-b");
    let cinder_pool = b.pool(env.var("DEST_CINDER_POOL")).unwrap();

    // Too early: the destination parts wait, then stop without acting.
    let early = split.run("destination-storage", 3, None);
    let said = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(2), "gave up waiting: {said}");
    assert!(said.contains("waiting for"), "{said}");
    assert!(said.contains(&format!("volume-{}", vol.id)), "{said}");
    let early = split.run("destination-cloud", 3, None);
    let said = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(2), "gave up waiting: {said}");
    assert!(said.contains("the verified copy"), "{said}");
    assert!(adopted(&dst, &vol.id).is_empty());
    let names = env.cli("rbd", "site-b", &["ls", env.var("DEST_CINDER_POOL")]);
    assert!(!names.contains(&vol.id), "nothing copied early: {names:?}");
    // The attribute the verify step writes: the volume's copy's final name.
    let copy_name = plan
        .images
        .iter()
        .flat_map(|i| &i.steps)
        .find_map(|s| match &s.action {
            ferry::plan::Action::Verify(ferry::steps::Verify { copy, origin, .. })
                if origin.image == format!("volume-{}", vol.id) =>
            {
                Some(copy.image.clone())
            }
            _ => None,
        })
        .expect("the plan verifies the volume's copy");
    assert_eq!(
        cinder_pool.object_xattr(&record, &copy_name).unwrap(),
        None,
        "nothing is recorded while the source has not moved"
    );

    // In role order, each with its own credentials.
    let mut handoff = None;
    for role in ROLES {
        let out = split.run(role, 600, handoff.as_deref());
        ok(role, &out);
        if role == "destination-storage" {
            let lines = split.handoff(&out);
            assert_eq!(lines.lines().count(), 2, "{lines}");
            let handed = ferry::exec::parse_handoff(&lines, &plan.id).unwrap();
            let rec = &handed[&format!("volumes/volume-{}", vol.id)];
            assert_eq!(rec.sha256, vol_sum, "{lines}");
            let a = env.connect("site-a");
            let volumes = a.pool("volumes").unwrap();
            let src_img = volumes
                .open_image_read_only(&format!("volume-{}", vol.id), None)
                .unwrap();
            assert_eq!(rec.source.fsid, a.fsid().unwrap(), "{lines}");
            assert_eq!(rec.source.id, src_img.id().unwrap(), "{lines}");
            // The record the assertion before the parts looked for is there now.
            let kept = cinder_pool.object_xattr(&record, &copy_name).unwrap();
            assert_eq!(
                kept.as_deref().map(ferry::plan::VerifiedRecord::parse),
                Some(Ok(rec.clone()))
            );
            // A copy deleted before it is adopted leaves its record behind:
            // the script, seeing that the record's image is gone, copies
            // and verifies again instead of calling the part done.
            if runner == Runner::Script {
                cinder_pool.remove_image(&copy_name).unwrap();
                let again = split.run(role, 600, None);
                ok(role, &again);
                let said = String::from_utf8_lossy(&again.stderr);
                assert!(
                    said.contains("no longer holds: the copy is made again"),
                    "{said}"
                );
                let acted = split.acted(&again).join("\n");
                for step in ["(copy)", "(verify)", "(publish)"] {
                    assert!(acted.contains(step), "{step} not again: {acted}");
                }
                let rec2 = cinder_pool.object_xattr(&record, &copy_name).unwrap();
                let rec2 = ferry::plan::VerifiedRecord::parse(&rec2.unwrap()).unwrap();
                assert_eq!(rec2.sha256, vol_sum);
                assert_ne!(rec2.copy_id, rec.copy_id, "a new copy, a new id");
                assert!(cinder_pool.image_exists(&copy_name).unwrap());
            }
            let f = dir.join("verified.txt");
            std::fs::write(&f, lines).unwrap();
            handoff = Some(f);
        }
    }

    // The state one `ferry run` with every credential reaches.
    let found = adopted(&dst, &vol.id);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].status, "available");
    assert_eq!(found[0].volume_type.as_deref(), Some("ceph"));
    let copy = cinder_pool
        .open_image_read_only(&format!("volume-{}", found[0].id), None)
        .unwrap();
    assert_eq!(checksum(&copy), vol_sum);
    let got = Glance(&dst).image(&img.id).unwrap();
    assert_eq!(got.status, "active");
    let mut buf = Vec::new();
    Glance(&dst).download(&img.id, &mut buf).unwrap();
    assert_eq!(ferry::transfer::digest_bytes(&buf), img_sum);
    let a = env.connect("site-a");
    let snap = ferry::plan::cutover_snap(&plan.id);
    for (pool, name) in [
        ("volumes", format!("volume-{}", vol.id)),
        ("images", img.id.clone()),
    ] {
        let p = a.pool(pool).unwrap();
        let s = p.open_image_read_only(&name, None).unwrap();
        assert!(
            !s.snapshots().unwrap().iter().any(|x| x.name == snap),
            "{pool}/{name}: cut-over removed"
        );
        assert_eq!(
            s.metadata_get(&ferry::plan::verified_key(&snap)).unwrap(),
            Some(if pool == "volumes" {
                vol_sum.clone()
            } else {
                img_sum.clone()
            }),
            "{pool}/{name}: the verified checksum is noted"
        );
        assert_eq!(
            s.metadata_get(&ferry::plan::checksum_key(&snap)).unwrap(),
            None
        );
        if pool == "volumes" {
            assert_eq!(s.mirror_info().unwrap().state, ImageMirrorState::Disabled);
            // Journal mode kept every feature it found (journaling went
            // beside them), and cleanup took journaling off again.
            assert_eq!(s.features().unwrap(), Features::DEFAULT);
        }
    }

    // Twice: nothing changes the second time.
    for role in ROLES {
        let out = split.run(role, 30, handoff.as_deref());
        ok(role, &out);
        let acted = split.acted(&out);
        assert!(acted.is_empty(), "{role} acted again: {acted:#?}");
    }
    assert_eq!(adopted(&dst, &vol.id).len(), 1);
    assert_eq!(
        Cinder(&dst)
            .volumes(None)
            .unwrap()
            .iter()
            .filter(|v| v.name.as_deref() == Some(vname.as_str()))
            .count(),
        1
    );
    drop(vol);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn snapshot_mode_scripts_in_role_order_move_a_volume_and_an_image() {
    split_roles("snapshot", Runner::Script);
}

#[test]
fn journal_mode_scripts_in_role_order_move_a_volume_and_an_image() {
    split_roles("journal", Runner::Script);
}

#[test]
fn direct_scripts_in_role_order_move_a_volume_and_an_image() {
    split_roles("direct", Runner::Script);
}

#[test]
fn direct_role_runs_move_a_volume_and_an_image() {
    split_roles("direct", Runner::Ferry);
}

#[test]
fn snapshot_mode_role_runs_move_a_volume_and_an_image() {
    split_roles("snapshot", Runner::Ferry);
}

#[test]
fn journal_mode_role_runs_move_a_volume_and_an_image() {
    split_roles("journal", Runner::Ferry);
}

/// The test environment's admin on one region's services (test fixtures
/// only: volume types).
fn admin_cloud(env: &TestEnv, region: &str) -> ferry::openstack::Cloud {
    let file = env.clouds_yaml().display().to_string();
    let mut cfg = ferry::openstack::config::load_with(env.var("ADMIN_CLOUD"), &|k| {
        (k == "OS_CLIENT_CONFIG_FILE").then(|| file.clone())
    })
    .unwrap();
    cfg.region = Some(region.into());
    ferry::openstack::Cloud::connect(cfg).unwrap_or_else(|e| panic!("admin on {region}: {e:#}"))
}

/// A public volume type bound to a backend, deleted at the end (once no
/// volume has it: deleting volumes takes a while).
struct TypeGuard {
    admin: ferry::openstack::Cloud,
    id: String,
}

impl TypeGuard {
    fn create(admin: ferry::openstack::Cloud, name: &str, backend: &str) -> TypeGuard {
        use ferry::openstack::session::Body;
        use ferry::openstack::Service;
        let v: serde_json::Value = admin
            .call_json(
                Service::BlockStorage,
                reqwest::Method::POST,
                "/types",
                &[],
                Some(Body::Json(&serde_json::json!({"volume_type": {
                    "name": name, "os-volume-type-access:is_public": true}}))),
            )
            .unwrap_or_else(|e| panic!("creating volume type {name:?}: {e:#}"));
        let id = v["volume_type"]["id"].as_str().unwrap().to_string();
        let guard = TypeGuard { admin, id };
        guard
            .admin
            .call(
                Service::BlockStorage,
                reqwest::Method::POST,
                &format!("/types/{}/extra_specs", guard.id),
                &[],
                Some(Body::Json(
                    &serde_json::json!({"extra_specs": {"volume_backend_name": backend}}),
                )),
            )
            .unwrap();
        guard
    }
}

impl Drop for TypeGuard {
    fn drop(&mut self) {
        for _ in 0..60 {
            let r = self.admin.call(
                ferry::openstack::Service::BlockStorage,
                reqwest::Method::DELETE,
                &format!("/types/{}", self.id),
                &[],
                None,
            );
            match r {
                Err(e) if e.status() == Some(400) => {
                    std::thread::sleep(std::time::Duration::from_secs(2))
                }
                _ => return,
            }
        }
    }
}

/// A volume whose name, description, metadata value and volume type hold
/// spaces, quotes, `$()`, backticks, `;` and newlines moves through the
/// rendered scripts, run in role order with one role's credentials each: it
/// is adopted under exactly those strings, and none of them ran.
#[test]
fn hostile_names_move_through_the_scripts_and_none_of_them_runs() {
    use ferry::openstack::session::Body;
    use ferry::openstack::Service;

    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    // Were any string run by a shell, it would create a file beside this.
    let marker = std::env::temp_dir().join(unique("fp"));
    let m = marker.display();
    let hostile = |what: &str| {
        format!("{what} it's \"q\" $(touch {m}-d) `touch {m}-b` ;touch {m}-s;\n touch {m}-n $HOME")
    };
    let (vname, descr, note) = (hostile("vol"), hostile("descr"), hostile("note"));
    let tname = hostile(&unique("type"));
    // The same hostile type in both clouds (created by their admin).
    let _types = [
        TypeGuard::create(admin_cloud(&env, "site-a"), &tname, "ceph-site-a"),
        TypeGuard::create(admin_cloud(&env, "site-b"), &tname, "ceph-site-b"),
    ];
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let created: serde_json::Value = src
        .call_json(
            Service::BlockStorage,
            reqwest::Method::POST,
            "/volumes",
            &[],
            Some(Body::Json(&serde_json::json!({"volume": {
                "name": vname, "description": descr, "size": 1,
                "volume_type": tname, "metadata": {"note": note}}}))),
        )
        .unwrap_or_else(|e| panic!("creating the source volume: {e:#}"));
    let id = created["volume"]["id"].as_str().unwrap().to_string();
    let vol = VolumeGuard {
        cloud: &src,
        id: id.clone(),
    };
    crate::it::openstack::wait_volume(&src, &id, "available");
    let vol_sum = {
        let a = env.connect("site-a");
        let pool = a.pool("volumes").unwrap();
        let img = pool.open_image(&format!("volume-{id}")).unwrap();
        crate::common::write_sparse(&img, 1 << 30, 4, 1 << 20, 41);
        checksum(&img)
    };
    let _dest = DestGuard {
        cloud: &dst,
        volume_marker: Some(id.clone()),
        image: None,
    };

    let dir = std::env::temp_dir().join(unique("ferry-hostile"));
    std::fs::create_dir_all(&dir).unwrap();
    // JSON is YAML: every string stays exactly as it is.
    let options = serde_json::json!({"mirror_mode": "snapshot", "cleanup": true,
        "volume_types": {tname.clone(): tname.clone()}});
    let bundle = plan_bundle(
        &env,
        &dir,
        &(env.spec_yaml_with_clouds(&format!("  - volume: {id}\n"))
            + &format!("options: {options}\n")),
    );
    let plan: ferry::plan::Plan =
        serde_yaml::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    for role in ROLES {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["script", "--role", role])
            .arg(&bundle)
            .output_bounded()
            .unwrap();
        ok(role, &out);
        let script = dir.join(format!("{role}.sh"));
        std::fs::write(&script, &out.stdout).unwrap();
        // SC2016 ("expressions don't expand in single quotes") is the
        // point: the names hold `$(...)` that must not expand.
        let lint = Command::new("shellcheck")
            .args(["-s", "sh", "-e", "SC2016"])
            .arg(&script)
            .output_bounded()
            .expect("shellcheck");
        assert!(
            lint.status.success(),
            "{role}: {}",
            String::from_utf8_lossy(&lint.stdout)
        );
    }
    let split = Split {
        env: &env,
        dir: dir.clone(),
        bundle,
        runner: Runner::Script,
        direct: false,
    };
    let mut handoff = None;
    for role in ROLES {
        let out = split.run(role, 600, handoff.as_deref());
        ok(role, &out);
        if role == "destination-storage" {
            let f = dir.join("verified.txt");
            std::fs::write(&f, split.handoff(&out)).unwrap();
            handoff = Some(f);
        }
    }

    let found = adopted(&dst, &id);
    assert_eq!(found.len(), 1, "{found:#?}");
    let v = &found[0];
    assert_eq!(v.status, "available");
    assert_eq!(v.name.as_deref(), Some(vname.as_str()));
    // Cinder's manage-existing takes printable descriptions only: the plan
    // carries the line break as a space, and says so.
    assert_eq!(
        v.description.as_deref(),
        Some(descr.replace('\n', " ").as_str())
    );
    assert!(
        plan.images[0]
            .warnings
            .iter()
            .any(|w| w.starts_with("the description holds line breaks")),
        "{:?}",
        plan.images[0].warnings
    );
    assert_eq!(v.volume_type.as_deref(), Some(tname.as_str()));
    assert_eq!(v.metadata.get("note"), Some(&note));
    let b = env.connect("site-b");
    let copy = b.pool(env.var("DEST_CINDER_POOL")).unwrap();
    let copy = copy
        .open_image_read_only(&format!("volume-{}", v.id), None)
        .unwrap();
    assert_eq!(checksum(&copy), vol_sum);
    let a = env.connect("site-a");
    let source = a.pool("volumes").unwrap();
    let source = source
        .open_image_read_only(&format!("volume-{id}"), None)
        .unwrap();
    assert_eq!(
        source.mirror_info().unwrap().state,
        ImageMirrorState::Disabled
    );
    assert_eq!(
        source
            .metadata_get(&ferry::plan::original_key(&plan.id))
            .unwrap(),
        None,
        "the cleanup removed its record"
    );
    let stem = marker.file_name().unwrap().to_string_lossy().to_string();
    let ran: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&stem))
        .collect();
    assert!(ran.is_empty(), "a name was run as a command: {ran:?}");
    drop(vol);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Renders `role`'s script from `split`'s bundle into its directory.
pub(crate) fn render(split: &Split<'_>, role: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["script", "--role", role])
        .arg(&split.bundle)
        .output_bounded()
        .unwrap();
    ok(role, &out);
    std::fs::write(split.dir.join(format!("{role}.sh")), &out.stdout).unwrap();
}

/// The source storage script notes the image's original features before it
/// changes them; the bundle lost after that part ran, a bundle made again
/// from the record has the same plan id and the original features, and the
/// other parts finish from it: cleanup restores the true original features.
#[test]
fn a_lost_bundle_is_made_again_from_the_record_the_script_left() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let name = format!("volume-{}", unique("lostbundle"));
    let cinder = env.var("DEST_CINDER_POOL");
    let _guards = [
        crate::common::ImageGuard {
            cfg: env.admin("site-b"),
            pool: cinder.into(),
            name: name.clone(),
        },
        crate::common::ImageGuard {
            cfg: env.admin("site-a"),
            pool: "volumes".into(),
            name: name.clone(),
        },
    ];
    let a = env.connect("site-a");
    let volumes = a.pool("volumes").unwrap();
    volumes
        .create_image(&name, 8 << 20, Features::DEFAULT)
        .unwrap();
    let want = {
        let img = volumes.open_image(&name).unwrap();
        crate::common::write_with_holes(&img, 8 << 20, 1 << 20, 23);
        checksum(&img)
    };
    let dir = std::env::temp_dir().join(unique("ferry-lostbundle"));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("migration.yaml");
    std::fs::write(
        &spec,
        env.spec_yaml(&format!("  - rbd: volumes/{name}\n"))
            + "options: {mirror_mode: journal, cleanup: true}\n",
    )
    .unwrap();
    let bundle = dir.join("plan.yaml");
    let plan = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["plan", "--bundle"])
            .arg(&bundle)
            .arg(&spec)
            .output_bounded()
            .unwrap();
        ok("plan", &out);
        let p: ferry::plan::Plan =
            serde_yaml::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
        (p, String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (first, _) = plan();
    let split = Split {
        env: &env,
        dir: dir.clone(),
        bundle: bundle.clone(),
        runner: Runner::Script,
        direct: false,
    };
    render(&split, "source-storage");
    ok("source-storage", &split.run("source-storage", 60, None));
    {
        let img = volumes.open_image_read_only(&name, None).unwrap();
        assert!(img.features().unwrap().contains(Features::JOURNALING));
        let rec = img
            .metadata_get(&ferry::plan::original_key(&first.id))
            .unwrap()
            .expect("the script noted the original");
        let rec = ferry::plan::OriginalRecord::parse(&ferry::plan::original_key(&first.id), &rec)
            .unwrap();
        assert_eq!(rec.features, Features::DEFAULT);
        assert_eq!(rec.mirroring, None);
    }

    // The bundle and the scripts are lost; the plan is made again.
    std::fs::remove_file(&bundle).unwrap();
    std::fs::remove_file(dir.join("source-storage.sh")).unwrap();
    let (again, text) = plan();
    assert_eq!(again.id, first.id, "{text}");
    assert_eq!(again.images[0].facts.original_features(), Features::DEFAULT);
    assert!(
        text.contains(&format!("resumes plan {}", first.id)),
        "{text}"
    );
    for role in ["source-storage", "destination-storage", "cleanup"] {
        render(&split, role);
    }
    // The source storage part finds its work done (preflight only reads).
    let out = split.run("source-storage", 60, None);
    ok("source-storage", &out);
    let acted: Vec<String> = split
        .acted(&out)
        .into_iter()
        .filter(|l| !l.contains("(preflight)"))
        .collect();
    assert!(acted.is_empty(), "{acted:?}");
    let out = split.run("destination-storage", 600, None);
    ok("destination-storage", &out);
    // A copy moved to the trash after the part ran (its header stays) is
    // no copy: the part, run again, makes it again.
    env.cli(
        "rbd",
        "site-b",
        &["trash", "mv", &format!("{cinder}/{name}")],
    );
    let out = split.run("destination-storage", 600, None);
    ok("destination-storage", &out);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("holds in its trash): the copy is made again"),
        "{said}"
    );
    let handoff = dir.join("verified.txt");
    std::fs::write(&handoff, split.handoff(&out)).unwrap();
    ok("cleanup", &split.run("cleanup", 120, Some(&handoff)));

    let b = env.connect("site-b");
    let copy = b.pool(cinder).unwrap();
    let copy = copy.open_image_read_only(&name, None).unwrap();
    assert_eq!(checksum(&copy), want);
    let img = volumes.open_image_read_only(&name, None).unwrap();
    assert_eq!(
        img.features().unwrap(),
        Features::DEFAULT,
        "the original features"
    );
    assert_eq!(img.mirror_info().unwrap().state, ImageMirrorState::Disabled);
    assert_eq!(
        img.metadata_get(&ferry::plan::original_key(&first.id))
            .unwrap(),
        None
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bundle changed after `ferry plan` (its copy step made into disabling
/// the source's mirroring, a cleanup action) is refused by the destination
/// storage part before it does anything: exit 1, the field named, no run
/// state, nothing at the destination, the source as it was.
#[test]
fn a_tampered_bundle_is_refused_naming_the_field_and_changes_nothing() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let id = unique("tamper");
    let name = format!("volume-{id}");
    let a = env.connect("site-a");
    a.pool("volumes")
        .unwrap()
        .create_image(&name, 4 << 20, Features::DEFAULT)
        .unwrap();
    let _image = crate::common::ImageGuard {
        cfg: env.admin("site-a"),
        pool: "volumes".into(),
        name: name.clone(),
    };
    let (spec, state) = crate::common::spec_in_temp_dir(
        &(env.spec_yaml(&format!("  - volume: {id}\n")) + "options: {mirror_mode: snapshot}\n"),
    );
    let dir = spec.parent().unwrap().to_path_buf();
    let bundle = dir.join("plan.yaml");
    let planned = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan", "--bundle"])
        .arg(&bundle)
        .arg(&spec)
        .output_bounded()
        .unwrap();
    assert!(planned.status.success(), "{planned:?}");
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(text.contains("\nbundle_format: 1\n"), "{text}");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["run", "--role", "destination-storage"])
            .args(extra)
            .arg("--conf")
            .arg(env.path("SITE_B_CONF"))
            .args(["--id", env.var("SITE_B_USER"), "--keyring"])
            .arg(env.path("SITE_B_USER_KEYRING"))
            .arg("--state-dir")
            .arg(&state)
            .arg(&bundle)
            .stdin(std::process::Stdio::null())
            .output_bounded()
            .unwrap()
    };
    // Untampered, but nobody to ask and no --yes: it lists its part and
    // refuses.
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the destination-storage part of plan") && err.contains(" copy: "),
        "{err}"
    );
    assert!(
        err.contains("stdin is not a terminal") && err.contains("pass --yes"),
        "{err}"
    );
    let mut plan: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let steps = plan["images"][0]["steps"].as_sequence_mut().unwrap();
    let k = steps.iter().position(|s| s["name"] == "copy").unwrap();
    steps[k]["action"] = serde_yaml::from_str(&format!(
        "{{action: disable-mirroring, image: {{site: source, pool: volumes, image: {name}}}}}"
    ))
    .unwrap();
    std::fs::write(
        &bundle,
        format!(
            "bundle_format: 1\n{}",
            serde_yaml::to_string(&plan).unwrap()
        ),
    )
    .unwrap();

    let out = run(&["--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "images[0].steps[{k}].role: disable-mirroring is cleanup's action, not destination-storage's"
        )),
        "{err}"
    );
    assert!(
        !state.exists() || std::fs::read_dir(&state).unwrap().next().is_none(),
        "a run state was written"
    );
    let b = env.connect("site-b");
    for (pool, image) in [
        ("volumes", name.clone()),
        ("cinder-volumes", name.clone()),
        ("cinder-volumes", format!("{name}.ferry-partial")),
    ] {
        assert!(
            !b.pool(pool).unwrap().image_exists(&image).unwrap(),
            "{pool}/{image} was made"
        );
    }
    let pool = a.pool("volumes").unwrap();
    let src = pool.open_image(&name).unwrap();
    assert_eq!(src.mirror_info().unwrap().state, ImageMirrorState::Disabled);
    assert!(src.metadata_list().unwrap_or_default().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
