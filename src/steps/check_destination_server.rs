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
        destination_ids(
            &Nova(cx.dst_cloud()?),
            &self.server,
            &self.flavor,
            &self.networks,
        )
        .map_err(|e| anyhow!("{e:#}; nothing was changed"))?;
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

/// The ids of a server's flavor and networks at the destination, found by
/// their (mapped) names: the flavor must be there, each network once.
pub(super) fn destination_ids(
    nova: &Nova<'_>,
    server: &str,
    flavor: &str,
    networks: &[String],
) -> anyhow::Result<(String, Vec<String>)> {
    let flavor_id = nova.flavor_id(flavor)?.ok_or_else(|| {
        anyhow!(
            "no flavor named {flavor:?} in the destination cloud for server {server}: map it (options.flavors) or create it"
        )
    })?;
    let mut ids = Vec::with_capacity(networks.len());
    for n in networks {
        match nova.network_ids(n)?.as_slice() {
            [one] => ids.push(one.clone()),
            found => bail!(
                "{} networks named {n:?} in the destination cloud for server {server}: map it (options.networks) to one",
                found.len()
            ),
        }
    }
    Ok((flavor_id, ids))
}
