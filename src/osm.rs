//! OS-Migrate's `workloads.yml` (github.com/os-migrate/os-migrate): which
//! servers to move, and, once ferry has moved their volumes, each server's
//! `_migration_params` set so that OS-Migrate's `import_workloads` creates the
//! server on those volumes instead of copying data. Pure: text in, text out.
//!
//! The format as OS-Migrate writes and reads it (paths in its repository):
//! - `plugins/module_utils/filesystem.py` (`load_resources_file`): a mapping of
//!   `os_migrate_version` and `resources`; OS-Migrate refuses a file whose
//!   version is not exactly its own (`const.py` `OS_MIGRATE_VERSION`, e.g.
//!   `1.0.5`), so ferry writes back the version it read.
//! - `plugins/module_utils/server.py` (`Server`, type `openstack.compute.Server`):
//!   `_info.id`, `params.name`, `params.image_ref` (`{name, project_name,
//!   domain_name}`, null when the server boots from a volume), `params.volumes`
//!   (one `openstack.network.ServerVolume` per attached volume,
//!   `server_volume.py`: `_info.id`, `_info.attachments[].device`) and
//!   `_migration_params`.
//!
//! Everything else in the file is kept as it was.

use std::fmt::Write;

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::{Mapping, Value};

const SERVER: &str = "openstack.compute.Server";

/// Root device names Nova gives by disk bus (virtio, SCSI, Xen, IDE).
/// OS-Migrate itself only knows `/dev/vda` (`volume_common.py`).
const ROOT_DEVICES: [&str; 4] = ["/dev/vda", "/dev/sda", "/dev/xvda", "/dev/hda"];

/// A parsed `workloads.yml`; the whole document is kept, so what ferry does
/// not read survives a round trip.
#[derive(Debug, Clone)]
pub struct Workloads {
    doc: Value,
    origin: String,
    version: String,
    /// With the index of their resource.
    servers: Vec<(usize, WorkloadServer)>,
}

/// One `openstack.compute.Server` resource: the source server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadServer {
    /// `_info.id`: the server's id in the source cloud.
    pub id: String,
    /// `params.name`: OS-Migrate creates the destination server by this name.
    pub name: String,
    /// `params.volumes[]._info.id`: the attached volumes in the file's order,
    /// the boot volume first when it is known.
    pub volumes: Vec<String>,
    /// What the server boots from.
    pub boot: BootSource,
}

/// What a server boots from, read from `params.image_ref` and
/// `params.volumes[]._info.attachments[]` (`device`, `server_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootSource {
    /// `params.image_ref.name`: Nova booted the server from this Glance image
    /// onto a local disk.
    Image { name: String },
    /// `params.image_ref` is null: the server boots from a volume, the one
    /// attached at a root device (`/dev/vda`…) when the file shows it.
    Volume { volume: Option<String> },
}

impl Workloads {
    /// Reads a `workloads.yml`. `origin` (a file name) prefixes every error.
    pub fn parse(text: &str, origin: &str) -> Result<Workloads> {
        let doc: Value =
            serde_yaml::from_str(text).with_context(|| format!("{origin}: not YAML"))?;
        let version = match doc.get("os_migrate_version") {
            Some(Value::String(v)) => v.clone(),
            Some(_) => bail!("{origin}: os_migrate_version is not a string"),
            None => bail!("{origin}: no os_migrate_version (not an OS-Migrate export?)"),
        };
        let resources = match doc.get("resources") {
            Some(Value::Sequence(r)) => r,
            Some(_) => bail!("{origin}: resources is not a list"),
            None => bail!("{origin}: no resources"),
        };
        let mut servers: Vec<(usize, WorkloadServer)> = Vec::new();
        for (i, res) in resources.iter().enumerate() {
            let at = || format!("{origin}: resources[{i}]");
            match res.get("type") {
                Some(Value::String(t)) if t == SERVER => {}
                Some(Value::String(_)) => continue,
                _ => bail!("{}: no type (a string)", at()),
            }
            let server = read_server(res).with_context(at)?;
            if servers.iter().any(|(_, s)| s.id == server.id) {
                bail!("{}: server {} is in the file twice", at(), server.id);
            }
            servers.push((i, server));
        }
        let origin = origin.to_string();
        Ok(Workloads {
            doc,
            origin,
            version,
            servers,
        })
    }

