//! What a plain image is, read from its RADOS objects without opening it.
//!
//! Opening an image costs librbd ~1.5 ms of CPU (every `ImageCtx` builds
//! its own configuration), which dominates planning a thousand images. Most
//! images are plain: format 2, no snapshot, no parent, not mirrored, nobody
//! holding its exclusive lock, the common features. For those, one batched
//! read of `rbd_header.<id>` (the `rbd` and `lock` object classes, as librbd
//! itself reads them) and three small reads give every fact a plan needs.
//! Any image that is not plain, or any answer not understood, gives `None`:
//! the caller opens the image as before, so the two paths never disagree.

use std::ffi::CString;
use std::ptr;

use ceph::rados as sys;
use libc::{c_char, c_int, size_t};

use super::error::{cstring, Result};
use super::pool::Pool;
use super::types::{Features, ImageMirrorState, MirrorMode, MirrorSnapState, MirrorSnapshot};

/// librados' `LIBRADOS_OP_FLAG_FAILOK`: a failed op does not fail the others.
const OP_FLAG_FAILOK: c_int = 0x2;
/// Ceph's `CEPH_NOSNAP`: the image's head.
const NOSNAP: u64 = u64::MAX - 1;
/// Metadata entries asked for at once; a full answer falls back to opening.
const METADATA_MAX: u64 = 1024;
/// Features a plain image may have (layering through journaling); data-pool,
/// operations, migrating, non-primary and any unknown bit mean "open it".
const PLAIN_FEATURES: u64 = (1 << 7) - 1;

/// The facts of a plain image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainImage {
    pub id: String,
    pub size: u64,
    pub features: Features,
    /// Its metadata (`rbd image-meta`), key and value.
    pub metadata: Vec<(String, String)>,
    /// It starts with a LUKS header.
    pub luks: bool,
}

/// Little-endian reader of Ceph's encoding.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        self.bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_string)
    }
    /// The start of a versioned struct (`ENCODE_START`): its body, when
    /// its compat version is one this reader knows.
    fn versioned(&mut self, compat_max: u8) -> Option<Dec<'a>> {
        let _v = self.u8()?;
        let compat = self.u8()?;
        let body = self.bytes()?;
        (compat <= compat_max).then_some(Dec(body))
    }
}

fn encode_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `lock.get_info`'s input (`cls_lock_get_info_op`, version 1): the name
/// of librbd's exclusive lock.
fn lock_info_input() -> Vec<u8> {
    let mut body = Vec::new();
    encode_string(&mut body, "rbd_lock");
    let mut i = vec![1u8, 1u8];
    i.extend_from_slice(&(body.len() as u32).to_le_bytes());
    i.extend_from_slice(&body);
    i
}

/// `get_snapcontext` answer: the snapshot ids.
fn snapshot_ids(out: &[u8]) -> Option<Vec<u64>> {
    let mut d = Dec(out);
    d.u64()?;
    let n = d.u32()?;
    (0..n).map(|_| d.u64()).collect()
}

/// A snapshot as its image's header gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSnapshot {
    pub id: u64,
    pub name: String,
    /// What a mirror-namespace snapshot says; None for the others.
    pub mirror: Option<MirrorSnapshot>,
}

/// `snapshot_get` answer (`cls::rbd::SnapshotInfo`): its id, namespace (a
/// versioned struct of its own: a type, then the mirror namespace's fields
/// for a mirror snapshot) and name, first. None: not understood.
fn snapshot_of(out: &[u8]) -> Option<HeaderSnapshot> {
    let mut d = Dec(out).versioned(1)?;
    let id = d.u64()?;
    let mut ns = d.versioned(u8::MAX)?;
    let mirror = match ns.u32()? {
        // User, group, trash.
        0..=2 => None,
        3 => {
            let state = match ns.u8()? {
                0 => MirrorSnapState::Primary,
                1 => MirrorSnapState::PrimaryDemoted,
                2 => MirrorSnapState::NonPrimary,
                3 => MirrorSnapState::NonPrimaryDemoted,
                _ => return None,
            };
            let complete = ns.u8()? != 0;
            let peers = ns.u32()?;
            let peer_uuids = (0..peers)
                .map(|_| ns.string())
                .collect::<Option<Vec<_>>>()?;
            Some(MirrorSnapshot {
                snap_id: id,
                state,
                complete,
                primary_mirror_uuid: ns.string()?,
                primary_snap_id: ns.u64()?,
                last_copied_object_number: ns.u64()?,
                peer_uuids,
            })
        }
        _ => return None,
    };
    Some(HeaderSnapshot {
        id,
        name: d.string()?,
        mirror,
    })
}

