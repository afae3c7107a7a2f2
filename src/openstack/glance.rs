//! The Glance (image v2) calls ferry makes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::api::glance as api;
use super::paging::{glance_next, Pages};
use super::session::{ApiErrorKind, Cloud, Result};

/// An image as Glance describes it; properties beyond the core ones are in
/// `properties`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: String,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub container_format: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub min_disk: Option<u64>,
    #[serde(default)]
    pub min_ram: Option<u64>,
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    #[serde(default)]
    pub os_hash_value: Option<String>,
    #[serde(flatten)]
    pub properties: BTreeMap<String, Value>,
}

/// Core fields Glance manages itself; everything else is a user property.
const CORE: &[&str] = &[
    "checksum",
    "created_at",
    "updated_at",
    "file",
    "schema",
    "self",
    "direct_url",
    "locations",
    "owner",
    "protected",
    "tags",
    "virtual_size",
    "visibility",
    "os_hidden",
    "stores",
    "id",
    "name",
    "status",
    "disk_format",
    "container_format",
    "size",
    "min_disk",
    "min_ram",
    "os_hash_algo",
    "os_hash_value",
];

impl Image {
    /// The user properties (string values), to carry to another cloud.
    pub fn user_properties(&self) -> BTreeMap<String, String> {
        self.properties
            .iter()
            .filter(|(k, _)| !CORE.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect()
    }
}

/// Glance calls on one cloud: each sends a request of [`api::glance`].
pub struct Glance<'a>(pub &'a Cloud);

impl Glance<'_> {
    pub fn image(&self, id: &str) -> Result<Image> {
        self.0.request(&api::image(id))?.json("an image")
    }

    /// Images whose property `key` equals `value` (Glance filters on any
    /// property), every page of them.
    pub fn images_with(&self, key: &str, value: &str) -> Result<Vec<Image>> {
        let mut page = api::images_with(key, value);
        let mut out = Vec::new();
        let mut pages = Pages::default();
        loop {
            let answer = self.0.request(&page)?;
            let body: Value = answer.json("a list of images")?;
            let Some(items) = body.get("images") else {
                return Err(answer.not("a list of images (an \"images\" member)", None));
            };
            out.extend(
                Vec::<Image>::deserialize(items)
                    .map_err(|e| answer.not("a list of images", Some(e)))?,
            );
            match glance_next(&body) {
                Some(next) if pages.is_new(&next) => page.path = next,
                _ => return Ok(out),
            }
        }
    }

    /// Creates a queued image record with these fields and properties.
    pub fn create(&self, fields: &Value) -> Result<Image> {
        self.0.request(&api::create(fields))?.json("the new image")
    }

    /// Adds a location (needs `show_multiple_locations` on the API).
    pub fn add_location(&self, id: &str, url: &str) -> Result<Image> {
        self.0
            .request(&api::add_location(id, url))?
            .json("the image with its new location")
    }

    /// Streams the image data into `out`; returns bytes written.
    pub fn download(&self, id: &str, out: &mut dyn std::io::Write) -> Result<u64> {
        let mut resp = self.0.respond(&api::download(id))?;
        resp.copy_to(out).map_err(|source| {
            ApiErrorKind::Transport {
                cloud: self.0.name().into(),
                what: format!("downloading image {id}"),
                tries: Default::default(),
                source: source.without_url(),
            }
            .into()
        })
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        self.0.respond(&api::delete(id)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_properties_leave_core_fields_out() {
        let i: Image = serde_json::from_value(json!({
            "id": "i", "status": "active", "name": "n", "visibility": "shared",
            "os_distro": "debian", "hw_disk_bus": "scsi", "min_disk": 1, "tags": []
        }))
        .unwrap();
        let p = i.user_properties();
        assert_eq!(
            p.into_iter().collect::<Vec<_>>(),
            vec![
                ("hw_disk_bus".to_string(), "scsi".to_string()),
                ("os_distro".to_string(), "debian".to_string())
            ]
        );
    }
}
