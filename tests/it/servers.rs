//! Whole servers on the real test environment (Nova, libvirt, the test
//! guest of `ceph-testenv/guest`): a server booted from a volume cloned
//! from a Glance image, with a data volume its guest writes a counter to,
//! moves with `stop_servers` and boots at the destination with the last
//! value the source guest wrote; a server booted from an image (its root
//! disk in Nova's pool) arrives booted from a volume; the same through the
//! role scripts; and an OS-Migrate workloads file comes back pointing at
//! the moved volumes.

use std::path::Path;
use std::time::Duration;

use ferry::openstack::{Cinder, Cloud, Glance, Nova, Request, Service};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{mirror_daemon_shared, spec_in_temp_dir, unique, wait_for, TestEnv};
use crate::it::openstack::{adopted, ok, wait_volume, DestGuard, VolumeGuard};
use crate::it::roles::{ok as role_ok, Runner, Split, ROLES};

const MICROVERSION: &str = "compute 2.52";
/// Under software emulation a guest boots in tens of seconds.
const BOOT: Duration = Duration::from_secs(300);

fn nova(cloud: &Cloud, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut req =
        Request::new(Service::Compute, method, path.to_string()).microversion(MICROVERSION);
    if let Some(b) = body {
        req = req.json(b);
    }
    let answer = cloud
        .request(&req)
        .unwrap_or_else(|e| panic!("{} {path}: {e:#}", req.method));
    answer
        .json::<Value>("a compute answer")
        .unwrap_or(Value::Null)
}

/// A server of a cloud, deleted at the end (its volumes stay).
struct ServerGuard<'c> {
    cloud: &'c Cloud,
    id: String,
}

