//! Step kinds: each kind of step in one module, holding its data, how
//! ferry executes it, how a role's script does it, how it is described and
//! which images it names. [`Action`] lists them; the plan builders, the
//! executor (`exec`), the renderer (`render`), `describe` and the bundle
//! check (`plan::validate`) all read a step through [`Kind`], which
//! [`Action::kind`] hands them: the one place the kinds are matched.
//!
//! A new kind is a module here with a struct implementing [`Kind`], and one
//! line in `kinds!` below.

mod adopt_volume;
mod check_destination_cloud;
mod check_destination_server;
mod check_source_cloud;
mod check_unchanged;
mod confirm_verified;
mod copy;
mod copy_snapshots;
mod create_cutover;
mod create_server;
mod create_volume;
mod disable_features;
mod disable_mirroring;
mod enable_features;
mod enable_mirroring;
mod finish_volume;
mod flat_copy;
mod freeze_snapshot;
mod hash_source;
mod manage_snapshots;
mod preflight;
mod publish;
mod record_original;
mod register_image;
mod remove_image;
mod remove_metadata;
mod remove_snapshot;
mod restore_features;
mod snapshot_and_protect;
mod stop_server;
mod stream_volume;
mod verify;
mod wait_for_sync;
mod warm_copy;
mod warm_rounds;

pub use adopt_volume::AdoptVolume;
pub use check_destination_cloud::CheckDestinationCloud;
pub use check_destination_server::CheckDestinationServer;
pub use check_source_cloud::CheckSourceCloud;
pub use check_unchanged::CheckUnchanged;
pub use confirm_verified::ConfirmVerified;
pub use copy::CopyImage;
pub use copy_snapshots::CopySnapshots;
pub use create_cutover::CreateCutover;
pub use create_server::CreateServer;
pub use create_volume::CreateVolume;
pub use disable_features::DisableFeatures;
pub use disable_mirroring::DisableMirroring;
pub use enable_features::EnableFeatures;
pub use enable_mirroring::EnableMirroring;
pub use finish_volume::FinishVolume;
pub use flat_copy::FlatCopy;
pub use freeze_snapshot::FreezeSnapshot;
pub use hash_source::HashSource;
pub use manage_snapshots::ManageSnapshots;
pub use preflight::Preflight;
pub use publish::Publish;
pub use record_original::RecordOriginal;
pub use register_image::RegisterImage;
pub use remove_image::RemoveImage;
pub use remove_metadata::RemoveMetadata;
pub use remove_snapshot::RemoveSnapshot;
pub use restore_features::RestoreFeatures;
pub use snapshot_and_protect::SnapshotAndProtect;
pub use stop_server::StopServer;
pub use stream_volume::StreamVolume;
pub use verify::Verify;
pub use wait_for_sync::WaitForSync;
pub use warm_copy::WarmCopy;
pub use warm_rounds::WarmRounds;

use crate::exec::Ctx;
use crate::plan::{ImageAt, ImagePlan, Plan, Role, Site, Step};

/// What every step kind says of itself: one implementation per kind, read
/// by the executor, the renderer, the plan's text and the bundle check.
pub(crate) trait Kind {
    /// The one role that performs it.
    fn role(&self) -> Role;

    /// The image the step acts on (for copies and comparisons: the source;
    /// for a cloud's volume, its id in the pool `(cloud)`): what events and
    /// errors name. The first image it names, unless it says otherwise.
    fn subject(&self) -> ImageAt {
        self.images()
            .first()
            .map(|(_, at, _)| (*at).clone())
            .expect("a step kind that names no image says what it acts on")
    }

    /// Whether it reads or writes an image's data (and so takes a data slot
    /// while it acts; its waits come before, without one).
    fn moves_data(&self) -> bool {
        false
    }

    /// Whether it prepares the source for mirroring: when Ceph refuses it,
    /// the plan cannot go on and the source is put back as the plan found
    /// it. From the cut-over on, what is done is kept.
    fn prepares_source(&self) -> bool {
        false
    }

    /// Whether it is a read-only check of the clouds that opens an image's
    /// plan: `ferry run` and the scripts run these for every image before
    /// they begin any image.
    fn checks_inputs(&self) -> bool {
        false
    }

    /// Whether it is a read-only check whose answer can change after it
    /// passed (the source unchanged since the cut-over): never taken as
    /// done from a record, so every run that goes on past it looks again.
    fn rechecked(&self) -> bool {
        false
    }

    /// The images it names, each with its field and where it must be (the
    /// bundle check holds a step to its own image's names and site).
    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        Vec::new()
    }

    /// One line for people (`ferry plan`, `ferry run --role`'s preview).
    fn describe(&self) -> String;

    /// The commands of the role's script that perform it; the step's guards
    /// and waits around them are the renderer's.
    fn script(&self, st: &Step, plan: &Plan, img: &ImagePlan) -> String;

    /// Performs it (image `i` of the plan, step `step`), after the executor
    /// has checked what it requires; returns what it did, for the events.
    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String>;
}

