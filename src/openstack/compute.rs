//! The Nova (compute) and Neutron (network) calls ferry makes for servers.
//! Answers stay JSON values: the plan reads the few fields it needs
//! (`plan::server`), and unknown ones pass by.

use serde_json::Value;

use super::api::compute as api;
use super::session::{Cloud, Result};

/// A server's status (`ACTIVE`, `SHUTOFF`, `ERROR`, ...; empty if none).
pub fn status(server: &Value) -> &str {
    server
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// What Nova says went wrong with a server in `ERROR`.
pub fn fault(server: &Value) -> String {
    server
        .get("fault")
        .map(Value::to_string)
        .unwrap_or_default()
}

/// A cloud's Nova (and Neutron, for network names).
pub struct Nova<'a>(pub &'a Cloud);

impl Nova<'_> {
    /// A server (the `server` member).
    pub fn server(&self, id: &str) -> Result<Value> {
        self.0
            .request(&api::server(id))?
            .field("server", "a server")
    }

    /// A server's volume attachments (the whole answer).
    pub fn attachments(&self, id: &str) -> Result<Value> {
        self.0
            .request(&api::volume_attachments(id))?
            .json("a server's volume attachments")
    }

    /// Every server of the project.
    pub fn servers(&self) -> Result<Vec<Value>> {
        self.0
            .request(&api::servers_detail())?
            .field("servers", "a list of servers")
    }

    /// The servers whose metadata `key` is `value`.
    pub fn servers_with(&self, key: &str, value: &str) -> Result<Vec<Value>> {
        Ok(self
            .servers()?
            .into_iter()
            .filter(|s| {
                s.pointer(&format!("/metadata/{key}"))
                    .and_then(Value::as_str)
                    == Some(value)
            })
            .collect())
    }

    pub fn stop(&self, id: &str) -> Result<()> {
        self.0.request(&api::stop(id)).map(|_| ())
    }

    pub fn set_metadata(
        &self,
        id: &str,
        items: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        self.0.request(&api::set_metadata(id, items)).map(|_| ())
    }

    /// The id of the flavor named `name`, if the project may use one.
    pub fn flavor_id(&self, name: &str) -> Result<Option<String>> {
        let flavors: Vec<Value> = self
            .0
            .request(&api::flavors_detail())?
            .field("flavors", "a list of flavors")?;
        Ok(flavors
            .iter()
            .find(|f| f.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|f| f.get("id").and_then(Value::as_str))
            .map(str::to_string))
    }

    /// The ids of the networks named `name` (Neutron).
    pub fn network_ids(&self, name: &str) -> Result<Vec<String>> {
        let nets: Vec<Value> = self
            .0
            .request(&api::networks_named(name))?
            .field("networks", "a list of networks")?;
        Ok(nets
            .iter()
            .filter(|n| n.get("name").and_then(Value::as_str) == Some(name))
            .filter_map(|n| n.get("id").and_then(Value::as_str).map(str::to_string))
            .collect())
    }

    /// The servers plan `plan_id` made for the source server `source`
    /// (their `ferry_source_server` and `ferry_plan` metadata).
    pub fn made_for(&self, source: &str, plan_id: &str) -> Result<Vec<Value>> {
        Ok(self
            .servers_with(crate::plan::server::SOURCE_SERVER, source)?
            .into_iter()
            .filter(|s| {
                s.pointer(&format!("/metadata/{}", crate::plan::ADOPTED_BY))
                    .and_then(Value::as_str)
                    == Some(plan_id)
            })
            .collect())
    }

    /// Creates a server (`req`: an [`api::create_server`]); its id.
    pub fn create(&self, req: &crate::openstack::Request) -> Result<String> {
        let answer = self.0.request(req)?;
        let v: Value = answer.field("server", "a new server")?;
        match v.get("id").and_then(Value::as_str) {
            Some(id) => Ok(id.to_string()),
            None => Err(answer.not("a new server with an id", None)),
        }
    }

    /// The last `lines` lines of a server's console.
    pub fn console(&self, id: &str, lines: u32) -> Result<String> {
        self.0
            .request(&api::console_output(id, lines))?
            .field("output", "a console output")
    }
}
