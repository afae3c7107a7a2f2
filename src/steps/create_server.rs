//! The `create-server` step kind. Once every volume of a source server is
//! adopted, creates the server at the destination booted from them
//! (`block_device_mapping_v2`, the boot volume at boot index 0, none
//! deleted with the server), with its flavor, networks, key pair, groups,
//! metadata, tags, zone and description (names mapped when planned), marked
//! with the source server's id and this plan; waits for `ACTIVE`, and stops
//! it again when servers are not to be started. A re-run finds the server
//! by its mark and never creates a second.

use super::check_destination_server::destination_ids;
use super::prelude::*;
use crate::openstack::api::compute as nova_api;
use crate::openstack::compute::status;
use crate::openstack::Nova;
use crate::plan::server::{ServerDef, SOURCE_SERVER};
use anyhow::Context;
use serde_json::Value;

/// Creates the destination server from the adopted volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateServer {
    pub server: ServerDef,
    /// Started (left `ACTIVE`); false: stopped once created.
    pub start: bool,
}

impl CreateServer {
    fn wanted(&self) -> &'static str {
        if self.start {
            "ACTIVE"
        } else {
            "SHUTOFF"
        }
    }

    /// The request, its volume, flavor and network ids given.
    fn request(
        &self,
        plan_id: &str,
        volumes: &[String],
        flavor: &str,
        networks: &[(String, Option<String>)],
    ) -> crate::openstack::Request {
        let s = &self.server;
        let metadata = s.new_metadata(plan_id);
        nova_api::create_server(&nova_api::NewServer {
            name: &s.name,
            flavor_id: flavor,
            volumes,
            networks,
            key_name: s.key_name.as_deref(),
            security_groups: &s.security_groups,
            metadata: &metadata,
            tags: &s.tags,
            availability_zone: s.availability_zone.as_deref(),
            description: s.description.as_deref(),
        })
    }

    /// This plan's server for the source server, if it made one.
    fn made(&self, nova: &Nova<'_>, plan_id: &str) -> anyhow::Result<Option<Value>> {
        let mut found = nova.made_for(&self.server.id, plan_id)?;
        if found.len() > 1 {
            bail!(
                "{} destination servers carry {SOURCE_SERVER}={} and this plan: keep one",
                found.len(),
                self.server.id
            );
        }
        Ok(found.pop())
    }
}

impl Kind for CreateServer {
    fn role(&self) -> Role {
        Role::DestinationCloud
    }

    fn subject(&self) -> ImageAt {
        in_cloud(Site::Destination, &self.server.id)
    }

