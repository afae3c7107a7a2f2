//! The `stop-server` step kind. Stops the source server whose volumes are
//! ready for the cut-over (`os-stop`: Nova asks the guest to shut down,
//! then powers it off) and waits for `SHUTOFF`. The server is marked first
//! with where it moves (`plan::server::MOVED_TO`); it is never deleted.
//! Every volume of the server has this step; the first to get there stops
//! it, the others find it stopped. A bundle is another operator's word:
//! the server is stopped only when it holds the step's own volume.

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
    /// The source volume of this step's image: the server must hold it
    /// (attached, or as its root disk `<server>_disk`).
    pub volume: String,
}

impl StopServer {
    pub fn of(def: &ServerDef, volume: &str) -> StopServer {
        StopServer {
            server: def.id.clone(),
            name: def.name.clone(),
            volume: volume.to_string(),
        }
    }

    /// Whether the step's volume is the server's root disk (nothing to ask
    /// Cinder or Nova about: its name says whose it is).
    fn root_disk(&self) -> bool {
        self.volume == crate::plan::server::root_disk_name(&self.server)
    }

    /// Refuses a server that does not hold the step's volume.
    fn holds_volume(&self, nova: &Nova<'_>) -> anyhow::Result<()> {
        if self.root_disk() {
            return Ok(());
        }
        let attached = nova.attachments(&self.server)?;
        let holds = attached
            .get("volumeAttachments")
            .and_then(|a| a.as_array())
            .is_some_and(|a| {
                a.iter()
                    .any(|x| x.get("volumeId").and_then(|v| v.as_str()) == Some(&self.volume))
            });
        if !holds {
            bail!(
                "server {} does not hold volume {}: this plan does not stop it",
                self.server,
                self.volume
            );
        }
        Ok(())
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
        if !self.root_disk() {
            let _ = writeln!(
                b,
                "server_holds {id} {vol} || die {refused}",
                id = q(&self.server),
                vol = q(&self.volume),
                refused = q(&format!(
                    "server {} does not hold volume {}: this plan does not stop it",
                    self.server, self.volume
                ))
            );
        }
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
        self.holds_volume(&nova)?;
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
