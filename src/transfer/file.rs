//! File and block-device endpoints: what a conversion host reads a volume
//! from and writes it into (an attached disk, a file on an NFS share, a
//! loop device).
//!
//! A regular file tells its data from its holes (`lseek` with `SEEK_DATA`
//! and `SEEK_HOLE`), so only data is read; a block device has no such map
//! and is read whole, the engine's zero detection then keeping its zero
//! blocks from being written or sent.
//!
//! Reads and writes run on a few I/O threads (positional `pread`/`pwrite`,
//! so they need no shared file offset): a disk attached over the network
//! answers a 4 MiB request in milliseconds, and only requests in flight
//! together keep it busy while the engine hashes the chunk before.
//!
//! A target reads as zeros where nothing was written only when it is known
//! to: a file just created, or a device the caller vouches for. Elsewhere
//! [`FileTarget::zero`] clears what must read as zeros: a punched hole in a
//! file (cheap, and it stays sparse), `BLKZEROOUT` on a device (the device
//! deallocates or writes zeros, as it can).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::digest::CHUNK_SIZE;
use super::endpoint::{Extent, PendingRead, PendingWrite, Source, Target};
use super::{Result, TransferError};
use crate::sys;

/// I/O threads per endpoint: enough to keep a network-attached disk busy
/// with the engine's requests in flight, few enough to cost nothing.
pub const IO_THREADS: usize = 4;

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A regular file: holes are known, and punched to zero.
    File,
    /// A block device: no allocation map; zeroed with `BLKZEROOUT`.
    BlockDevice,
}

fn io_error(op: &'static str, path: &Path, error: std::io::Error) -> TransferError {
    TransferError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

fn kind_of(file: &File, path: &Path) -> Result<Kind> {
    let t = file
        .metadata()
        .map_err(|e| io_error("stat", path, e))?
        .file_type();
    if t.is_file() {
        Ok(Kind::File)
    } else if t.is_block_device() {
        Ok(Kind::BlockDevice)
    } else {
        Err(io_error(
            "open",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither a regular file nor a block device",
            ),
        ))
    }
}

/// The size of a file or a block device (whose metadata says 0).
fn size_of(file: &File, path: &Path) -> Result<u64> {
    let mut f = file;
    f.seek(SeekFrom::End(0))
        .map_err(|e| io_error("finding the size of", path, e))
}

/// A regular file or block device read as an image.
pub struct FileSource {
    file: Arc<File>,
    path: Arc<Path>,
    size: u64,
    /// The file's or device's own size: reads past it are zeros.
    real: u64,
    kind: Kind,
    pool: IoPool,
}

impl FileSource {
    /// Opens `path` for reading; its size is the file's or the device's.
    pub fn open(path: &Path) -> Result<FileSource> {
        let file = File::open(path).map_err(|e| io_error("opening", path, e))?;
        let kind = kind_of(&file, path)?;
        let size = size_of(&file, path)?;
        Ok(FileSource {
            file: Arc::new(file),
            path: Arc::from(path),
            size,
            real: size,
            kind,
            pool: IoPool::new(IO_THREADS),
        })
    }

    /// What `path` is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Reads the image as if it were `size` bytes (a device larger than the
    /// volume it holds); what lies past the real end reads as zeros.
    pub fn with_size(mut self, size: u64) -> FileSource {
        self.size = size;
        self
    }
}

impl Source for FileSource {
    type Read<'a> = Pending<Vec<u8>>;

    fn size(&self) -> u64 {
        self.size
    }

    fn identity(&self) -> String {
        let kind = match self.kind {
            Kind::File => "file",
            Kind::BlockDevice => "block device",
        };
        format!(
            "{kind} {} size {} chunk {CHUNK_SIZE}",
            self.path.display(),
            self.size
        )
    }

    fn allocated(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = (offset + len).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        if self.kind == Kind::BlockDevice {
            return Ok(vec![Extent {
                offset,
                len: end - offset,
            }]);
        }
        let mut out = Vec::new();
        let mut at = offset;
        while at < end {
            let Some(data) = sys::file::seek_data(&self.file, at)
                .map_err(|e| io_error("SEEK_DATA", &self.path, e))?
            else {
                break;
            };
            if data >= end {
                break;
            }
            let hole = sys::file::seek_hole(&self.file, data)
                .map_err(|e| io_error("SEEK_HOLE", &self.path, e))?;
            let stop = hole.min(end);
            out.push(Extent {
                offset: data,
                len: stop - data,
            });
            at = stop;
        }
        Ok(out)
    }

