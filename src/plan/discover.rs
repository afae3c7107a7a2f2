//! Discovery: read what the plan depends on from the source cluster and,
//! when one is given, the source cloud. Reads only; nothing is changed.

use std::collections::BTreeMap;

use crate::ceph::{
    user_words, CephError, Cluster, Features, Image, ImageMirrorState, MirrorMode, Parent,
    PoolMirrorMode, SnapNamespace,
};
use anyhow::{anyhow, bail, Context};

use super::{CephImage, CloudObject, CloudSnapshot, ImageFacts, OriginalRecord, Recorded};
use crate::openstack::{Cinder, Cloud, Glance, Service};
use crate::spec::{ImageRef, Spec};

/// The plan id recorded on the images, when some carry a record: a plan
/// made again takes it, so its cut-over snapshots keep their names. Images
/// begun by different plans cannot be one plan.
pub fn recorded_plan_id(images: &[(ImageRef, ImageFacts)]) -> anyhow::Result<Option<String>> {
    let mut found: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (r, f) in images {
        if let Some(rec) = f.ceph().and_then(|c| c.recorded.as_ref()) {
            found
                .entry(rec.plan.as_str())
                .or_default()
                .push(r.source_spec());
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.keys().next().map(|id| id.to_string())),
        _ => bail!(
            "the images were begun by different plans ({}): list each plan's images in a spec of its own",
            found
                .iter()
                .map(|(id, imgs)| format!("plan {id}: {}", imgs.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// Reads the facts for every image of the spec from `source`, the already
/// connected source cluster, and from the source cloud when given: volumes
/// and images named by id or name, their status, type and metadata.
/// Attached volumes are refused unless their servers are shut off or the
/// spec allows images in use.
pub fn discover(
    source: Option<&Cluster>,
    spec: &Spec,
    cloud: Option<&Cloud>,
) -> anyhow::Result<Vec<(ImageRef, ImageFacts)>> {
    // What the cloud resolves (a server's volumes, bootable volumes sent to
    // Glance) can meet another entry only now: refuse as the spec does.
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    let mut dests: BTreeMap<String, usize> = BTreeMap::new();
    let mut resolved = Vec::new();
    for i in 0..spec.images.len() {
        for (r, obj) in resolve_entry(spec, i, cloud)? {
            if let Some(j) = sources.insert(r.source_spec(), i) {
                bail!(
                    "images[{i}]: moves {} again, as images[{j}] does: list it once",
                    r.source_spec()
                );
            }
            let dst = format!("{}/{}", r.dest_pool, r.dest_name);
            if let Some(j) = dests.insert(dst.clone(), i) {
                bail!("images[{i}]: copies to {dst}, as images[{j}] does: give one of them another dest_name");
            }
            resolved.push((r, obj));
        }
    }
    // Each image's facts take a dozen round trips to the cluster: many
    // images are read at once (a thousand in about a second, not ten).
    let stream_all = spec.options.transfer == crate::spec::Transfer::Stream;
    // A pool's mirror mode is read once, not once per image.
    let mut pool_modes: BTreeMap<&str, PoolMirrorMode> = BTreeMap::new();
    if let Some(source) = source {
        for (r, obj) in &resolved {
            let streamed = stream_all && matches!(obj, Some(CloudObject::Volume { .. }));
            if streamed || pool_modes.contains_key(r.pool.as_str()) {
                continue;
            }
            // A pool that cannot be read is said by the image's own read.
            if let Ok(mode) = source.pool(&r.pool).and_then(|p| p.mirror_mode()) {
                pool_modes.insert(&r.pool, mode);
            }
        }
    }
    let facts = crate::parallel::map(&resolved, DISCOVERY_THREADS, |(r, obj)| {
        let volume = obj
            .as_ref()
            .filter(|o| matches!(o, CloudObject::Volume { .. }));
        if let (true, Some(v)) = (stream_all, volume) {
            return Ok((ImageFacts::streamed(v), false));
        }
        let Some(source) = source else {
            bail!(
                "{} is read on the source cluster, and the spec names none",
                r.source_spec()
            );
        };
        let found = match pool_modes.get(r.pool.as_str()) {
            Some(mode) => image_facts(source, r, *mode),
            None => source
                .pool(&r.pool)
                .map_err(anyhow::Error::from)
                .and_then(|p| {
                    let mode = p.mirror_mode()?;
                    image_facts(source, r, mode)
                }),
        };
        match (found, volume) {
            // Not in the source Ceph pool: another Cinder backend holds it.
            (Err(e), Some(v)) if is_not_found(&e) => {
                if spec.conversion_hosts.is_some() {
                    Ok((ImageFacts::streamed(v), false))
                } else {
                    Err(e.context(format!(
                        "{} is not in the source Ceph pool: the volume is on another Cinder backend; add conversion_hosts to the spec to stream it",
                        r.source_spec()
                    )))
                }
            }
            (found, _) => {
                found.with_context(|| format!("reading {} on the source cluster", r.source_spec()))
            }
        }
    });
    let mut out = Vec::with_capacity(resolved.len());
    for ((r, obj), found) in resolved.into_iter().zip(facts) {
        let (mut facts, luks) = found?;
        let encrypted_volume = matches!(
            &obj,
            Some(CloudObject::Volume {
                encrypted: true,
                ..
            })
        );
        if encrypted_volume || luks {
            bail!(
                "{} is encrypted (LUKS): its key is in the source cloud's key manager, and \
                 ferry cannot carry it yet; move it another way, or decrypt it first",
                r.source_spec()
            );
        }
        let mut r = r;
        match &mut facts {
            ImageFacts::Ceph(c) => c.cloud = obj,
            // A streamed volume is no image of the source pool: named so.
            ImageFacts::Streamed(_) => r.pool = crate::spec::NO_POOL.to_string(),
        }
        out.push((r, facts));
    }
    Ok(out)
}

/// Whether an error says an image is not there.
fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<CephError>()
            .is_some_and(|c| c.kind() == crate::ceph::ErrorKind::NotFound)
    })
}

/// Images whose facts are read at once.
const DISCOVERY_THREADS: usize = 16;

/// With `options.clones: clone-of-parent`: the destination snapshots
/// (`pool/image@snap` in the destination Glance pool) of the Glance parents
/// of the clones in `facts` that are there already, protected (a parent
/// moved earlier, or put there otherwise). Reads only.
pub fn published_parents(
    destination: &Cluster,
    spec: &Spec,
    facts: &[(ImageRef, ImageFacts)],
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let mut out = std::collections::BTreeSet::new();
    let (Some(src_glance), Some(dst_glance)) = (
        spec.source.pools.glance.as_deref(),
        spec.destination.pools.glance.as_deref(),
    ) else {
        return Ok(out);
    };
    if spec.options.clones != crate::spec::Clones::CloneOfParent {
        return Ok(out);
    }
    for p in facts
        .iter()
        .filter_map(|(_, f)| f.ceph().and_then(|c| c.parent.as_ref()))
    {
        if p.pool != src_glance || !p.namespace.is_empty() {
            continue;
        }
        let pool = destination
            .pool(dst_glance)
            .with_context(|| format!("opening the destination Glance pool {dst_glance}"))?;
        let protected = match pool.open_image_read_only(&p.image, None) {
            Ok(img) => match img.snap_is_protected("snap") {
                Ok(yes) => yes,
                Err(e) if e.kind() == crate::ceph::ErrorKind::NotFound => false,
                Err(e) => return Err(e.into()),
            },
            Err(e) if e.kind() == crate::ceph::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        if protected {
            out.insert(format!("{dst_glance}/{}@snap", p.image));
        }
    }
    Ok(out)
}

/// Resolves `images[i]` of the spec: through the source cloud when one is
/// given (volumes and images by id or name, the volumes of a server; status
/// checked), else from the spec alone. A server entry gives one image per
/// attached volume.
pub fn resolve_entry(
    spec: &Spec,
    i: usize,
    cloud: Option<&Cloud>,
) -> anyhow::Result<Vec<(ImageRef, Option<CloudObject>)>> {
    let e = &spec.images[i];
    // A server's volumes: in use until ferry stops it (with stop_servers),
    // and its boot volume stays a volume to boot the new server from.
    let of_server = e.server.is_some();
    let volume =
        |vol: crate::openstack::Volume| -> anyhow::Result<(ImageRef, Option<CloudObject>)> {
            let c = cloud.expect("volumes are looked up only with a cloud");
            check_volume_status(
                c,
                &vol,
                spec.options.allow_in_use || (of_server && spec.options.stop_servers),
            )?;
            let to_glance = !of_server
                && spec.destination.cloud.is_some()
                && spec.options.transfer != crate::spec::Transfer::Stream
                && spec.options.bootable_volumes.to_glance(vol.is_bootable());
            let image_id = derived_image_id(&vol.id);
            let r = spec.resolve_volume(i, &vol.id, to_glance.then_some(image_id.as_str()))?;
            let mut obj = volume_object(&vol);
            // What the destination cloud's snapshots take from them.
            if spec.options.snapshots == crate::spec::Snapshots::Carry && !to_glance {
                if let CloudObject::Volume { snapshots, .. } = &mut obj {
                    *snapshots = volume_snapshots(c, &vol.id)?;
                }
            }
            Ok((r, Some(obj)))
        };
    if let (Some(c), Some(server)) = (cloud, &e.server) {
        let root = root_disk_entry(spec, i, c, server)?;
        let attached: Vec<crate::openstack::Volume> = Cinder(c)
            .volumes(None)?
            .into_iter()
            .filter(|v| {
                v.attachments
                    .iter()
                    .any(|a| a.server_id.as_deref() == Some(server.as_str()))
            })
            .collect();
        if attached.is_empty() && root.is_none() {
            bail!(
                "no volume of cloud {} (project {}) is attached to server {server}",
                c.name(),
                c.project_id()?
            );
        }
        let mut out: Vec<_> = root.into_iter().collect();
        for v in attached {
            out.push(volume(v)?);
        }
        return Ok(out);
    }
    Ok(vec![match (cloud, &e.volume, &e.glance_image) {
        (Some(c), Some(v), _) => volume(find_volume(c, v)?)?,
        (Some(c), None, Some(g)) => {
            let img = find_image(c, g)?;
            if img.status != "active" {
                bail!(
                    "image {} in cloud {} is {}, not active",
                    img.id,
                    c.name(),
                    img.status
                );
            }
            let mut r = spec.resolve(i)?;
            if r.name != img.id {
                if e.dest_name.is_none() {
                    r.dest_name = img.id.clone();
                }
                r.name = img.id.clone();
            }
            (r, Some(image_object(&img)))
        }
        _ => (spec.resolve(i)?, None),
    }])
}

/// The id a bootable volume's image gets in the destination Glance: derived
/// from the volume id, so planning again gives the same one.
pub fn derived_image_id(volume_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("ferry-image:{volume_id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4 layout
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A volume by id, or else by exact name (which must be unique).
fn find_volume(c: &Cloud, id_or_name: &str) -> anyhow::Result<crate::openstack::Volume> {
    let cinder = Cinder(c);
    by_id_or_name(
        c,
        "volume",
        id_or_name,
        || cinder.volume(id_or_name),
        || cinder.volumes(Some(id_or_name)),
        |v| v.id.clone(),
    )
}

/// An image by id, or else by exact name (which must be unique).
fn find_image(c: &Cloud, id_or_name: &str) -> anyhow::Result<crate::openstack::Image> {
    let glance = Glance(c);
    by_id_or_name(
        c,
        "image",
        id_or_name,
        || glance.image(id_or_name),
        || glance.images_with("name", id_or_name),
        |i| i.id.clone(),
    )
}

/// Looks a thing up by id; when there is no such id, by its name, which must
/// name exactly one.
fn by_id_or_name<T: Clone>(
    c: &Cloud,
    what: &str,
    id_or_name: &str,
    by_id: impl FnOnce() -> Result<T, crate::openstack::ApiError>,
    by_name: impl FnOnce() -> Result<Vec<T>, crate::openstack::ApiError>,
    id_of: impl Fn(&T) -> String,
) -> anyhow::Result<T> {
    match by_id() {
        Ok(v) => return Ok(v),
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(e.into()),
    }
    let found = by_name()?;
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no {what} with id or name {id_or_name:?} in cloud {} (project {})",
            c.name(),
            c.project_id()?
        ),
        many => bail!(
            "{} {what}s are named {id_or_name:?} in cloud {}: give the id ({})",
            many.len(),
            c.name(),
            many.iter().map(&id_of).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Refuses volumes that are busy, and attached ones whose servers run.
pub(crate) fn check_volume_status(
    c: &Cloud,
    v: &crate::openstack::Volume,
    allow_in_use: bool,
) -> anyhow::Result<()> {
    let servers: Vec<&str> = v
        .attachments
        .iter()
        .filter_map(|a| a.server_id.as_deref())
        .collect();
    match v.status.as_str() {
        "available" if servers.is_empty() => return Ok(()),
        "available" | "in-use" => {}
        other => bail!(
            "volume {} ({}) is {other}: only available or in-use volumes can move",
            v.id,
            v.name.as_deref().unwrap_or("")
        ),
    }
    if allow_in_use {
        return Ok(());
    }
    let compute = c.endpoint(Service::Compute).ok();
    for s in &servers {
        let status = match &compute {
            Some(_) => match crate::openstack::Nova(c).server(s) {
                Ok(server) => server
                    .get("status")
                    .and_then(|x| x.as_str())
                    .unwrap_or("UNKNOWN")
                    .to_string(),
                Err(e) if e.status() == Some(404) => "unknown: Nova has no such server".into(),
                Err(e) => return Err(e.into()),
            },
            None => "unknown: the cloud has no compute endpoint".into(),
        };
        if status != "SHUTOFF" {
            bail!(
                "volume {} ({}) is attached to server {s} (status {status}): shut the server off first, \
                 or set options.allow_in_use to move it anyway (a running server keeps writing)",
                v.id,
                v.name.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn volume_object(v: &crate::openstack::Volume) -> CloudObject {
    CloudObject::Volume {
        id: v.id.clone(),
        name: v.name.clone().unwrap_or_default(),
        description: v.description.clone().filter(|d| !d.is_empty()),
        size_gb: v.size,
        bootable: v.is_bootable(),
        volume_type: v.volume_type.clone(),
        metadata: v.metadata.clone(),
        image_metadata: v.volume_image_metadata.clone(),
        status: v.status.clone(),
        encrypted: v.encrypted,
        snapshots: Vec::new(),
    }
}

/// The Cinder snapshots of a source volume, oldest first.
fn volume_snapshots(cloud: &Cloud, volume_id: &str) -> anyhow::Result<Vec<CloudSnapshot>> {
    let mut snaps = Cinder(cloud)
        .snapshots_of(volume_id)
        .with_context(|| format!("listing the snapshots of volume {volume_id}"))?;
    snaps.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    Ok(snaps
        .into_iter()
        .map(|s| CloudSnapshot {
            name: s.name.unwrap_or_default(),
            description: s.description.filter(|d| !d.is_empty()),
            metadata: s.metadata,
            id: s.id,
        })
        .collect())
}

fn image_object(i: &crate::openstack::Image) -> CloudObject {
    CloudObject::Image {
        id: i.id.clone(),
        name: i.name.clone().unwrap_or_default(),
        disk_format: i.disk_format.clone().unwrap_or_else(|| "raw".into()),
        container_format: i.container_format.clone().unwrap_or_else(|| "bare".into()),
        min_disk: i.min_disk.unwrap_or(0),
        min_ram: i.min_ram.unwrap_or(0),
        properties: i.user_properties(),
    }
}

/// Who uses an image, in words: the one rule (`ceph::image_users`) over one
/// read of its features, watchers and lockers. `img` must be read-only (no
/// watch or lock of its own).
pub fn users_of(img: &Image<'_>) -> Result<Vec<String>, CephError> {
    Ok(user_words(
        img.features()?,
        &img.watchers()?,
        &img.lockers()?,
    ))
}

/// The record a plan left on the image before changing it, if one did.
/// Two plans' records, or one that cannot be read, stop the planning: which
/// features are the image's own is then unknown.
fn original_record(
    metadata: Vec<(String, String)>,
    image: &str,
) -> anyhow::Result<Option<OriginalRecord>> {
    let mut found = Vec::new();
    for (key, value) in metadata {
        if super::original_key_plan(&key).is_some() {
            found.push(OriginalRecord::parse(&key, &value).map_err(|e| anyhow!("{image}: {e}"))?);
        }
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => bail!(
            "{image} carries the records of plans {}: only one plan may move an image; remove the stale one (rbd image-meta remove {image} {})",
            found.iter().map(|r| r.plan.as_str()).collect::<Vec<_>>().join(" and "),
            super::original_key(&found[0].plan)
        ),
    }
}

/// The facts of one image, and whether it starts with a LUKS header (an
/// encrypted volume): read without opening it when it is plain (most are;
/// see `ceph::PlainImage`), else from one open handle. `pool_mode` is its
/// pool's mirror mode.
fn image_facts(
    cluster: &Cluster,
    r: &ImageRef,
    pool_mode: PoolMirrorMode,
) -> anyhow::Result<(ImageFacts, bool)> {
    let pool = cluster.pool(&r.pool)?;
    let (now, luks) = match pool.plain_image(&r.name)? {
        Some(plain) => (
            ImageNow {
                id: plain.id,
                size: plain.size,
                features: plain.features,
                mirroring: None,
                metadata: plain.metadata,
                user_snapshots: Vec::new(),
                users: Vec::new(),
                parent: None,
            },
            plain.luks,
        ),
        None => {
            // Read-only: no watch of our own, so any watcher is someone else.
            let img = pool.open_image_read_only(&r.name, None)?;
            let info = img.info()?;
            let now = ImageNow {
                id: img.id()?,
                size: info.size,
                features: info.features,
                mirroring: match img.mirror_info()?.state {
                    ImageMirrorState::Disabled => None,
                    _ => img.mirror_mode()?,
                },
                metadata: img.metadata_list()?,
                user_snapshots: user_snapshots(img.snapshots()?),
                users: users_of(&img)?,
                parent: img.parent()?,
            };
            (now, img.has_luks_header()?)
        }
    };
    Ok((now.facts(r, pool_mode)?, luks))
}

/// The names of an image's user snapshots, oldest first (by snapshot id,
/// whatever order librbd lists them in): the order a plan carries them.
pub(crate) fn user_snapshots(mut snaps: Vec<crate::ceph::Snapshot>) -> Vec<String> {
    snaps.sort_by_key(|s| s.id);
    snaps
        .into_iter()
        .filter(|s| s.namespace == SnapNamespace::User)
        .map(|s| s.name)
        .collect()
}

/// What an image is now, read from its header or from an open handle.
struct ImageNow {
    id: String,
    size: u64,
    features: Features,
    mirroring: Option<MirrorMode>,
    metadata: Vec<(String, String)>,
    user_snapshots: Vec<String>,
    users: Vec<String>,
    parent: Option<Parent>,
}

impl ImageNow {
    /// Its facts for a plan: a record of a plan that began on it carries
    /// its own features and mirroring (what cleanup puts back).
    fn facts(self, r: &ImageRef, pool_mode: PoolMirrorMode) -> anyhow::Result<ImageFacts> {
        let record = original_record(self.metadata, &r.source_spec())?;
        Ok(ImageFacts::Ceph(CephImage {
            id: self.id,
            size: self.size,
            features: record.as_ref().map_or(self.features, |rec| rec.features),
            mirroring: record.as_ref().map_or(self.mirroring, |rec| rec.mirroring),
            recorded: record.as_ref().map(|rec| Recorded {
                plan: rec.plan.clone(),
                features_now: self.features,
                mirroring_now: self.mirroring,
            }),
            user_snapshots: self.user_snapshots,
            in_use: !self.users.is_empty(),
            users: self.users,
            parent: self.parent,
            pool_mode,
            cloud: None,
        }))
    }
}

/// The definitions of the spec's servers (`server:` entries), read from the
/// source cloud's Nova, with the spec's mappings applied.
pub fn discover_servers(
    spec: &Spec,
    cloud: Option<&Cloud>,
) -> anyhow::Result<Vec<crate::plan::server::ServerDef>> {
    let mut out = Vec::new();
    let Some(c) = cloud else {
        return Ok(out);
    };
    let o = &spec.options;
    // A cloud without Nova: a server entry moves its volumes only.
    if c.endpoint(Service::Compute).is_err() {
        if o.stop_servers && spec.images.iter().any(|e| e.server.is_some()) {
            bail!(
                "options.stop_servers: cloud {} has no compute endpoint to stop servers with",
                c.name()
            );
        }
        return Ok(out);
    }
    let maps = crate::plan::server::Mappings {
        flavors: Some(&o.flavors),
        networks: Some(&o.networks),
        zones: Some(&o.availability_zones),
    };
    for e in &spec.images {
        let Some(id) = &e.server else { continue };
        let nova = crate::openstack::Nova(c);
        let server = nova
            .server(id)
            .with_context(|| format!("reading server {id} of cloud {}", c.name()))?;
        let attachments = nova.attachments(id)?;
        out.push(crate::plan::server::ServerDef::from_nova(
            &server,
            &attachments,
            &maps,
        )?);
    }
    Ok(out)
}

/// The root disk of a server booted from an image, as a volume to be: its
/// RBD image in Nova's pool, and what the destination's boot volume takes
/// from the server and its image (bootable, the image's properties as
/// volume image metadata). None for a server booted from a volume.
fn root_disk_entry(
    spec: &Spec,
    i: usize,
    c: &Cloud,
    server_id: &str,
) -> anyhow::Result<Option<(ImageRef, Option<CloudObject>)>> {
    if c.endpoint(Service::Compute).is_err() {
        return Ok(None);
    }
    let server = crate::openstack::Nova(c)
        .server(server_id)
        .with_context(|| format!("reading server {server_id} of cloud {}", c.name()))?;
    let Some(image_id) = crate::plan::server::ServerDef::image_of(&server) else {
        return Ok(None);
    };
    if !matches!(
        server.get("status").and_then(|s| s.as_str()),
        Some("SHUTOFF")
    ) && !spec.options.stop_servers
        && !spec.options.allow_in_use
    {
        bail!(
            "server {server_id} runs from its root disk: shut it off first, or set options.stop_servers to have ferry stop it at the cut-over"
        );
    }
    let r = spec.resolve_root_disk(i, server_id)?;
    let name = server.get("name").and_then(|n| n.as_str()).unwrap_or("");
    let disk_gb = server
        .pointer("/flavor/disk")
        .and_then(|d| d.as_u64())
        .unwrap_or(1)
        .max(1);
    // The image's properties, as Cinder notes them on a volume made from
    // an image (a deleted image leaves only its id).
    let mut image_metadata = BTreeMap::new();
    image_metadata.insert("image_id".to_string(), image_id.clone());
    match Glance(c).image(&image_id) {
        Ok(img) => {
            if let Some(n) = &img.name {
                image_metadata.insert("image_name".into(), n.clone());
            }
            for (k, v) in [
                ("disk_format", img.disk_format.clone()),
                ("container_format", img.container_format.clone()),
                ("min_ram", img.min_ram.map(|v| v.to_string())),
                ("min_disk", img.min_disk.map(|v| v.to_string())),
            ] {
                if let Some(v) = v {
                    image_metadata.insert(k.into(), v);
                }
            }
            image_metadata.extend(img.user_properties());
        }
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(e.into()),
    }
    let obj = CloudObject::Volume {
        id: crate::plan::server::root_disk_name(server_id),
        name: format!("{name}-root"),
        description: Some(format!("root disk of server {server_id} ({name})")),
        size_gb: disk_gb,
        bootable: true,
        volume_type: None,
        metadata: BTreeMap::new(),
        image_metadata,
        status: "in-use".into(),
        encrypted: false,
        snapshots: Vec::new(),
    };
    Ok(Some((r, Some(obj))))
}
