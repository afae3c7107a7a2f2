//! Cinder (block-storage v3) requests.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::openstack::request::urlencode;
use crate::openstack::request::Request;
use crate::openstack::session::Service;

/// The microversion of the attachments API ferry uses (3.44: attachment
/// `os-complete`).
pub const ATTACHMENTS: &str = "volume 3.44";

fn get(path: String) -> Request {
    Request::get(Service::BlockStorage, path)
}

fn post(path: String, body: Value) -> Request {
    Request::new(Service::BlockStorage, Method::POST, path).json(body)
}

/// One volume by id.
pub fn volume(id: &str) -> Request {
    get(format!("/volumes/{id}"))
}

/// The project's volumes with details; `name` filters exactly.
pub fn volumes(name: Option<&str>) -> Request {
    get(match name {
        Some(n) => format!("/volumes/detail?name={}", urlencode(n)),
        None => "/volumes/detail".to_string(),
    })
}

/// The project's volumes whose metadata has `key` = `value`.
pub fn volumes_with_metadata(key: &str, value: &str) -> Request {
    let filter = json!({ key: value }).to_string();
    get(format!("/volumes/detail?metadata={}", urlencode(&filter)))
}

pub fn volume_types() -> Request {
    get("/types".into())
}

/// The scheduler's pools, with their capabilities.
pub fn backend_pools() -> Request {
    get("/scheduler-stats/get_pools?detail=true".into())
}

/// A page of the images on `host` Cinder could manage (3.8).
pub fn manageable(host: &str, limit: usize, offset: usize) -> Request {
    get(format!(
        "/manageable_volumes/detail?host={}&limit={limit}&offset={offset}",
        urlencode(host)
    ))
    .microversion("volume 3.8")
}

/// Cinder's user messages about a resource (3.3).
pub fn messages(resource_id: &str) -> Request {
    get(format!("/messages?resource_uuid={resource_id}")).microversion("volume 3.3")
}

/// What manage-existing adopts, and as what.
#[derive(Debug, Clone, PartialEq)]
pub struct Manage<'a> {
    /// `host@backend#pool`.
    pub host: &'a str,
    /// The RBD image name in the backend's pool.
    pub source_name: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub volume_type: Option<&'a str>,
    pub bootable: bool,
    pub metadata: &'a BTreeMap<String, String>,
}

/// Adopts an existing RBD image as a volume (`os-volume-manage`). Not
/// repeated: a manage that reached Cinder and is sent again fails on the
/// renamed image, or adopts it twice.
pub fn manage(m: &Manage<'_>) -> Request {
    let mut vol = json!({
        "host": m.host,
        "ref": {"source-name": m.source_name},
        "name": m.name,
        "bootable": m.bootable,
        "metadata": m.metadata,
    });
    if let Some(d) = m.description {
        vol["description"] = json!(d);
    }
    if let Some(t) = m.volume_type {
        vol["volume_type"] = json!(t);
    }
    post("/os-volume-manage".into(), json!({ "volume": vol }))
}

/// The project's snapshots of one volume, with details.
pub fn snapshots_of(volume_id: &str) -> Request {
    get(format!(
        "/snapshots/detail?volume_id={}",
        urlencode(volume_id)
    ))
}

/// One snapshot by id.
pub fn snapshot(id: &str) -> Request {
    get(format!("/snapshots/{id}"))
}

/// What manage-existing of a snapshot adopts, and as what.
#[derive(Debug, Clone, PartialEq)]
pub struct ManageSnapshot<'a> {
    /// The volume whose backend object holds the snapshot.
    pub volume_id: &'a str,
    /// The RBD snapshot's name on the volume's image.
    pub source_name: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub metadata: &'a BTreeMap<String, String>,
}

/// Adopts an existing RBD snapshot of a managed volume as a Cinder
/// snapshot (`os-snapshot-manage`; the RBD driver renames it
/// `snapshot-<new id>` and protects it). Not repeated: sent again, it
/// fails on the renamed snapshot.
pub fn manage_snapshot(m: &ManageSnapshot<'_>) -> Request {
    let mut snap = json!({
        "volume_id": m.volume_id,
        "ref": {"source-name": m.source_name},
        "name": m.name,
        "metadata": m.metadata,
    });
    if let Some(d) = m.description {
        snap["description"] = json!(d);
    }
    post("/os-snapshot-manage".into(), json!({ "snapshot": snap }))
}

/// Creates a volume from the fields of `POST /volumes`' `volume`. Not
/// repeated: each create that reaches Cinder makes one.
pub fn create_volume(fields: &Value) -> Request {
    post("/volumes".into(), json!({ "volume": fields }))
}

/// The fields of an empty volume of `size_gb` GiB.
pub fn new_volume(
    name: &str,
    size_gb: u64,
    description: Option<&str>,
    volume_type: Option<&str>,
    metadata: &BTreeMap<String, String>,
) -> Value {
    let mut vol = json!({"name": name, "size": size_gb, "metadata": metadata});
    if let Some(d) = description {
        vol["description"] = json!(d);
    }
    if let Some(t) = volume_type {
        vol["volume_type"] = json!(t);
    }
    vol
}

