//! Per-image mirroring of an open [`Image`]: enable, disable, promote,
//! demote, mirror snapshots and the global status.

use std::ffi::CStr;

use libc::{c_char, c_int};

use super::error::{check, ErrorKind, Result};
use super::ffi;
use super::image::{cstr_lossy, Image};
use super::types::{
    ImageMirrorInfo, ImageMirrorState, MirrorGlobalStatus, MirrorMode, MirrorSnapState,
    MirrorSnapshot, SiteState, SiteStatus, SnapNamespace,
};

impl Image<'_> {
    /// The mirror-namespace details of snapshot `snap_id` (snapshot-based
    /// mirroring). Fails with InvalidArgument for a non-mirror snapshot.
    pub fn mirror_snapshot(&self, snap_id: u64) -> Result<MirrorSnapshot> {
        // SAFETY: plain C data; zeroed is a valid initial value.
        let mut ns: ffi::rbd_snap_mirror_namespace_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<ffi::rbd_snap_mirror_namespace_t>();
        // SAFETY: open handle; struct and its size match.
        let ret =
            unsafe { ffi::rbd_snap_get_mirror_namespace(self.handle, snap_id, &mut ns, size) };
        check(ret, "rbd_snap_get_mirror_namespace", || {
            format!("{}@{snap_id}", self.object())
        })?;
        let mut peer_uuids = Vec::with_capacity(ns.mirror_peer_uuids_count);
        let mut p = ns.mirror_peer_uuids as *const c_char;
        for _ in 0..ns.mirror_peer_uuids_count {
            if p.is_null() {
                break;
            }
            // SAFETY: librbd packs `count` NUL-terminated strings back to back.
            let s = unsafe { CStr::from_ptr(p) };
            peer_uuids.push(s.to_string_lossy().into_owned());
            // SAFETY: stays within the packed list: skip the string and its NUL.
            p = unsafe { p.add(s.to_bytes().len() + 1) };
        }
        let out = MirrorSnapshot {
            snap_id,
            state: match ns.state {
                0 => MirrorSnapState::Primary,
                1 => MirrorSnapState::PrimaryDemoted,
                2 => MirrorSnapState::NonPrimary,
                _ => MirrorSnapState::NonPrimaryDemoted,
            },
            complete: ns.complete,
            // SAFETY: string librbd filled (or null).
            primary_mirror_uuid: unsafe { cstr_lossy(ns.primary_mirror_uuid) },
            primary_snap_id: ns.primary_snap_id,
            last_copied_object_number: ns.last_copied_object_number,
            peer_uuids,
        };
        // SAFETY: frees what librbd allocated in `ns`, once.
        unsafe { ffi::rbd_snap_mirror_namespace_cleanup(&mut ns, size) };
        Ok(out)
    }

    /// Every mirror snapshot of the image with its details, oldest first.
    pub fn mirror_snapshots(&self) -> Result<Vec<MirrorSnapshot>> {
        self.snapshots()?
            .into_iter()
            .filter(|s| s.namespace == SnapNamespace::Mirror)
            .map(|s| self.mirror_snapshot(s.id))
            .collect()
    }

    /// Removes this primary image's mirror snapshots that no peer is linked
    /// to any more, but the newest: librbd unlinks them as newer ones are
    /// taken and removes them only when one more is taken, which then costs
    /// a second monitor round trip. Returns how many went.
    pub fn mirror_snapshots_prune(&self) -> Result<usize> {
        let snaps = self.mirror_snapshots()?;
        let Some((_, older)) = snaps.split_last() else {
            return Ok(0);
        };
        let mut gone = 0;
        for s in older {
            if s.state == MirrorSnapState::Primary && s.peer_uuids.is_empty() {
                // SAFETY: open handle.
                let ret = unsafe { ffi::rbd_snap_remove_by_id(self.handle, s.snap_id) };
                self.check(ret, "rbd_snap_remove_by_id")?;
                gone += 1;
            }
        }
        Ok(gone)
    }

    /// Enables mirroring of this image in the given mode (image-mode pools).
    pub fn mirror_enable(&self, mode: MirrorMode) -> Result<()> {
        let m = match mode {
            MirrorMode::Journal => ffi::RBD_MIRROR_IMAGE_MODE_JOURNAL,
            MirrorMode::Snapshot => ffi::RBD_MIRROR_IMAGE_MODE_SNAPSHOT,
        };
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_mirror_image_enable2(self.handle, m) };
        self.check(ret, "rbd_mirror_image_enable").map(|_| ())
    }

    /// Disables mirroring. On a primary image, rbd-mirror then deletes the
    /// peer's copy; `force` also works on a non-primary image.
    pub fn mirror_disable(&self, force: bool) -> Result<()> {
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_mirror_image_disable(self.handle, force) };
        self.check(ret, "rbd_mirror_image_disable").map(|_| ())
    }

    /// Promotes a non-primary image to primary.
    pub fn mirror_promote(&self, force: bool) -> Result<()> {
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_mirror_image_promote(self.handle, force) };
        self.check(ret, "rbd_mirror_image_promote").map(|_| ())
    }

    /// Demotes a primary image to non-primary.
    pub fn mirror_demote(&self) -> Result<()> {
        // SAFETY: open handle.
        let ret = unsafe { ffi::rbd_mirror_image_demote(self.handle) };
        self.check(ret, "rbd_mirror_image_demote").map(|_| ())
    }

    /// Takes a mirror snapshot (snapshot-mode mirroring); returns its id.
    pub fn mirror_snapshot_create(&self) -> Result<u64> {
        let mut id: u64 = 0;
        // SAFETY: open handle; out-pointer to a local.
        let ret = unsafe { ffi::rbd_mirror_image_create_snapshot(self.handle, &mut id) };
        self.check(ret, "rbd_mirror_image_create_snapshot")?;
        Ok(id)
    }

    /// Global id, state and primary flag.
    pub fn mirror_info(&self) -> Result<ImageMirrorInfo> {
        // SAFETY: plain C data; zeroed is a valid initial value.
        let mut info: ffi::rbd_mirror_image_info_t = unsafe { std::mem::zeroed() };
        // SAFETY: open handle; struct and its size match.
        let ret = unsafe {
            ffi::rbd_mirror_image_get_info(
                self.handle,
                &mut info,
                std::mem::size_of::<ffi::rbd_mirror_image_info_t>(),
            )
        };
        self.check(ret, "rbd_mirror_image_get_info")?;
        let out = convert_info(&info);
        // SAFETY: frees the strings librbd allocated in `info`.
        unsafe { ffi::rbd_mirror_image_get_info_cleanup(&mut info) };
        Ok(out)
    }

    /// The image's mirroring mode, or None when mirroring is disabled.
    pub fn mirror_mode(&self) -> Result<Option<MirrorMode>> {
        if self.mirror_info()?.state == ImageMirrorState::Disabled {
            return Ok(None);
        }
        let mut m: c_int = 0;
        // SAFETY: open handle; out-pointer to a local.
        let ret = unsafe { ffi::rbd_mirror_image_get_mode(self.handle, &mut m) };
        match self.check(ret, "rbd_mirror_image_get_mode") {
            Err(e) if e.kind() == ErrorKind::InvalidArgument => Ok(None),
            Err(e) => Err(e),
            Ok(_) => Ok(Some(if m == ffi::RBD_MIRROR_IMAGE_MODE_SNAPSHOT {
                MirrorMode::Snapshot
            } else {
                MirrorMode::Journal
            })),
        }
    }

    /// The mirroring status every site reports for this image (local and
    /// remote), which the `rbd` CLI does not show from the primary side.
    pub fn mirror_global_status(&self) -> Result<MirrorGlobalStatus> {
        // SAFETY: plain C data; zeroed is a valid initial value.
        let mut st: ffi::rbd_mirror_image_global_status_t = unsafe { std::mem::zeroed() };
        // SAFETY: open handle; struct and its size match.
        let ret = unsafe {
            ffi::rbd_mirror_image_get_global_status(
                self.handle,
                &mut st,
                std::mem::size_of::<ffi::rbd_mirror_image_global_status_t>(),
            )
        };
        self.check(ret, "rbd_mirror_image_get_global_status")?;
        // SAFETY: librbd filled `st`.
        let out = unsafe { convert_global_status(&st) };
        // SAFETY: frees everything librbd allocated in `st`.
        unsafe { ffi::rbd_mirror_image_global_status_cleanup(&mut st) };
        Ok(out)
    }
}

