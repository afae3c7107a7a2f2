//! Nova (compute v2.1) requests.

use crate::openstack::request::{urlencode, Request};
use crate::openstack::session::Service;

/// One server by id.
pub fn server(id: &str) -> Request {
    Request::get(Service::Compute, format!("/servers/{}", urlencode(id)))
}
