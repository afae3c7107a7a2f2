//! An open RBD image: info, features, snapshots, watchers, I/O and copy
//! (its mirroring is in `image_mirror`). The handle closes on drop.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr;

use libc::{c_char, c_int, c_void, size_t};

use super::error::{check, cstring, CephError, Result};
use super::ffi;
use super::pool::Pool;
use super::types::{Features, ImageInfo, Locker, Parent, SnapNamespace, Snapshot, Watcher};

/// An open image; borrows its pool, which borrows its cluster.
pub struct Image<'p> {
    pub(super) handle: ffi::rbd_image_t,
    /// `pool/name` (with `@snap` when opened at a snapshot), for errors.
    object: String,
    _pool: PhantomData<&'p Pool<'p>>,
}

// SAFETY: librbd image handles may be used from any one thread at a time.
unsafe impl Send for Image<'_> {}

/// Reads a C string librbd owns into a Rust `String` (lossy on bad UTF-8).
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string.
pub(crate) unsafe fn cstr_lossy(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: per the function contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl<'p> Image<'p> {
    /// Opens `name`, read-only at `snap` when given. Read-only images are
    /// opened on the cluster's reader connection (one librados callback
    /// thread; see [`super::Cluster::reader`]), at the head, and then set to
    /// the snapshot: librbd 16.2 asked to open at a snapshot ends the open
    /// on a librados callback thread, wakes the opener on another and takes
    /// the image's state lock again, so an image closed at once is freed
    /// under that lock; `rbd_snap_set` ends on the image's own work queue,
    /// which runs the wake-up only after that lock is let go.
    pub(crate) fn open(
        pool: &'p Pool<'_>,
        name: &str,
        snap: Option<&str>,
        read_only: bool,
    ) -> Result<Image<'p>> {
        let c_name = cstring("image name", name)?;
        let c_snap = snap.map(|s| cstring("snapshot name", s)).transpose()?;
        let read_only = read_only || snap.is_some();
        let object = match snap {
            Some(s) => format!("{}@{s}", pool.object(name)),
            None => pool.object(name),
        };
        super::counted(true);
        let mut handle: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: valid ioctx; the name outlives the call; out-pointer to a
        // local; a null snapshot name opens the head.
        let ret = unsafe {
            if read_only {
                let io = pool.reader_raw()?;
                ffi::rbd_open_read_only(io, c_name.as_ptr(), &mut handle, ptr::null())
            } else {
                ffi::rbd_open(pool.raw(), c_name.as_ptr(), &mut handle, ptr::null())
            }
        };
        let op = if read_only {
            "rbd_open_read_only"
        } else {
            "rbd_open"
        };
        check(ret, op, || object.clone())?;
        super::open_now(true);
        let image = Image {
            handle,
            object,
            _pool: PhantomData,
        };
        if let Some(c_snap) = &c_snap {
            // SAFETY: open handle; the name outlives the call. On an error
            // the image is dropped, so closed.
            let ret = unsafe { ffi::rbd_snap_set(image.handle, c_snap.as_ptr()) };
            image.check(ret, "rbd_snap_set")?;
        }
        Ok(image)
    }

    /// `pool/name` of this image.
    pub fn object(&self) -> &str {
        &self.object
    }

    pub(super) fn raw(&self) -> ffi::rbd_image_t {
        self.handle
    }

    pub(super) fn check(&self, ret: c_int, op: &'static str) -> Result<c_int> {
        check(ret, op, || self.object.clone())
    }

    /// Size, object size and features.
    pub fn info(&self) -> Result<ImageInfo> {
        // SAFETY: rbd_image_info_t is plain C data; zeroed is a valid initial value.
        let mut info: ffi::rbd_image_info_t = unsafe { std::mem::zeroed() };
        // SAFETY: open handle; struct and its size match.
        let ret = unsafe {
            ffi::rbd_stat(
                self.handle,
                &mut info,
                std::mem::size_of::<ffi::rbd_image_info_t>(),
            )
        };
        self.check(ret, "rbd_stat")?;
        Ok(ImageInfo {
            size: info.size,
            object_size: info.obj_size,
            features: self.features()?,
        })
    }

    /// The image's id in its pool: unlike its name, it is never reused, so
    /// it tells this image from one created later under the same name.
    pub fn id(&self) -> Result<String> {
        let mut len: size_t = 64;
        loop {
            let mut buf = vec![0u8; len];
            // SAFETY: open handle; buf holds len bytes.
            let ret = unsafe { ffi::rbd_get_id(self.handle, buf.as_mut_ptr().cast(), len) };
            // -ERANGE does not say the size needed: grow and ask again.
            if ret == -libc::ERANGE && len < 1 << 16 {
                len *= 4;
                continue;
            }
            self.check(ret, "rbd_get_id")?;
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            return Ok(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
    }

    /// Grows or shrinks the image to `size` bytes.
    pub fn resize(&self, size: u64) -> Result<()> {
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_resize(self.handle, size) };
        self.check(ret, "rbd_resize").map(|_| ())
    }

    /// The image's feature bits.
    pub fn features(&self) -> Result<Features> {
        let mut f: u64 = 0;
        // SAFETY: open handle; out-pointer to a local.
        let ret = unsafe { ffi::rbd_get_features(self.handle, &mut f) };
        self.check(ret, "rbd_get_features")?;
        Ok(Features(f))
    }

    /// Enables or disables features. librbd enforces dependencies
    /// (journaling needs exclusive-lock; object-map needs exclusive-lock; ...).
    pub fn update_features(&self, features: Features, enable: bool) -> Result<()> {
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_update_features(self.handle, features.0, u8::from(enable)) };
        self.check(ret, "rbd_update_features").map(|_| ())
    }

    /// Rebuilds the object map (needed after object-map is enabled again).
    pub fn rebuild_object_map(&self) -> Result<()> {
        // librbd calls the progress callback unconditionally: a null one crashes.
        unsafe extern "C" fn no_progress(_: u64, _: u64, _: *mut c_void) -> c_int {
            0
        }
        // SAFETY: open handle; a valid callback that ignores its data pointer.
        let ret =
            unsafe { ffi::rbd_rebuild_object_map(self.handle, Some(no_progress), ptr::null_mut()) };
        self.check(ret, "rbd_rebuild_object_map").map(|_| ())
    }

    /// Every snapshot, mirror snapshots included, with its namespace.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut max: c_int = 16;
        loop {
            // SAFETY: plain C data; zeroed is a valid empty entry.
            let mut snaps: Vec<ffi::rbd_snap_info_t> = (0..max + 1)
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            // SAFETY: array of max+1 entries (librbd writes a terminator).
            let ret = unsafe { ffi::rbd_snap_list(self.handle, snaps.as_mut_ptr(), &mut max) };
            if ret == -libc::ERANGE {
                continue;
            }
            let n = self.check(ret, "rbd_snap_list")? as usize;
            let mut out = Vec::with_capacity(n);
            for s in &snaps[..n] {
                let mut ns: c_int = -1;
                // SAFETY: open handle; out-pointer to a local.
                let r = unsafe { ffi::rbd_snap_get_namespace_type(self.handle, s.id, &mut ns) };
                let namespace = match (r, ns) {
                    (0, ffi::RBD_SNAP_NAMESPACE_TYPE_USER) => SnapNamespace::User,
                    (0, ffi::RBD_SNAP_NAMESPACE_TYPE_GROUP) => SnapNamespace::Group,
                    (0, ffi::RBD_SNAP_NAMESPACE_TYPE_TRASH) => SnapNamespace::Trash,
                    (0, ffi::RBD_SNAP_NAMESPACE_TYPE_MIRROR) => SnapNamespace::Mirror,
                    _ => SnapNamespace::Unknown,
                };
                out.push(Snapshot {
                    id: s.id,
                    // SAFETY: librbd filled the name for the first n entries.
                    name: unsafe { cstr_lossy(s.name) },
                    size: s.size,
                    namespace,
                });
            }
            // SAFETY: frees the names librbd allocated in this array.
            unsafe { ffi::rbd_snap_list_end(snaps.as_mut_ptr()) };
            return Ok(out);
        }
    }

    /// Reads from snapshot `snap_id` (any namespace, e.g. a mirror snapshot)
    /// instead of the head; the handle must be read-only.
    pub fn set_snap_by_id(&mut self, snap_id: u64) -> Result<()> {
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_snap_set_by_id(self.handle, snap_id) };
        self.check(ret, "rbd_snap_set_by_id")?;
        self.object = format!(
            "{}@{snap_id}",
            self.object.split('@').next().unwrap_or_default()
        );
        Ok(())
    }

    /// The image metadata value under `key` (None when it is not set).
    /// Image metadata is mirrored with the image in both modes.
    pub fn metadata_get(&self, key: &str) -> Result<Option<String>> {
        let c_key = cstring("metadata key", key)?;
        let mut len: size_t = 256;
        loop {
            let mut buf = vec![0u8; len];
            // SAFETY: open handle; buf holds len bytes; len is updated on ERANGE.
            let ret = unsafe {
                ffi::rbd_metadata_get(
                    self.handle,
                    c_key.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            if ret == -libc::ERANGE {
                continue;
            }
            if ret == -libc::ENOENT {
                return Ok(None);
            }
            check(ret, "rbd_metadata_get", || format!("{} {key}", self.object))?;
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
    }

    /// Every image metadata key and value (librbd's own `conf_` keys too).
    pub fn metadata_list(&self) -> Result<Vec<(String, String)>> {
        // Ask for the sizes first: 16.2's check compares the values' buffer
        // with the keys' total, so a guessed buffer could be overrun.
        let (mut key_len, mut val_len): (size_t, size_t) = (0, 0);
        loop {
            // Room beyond what librbd asked for: values that grew since.
            let mut keys = vec![0u8; key_len + 1];
            let mut vals = vec![0u8; val_len + 4096];
            let (mut kl, mut vl) = (key_len, vals.len());
            // SAFETY: open handle; empty start string; each buffer holds at
            // least the length passed with it.
            let ret = unsafe {
                ffi::rbd_metadata_list(
                    self.handle,
                    c"".as_ptr(),
                    0,
                    keys.as_mut_ptr().cast(),
                    &mut kl,
                    vals.as_mut_ptr().cast(),
                    &mut vl,
                )
            };
            if ret == -libc::ERANGE {
                (key_len, val_len) = (kl, vl);
                continue;
            }
            self.check(ret, "rbd_metadata_list")?;
            let split = |b: &[u8], n: usize| -> Vec<String> {
                b[..n.min(b.len())]
                    .split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            };
            let (k, v) = (split(&keys, kl), split(&vals, vl));
            // An empty value would shift the pairs: read such keys one by one.
            if k.len() != v.len() {
                return k
                    .into_iter()
                    .map(|key| Ok((key.clone(), self.metadata_get(&key)?.unwrap_or_default())))
                    .collect();
            }
            return Ok(k.into_iter().zip(v).collect());
        }
    }

    /// Sets image metadata `key` to `value`.
    pub fn metadata_set(&self, key: &str, value: &str) -> Result<()> {
        let c_key = cstring("metadata key", key)?;
        let c_value = cstring("metadata value", value)?;
        // SAFETY: open handle; NUL-terminated strings.
        let ret = unsafe { ffi::rbd_metadata_set(self.handle, c_key.as_ptr(), c_value.as_ptr()) };
        check(ret, "rbd_metadata_set", || format!("{} {key}", self.object)).map(|_| ())
    }

    /// Removes image metadata `key`; an absent key is not an error.
    pub fn metadata_remove(&self, key: &str) -> Result<()> {
        let c_key = cstring("metadata key", key)?;
        // SAFETY: open handle; NUL-terminated string.
        let ret = unsafe { ffi::rbd_metadata_remove(self.handle, c_key.as_ptr()) };
        if ret == -libc::ENOENT {
            return Ok(());
        }
        check(ret, "rbd_metadata_remove", || {
            format!("{} {key}", self.object)
        })
        .map(|_| ())
    }

    /// When the snapshot `snap_id` was created on this cluster (unix seconds).
    pub fn snap_timestamp(&self, snap_id: u64) -> Result<i64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: open handle; ts is a valid out-parameter.
        let ret = unsafe { ffi::rbd_snap_get_timestamp(self.handle, snap_id, &mut ts) };
        check(ret, "rbd_snap_get_timestamp", || {
            format!("{}@{snap_id}", self.object)
        })?;
        Ok(ts.tv_sec)
    }

    /// Creates a user snapshot.
    pub fn snap_create(&self, name: &str) -> Result<()> {
        let c = cstring("snapshot name", name)?;
        // SAFETY: open handle; name outlives the call.
        let ret = unsafe { ffi::rbd_snap_create(self.handle, c.as_ptr()) };
        check(ret, "rbd_snap_create", || format!("{}@{name}", self.object)).map(|_| ())
    }

    /// Removes a user snapshot (it must not be protected).
    pub fn snap_remove(&self, name: &str) -> Result<()> {
        let c = cstring("snapshot name", name)?;
        // SAFETY: open handle; name outlives the call.
        let ret = unsafe { ffi::rbd_snap_remove(self.handle, c.as_ptr()) };
        check(ret, "rbd_snap_remove", || format!("{}@{name}", self.object)).map(|_| ())
    }

    /// Protects a snapshot so clones can be made from it (Glance needs this).
    pub fn snap_protect(&self, name: &str) -> Result<()> {
        let c = cstring("snapshot name", name)?;
        // SAFETY: open handle; name outlives the call.
        let ret = unsafe { ffi::rbd_snap_protect(self.handle, c.as_ptr()) };
        check(ret, "rbd_snap_protect", || {
            format!("{}@{name}", self.object)
        })
        .map(|_| ())
    }

    /// Unprotects a snapshot (fails with Busy while clones exist).
    pub fn snap_unprotect(&self, name: &str) -> Result<()> {
        let c = cstring("snapshot name", name)?;
        // SAFETY: open handle; name outlives the call.
        let ret = unsafe { ffi::rbd_snap_unprotect(self.handle, c.as_ptr()) };
        check(ret, "rbd_snap_unprotect", || {
            format!("{}@{name}", self.object)
        })
        .map(|_| ())
    }

    /// Whether a snapshot is protected.
    pub fn snap_is_protected(&self, name: &str) -> Result<bool> {
        let c = cstring("snapshot name", name)?;
        let mut p: c_int = 0;
        // SAFETY: open handle; name outlives the call; out-pointer to a local.
        let ret = unsafe { ffi::rbd_snap_is_protected(self.handle, c.as_ptr(), &mut p) };
        check(ret, "rbd_snap_is_protected", || {
            format!("{}@{name}", self.object)
        })?;
        Ok(p != 0)
    }

    /// Clients watching the image. A read-only handle does not watch, so an
    /// image opened read-only lists only other clients.
    pub fn watchers(&self) -> Result<Vec<Watcher>> {
        let mut max: size_t = 8;
        loop {
            // SAFETY: plain C data; zeroed is a valid empty entry.
            let mut w: Vec<ffi::rbd_image_watcher_t> =
                (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
            // SAFETY: array of `max` entries; librbd writes the count back.
            let ret = unsafe { ffi::rbd_watchers_list(self.handle, w.as_mut_ptr(), &mut max) };
            if ret == -libc::ERANGE {
                continue;
            }
            self.check(ret, "rbd_watchers_list")?;
            let out = w[..max]
                .iter()
                .map(|x| Watcher {
                    // SAFETY: librbd filled the first `max` entries.
                    addr: unsafe { cstr_lossy(x.addr) },
                    id: x.id,
                    cookie: x.cookie,
                })
                .collect();
            // SAFETY: frees exactly the entries librbd filled.
            unsafe { ffi::rbd_watchers_list_cleanup(w.as_mut_ptr(), max) };
            return Ok(out);
        }
    }

    /// Holders of locks on the image header: the exclusive lock a running
    /// client takes (shown as `auto <id>` cookies) and advisory locks. Works
    /// from a read-only handle, unlike librbd's lock-owner query.
    pub fn lockers(&self) -> Result<Vec<Locker>> {
        let mut lens: [size_t; 4] = [64, 256, 256, 256];
        loop {
            let mut bufs: Vec<Vec<c_char>> = lens.iter().map(|&n| vec![0; n.max(1)]).collect();
            let mut exclusive: c_int = 0;
            let [tag, clients, cookies, addrs] = &mut bufs[..] else {
                unreachable!()
            };
            let [tl, cl, kl, al] = &mut lens;
            // SAFETY: four buffers with their lengths; librbd writes needed sizes back.
            let ret = unsafe {
                ffi::rbd_list_lockers(
                    self.handle,
                    &mut exclusive,
                    tag.as_mut_ptr(),
                    tl,
                    clients.as_mut_ptr(),
                    cl,
                    cookies.as_mut_ptr(),
                    kl,
                    addrs.as_mut_ptr(),
                    al,
                )
            };
            if ret == -(libc::ERANGE as isize) {
                continue;
            }
            let n = self.check(ret as c_int, "rbd_list_lockers")? as usize;
            let split = |b: &[c_char], len: size_t| -> Vec<String> {
                b[..len.min(b.len())]
                    .split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        String::from_utf8_lossy(&s.iter().map(|c| *c as u8).collect::<Vec<_>>())
                            .into_owned()
                    })
                    .collect()
            };
            let (clients, cookies, addrs) = (
                split(&bufs[1], lens[1]),
                split(&bufs[2], lens[2]),
                split(&bufs[3], lens[3]),
            );
            return Ok((0..n)
                .map(|i| Locker {
                    client: clients.get(i).cloned().unwrap_or_default(),
                    cookie: cookies.get(i).cloned().unwrap_or_default(),
                    addr: addrs.get(i).cloned().unwrap_or_default(),
                })
                .collect());
        }
    }

    /// The image this one is a clone of (`pool/image@snap`), or None.
    pub fn parent(&self) -> Result<Option<Parent>> {
        // SAFETY: plain C data; zeroed (null pointers) is what the cleanups accept.
        let mut img: ffi::rbd_linked_image_spec_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut snap: ffi::rbd_snap_spec_t = unsafe { std::mem::zeroed() };
        // SAFETY: open handle; out-pointers to locals.
        let ret = unsafe { ffi::rbd_get_parent(self.handle, &mut img, &mut snap) };
        if ret == -libc::ENOENT {
            return Ok(None);
        }
        self.check(ret, "rbd_get_parent")?;
        // SAFETY: librbd filled the strings; they are read before the cleanups free them.
        let (pool, namespace, image, snap_name) = unsafe {
            (
                cstr_lossy(img.pool_name),
                cstr_lossy(img.pool_namespace),
                cstr_lossy(img.image_name),
                cstr_lossy(snap.name),
            )
        };
        let in_trash = img.trash;
        // SAFETY: frees what rbd_get_parent allocated, once.
        unsafe {
            ffi::rbd_linked_image_spec_cleanup(&mut img);
            ffi::rbd_snap_spec_cleanup(&mut snap);
        }
        let mut op: u64 = 0;
        // SAFETY: open handle; out-pointer to a local.
        let ret = unsafe { ffi::rbd_get_op_features(self.handle, &mut op) };
        self.check(ret, "rbd_get_op_features")?;
        Ok(Some(Parent {
            pool,
            namespace,
            image,
            snap: snap_name,
            // RBD_OPERATION_FEATURE_CLONE_CHILD: a clone v2 child.
            clone_format: if op & 2 != 0 { 2 } else { 1 },
            in_trash,
        }))
    }

    /// Takes the exclusive lock and keeps it until `lock_release` or close:
    /// no other client can write meanwhile (librbd refuses to hand over a
    /// lock taken this way). The image needs the exclusive-lock feature.
    pub fn lock_acquire_exclusive(&self) -> Result<()> {
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_lock_acquire(self.handle, ffi::RBD_LOCK_MODE_EXCLUSIVE) };
        self.check(ret, "rbd_lock_acquire").map(|_| ())
    }

    /// Releases the lock `lock_acquire_exclusive` took.
    pub fn lock_release(&self) -> Result<()> {
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_lock_release(self.handle) };
        self.check(ret, "rbd_lock_release").map(|_| ())
    }

    /// Bytes written to the image (its head, or the snapshot it was opened
    /// at) since snapshot `since`, discards and zeroing included, counted in
    /// whole objects when fast-diff allows: zero means unchanged.
    pub fn written_since(&self, since: &str) -> Result<u64> {
        let size = self.info()?.size;
        Ok(self
            .changed(Some(since), 0, size, true)?
            .iter()
            .map(|(_, len)| len)
            .sum())
    }

    /// Whether the image starts with a LUKS header (an encrypted volume).
    pub fn has_luks_header(&self) -> Result<bool> {
        let mut magic = [0u8; 6];
        let n = self.read_at(0, &mut magic)?;
        Ok(n == 6 && magic == *b"LUKS\xba\xbe")
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns the count read.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        // SAFETY: open handle; buffer valid for its length.
        let ret = unsafe {
            ffi::rbd_read(
                self.handle,
                offset,
                buf.len(),
                buf.as_mut_ptr() as *mut c_char,
            )
        };
        if ret < 0 {
            return Err(CephError::call("rbd_read", self.object.clone(), ret as i32));
        }
        Ok(ret as usize)
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        // SAFETY: open handle; buffer valid for its length.
        let ret = unsafe {
            ffi::rbd_write(
                self.handle,
                offset,
                buf.len(),
                buf.as_ptr() as *const c_char,
            )
        };
        if ret < 0 {
            return Err(CephError::call(
                "rbd_write",
                self.object.clone(),
                ret as i32,
            ));
        }
        if ret as usize != buf.len() {
            return Err(CephError::BadReply {
                op: "rbd_write",
                object: self.object.clone(),
                message: format!("short write: {ret} of {} bytes", buf.len()),
            });
        }
        Ok(())
    }

    /// Copies this image (at the snapshot it was opened at) to a new image
    /// `dest_name` in `dest`, which may be in another cluster, created with
    /// `features` (None: this image's). `progress` gets (bytes done, total)
    /// and may return false to cancel. A panic in `progress` cancels the copy
    /// and is resumed once librbd has returned (unwinding through C would
    /// abort the process mid-copy).
    pub fn copy_to<F: FnMut(u64, u64) -> bool>(
        &self,
        dest: &Pool<'_>,
        dest_name: &str,
        features: Option<Features>,
        progress: F,
    ) -> Result<()> {
        /// The closure, and a panic it raised, across the C call.
        struct Progress<G> {
            f: G,
            panic: Option<Box<dyn std::any::Any + Send>>,
        }
        unsafe extern "C" fn trampoline<G: FnMut(u64, u64) -> bool>(
            offset: u64,
            total: u64,
            data: *mut c_void,
        ) -> c_int {
            // SAFETY: data is the &mut Progress passed below, alive for the
            // whole copy; librbd calls back on one thread at a time.
            let p = unsafe { &mut *(data as *mut Progress<G>) };
            if p.panic.is_some() {
                return -libc::ECANCELED;
            }
            let f = &mut p.f;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(offset, total))) {
                Ok(true) => 0,
                Ok(false) => -libc::ECANCELED,
                Err(e) => {
                    p.panic = Some(e);
                    -libc::ECANCELED
                }
            }
        }
        let mut progress = Progress {
            f: progress,
            panic: None,
        };
        /// Frees the options on every path.
        struct Opts(ffi::rbd_image_options_t);
        impl Drop for Opts {
            fn drop(&mut self) {
                // SAFETY: created by rbd_image_options_create, destroyed once.
                unsafe { ffi::rbd_image_options_destroy(self.0) };
            }
        }
        let c_dest = cstring("image name", dest_name)?;
        let mut opts = Opts(std::ptr::null_mut());
        // SAFETY: fills the pointer with a new options object.
        unsafe { ffi::rbd_image_options_create(&mut opts.0) };
        let what = || format!("{} -> {}", self.object, dest.object(dest_name));
        if let Some(f) = features {
            // SAFETY: valid options object.
            let ret = unsafe {
                ffi::rbd_image_options_set_uint64(opts.0, ffi::RBD_IMAGE_OPTION_FEATURES, f.0)
            };
            check(ret, "rbd_image_options_set_uint64", what)?;
        }
        let data = &mut progress as *mut _ as *mut c_void;
        // SAFETY: open handle; valid dest ioctx and options; callback and
        // data outlive the call.
        let ret = unsafe {
            ffi::rbd_copy_with_progress3(
                self.handle,
                dest.raw(),
                c_dest.as_ptr(),
                opts.0,
                Some(trampoline::<F>),
                data,
            )
        };
        if let Some(p) = progress.panic.take() {
            std::panic::resume_unwind(p);
        }
        check(ret, "rbd_copy", what).map(|_| ())
    }

    /// Closes the image, reporting a failure that `Drop` would swallow.
    pub fn close(mut self) -> Result<()> {
        let handle = std::mem::replace(&mut self.handle, ptr::null_mut());
        // SAFETY: handle came from rbd_open and is closed once (Drop sees null).
        let ret = unsafe { ffi::rbd_close(handle) };
        super::open_now(false);
        self.check(ret, "rbd_close").map(|_| ())
    }
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: handle came from rbd_open and was not closed by close().
            unsafe { ffi::rbd_close(self.handle) };
            super::open_now(false);
        }
    }
}

impl std::fmt::Debug for Image<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({})", self.object)
    }
}
