//! A server that moves with its volumes: its definition as the source
//! cloud's Nova gives it, mapped to the destination's names (flavors,
//! networks, zones), and the marks that tie the two servers together.
//! Pure: discovery reads Nova, this reads its answers.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Metadata of the server ferry creates at the destination: the source
/// server's id (a re-run finds the server it made by this).
pub const SOURCE_SERVER: &str = "ferry_source_server";
/// Metadata of the source server once ferry stops it: where it moved
/// (`plan <id>: server <name> of the destination cloud`).
pub const MOVED_TO: &str = "ferry_moved_to";

/// A server of the source cloud and how it is made again at the
/// destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerDef {
    /// Its id in the source cloud.
    pub id: String,
    pub name: String,
    /// The destination flavor's name (mapped by `options.flavors`).
    pub flavor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// Security group names (applied only where the server has ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Its metadata (ferry's own keys left out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The destination zone (mapped), None: the scheduler's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its volumes (source volume ids) in device order, the boot volume
    /// first.
    pub volumes: Vec<String>,
    /// Its networks at the destination (mapped), with the fixed IPs it had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<ServerNetwork>,
    /// Booted from an image: its root disk's id among `volumes` (first),
    /// `<server id>_disk`, the RBD image in Nova's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_disk: Option<String>,
    /// Its `ferry_moved_to` mark, when a plan stopped it for a move before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
}

/// A network of a server and the fixed IP it asks for there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNetwork {
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<String>,
}

/// The spec's mappings of names between the clouds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mappings<'a> {
    pub flavors: Option<&'a BTreeMap<String, String>>,
    pub networks: Option<&'a BTreeMap<String, String>>,
    pub zones: Option<&'a BTreeMap<String, String>>,
}

