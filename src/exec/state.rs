//! The run state: one human-readable YAML file per run, holding the plan as
//! first built (later discovery would see the features ferry changed) and
//! what each image's steps recorded, by the one run that holds its lock
//! ([`StateLock`]). A step's record is a line appended to the state's
//! journal (`<state file>.journal`, one image's state per line, synced), not
//! a rewrite of the whole file: a run of a thousand images records ten
//! thousand steps. The file is rewritten (and the journal emptied) at the
//! start and the end of a run and every [`COMPACT_EVERY`] records.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::ceph::{Features, MirrorMode};
use crate::plan::{ImagePlan, Plan};
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
    /// The plan as first built: never changed by the run, so shared with
    /// every reader and read without a lock.
    #[serde(with = "shared_plan")]
    pub plan: Arc<Plan>,
    pub images: Vec<ImageState>,
    /// The last journal record this file holds: records up to it are
    /// already in `images`.
    #[serde(default)]
    pub seq: u64,
}

/// Journal records between two rewrites of the state file.
pub const COMPACT_EVERY: u64 = 256;

/// One journal line: image `image`'s whole state as of record `seq`.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    seq: u64,
    plan: String,
    image: usize,
    state: ImageState,
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
    /// When the warm rounds began (unix seconds): the warm phase is a
    /// wait, bounded by `--wait-timeout` from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_since: Option<i64>,
}

impl RunState {
    /// A fresh state for a plan.
    pub fn new(plan: Plan) -> RunState {
        let images = vec![ImageState::default(); plan.images.len()];
        RunState {
            format: FORMAT,
            spec: None,
            plan: Arc::new(plan),
            images,
            seq: 0,
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
        let mut state = RunState::parse(&text).with_context(|| {
            format!(
                "reading run state {}; if that run is finished or abandoned, move the file away and run again",
                path.display()
            )
        })?;
        match std::fs::read_to_string(journal_path(path)) {
            Ok(journal) => state.replay(&journal).with_context(|| {
                format!(
                    "reading the run state's journal {}",
                    journal_path(path).display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("reading run state journal {}", journal_path(path).display())
                })
            }
        }
        state.check_matches_plan().with_context(|| {
            format!(
                "the run state {} with its journal {}; move both away (every step checks what the clusters show, so a new run skips what is done)",
                path.display(),
                journal_path(path).display()
            )
        })?;
        Ok(Some(state))
    }

    /// Applies the journal's records newer than this state, in order. A
    /// last line cut short (a crash while appending) was never recorded;
    /// any other unreadable line is an error.
    pub fn replay(&mut self, journal: &str) -> anyhow::Result<()> {
        let lines: Vec<&str> = journal.lines().collect();
        for (k, line) in lines.iter().enumerate() {
            let record: Record = match serde_json::from_str(line) {
                Ok(r) => r,
                Err(_) if k + 1 == lines.len() && !journal.ends_with('\n') => break,
                Err(e) => anyhow::bail!("line {}: {e}", k + 1),
            };
            // Records of another plan (a journal left beside a state file
            // moved away) or already in the file are not this run's news.
            if record.plan != self.plan.id || record.seq <= self.seq {
                continue;
            }
            let image = self
                .images
                .get_mut(record.image)
                .ok_or_else(|| anyhow::anyhow!("line {}: no image {}", k + 1, record.image))?;
            *image = record.state;
            self.seq = record.seq;
        }
        Ok(())
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
        let mut state: RunState = serde_yaml::from_value(value)?;
        // Only this state holds the plan yet: no copy is made.
        Arc::make_mut(&mut state.plan)
            .images
            .iter_mut()
            .for_each(ImagePlan::compact);
        state.check_matches_plan()?;
        Ok(state)
    }

    /// Refuses a state whose records do not fit its plan (edited by hand,
    /// or the plan replaced): one record per image, done steps that the
    /// image's plan has. Steps index the records by the plan's images, so
    /// a record short would be a panic in the middle of a run.
    pub fn check_matches_plan(&self) -> anyhow::Result<()> {
        if self.images.len() != self.plan.images.len() {
            anyhow::bail!(
                "it holds {} image record(s) for the {} image(s) of its plan {}: it was changed by hand or belongs to another plan",
                self.images.len(),
                self.plan.images.len(),
                self.plan.id
            );
        }
        for (i, (img, st)) in self.plan.images.iter().zip(&self.images).enumerate() {
            if let Some(id) = st
                .done
                .iter()
                .find(|id| !img.steps.iter().any(|s| s.id == **id))
            {
                anyhow::bail!(
                    "image {} ({}) records step {id} done, which its plan does not have: it was changed by hand or belongs to another plan",
                    i + 1,
                    img.image.source_spec()
                );
            }
        }
        Ok(())
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
            (
                "conversion_hosts",
                was.conversion_hosts != now.conversion_hosts,
            ),
        ] {
            if changed {
                said.push(format!("{part} changed"));
            }
        }
        Some(said.join("; "))
    }