fn action(id: &str, body: Value) -> Request {
    post(format!("/volumes/{id}/action"), body)
}

/// Sets the bootable flag (setting it twice sets it).
pub fn set_bootable(id: &str, bootable: bool) -> Request {
    action(id, json!({"os-set_bootable": {"bootable": bootable}})).safe_to_repeat()
}

/// Sets these image metadata keys (again: to the same values).
pub fn set_image_metadata(id: &str, meta: &BTreeMap<String, String>) -> Request {
    action(id, json!({"os-set_image_metadata": {"metadata": meta}})).safe_to_repeat()
}

/// Uploads a volume to a new Glance image (each one that reaches Cinder
/// makes an image: not repeated).
pub fn upload_to_image(id: &str, image_name: &str) -> Request {
    action(
        id,
        json!({"os-volume_upload_image": {
            "image_name": image_name, "disk_format": "raw",
            "container_format": "bare", "force": false}}),
    )
}

/// Sets these metadata keys of a volume (others are kept).
pub fn set_metadata(id: &str, meta: &BTreeMap<String, String>) -> Request {
    post(
        format!("/volumes/{}/metadata", urlencode(id)),
        json!({ "metadata": meta }),
    )
    .safe_to_repeat()
}

/// Sets a volume's name and its whole metadata at once (keys not in `meta`
/// go).
pub fn update_volume(id: &str, name: &str, meta: &BTreeMap<String, String>) -> Request {
    Request::new(
        Service::BlockStorage,
        Method::PUT,
        format!("/volumes/{}", urlencode(id)),
    )
    .json(json!({"volume": {"name": name, "metadata": meta}}))
}

/// Removes one metadata key of a volume.
pub fn delete_metadata(id: &str, key: &str) -> Request {
    Request::new(
        Service::BlockStorage,
        Method::DELETE,
        format!("/volumes/{}/metadata/{}", urlencode(id), urlencode(key)),
    )
}

pub fn delete_volume(id: &str) -> Request {
    Request::new(
        Service::BlockStorage,
        Method::DELETE,
        format!("/volumes/{id}"),
    )
}

/// Attaches a volume to the host `connector` describes (read-write: the
/// default; `mode` itself needs 3.54). Not repeated: each create that
/// reaches Cinder makes an attachment.
pub fn attach(volume_id: &str, connector: Value) -> Request {
    post(
        "/attachments".into(),
        json!({"attachment": {"volume_uuid": volume_id, "connector": connector}}),
    )
    .microversion(ATTACHMENTS)
}

/// Marks an attachment complete (completing twice completes).
pub fn complete_attachment(attachment_id: &str) -> Request {
    post(
        format!("/attachments/{attachment_id}/action"),
        json!({"os-complete": null}),
    )
    .microversion(ATTACHMENTS)
    .safe_to_repeat()
}

/// Deletes an attachment (the detach).
pub fn delete_attachment(attachment_id: &str) -> Request {
    Request::new(
        Service::BlockStorage,
        Method::DELETE,
        format!("/attachments/{attachment_id}"),
    )
    .microversion(ATTACHMENTS)
}

/// The attachments of a volume, in any state.
pub fn attachments(volume_id: &str) -> Request {
    get(format!("/attachments?volume_id={}", urlencode(volume_id))).microversion(ATTACHMENTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openstack::request::Body;
    use crate::openstack::Repeat;

    #[test]
    fn manage_sends_the_host_the_image_and_what_the_volume_is_named() {
        let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let r = manage(&Manage {
            host: "h@ceph#ceph",
            source_name: "volume-1",
            name: "db",
            description: None,
            volume_type: Some("ceph"),
            bootable: true,
            metadata: &meta,
        });
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/os-volume-manage");
        assert_eq!(r.repeat, Repeat::ByMethod);
        assert_eq!(
            r.body,
            Some(Body::Json(json!({"volume": {
                "host": "h@ceph#ceph", "ref": {"source-name": "volume-1"}, "name": "db",
                "bootable": true, "metadata": {"k": "v"}, "volume_type": "ceph"}})))
        );
    }

    #[test]
    fn flag_setting_actions_may_be_repeated_creates_may_not() {
        let none = BTreeMap::new();
        assert_eq!(set_bootable("v", true).repeat, Repeat::Safe);
        assert_eq!(set_image_metadata("v", &none).repeat, Repeat::Safe);
        assert_eq!(set_metadata("v", &none).repeat, Repeat::Safe);
        assert_eq!(complete_attachment("a").repeat, Repeat::Safe);
        assert_eq!(create_volume(&json!({})).repeat, Repeat::ByMethod);
        assert_eq!(upload_to_image("v", "i").repeat, Repeat::ByMethod);
        assert_eq!(attach("v", json!({})).repeat, Repeat::ByMethod);
    }

    #[test]
    fn ids_and_keys_in_paths_are_encoded() {
        assert_eq!(
            delete_metadata("v 1", "a/b").path,
            "/volumes/v%201/metadata/a%2Fb"
        );
        assert_eq!(
            volumes(Some("my vol")).path,
            "/volumes/detail?name=my%20vol"
        );
    }
}
