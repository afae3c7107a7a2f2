//! Raw declarations of the librbd C functions ferry uses (librbd.h, Ceph 16.2).
//! No logic here: the safe layer in `image.rs` and `pool.rs` owns every handle.
#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_void, size_t, ssize_t, time_t};

pub use ceph::rados::rados_ioctx_t;

pub type rbd_image_t = *mut c_void;
pub type rbd_image_options_t = *mut c_void;
pub type rbd_completion_t = *mut c_void;
pub type rbd_callback_t = Option<unsafe extern "C" fn(cb: rbd_completion_t, arg: *mut c_void)>;
/// `rbd_diff_iterate2`'s callback: (offset, length, exists, arg).
pub type rbd_diff_cb_t = Option<
    unsafe extern "C" fn(offset: u64, len: size_t, exists: c_int, arg: *mut c_void) -> c_int,
>;

/// librados op flags (librados.h) that librbd's `*2` I/O calls pass on.
pub const LIBRADOS_OP_FLAG_FADVISE_SEQUENTIAL: c_int = 0x8;
pub const LIBRADOS_OP_FLAG_FADVISE_NOCACHE: c_int = 0x40;
pub const RBD_IMAGE_OPTION_FEATURES: c_int = 1;
pub const RBD_IMAGE_OPTION_CLONE_FORMAT: c_int = 12;
pub type librbd_progress_fn_t =
    Option<unsafe extern "C" fn(offset: u64, total: u64, ptr: *mut c_void) -> c_int>;

pub const RBD_SNAP_NAMESPACE_TYPE_USER: c_int = 0;
pub const RBD_SNAP_NAMESPACE_TYPE_GROUP: c_int = 1;
pub const RBD_SNAP_NAMESPACE_TYPE_TRASH: c_int = 2;
pub const RBD_SNAP_NAMESPACE_TYPE_MIRROR: c_int = 3;

pub const RBD_MIRROR_MODE_IMAGE: c_int = 1;
pub const RBD_MIRROR_MODE_POOL: c_int = 2;

pub const RBD_MIRROR_PEER_DIRECTION_RX: c_int = 0;
pub const RBD_MIRROR_PEER_DIRECTION_TX: c_int = 1;

pub const RBD_MIRROR_IMAGE_MODE_JOURNAL: c_int = 0;
pub const RBD_MIRROR_IMAGE_MODE_SNAPSHOT: c_int = 1;

pub const RBD_MIRROR_IMAGE_DISABLING: c_int = 0;
pub const RBD_MIRROR_IMAGE_ENABLED: c_int = 1;

#[repr(C)]
pub struct rbd_image_info_t {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; 24],
    pub parent_pool: i64,
    pub parent_name: [c_char; 96],
}

#[repr(C)]
pub struct rbd_snap_info_t {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}

#[repr(C)]
pub struct rbd_snap_mirror_namespace_t {
    pub state: c_int,
    pub mirror_peer_uuids_count: size_t,
    /// `mirror_peer_uuids_count` NUL-terminated strings, back to back.
    pub mirror_peer_uuids: *mut c_char,
    pub complete: bool,
    pub primary_mirror_uuid: *mut c_char,
    pub primary_snap_id: u64,
    pub last_copied_object_number: u64,
}

#[repr(C)]
pub struct rbd_linked_image_spec_t {
    pub pool_id: i64,
    pub pool_name: *mut c_char,
    pub pool_namespace: *mut c_char,
    pub image_id: *mut c_char,
    pub image_name: *mut c_char,
    pub trash: bool,
}

#[repr(C)]
pub struct rbd_snap_spec_t {
    pub id: u64,
    pub namespace_type: c_int,
    pub name: *mut c_char,
}

pub const RBD_LOCK_MODE_EXCLUSIVE: c_int = 0;

#[repr(C)]
pub struct rbd_image_watcher_t {
    pub addr: *mut c_char,
    pub id: i64,
    pub cookie: u64,
}

#[repr(C)]
pub struct rbd_mirror_peer_site_t {
    pub uuid: *mut c_char,
    pub direction: c_int,
    pub site_name: *mut c_char,
    pub mirror_uuid: *mut c_char,
    pub client_name: *mut c_char,
    pub last_seen: time_t,
}

#[repr(C)]
pub struct rbd_mirror_image_info_t {
    pub global_id: *mut c_char,
    pub state: c_int,
    pub primary: bool,
}

#[repr(C)]
pub struct rbd_mirror_image_site_status_t {
    pub mirror_uuid: *mut c_char,
    pub state: c_int,
    pub description: *mut c_char,
    pub last_update: time_t,
    pub up: bool,
}

#[repr(C)]
pub struct rbd_mirror_image_global_status_t {
    pub name: *mut c_char,
    pub info: rbd_mirror_image_info_t,
    pub site_statuses_count: u32,
    pub site_statuses: *mut rbd_mirror_image_site_status_t,
}