impl Drop for ServerGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cloud.request(&Request::new(
            Service::Compute,
            Method::DELETE,
            format!("/servers/{}", self.id),
        ));
        let nova = Nova(self.cloud);
        for _ in 0..120 {
            match nova.server(&self.id) {
                Err(e) if e.status() == Some(404) => return,
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

fn status(cloud: &Cloud, id: &str) -> String {
    Nova(cloud).server(id).unwrap()["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_status(cloud: &Cloud, id: &str, want: &str) {
    wait_for(&format!("server {id} {want}"), BOOT, || {
        let s = status(cloud, id);
        assert_ne!(
            s,
            "ERROR",
            "server {id}: {}",
            Nova(cloud).server(id).unwrap()["fault"]
        );
        (s == want).then_some(())
    })
}

fn flavor(cloud: &Cloud, name: &str) -> String {
    let all = nova(cloud, Method::GET, "/flavors", None);
    all["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no flavor {name}: {all}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The test guest's image in the source Glance (`testenv up` uploads it).
fn guest_image(src: &Cloud) -> String {
    let found = Glance(src).images_with("name", "ferry-guest").unwrap();
    found
        .iter()
        .find(|i| i.status == "active")
        .unwrap_or_else(|| {
            panic!("no active ferry-guest image in the source Glance: run ceph-testenv/testenv up")
        })
        .id
        .clone()
}

/// A 1 GiB volume; from the guest image (Cinder clones it from Glance's
/// RBD image) when `image` is given.
fn volume<'c>(cloud: &'c Cloud, name: &str, image: Option<&str>) -> VolumeGuard<'c> {
    let mut v = json!({"name": name, "size": 1, "volume_type": "ceph"});
    if let Some(i) = image {
        v["imageRef"] = json!(i);
    }
    let made = Cinder(cloud).create_volume_from(&v).unwrap();
    let guard = VolumeGuard {
        cloud,
        id: made.id.clone(),
    };
    wait_volume(cloud, &made.id, "available");
    guard
}

/// Boots a server from `boot` (a volume) or from `image`, with `data`
/// attached after it; waits until its guest has written a few values.
fn server<'c>(
    cloud: &'c Cloud,
    name: &str,
    boot: Option<&str>,
    image: Option<&str>,
    data: &str,
) -> ServerGuard<'c> {
    let mut bdm = Vec::new();
    if let Some(b) = boot {
        bdm.push(
            json!({"uuid": b, "source_type": "volume", "destination_type": "volume",
                        "boot_index": 0, "delete_on_termination": false}),
        );
    }
    bdm.push(
        json!({"uuid": data, "source_type": "volume", "destination_type": "volume",
                    "boot_index": if boot.is_some() || image.is_some() { -1 } else { 0 },
                    "delete_on_termination": false}),
    );
    if let Some(i) = image {
        bdm.insert(
            0,
            json!({"uuid": i, "source_type": "image", "destination_type": "local",
                   "boot_index": 0, "delete_on_termination": true}),
        );
    }
    let mut s = json!({"name": name, "flavorRef": flavor(cloud, "ferry.tiny"), "networks": "none",
                       "block_device_mapping_v2": bdm, "metadata": {"app": "counter"}});
    if let Some(i) = image {
        s["imageRef"] = json!(i);
    }
    let made = nova(
        cloud,
        Method::POST,
        "/servers",
        Some(json!({ "server": s })),
    );
    let guard = ServerGuard {
        cloud,
        id: made["server"]["id"].as_str().unwrap().to_string(),
    };
    wait_status(cloud, &guard.id, "ACTIVE");
    wait_for("the guest to write", BOOT, || {
        (last_written(&console(cloud, &guard.id)).unwrap_or(0) >= 3).then_some(())
    });
    guard
}

/// A server's console: through Nova while it runs; a stopped server's from
/// the log file the test environment's libvirt keeps (Nova answers
/// nothing for it).
fn console(cloud: &Cloud, id: &str) -> String {
    let said = Nova(cloud).console(id, 400).unwrap_or_default();
    let text = if said.is_empty() {
        let env = TestEnv::load();
        let site = if cloud.name() == "source" {
            "site-a"
        } else {
            "site-b"
        };
        std::fs::read_to_string(
            env.path("FERRY_TESTENV_DIR")
                .join(format!("openstack/nova-{site}/instances/{id}/console.log")),
        )
        .unwrap_or_default()
    } else {
        said
    };
    text.replace('\r', "")
}

/// The last value the guest says it wrote (or stopped at).
fn last_written(console: &str) -> Option<u64> {
    console
        .lines()
        .rev()
        .filter_map(|l| {
            l.strip_prefix("ferry-guest: wrote ")
                .or_else(|| l.strip_prefix("ferry-guest: stopped at "))
        })
        .find_map(|n| n.trim().parse().ok())
}

/// The value a guest found at its boot.
fn found_at_boot(console: &str) -> Option<String> {
    console
        .lines()
        .find_map(|l| l.strip_prefix("ferry-guest: boot, last counter "))
        .map(|n| n.trim().to_string())
}

/// What a move makes at the destination from these source volumes (the
/// adopted volumes), deleted at the end: declared before the servers, so
/// that it goes after them.
fn dest_guards<'c>(dst: &'c Cloud, sources: &[&str]) -> Vec<DestGuard<'c>> {
    sources
        .iter()
        .map(|s| DestGuard {
            cloud: dst,
            volume_marker: Some(s.to_string()),
            image: None,
        })
        .collect()
}

/// The server ferry made at the destination for `source`.
fn made_for(dst: &Cloud, source: &str) -> Vec<Value> {
    Nova(dst)
        .servers_with(ferry::plan::server::SOURCE_SERVER, source)
        .unwrap()
}

/// Checks the move of `src_server`: the source is SHUTOFF and marked, the
/// destination server is ACTIVE, booted from volumes adopted from
/// `volumes` (boot first), and its guest found the last value the source
/// guest wrote. Returns the destination server (deleted by the guard).
fn moved<'c>(
    src: &Cloud,
    dst: &'c Cloud,
    src_server: &str,
    volumes: &[&str],
    flavor_name: &str,
) -> ServerGuard<'c> {
    assert_eq!(status(src, src_server), "SHUTOFF");
    let s = Nova(src).server(src_server).unwrap();
    assert!(
        s["metadata"][ferry::plan::server::MOVED_TO]
            .as_str()
            .is_some_and(|m| m.contains("of the destination cloud")),
        "{s}"
    );
    let last = last_written(&console(src, src_server)).expect("the source guest wrote");
    let made = made_for(dst, src_server);
    assert_eq!(made.len(), 1, "{made:#?}");
    let guard = ServerGuard {
        cloud: dst,
        id: made[0]["id"].as_str().unwrap().to_string(),
    };
    assert_eq!(made[0]["flavor"]["original_name"], flavor_name);
    assert_eq!(made[0]["metadata"]["app"], "counter");
    wait_status(dst, &guard.id, "ACTIVE");
    let attached = Nova(dst).attachments(&guard.id).unwrap();
    let mut by_device: Vec<(String, String)> = attached["volumeAttachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["device"].as_str().unwrap().to_string(),
                a["volumeId"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    by_device.sort();
    let want: Vec<String> = volumes
        .iter()
        .map(|v| {
            let found = adopted(dst, v);
            assert_eq!(found.len(), 1, "{v}: {found:#?}");
            found[0].id.clone()
        })
        .collect();
    let got: Vec<String> = by_device.into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, want, "boot volume first, then the data volume");
    let seen = wait_for("the destination guest's boot line", BOOT, || {
        found_at_boot(&console(dst, &guard.id))
    });
    assert_eq!(
        seen,
        last.to_string(),
        "the destination guest found the source guest's last write"
    );
    wait_for("the destination guest to write on", BOOT, || {
        (last_written(&console(dst, &guard.id)).unwrap_or(0) > last).then_some(())
    });
    guard
}