/// `get_size` answer: order, size.
fn size_of(out: &[u8]) -> Option<u64> {
    let mut d = Dec(out);
    d.u8()?;
    d.u64()
}

/// `get_size` answer: the object order, then the size; as (size, object
/// size).
fn size_and_object_size(out: &[u8]) -> Option<(u64, u64)> {
    let mut d = Dec(out);
    let order = d.u8()?;
    let size = d.u64()?;
    (order < 64).then(|| (size, 1u64 << order))
}

/// `mirror_image_get` answer (`cls::rbd::MirrorImage`): the global id, the
/// state (disabling 0, enabled 1, disabled 2), from version 2 the mode
/// (journal 0, snapshot 1; version 1 knows only journal).
fn mirror_entry_of(out: &[u8]) -> Option<(ImageMirrorState, MirrorMode)> {
    let mut outer = Dec(out);
    let version = *out.first()?;
    let mut d = outer.versioned(3)?;
    d.string()?;
    let state = match d.u8()? {
        0 => ImageMirrorState::Disabling,
        1 => ImageMirrorState::Enabled,
        2 => ImageMirrorState::Disabled,
        _ => return None,
    };
    let mode = if version >= 2 {
        match d.u8()? {
            0 => MirrorMode::Journal,
            1 => MirrorMode::Snapshot,
            _ => return None,
        }
    } else {
        MirrorMode::Journal
    };
    Some((state, mode))
}

/// `get_features` answer: features (then incompatible ones).
fn features_of(out: &[u8]) -> Option<u64> {
    Dec(out).u64()
}

/// `get_snapcontext` answer: seq, then the snapshot ids.
fn snapshot_count(out: &[u8]) -> Option<u32> {
    let mut d = Dec(out);
    d.u64()?;
    d.u32()
}

/// `metadata_list` answer: a map of key to bytes.
fn metadata_of(out: &[u8]) -> Option<Vec<(String, String)>> {
    let mut d = Dec(out);
    let n = d.u32()?;
    let mut all = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let key = d.string()?;
        let value = String::from_utf8_lossy(d.bytes()?).into_owned();
        all.push((key, value));
    }
    Some(all)
}

/// `lock.get_info` answer: how many hold the lock.
fn locker_count(out: &[u8]) -> Option<u32> {
    Dec(out).versioned(1)?.u32()
}

/// `parent_get` answer: whether the image has a parent (pool id -1: none).
fn has_parent(out: &[u8]) -> Option<bool> {
    let pool = Dec(out).versioned(1)?.u64()? as i64;
    Some(pool != -1)
}

/// One object-class call of a batched read: its input, and where librados
/// leaves the answer.
struct Exec {
    cls: CString,
    method: CString,
    input: Vec<u8>,
    out: *mut c_char,
    out_len: size_t,
    rval: c_int,
}

impl Exec {
    fn new(cls: &str, method: &str, input: Vec<u8>) -> Exec {
        Exec {
            cls: CString::new(cls).expect("no NUL"),
            method: CString::new(method).expect("no NUL"),
            input,
            out: ptr::null_mut(),
            out_len: 0,
            rval: 0,
        }
    }

    /// The answer, when the call succeeded.
    fn answer(&self) -> Option<&[u8]> {
        if self.rval < 0 {
            return None;
        }
        if self.out.is_null() {
            return Some(&[]);
        }
        // SAFETY: librados set out/out_len to a buffer it allocated, which
        // lives until Drop frees it.
        Some(unsafe { std::slice::from_raw_parts(self.out as *const u8, self.out_len) })
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        if !self.out.is_null() {
            // SAFETY: a buffer librados allocated for this call's answer.
            unsafe { sys::rados_buffer_free(self.out) };
        }
    }
}

