//! The Cinder (block-storage v3) calls ferry makes.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::cinder as api;
use super::paging::{next_marker, with_param, Pages};
pub use super::request::urlencode;
use super::request::Request;
use super::session::{Cloud, Result, Service};

/// A volume as Cinder describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// GiB.
    pub size: u64,
    pub status: String,
    /// "true" or "false", as Cinder sends it.
    #[serde(default)]
    pub bootable: String,
    #[serde(default)]
    pub volume_type: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub volume_image_metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// An encrypted volume (LUKS; its key is in the cloud's key manager).
    #[serde(default)]
    pub encrypted: bool,
    /// `host@backend#pool`; shown to admins only.
    #[serde(rename = "os-vol-host-attr:host", default)]
    pub host: Option<String>,
}

impl Volume {
    pub fn is_bootable(&self) -> bool {
        self.bootable.eq_ignore_ascii_case("true")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(default)]
    pub server_id: Option<String>,
    #[serde(default)]
    pub attachment_id: Option<String>,
    /// The mountpoint the attaching host gave (`ferry:<host>` for ferry's).
    #[serde(default)]
    pub device: Option<String>,
}

/// A volume snapshot as Cinder describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub status: String,
    pub volume_id: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// A volume type.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VolumeType {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, String>,
}

/// A backend pool the scheduler knows (`host@backend#pool`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BackendPool {
    pub name: String,
    #[serde(default)]
    pub capabilities: Value,
}

impl BackendPool {
    /// For the RBD driver: (fsid, RBD pool) from its `location_info`
    /// (`cluster:conf:fsid:user:pool`).
    pub fn rbd_location(&self) -> Option<(String, String)> {
        let info = self.capabilities.get("location_info")?.as_str()?;
        let parts: Vec<&str> = info.rsplitn(4, ':').collect();
        // rsplitn: pool, user, fsid, rest (the conf path may hold colons)
        match parts.as_slice() {
            [pool, _user, fsid, _rest] => Some((fsid.to_string(), pool.to_string())),
            _ => None,
        }
    }
}

/// Cinder calls on one cloud: each sends a request of [`api::cinder`].
pub struct Cinder<'a>(pub &'a Cloud);