    /// `os_migrate_version`: the OS-Migrate release that exported the file.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every `openstack.compute.Server` in the file, in the file's order, as
    /// read (`set_ferry_volumes` does not change these).
    pub fn servers(&self) -> Vec<WorkloadServer> {
        self.servers.iter().map(|(_, s)| s.clone()).collect()
    }

    /// Makes OS-Migrate build server `server_id` on volumes ferry already
    /// moved: `boot_volume` (none: Nova boots from `params.image_ref`'s image)
    /// and `additional`, attached in this order. The other `_migration_params`
    /// (`port_creation_mode`, `floating_ip_mode`, …) stay as they are.
    pub fn set_ferry_volumes(
        &mut self,
        server_id: &str,
        boot_volume: Option<&str>,
        additional: &[String],
    ) -> Result<()> {
        let origin = &self.origin;
        let missing = || anyhow!("{origin}: no server with _info.id {server_id}");
        let (index, server) = (self.servers.iter())
            .find(|(_, s)| s.id == server_id)
            .ok_or_else(missing)?;
        if boot_volume.is_none() && matches!(server.boot, BootSource::Volume { .. }) {
            // server.py raises InconsistentState: neither boot volume nor image.
            let name = &server.name;
            bail!("{origin}: server {server_id} ({name}) boots from a volume: OS-Migrate needs its boot volume");
        }
        let ids: Vec<&str> = boot_volume
            .into_iter()
            .chain(additional.iter().map(String::as_str))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            if id.is_empty() || ids[..i].contains(id) {
                bail!("{origin}: server {server_id}: volume id {id:?} is empty or given twice");
            }
        }
        let resource = (self.doc.get_mut("resources"))
            .and_then(|r| r.get_mut(*index))
            .and_then(Value::as_mapping_mut)
            .ok_or_else(missing)?;
        if boot_volume.is_some() {
            // With data_copy false, Server._refs_from_ser looks `image_ref` up
            // by name in the destination (and fails without it) although the
            // boot volume replaces the image: no image, no lookup.
            if let Some(params) = resource.get_mut("params").and_then(Value::as_mapping_mut) {
                if params.get("image_ref").is_some_and(|r| !r.is_null()) {
                    params.insert("image_ref".into(), Value::Null);
                }
            }
        }
        let params = resource
            .entry("_migration_params".into())
            .or_insert(Value::Null);
        if params.is_null() {
            *params = Value::Mapping(Mapping::new());
        }
        let params = params.as_mapping_mut().ok_or_else(|| {
            anyhow!("{origin}: server {server_id}: _migration_params is not a mapping")
        })?;
        // roles/import_workloads/tasks/workload.yml skips stopping and checking
        // the source server, conversion hosts, export, transfer and source
        // cleanup when false; Server.create then maps the volumes below.
        params.insert("data_copy".into(), false.into());
        // Read only on the copy path (volume_common.py, Server's
        // block_device_mapping_copy): OS-Migrate makes no boot disk.
        params.insert("boot_disk_copy".into(), false.into());
        // Server.update_sdk_params_block_device_mapping_nocopy: boot_index 0,
        // delete_on_termination false, no image; null: boot from image_ref.
        params.insert("boot_volume".into(), uuid(boot_volume));
        // Same function: boot_index -1 each, in this order (Nova names them
        // vdb, vdc, … in order); entries with a null uuid are skipped.
        let rest = additional.iter().map(|id| uuid(Some(id))).collect();
        params.insert("additional_volumes".into(), Value::Sequence(rest));
        Ok(())
    }

    /// The file again, with the version it was read with, as block YAML that
    /// OS-Migrate's reader (PyYAML, YAML 1.1) gives back unchanged: serde_yaml
    /// would write `yes`, `on` or a date plain, which PyYAML reads as a
    /// boolean or a date (and Nova refuses metadata that is not a string).
    pub fn to_yaml(&self) -> Result<String> {
        let mut out = String::new();
        emit(&self.doc, "", &mut out).with_context(|| format!("{}: writing", self.origin))?;
        Ok(out)
    }
}

