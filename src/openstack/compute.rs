//! The Nova (compute) and Neutron (network) calls ferry makes for servers.
//! Answers stay JSON values: the plan reads the few fields it needs
//! (`plan::server`), and unknown ones pass by.

use serde_json::Value;

use super::api::compute as api;
use super::session::{Cloud, Result};

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

    pub fn start(&self, id: &str) -> Result<()> {
        self.0.request(&api::start(id)).map(|_| ())
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

    /// Creates a server; its id.
    pub fn create(&self, s: &api::NewServer<'_>) -> Result<String> {
        let answer = self.0.request(&api::create_server(s))?;
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
