//! Nova (compute v2.1) requests.

use crate::openstack::request::{urlencode, Request};
use crate::openstack::session::Service;

/// One server by id.
pub fn server(id: &str) -> Request {
    Request::get(Service::Compute, format!("/servers/{}", urlencode(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_read_by_its_encoded_id() {
        let r = server("s 1");
        assert_eq!(
            (r.service, r.path.as_str()),
            (Service::Compute, "/servers/s%201")
        );
        assert_eq!(r.method, reqwest::Method::GET);
    }
}
