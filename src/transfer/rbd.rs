//! RBD endpoints: an image at a snapshot as the source, a new image as the
//! target (librbd AIO, many requests in flight on one handle each), and the
//! per-chunk log of a copy kept in a RADOS object beside the target.

use std::ops::Range;
use std::sync::Arc;

use crate::ceph::{AioRead, AioWrite, ErrorKind, Features, Image, Pool};

use super::digest::{ChunkHash, CHUNK_SIZE};
use super::endpoint::{Extent, HashOnly, PendingRead, PendingWrite, Source, Target};
use super::engine::{transfer, transfer_onto, Options, Outcome};
use super::log::{decode, runs, ChunkLog, NoLog, ENTRY};
use super::Result;

/// An RBD image at the snapshot it was opened at.
pub struct RbdSource<'i, 'p> {
    image: &'i Image<'p>,
    size: u64,
}

impl<'i, 'p> RbdSource<'i, 'p> {
    /// Reads `image` (opened read-only at a snapshot, or at its head).
    pub fn new(image: &'i Image<'p>) -> Result<RbdSource<'i, 'p>> {
        Ok(RbdSource {
            size: image.info()?.size,
            image,
        })
    }
}

impl Source for RbdSource<'_, '_> {
    type Read<'a>
        = AioRead<'a>
    where
        Self: 'a;

    fn size(&self) -> u64 {
        self.size
    }

    fn identity(&self) -> String {
        format!(
            "rbd {} size {} chunk {CHUNK_SIZE}",
            self.image.object(),
            self.size
        )
    }

    fn allocated(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        // Whole objects: the object map answers (fast-diff) without reading.
        Ok(self
            .image
            .allocated(offset, len, true)?
            .into_iter()
            .map(|(offset, len)| Extent { offset, len })
            .collect())
    }

    fn read(&self, offset: u64, buf: Vec<u8>, range: Range<usize>) -> Result<AioRead<'_>> {
        Ok(self.image.aio_read(offset, buf, range)?)
    }
}

impl PendingRead for AioRead<'_> {
    fn is_complete(&self) -> bool {
        AioRead::is_complete(self)
    }

    fn wait(self) -> Result<Vec<u8>> {
        Ok(AioRead::wait(self)?)
    }
}

/// An RBD image opened for writing, new (reads as zeros where not written).
pub struct RbdTarget<'i, 'p> {
    image: &'i Image<'p>,
}

impl<'i, 'p> RbdTarget<'i, 'p> {
    /// Writes into `image`.
    pub fn new(image: &'i Image<'p>) -> RbdTarget<'i, 'p> {
        RbdTarget { image }
    }
}

impl RbdTarget<'_, '_> {
    /// Makes `[offset, offset + len)` read as zeros, whatever it held.
    pub fn zero(&self, offset: u64, len: u64) -> Result<()> {
        Ok(self.image.write_zeroes(offset, len)?)
    }

    /// The image's id (never given to another image).
    pub fn id(&self) -> Result<String> {
        Ok(self.image.id()?)
    }

    /// Reads `len` bytes at `offset` (past the end: zeros).
    pub fn read_back(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.image.read_at(offset + got as u64, &mut buf[got..])? {
                0 => break,
                n => got += n,
            }
        }
        Ok(buf)
    }
}

impl Target for RbdTarget<'_, '_> {
    type Write<'a>
        = AioWrite<'a>
    where
        Self: 'a;

    fn write(&self, offset: u64, data: Arc<Vec<u8>>, range: Range<usize>) -> Result<AioWrite<'_>> {
        Ok(self.image.aio_write(offset, data, range)?)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.image.flush()?)
    }
}

impl PendingWrite for AioWrite<'_> {
    fn is_complete(&self) -> bool {
        AioWrite::is_complete(self)
    }

    fn wait(self) -> Result<()> {
        Ok(AioWrite::wait(self)?)
    }
}