#[test]
fn a_server_moves_whole_and_its_guest_finds_its_last_write_at_the_destination() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let image = guest_image(&src);
    let name = unique("srv");
    let boot = volume(&src, &format!("{name}-boot"), Some(&image));
    // Cloned from the Glance image's RBD snapshot.
    let a = env.connect("site-a");
    let pool = a.pool("volumes").unwrap();
    let img = pool
        .open_image_read_only(&format!("volume-{}", boot.id), None)
        .unwrap();
    assert!(
        img.parent().unwrap().is_some(),
        "the boot volume is a clone"
    );
    let data = volume(&src, &format!("{name}-data"), None);
    let _dest = dest_guards(&dst, &[&boot.id, &data.id]);
    let s = server(&src, &name, Some(&boot.id), None, &data.id);
    let (spec, state) = spec_in_temp_dir(
        &(env.spec_yaml_with_clouds(&format!("  - server: {}\n", s.id))
            + "options: {stop_servers: true, warm_interval: 2, cleanup: true, flavors: {ferry.tiny: ferry.tiny.b}}\n"),
    );
    let out = crate::common::ferry_run(&spec, &state, &[], Some(&env.clouds_yaml()));
    ok(&out);
    let dest = moved(&src, &dst, &s.id, &[&boot.id, &data.id], "ferry.tiny.b");
    // A second run finds everything done and makes no second server.
    let again = crate::common::ferry_run(&spec, &state, &[], Some(&env.clouds_yaml()));
    ok(&again);
    assert_eq!(made_for(&dst, &s.id).len(), 1);
    drop(dest);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn a_server_booted_from_an_image_arrives_booted_from_its_root_disk_as_a_volume() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let image = guest_image(&src);
    let name = unique("srvimg");
    let data = volume(&src, &format!("{name}-data"), None);
    let s = server(&src, &name, None, Some(&image), &data.id);
    let root = format!("{}_disk", s.id);
    let _dest = dest_guards(&dst, &[&root, &data.id]);
    let s = s;
    let vms = env.var("SOURCE_NOVA_POOL").to_string();
    let names = env.cli("rbd", "site-a", &["ls", &vms]);
    assert!(names.contains(&root), "{root} in {vms}: {names}");
    let (spec, state) = spec_in_temp_dir(
        &(env
            .spec_yaml_with_clouds(&format!("  - server: {}\n", s.id))
            .replacen("\n  pools:\n", &format!("\n  pools:\n    nova: {vms}\n"), 1)
            + "options: {stop_servers: true, cleanup: true}\n"),
    );
    let out = crate::common::ferry_run(&spec, &state, &[], Some(&env.clouds_yaml()));
    ok(&out);
    let dest = moved(&src, &dst, &s.id, &[&root, &data.id], "ferry.tiny");
    let boot = &adopted(&dst, &root)[0];
    assert!(boot.is_bootable());
    drop(dest);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