/// A volume of a cloud, named for events and errors as an image in the
/// pool `(cloud)`.
pub(crate) fn in_cloud(site: Site, id: &str) -> ImageAt {
    ImageAt {
        site,
        pool: "(cloud)".into(),
        image: id.to_string(),
        snap: None,
    }
}

/// Features in the order a step changes them, for people.
pub(crate) fn in_order(features: &[crate::ceph::Features]) -> String {
    features
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", then ")
}

/// Where an image a step names must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Source,
    Destination,
    /// What a copy reads: the source (direct transfer) or its mirrored copy.
    Read,
}

impl Place {
    /// The site of a place, given whether the image moves directly.
    pub(crate) fn site(self, direct: bool) -> Site {
        match self {
            Place::Source => Site::Source,
            Place::Destination => Site::Destination,
            Place::Read if direct => Site::Source,
            Place::Read => Site::Destination,
        }
    }
}

/// The registry: declares [`Action`] (one variant per kind, serialised with
/// its kebab-case name under `action:`) and the one dispatch to [`Kind`].
macro_rules! kinds {
    ($($variant:ident($kind:ty),)*) => {
        /// What a step does: one of the step kinds.
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "action", rename_all = "kebab-case")]
        pub enum Action {
            $(
                #[doc = concat!("See [`", stringify!($kind), "`].")]
                $variant($kind),
            )*
        }

        impl Action {
            /// This step's kind, to read it through.
            pub(crate) fn kind(&self) -> &dyn Kind {
                match self {
                    $(Action::$variant(k) => k,)*
                }
            }
        }
    };
}

kinds! {
    Preflight(preflight::Preflight),
    RecordOriginal(record_original::RecordOriginal),
    RemoveMetadata(remove_metadata::RemoveMetadata),
    DisableFeatures(disable_features::DisableFeatures),
    EnableFeatures(enable_features::EnableFeatures),
    EnableMirroring(enable_mirroring::EnableMirroring),
    CopySnapshots(copy_snapshots::CopySnapshots),
    CreateCutover(create_cutover::CreateCutover),
    HashSource(hash_source::HashSource),
    RemoveSnapshot(remove_snapshot::RemoveSnapshot),
    FreezeSnapshot(freeze_snapshot::FreezeSnapshot),
    FlatCopy(flat_copy::FlatCopy),
    RemoveImage(remove_image::RemoveImage),
    CheckUnchanged(check_unchanged::CheckUnchanged),
    WaitForSync(wait_for_sync::WaitForSync),
    Copy(copy::CopyImage),
    SnapshotAndProtect(snapshot_and_protect::SnapshotAndProtect),
    Verify(verify::Verify),
    WarmRounds(warm_rounds::WarmRounds),
    WarmCopy(warm_copy::WarmCopy),
    Publish(publish::Publish),
    ConfirmVerified(confirm_verified::ConfirmVerified),
    CheckSourceCloud(check_source_cloud::CheckSourceCloud),
    DisableMirroring(disable_mirroring::DisableMirroring),
    RestoreFeatures(restore_features::RestoreFeatures),
    CheckDestinationCloud(check_destination_cloud::CheckDestinationCloud),
    AdoptVolume(adopt_volume::AdoptVolume),
    ManageSnapshots(manage_snapshots::ManageSnapshots),
    RegisterImage(register_image::RegisterImage),
    CreateVolume(create_volume::CreateVolume),
    StreamVolume(stream_volume::StreamVolume),
    FinishVolume(finish_volume::FinishVolume),
    StopServer(stop_server::StopServer),
    CreateServer(create_server::CreateServer),
    CheckDestinationServer(check_destination_server::CheckDestinationServer),
}

/// What the kinds' modules share.
mod prelude {
    pub(crate) use std::fmt::Write;
    pub(crate) use std::time::Instant;

    pub(crate) use anyhow::{anyhow, bail};
    pub(crate) use serde::{Deserialize, Serialize};

    pub(crate) use super::{in_cloud, in_order, Kind, Place};
    pub(crate) use crate::ceph::{ErrorKind, Features, MirrorMode};
    pub(crate) use crate::exec::{
        cloud, engine_options, feature_list, plain, short, space, stream, Ctx, Phase,
    };
    pub(crate) use crate::openstack::api::{cinder, glance};
    pub(crate) use crate::plan::{
        type_words, Adoption, Check, CloudObject, ImageAt, ImagePlan, ImageRegistration,
        OriginalRecord, Plan, Role, Site, SourceId, Step, StepName, VerifiedRecord, VolumeAdoption,
    };
    pub(crate) use crate::render::api;
    pub(crate) use crate::render::sh::*;
}