    fn read(&self, offset: u64, mut buf: Vec<u8>, range: Range<usize>) -> Result<Pending<Vec<u8>>> {
        let (file, path) = (Arc::clone(&self.file), Arc::clone(&self.path));
        // Past the end of a shorter file or device (see `with_size`): zeros.
        let real = self.real;
        Ok(self.pool.run(move || {
            let want = range.len() as u64;
            let have = real.saturating_sub(offset).min(want) as usize;
            buf[range.start + have..range.end].fill(0);
            file.read_exact_at(&mut buf[range.start..range.start + have], offset)
                .map_err(|e| io_error("reading", &path, e))?;
            Ok(buf)
        }))
    }
}

/// Whether a target reads as zeros where nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Zeroed {
    /// Known when the file is made now or holds no data (all holes); a
    /// block device is not known to.
    Auto,
    /// The caller vouches for it (a new volume of a backend that hands out
    /// zeroed volumes).
    Yes,
    /// Unknown content: every hole of the source is zeroed on the target.
    No,
}

/// The extended attribute holding a stream record's mark in a target file.
const MARK_XATTR: &std::ffi::CStr = c"user.ferry.stream";

/// Whether an extended attribute call failed because the file system (or
/// the file) takes none.
fn unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTSUP | libc::EPERM | libc::EACCES | libc::E2BIG | libc::ERANGE)
    )
}

/// The names under `/dev/disk/by-id` that lead to the device `path` leads
/// to (udev's serial and WWN names), sorted.
fn by_id_names(path: &Path) -> Vec<String> {
    let Ok(dev) = std::fs::canonicalize(path) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/dev/disk/by-id") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::canonicalize(e.path()).is_ok_and(|p| p == dev))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A regular file or block device written as an image.
pub struct FileTarget {
    file: Arc<File>,
    path: Arc<Path>,
    kind: Kind,
    zeroed: bool,
    pool: IoPool,
}

impl FileTarget {
    /// Opens `path` to receive an image of `size` bytes: a regular file is
    /// made when missing (or set when empty) to `size` bytes, an existing
    /// one must hold exactly `size` bytes (the size comes from the other
    /// end of a stream: a file is neither truncated nor grown to it); a
    /// block device must hold at least `size` bytes. `zeroed` says whether it reads as zeros (see
    /// [`FileTarget::is_zeroed`]).
    pub fn open(path: &Path, size: u64, zeroed: Zeroed) -> Result<FileTarget> {
        let made = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_error("opening for writing", path, e))?;
        let kind = kind_of(&file, path)?;
        let have = size_of(&file, path)?;
        let refused = match kind {
            Kind::BlockDevice => (have < size).then_some("a device of at least that size"),
            // The size comes from the other end of a stream: a file that
            // holds something is neither truncated nor grown to it.
            Kind::File => (have != 0 && have != size)
                .then_some("a new file, or remove this one first (ferry neither truncates nor grows a file that holds data)"),
        };
        if let Some(give) = refused {
            return Err(io_error(
                "writing",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("it holds {have} bytes, the image {size}: give {give}"),
                ),
            ));
        }
        let is_zeroed = match kind {
            Kind::File => {
                if have == 0 {
                    file.set_len(size)
                        .map_err(|e| io_error("setting the size of", path, e))?;
                }
                match zeroed {
                    Zeroed::Yes => true,
                    Zeroed::No => false,
                    Zeroed::Auto => {
                        made || sys::file::seek_data(&file, 0)
                            .map_err(|e| io_error("SEEK_DATA", path, e))?
                            .is_none()
                    }
                }
            }
            Kind::BlockDevice => zeroed == Zeroed::Yes,
        };
        Ok(FileTarget {
            file: Arc::new(file),
            path: Arc::from(path),
            kind,
            zeroed: is_zeroed,
            pool: IoPool::new(IO_THREADS),
        })
    }

    /// What the target is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the whole target read as zeros when opened.
    pub fn is_zeroed(&self) -> bool {
        self.zeroed
    }

    /// What the target is, beyond its path: a file's device, inode and
    /// birth time; a block device's `/dev/disk/by-id` names (its serial or
    /// WWN, where udev knows them), its device numbers and size.
    pub fn identity(&self) -> Result<String> {
        use std::os::unix::fs::MetadataExt;
        let m = self
            .file
            .metadata()
            .map_err(|e| io_error("stat", &self.path, e))?;
        Ok(match self.kind {
            Kind::File => {
                // Inodes are reused: the birth time tells a new file apart.
                let born = m
                    .created()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or("?".to_string(), |d| d.as_nanos().to_string());
                format!("file dev {} inode {} born {born}", m.dev(), m.ino())
            }
            Kind::BlockDevice => {
                let size = size_of(&self.file, &self.path)?;
                let names = by_id_names(&self.path);
                let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
                if names.is_empty() {
                    format!("block device {major}:{minor} size {size}")
                } else {
                    format!("block device {} size {size}", names.join(" "))
                }
            }
        })
    }

    /// The mark a stream's record wrote into the target (a file's extended
    /// attribute); None when it carries none or cannot (a device).
    pub fn mark(&self) -> Result<Option<String>> {
        if self.kind != Kind::File {
            return Ok(None);
        }
        match sys::file::get_xattr(&self.file, MARK_XATTR) {
            Ok(v) => Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned())),
            Err(e) if unsupported(&e) => Ok(None),
            Err(e) => Err(io_error("reading the mark of", &self.path, e)),
        }
    }

    /// Writes `mark` into the target; false where it takes none (a device,
    /// a file system without user extended attributes).
    pub fn set_mark(&self, mark: &str) -> Result<bool> {
        if self.kind != Kind::File {
            return Ok(false);
        }
        match sys::file::set_xattr(&self.file, MARK_XATTR, mark.as_bytes()) {
            Ok(()) => Ok(true),
            Err(e) if unsupported(&e) => Ok(false),
            Err(e) => Err(io_error("marking", &self.path, e)),
        }
    }

    /// Reads `len` bytes at `offset` (past the end: zeros).
    pub fn read_back(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error("reading back", &self.path, e)),
            }
        }
        Ok(buf)
    }

    /// Makes `[offset, offset + len)` read as zeros: a punched hole in a
    /// file, `BLKZEROOUT` on a device; zeros written where neither works
    /// (a file system without hole punching, unaligned ends on a device).
    pub fn zero(&self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let done = match self.kind {
            Kind::File => sys::file::punch_hole(&self.file, offset, len),
            Kind::BlockDevice => {
                // BLKZEROOUT takes 512-byte sectors; the ends around them
                // are written.
                let start = offset.next_multiple_of(512);
                let stop = (offset + len) / 512 * 512;
                if start < stop {
                    match sys::file::zero_out(&self.file, start, stop - start) {
                        Ok(()) => {
                            self.write_zeros(offset, start - offset)?;
                            self.write_zeros(stop, offset + len - stop)?;
                            return Ok(());
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    Err(std::io::Error::from_raw_os_error(libc::EINVAL))
                }
            }
        };
        match done {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOTTY)
                ) =>
            {
                self.write_zeros(offset, len)
            }
            Err(e) => Err(io_error("zeroing", &self.path, e)),
        }
    }

    fn write_zeros(&self, mut offset: u64, len: u64) -> Result<()> {
        let end = offset + len;
        let zeros = vec![0u8; len.min(CHUNK_SIZE) as usize];
        while offset < end {
            let n = (end - offset).min(zeros.len() as u64) as usize;
            self.file
                .write_all_at(&zeros[..n], offset)
                .map_err(|e| io_error("writing zeros to", &self.path, e))?;
            offset += n as u64;
        }
        Ok(())
    }
}