/// An RBD image named where a path is taken (`ferry agent`, `ferry
/// stream`): `rbd:POOL/IMAGE[@SNAP]`, optionally followed by
/// `?conf=FILE&id=USER&keyring=FILE` (default: /etc/ceph/ceph.conf,
/// client.admin, the conf's keyring). A conversion host reaches a volume of
/// an RBD backend so: Cinder's connection info names the pool, the image and
/// the user, whose keyring the host holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdLocation {
    pub pool: String,
    pub image: String,
    pub snap: Option<String>,
    pub cluster: crate::ceph::ClusterConfig,
}

impl RbdLocation {
    /// None when `text` does not begin with `rbd:`; otherwise the location
    /// or what is wrong with it.
    pub fn parse(text: &str) -> Option<std::result::Result<RbdLocation, String>> {
        let rest = text.strip_prefix("rbd:")?;
        Some(Self::parse_rest(rest).map_err(|e| format!("{text:?}: {e}")))
    }

    fn parse_rest(rest: &str) -> std::result::Result<RbdLocation, String> {
        let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (pool, image) = name
            .split_once('/')
            .ok_or("not rbd:POOL/IMAGE[@SNAP][?conf=FILE&id=USER&keyring=FILE]")?;
        let (image, snap) = match image.split_once('@') {
            Some((i, s)) => (i, Some(s.to_string())),
            None => (image, None),
        };
        if pool.is_empty() || image.is_empty() || snap.as_deref() == Some("") {
            return Err("a pool, an image and (after @) a snapshot name must not be empty".into());
        }
        let mut cluster = crate::ceph::ClusterConfig {
            conf: "/etc/ceph/ceph.conf".into(),
            keyring: None,
            client: "admin".into(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))?;
            match k {
                "conf" => cluster.conf = v.into(),
                "id" => cluster.client = v.strip_prefix("client.").unwrap_or(v).into(),
                "keyring" => cluster.keyring = Some(v.into()),
                other => return Err(format!("unknown option {other:?} (conf, id, keyring)")),
            }
        }
        Ok(RbdLocation {
            pool: pool.into(),
            image: image.into(),
            snap,
            cluster,
        })
    }
}

/// The RADOS object, in the target's pool, holding the per-chunk log of a
/// copy into the image with id `image_id` (an id, not a name: a re-created
/// image never inherits an old log).
pub fn log_object(image_id: &str) -> String {
    format!("ferry-chunks.{image_id}")
}

/// The log object's attribute naming the source it copies
/// ([`Source::identity`]); a log for another source is not resumed.
const SOURCE_ATTR: &str = "ferry.source";

/// The log object's attribute naming the snapshot the copy is read at.
const SNAP_ATTR: &str = "ferry.snap";

/// The log object's attribute set, to the source's identity, once the
/// copy is whole: a later copy of the same image at a later snapshot
/// rewrites only the chunks that changed since (a warm migration's round).
const WHOLE_ATTR: &str = "ferry.whole";

/// The log object's attribute naming the snapshot a copy in progress
/// started from: only the chunks changed since it are written again.
const SINCE_ATTR: &str = "ferry.since";

/// A per-chunk log in a RADOS object: entry `i` at byte `32 * i`.
pub struct RadosChunkLog<'a, 'c> {
    pool: &'a Pool<'c>,
    object: String,
}

impl ChunkLog for RadosChunkLog<'_, '_> {
    fn load(&mut self, first: u64, count: u64) -> Result<Vec<Option<ChunkHash>>> {
        let bytes =
            self.pool
                .read_object(&self.object, first * ENTRY as u64, count as usize * ENTRY)?;
        Ok(decode(&bytes, count))
    }

    fn record(&mut self, done: &[(u64, ChunkHash)]) -> Result<()> {
        for (first, bytes) in runs(done) {
            self.pool
                .write_object(&self.object, first * ENTRY as u64, &bytes)?;
        }
        Ok(())
    }
}