impl Cinder<'_> {
    /// One volume by id (404 when there is none).
    pub fn volume(&self, id: &str) -> Result<Volume> {
        self.0
            .request(&api::volume(id))?
            .field("volume", "a volume")
    }

    /// Every entry of a list Cinder pages (`<key>` and `<key>_links`),
    /// from `first` on: the next page is asked for with the marker Cinder
    /// links it by, on ferry's own path.
    fn list<T: DeserializeOwned>(
        &self,
        first: Request,
        key: &str,
        expected: &str,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut page = first.clone();
        let mut pages = Pages::default();
        loop {
            let answer = self.0.request(&page)?;
            let body: Value = answer.json(expected)?;
            let Some(items) = body.get(key) else {
                return Err(answer.not(&format!("{expected} (a {key:?} member)"), None));
            };
            out.extend(Vec::<T>::deserialize(items).map_err(|e| answer.not(expected, Some(e)))?);
            match next_marker(&body, &format!("{key}_links")) {
                Some(m) if pages.is_new(&m) => {
                    page.path = with_param(&first.path, "marker", &m);
                }
                _ => return Ok(out),
            }
        }
    }

    /// Volumes listed from `path` (`/volumes/detail?...`, its filters and
    /// page size kept), every page of them.
    pub fn volumes_from(&self, path: &str) -> Result<Vec<Volume>> {
        let first = Request::get(Service::BlockStorage, path.to_string());
        self.list(first, "volumes", "a list of volumes")
    }

    /// Volumes of the project, with details; `name` filters exactly.
    pub fn volumes(&self, name: Option<&str>) -> Result<Vec<Volume>> {
        self.list(api::volumes(name), "volumes", "a list of volumes")
    }

    /// Volumes of the project whose metadata has `key` = `value` (filtered
    /// by Cinder, so the project's other volumes are not listed).
    pub fn volumes_with_metadata(&self, key: &str, value: &str) -> Result<Vec<Volume>> {
        let all: Vec<Volume> = self.list(
            api::volumes_with_metadata(key, value),
            "volumes",
            "a list of volumes",
        )?;
        Ok(all
            .into_iter()
            .filter(|v| v.metadata.get(key).map(String::as_str) == Some(value))
            .collect())
    }

    pub fn volume_types(&self) -> Result<Vec<VolumeType>> {
        self.0
            .request(&api::volume_types())?
            .field("volume_types", "a list of volume types")
    }

    /// The scheduler's pools (admin by default policy).
    pub fn backend_pools(&self) -> Result<Vec<BackendPool>> {
        self.0
            .request(&api::backend_pools())?
            .field("pools", "a list of backend pools")
    }

    /// Names of the images on a backend that Cinder could manage
    /// (`manageable_volumes`, microversion 3.8, admin by default policy),
    /// with whether each is safe to manage; every page of them.
    pub fn manageable(&self, host: &str) -> Result<Vec<(String, bool)>> {
        self.manageable_paged(host, MANAGEABLE_PAGE)
    }

    /// [`Cinder::manageable`], asking pages of `page` entries.
    pub fn manageable_paged(&self, host: &str, page: usize) -> Result<Vec<(String, bool)>> {
        let list = manageable_pages(|offset| {
            self.0
                .request(&api::manageable(host, page, offset))?
                .field("manageable-volumes", "a list of manageable volumes")
        })?;
        Ok(list
            .iter()
            .filter_map(|m| {
                let name = m.get("reference")?.get("source-name")?.as_str()?;
                let safe = m
                    .get("safe_to_manage")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                Some((name.to_string(), safe))
            })
            .collect())
    }

    /// Adopts an existing RBD image as a volume (`os-volume-manage`, admin
    /// by default policy). The volume starts `creating`; poll it.
    pub fn manage(&self, m: &api::Manage<'_>) -> Result<Volume> {
        self.0
            .request(&api::manage(m))?
            .field("volume", "the managed volume")
    }

    /// The snapshots of one volume, every page of them.
    pub fn snapshots_of(&self, volume_id: &str) -> Result<Vec<Snapshot>> {
        let all: Vec<Snapshot> = self.list(
            api::snapshots_of(volume_id),
            "snapshots",
            "a list of snapshots",
        )?;
        // Filtered by Cinder; held to it.
        Ok(all
            .into_iter()
            .filter(|s| s.volume_id == volume_id)
            .collect())
    }

    /// One snapshot by id (404 when there is none).
    pub fn snapshot(&self, id: &str) -> Result<Snapshot> {
        self.0
            .request(&api::snapshot(id))?
            .field("snapshot", "a snapshot")
    }

    /// Adopts an existing RBD snapshot as a Cinder snapshot
    /// (`os-snapshot-manage`, admin by default policy). It starts
    /// `creating`; poll it.
    pub fn manage_snapshot(&self, m: &api::ManageSnapshot<'_>) -> Result<Snapshot> {
        self.0
            .request(&api::manage_snapshot(m))?
            .field("snapshot", "the managed snapshot")
    }

    pub fn set_bootable(&self, id: &str, bootable: bool) -> Result<()> {
        self.0.request(&api::set_bootable(id, bootable)).map(|_| ())
    }

    pub fn set_image_metadata(&self, id: &str, meta: &BTreeMap<String, String>) -> Result<()> {
        self.0
            .request(&api::set_image_metadata(id, meta))
            .map(|_| ())
    }

    /// Uploads a volume to a new Glance image; returns the image id.
    pub fn upload_to_image(&self, id: &str, image_name: &str) -> Result<String> {
        let answer = self.0.request(&api::upload_to_image(id, image_name))?;
        let expected = "the new image's id (os-volume_upload_image.image_id)";
        let v: Value = answer.json(expected)?;
        v.pointer("/os-volume_upload_image/image_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| answer.not(expected, None))
    }

    /// Creates an empty volume (starts `creating`; poll it).
    pub fn create_volume(
        &self,
        name: &str,
        size_gb: u64,
        volume_type: Option<&str>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Volume> {
        self.create_volume_from(&api::new_volume(name, size_gb, None, volume_type, metadata))
    }

    /// Creates a volume from the fields of a `POST /volumes` body's
    /// `volume`. Not repeated: each create that reaches Cinder makes one.
    pub fn create_volume_from(&self, vol: &Value) -> Result<Volume> {
        self.0
            .request(&api::create_volume(vol))?
            .field("volume", "the new volume")
    }

    /// Sets these metadata keys of a volume (others are kept).
    pub fn set_metadata(&self, id: &str, meta: &BTreeMap<String, String>) -> Result<()> {
        self.0.request(&api::set_metadata(id, meta)).map(|_| ())
    }

    /// Sets a volume's name and its whole metadata at once (keys not in
    /// `meta` go): `PUT /volumes/{id}`.
    pub fn update_volume(
        &self,
        id: &str,
        name: &str,
        meta: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.0
            .request(&api::update_volume(id, name, meta))
            .map(|_| ())
    }

    /// Removes one metadata key of a volume; a key already gone is fine.
    pub fn delete_metadata(&self, id: &str, key: &str) -> Result<()> {
        match self.0.respond(&api::delete_metadata(id, key)) {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    pub fn delete_volume(&self, id: &str) -> Result<()> {
        self.0.respond(&api::delete_volume(id)).map(|_| ())
    }
}

/// The page size ferry asks `manageable_volumes` for. Cinder cuts it to
/// its `osapi_max_limit` (1,000 by default, often lower) without a word,
/// and this list carries no `next` link: a short page does not mean the
/// last one.
pub const MANAGEABLE_PAGE: usize = 1000;

/// Every entry of `manageable_volumes`, `fetch` giving the page at an
/// offset: pages are read, each from where the last ended, until one is
/// empty, or is a page read before (a service that ignores the offset).
/// By offset, not by marker: Cinder answers 400 to a marker it no longer
/// lists (the last image of a page managed or deleted meanwhile, as
/// happens all the time while many are moved); an offset at worst skips
/// an entry for one reading, and the waits that read it read again.
pub fn manageable_pages<E>(
    mut fetch: impl FnMut(usize) -> std::result::Result<Vec<Value>, E>,
) -> std::result::Result<Vec<Value>, E> {
    let mut out = Vec::new();
    let mut pages = Pages::default();
    loop {
        let page = fetch(out.len())?;
        let Some(first) = page.first() else {
            return Ok(out);
        };
        if !pages.is_new(&first.to_string()) {
            return Ok(out);
        }
        out.extend(page);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rbd_location_info_gives_fsid_and_pool() {
        let p: BackendPool = serde_json::from_value(json!({
            "name": "h@ceph#ceph-b",
            "capabilities": {"location_info": "site-b:/etc/ceph/site-b.conf:5924b3c6-2cf4:cinder:cinder-volumes"}
        }))
        .unwrap();
        assert_eq!(
            p.rbd_location(),
            Some(("5924b3c6-2cf4".into(), "cinder-volumes".into()))
        );
    }

    #[test]
    fn volumes_parse_with_admin_and_image_fields() {
        let v: Volume = serde_json::from_value(json!({
            "id": "v1", "name": "db", "size": 2, "status": "in-use", "bootable": "true",
            "volume_type": "ceph", "metadata": {"k": "v"},
            "volume_image_metadata": {"os_distro": "debian"},
            "attachments": [{"server_id": "s1", "attachment_id": "a1"}],
            "os-vol-host-attr:host": "h@ceph#ceph"
        }))
        .unwrap();
        assert!(v.is_bootable());
        assert_eq!(v.attachments[0].server_id.as_deref(), Some("s1"));
        assert_eq!(v.host.as_deref(), Some("h@ceph#ceph"));
    }

    /// As Cinder (Zed) answers `manageable_volumes/detail` for a backend
    /// of five images when its `osapi_max_limit` is 2 (ferry asks 1,000).
    fn capped_at_two(offset: usize) -> Vec<Value> {
        let all: Vec<Value> = (0..5)
            .map(|n| {
                json!({"reference": {"source-name": format!("volume-{n}")}, "size": 1,
                       "safe_to_manage": n != 3, "reason_not_safe": null,
                       "cinder_id": null, "extra_info": null})
            })
            .collect();
        all.into_iter().skip(offset).take(2).collect()
    }

    #[test]
    fn manageable_pages_are_read_past_a_short_page_to_an_empty_one() {
        let mut asked = Vec::new();
        let got = manageable_pages(|offset| {
            asked.push(offset);
            Ok::<_, ()>(capped_at_two(offset))
        })
        .unwrap();
        assert_eq!(asked, [0, 2, 4, 5]);
        let names: Vec<&str> = got
            .iter()
            .map(|m| m["reference"]["source-name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["volume-0", "volume-1", "volume-2", "volume-3", "volume-4"]
        );
        // A service that ignores the offset gives its first page again:
        // read once.
        let got = manageable_pages(|_| Ok::<_, ()>(capped_at_two(0))).unwrap();
        assert_eq!(got.len(), 2);
        // An error stops the reading.
        assert_eq!(
            manageable_pages(|_| Err::<Vec<Value>, _>("500")),
            Err("500")
        );
    }
}