impl Target for FileTarget {
    type Write<'a> = Pending<()>;

    fn write(&self, offset: u64, data: Arc<Vec<u8>>, range: Range<usize>) -> Result<Pending<()>> {
        let (file, path) = (Arc::clone(&self.file), Arc::clone(&self.path));
        Ok(self.pool.run(move || {
            file.write_all_at(&data[range], offset)
                .map_err(|e| io_error("writing", &path, e))
        }))
    }

    fn flush(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| io_error("flushing", &self.path, e))
    }
}

/// An operation running on an I/O thread.
pub struct Pending<T>(Arc<Slot<T>>);

struct Slot<T> {
    value: Mutex<Option<Result<T>>>,
    ready: Condvar,
}

impl<T> Pending<T> {
    fn done(&self) -> bool {
        self.0
            .value
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn take(self) -> Result<T> {
        let mut v = self.0.value.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = v.take() {
                return r;
            }
            v = self.0.ready.wait(v).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl PendingRead for Pending<Vec<u8>> {
    fn is_complete(&self) -> bool {
        self.done()
    }

    fn wait(self) -> Result<Vec<u8>> {
        self.take()
    }
}

impl PendingWrite for Pending<()> {
    fn is_complete(&self) -> bool {
        self.done()
    }

    fn wait(self) -> Result<()> {
        self.take()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A few threads running blocking file operations in the order given.
struct IoPool {
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl IoPool {
    fn new(threads: usize) -> IoPool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..threads.max(1))
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                })
            })
            .collect();
        IoPool {
            jobs: Some(tx),
            threads,
        }
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> Result<T> + Send + 'static) -> Pending<T> {
        let slot = Arc::new(Slot {
            value: Mutex::new(None),
            ready: Condvar::new(),
        });
        let filled = Arc::clone(&slot);
        let job: Job = Box::new(move || {
            // A panic in the operation must not leave its waiter waiting.
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
                    Err(TransferError::Io {
                        op: "I/O thread",
                        path: PathBuf::new(),
                        error: std::io::Error::other("panicked"),
                    })
                });
            *filled.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            filled.ready.notify_all();
        });
        self.jobs
            .as_ref()
            .expect("the pool lives until dropped")
            .send(job)
            .expect("I/O threads live as long as the pool");
        Pending(slot)
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        // Closing the queue ends the threads once it is drained.
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::digest::digest_bytes;
    use super::super::engine::{transfer, Options};
    use super::super::log::NoLog;
    use super::super::HashOnly;
    use super::*;
    use crate::testutil::noise;
    use std::os::unix::fs::MetadataExt;

    const MIB: u64 = 1 << 20;

    fn temp(name: &str) -> PathBuf {
        crate::testutil::temp_dir(&format!("file-{name}")).join("image")
    }

    /// A sparse file: data at 1 MiB (64 KiB), 9 MiB + 4 KiB (5 MiB) and the
    /// last 3000 bytes of 21 MiB + 777; the rest holes.
    fn sparse_file(path: &Path) -> Vec<u8> {
        let size = 21 * MIB + 777;
        let mut all = vec![0u8; size as usize];
        let f = File::create(path).unwrap();
        f.set_len(size).unwrap();
        for (at, len, seed) in [
            (MIB, 64 << 10, 1),
            (9 * MIB + 4096, 5 * MIB as usize, 2),
            (size - 3000, 3000, 3),
        ] {
            let d = noise(len, seed);
            f.write_all_at(&d, at).unwrap();
            all[at as usize..at as usize + len].copy_from_slice(&d);
        }
        all
    }

    #[test]
    fn a_sparse_file_reads_only_its_data_and_digests_as_its_bytes() {
        let path = temp("src");
        let all = sparse_file(&path);
        let src = FileSource::open(&path).unwrap();
        assert_eq!(src.kind(), Kind::File);
        let ext = src.allocated(0, src.size()).unwrap();
        let covered: u64 = ext.iter().map(|e| e.len).sum();
        assert!(covered < 8 * MIB, "holes are not reported as data: {ext:?}");
        let out =
            transfer::<_, HashOnly>(&src, None, &mut NoLog, &Options::default(), &mut |_, _| {
                true
            })
            .unwrap();
        assert_eq!(out.digest, digest_bytes(&all));
        assert_eq!(out.bytes_read, covered);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_copy_into_a_new_file_is_equal_and_keeps_the_holes() {
        let path = temp("src");
        let all = sparse_file(&path);
        let src = FileSource::open(&path).unwrap();
        let dst_path = path.with_file_name("copy");
        let dst = FileTarget::open(&dst_path, src.size(), Zeroed::Auto).unwrap();
        assert!(dst.is_zeroed(), "a file made now reads as zeros");
        let out = transfer(
            &src,
            Some(&dst),
            &mut NoLog,
            &Options::default(),
            &mut |_, _| true,
        )
        .unwrap();
        assert_eq!(std::fs::read(&dst_path).unwrap(), all);
        assert_eq!(out.digest, digest_bytes(&all));
        let blocks = std::fs::metadata(&dst_path).unwrap().blocks() * 512;
        assert!(blocks < 7 * MIB, "the copy allocated {blocks} bytes");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn zeroing_a_used_file_punches_holes_and_reads_as_zeros() {
        let path = temp("zero");
        std::fs::write(&path, noise(3 * MIB as usize, 4)).unwrap();
        let t = FileTarget::open(&path, 3 * MIB, Zeroed::Auto).unwrap();
        assert!(!t.is_zeroed(), "a file with data is not zeroed");
        t.zero(MIB - 100, MIB + 200).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert!(back[MIB as usize - 100..2 * MIB as usize + 100]
            .iter()
            .all(|b| *b == 0));
        assert_ne!(back[MIB as usize - 101], 0);
        assert_ne!(back[2 * MIB as usize + 100], 0);
        let blocks = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(blocks <= 2 * MIB + 8192, "no hole was punched: {blocks}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_source_read_past_its_end_reads_zeros() {
        let path = temp("short");
        std::fs::write(&path, noise(MIB as usize, 5)).unwrap();
        let src = FileSource::open(&path).unwrap().with_size(2 * MIB);
        let buf = src.read(MIB / 2, vec![7u8; MIB as usize], 0..MIB as usize);
        let buf = buf.unwrap().wait().unwrap();
        assert!(buf[MIB as usize / 2..].iter().all(|b| *b == 0));
        assert!(buf[..MIB as usize / 2].iter().all(|b| *b != 0));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