/// The digest of `pool/name` at `snap` (at its head when None), reading
/// only its allocated extents.
pub fn digest_image(
    pool: &Pool<'_>,
    name: &str,
    snap: Option<&str>,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Outcome> {
    let image = pool.open_image_read_only(name, snap)?;
    let source = RbdSource::new(&image)?;
    transfer::<_, HashOnly>(&source, None, &mut NoLog, opts, progress)
}

/// Features a copy can be created with: the source's, without those only
/// librbd or mirroring set (journaling included: the target pool is not
/// mirrored).
pub fn creatable(features: Features) -> Features {
    let keep = Features::LAYERING
        | Features::STRIPINGV2
        | Features::EXCLUSIVE_LOCK
        | Features::OBJECT_MAP
        | Features::FAST_DIFF
        | Features::DEEP_FLATTEN;
    Features(features.0 & keep.0)
}

/// Copies `src_pool/name` at `snap` into the image `dest` of `dst_pool`
/// (same cluster or another), hashing as it goes; returns the digest of what
/// was written. The copy is created with `features` (None: the source's
/// that can be created). When `dest` exists with a log of a copy from the
/// same source (an interrupted run), only the chunks the log lacks are
/// copied; any other `dest` is removed and copied afresh. The log stays
/// until [`forget_log`] (after the caller has recorded the copy as done).
#[allow(clippy::too_many_arguments)]
pub fn copy_image(
    src_pool: &Pool<'_>,
    name: &str,
    snap: Option<&str>,
    dst_pool: &Pool<'_>,
    dest: &str,
    features: Option<Features>,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Outcome> {
    copy_image_onto(
        src_pool, name, snap, None, dst_pool, dest, features, opts, progress,
    )
}

/// An image at a snapshot that a copy is cloned from.
#[derive(Clone, Copy)]
pub struct CloneOf<'a, 'c> {
    pub pool: &'a Pool<'c>,
    pub image: &'a str,
    pub snap: &'a str,
}

/// [`copy_image`], where with `clone_of` the copy is created as a clone
/// (format 2) of that snapshot, resized to the source's size, and only the
/// blocks whose data differ from the parent's are written (zeros included
/// where the parent has data): the clone reads as the source, and keeps
/// the parent's data shared. `features` must then include layering.
#[allow(clippy::too_many_arguments)]
pub fn copy_image_onto(
    src_pool: &Pool<'_>,
    name: &str,
    snap: Option<&str>,
    clone_of: Option<CloneOf<'_, '_>>,
    dst_pool: &Pool<'_>,
    dest: &str,
    features: Option<Features>,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Outcome> {
    let image = src_pool.open_image_read_only(name, snap)?;
    let source = RbdSource::new(&image)?;
    let parent = match &clone_of {
        Some(c) => Some(c.pool.open_image_read_only(c.image, Some(c.snap))?),
        None => None,
    };
    let base = parent.as_ref().map(RbdSource::new).transpose()?;
    // A log of a copy onto another parent (or none) is not resumed.
    let identity = match (&clone_of, &parent) {
        (Some(c), Some(p)) => format!(
            "{} onto {}@{} (id {})",
            source.identity(),
            p.object(),
            c.snap,
            p.id()?
        ),
        _ => source.identity(),
    };
    let resumable = what_dest_holds(
        &image,
        src_pool.object(name),
        snap,
        source.size(),
        clone_of.is_none(),
        dst_pool,
        dest,
        &identity,
    )?;
    let (target, object, since) = match resumable {
        Some(found) => found,
        None => {
            match dst_pool.remove_image(dest) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            let features = features.unwrap_or(creatable(image.features()?));
            match &clone_of {
                Some(c) => {
                    dst_pool.clone_image(c.pool, c.image, c.snap, dest, features, 2)?;
                }
                None => dst_pool.create_image(dest, source.size(), features)?,
            }
            let t = dst_pool.open_image(dest)?;
            if clone_of.is_some() && t.info()?.size != source.size() {
                t.resize(source.size())?;
            }
            let object = log_object(&t.id()?);
            dst_pool.remove_object(&object)?;
            dst_pool.set_object_xattr(&object, SOURCE_ATTR, &identity)?;
            dst_pool.set_object_xattr(&object, SNAP_ATTR, snap.unwrap_or_default())?;
            (t, object, None)
        }
    };
    let mut log = RadosChunkLog {
        pool: dst_pool,
        object: object.clone(),
    };
    let target_end = RbdTarget::new(&target);
    let out = match &since {
        None => transfer_onto(
            &source,
            base.as_ref(),
            Some(&target_end),
            &mut log,
            opts,
            progress,
        )?,
        Some(since) => {
            // The target holds the image at `since`: that is its base.
            let before = src_pool.open_image_read_only(name, Some(since))?;
            let before = RbdSource::new(&before)?;
            refresh(
                &image,
                since,
                &source,
                Some(&before),
                Some(&target_end),
                &mut log,
                opts,
                progress,
            )?
        }
    };
    target.close()?;
    dst_pool.set_object_xattr(&object, SINCE_ATTR, "")?;
    dst_pool.set_object_xattr(&object, WHOLE_ATTR, &identity)?;
    Ok(out)
}

/// What the copy's target `dst_pool/dest` already holds of the source
/// (`image` at `snap`, named `source_object`, `size` bytes, `identity`):
/// the open target, its log object, and when it holds an older snapshot
/// of the same image whole, that snapshot (only what changed since is
/// copied; `plain`: not a copy onto a parent). None: nothing to go on
/// from (an image there goes, with its log).
#[allow(clippy::too_many_arguments)]
fn what_dest_holds<'p>(
    image: &Image<'_>,
    source_object: String,
    snap: Option<&str>,
    size: u64,
    plain: bool,
    dst_pool: &'p Pool<'_>,
    dest: &str,
    identity: &str,
) -> Result<Option<(Image<'p>, String, Option<String>)>> {
    let found = match dst_pool.open_image(dest) {
        Ok(t) => {
            let object = log_object(&t.id()?);
            let attr = |name| dst_pool.object_xattr(&object, name);
            let (copying, whole) = (attr(SOURCE_ATTR)?, attr(WHOLE_ATTR)?);
            let since = attr(SINCE_ATTR)?.filter(|s| !s.is_empty());
            let earlier = attr(SNAP_ATTR)?.filter(|s| !s.is_empty());
            match (copying, since) {
                // Interrupted: resumed (a refresh is done again from its start).
                (Some(v), since) if v == identity => Some((t, object, since)),
                // Whole at an earlier snapshot of the same image: only
                // what changed since is written.
                (Some(v), _)
                    if plain
                        && whole.as_deref() == Some(v.as_str())
                        && earlier.as_deref().is_some_and(|e| {
                            Some(e) != snap
                                && v == format!(
                                    "rbd {}@{e} size {} chunk {CHUNK_SIZE}",
                                    source_object, size
                                )
                        }) =>
                {
                    let e = earlier.expect("checked");
                    dst_pool.set_object_xattr(&object, WHOLE_ATTR, "")?;
                    dst_pool.set_object_xattr(&object, SINCE_ATTR, &e)?;
                    dst_pool.set_object_xattr(&object, SNAP_ATTR, snap.unwrap_or_default())?;
                    dst_pool.set_object_xattr(&object, SOURCE_ATTR, identity)?;
                    Some((t, object, Some(e)))
                }
                // Another copy's log goes with the image it describes.
                _ => {
                    dst_pool.remove_object(&object)?;
                    None
                }
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    // A refresh needs the snapshot it starts from, older than the one it
    // goes to; gone (or newer: a copy of an image's older snapshot after
    // a newer one), the copy starts afresh.
    Ok(match found {
        Some((t, object, Some(since))) if !is_older(image, &since, snap)? => {
            drop(t);
            dst_pool.remove_object(&object)?;
            None
        }
        other => other,
    })
}

/// Whether `image` has a snapshot `since` taken before its snapshot `to`
/// (or its head, when None).
fn is_older(image: &Image<'_>, since: &str, to: Option<&str>) -> Result<bool> {
    let snaps = image.snapshots()?;
    let id = |name: &str| snaps.iter().find(|s| s.name == name).map(|s| s.id);
    Ok(match (id(since), to) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(a), Some(b)) => id(b).is_some_and(|b| a < b),
    })
}

/// The transfer of `source` (`image` at a later snapshot) onto a target
/// that holds the image at `since` (`before`, read to write only what
/// differs), or only into a log that holds its hashes (no target, no
/// `before`): only the chunks changed since are read (and written).
#[allow(clippy::too_many_arguments)]
fn refresh<T: super::Target>(
    image: &Image<'_>,
    since: &str,
    source: &RbdSource<'_, '_>,
    before: Option<&RbdSource<'_, '_>>,
    target: Option<&T>,
    log: &mut dyn ChunkLog,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Outcome> {
    use super::changed::{chunks_of, Only, Skipping};
    // A mirrored (non-primary) image's object map cannot say what changed
    // (Ceph 16.2: a user snapshot rbd-mirror syncs takes the object states
    // of the mirror snapshot after it, so a fast diff puts the writes made
    // between the two in the wrong interval); its objects' own snapshot
    // lists say it exactly, at one request per object.
    // A warm round is followed by a mirror snapshot before the next round
    // is taken: on a mirrored image, the object map's diff from the round
    // before `since` covers all written since `since` (and a little more),
    // without reading each object.
    let info = image.mirror_info()?;
    let mirrored = info.state != crate::ceph::ImageMirrorState::Disabled && !info.primary;
    let changed = match round_before(image, since)? {
        Some(earlier) if mirrored => image.changed(Some(&earlier), 0, source.size(), true)?,
        _ => image.changed(Some(since), 0, source.size(), !mirrored)?,
    };
    let changed = chunks_of(&changed);
    let src = Only {
        inner: source,
        chunks: &changed,
    };
    let base = before.map(|inner| Only {
        inner,
        chunks: &changed,
    });
    let mut log = Skipping {
        inner: log,
        chunks: &changed,
    };
    transfer_onto(&src, base.as_ref(), target, &mut log, opts, progress)
}

/// When `since` is warm round `n` of a plan (`ferry-round-<plan>-<n>`),
/// round `n - 1` if the image still has it.
fn round_before(image: &Image<'_>, since: &str) -> Result<Option<String>> {
    let Some(earlier) = previous_round(since) else {
        return Ok(None);
    };
    Ok(image
        .snapshots()?
        .iter()
        .any(|s| s.name == earlier)
        .then_some(earlier))
}

/// The name of the warm round before the one `snap` names, if that is
/// not the first round.
fn previous_round(snap: &str) -> Option<String> {
    let (plan, n) = crate::plan::round_of(snap)?;
    // Not the first round: on the receiving image its object map is the
    // one the initial sync left, which says everything changed.
    (n >= 3).then(|| crate::plan::round_snap(plan, n - 1))
}

/// The object, in an image's pool, that keeps the per-chunk hashes of the
/// image at its latest warm round, so that the next digest hashes only the
/// chunks changed since.
pub fn digest_object(image_id: &str) -> String {
    format!("ferry-digest.{image_id}")
}

/// [`digest_image`] of `pool/name` at `snap`, hashing only the chunks
/// changed since the snapshot whose hashes [`digest_object`] keeps (when
/// it keeps them whole, and that snapshot is still there), then keeping
/// `snap`'s hashes there instead: the source's side of a warm round.
pub fn digest_image_kept(
    pool: &Pool<'_>,
    name: &str,
    snap: &str,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Outcome> {
    let image = pool.open_image_read_only(name, Some(snap))?;
    let source = RbdSource::new(&image)?;
    let object = digest_object(&image.id()?);
    let identity = |snap: &str| {
        format!(
            "digest of {}@{snap} size {} chunk {CHUNK_SIZE}",
            pool.object(name),
            source.size()
        )
    };
    let kept = pool
        .object_xattr(&object, SNAP_ATTR)?
        .filter(|s| !s.is_empty());
    let whole = pool.object_xattr(&object, WHOLE_ATTR)?;
    let since = match kept {
        Some(k)
            if whole == Some(identity(&k)) && (k == snap || is_older(&image, &k, Some(snap))?) =>
        {
            Some(k)
        }
        _ => None,
    };
    // Not whole while it changes: a crash meanwhile means hashing afresh.
    pool.set_object_xattr(&object, WHOLE_ATTR, "")?;
    let mut log = RadosChunkLog {
        pool,
        object: object.clone(),
    };
    let out = match &since {
        Some(k) if k == snap => transfer::<_, HashOnly>(&source, None, &mut log, opts, progress)?,
        Some(k) => refresh::<HashOnly>(&image, k, &source, None, None, &mut log, opts, progress)?,
        None => {
            pool.remove_object(&object)?;
            transfer::<_, HashOnly>(&source, None, &mut log, opts, progress)?
        }
    };
    pool.set_object_xattr(&object, SNAP_ATTR, snap)?;
    pool.set_object_xattr(&object, WHOLE_ATTR, &identity(snap))?;
    Ok(out)
}

/// Whether hashes of `pool/name` are kept by [`digest_image_kept`].
pub fn has_digest(pool: &Pool<'_>, name: &str) -> Result<bool> {
    let id = match pool.open_image_read_only(name, None) {
        Ok(img) => img.id()?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    Ok(pool.object_exists(&digest_object(&id))?)
}

/// Removes the hashes [`digest_image_kept`] keeps for `pool/name` (a
/// missing image or object is fine).
pub fn forget_digest(pool: &Pool<'_>, name: &str) -> Result<()> {
    let id = match pool.open_image_read_only(name, None) {
        Ok(img) => img.id()?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    Ok(pool.remove_object(&digest_object(&id))?)
}

/// Whether `pool/dest` has the per-chunk log of a copy ferry's engine made
/// into it (written right after the engine created the image): the image
/// is ferry's, interrupted or not.
pub fn has_copy_log(pool: &Pool<'_>, dest: &str) -> Result<bool> {
    let id = match pool.open_image_read_only(dest, None) {
        Ok(img) => img.id()?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    Ok(pool.object_xattr(&log_object(&id), SOURCE_ATTR)?.is_some())
}

/// Removes the per-chunk log of a copy into `pool/dest` (after the copy is
/// recorded as done, or to make the next copy start afresh). A missing image
/// or log is fine.
pub fn forget_log(pool: &Pool<'_>, dest: &str) -> Result<()> {
    let id = match pool.open_image_read_only(dest, None) {
        Ok(img) => img.id()?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    Ok(pool.remove_object(&log_object(&id))?)
}

#[cfg(test)]
mod tests {
    use super::RbdLocation;

    #[test]
    fn the_round_before_a_round_is_named_and_other_snapshots_have_none() {
        use super::previous_round;
        assert_eq!(
            previous_round("ferry-round-ab12-7").as_deref(),
            Some("ferry-round-ab12-6")
        );
        assert_eq!(previous_round("ferry-round-ab12-1"), None);
        assert_eq!(previous_round("ferry-round-ab12-2"), None);
        assert_eq!(previous_round("ferry-cutover-ab12"), None);
        assert_eq!(previous_round("snapshot-1234"), None);
        assert_eq!(previous_round("ferry-round-ab12-x"), None);
    }

    #[test]
    fn rbd_locations_parse_with_their_options_and_other_paths_are_not_theirs() {
        assert_eq!(RbdLocation::parse("/dev/vdb"), None);
        let l = RbdLocation::parse("rbd:volumes/volume-1@snap")
            .unwrap()
            .unwrap();
        assert_eq!(
            (l.pool.as_str(), l.image.as_str(), l.snap.as_deref()),
            ("volumes", "volume-1", Some("snap"))
        );
        assert_eq!(l.cluster.conf.to_str(), Some("/etc/ceph/ceph.conf"));
        assert_eq!(l.cluster.client, "admin");
        let l = RbdLocation::parse("rbd:p/i?conf=/x/b.conf&id=client.cinder&keyring=/x/k")
            .unwrap()
            .unwrap();
        assert_eq!(l.snap, None);
        assert_eq!(l.cluster.client, "cinder");
        assert_eq!(l.cluster.conf.to_str(), Some("/x/b.conf"));
        assert_eq!(l.cluster.keyring.unwrap().to_str(), Some("/x/k"));
        for bad in [
            "rbd:noslash",
            "rbd:/i",
            "rbd:p/",
            "rbd:p/i@",
            "rbd:p/i?user=x",
            "rbd:p/i?id",
        ] {
            assert!(RbdLocation::parse(bad).unwrap().is_err(), "{bad}");
        }
    }
}
