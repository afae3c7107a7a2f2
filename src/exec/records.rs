//! The one owner of a run's state while the run goes on: every read and
//! update of what the images' steps recorded goes through [`Records`],
//! which persists each update (the state file and its journal, see
//! [`RunState`]) and keeps which images failed in this run. The plan is not
//! here: it never changes during a run and is read without a lock (the
//! `Arc<Plan>` the run shares).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::state::{ImageState, RunState};

/// A run's state and its file: the only way to read or change them.
pub(super) struct Records {
    held: Mutex<Held>,
    path: PathBuf,
}

struct Held {
    state: RunState,
    /// Images whose migration failed in this run, or that this run does
    /// not begin: a wait for what one of them would have made (a clone's
    /// parent) ends instead of waiting out its timeout.
    failed: BTreeSet<usize>,
}

impl Records {
    /// Owns `state`, which is kept in the state file `path`.
    pub(super) fn new(state: RunState, path: PathBuf) -> Records {
        Records {
            held: Mutex::new(Held {
                state,
                failed: BTreeSet::new(),
            }),
            path,
        }
    }

    /// The state, held. A thread that panicked while holding it cannot have
    /// left it half-changed (see [`Records::update`]), so the other images
    /// go on with it.
    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// What image `i`'s steps recorded.
    pub(super) fn image(&self, i: usize) -> ImageState {
        self.held().state.images[i].clone()
    }

    /// The steps image `i` records as done.
    pub(super) fn done(&self, i: usize) -> BTreeSet<String> {
        self.held().state.images[i].done.clone()
    }

    /// Changes image `i`'s record with `f` and records it (a synced line in
    /// the journal). `f` changes a copy, put in its place once `f` returns:
    /// a panic in `f` changes nothing.
    pub(super) fn update(&self, i: usize, f: impl FnOnce(&mut ImageState)) -> anyhow::Result<()> {
        let mut held = self.held();
        let mut next = held.state.images[i].clone();
        f(&mut next);
        held.state.images[i] = next;
        held.state.record(&self.path, i)
    }

    /// Rewrites the whole state file (the journal folded in).
    pub(super) fn save(&self) -> anyhow::Result<()> {
        self.held().state.save(&self.path)
    }

    /// `images` failed in this run, or are not begun by it.
    pub(super) fn fail(&self, images: impl IntoIterator<Item = usize>) {
        self.held().failed.extend(images);
    }

    /// The first of the images that failed in this run (or that it does
    /// not begin) for which `f` says something.
    pub(super) fn find_failed<T>(&self, f: impl FnMut(usize) -> Option<T>) -> Option<T> {
        self.held().failed.iter().copied().find_map(f)
    }
}