    /// Writes the state atomically and durably: a temporary file, synced,
    /// renamed over the old one, and the directory synced, so that a crash
    /// or a power cut leaves the old state or the new one, never an empty
    /// or half-written file (a rename alone may reach the disk before the
    /// data it names).
    ///
    /// The journal's records are in the file then: the journal is removed.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        // Straight to the file: the text of a thousand images' state is
        // ~17 MB, which a string would hold at once.
        write_durably_with(path, |f| {
            let mut w = std::io::BufWriter::new(f);
            serde_yaml::to_writer(&mut w, self).map_err(std::io::Error::other)?;
            w.flush()
        })?;
        match std::fs::remove_file(journal_path(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", journal_path(path).display())),
        }
    }

    /// Records image `i`'s state: a synced line in the journal of the state
    /// file `path`, or, every [`COMPACT_EVERY`] records, the whole file.
    pub fn record(&mut self, path: &Path, i: usize) -> anyhow::Result<()> {
        self.seq += 1;
        if self.seq.is_multiple_of(COMPACT_EVERY) {
            return self.save(path);
        }
        let mut line = serde_json::to_string(&Record {
            seq: self.seq,
            plan: self.plan.id.clone(),
            image: i,
            state: self.images[i].clone(),
        })?;
        line.push('\n');
        let journal = journal_path(path);
        let append = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&journal)?;
            f.write_all(line.as_bytes())?;
            f.sync_data()
        };
        append().with_context(|| format!("appending to {}", journal.display()))
    }
}

/// The plan of a state file, written and read as a plain plan.
mod shared_plan {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::plan::Plan;

    pub fn serialize<S: Serializer>(plan: &Arc<Plan>, s: S) -> Result<S::Ok, S::Error> {
        plan.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Plan>, D::Error> {
        Plan::deserialize(d).map(Arc::new)
    }
}

/// The journal of the state file `path`.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Replaces `path` with what `write` writes to a new file, synced,
/// renamed over it and its directory synced (see [`RunState::save`]).
pub fn write_durably_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()
    };
    write().with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// The lock of one run state: `<state file>.lock`, held with `flock` for as