/// Runs `calls` as one read of `object`; each call's answer or error is in
/// it. Calls marked fail-ok may fail without failing the others. The
/// read's own result: an error only when the read as a whole failed.
fn batched_read(pool: &Pool<'_>, object: &str, calls: &mut [(Exec, bool)]) -> Result<c_int> {
    super::counted(false);
    let oid = cstring("object name", object)?;
    // SAFETY: a new op, released below on every path.
    let op = unsafe { sys::rados_create_read_op() };
    for (c, fail_ok) in calls.iter_mut() {
        // SAFETY: the strings and input live in `calls`, which outlives the
        // operate call; the out-pointers point into `calls` too.
        unsafe {
            sys::rados_read_op_exec(
                op,
                c.cls.as_ptr(),
                c.method.as_ptr(),
                c.input.as_ptr() as *const c_char,
                c.input.len(),
                &mut c.out,
                &mut c.out_len,
                &mut c.rval,
            );
            if *fail_ok {
                sys::rados_read_op_set_flags(op, OP_FLAG_FAILOK);
            }
        }
    }
    // SAFETY: valid op and ioctx; oid outlives the call.
    let ret = unsafe { sys::rados_read_op_operate(op, pool.raw(), oid.as_ptr(), 0) };
    // SAFETY: created above, not used after.
    unsafe { sys::rados_release_read_op(op) };
    Ok(ret)
}