fn mapped(map: Option<&BTreeMap<String, String>>, name: &str) -> String {
    map.and_then(|m| m.get(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The RBD image Nova's libvirt driver keeps a server's root disk in.
pub fn root_disk_name(server_id: &str) -> String {
    format!("{server_id}_disk")
}

/// A device name's place: `/dev/vdb` before `/dev/vdaa`.
fn device_order(d: &str) -> (usize, &str) {
    (d.len(), d)
}

impl ServerDef {
    /// The definition from Nova's `server` (2.47 or later: the flavor
    /// inline) and its `volumeAttachments`, mapped by `maps`. A server
    /// booted from an image (its root disk not a volume) is refused here:
    /// only its volumes would move.
    pub fn from_nova(
        server: &Value,
        attachments: &Value,
        maps: &Mappings<'_>,
    ) -> anyhow::Result<ServerDef> {
        let id = text(server, "id").ok_or_else(|| anyhow!("Nova gave a server without id"))?;
        let name = text(server, "name").unwrap_or_default();
        let booted_from_image = Self::image_of(server).is_some();
        let flavor = server
            .get("flavor")
            .and_then(|f| text(f, "original_name"))
            .ok_or_else(|| {
                anyhow!(
                    "Nova gave server {id} without its flavor's name (compute API 2.47 or later)"
                )
            })?;
        let mut devices: Vec<(String, String)> = attachments
            .get("volumeAttachments")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("Nova gave no volume attachments for server {id}"))?
            .iter()
            .filter_map(|a| Some((text(a, "device")?, text(a, "volumeId")?)))
            .collect();
        devices.sort_by(|a, b| device_order(&a.0).cmp(&device_order(&b.0)));
        // The root disk first: it becomes the boot volume.
        let root_disk = booted_from_image.then(|| root_disk_name(&id));
        if let Some(r) = &root_disk {
            devices.insert(0, (String::new(), r.clone()));
        }
        if devices.is_empty() {
            bail!("server {id} ({name:?}) has no volume attached");
        }
        let mut security_groups: Vec<String> = server
            .get("security_groups")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(|g| text(g, "name")).collect())
            .unwrap_or_default();
        security_groups.sort();
        security_groups.dedup();
        let metadata = server
            .get("metadata")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !k.starts_with("ferry_"))
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let tags = server
            .get("tags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let availability_zone = text(server, "OS-EXT-AZ:availability_zone")
            .map(|z| mapped(maps.zones, &z))
            .filter(|z| !z.is_empty());
        let mut networks = Vec::new();
        if let Some(addresses) = server.get("addresses").and_then(Value::as_object) {
            for (net, addrs) in addresses {
                let to = mapped(maps.networks, net);
                if to.is_empty() {
                    continue;
                }
                let fixed: Vec<String> = addrs
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|x| {
                                x.get("OS-EXT-IPS:type").and_then(Value::as_str) != Some("floating")
                            })
                            .filter_map(|x| text(x, "addr"))
                            .collect()
                    })
                    .unwrap_or_default();
                networks.push(ServerNetwork {
                    network: to,
                    fixed_ip: fixed.into_iter().next(),
                });
            }
        }
        Ok(ServerDef {
            flavor: mapped(maps.flavors, &flavor),
            key_name: text(server, "key_name"),
            security_groups,
            metadata,
            tags,
            availability_zone,
            description: text(server, "description"),
            volumes: devices.into_iter().map(|(_, v)| v).collect(),
            networks,
            root_disk,
            moved_to: server.get("metadata").and_then(|m| text(m, MOVED_TO)),
            id,
            name,
        })
    }

    /// The image the server was booted from, when it was.
    pub fn image_of(server: &Value) -> Option<String> {
        server
            .get("image")
            .and_then(|i| i.get("id"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The boot volume (the first device).
    pub fn boot_volume(&self) -> &str {
        &self.volumes[0]
    }

    /// The metadata of the server made at the destination: its own, and
    /// the source server's id and this plan.
    pub fn new_metadata(&self, plan_id: &str) -> BTreeMap<String, String> {
        let mut m = self.metadata.clone();
        m.insert(SOURCE_SERVER.into(), self.id.clone());
        m.insert(crate::plan::ADOPTED_BY.into(), plan_id.into());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nova_server() -> Value {
        json!({
            "id": "s1", "name": "web", "image": "",
            "flavor": {"original_name": "m1.small", "vcpus": 1},
            "key_name": null,
            "security_groups": [{"name": "default"}, {"name": "default"}],
            "metadata": {"role": "db", "ferry_moved_to": "x"},
            "tags": ["t1"],
            "OS-EXT-AZ:availability_zone": "nova",
            "description": null,
            "addresses": {"private": [
                {"addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed"},
                {"addr": "172.24.4.9", "OS-EXT-IPS:type": "floating"}]}
        })
    }

    fn attachments() -> Value {
        json!({"volumeAttachments": [
            {"device": "/dev/vdb", "volumeId": "data"},
            {"device": "/dev/vdaa", "volumeId": "late"},
            {"device": "/dev/vda", "volumeId": "boot"}]})
    }

    #[test]
    fn a_server_is_read_with_its_volumes_in_device_order_and_its_names_mapped() {
        let flavors = [("m1.small".to_string(), "s.small".to_string())].into();
        let nets = [("private".to_string(), "tenant".to_string())].into();
        let d = ServerDef::from_nova(
            &nova_server(),
            &attachments(),
            &Mappings {
                flavors: Some(&flavors),
                networks: Some(&nets),
                zones: None,
            },
        )
        .unwrap();
        assert_eq!(d.volumes, ["boot", "data", "late"]);
        assert_eq!(d.boot_volume(), "boot");
        assert_eq!(d.flavor, "s.small");
        assert_eq!(d.security_groups, ["default"]);
        assert_eq!(d.metadata.len(), 1, "ferry's own marks are not carried");
        assert_eq!(d.moved_to.as_deref(), Some("x"), "but the move is noted");
        assert_eq!(d.networks[0].network, "tenant");
        assert_eq!(d.networks[0].fixed_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(d.availability_zone.as_deref(), Some("nova"));
        assert_eq!(d.key_name, None);
        let m = d.new_metadata("p1");
        assert_eq!(m[SOURCE_SERVER], "s1");
        assert_eq!(m["role"], "db");
    }

    #[test]
    fn a_network_or_zone_mapped_to_nothing_is_left_out() {
        let nets = [("private".to_string(), String::new())].into();
        let zones = [("nova".to_string(), String::new())].into();
        let d = ServerDef::from_nova(
            &nova_server(),
            &attachments(),
            &Mappings {
                flavors: None,
                networks: Some(&nets),
                zones: Some(&zones),
            },
        )
        .unwrap();
        assert!(d.networks.is_empty());
        assert_eq!(d.availability_zone, None);
        assert_eq!(d.flavor, "m1.small");
    }

    #[test]
    fn a_server_booted_from_an_image_boots_from_its_root_disk_first() {
        let mut s = nova_server();
        s["image"] = json!({"id": "img-1"});
        let d = ServerDef::from_nova(&s, &attachments(), &Mappings::default()).unwrap();
        assert_eq!(d.volumes, ["s1_disk", "boot", "data", "late"]);
        assert_eq!(d.root_disk.as_deref(), Some("s1_disk"));
        let d = ServerDef::from_nova(&s, &json!({"volumeAttachments": []}), &Mappings::default())
            .unwrap();
        assert_eq!(d.volumes, ["s1_disk"]);
    }

    #[test]
    fn a_server_without_volumes_is_refused() {
        let e = ServerDef::from_nova(
            &nova_server(),
            &json!({"volumeAttachments": []}),
            &Mappings::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no volume attached"), "{e}");
    }
}
