//! The names of a plan's steps. A step's name says which step of the
//! migration it is (`cut-over-snapshot`, `remove-flat-copy`); its action
//! says what it does, and several names share an action kind (a direct
//! transfer's `cut-over-snapshot` and a clone's `freeze-snapshot` both
//! freeze a snapshot). The executor's board, the resume rules and the
//! plan builders tell steps apart by these names, never by strings.

use serde::{Deserialize, Serialize};

/// Declares [`StepName`] with each name's text, once: serde, `Display` and
/// [`StepName::as_str`] all read it.
macro_rules! step_names {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, )*) => {
        /// Which step of an image's migration a step is; serialised as its
        /// kebab-case text (`name: enable-mirroring`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum StepName {
            $( $(#[$doc])* #[serde(rename = $text)] $variant, )*
        }

        impl StepName {
            /// Every name, in the order they are declared.
            #[cfg(test)]
            pub const ALL: &'static [StepName] = &[$(StepName::$variant,)*];

            /// The name as the plan, the scripts and the events spell it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( StepName::$variant => $text, )*
                }
            }
        }
    };
}

step_names! {
    /// Reads the destination cloud's inputs before anything changes.
    CheckDestinationCloud = "check-destination-cloud",
    /// Reads the source cloud's volume or image (and that it is idle).
    CheckSourceCloud = "check-source-cloud",
    /// Reads the destination's flavor and networks of a server to be made.
    CheckDestinationServer = "check-destination-server",
    /// Read-only checks of the source image.
    Preflight = "preflight",
    /// Notes the image's original features and mirroring on the image.
    RecordOriginal = "record-original",
    /// A clone's frozen snapshot, its flat copy is made from.
    FreezeSnapshot = "freeze-snapshot",
    /// A clone copied out flat on the source: the carrier mirrored.
    CopyOutFlat = "copy-out-flat",
    /// Features mirroring needs, turned on.
    EnableFeatures = "enable-features",
    /// Features disabled to make room for journaling (made by plans of
    /// earlier versions; still read in their bundles).
    DisableFeatures = "disable-features",
    /// Image mirroring turned on.
    EnableMirroring = "enable-mirroring",
    /// The volume's own snapshots copied into the destination copy.
    CopySnapshots = "copy-snapshots",
    /// Warm rounds while the image is written, until it is idle.
    WarmRounds = "warm-rounds",
    /// The destination's side of the warm rounds (a destination run alone).
    WarmCopy = "warm-copy",
    /// The source server stopped for the cut-over.
    StopServer = "stop-server",
    /// The cut-over: the snapshot the copy is made from.
    CutOverSnapshot = "cut-over-snapshot",
    /// The source's digest at the cut-over.
    HashSource = "hash-source",
    /// The wait for the cut-over at the destination.
    WaitForSync = "wait-for-sync",
    /// The destination copy, written under its partial name.
    Copy = "copy",
    /// The copy compared with the source's digest.
    Verify = "verify",
    /// The verified copy given its final name.
    Publish = "publish",
    /// A Glance image's copy snapshotted and protected.
    SnapshotAndProtect = "snapshot-and-protect",
    /// The copy managed into the destination cloud as a volume.
    AdoptVolume = "adopt-volume",
    /// The carried snapshots managed as Cinder snapshots of the adopted
    /// volume.
    ManageSnapshots = "manage-snapshots",
    /// The copy registered in the destination cloud as an image.
    RegisterImage = "register-image",
    /// The server made at the destination from its adopted volumes.
    CreateServer = "create-server",
    /// The verification handed to the source.
    ConfirmVerified = "confirm-verified",
    /// No writes on the source since the cut-over.
    CheckSourceUnchanged = "check-source-unchanged",
    /// Mirroring turned off where ferry turned it on.
    DisableMirroring = "disable-mirroring",
    /// A clone's carrier removed.
    RemoveFlatCopy = "remove-flat-copy",
    /// The cut-over snapshot removed.
    RemoveCutOverSnapshot = "remove-cut-over-snapshot",
    /// The features ferry turned on, turned off again.
    RestoreFeatures = "restore-features",
    /// The original record removed: the image is as it was.
    ForgetOriginal = "forget-original",
    /// The stream path's new destination volume.
    CreateVolume = "create-volume",
    /// The stream of a volume between the conversion hosts.
    Stream = "stream",
    /// The streamed volume finished (bootable flag, metadata, the mark
    /// removed).
    FinishVolume = "finish-volume",
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::StepName;

    #[test]
    fn step_names_serialise_as_their_text_and_read_back() {
        for &n in StepName::ALL {
            let yaml = serde_yaml::to_string(&n).unwrap();
            assert_eq!(yaml.trim(), n.as_str());
            assert_eq!(serde_yaml::from_str::<StepName>(&yaml).unwrap(), n);
            assert_eq!(serde_json::to_string(&n).unwrap(), format!("\"{n}\""));
        }
    }
}
