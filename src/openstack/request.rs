//! A call to a cloud as a value: which service, method, path (with its
//! query), microversion and body, and whether it may be sent again. Built
//! once by the pure functions of [`super::api`]; [`super::Cloud::request`]
//! sends it, and the renderer prints the same value as a script's
//! `api_send` line, so ferry and the scripts cannot send different bodies.

use reqwest::Method;
use serde_json::Value;

use super::retry::Repeat;
use super::session::Service;

/// One request to a service of a cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub service: Service,
    pub method: Method,
    /// Appended to the service's endpoint: the path and its encoded query.
    pub path: String,
    /// `OpenStack-API-Version`'s value (`volume 3.44`), when the call needs
    /// more than the service's base version.
    pub microversion: Option<&'static str>,
    pub body: Option<Body>,
    /// Whether it may be sent again after an attempt that may have reached
    /// the service.
    pub repeat: Repeat,
}

/// A request body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    /// A Glance JSON patch.
    Patch(Value),
}

/// Glance's JSON-patch media type.
pub const GLANCE_PATCH: &str = "application/openstack-images-v2.1-json-patch";

impl Body {
    /// The JSON sent.
    pub fn json(&self) -> &Value {
        match self {
            Body::Json(v) | Body::Patch(v) => v,
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self {
            Body::Json(_) => "application/json",
            Body::Patch(_) => GLANCE_PATCH,
        }
    }
}

impl Request {
    /// A request without body or microversion, repeated as its method
    /// allows.
    pub fn new(service: Service, method: Method, path: String) -> Request {
        Request {
            service,
            method,
            path,
            microversion: None,
            body: None,
            repeat: Repeat::ByMethod,
        }
    }

    /// A GET of `path`.
    pub fn get(service: Service, path: String) -> Request {
        Request::new(service, Method::GET, path)
    }

    /// With a JSON body.
    pub fn json(mut self, body: Value) -> Request {
        self.body = Some(Body::Json(body));
        self
    }

    /// With a Glance JSON-patch body.
    pub fn patch(mut self, body: Value) -> Request {
        self.body = Some(Body::Patch(body));
        self
    }

    /// With a microversion (`volume 3.44`).
    pub fn microversion(mut self, v: &'static str) -> Request {
        self.microversion = Some(v);
        self
    }

    /// Marked as doing the same when sent twice, whatever its method.
    pub fn safe_to_repeat(mut self) -> Request {
        self.repeat = Repeat::Safe;
        self
    }

    /// `METHOD path`, for messages.
    pub fn what(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Percent-encodes a query value or a path segment.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(urlencode("my vol/1"), "my%20vol%2F1");
    }
}