fn read_server(res: &Value) -> Result<WorkloadServer> {
    let id = text(res, &["_info", "id"])?;
    let name = text(res, &["params", "name"])?;
    if !matches!(
        res.get("_migration_params"),
        None | Some(Value::Null | Value::Mapping(_))
    ) {
        bail!("server {id}: _migration_params is not a mapping");
    }
    let image = match field(res, &["params", "image_ref"]) {
        None | Some(Value::Null) => None,
        Some(r) => {
            Some(text(r, &["name"]).with_context(|| format!("server {id}: params.image_ref"))?)
        }
    };
    let mut volumes = Vec::new();
    let mut root = None;
    for (j, vol) in list(res, &["params", "volumes"])
        .with_context(|| format!("server {id}"))?
        .iter()
        .enumerate()
    {
        let at = || format!("server {id}: params.volumes[{j}]");
        let vol_id = text(vol, &["_info", "id"]).with_context(at)?;
        let attachments = list(vol, &["_info", "attachments"]).with_context(at)?;
        let at_root = attachments.iter().any(|a| {
            let device = a.get("device").and_then(Value::as_str).unwrap_or("");
            let mine = a
                .get("server_id")
                .and_then(Value::as_str)
                .is_none_or(|s| s == id);
            mine && ROOT_DEVICES.contains(&device)
        });
        if at_root && root.is_none() {
            root = Some(vol_id.clone());
        }
        volumes.push(vol_id);
    }
    let boot = match image {
        Some(name) => BootSource::Image { name },
        None => {
            if let Some(r) = &root {
                volumes.retain(|v| v != r);
                volumes.insert(0, r.clone());
            }
            BootSource::Volume { volume: root }
        }
    };
    Ok(WorkloadServer {
        id,
        name,
        volumes,
        boot,
    })
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn text(v: &Value, path: &[&str]) -> Result<String> {
    match field(v, path) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => bail!("{} is empty", path.join(".")),
        Some(_) => bail!("{} is not a string", path.join(".")),
        None => bail!("no {}", path.join(".")),
    }
}

/// A list that may be absent or null (then empty).
fn list<'a>(v: &'a Value, path: &[&str]) -> Result<&'a [Value]> {
    match field(v, path) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Sequence(s)) => Ok(s),
        Some(_) => bail!("{} is not a list", path.join(".")),
    }
}

fn uuid(id: Option<&str>) -> Value {
    Value::Mapping(Mapping::from_iter([(
        "uuid".into(),
        id.map_or(Value::Null, Value::from),
    )]))
}

/// Writes `v` as block YAML, each line prefixed by `pad`.
fn emit(v: &Value, pad: &str, out: &mut String) -> Result<()> {
    let deeper = format!("{pad}  ");
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = scalar(k)?.ok_or_else(|| anyhow!("a list or mapping as a key"))?;
                match scalar(v)? {
                    Some(s) => writeln!(out, "{pad}{key}: {s}")?,
                    None => {
                        // Lists under a key at its indent, as PyYAML writes them.
                        writeln!(out, "{pad}{key}:")?;
                        emit(v, if v.is_sequence() { pad } else { &deeper }, out)?;
                    }
                }
            }
        }
        Value::Sequence(s) if !s.is_empty() => {
            for item in s {
                // Written two deeper, its first indent becomes the dash.
                let mut sub = String::new();
                emit(item, &deeper, &mut sub)?;
                write!(out, "{pad}- {}", &sub[deeper.len()..])?;
            }
        }
        _ => writeln!(out, "{pad}{}", scalar(v)?.unwrap_or_default())?,
    }
    Ok(())
}

/// One line's worth of `v`; none for a list or mapping that is not empty.
fn scalar(v: &Value) -> Result<Option<String>> {
    Ok(Some(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(f64::is_finite) => {
            // PyYAML reads a float only with a dot and a signed exponent.
            let s = format!("{:e}", n.as_f64().unwrap_or_default());
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let dot = if m.contains('.') { "" } else { ".0" };
            format!("{m}{dot}e{}{e}", if e.starts_with('-') { "" } else { "+" })
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Sequence(s) if s.is_empty() => "[]".into(),
        Value::Mapping(m) if m.is_empty() => "{}".into(),
        Value::Sequence(_) | Value::Mapping(_) => return Ok(None),
        Value::Tagged(t) => bail!("a value tagged {} (OS-Migrate writes no tags)", t.tag),
    }))
}