#[repr(C)]
pub struct rbd_trash_image_info_t {
    pub id: *mut c_char,
    pub name: *mut c_char,
    pub source: c_int,
    pub deletion_time: time_t,
    pub deferment_end_time: time_t,
}

#[link(name = "rbd")]
extern "C" {
    pub fn rbd_trash_get(
        io: rados_ioctx_t,
        id: *const c_char,
        info: *mut rbd_trash_image_info_t,
    ) -> c_int;
    pub fn rbd_trash_get_cleanup(info: *mut rbd_trash_image_info_t);
    pub fn rbd_version(major: *mut c_int, minor: *mut c_int, extra: *mut c_int);

    pub fn rbd_create2(
        io: rados_ioctx_t,
        name: *const c_char,
        size: u64,
        features: u64,
        order: *mut c_int,
    ) -> c_int;
    pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;
    pub fn rbd_clone3(
        p_ioctx: rados_ioctx_t,
        p_name: *const c_char,
        p_snapname: *const c_char,
        c_ioctx: rados_ioctx_t,
        c_name: *const c_char,
        c_opts: rbd_image_options_t,
    ) -> c_int;
    pub fn rbd_resize(image: rbd_image_t, size: u64) -> c_int;
    pub fn rbd_rename(io: rados_ioctx_t, srcname: *const c_char, destname: *const c_char) -> c_int;
    pub fn rbd_snap_set(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_set_by_id(image: rbd_image_t, snap_id: u64) -> c_int;
    pub fn rbd_open(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_open_read_only(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: rbd_image_t) -> c_int;

    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: size_t) -> c_int;
    pub fn rbd_get_features(image: rbd_image_t, features: *mut u64) -> c_int;
    pub fn rbd_get_id(image: rbd_image_t, id: *mut c_char, id_len: size_t) -> c_int;
    pub fn rbd_update_features(image: rbd_image_t, features: u64, enabled: u8) -> c_int;

    pub fn rbd_read(image: rbd_image_t, ofs: u64, len: size_t, buf: *mut c_char) -> ssize_t;
    pub fn rbd_write(image: rbd_image_t, ofs: u64, len: size_t, buf: *const c_char) -> ssize_t;

    pub fn rbd_flush(image: rbd_image_t) -> c_int;
    pub fn rbd_write_zeroes(
        image: rbd_image_t,
        ofs: u64,
        len: size_t,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> ssize_t;
    pub fn rbd_diff_iterate2(
        image: rbd_image_t,
        fromsnapname: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: rbd_diff_cb_t,
        arg: *mut c_void,
    ) -> c_int;

    pub fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: rbd_callback_t,
        c: *mut rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_read2(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *mut c_char,
        c: rbd_completion_t,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_write2(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *const c_char,
        c: rbd_completion_t,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_is_complete(c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_wait_for_complete(c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> ssize_t;
    pub fn rbd_aio_release(c: rbd_completion_t);

    pub fn rbd_metadata_get(
        image: rbd_image_t,
        key: *const c_char,
        value: *mut c_char,
        val_len: *mut size_t,
    ) -> c_int;
    pub fn rbd_metadata_list(
        image: rbd_image_t,
        start: *const c_char,
        max: u64,
        keys: *mut c_char,
        key_len: *mut size_t,
        values: *mut c_char,
        vals_len: *mut size_t,
    ) -> c_int;
    pub fn rbd_metadata_remove(image: rbd_image_t, key: *const c_char) -> c_int;
    pub fn rbd_metadata_set(image: rbd_image_t, key: *const c_char, value: *const c_char) -> c_int;
    pub fn rbd_snap_get_timestamp(
        image: rbd_image_t,
        snap_id: u64,
        timestamp: *mut libc::timespec,
    ) -> c_int;
    pub fn rbd_snap_list(image: rbd_image_t, snaps: *mut rbd_snap_info_t, max: *mut c_int)
        -> c_int;
    pub fn rbd_snap_list_end(snaps: *mut rbd_snap_info_t);
    pub fn rbd_snap_get_namespace_type(image: rbd_image_t, snap_id: u64, ns: *mut c_int) -> c_int;
    pub fn rbd_snap_get_mirror_namespace(
        image: rbd_image_t,
        snap_id: u64,
        ns: *mut rbd_snap_mirror_namespace_t,
        size: size_t,
    ) -> c_int;
    pub fn rbd_snap_mirror_namespace_cleanup(
        ns: *mut rbd_snap_mirror_namespace_t,
        size: size_t,
    ) -> c_int;
    pub fn rbd_snap_create(image: rbd_image_t, name: *const c_char) -> c_int;
    pub fn rbd_snap_remove(image: rbd_image_t, name: *const c_char) -> c_int;
    pub fn rbd_snap_remove_by_id(image: rbd_image_t, snap_id: u64) -> c_int;
    pub fn rbd_snap_protect(image: rbd_image_t, name: *const c_char) -> c_int;
    pub fn rbd_snap_unprotect(image: rbd_image_t, name: *const c_char) -> c_int;
    pub fn rbd_snap_is_protected(
        image: rbd_image_t,
        name: *const c_char,
        is_protected: *mut c_int,
    ) -> c_int;

    pub fn rbd_get_parent(
        image: rbd_image_t,
        parent_image: *mut rbd_linked_image_spec_t,
        parent_snap: *mut rbd_snap_spec_t,
    ) -> c_int;
    pub fn rbd_linked_image_spec_cleanup(image: *mut rbd_linked_image_spec_t);
    pub fn rbd_snap_spec_cleanup(snap: *mut rbd_snap_spec_t);
    pub fn rbd_get_op_features(image: rbd_image_t, op_features: *mut u64) -> c_int;
    pub fn rbd_lock_acquire(image: rbd_image_t, lock_mode: c_int) -> c_int;
    pub fn rbd_lock_release(image: rbd_image_t) -> c_int;

    pub fn rbd_watchers_list(
        image: rbd_image_t,
        watchers: *mut rbd_image_watcher_t,
        max: *mut size_t,
    ) -> c_int;
    pub fn rbd_watchers_list_cleanup(watchers: *mut rbd_image_watcher_t, n: size_t);
    pub fn rbd_list_lockers(
        image: rbd_image_t,
        exclusive: *mut c_int,
        tag: *mut c_char,
        tag_len: *mut size_t,
        clients: *mut c_char,
        clients_len: *mut size_t,
        cookies: *mut c_char,
        cookies_len: *mut size_t,
        addrs: *mut c_char,
        addrs_len: *mut size_t,
    ) -> ssize_t;

    pub fn rbd_rebuild_object_map(
        image: rbd_image_t,
        cb: librbd_progress_fn_t,
        data: *mut c_void,
    ) -> c_int;
    pub fn rbd_copy_with_progress3(
        image: rbd_image_t,
        dest_io: rados_ioctx_t,
        destname: *const c_char,
        opts: rbd_image_options_t,
        cb: librbd_progress_fn_t,
        data: *mut c_void,
    ) -> c_int;
    pub fn rbd_image_options_create(opts: *mut rbd_image_options_t);
    pub fn rbd_image_options_destroy(opts: rbd_image_options_t);
    pub fn rbd_image_options_set_uint64(
        opts: rbd_image_options_t,
        optname: c_int,
        optval: u64,
    ) -> c_int;

    pub fn rbd_mirror_mode_get(io: rados_ioctx_t, mode: *mut c_int) -> c_int;
    pub fn rbd_mirror_uuid_get(io: rados_ioctx_t, uuid: *mut c_char, len: *mut size_t) -> c_int;
    pub fn rbd_mirror_peer_site_list(
        io: rados_ioctx_t,
        peers: *mut rbd_mirror_peer_site_t,
        max: *mut c_int,
    ) -> c_int;
    pub fn rbd_mirror_peer_site_list_cleanup(peers: *mut rbd_mirror_peer_site_t, n: c_int);

    pub fn rbd_mirror_image_enable2(image: rbd_image_t, mode: c_int) -> c_int;
    pub fn rbd_mirror_image_disable(image: rbd_image_t, force: bool) -> c_int;
    pub fn rbd_mirror_image_promote(image: rbd_image_t, force: bool) -> c_int;
    pub fn rbd_mirror_image_demote(image: rbd_image_t) -> c_int;
    pub fn rbd_mirror_image_create_snapshot(image: rbd_image_t, snap_id: *mut u64) -> c_int;
    pub fn rbd_mirror_image_get_info(
        image: rbd_image_t,
        info: *mut rbd_mirror_image_info_t,
        size: size_t,
    ) -> c_int;
    pub fn rbd_mirror_image_get_info_cleanup(info: *mut rbd_mirror_image_info_t);
    pub fn rbd_mirror_image_get_mode(image: rbd_image_t, mode: *mut c_int) -> c_int;
    pub fn rbd_mirror_image_get_global_status(
        image: rbd_image_t,
        status: *mut rbd_mirror_image_global_status_t,
        size: size_t,
    ) -> c_int;
    pub fn rbd_mirror_image_global_status_cleanup(status: *mut rbd_mirror_image_global_status_t);
    pub fn rbd_mirror_image_global_status_list(
        io: rados_ioctx_t,
        start_id: *const c_char,
        max: size_t,
        image_ids: *mut *mut c_char,
        images: *mut rbd_mirror_image_global_status_t,
        len: *mut size_t,
    ) -> c_int;
    pub fn rbd_mirror_image_global_status_list_cleanup(
        image_ids: *mut *mut c_char,
        images: *mut rbd_mirror_image_global_status_t,
        len: size_t,
    );
}
