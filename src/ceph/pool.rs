//! A pool's I/O context: pool-level mirroring and image create/open/remove.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::ptr;

use ceph::rados as sys;
use libc::{c_char, c_int, size_t};

use super::cluster::Cluster;
use super::error::{check, cstring, Result};
use super::ffi;
use super::image::{cstr_lossy, Image};
use super::image_mirror::convert_global_status;
use super::types::{Features, MirrorGlobalStatus, MirrorPeer, PeerDirection, PoolMirrorMode};

/// An open pool; borrows its cluster, so it cannot outlive the connection.
pub struct Pool<'c> {
    io: sys::rados_ioctx_t,
    /// The pool on the cluster's reader connection (null until the first
    /// read-only image open); see [`Cluster::reader`].
    reader_io: Cell<sys::rados_ioctx_t>,
    name: String,
    cluster: &'c Cluster,
    _not_sync: PhantomData<*mut ()>,
}

// SAFETY: an ioctx may move between threads; it is not shared (not Sync).
unsafe impl Send for Pool<'_> {}

impl<'c> Pool<'c> {
    pub(crate) fn open(cluster: &'c Cluster, name: &str) -> Result<Pool<'c>> {
        let c_name = cstring("pool name", name)?;
        let mut io: sys::rados_ioctx_t = ptr::null_mut();
        // SAFETY: connected cluster handle; out-pointer to a local.
        let ret = unsafe { sys::rados_ioctx_create(cluster.raw(), c_name.as_ptr(), &mut io) };
        check(ret, "rados_ioctx_create", || {
            format!("{}/{name}", cluster.name())
        })?;
        Ok(Pool {
            io,
            reader_io: Cell::new(ptr::null_mut()),
            name: name.to_string(),
            cluster,
            _not_sync: PhantomData,
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster this pool belongs to.
    pub fn cluster(&self) -> &'c Cluster {
        self.cluster
    }

    pub(crate) fn raw(&self) -> sys::rados_ioctx_t {
        self.io
    }

    /// This pool on the cluster's reader connection, where read-only
    /// images are opened (see [`Cluster::reader`]).
    pub(crate) fn reader_raw(&self) -> Result<sys::rados_ioctx_t> {
        if !self.reader_io.get().is_null() {
            return Ok(self.reader_io.get());
        }
        let reader = self.cluster.reader()?;
        let c_name = cstring("pool name", &self.name)?;
        let mut io: sys::rados_ioctx_t = ptr::null_mut();
        // SAFETY: connected cluster handle; out-pointer to a local.
        let ret = unsafe { sys::rados_ioctx_create(reader.raw(), c_name.as_ptr(), &mut io) };
        check(ret, "rados_ioctx_create", || {
            format!("{}/{}", reader.name(), self.name)
        })?;
        self.reader_io.set(io);
        Ok(io)
    }

    pub(crate) fn object(&self, image: &str) -> String {
        format!("{}/{image}", self.name)
    }

    /// Creates an image of `size` bytes with the given features (order 22, 4 MiB objects).
    pub fn create_image(&self, name: &str, size: u64, features: Features) -> Result<()> {
        let c_name = cstring("image name", name)?;
        let mut order: c_int = 22;
        // SAFETY: valid ioctx; name outlives the call; order is a local.
        let ret =
            unsafe { ffi::rbd_create2(self.io, c_name.as_ptr(), size, features.0, &mut order) };
        check(ret, "rbd_create2", || self.object(name)).map(|_| ())
    }

    /// Creates `name` in this pool as a clone of `parent`'s image
    /// `parent_image` at snapshot `parent_snap`, with `features` (layering
    /// among them), in clone format `format` (2 needs no protected
    /// snapshot; 1 does). The clone has the parent's size.
    pub fn clone_image(
        &self,
        parent: &Pool<'_>,
        parent_image: &str,
        parent_snap: &str,
        name: &str,
        features: Features,
        format: u64,
    ) -> Result<()> {
        /// Frees the options on every path.
        struct Opts(ffi::rbd_image_options_t);
        impl Drop for Opts {
            fn drop(&mut self) {
                // SAFETY: created by rbd_image_options_create, destroyed once.
                unsafe { ffi::rbd_image_options_destroy(self.0) };
            }
        }
        let what = || {
            format!(
                "{}@{parent_snap} -> {}",
                parent.object(parent_image),
                self.object(name)
            )
        };
        let p_name = cstring("image name", parent_image)?;
        let p_snap = cstring("snapshot name", parent_snap)?;
        let c_name = cstring("image name", name)?;
        let mut opts = Opts(ptr::null_mut());
        // SAFETY: fills the pointer with a new options object.
        unsafe { ffi::rbd_image_options_create(&mut opts.0) };
        for (opt, value) in [
            (ffi::RBD_IMAGE_OPTION_FEATURES, features.0),
            (ffi::RBD_IMAGE_OPTION_CLONE_FORMAT, format),
        ] {
            // SAFETY: valid options object.
            let ret = unsafe { ffi::rbd_image_options_set_uint64(opts.0, opt, value) };
            check(ret, "rbd_image_options_set_uint64", what)?;
        }
        // SAFETY: valid ioctxs; names and options outlive the call.
        let ret = unsafe {
            ffi::rbd_clone3(
                parent.raw(),
                p_name.as_ptr(),
                p_snap.as_ptr(),
                self.io,
                c_name.as_ptr(),
                opts.0,
            )
        };
        check(ret, "rbd_clone3", what).map(|_| ())
    }

    /// Removes an image (it must have no snapshots and no watchers).
    pub fn remove_image(&self, name: &str) -> Result<()> {
        let c_name = cstring("image name", name)?;
        // SAFETY: valid ioctx; name outlives the call.
        let ret = unsafe { ffi::rbd_remove(self.io, c_name.as_ptr()) };
        check(ret, "rbd_remove", || self.object(name)).map(|_| ())
    }

    /// Renames an image within the pool.
    pub fn rename_image(&self, from: &str, to: &str) -> Result<()> {
        let f = cstring("image name", from)?;
        let t = cstring("image name", to)?;
        // SAFETY: valid ioctx; names outlive the call.
        let ret = unsafe { ffi::rbd_rename(self.io, f.as_ptr(), t.as_ptr()) };
        check(ret, "rbd_rename", || {
            format!("{} -> {to}", self.object(from))
        })
        .map(|_| ())
    }

    /// An extended attribute of a RADOS object in this pool; None when the
    /// object or the attribute is missing.
    pub fn object_xattr(&self, object: &str, name: &str) -> Result<Option<String>> {
        let o = cstring("object name", object)?;
        let n = cstring("attribute name", name)?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: valid ioctx; names outlive the call; buf is writable for its length.
        let ret = unsafe {
            sys::rados_getxattr(
                self.io,
                o.as_ptr(),
                n.as_ptr(),
                buf.as_mut_ptr() as *mut c_char,
                buf.len() as size_t,
            )
        };
        if ret == -libc::ENOENT || ret == -libc::ENODATA {
            return Ok(None);
        }
        let len = check(ret, "rados_getxattr", || {
            format!("{}/{object} {name}", self.name)
        })?;
        buf.truncate(len as usize);
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    /// Sets an extended attribute of a RADOS object, creating the object.
    pub fn set_object_xattr(&self, object: &str, name: &str, value: &str) -> Result<()> {
        let o = cstring("object name", object)?;
        let n = cstring("attribute name", name)?;
        // SAFETY: valid ioctx; names and value outlive the call.
        let ret = unsafe {
            sys::rados_setxattr(
                self.io,
                o.as_ptr(),
                n.as_ptr(),
                value.as_ptr() as *const c_char,
                value.len() as size_t,
            )
        };
        check(ret, "rados_setxattr", || {
            format!("{}/{object} {name}", self.name)
        })
        .map(|_| ())
    }

    /// Reads up to `len` bytes of a RADOS object at `offset`; fewer when the
    /// object ends sooner, none when it does not exist.
    pub fn read_object(&self, object: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        super::counted(false);
        let o = cstring("object name", object)?;
        let mut buf = vec![0u8; len];
        // SAFETY: valid ioctx; name outlives the call; buf is writable for its length.
        let ret = unsafe {
            sys::rados_read(
                self.io,
                o.as_ptr(),
                buf.as_mut_ptr() as *mut c_char,
                buf.len() as size_t,
                offset,
            )
        };
        if ret == -libc::ENOENT {
            return Ok(Vec::new());
        }
        let n = check(ret, "rados_read", || format!("{}/{object}", self.name))?;
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// Writes `data` into a RADOS object at `offset`, creating the object.
    pub fn write_object(&self, object: &str, offset: u64, data: &[u8]) -> Result<()> {
        let o = cstring("object name", object)?;
        // SAFETY: valid ioctx; name and data outlive the call.
        let ret = unsafe {
            sys::rados_write(
                self.io,
                o.as_ptr(),
                data.as_ptr() as *const c_char,
                data.len() as size_t,
                offset,
            )
        };
        check(ret, "rados_write", || format!("{}/{object}", self.name)).map(|_| ())
    }

    /// Removes a RADOS object; an absent one is not an error.
    pub fn remove_object(&self, object: &str) -> Result<()> {
        let o = cstring("object name", object)?;
        // SAFETY: valid ioctx; name outlives the call.
        let ret = unsafe { sys::rados_remove(self.io, o.as_ptr()) };
        if ret == -libc::ENOENT {
            return Ok(());
        }
        check(ret, "rados_remove", || format!("{}/{object}", self.name)).map(|_| ())
    }

    /// Whether a RADOS object exists (one stat).
    pub fn object_exists(&self, object: &str) -> Result<bool> {
        super::counted(false);
        let o = cstring("object name", object)?;
        let (mut size, mut mtime): (u64, libc::time_t) = (0, 0);
        // SAFETY: valid ioctx; name outlives the call; out-pointers to locals.
        let ret = unsafe { sys::rados_stat(self.io, o.as_ptr(), &mut size, &mut mtime) };
        if ret == -libc::ENOENT {
            return Ok(false);
        }
        check(ret, "rados_stat", || format!("{}/{object}", self.name)).map(|_| true)
    }

    /// Whether the pool holds a live image of this RBD id: its header
    /// exists and it is not in the pool's trash (`rbd trash mv`, Cinder's
    /// deferred deletion), which keeps the header of an image it holds.
    pub fn image_id_live(&self, id: &str) -> Result<bool> {
        if !self.object_exists(&format!("rbd_header.{id}"))? {
            return Ok(false);
        }
        super::counted(false);
        let c = cstring("image id", id)?;
        // SAFETY: zeroed is a valid rbd_trash_image_info_t (null pointers,
        // zero times); filled by the call and released by its cleanup only
        // when the call succeeded.
        let mut info: ffi::rbd_trash_image_info_t = unsafe { std::mem::zeroed() };
        let ret = unsafe { ffi::rbd_trash_get(self.io, c.as_ptr(), &mut info) };
        if ret == -libc::ENOENT {
            return Ok(true);
        }
        check(ret, "rbd_trash_get", || format!("{}/{id}", self.name))?;
        // SAFETY: info was filled by a successful rbd_trash_get.
        unsafe { ffi::rbd_trash_get_cleanup(&mut info) };
        Ok(false)
    }

    /// Whether the pool holds an image (format 2) of this name: its
    /// `rbd_id.<name>` object, one read and no image opened (librbd builds a
    /// whole configuration for every open, ~1.5 ms of CPU).
    pub fn image_exists(&self, name: &str) -> Result<bool> {
        Ok(self.image_id_of(name)?.is_some())
    }

    /// Opens an image read-write at its head.
    pub fn open_image(&self, name: &str) -> Result<Image<'_>> {
        Image::open(self, name, None, false)
    }

    /// Opens an image read-only, at its head or at a snapshot.
    pub fn open_image_read_only(&self, name: &str, snap: Option<&str>) -> Result<Image<'_>> {
        Image::open(self, name, snap, true)
    }

    /// The pool's mirroring mode.
    pub fn mirror_mode(&self) -> Result<PoolMirrorMode> {
        let mut mode: c_int = 0;
        // SAFETY: valid ioctx; out-pointer to a local.
        let ret = unsafe { ffi::rbd_mirror_mode_get(self.io, &mut mode) };
        check(ret, "rbd_mirror_mode_get", || self.name.clone())?;
        Ok(match mode {
            ffi::RBD_MIRROR_MODE_IMAGE => PoolMirrorMode::Image,
            ffi::RBD_MIRROR_MODE_POOL => PoolMirrorMode::Pool,
            _ => PoolMirrorMode::Disabled,
        })
    }

    /// This pool's own mirror uuid (what peers see as its site's id).
    pub fn mirror_uuid(&self) -> Result<String> {
        let mut buf = vec![0 as c_char; 64];
        let mut len: size_t = buf.len();
        // SAFETY: buffer and length match.
        let ret = unsafe { ffi::rbd_mirror_uuid_get(self.io, buf.as_mut_ptr(), &mut len) };
        check(ret, "rbd_mirror_uuid_get", || self.name.clone())?;
        // SAFETY: librbd NUL-terminates within the buffer.
        Ok(unsafe { cstr_lossy(buf.as_ptr()) })
    }

    /// The mirroring status of every mirrored image of the pool: one
    /// listing (1,024 images a call) instead of an image open per image.
    pub fn mirror_statuses(&self) -> Result<Vec<MirrorGlobalStatus>> {
        const PAGE: usize = 1024;
        let mut out = Vec::new();
        let mut start = CString::default();
        loop {
            super::counted(false);
            let mut ids: Vec<*mut c_char> = vec![ptr::null_mut(); PAGE];
            // SAFETY: plain C data; zeroed is a valid initial value.
            let mut sts: Vec<ffi::rbd_mirror_image_global_status_t> =
                (0..PAGE).map(|_| unsafe { std::mem::zeroed() }).collect();
            let mut len: size_t = 0;
            // SAFETY: valid ioctx; both arrays hold PAGE entries; librbd
            // writes the count it filled.
            let ret = unsafe {
                ffi::rbd_mirror_image_global_status_list(
                    self.io,
                    start.as_ptr(),
                    PAGE,
                    ids.as_mut_ptr(),
                    sts.as_mut_ptr(),
                    &mut len,
                )
            };
            check(ret, "rbd_mirror_image_global_status_list", || {
                self.name.clone()
            })?;
            let n = len.min(PAGE);
            for st in &sts[..n] {
                // SAFETY: librbd filled the first `len` entries.
                out.push(unsafe { convert_global_status(st) });
            }
            let last = (n > 0).then(|| {
                // SAFETY: librbd filled the first `len` ids.
                unsafe { CStr::from_ptr(ids[n - 1]) }.to_owned()
            });
            // SAFETY: frees what librbd allocated in the first `len` entries.
            unsafe {
                ffi::rbd_mirror_image_global_status_list_cleanup(
                    ids.as_mut_ptr(),
                    sts.as_mut_ptr(),
                    n,
                )
            };
            // librbd leaves out images being disabled after it takes a
            // page, so a short page is not the last: only an empty one is.
            match last {
                Some(id) => start = id,
                None => return Ok(out),
            }
        }
    }

    /// The pool's configured mirror peers.
    pub fn mirror_peers(&self) -> Result<Vec<MirrorPeer>> {
        let mut max: c_int = 8;
        loop {
            // SAFETY: rbd_mirror_peer_site_t is plain C data; zeroed is a valid empty value.
            let mut peers: Vec<ffi::rbd_mirror_peer_site_t> =
                (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
            // SAFETY: array of `max` entries; librbd writes the count back.
            let ret =
                unsafe { ffi::rbd_mirror_peer_site_list(self.io, peers.as_mut_ptr(), &mut max) };
            if ret == -libc::ERANGE {
                continue; // max now holds the needed count
            }
            check(ret, "rbd_mirror_peer_site_list", || self.name.clone())?;
            let out = peers[..max as usize]
                .iter()
                .map(|p| MirrorPeer {
                    // SAFETY: librbd filled these strings for the first `max` entries.
                    uuid: unsafe { cstr_lossy(p.uuid) },
                    direction: match p.direction {
                        ffi::RBD_MIRROR_PEER_DIRECTION_RX => PeerDirection::RxOnly,
                        ffi::RBD_MIRROR_PEER_DIRECTION_TX => PeerDirection::TxOnly,
                        _ => PeerDirection::RxTx,
                    },
                    // SAFETY: as above.
                    site_name: unsafe { cstr_lossy(p.site_name) },
                    // SAFETY: as above.
                    mirror_uuid: unsafe { cstr_lossy(p.mirror_uuid) },
                    // SAFETY: as above.
                    client_name: unsafe { cstr_lossy(p.client_name) },
                })
                .collect();
            // SAFETY: frees exactly the `max` entries librbd filled.
            unsafe { ffi::rbd_mirror_peer_site_list_cleanup(peers.as_mut_ptr(), max) };
            return Ok(out);
        }
    }
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        // SAFETY: io came from rados_ioctx_create and is destroyed only here.
        unsafe { sys::rados_ioctx_destroy(self.io) };
        let reader_io = self.reader_io.get();
        if !reader_io.is_null() {
            // SAFETY: as above; its connection outlives the pool.
            unsafe { sys::rados_ioctx_destroy(reader_io) };
        }
    }
}

impl std::fmt::Debug for Pool<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({}/{})", self.cluster.name(), self.name)
    }
}