impl Pool<'_> {
    /// Whether the pool holds an image named `name`, without opening it:
    /// `Some(true)` when its `rbd_id` object names an id whose header is
    /// there, `Some(false)` when no such object nor a format 1 header is
    /// there; `None` otherwise (a format 1 image, or one half made or half
    /// removed): the caller opens it.
    pub fn image_named(&self, name: &str) -> Result<Option<bool>> {
        match self.image_id_or_absent(name)? {
            Some(Some(id)) if self.object_exists(&format!("rbd_header.{id}"))? => Ok(Some(true)),
            Some(Some(_)) | None => Ok(None),
            Some(None) => Ok(Some(false)),
        }
    }

    /// The id of image `name` without opening it: `Some(Some(id))` for a
    /// format 2 image, `Some(None)` when there is no image of that name at
    /// all, `None` for a format 1 image (the caller opens it).
    pub fn image_id_or_absent(&self, name: &str) -> Result<Option<Option<String>>> {
        match self.image_id_of(name)? {
            Some(id) => Ok(Some(Some(id))),
            None if self.object_exists(&format!("{name}.rbd"))? => Ok(None),
            None => Ok(Some(None)),
        }
    }

    /// The id of the format 2 image `name`, from its `rbd_id` object.
    pub fn image_id_of(&self, name: &str) -> Result<Option<String>> {
        let obj = self.read_object(&format!("rbd_id.{name}"), 0, 128)?;
        Ok(Dec(&obj).string().filter(|id| !id.is_empty()))
    }

    /// The snapshots of image `id` (all namespaces) without opening it:
    /// id, name and, for a mirror snapshot, what it says; `None` when the
    /// header does not answer in a form this reader knows (the caller opens
    /// the image).
    pub fn snapshot_list(&self, id: &str) -> Result<Option<Vec<HeaderSnapshot>>> {
        let header = format!("rbd_header.{id}");
        let mut calls = [(Exec::new("rbd", "get_snapcontext", Vec::new()), false)];
        if batched_read(self, &header, &mut calls)? < 0 {
            return Ok(None);
        }
        let Some(ids) = calls[0].0.answer().and_then(snapshot_ids) else {
            return Ok(None);
        };
        if ids.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut calls: Vec<(Exec, bool)> = ids
            .iter()
            .map(|i| {
                (
                    Exec::new("rbd", "snapshot_get", i.to_le_bytes().to_vec()),
                    false,
                )
            })
            .collect();
        // A snapshot removed meanwhile fails the read: the open answers.
        if batched_read(self, &header, &mut calls)? < 0 {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(ids.len());
        for (want, (c, _)) in ids.iter().zip(&calls) {
            match c.answer().and_then(snapshot_of) {
                Some(s) if s.id == *want => out.push(s),
                _ => return Ok(None),
            }
        }
        // librbd lists them by id.
        out.sort_by_key(|s| s.id);
        Ok(Some(out))
    }

    /// Whether image `id` has exclusive-lock and nobody holds it: then no
    /// client writes it (the rule of `image_users`). `None` when the header
    /// does not answer (the caller opens the image).
    pub fn exclusive_lock_free(&self, id: &str) -> Result<Option<bool>> {
        let mut calls = [
            (
                Exec::new("rbd", "get_features", NOSNAP.to_le_bytes().to_vec()),
                false,
            ),
            (Exec::new("lock", "get_info", lock_info_input()), false),
        ];
        if batched_read(self, &format!("rbd_header.{id}"), &mut calls)? < 0 {
            return Ok(None);
        }
        let (Some(features), Some(lockers)) = (
            calls[0].0.answer().and_then(features_of),
            calls[1].0.answer().and_then(locker_count),
        ) else {
            return Ok(None);
        };
        Ok(Some(
            Features(features).contains(Features::EXCLUSIVE_LOCK) && lockers == 0,
        ))
    }

    /// The features of image `id` at its head, without opening it; `None`
    /// when the header does not answer (the caller opens the image).
    pub fn head_features(&self, id: &str) -> Result<Option<Features>> {
        let mut calls = [(
            Exec::new("rbd", "get_features", NOSNAP.to_le_bytes().to_vec()),
            false,
        )];
        if batched_read(self, &format!("rbd_header.{id}"), &mut calls)? < 0 {
            return Ok(None);
        }
        Ok(calls[0].0.answer().and_then(features_of).map(Features))
    }

    /// The metadata value of `key` on image `id`, without opening it:
    /// `Some(None)` when the key is not set; `None` when the header does not
    /// answer (the caller opens the image).
    pub fn head_metadata(&self, id: &str, key: &str) -> Result<Option<Option<String>>> {
        let mut input = Vec::new();
        encode_string(&mut input, key);
        let mut calls = [(Exec::new("rbd", "metadata_get", input), false)];
        match batched_read(self, &format!("rbd_header.{id}"), &mut calls)? {
            r if r == -libc::ENOENT => {
                // The key is not set, or the header is gone: only the
                // first is an answer.
                if self.object_exists(&format!("rbd_header.{id}"))? {
                    Ok(Some(None))
                } else {
                    Ok(None)
                }
            }
            r if r < 0 => Ok(None),
            _ => Ok(calls[0]
                .0
                .answer()
                .and_then(|a| Dec(a).bytes())
                .map(|v| Some(String::from_utf8_lossy(v).into_owned()))),
        }
    }

    /// The size and object size of image `id` at its head, without
    /// opening it; `None` when the header does not answer.
    pub fn head_size(&self, id: &str) -> Result<Option<(u64, u64)>> {
        let mut calls = [(
            Exec::new("rbd", "get_size", NOSNAP.to_le_bytes().to_vec()),
            false,
        )];
        if batched_read(self, &format!("rbd_header.{id}"), &mut calls)? < 0 {
            return Ok(None);
        }
        Ok(calls[0].0.answer().and_then(size_and_object_size))
    }

    /// All metadata of image `id` (`rbd image-meta list`), without opening
    /// it; `None` when the header does not answer or holds more than one
    /// listing's worth (the caller opens the image).
    pub fn head_metadata_list(&self, id: &str) -> Result<Option<Vec<(String, String)>>> {
        let mut input = Vec::new();
        encode_string(&mut input, "");
        input.extend_from_slice(&METADATA_MAX.to_le_bytes());
        let mut calls = [(Exec::new("rbd", "metadata_list", input), false)];
        if batched_read(self, &format!("rbd_header.{id}"), &mut calls)? < 0 {
            return Ok(None);
        }
        Ok(calls[0]
            .0
            .answer()
            .and_then(metadata_of)
            .filter(|all| (all.len() as u64) < METADATA_MAX))
    }

    /// The mirroring entry of image `id` in the pool's `rbd_mirroring`
    /// object, without opening it: `Some(None)` when there is none
    /// (mirroring disabled), `Some(Some((state, mode)))`; `None` when the
    /// answer is not understood (the caller opens the image).
    pub fn mirror_entry(&self, id: &str) -> Result<Option<Option<(ImageMirrorState, MirrorMode)>>> {
        let mut input = Vec::new();
        encode_string(&mut input, id);
        let mut calls = [(Exec::new("rbd", "mirror_image_get", input), false)];
        match batched_read(self, "rbd_mirroring", &mut calls)? {
            r if r == -libc::ENOENT => Ok(Some(None)),
            r if r < 0 => Ok(None),
            _ => Ok(calls[0].0.answer().and_then(mirror_entry_of).map(Some)),
        }
    }

    /// The facts of image `name` when it is plain (see the module), read
    /// without opening it; `None` when it is not, or is not there (the
    /// caller's open then says so as it always did).
    pub fn plain_image(&self, name: &str) -> Result<Option<PlainImage>> {
        let Some(id) = self.image_id_of(name)? else {
            return Ok(None);
        };
        let header = format!("rbd_header.{id}");
        let mut nosnap = NOSNAP.to_le_bytes().to_vec();
        let mut calls = vec![
            (Exec::new("rbd", "get_size", nosnap.clone()), false),
            (
                Exec::new("rbd", "get_features", std::mem::take(&mut nosnap)),
                false,
            ),
            (Exec::new("rbd", "get_snapcontext", Vec::new()), false),
            (
                Exec::new("rbd", "metadata_list", {
                    let mut i = Vec::new();
                    encode_string(&mut i, "");
                    i.extend_from_slice(&METADATA_MAX.to_le_bytes());
                    i
                }),
                false,
            ),
            (Exec::new("lock", "get_info", lock_info_input()), false),
            // Last, and allowed to fail (an image without layering).
            (Exec::new("rbd", "parent_get", Vec::new()), true),
        ];
        // Any failure (a method this OSD lacks, an image being removed)
        // leaves it to the open, which names it as it always did.
        if batched_read(self, &header, &mut calls)? < 0 {
            return Ok(None);
        }
        let answer = |k: usize| calls[k].0.answer();
        let (Some(size), Some(features), Some(0), Some(metadata), Some(0)) = (
            answer(0).and_then(size_of),
            answer(1).and_then(features_of),
            answer(2).and_then(snapshot_count),
            answer(3).and_then(metadata_of),
            answer(4).and_then(locker_count),
        ) else {
            return Ok(None);
        };
        let features = Features(features);
        let exclusive = features.contains(Features::EXCLUSIVE_LOCK);
        if features.0 & !PLAIN_FEATURES != 0 || !exclusive || metadata.len() as u64 >= METADATA_MAX
        {
            return Ok(None);
        }
        let parent = match answer(5).map(has_parent) {
            Some(Some(p)) => p,
            // parent_get refuses an image without layering: no parent.
            None if !features.contains(Features::LAYERING) => false,
            _ => return Ok(None),
        };
        if parent {
            return Ok(None);
        }
        // Mirroring enabled (or being disabled): opened, for its mode.
        let mut calls = [(
            Exec::new("rbd", "mirror_image_get", {
                let mut i = Vec::new();
                encode_string(&mut i, &id);
                i
            }),
            false,
        )];
        if batched_read(self, "rbd_mirroring", &mut calls)? != -libc::ENOENT {
            return Ok(None);
        }
        let magic = self.read_object(&format!("rbd_data.{id}.{:016x}", 0), 0, 6)?;
        Ok(Some(PlainImage {
            id,
            size,
            features,
            metadata,
            luks: magic == b"LUKS\xba\xbe",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versioned(body: &[u8]) -> Vec<u8> {
        let mut v = vec![1u8, 1u8];
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn mirror_entries_and_sizes_decode_as_ceph_encodes_them() {
        // MirrorImage version 2: global id, state, mode.
        let mut body = Vec::new();
        encode_string(&mut body, "5e1f");
        body.extend_from_slice(&[1, 1]);
        let mut v2 = vec![2u8, 1u8];
        v2.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v2.extend_from_slice(&body);
        assert_eq!(
            mirror_entry_of(&v2),
            Some((ImageMirrorState::Enabled, MirrorMode::Snapshot))
        );
        // Version 1 has no mode: journal.
        let mut body = Vec::new();
        encode_string(&mut body, "5e1f");
        body.push(0);
        assert_eq!(
            mirror_entry_of(&versioned(&body)),
            Some((ImageMirrorState::Disabling, MirrorMode::Journal))
        );
        // Unknown state or mode, or a short answer: not understood.
        assert_eq!(mirror_entry_of(&v2[..v2.len() - 1]), None);
        let mut bad = v2.clone();
        *bad.last_mut().unwrap() = 7;
        assert_eq!(mirror_entry_of(&bad), None);

        let mut size = vec![22u8];
        size.extend_from_slice(&(5u64 << 30).to_le_bytes());
        assert_eq!(size_and_object_size(&size), Some((5 << 30, 4 << 20)));
        assert_eq!(size_and_object_size(&size[..3]), None);
    }

    #[test]
    fn answers_decode_as_ceph_encodes_them() {
        let mut size = vec![22u8];
        size.extend_from_slice(&(5u64 << 30).to_le_bytes());
        assert_eq!(size_of(&size), Some(5 << 30));
        assert_eq!(size_of(&size[..5]), None, "short");

        let mut snapc = 7u64.to_le_bytes().to_vec();
        snapc.extend_from_slice(&2u32.to_le_bytes());
        snapc.extend_from_slice(&[0; 16]);
        assert_eq!(snapshot_count(&snapc), Some(2));

        let mut meta = 2u32.to_le_bytes().to_vec();
        for (k, v) in [("conf_rbd_cache", "false"), ("ferry.original.p1", "{}")] {
            encode_string(&mut meta, k);
            encode_string(&mut meta, v);
        }
        assert_eq!(
            metadata_of(&meta).unwrap(),
            vec![
                ("conf_rbd_cache".to_string(), "false".to_string()),
                ("ferry.original.p1".to_string(), "{}".to_string())
            ]
        );
        assert_eq!(metadata_of(&meta[..meta.len() - 1]), None, "short");

        let mut lock = 0u32.to_le_bytes().to_vec();
        lock.push(0);
        encode_string(&mut lock, "");
        assert_eq!(locker_count(&versioned(&lock)), Some(0));
        let mut newer = versioned(&lock);
        newer[1] = 2;
        assert_eq!(locker_count(&newer), None, "a compat version not known");

        assert_eq!(snapshot_ids(&snapc).unwrap(), vec![0, 0]);
        // As an OSD answered for a user snapshot "s1" (namespace type 0).
        let answer = [
            1u8, 1, 44, 0, 0, 0, 210, 8, 0, 0, 0, 0, 0, 0, 1, 1, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0,
            0, 115, 49, 0, 0, 64, 0, 0, 0, 0, 0, 144, 135, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let s1 = snapshot_of(&answer).unwrap();
        assert_eq!((s1.id, s1.name.as_str(), s1.mirror), (2258, "s1", None));
        // A mirror snapshot on a receiving site: non-primary, complete.
        let mut ns = 3u32.to_le_bytes().to_vec();
        ns.extend_from_slice(&[2, 1]);
        ns.extend_from_slice(&0u32.to_le_bytes());
        encode_string(&mut ns, "uuid-a");
        ns.extend_from_slice(&7u64.to_le_bytes());
        ns.extend_from_slice(&9u64.to_le_bytes());
        ns.extend_from_slice(&0u32.to_le_bytes());
        let mut snap = 12u64.to_le_bytes().to_vec();
        snap.extend_from_slice(&versioned(&ns));
        encode_string(&mut snap, ".mirror.non_primary.x");
        snap.extend_from_slice(&(1u64 << 30).to_le_bytes());
        let got = snapshot_of(&versioned(&snap)).unwrap();
        assert_eq!(got.name, ".mirror.non_primary.x");
        assert_eq!(
            got.mirror,
            Some(MirrorSnapshot {
                snap_id: 12,
                state: MirrorSnapState::NonPrimary,
                complete: true,
                primary_mirror_uuid: "uuid-a".into(),
                primary_snap_id: 7,
                last_copied_object_number: 9,
                peer_uuids: vec![],
            })
        );

        let mut parent = (-1i64).to_le_bytes().to_vec();
        encode_string(&mut parent, "");
        encode_string(&mut parent, "");
        parent.extend_from_slice(&NOSNAP.to_le_bytes());
        assert_eq!(has_parent(&versioned(&parent)), Some(false));
        parent[..8].copy_from_slice(&3i64.to_le_bytes());
        assert_eq!(has_parent(&versioned(&parent)), Some(true));
    }
}
