//! The `stop-server` step kind. Stops the source server whose volumes are
//! ready for the cut-over (`os-stop`: Nova asks the guest to shut down,
//! then powers it off) and waits for `SHUTOFF`. The server is marked first
//! with where it moves (`plan::server::MOVED_TO`); it is never deleted.
//! Every volume of the server has this step; the first to get there stops
//! it, the others find it stopped.

use super::prelude::*;
use crate::openstack::api::compute as nova_api;
use crate::openstack::compute::status;
use crate::openstack::Nova;
use crate::plan::server::ServerDef;

/// Stops the source server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopServer {
    /// The source server's id.
    pub server: String,
    pub name: String,
}

impl StopServer {
    pub fn of(def: &ServerDef) -> StopServer {
        StopServer {
            server: def.id.clone(),
            name: def.name.clone(),
        }
    }

    fn mark(&self, plan_id: &str) -> std::collections::BTreeMap<String, String> {
        [(
            crate::plan::server::MOVED_TO.to_string(),
            format!(
                "plan {plan_id}: server {:?} of the destination cloud",
                self.name
            ),
        )]
        .into_iter()
        .collect()
    }
}

impl Kind for StopServer {
    fn role(&self) -> Role {
        Role::SourceCloud
    }

    fn subject(&self) -> ImageAt {
        in_cloud(Site::Source, &self.server)
    }

    fn describe(&self) -> String {
        format!(
            "stop server {} ({:?}) for the cut-over and wait for SHUTOFF",
            self.server, self.name
        )
    }

    fn script(&self, _st: &Step, plan: &Plan, _img: &ImagePlan) -> String {
        let mut b = String::new();
        let mark = api::call(
            &nova_api::set_metadata(&self.server, &self.mark(&plan.id)),
            &[],
        );
        let stop = api::call(&nova_api::stop(&self.server), &[]);
        let _ = writeln!(
            b,
            "if ! server_status_is {id} SHUTOFF; then\n{mark}\n  case $CODE in 2*) ;; *) die \"marking server \"{id}\" gave HTTP $CODE: $OUT\" ;; esac\n{stop}\n  # 409: it is stopping already.\n  case $CODE in 2*|409) ;; *) die \"stopping server \"{id}\" gave HTTP $CODE: $OUT\" ;; esac\n  wait_for {what} server_status_is {id} SHUTOFF\nfi\nsay \"server \"{id}\" is SHUTOFF\"",
            id = q(&self.server),
            mark = mark.lines("  ", "api_send"),
            stop = stop.lines("  ", "api_send"),
            what = q(&format!("server {} to be SHUTOFF", self.server)),
        );
        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let nova = Nova(cx.src_cloud()?);
        if status(&nova.server(&self.server)?) == "SHUTOFF" {
            return Ok(format!("server {} was SHUTOFF", self.server));
        }
        nova.set_metadata(&self.server, &self.mark(&cx.plan_id()))?;
        let asked = Instant::now();
        cloud::stop_server(cx, i, step, &nova, &self.server)?;
        Ok(format!(
            "server {} ({:?}) stopped in {:.1} s",
            self.server,
            self.name,
            asked.elapsed().as_secs_f64()
        ))
    }
}