/// long as this value lives, holding the holder's pid and host. A second run
/// on the same state refuses at once instead of interleaving its saves with
/// the first one's. The kernel drops the lock when its process dies, so a
/// lock file left by a killed run is simply taken over. The file is never
/// removed: removing it would let a third run lock a new file while the
/// second still holds the old one.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock of the state file `state`, or says who holds it.
    pub fn acquire(state: &Path) -> anyhow::Result<StateLock> {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        // Not truncated on open: while another run holds it, its content
        // names that run.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                anyhow::bail!(
                    "the run state {} is in use by another ferry run ({}): let it finish or stop it; \
                     two runs on one state would undo each other's records",
                    state.display(),
                    describe_holder(&holder)
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        let mine = holder_line(std::process::id(), &hostname());
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(mine.as_bytes())?;
            f.flush()
        };
        write(&mut file).with_context(|| format!("writing lock file {}", path.display()))?;
        Ok(StateLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a lock file holds: `pid <pid> host <host>`.
fn holder_line(pid: u32, host: &str) -> String {
    format!("pid {pid} host {host}\n")
}

/// The holder named by a lock file's text, in words. Pure.
fn describe_holder(text: &str) -> String {
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("pid"), Some(pid), Some("host"), Some(host)) => format!("pid {pid} on {host}"),
        // Locked, but the holder has not written its line yet.
        _ => "its pid not yet written".into(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".into())
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

    /// A plan of `n` volumes.
    fn plan_of(n: usize) -> Plan {
        let volume = |k: usize| {
            (
                crate::spec::ImageRef {
                    kind: crate::spec::ImageKind::Cinder,
                    pool: "v".into(),
                    name: format!("volume-{k}"),
                    mirrored_pool: "v".into(),
                    dest_pool: "w".into(),
                    dest_name: format!("volume-{k}"),
                    new_name: None,
                },
                crate::plan::CephImage::example().into(),
            )
        };
        let facts: Vec<_> = (0..n).map(volume).collect();
        crate::plan::build(&crate::plan::BuildOptions::from_spec(&spec(SPEC)), &facts)
    }

    /// A state that does not fit its plan is refused on load, naming the
    /// file and what to do, instead of panicking under the run's lock.
    #[test]
    fn a_state_that_does_not_fit_its_plan_is_refused_naming_the_file() {
        let dir = temp_dir("mismatch");
        let path = dir.join("m.state.yaml");
        let mut state = RunState::new(plan_of(2));
        let step = state.plan.images[1].steps[2].id.clone();
        state.images[1].done.insert(step);
        state.save(&path).unwrap();
        assert_eq!(RunState::load(&path).unwrap().unwrap(), state);
        // One record short.
        let mut short = state.clone();
        short.images.pop();
        std::fs::write(&path, serde_yaml::to_string(&short).unwrap()).unwrap();
        let e = format!("{:#}", RunState::load(&path).unwrap_err());
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("move the file away"), "{e}");
        assert!(
            e.contains("it holds 1 image record(s) for the 2 image(s) of its plan"),
            "{e}"
        );
        // A done step the plan does not have.
        let mut odd = state.clone();
        odd.images[0].done.insert("7.99".into());
        std::fs::write(&path, serde_yaml::to_string(&odd).unwrap()).unwrap();
        let e = format!("{:#}", RunState::load(&path).unwrap_err());
        assert!(
            e.contains("image 1 (v/volume-0) records step 7.99 done, which its plan does not have"),
            "{e}"
        );
        // The same through the journal: the file fits, a record does not.
        state.save(&path).unwrap();
        state.images[0].done.insert("7.99".into());
        state.record(&path, 0).unwrap();
        let e = format!("{:#}", RunState::load(&path).unwrap_err());
        assert!(e.contains("m.state.yaml.journal"), "{e}");
        assert!(e.contains("records step 7.99 done"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
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

    fn temp_dir(name: &str) -> PathBuf {
        crate::testutil::temp_dir(&format!("state-{name}"))
    }

    #[test]
    fn a_second_holder_of_a_state_is_refused_with_the_first_ones_pid() {
        let dir = temp_dir("lock");
        let state = dir.join("m.state.yaml");
        let first = StateLock::acquire(&state).unwrap();
        assert_eq!(first.path(), dir.join("m.state.yaml.lock"));
        // flock locks belong to an open file: a second open in this very
        // process conflicts as another process's would.
        let e = format!("{:#}", StateLock::acquire(&state).unwrap_err());
        let pid = std::process::id();
        assert!(
            e.contains(&format!("in use by another ferry run (pid {pid} on ")),
            "{e}"
        );
        assert!(e.contains(&state.display().to_string()), "{e}");
        // Released with its holder: the next run takes it over.
        drop(first);
        let again = StateLock::acquire(&state).unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert!(text.starts_with(&format!("pid {pid} host ")), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lock_holders_are_described_from_the_file() {
        assert_eq!(describe_holder(&holder_line(42, "h1")), "pid 42 on h1");
        assert_eq!(describe_holder(""), "its pid not yet written");
        assert_eq!(describe_holder("garbage"), "its pid not yet written");
    }

    #[test]
    fn saves_replace_the_state_whole_and_leave_no_temporary_file() {
        let dir = temp_dir("save");
        let path = dir.join("m.state.yaml");
        let state = RunState::for_spec(plan(), &spec(SPEC));
        std::fs::write(&path, "old, half-written stat").unwrap();
        state.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(RunState::parse(&text).unwrap(), state);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["m.state.yaml".to_string()]);
        // A save that cannot write its temporary file leaves the old state.
        let blocked = dir.join("b.state.yaml");
        std::fs::write(&blocked, "kept").unwrap();
        std::fs::create_dir(dir.join("b.state.yaml.tmp")).unwrap();
        assert!(state.save(&blocked).is_err());
        assert_eq!(std::fs::read_to_string(&blocked).unwrap(), "kept");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn step_records_go_to_the_journal_and_load_back() {
        let dir = temp_dir("journal");
        let path = dir.join("m.state.yaml");
        let mut state = RunState::for_spec(plan_of(3), &spec(SPEC));
        state.save(&path).unwrap();
        let base = std::fs::read_to_string(&path).unwrap();
        state.images[0].done.insert("1.1".into());
        state.record(&path, 0).unwrap();
        state.images[2].source_checksum = Some("abc".into());
        state.record(&path, 2).unwrap();
        state.images[0].done.insert("1.2".into());
        state.record(&path, 0).unwrap();
        // The file is as saved; the records are in the journal.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), base);
        assert_eq!(RunState::load(&path).unwrap().unwrap(), state);

        // A record cut short by a crash was never made; a record of
        // another plan is not this run's.
        let journal = journal_path(&path);
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        let other = Record {
            seq: 99,
            plan: "other".into(),
            image: 1,
            state: ImageState {
                source_checksum: Some("not ours".into()),
                ..ImageState::default()
            },
        };
        writeln!(f, "{}", serde_json::to_string(&other).unwrap()).unwrap();
        write!(f, "{{\"seq\": 4, \"plan\": \"").unwrap();
        drop(f);
        assert_eq!(RunState::load(&path).unwrap().unwrap(), state);
        // ... but a broken line before others is an error, not a guess.
        let text = std::fs::read_to_string(&journal).unwrap();
        std::fs::write(&journal, format!("garbage\n{text}\n")).unwrap();
        let e = format!("{:#}", RunState::load(&path).unwrap_err());
        assert!(e.contains("journal") && e.contains("line 1"), "{e}");

        // Saving folds the journal into the file: records older than it are
        // then ignored if a crash left them.
        state.save(&path).unwrap();
        assert!(!journal.exists());
        std::fs::write(&journal, text.lines().next().unwrap().to_string() + "\n").unwrap();
        assert_eq!(RunState::load(&path).unwrap().unwrap(), state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_so_many_records_the_state_file_is_rewritten_whole() {
        let dir = temp_dir("compact");
        let path = dir.join("m.state.yaml");
        let mut state = RunState::for_spec(plan_of(2), &spec(SPEC));
        state.save(&path).unwrap();
        for k in 0..COMPACT_EVERY {
            let i = (k % 2) as usize;
            let steps = &state.plan.images[i].steps;
            let id = steps[(k as usize / 2) % steps.len()].id.clone();
            state.images[i].done.insert(id);
            state.record(&path, (k % 2) as usize).unwrap();
        }
        assert!(!journal_path(&path).exists());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(RunState::parse(&text).unwrap(), state);
        assert_eq!(state.seq, COMPACT_EVERY);
        std::fs::remove_dir_all(dir).unwrap();
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
