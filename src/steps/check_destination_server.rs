//! The `check-destination-server` step kind. Before anything changes: the
//! destination cloud has the flavor and the networks the server will be
//! made with (their mapped names), so that a server is never stopped for a
//! move that cannot make it again. Reads only.

use super::prelude::*;
use crate::openstack::Nova;

/// Reads the destination's flavor and networks of a server to be made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDestinationServer {
    /// The source server's id.
    pub server: String,
    pub flavor: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
}

impl Kind for CheckDestinationServer {
    fn role(&self) -> Role {
        Role::DestinationCloud
    }

    fn checks_inputs(&self) -> bool {
        true
    }

    fn subject(&self) -> ImageAt {
        in_cloud(Site::Destination, &self.server)
    }

    fn describe(&self) -> String {
        format!(
            "check the destination cloud for server {}: flavor {:?}{}",
            self.server,
            self.flavor,
            if self.networks.is_empty() {
                String::new()
            } else {
                format!(", networks {}", self.networks.join(", "))
            }
        )
    }

    fn script(&self, _st: &Step, _plan: &Plan, _img: &ImagePlan) -> String {
        let mut b = format!("flavor_id {}\n", q(&self.flavor));
        for n in &self.networks {
            let _ = writeln!(b, "network_id {}", q(n));
        }
        let _ = writeln!(
            b,
            "say {}",
            q(&format!(
                "flavor {:?} and the server's networks are there",
                self.flavor
            ))
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, _i: usize, _step: &Step) -> anyhow::Result<String> {
        let nova = Nova(cx.dst_cloud()?);
        if nova.flavor_id(&self.flavor)?.is_none() {
            bail!(
                "no flavor named {:?} in the destination cloud for server {}: map it (options.flavors) or create it; nothing was changed",
                self.flavor,
                self.server
            );
        }
        for n in &self.networks {
            let ids = nova.network_ids(n)?;
            if ids.len() != 1 {
                bail!(
                    "{} networks named {n:?} in the destination cloud for server {}: map it (options.networks) to one; nothing was changed",
                    ids.len(),
                    self.server
                );
            }
        }
        Ok(format!(
            "flavor {:?}{} there",
            self.flavor,
            if self.networks.is_empty() {
                ""
            } else {
                " and the networks"
            }
        ))
    }
}
