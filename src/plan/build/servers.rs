//! A server's steps in the plans of its volumes. `stop-server` comes before
//! the first step that needs the volume idle; with warm rounds it runs
//! beside them and stops the server once a round of every volume of the
//! server has arrived (the rounds then see the volume idle and the cut-over
//! carries only what changed since). `create-server` goes into the plan of
//! the server's volume listed last, once all its volumes are adopted (a
//! role's script works through the images in order, and waits there for
//! none it has not reached).

use crate::plan::server::ServerDef;
use crate::plan::{Action, Check, ImageFacts, StepName};
use crate::spec::ImageRef;
use crate::steps;

use super::draft::draft;
use super::names::Names;
use super::{BuildOptions, ImageBuild};

/// The servers that move, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    pub servers: Vec<ServerDef>,
    /// ferry stops each server for its cut-over.
    pub stop: bool,
    /// The destination server is left running.
    pub start: bool,
    /// ferry makes the destination servers (not when OS-Migrate's
    /// `import_workloads` makes them from a workloads file).
    pub create: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            servers: Vec::new(),
            stop: false,
            start: true,
            create: true,
        }
    }
}

/// The volume id of an image, when the source cloud gave one.
fn volume_of(facts: &ImageFacts) -> Option<&str> {
    facts.cloud().map(|c| c.id())
}

/// The server a volume belongs to.
pub(super) fn server_of<'a>(opts: &'a BuildOptions, volume: &str) -> Option<&'a ServerDef> {
    opts.servers
        .servers
        .iter()
        .find(|s| s.volumes.iter().any(|v| v == volume))
}

/// The round that shows an image of the plan ready for its server's stop:
/// its mirrored image, when it has warm rounds.
fn round_of(opts: &BuildOptions, r: &ImageRef, facts: &ImageFacts) -> Option<Check> {
    let ImageFacts::Ceph(c) = facts else {
        return None;
    };
    if !super::mirror::takes_rounds(opts, c) {
        return None;
    }
    let at = Names::of(opts, r, c, false);
    Some(Check::RoundArrived {
        source: at.source,
        image: at.mirrored,
    })
}

impl ImageBuild<'_> {
    /// The server this image's volume belongs to.
    fn server(&self) -> Option<&ServerDef> {
        let id = self.facts.cloud.as_ref()?.id();
        server_of(self.opts, id)
    }

    /// Whether the image is the root disk of a server booted from an
    /// image (in Nova's pool: no Cinder volume to check).
    pub(super) fn is_root_disk(&self) -> bool {
        let id = self.facts.cloud.as_ref().map(|c| c.id());
        id.is_some() && self.server().and_then(|d| d.root_disk.as_deref()) == id
    }

    /// Whether ferry stops this image's server: the steps that need it
    /// idle then let it be in use until then.
    pub(super) fn stops_server(&self) -> bool {
        self.opts.servers.stop && self.server().is_some()
    }

    /// A server a plan stopped for a move before: said on its images.
    pub(super) fn warn_moved(&mut self) {
        let said = self.server().and_then(|d| {
            let m = d.moved_to.as_ref()?;
            Some(format!(
                "server {} was stopped for a move before ({m}): a new plan makes another server at the destination (the same plan, resumed, finds the one it made)",
                d.id
            ))
        });
        self.warnings.extend(said);
    }

    pub(super) fn stop_server(&mut self, images: &[(ImageRef, ImageFacts)]) {
        if !self.opts.servers.stop {
            return;
        }
        let Some(def) = self.server().cloned() else {
            return;
        };
        let Some(k) = self.steps.iter().position(|d| d.waits_idle()) else {
            return;
        };
        let rounds: Vec<Check> = images
            .iter()
            .filter(|(_, f)| volume_of(f).is_some_and(|v| def.volumes.iter().any(|x| x == v)))
            .filter_map(|(r, f)| round_of(self.opts, r, f))
            .collect();
        let mut stop = draft(
            StepName::StopServer,
            Action::StopServer(steps::StopServer::of(
                &def,
                self.facts.cloud.as_ref().map_or("", |c| c.id()),
            )),
        )
        .requires(rounds)
        .done_when(vec![Check::ServerStopped {
            server: def.id.clone(),
        }]);
        let warm_at = self
            .steps
            .iter()
            .position(|d| d.name() == StepName::WarmRounds);
        match warm_at {
            // Beside the rounds: after what they follow, and the cut-over
            // after it too.
            Some(w) if w > 0 && w < k => {
                let before = self.steps[w - 1].name();
                stop = stop.after(vec![before]);
                self.steps[w].follow(vec![before]);
                self.steps[k].also_after(StepName::StopServer);
                self.steps.insert(w, stop);
            }
            _ => self.steps.insert(k, stop),
        }
    }

    /// The destination server, in the plan of the server's volume listed
    /// last, once every volume of it is adopted.
    pub(super) fn create_server(&mut self, images: &[(ImageRef, ImageFacts)]) {
        let Some(def) = self.server().cloned() else {
            return;
        };
        if self.adoption.is_none() || !self.opts.servers.create {
            return;
        }
        let last = images
            .iter()
            .rev()
            .filter_map(|(_, f)| volume_of(f))
            .find(|v| def.volumes.iter().any(|x| x == v));
        if last != self.facts.cloud.as_ref().map(|c| c.id()) {
            return;
        }
        let others: Vec<Check> = def
            .volumes
            .iter()
            .filter(|v| Some(v.as_str()) != last)
            .map(|v| Check::VolumeAdopted {
                source_volume: v.clone(),
            })
            .collect();
        // Before anything changes: what the server will be made with.
        let check = draft(
            StepName::CheckDestinationServer,
            Action::CheckDestinationServer(steps::CheckDestinationServer {
                server: def.id.clone(),
                flavor: def.flavor.clone(),
                networks: def.networks.iter().map(|n| n.network.clone()).collect(),
            }),
        )
        .past_when(vec![Check::ServerCreated {
            source_server: def.id.clone(),
            start: self.opts.servers.start,
        }]);
        let at = self
            .steps
            .iter()
            .position(|d| !d.checks_inputs())
            .unwrap_or(self.steps.len());
        self.steps.insert(at, check);
        let start = self.opts.servers.start;
        let step = draft(
            StepName::CreateServer,
            Action::CreateServer(steps::CreateServer {
                server: def.clone(),
                start,
            }),
        )
        .requires(others)
        .done_when(vec![Check::ServerCreated {
            source_server: def.id.clone(),
            start,
        }]);
        self.steps.push(step);
    }
}
