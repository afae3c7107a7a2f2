//! Nova (compute v2.1) and the few Neutron (network v2.0) requests.

use serde_json::{json, Value};

use crate::openstack::request::{urlencode, Request};
use crate::openstack::session::Service;

/// The microversion ferry's server calls ask for: 2.52 has `networks:
/// "none"` (2.37), `description` (2.19) and `tags` at create (2.52), and
/// Zed, the oldest Nova ferry is tried against, serves up to 2.93.
pub const MICROVERSION: &str = "compute 2.52";

/// One server by id.
pub fn server(id: &str) -> Request {
    Request::get(Service::Compute, format!("/servers/{}", urlencode(id))).microversion(MICROVERSION)
}

/// Every server of the project, with details.
pub fn servers_detail() -> Request {
    Request::get(Service::Compute, "/servers/detail".into()).microversion(MICROVERSION)
}

/// The volumes attached to a server, with their devices.
pub fn volume_attachments(id: &str) -> Request {
    Request::get(
        Service::Compute,
        format!("/servers/{}/os-volume_attachments", urlencode(id)),
    )
    .microversion(MICROVERSION)
}

/// Stops a server (Nova shuts the guest down, then powers it off).
pub fn stop(id: &str) -> Request {
    action(id, json!({"os-stop": null}))
}

fn action(id: &str, body: Value) -> Request {
    Request::new(
        Service::Compute,
        reqwest::Method::POST,
        format!("/servers/{}/action", urlencode(id)),
    )
    .json(body)
    .microversion(MICROVERSION)
}

/// Sets (adds or replaces) metadata items of a server; the others stay.
pub fn set_metadata(id: &str, items: &std::collections::BTreeMap<String, String>) -> Request {
    Request::new(
        Service::Compute,
        reqwest::Method::POST,
        format!("/servers/{}/metadata", urlencode(id)),
    )
    .json(json!({ "metadata": items }))
    .microversion(MICROVERSION)
    .safe_to_repeat()
}

/// Every flavor the project may use, with details.
pub fn flavors_detail() -> Request {
    Request::get(Service::Compute, "/flavors/detail?is_public=None".into())
        .microversion(MICROVERSION)
}

/// The last lines of a server's console.
pub fn console_output(id: &str, lines: u32) -> Request {
    action(id, json!({"os-getConsoleOutput": {"length": lines}})).safe_to_repeat()
}

/// Networks of this name (Neutron).
pub fn networks_named(name: &str) -> Request {
    Request::get(
        Service::Network,
        format!("/v2.0/networks?name={}", urlencode(name)),
    )
}

/// A server to create, booted from existing volumes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewServer<'a> {
    pub name: &'a str,
    pub flavor_id: &'a str,
    /// Volume ids in device order, the boot volume first.
    pub volumes: &'a [String],
    /// `(network id, fixed IP)`; empty: `networks: "none"`.
    pub networks: &'a [(String, Option<String>)],
    pub key_name: Option<&'a str>,
    pub security_groups: &'a [String],
    pub metadata: &'a std::collections::BTreeMap<String, String>,
    pub tags: &'a [String],
    pub availability_zone: Option<&'a str>,
    pub description: Option<&'a str>,
}

/// `POST /servers` booting from `volumes` (boot index 0 the first, the
/// others attached in order), none deleted with the server.
pub fn create_server(s: &NewServer<'_>) -> Request {
    let bdm: Vec<Value> = s
        .volumes
        .iter()
        .enumerate()
        .map(|(k, id)| {
            let mut m = json!({
                "uuid": id,
                "source_type": "volume",
                "destination_type": "volume",
                "delete_on_termination": false,
            });
            m["boot_index"] = if k == 0 { json!(0) } else { json!(-1) };
            m
        })
        .collect();
    let networks: Value = if s.networks.is_empty() {
        json!("none")
    } else {
        Value::Array(
            s.networks
                .iter()
                .map(|(id, ip)| match ip {
                    Some(ip) => json!({"uuid": id, "fixed_ip": ip}),
                    None => json!({ "uuid": id }),
                })
                .collect(),
        )
    };
    let mut server = json!({
        "name": s.name,
        "flavorRef": s.flavor_id,
        "block_device_mapping_v2": bdm,
        "networks": networks,
        "metadata": s.metadata,
    });
    if let Some(k) = s.key_name {
        server["key_name"] = json!(k);
    }
    // Security groups apply to ports: none without a network.
    if !s.networks.is_empty() && !s.security_groups.is_empty() {
        server["security_groups"] = Value::Array(
            s.security_groups
                .iter()
                .map(|g| json!({ "name": g }))
                .collect(),
        );
    }
    if !s.tags.is_empty() {
        server["tags"] = json!(s.tags);
    }
    if let Some(z) = s.availability_zone {
        server["availability_zone"] = json!(z);
    }
    if let Some(d) = s.description {
        server["description"] = json!(d);
    }
    Request::new(Service::Compute, reqwest::Method::POST, "/servers".into())
        .json(json!({ "server": server }))
        .microversion(MICROVERSION)
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

    #[test]
    fn a_server_boots_from_its_volumes_in_order_and_keeps_them() {
        let vols = vec!["boot".to_string(), "data".to_string()];
        let meta = [("ferry_source_server".to_string(), "s1".to_string())]
            .into_iter()
            .collect();
        let r = create_server(&NewServer {
            name: "web",
            flavor_id: "f1",
            volumes: &vols,
            networks: &[],
            key_name: Some("k"),
            security_groups: &["default".into()],
            metadata: &meta,
            tags: &["a".into()],
            availability_zone: None,
            description: Some("d"),
        });
        let b = r.body.unwrap().json().clone();
        let s = &b["server"];
        assert_eq!(s["networks"], "none");
        assert_eq!(s["block_device_mapping_v2"][0]["uuid"], "boot");
        assert_eq!(s["block_device_mapping_v2"][0]["boot_index"], 0);
        assert_eq!(s["block_device_mapping_v2"][1]["boot_index"], -1);
        assert_eq!(
            s["block_device_mapping_v2"][1]["delete_on_termination"],
            false
        );
        assert!(s.get("security_groups").is_none(), "no ports, no groups");
        assert_eq!(s["tags"][0], "a");
        assert_eq!(s["metadata"]["ferry_source_server"], "s1");
        assert_eq!(r.microversion, Some(MICROVERSION));
        assert!(s.get("imageRef").is_none());
    }

    #[test]
    fn networks_are_given_by_id_with_their_fixed_ips() {
        let nets = vec![("n1".to_string(), Some("10.0.0.5".to_string()))];
        let r = create_server(&NewServer {
            name: "web",
            flavor_id: "f1",
            volumes: &["v".into()],
            networks: &nets,
            key_name: None,
            security_groups: &["web".into()],
            metadata: &Default::default(),
            tags: &[],
            availability_zone: Some("az1"),
            description: None,
        });
        let b = r.body.unwrap().json().clone();
        assert_eq!(b["server"]["networks"][0]["fixed_ip"], "10.0.0.5");
        assert_eq!(b["server"]["security_groups"][0]["name"], "web");
        assert_eq!(b["server"]["availability_zone"], "az1");
    }
}
