//! The run state: one human-readable YAML file per run, holding the plan as
//! first built (later discovery would see the features ferry changed) and
//! what each image's steps recorded. Written atomically after every step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::ceph::{Features, MirrorMode};
use crate::plan::Plan;
use crate::spec::{ImageEntry, Spec};

/// The state file layout this ferry writes and reads. 1: no `format` field,
/// no spec, files named by the spec's file name only. 2: the cut-over
/// snapshot step also hashed the source (3 hashes in a step of its own,
/// `hash-source`, which a format-2 plan lacks).
pub const FORMAT: u32 = 3;

/// Everything a re-run needs to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The layout of this file ([`FORMAT`]).
    #[serde(default)]
    pub format: u32,
    /// The spec the run began with (as parsed): a spec changed under a run
    /// is refused rather than taken for the run it began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Spec>,
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
        RunState {
            format: FORMAT,
            spec: None,
            plan,
            images,
        }
    }

    /// A fresh state for a plan made from `spec`.
    pub fn for_spec(plan: Plan, spec: &Spec) -> RunState {
        RunState {
            spec: Some(spec.clone()),
            ..RunState::new(plan)
        }
    }

    /// Loads a state file, or None when there is none yet. A file of another
    /// layout is refused with what to do, never half-read.
    pub fn load(path: &Path) -> anyhow::Result<Option<RunState>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading run state {}", path.display()))
            }
        };
        RunState::parse(&text).map(Some).with_context(|| {
            format!(
                "reading run state {}; if that run is finished or abandoned, move the file away and run again",
                path.display()
            )
        })
    }

    /// Reads state file text (see [`RunState::load`]).
    pub fn parse(text: &str) -> anyhow::Result<RunState> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).context("not YAML")?;
        let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(1);
        if format != u64::from(FORMAT) {
            anyhow::bail!(
                "written by {} ferry (state format {format}; this one reads {FORMAT}): finish that run with the ferry that began it",
                if format < u64::from(FORMAT) { "an older" } else { "a newer" }
            );
        }
        Ok(serde_yaml::from_value(value)?)
    }

    /// What differs between the spec this run began with and `now`; None
    /// when nothing does (or the state names no spec).
    pub fn spec_changes(&self, now: &Spec) -> Option<String> {
        let was = self.spec.as_ref()?;
        if was == now {
            return None;
        }
        let mut said = Vec::new();
        let gone: Vec<String> = was
            .images
            .iter()
            .filter(|e| !now.images.contains(e))
            .map(entry)
            .collect();
        let new: Vec<String> = now
            .images
            .iter()
            .filter(|e| !was.images.contains(e))
            .map(entry)
            .collect();
        if !gone.is_empty() {
            said.push(format!("images no longer listed: {}", gone.join(", ")));
        }
        if !new.is_empty() {
            said.push(format!("images newly listed: {}", new.join(", ")));
        }
        if gone.is_empty() && new.is_empty() && was.images != now.images {
            said.push("the images are listed in another order".into());
        }
        for (part, changed) in [
            ("source", was.source != now.source),
            ("destination", was.destination != now.destination),
            ("options", was.options != now.options),
        ] {
            if changed {
                said.push(format!("{part} changed"));
            }
        }
        Some(said.join("; "))
    }

    /// Writes the state atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("yaml.tmp");
        let text = serde_yaml::to_string(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

/// An image entry as the user wrote it, in a few words.
fn entry(e: &ImageEntry) -> String {
    let what = [
        ("volume", &e.volume),
        ("glance_image", &e.glance_image),
        ("rbd", &e.rbd),
        ("server", &e.server),
    ]
    .into_iter()
    .find_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
    .unwrap_or_else(|| "(empty entry)".into());
    match &e.dest_name {
        Some(d) => format!("{what} (dest_name {d})"),
        None => what,
    }
}

/// The state file of the run for the spec at `spec`:
/// `<dir>/<spec file stem>-<8 hex digits of its absolute path>.state.yaml`,
/// so two specs of one file name in different directories do not share a
/// run.
pub fn state_path(dir: &Path, spec: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let stem = spec.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    let abs = std::path::absolute(spec).unwrap_or_else(|_| spec.to_path_buf());
    let d = Sha256::digest(abs.as_os_str().as_encoded_bytes());
    let tag: String = d[..4].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{stem}-{tag}.state.yaml"))
}

/// Where ferry before state format 2 kept the run for `spec`.
pub fn legacy_state_path(dir: &Path, spec: &Path) -> PathBuf {
    let stem = spec.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    dir.join(format!("{stem}.state.yaml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "source:\n  cluster: {conf: a.conf}\n  pools: {cinder: v}\ndestination:\n  cluster: {conf: b.conf}\n  pools: {cinder: w}\nimages:\n  - volume: one\n  - volume: two\n";

    fn spec(text: &str) -> Spec {
        Spec::parse(text, Path::new("/specs")).unwrap()
    }

    fn plan() -> Plan {
        crate::plan::build(&crate::plan::BuildOptions::from_spec(&spec(SPEC)), &[])
    }

    #[test]
    fn a_changed_spec_says_what_changed() {
        let state = RunState::for_spec(plan(), &spec(SPEC));
        assert_eq!(state.spec_changes(&spec(SPEC)), None);
        let other = SPEC.replace("volume: two", "volume: three") + "options: {cleanup: true}\n";
        assert_eq!(
            state.spec_changes(&spec(&other)).unwrap(),
            "images no longer listed: volume two; images newly listed: volume three; options changed"
        );
    }

    #[test]
    fn state_files_round_trip_and_older_ones_are_refused_readably() {
        let state = RunState::for_spec(plan(), &spec(SPEC));
        let text = serde_yaml::to_string(&state).unwrap();
        assert_eq!(RunState::parse(&text).unwrap(), state);
        let old = text.replace("format: 3\n", "format: 2\n");
        let e = format!("{:#}", RunState::parse(&old).unwrap_err());
        assert!(
            e.starts_with("written by an older ferry (state format 2; this one reads 3)"),
            "{e}"
        );
        let oldest = text.replace("format: 3\n", "");
        let e = format!("{:#}", RunState::parse(&oldest).unwrap_err());
        assert!(e.contains("state format 1;"), "{e}");
        let newer = text.replace("format: 3\n", "format: 4\n");
        let e = format!("{:#}", RunState::parse(&newer).unwrap_err());
        assert!(e.starts_with("written by a newer ferry"), "{e}");
    }

    #[test]
    fn one_file_name_in_two_directories_gives_two_runs() {
        let dir = Path::new("/state");
        let a = state_path(dir, Path::new("/x/bar-rss.yaml"));
        let b = state_path(dir, Path::new("/y/bar-rss.yaml"));
        assert_ne!(a, b);
        assert!(a
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("bar-rss-"));
        assert_eq!(a, state_path(dir, Path::new("/x/bar-rss.yaml")));
    }
}
