//! The run state: one human-readable YAML file per run, holding the plan as
//! first built (later discovery would see the features ferry changed) and
//! what each image's steps recorded. Written atomically after every step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::ceph::{Features, MirrorMode};
use crate::plan::Plan;

/// Everything a re-run needs to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub plan: Plan,
    pub images: Vec<ImageState>,
}

/// What one image's steps have done and recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageState {
    /// Ids of the steps that finished.
    pub done: BTreeSet<String>,
    /// Features before ferry changed anything (restored at cleanup).
    pub original_features: Option<Features>,
    /// Mirroring mode before ferry changed anything (None: disabled).
    pub original_mirroring: Option<Option<MirrorMode>>,
    pub source_checksum: Option<String>,
    pub destination_checksum: Option<String>,
}

impl RunState {
    /// A fresh state for a plan.
    pub fn new(plan: Plan) -> RunState {
        let images = vec![ImageState::default(); plan.images.len()];
        RunState { plan, images }
    }

    /// Loads a state file, or None when there is none yet.
    pub fn load(path: &Path) -> anyhow::Result<Option<RunState>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_yaml::from_str(&text).map(Some).with_context(|| {
                format!(
                    "reading run state {} (written by another version of ferry? if that run is finished or abandoned, move the file away and run again)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading run state {}", path.display())),
        }
    }

    /// Writes the state atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("yaml.tmp");
        let text = serde_yaml::to_string(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

/// The state file of the run for `spec`: `<dir>/<spec file stem>.state.yaml`.
pub fn state_path(dir: &Path, spec: &Path) -> PathBuf {
    let stem = spec.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    dir.join(format!("{stem}.state.yaml"))
}