/// Plain when YAML 1.1 and 1.2 both read it as this string; otherwise
/// double-quoted, with what PyYAML's reader refuses raw escaped.
fn string(s: &str) -> String {
    let words = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    if s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !words.contains(&s.to_ascii_lowercase().as_str())
    {
        return s.to_string();
    }
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => write!(out, "\\{c}"),
            '\n' => write!(out, "\\n"),
            ' '..='~'
            | '\u{a0}'..='\u{2027}'
            | '\u{202a}'..='\u{d7ff}'
            | '\u{e000}'..='\u{fefe}'
            | '\u{ff00}'..='\u{fffd}'
            | '\u{10000}'.. => {
                write!(out, "{c}")
            }
            _ => write!(out, "\\u{:04x}", c as u32),
        }
        .unwrap_or_default();
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like OS-Migrate's export (PyYAML's safe_dump), plus a network
    /// and a port, which a workloads file does not hold, to prove they pass.
    const FIXTURE: &str = include_str!("osm/workloads.yml");
    const DB: &str = "7d2f5b9e-0000-4000-8000-0000000000d1";
    const WEB: &str = "3b9d7c55-0000-4000-8000-0000000000e2";
    const ROOT: &str = "c0ffee00-0000-4000-8000-0000000000a1";
    const DATA: &str = "c0ffee00-0000-4000-8000-0000000000a2";

    fn fixture() -> Workloads {
        Workloads::parse(FIXTURE, "workloads.yml").unwrap()
    }

    /// Server `id` of `w` as written, read back.
    fn written(w: &Workloads, id: &str) -> Value {
        let out: Value = serde_yaml::from_str(&w.to_yaml().unwrap()).unwrap();
        let all = out["resources"].as_sequence().unwrap();
        all.iter()
            .find(|r| r["_info"]["id"].as_str() == Some(id))
            .unwrap()
            .clone()
    }

    #[test]
    fn servers_are_read_with_the_boot_volume_first() {
        let (w, boot) = (
            fixture(),
            BootSource::Volume {
                volume: Some(ROOT.into()),
            },
        );
        let s = w.servers();
        assert_eq!(
            (w.version(), s.len(), s[0].id.as_str(), s[0].name.as_str()),
            ("1.0.5", 2, DB, "db-1")
        );
        assert_eq!(
            (&s[0].volumes, &s[0].boot),
            (&vec![ROOT.to_string(), DATA.into()], &boot)
        );
        let image = BootSource::Image {
            name: "cirros-0.6".into(),
        };
        assert_eq!(
            (
                s[1].id.as_str(),
                s[1].name.as_str(),
                s[1].volumes.len(),
                &s[1].boot
            ),
            (WEB, "web-1", 0, &image)
        );
    }

    #[test]
    fn ferry_volumes_become_migration_params_and_the_rest_stays() {
        let mut w = fixture();
        w.set_ferry_volumes(DB, Some("dst-root"), &["dst-data".to_string()])
            .unwrap();
        let (now, before) = (written(&w, DB), written(&fixture(), DB));
        let p = &now["_migration_params"];
        assert_eq!(
            (&p["data_copy"], &p["boot_disk_copy"]),
            (&false.into(), &false.into())
        );
        assert_eq!(p["boot_volume"]["uuid"].as_str(), Some("dst-root"));
        assert_eq!(
            p["additional_volumes"],
            serde_yaml::from_str::<Value>("[{uuid: dst-data}]").unwrap()
        );
        for key in [
            "port_creation_mode",
            "floating_ip_mode",
            "boot_volume_params",
            "use_nbdkit_direct",
        ] {
            assert_eq!(p[key], before["_migration_params"][key], "{key}");
        }
        assert_eq!(now["params"], before["params"]);
        assert_eq!(written(&w, WEB), written(&fixture(), WEB));
    }

    #[test]
    fn an_image_server_keeps_its_image_unless_a_boot_volume_replaces_it() {
        let mut w = fixture();
        w.set_ferry_volumes(WEB, None, &[]).unwrap();
        let s = written(&w, WEB);
        assert!(s["_migration_params"]["boot_volume"]["uuid"].is_null());
        assert_eq!(
            s["_migration_params"]["additional_volumes"],
            Value::Sequence(vec![])
        );
        assert_eq!(
            s["_migration_params"]["port_creation_mode"].as_str(),
            Some("neutron")
        );
        assert_eq!(
            s["params"]["image_ref"]["name"].as_str(),
            Some("cirros-0.6")
        );
        w.set_ferry_volumes(WEB, Some("root-copy"), &[]).unwrap();
        assert!(written(&w, WEB)["params"]["image_ref"].is_null());
    }

    #[test]
    fn a_round_trip_keeps_every_key_the_version_and_string_types() {
        let text = fixture().to_yaml().unwrap();
        assert!(
            text.starts_with("os_migrate_version: \"1.0.5\"\nresources:\n- _info:\n"),
            "{text}"
        );
        // PyYAML would read a plain yes as true and the date as a date.
        assert!(
            text.contains("\n      backup: \"yes\"\n      since: \"2025-03-04\"\n"),
            "{text}"
        );
        let again = Workloads::parse(&text, "out.yml").unwrap();
        assert_eq!(again.doc, serde_yaml::from_str::<Value>(FIXTURE).unwrap());
        assert_eq!(
            (again.version(), again.servers()),
            ("1.0.5", fixture().servers())
        );
    }

    #[test]
    fn unknown_servers_and_missing_boot_volumes_are_refused() {
        let mut w = fixture();
        let e = w.set_ferry_volumes("nope", Some("v"), &[]).unwrap_err();
        assert_eq!(e.to_string(), "workloads.yml: no server with _info.id nope");
        let e = w.set_ferry_volumes(DB, None, &[]).unwrap_err();
        assert!(e.to_string().contains("boots from a volume"), "{e}");
        assert!(w
            .set_ferry_volumes(DB, Some("v"), &["v".to_string()])
            .is_err());
        assert_eq!(w.to_yaml().unwrap(), fixture().to_yaml().unwrap());
    }

    /// Files (on one line) that are not a workloads file, and why.
    const MALFORMED: &str = "\
{resources: []} | no os_migrate_version (not an OS-Migrate export?)
{os_migrate_version: 1.0, resources: []} | os_migrate_version is not a string
{os_migrate_version: '1', resources: {}} | resources is not a list
{os_migrate_version: '1', resources: [7]} | resources[0]: no type (a string)
{os_migrate_version: '1', resources: [{type: openstack.compute.Server, params: {name: a}}]} | resources[0]: no _info.id
{os_migrate_version: '1', resources: [{type: openstack.compute.Server, _info: {id: x}, params: {name: a, volumes: 3}}]} | resources[0]: server x: params.volumes is not a list
{os_migrate_version: '1', resources: [{type: openstack.compute.Server, _info: {id: x}, params: {name: a, image_ref: 5}}]} | resources[0]: server x: params.image_ref: no name
[ | not YAML";

    #[test]
    fn malformed_files_are_errors_that_name_the_file() {
        for (text, why) in MALFORMED.lines().filter_map(|l| l.split_once(" | ")) {
            let e = format!("{:#}", Workloads::parse(text, "w.yml").unwrap_err());
            assert!(e.starts_with(&format!("w.yml: {why}")), "{e}");
        }
    }

    #[test]
    fn strings_are_written_so_pyyaml_reads_them_back() {
        let cases = [
            ("m1.small", "m1.small"),
            ("/dev/vda", "/dev/vda"),
            ("On", "\"On\""),
            ("", "\"\""),
        ];
        for (s, want) in cases {
            assert_eq!(string(s), want);
        }
        assert_eq!(string("%a\"b\\c\nd\u{7f}é"), "\"%a\\\"b\\\\c\\nd\\u007fé\"");
    }
}