/// A global mirroring status as librbd filled it, copied out.
///
/// # Safety
/// `st` was filled by librbd (its strings and site array valid or null).
pub(crate) unsafe fn convert_global_status(
    st: &ffi::rbd_mirror_image_global_status_t,
) -> MirrorGlobalStatus {
    let sites = if st.site_statuses.is_null() {
        Vec::new()
    } else {
        // SAFETY: librbd allocated site_statuses_count entries.
        unsafe { std::slice::from_raw_parts(st.site_statuses, st.site_statuses_count as usize) }
            .iter()
            .map(|s| SiteStatus {
                // SAFETY: strings librbd filled in each entry.
                mirror_uuid: unsafe { cstr_lossy(s.mirror_uuid) },
                state: SiteState::from_raw(s.state),
                // SAFETY: as above.
                description: unsafe { cstr_lossy(s.description) },
                last_update: s.last_update,
                up: s.up,
            })
            .collect()
    };
    MirrorGlobalStatus {
        // SAFETY: string librbd filled.
        name: unsafe { cstr_lossy(st.name) },
        info: convert_info(&st.info),
        sites,
    }
}

fn convert_info(info: &ffi::rbd_mirror_image_info_t) -> ImageMirrorInfo {
    ImageMirrorInfo {
        // SAFETY: librbd filled the string (or left it null).
        global_id: unsafe { cstr_lossy(info.global_id) },
        state: match info.state {
            ffi::RBD_MIRROR_IMAGE_DISABLING => ImageMirrorState::Disabling,
            ffi::RBD_MIRROR_IMAGE_ENABLED => ImageMirrorState::Enabled,
            _ => ImageMirrorState::Disabled,
        },
        primary: info.primary,
    }
}