    fn describe(&self) -> String {
        let s = &self.server;
        format!(
            "create server {:?} (flavor {:?}, {}) booted from the volumes adopted from {}{}",
            s.name,
            s.flavor,
            if s.networks.is_empty() {
                "no network".to_string()
            } else {
                format!(
                    "networks {}",
                    s.networks
                        .iter()
                        .map(|n| n.network.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            s.volumes.join(", "),
            if self.start { "" } else { ", left stopped" }
        )
    }

    fn script(&self, _st: &Step, plan: &Plan, _img: &ImagePlan) -> String {
        let s = &self.server;
        let mut b = String::new();
        if s.volumes.len() > api::SERVER_VOLS.len() || s.networks.len() > api::SERVER_NETS.len() {
            let _ = writeln!(
                b,
                "die {}",
                q(&format!(
                    "server {} has more volumes or networks than a script makes a server with ({}): run ferry run --role destination-cloud",
                    s.id,
                    api::SERVER_VOLS.len()
                ))
            );
            return b;
        }
        let _ = writeln!(
            b,
            "if server_made {src}; then\n  say \"server $SERVER made earlier by this plan\"\nelse",
            src = q(&s.id)
        );
        let vols = &api::SERVER_VOLS[..s.volumes.len()];
        for (v, var) in s.volumes.iter().zip(vols) {
            let _ = writeln!(
                b,
                "  adopted {v} || die {none}\n  {var}=$VOL",
                v = q(v),
                none = q(&format!("no volume adopted from {v} by this plan")),
                var = var.0
            );
        }
        let _ = writeln!(b, "  flavor_id {}", q(&s.flavor));
        let nets = &api::SERVER_NETS[..s.networks.len()];
        for (n, var) in s.networks.iter().zip(nets) {
            let _ = writeln!(b, "  network_id {}\n  {}=$NET", q(&n.network), var.0);
        }
        let stand = |vs: &[api::Var]| vs.iter().map(|v| v.stand_in()).collect::<Vec<_>>();
        let net_ids: Vec<(String, Option<String>)> = stand(nets)
            .into_iter()
            .zip(&s.networks)
            .map(|(id, n)| (id, n.fixed_ip.clone()))
            .collect();
        let req = self.request(&plan.id, &stand(vols), &api::FLAVOR.stand_in(), &net_ids);
        let mut vars: Vec<api::Var> = vols.to_vec();
        vars.extend_from_slice(nets);
        vars.push(api::FLAVOR);
        let _ = writeln!(
            b,
            "{}\n  case $CODE in 2*) ;; *) die \"creating server \"{name}\" gave HTTP $CODE: $OUT\" ;; esac\n  SERVER=$(printf '%s' \"$OUT\" | jq -r .server.id)\nfi",
            api::call(&req, &vars).lines("  ", "api_send"),
            name = q(&s.name)
        );
        if self.start {
            let _ = writeln!(
                b,
                "wait_for \"server $SERVER to be ACTIVE\" server_status_is \"$SERVER\" ACTIVE"
            );
        } else {
            let stop = api::call(&nova_api::stop(&api::VOL.stand_in()), &[api::VOL]);
            let _ = writeln!(
                b,
                "if ! server_status_is \"$SERVER\" SHUTOFF; then\n  wait_for \"server $SERVER to be ACTIVE\" server_status_is \"$SERVER\" ACTIVE\n  VOL=$SERVER\n{}\n  case $CODE in 2*|409) ;; *) die \"stopping server $SERVER gave HTTP $CODE: $OUT\" ;; esac\n  wait_for \"server $SERVER to be SHUTOFF\" server_status_is \"$SERVER\" SHUTOFF\nfi",
                stop.lines("  ", "api_send")
            );
        }
        let _ = writeln!(
            b,
            "say \"server $SERVER\" {}",
            q(&format!("{:?} {}", s.name, self.wanted()))
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let s = &self.server;
        let nova = Nova(cx.dst_cloud()?);
        let plan_id = cx.plan_id();
        let asked = Instant::now();
        let id = match self.made(&nova, &plan_id)? {
            Some(found) => found
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            None => {
                let mut volumes = Vec::new();
                for v in &s.volumes {
                    let vol = cx.adoptions(v)?.ours.ok_or_else(|| {
                        anyhow!(
                            "no volume adopted from {v} by this plan: server {} cannot be made",
                            s.id
                        )
                    })?;
                    volumes.push(vol.id);
                }
                let names: Vec<String> = s.networks.iter().map(|n| n.network.clone()).collect();
                let (flavor, net_ids) = destination_ids(&nova, &s.id, &s.flavor, &names)?;
                let networks: Vec<(String, Option<String>)> = net_ids
                    .into_iter()
                    .zip(&s.networks)
                    .map(|(id, n)| (id, n.fixed_ip.clone()))
                    .collect();
                nova.create(&self.request(&plan_id, &volumes, &flavor, &networks))
                    .with_context(|| format!("creating server {:?}", s.name))?
            }
        };
        let now = status(&nova.server(&id)?).to_string();
        if self.start || now != "SHUTOFF" {
            cloud::wait_server(cx, i, step, &nova, &id, "ACTIVE")?;
        }
        if !self.start && now != "SHUTOFF" {
            cloud::stop_server(cx, i, step, &nova, &id)?;
        }
        Ok(format!(
            "server {id} {:?} {} in {:.1} s",
            s.name,
            self.wanted(),
            asked.elapsed().as_secs_f64()
        ))
    }
}
