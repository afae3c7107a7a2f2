//! Block I/O for the data engine (`crate::transfer`): which extents of an
//! image hold data (`rbd_diff_iterate2`), and asynchronous reads and writes
//! (librbd AIO), many in flight on one handle.
//!
//! A pending operation owns (a share of) its buffer and borrows its image,
//! so neither can go away while librbd still uses them; dropping one that
//! was not waited for waits for it first.

use std::ops::Range;
use std::ptr;
use std::sync::Arc;

use libc::{c_char, c_int, c_void, size_t};

use super::error::{check, cstring, CephError, Result};
use super::ffi;
use super::image::Image;

/// Read flags: sequential, and do not fill the OSDs' caches (as `rbd export`).
const READ_FLAGS: c_int =
    ffi::LIBRADOS_OP_FLAG_FADVISE_SEQUENTIAL | ffi::LIBRADOS_OP_FLAG_FADVISE_NOCACHE;
/// Write flags: do not fill the OSDs' caches (as `rbd import`).
const WRITE_FLAGS: c_int = ffi::LIBRADOS_OP_FLAG_FADVISE_NOCACHE;

/// A completion librbd signals when an operation ends; released once.
struct Completion(ffi::rbd_completion_t);

impl Completion {
    fn new(object: &str, op: &'static str) -> Result<Completion> {
        let mut c: ffi::rbd_completion_t = ptr::null_mut();
        // SAFETY: no callback (librbd checks for null); out-pointer to a local.
        let ret = unsafe { ffi::rbd_aio_create_completion(ptr::null_mut(), None, &mut c) };
        check(ret, op, || object.to_string())?;
        Ok(Completion(c))
    }

    /// Releases a completion whose operation was never started (librbd
    /// refused it): there is nothing to wait for.
    fn unused(self) {
        // SAFETY: a live completion with no operation; released once, here.
        unsafe { ffi::rbd_aio_release(self.0) };
        std::mem::forget(self);
    }

    fn is_complete(&self) -> bool {
        // SAFETY: a live completion.
        unsafe { ffi::rbd_aio_is_complete(self.0) != 0 }
    }

    /// Waits for the operation and returns its result (bytes or -errno).
    fn wait(&self) -> isize {
        // SAFETY: a live completion; waiting twice is harmless.
        unsafe { ffi::rbd_aio_wait_for_complete(self.0) };
        // SAFETY: as above; the operation has completed.
        unsafe { ffi::rbd_aio_get_return_value(self.0) }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // An operation still running writes into (or reads from) memory its
        // owner is about to free: wait for it first.
        // SAFETY: a live completion, released exactly once, here.
        unsafe {
            ffi::rbd_aio_wait_for_complete(self.0);
            ffi::rbd_aio_release(self.0);
        }
    }
}

/// An asynchronous read into `buf[range]`; [`AioRead::wait`] gives the buffer back.
pub struct AioRead<'i> {
    // Declared first: dropped (waited for) before the buffer is freed.
    completion: Completion,
    buf: Vec<u8>,
    range: Range<usize>,
    offset: u64,
    image: &'i str,
}

impl AioRead<'_> {
    /// Whether the read has finished (wait returns at once).
    pub fn is_complete(&self) -> bool {
        self.completion.is_complete()
    }

    /// Waits for the read; the buffer, with `range` filled. Holes read as zeros.
    pub fn wait(self) -> Result<Vec<u8>> {
        let ret = self.completion.wait();
        let want = self.range.len();
        if ret < 0 {
            return Err(CephError::call(
                "rbd_aio_read",
                format!("{} at {}", self.image, self.offset),
                ret as i32,
            ));
        }
        if ret as usize != want {
            return Err(CephError::BadReply {
                op: "rbd_aio_read",
                object: self.image.to_string(),
                message: format!("short read at {}: {ret} of {want} bytes", self.offset),
            });
        }
        let AioRead {
            completion, buf, ..
        } = self;
        drop(completion);
        Ok(buf)
    }
}

/// An asynchronous write of `data[range]`; holds a share of `data` until it ends.
pub struct AioWrite<'i> {
    // Declared first: dropped (waited for) before the data share is released.
    completion: Completion,
    _data: Arc<Vec<u8>>,
    len: usize,
    offset: u64,
    image: &'i str,
}

impl AioWrite<'_> {
    /// Whether the write has finished (wait returns at once).
    pub fn is_complete(&self) -> bool {
        self.completion.is_complete()
    }

    /// Waits for the write. Done here means acknowledged by librbd; with its
    /// cache on, only [`Image::flush`] makes it durable.
    pub fn wait(self) -> Result<()> {
        let ret = self.completion.wait();
        if ret < 0 {
            return Err(CephError::call(
                "rbd_aio_write",
                format!("{} at {}", self.image, self.offset),
                ret as i32,
            ));
        }
        // librbd reports 0 for a whole write (some versions the length).
        if ret != 0 && ret as usize != self.len {
            return Err(CephError::BadReply {
                op: "rbd_aio_write",
                object: self.image.to_string(),
                message: format!(
                    "short write at {}: {ret} of {} bytes",
                    self.offset, self.len
                ),
            });
        }
        Ok(())
    }
}

