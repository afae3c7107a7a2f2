//! One block data engine: moves the extents of a block image from a source
//! to a target, reading only allocated data, keeping many requests in
//! flight, leaving holes as holes, and hashing every chunk as it passes into
//! one digest that ferry and the rendered scripts compute alike
//! ([`digest`]). The per-chunk hashes of a copy are kept as it goes, so an
//! interrupted copy resumes with the chunks it lacks.
//!
//! Endpoints ([`Source`], [`Target`]): RBD images ([`rbd`]), files and
//! block devices ([`file`]); a stream between two hosts ([`stream`]) sends
//! with the engine and receives into a target.

mod changed;
pub mod digest;
mod endpoint;
mod engine;
pub mod file;
mod log;
pub mod rbd;
pub mod stream;

pub use digest::{
    digest_bytes, is_digest, ChunkHash, DigestWriter, ImageDigest, CHUNK_SIZE, ZERO_CHUNK,
};
pub use endpoint::{Extent, HashOnly, PendingRead, PendingWrite, Source, Target};
pub use engine::{data_runs, diff_runs, transfer, transfer_onto, ChunkBudget, Options, Outcome};
pub use log::{ChunkLog, FileChunkLog, NoLog};

use crate::ceph::CephError;

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A Ceph call failed.
    #[error(transparent)]
    Ceph(#[from] CephError),
    /// The caller asked to stop; what was finished is recorded.
    #[error("stopped after {done} of {size} bytes; running again resumes")]
    Stopped { done: u64, size: u64 },
    /// A file or block device could not be read or written.
    #[error("{op} {}: {error}", path.display())]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// A stream between two hosts broke, stalled or carried something
    /// wrong.
    #[error(transparent)]
    Stream(#[from] stream::StreamError),
}

/// Result of a transfer.
pub type Result<T, E = TransferError> = std::result::Result<T, E>;