#[test]
fn a_server_moves_through_the_role_scripts_in_role_order() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let image = guest_image(&src);
    let name = unique("srvsh");
    let boot = volume(&src, &format!("{name}-boot"), Some(&image));
    let data = volume(&src, &format!("{name}-data"), None);
    let _dest = dest_guards(&dst, &[&boot.id, &data.id]);
    let s = server(&src, &name, Some(&boot.id), None, &data.id);
    let dir = std::env::temp_dir().join(unique("ferry-roles-srv"));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = crate::it::roles::plan_bundle(
        &env,
        &dir,
        &(env.spec_yaml_with_clouds(&format!("  - server: {}\n", s.id))
            + "options: {stop_servers: true, warm_interval: 2, cleanup: true, volume_types: {ceph: ceph}}\n"),
    );
    let split = Split {
        env: &env,
        dir: dir.clone(),
        bundle: bundle.clone(),
        runner: Runner::Script,
        direct: false,
    };
    for role in ROLES {
        crate::it::roles::render(&split, role);
    }
    let mut handoff = None;
    for role in ROLES {
        let h = handoff.as_deref().map(Path::new);
        let out = split.run(role, 600, if role == "cleanup" { h } else { None });
        role_ok(role, &out);
        if role == "destination-storage" {
            let file = dir.join("handoff");
            std::fs::write(&file, split.handoff(&out)).unwrap();
            handoff = Some(file);
        }
    }
    let dest = moved(&src, &dst, &s.id, &[&boot.id, &data.id], "ferry.tiny");
    drop(dest);
    let _ = std::fs::remove_dir_all(&dir);
}

/// OS-Migrate's `workloads.yml` as its `export_workloads` writes it, for
/// one server booted from `boot` with `data` attached.
fn workloads(server: &str, name: &str, boot: &str, data: &str) -> String {
    format!(
        r#"os_migrate_version: 1.0.5
resources:
- _info:
    id: {server}
    status: ACTIVE
  _migration_params:
    boot_disk_copy: true
    data_copy: true
    port_creation_mode: neutron
    floating_ip_mode: auto
  params:
    name: {name}
    flavor_ref: {{name: ferry.tiny, project_name: null, domain_name: null}}
    image_ref: null
    ports: []
    volumes:
    - _info:
        id: {boot}
        attachments:
        - {{device: /dev/vda, server_id: {server}}}
      params: {{name: {name}-boot, size: 1}}
      type: openstack.network.ServerVolume
    - _info:
        id: {data}
        attachments:
        - {{device: /dev/vdb, server_id: {server}}}
      params: {{name: {name}-data, size: 1}}
      type: openstack.network.ServerVolume
  type: openstack.compute.Server
"#
    )
}

#[test]
fn an_os_migrate_workloads_file_comes_back_pointing_at_the_moved_volumes() {
    let _daemon = mirror_daemon_shared();
    let env = TestEnv::load();
    let (src, dst) = (env.cloud("source"), env.cloud("destination"));
    let image = guest_image(&src);
    let name = unique("srvosm");
    let boot = volume(&src, &format!("{name}-boot"), Some(&image));
    let data = volume(&src, &format!("{name}-data"), None);
    let _dest = dest_guards(&dst, &[&boot.id, &data.id]);
    let s = server(&src, &name, Some(&boot.id), None, &data.id);
    let (spec, state) = spec_in_temp_dir(
        &(env
            .spec_yaml_with_clouds("  []\n")
            .replace("images:\n  []\n", "images: []\n")
            + "servers_from: workloads.yml\noptions: {stop_servers: true, warm_interval: 2, cleanup: true}\n"),
    );
    let dir = spec.parent().unwrap().to_path_buf();
    std::fs::write(
        dir.join("workloads.yml"),
        workloads(&s.id, &name, &boot.id, &data.id),
    )
    .unwrap();
    let out = crate::common::ferry_run(&spec, &state, &[], Some(&env.clouds_yaml()));
    ok(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("workloads.ferry.yml"), "{said}");
    assert_eq!(status(&src, &s.id), "SHUTOFF", "stopped for the cut-over");
    assert!(
        made_for(&dst, &s.id).is_empty(),
        "OS-Migrate makes the server"
    );
    let back: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("workloads.ferry.yml")).unwrap())
            .unwrap();
    assert_eq!(back["os_migrate_version"].as_str(), Some("1.0.5"));
    let p = &back["resources"][0]["_migration_params"];
    let moved_boot = adopted(&dst, &boot.id)[0].id.clone();
    let moved_data = adopted(&dst, &data.id)[0].id.clone();
    assert_eq!(p["boot_volume"]["uuid"].as_str(), Some(moved_boot.as_str()));
    assert_eq!(
        p["additional_volumes"][0]["uuid"].as_str(),
        Some(moved_data.as_str())
    );
    assert_eq!(p["data_copy"].as_bool(), Some(false));
    assert_eq!(p["port_creation_mode"].as_str(), Some("neutron"), "kept");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
