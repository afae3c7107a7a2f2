//! Glance (image v2) requests.

use reqwest::Method;
use serde_json::{json, Value};

use crate::openstack::request::urlencode;
use crate::openstack::request::Request;
use crate::openstack::session::Service;

/// One image by id.
pub fn image(id: &str) -> Request {
    Request::get(Service::Image, format!("/v2/images/{id}"))
}

/// Images whose property `key` equals `value` (Glance filters on any
/// property); the first page.
pub fn images_with(key: &str, value: &str) -> Request {
    Request::get(
        Service::Image,
        format!("/v2/images?{}={}", urlencode(key), urlencode(value)),
    )
}

/// Creates a queued image record with these fields and properties.
pub fn create(fields: &Value) -> Request {
    Request::new(Service::Image, Method::POST, "/v2/images".into()).json(fields.clone())
}

/// Adds a location to an image, as a JSON patch (Glance needs
/// `show_multiple_locations` on its API for it).
pub fn add_location(id: &str, url: &str) -> Request {
    let path = format!("/v2/images/{}", urlencode(id));
    Request::new(Service::Image, Method::PATCH, path).patch(json!([
        {"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}
    ]))
}

/// The image's data.
pub fn download(id: &str) -> Request {
    Request::get(Service::Image, format!("/v2/images/{id}/file"))
}

pub fn delete(id: &str) -> Request {
    Request::new(Service::Image, Method::DELETE, format!("/v2/images/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openstack::request::{Body, GLANCE_PATCH};

    #[test]
    fn a_location_is_added_with_a_json_patch() {
        let r = add_location("i1", "rbd://f/p/i/s");
        assert_eq!(r.method, Method::PATCH);
        assert_eq!(r.path, "/v2/images/i1");
        let body = r.body.unwrap();
        assert_eq!(body.content_type(), GLANCE_PATCH);
        assert_eq!(
            body,
            Body::Patch(json!([{"op": "add", "path": "/locations/-",
                                "value": {"url": "rbd://f/p/i/s", "metadata": {}}}]))
        );
    }
}