impl Image<'_> {
    /// Makes every write acknowledged so far durable (librbd's cache).
    pub fn flush(&self) -> Result<()> {
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_flush(self.raw()) };
        check(ret, "rbd_flush", || self.object().to_string()).map(|_| ())
    }

    /// Makes `[offset, offset + len)` read as zeros (whole objects are
    /// deallocated; the rest written with zeros), whatever it held.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        // SAFETY: open handle; plain values.
        let ret = unsafe { ffi::rbd_write_zeroes(self.raw(), offset, len as size_t, 0, 0) };
        if ret < 0 {
            return Err(CephError::call(
                "rbd_write_zeroes",
                format!("{} at {offset}+{len}", self.object()),
                ret as i32,
            ));
        }
        Ok(())
    }

    /// The extents of `[offset, offset + len)` that hold data at the snapshot
    /// the image was opened at (parent data included), as sorted, merged
    /// `(offset, length)` pairs. `whole_object` reports whole RADOS objects,
    /// which the object map answers without reading (fast-diff).
    pub fn allocated(&self, offset: u64, len: u64, whole_object: bool) -> Result<Vec<(u64, u64)>> {
        self.changed(None, offset, len, whole_object)
    }

    /// Like [`Image::allocated`], but with `since` only what changed after
    /// that snapshot (the image's own writes, not its parent's): data
    /// written, and data discarded or zeroed away (an extent librbd reports
    /// as no longer existing), which differs from the snapshot as much.
    pub fn changed(
        &self,
        since: Option<&str>,
        offset: u64,
        len: u64,
        whole_object: bool,
    ) -> Result<Vec<(u64, u64)>> {
        /// What the callback collects into, and whether extents that no
        /// longer exist count (since a snapshot: they were discarded).
        struct Collected {
            out: Vec<(u64, u64)>,
            gone_too: bool,
        }
        unsafe extern "C" fn collect(
            off: u64,
            len: size_t,
            exists: c_int,
            arg: *mut c_void,
        ) -> c_int {
            // SAFETY: arg is the &mut Collected passed below, alive for the
            // whole call.
            let c = unsafe { &mut *(arg as *mut Collected) };
            if (exists != 0 || c.gone_too) && len > 0 {
                match c.out.last_mut() {
                    Some((o, l)) if *o + *l == off => *l += len as u64,
                    _ => c.out.push((off, len as u64)),
                }
            }
            0
        }
        let c_since = since.map(|s| cstring("snapshot name", s)).transpose()?;
        let mut collected = Collected {
            out: Vec::new(),
            gone_too: since.is_some(),
        };
        // SAFETY: open handle; the from-snapshot name (or null: everything
        // allocated), the callback and its data outlive the call.
        let ret = unsafe {
            ffi::rbd_diff_iterate2(
                self.raw(),
                c_since.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                offset,
                len,
                u8::from(since.is_none()),
                u8::from(whole_object),
                Some(collect),
                &mut collected as *mut _ as *mut c_void,
            )
        };
        let mut out = collected.out;
        check(ret, "rbd_diff_iterate2", || match since {
            Some(s) => format!("{} since {s}", self.object()),
            None => self.object().to_string(),
        })?;
        // librbd reports in order; make sure, and merge neighbours.
        out.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(out.len());
        for (o, l) in out {
            match merged.last_mut() {
                Some((mo, ml)) if *mo + *ml >= o => *ml = (*ml).max(o + l - *mo),
                _ => merged.push((o, l)),
            }
        }
        Ok(merged)
    }

    /// Starts reading `range.len()` bytes at `offset` into `buf[range]`.
    pub fn aio_read(
        &self,
        offset: u64,
        mut buf: Vec<u8>,
        range: Range<usize>,
    ) -> Result<AioRead<'_>> {
        let target = &mut buf[range.clone()];
        let (ptr, len) = (target.as_mut_ptr() as *mut c_char, target.len());
        let completion = Completion::new(self.object(), "rbd_aio_create_completion")?;
        // SAFETY: open handle; the buffer's heap memory stays put while the
        // AioRead owns it, and its drop waits for the read to end.
        let ret =
            unsafe { ffi::rbd_aio_read2(self.raw(), offset, len, ptr, completion.0, READ_FLAGS) };
        if ret < 0 {
            completion.unused();
            return Err(CephError::call(
                "rbd_aio_read",
                format!("{} at {offset}", self.object()),
                ret,
            ));
        }
        Ok(AioRead {
            completion,
            buf,
            range,
            offset,
            image: self.object(),
        })
    }

    /// Starts writing `data[range]` at `offset`.
    pub fn aio_write(
        &self,
        offset: u64,
        data: Arc<Vec<u8>>,
        range: Range<usize>,
    ) -> Result<AioWrite<'_>> {
        let source = &data[range];
        let (ptr, len) = (source.as_ptr() as *const c_char, source.len());
        let completion = Completion::new(self.object(), "rbd_aio_create_completion")?;
        // SAFETY: open handle; the AioWrite holds a share of the data, which
        // nobody mutates while shared, and its drop waits for the write to end.
        let ret =
            unsafe { ffi::rbd_aio_write2(self.raw(), offset, len, ptr, completion.0, WRITE_FLAGS) };
        if ret < 0 {
            completion.unused();
            return Err(CephError::call(
                "rbd_aio_write",
                format!("{} at {offset}", self.object()),
                ret,
            ));
        }
        Ok(AioWrite {
            completion,
            _data: data,
            len,
            offset,
            image: self.object(),
        })
    }
}
