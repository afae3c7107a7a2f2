//! The destination cloud's steps: check the inputs before anything changes,
//! adopt a copy with Cinder manage-existing, register a copy as a Glance
//! image. Each finds its own earlier work (by the adoption marker, or the
//! image id) so that running again never creates a second volume or image.

use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use super::Ctx;
use crate::openstack::{Cinder, Cloud, Glance, ManageRequest, Service, Volume};
use crate::plan::{
    Adoption, CloudObject, ImageAt, ImageRegistration, Step, VolumeAdoption, ADOPTED_FROM,
    REGISTERED_FROM,
};

impl Ctx<'_> {
    pub(super) fn dst_cloud(&self) -> anyhow::Result<&Cloud> {
        self.access.dst_cloud.as_ref().ok_or_else(|| match self.role {
            Some(r) => anyhow!("the {r} part has no destination cloud (give --cloud)"),
            None => anyhow!(
                "the plan adopts into a destination cloud, but the spec names none (destination.cloud)"
            ),
        })
    }

    pub(super) fn src_cloud(&self) -> anyhow::Result<&Cloud> {
        self.access
            .src_cloud
            .as_ref()
            .ok_or_else(|| match self.role {
                Some(r) => anyhow!("the {r} part has no source cloud (give --cloud)"),
                None => anyhow!(
                    "the plan reads the source cloud, but the spec names none (source.cloud)"
                ),
            })
    }

    /// The destination cluster's fsid: read from the cluster when this run
    /// reaches it, else the one the plan carries.
    fn destination_fsid(&self) -> anyhow::Result<Option<String>> {
        if let Ok(dst) = self.dst() {
            return Ok(Some(dst.fsid()?));
        }
        Ok(self.state.lock().unwrap().plan.destination_fsid.clone())
    }

    /// Whether the verified copy `image` is under its final name: storage
    /// looks at the image (and its protected snapshot); the destination cloud
    /// at Cinder's manageable volumes. For a Glance location, Glance itself
    /// refuses a snapshot that is not there, and register-image waits on it.
    pub(super) fn published(&self, image: &ImageAt) -> anyhow::Result<bool> {
        if self.access.dst.is_some() {
            if !self.exists(image)? {
                return Ok(false);
            }
            return match &image.snap {
                Some(_) => self.holds_protected(image),
                None => Ok(true),
            };
        }
        if image.snap.is_some() {
            return Ok(true);
        }
        let host = self.cinder_host(None, &image.pool)?;
        // The RBD driver opens every image of the pool for this list, and
        // answers 500 when one vanishes meanwhile (another volume deleted):
        // the session retries that as any 500 of a GET. Only waits ask
        // this, so all of them share one list a few seconds old.
        let cloud = self.dst_cloud()?;
        let names = self.observer.manageable.get(host.clone(), || {
            Ok(Cinder(cloud)
                .manageable(&host)?
                .into_iter()
                .map(|(name, _)| name)
                .collect())
        })?;
        Ok(names.iter().any(|name| name == &image.image))
    }

    /// The destination volume adopted from `source_volume`, if there is one.
    pub(super) fn adopted_volume(&self, source_volume: &str) -> anyhow::Result<Option<Volume>> {
        let cinder = Cinder(self.dst_cloud()?);
        let found = cinder.volumes_with_metadata(ADOPTED_FROM, source_volume)?;
        match found.len() {
            0 | 1 => Ok(found.into_iter().next()),
            n => bail!(
                "{n} destination volumes carry {ADOPTED_FROM}={source_volume} ({}): keep one",
                found
                    .iter()
                    .map(|v| v.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// `host@backend#pool` for manage-existing: the spec's, or the backend
    /// pool whose RBD location is this cluster's pool.
    fn cinder_host(&self, given: Option<&str>, rbd_pool: &str) -> anyhow::Result<String> {
        if let Some(h) = given {
            return Ok(h.to_string());
        }
        // One lookup per pool serves every image (and every poll) of the
        // run for a while: a backend's host rarely changes.
        let host = self.observer.hosts.get(rbd_pool.to_string(), || {
            let given = self
                .state
                .lock()
                .unwrap()
                .plan
                .images
                .iter()
                .find_map(|p| match &p.adoption {
                    Some(crate::plan::Adoption::Volume(v)) if p.image.dest_pool == rbd_pool => {
                        v.host.clone()
                    }
                    _ => None,
                });
            if let Some(h) = given {
                return Ok(h);
            }
            let cloud = self.dst_cloud()?;
            let fsid = self.destination_fsid()?;
            let pools = Cinder(cloud).backend_pools().context(
                "listing Cinder's backend pools (the admin role is needed by default; \
                 destination.cinder_host in the spec saves the lookup)",
            )?;
            let matching: Vec<&str> = pools
                .iter()
                .filter(|p| {
                    p.rbd_location().is_some_and(|(f, p)| {
                        fsid.as_deref().is_none_or(|want| f == want) && p == rbd_pool
                    })
                })
                .map(|p| p.name.as_str())
                .collect();
            match matching.as_slice() {
                [one] => Ok(one.to_string()),
                [] => bail!(
                    "no Cinder backend of cloud {} stores in pool {rbd_pool} of the destination cluster (fsid {}); backends: {}; give destination.cinder_host",
                    cloud.name(),
                    fsid.as_deref().unwrap_or("not known"),
                    pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
                many => bail!(
                    "several Cinder backends store in pool {rbd_pool}: {}; give destination.cinder_host",
                    many.join(", ")
                ),
            }
        })?;
        Ok(host.as_ref().clone())
    }
}

/// Reads the destination cloud and refuses bad inputs before anything
/// changes anywhere.
pub(super) fn check_destination(
    ctx: &Ctx<'_>,
    image: &ImageAt,
    adoption: &Adoption,
    create: bool,
) -> anyhow::Result<String> {
    let cloud = ctx.dst_cloud()?;
    match adoption {
        Adoption::Volume(v) => {
            if let Some(done) = ctx.adopted_volume(&v.source_volume)? {
                let how = if create { "made" } else { "adopted" };
                return Ok(format!("{how} already as volume {}", done.id));
            }
            let cinder = Cinder(cloud);
            if let Some(t) = &v.volume_type {
                let types = cinder.volume_types()?;
                if !types.iter().any(|x| &x.name == t || &x.id == t) {
                    bail!(
                        "volume type {t:?} does not exist in cloud {} (types: {}); map the source type with options.volume_types",
                        cloud.name(),
                        types.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                    );
                }
            }
            let taken = cinder.volumes(Some(&v.name))?;
            if let Some(other) = taken.first() {
                bail!(
                    "a volume named {:?} already exists in cloud {} ({}): choose another name (images[].name)",
                    v.name,
                    cloud.name(),
                    other.id
                );
            }
            if create {
                return Ok(format!(
                    "type {}, name free",
                    v.volume_type.as_deref().unwrap_or("(default)")
                ));
            }
            let host = ctx.cinder_host(v.host.as_deref(), &image.pool)?;
            Ok(format!(
                "type {}, name free, host {host}",
                v.volume_type.as_deref().unwrap_or("(default)")
            ))
        }
        Adoption::Image(g) => {
            let glance = Glance(cloud);
            match glance.image(&g.id) {
                Ok(existing) => {
                    let ours = existing.user_properties().contains_key(REGISTERED_FROM);
                    if !ours {
                        bail!(
                            "image id {} is taken in cloud {} by {:?}, which ferry did not register",
                            g.id,
                            cloud.name(),
                            existing.name.unwrap_or_default()
                        );
                    }
                    return Ok(format!("registered already as image {}", g.id));
                }
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(other) = glance.images_with("name", &g.name)?.first() {
                bail!(
                    "an image named {:?} already exists in cloud {} ({}): choose another name (images[].name)",
                    g.name,
                    cloud.name(),
                    other.id
                );
            }
            Ok(format!("image id and name {:?} free", g.name))
        }
    }
}

/// Polls `read` until it gives a status in `done`, fails on `failed`, and
/// reports waiting once.
pub(super) fn wait_status<T>(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    what: &str,
    done: &str,
    mut read: impl FnMut() -> anyhow::Result<(String, T)>,
) -> anyhow::Result<T> {
    poll(ctx, i, step, ctx.opts.poll, || {
        let (status, value) = read()?;
        if status == done {
            return Ok(Ok(value));
        }
        if status == "error" || status.starts_with("error_") || status == "killed" {
            bail!("{what} went to status {status}");
        }
        Ok(Err(format!("{what} ({status}) to be {done}")))
    })
}

/// Calls `read` every `interval` until it gives a value; until then it
/// says what it waits for (reported once, and named when the run's wait
/// timeout is over).
fn poll<T>(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    interval: std::time::Duration,
    mut read: impl FnMut() -> anyhow::Result<Result<T, String>>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut said = false;
    loop {
        let waiting_for = match read()? {
            Ok(v) => return Ok(v),
            Err(w) => w,
        };
        if !said {
            ctx.event(i, &step.name, "waiting", &format!("for {waiting_for}"));
            said = true;
        }
        if start.elapsed() > ctx.opts.wait_timeout {
            return Err(super::GaveUp(format!(
                "gave up after {:?} waiting for {waiting_for}",
                ctx.opts.wait_timeout
            ))
            .into());
        }
        std::thread::sleep(super::wait::poll_interval(interval, start.elapsed()));
        ctx.observer.pace.turn();
    }
}

/// Cinder's user messages about a volume: the reason a manage failed.
fn volume_messages(cloud: &Cloud, id: &str) -> String {
    let reply: Result<Value, _> = cloud.call_json(
        Service::BlockStorage,
        Method::GET,
        &format!("/messages?resource_uuid={id}"),
        &[("OpenStack-API-Version", "volume 3.3")],
        None,
    );
    reply
        .ok()
        .and_then(|v| {
            let msgs: Vec<String> = v
                .get("messages")?
                .as_array()?
                .iter()
                .filter_map(|m| m.get("user_message")?.as_str().map(str::to_string))
                .collect();
            (!msgs.is_empty()).then(|| msgs.join("; "))
        })
        .unwrap_or_else(|| "Cinder gave no reason; see cinder-volume's log".into())
}

/// Manage-existing of the copy, then bootable flag and image metadata.
pub(super) fn adopt_volume(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    image: &ImageAt,
    a: &VolumeAdoption,
) -> anyhow::Result<String> {
    let cloud = ctx.dst_cloud()?;
    let cinder = Cinder(cloud);
    let vol = match ctx.adopted_volume(&a.source_volume)? {
        Some(v) if v.status == "error" => bail!(
            "volume {} adopted from {} is in error: {}; delete it (the RBD image stays unless Cinder removed it) and run again",
            v.id,
            a.source_volume,
            volume_messages(cloud, &v.id)
        ),
        Some(v) => v,
        None => {
            let host = ctx.cinder_host(a.host.as_deref(), &image.pool)?;
            cinder
                .manage(&ManageRequest {
                    host,
                    source_name: image.image.clone(),
                    name: a.name.clone(),
                    description: a.description.clone(),
                    volume_type: a.volume_type.clone(),
                    bootable: a.bootable,
                    metadata: a.metadata.clone(),
                })
                .with_context(|| format!("managing {image}"))?
        }
    };
    let id = vol.id.clone();
    let what = format!("volume {id}");
    let vol = wait_status(ctx, i, step, &what, "available", || {
        let v = cinder.volume(&id)?;
        Ok((v.status.clone(), v))
    })
    .map_err(|e| {
        let says = volume_messages(cloud, &id);
        e.context(format!("adopting volume {id} ({says})"))
    })?;
    volume_settings(&cinder, &vol, a)?;
    Ok(format!("volume {id} {:?} available", a.name))
}

/// What a volume carries over besides its data: the bootable flag and the
/// image metadata, set where they differ.
pub(super) fn volume_settings(
    cinder: &Cinder<'_>,
    vol: &Volume,
    a: &VolumeAdoption,
) -> anyhow::Result<()> {
    if vol.is_bootable() != a.bootable {
        cinder.set_bootable(&vol.id, a.bootable)?;
    }
    let missing = a
        .image_metadata
        .iter()
        .any(|(k, v)| vol.volume_image_metadata.get(k) != Some(v));
    if missing {
        cinder.set_image_metadata(&vol.id, &a.image_metadata)?;
    }
    Ok(())
}

/// A Glance image whose location is the copy's protected snapshot.
pub(super) fn register_image(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    image: &ImageAt,
    g: &ImageRegistration,
) -> anyhow::Result<String> {
    let cloud = ctx.dst_cloud()?;
    let glance = Glance(cloud);
    let fsid = ctx.destination_fsid()?.ok_or_else(|| {
        anyhow!("the destination cluster's fsid is not known: make the plan with access to the destination cluster")
    })?;
    let url = format!(
        "rbd://{fsid}/{}/{}/{}",
        image.pool,
        image.image,
        image.snap.as_deref().unwrap_or("snap")
    );
    let existing = match glance.image(&g.id) {
        Ok(img) => Some(img),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(e.into()),
    };
    let img = match existing {
        Some(img) => img,
        None => {
            let mut fields = json!({
                "id": g.id, "name": g.name, "disk_format": g.disk_format,
                "container_format": g.container_format,
                "min_disk": g.min_disk, "min_ram": g.min_ram,
            });
            for (k, v) in &g.properties {
                fields[k] = json!(v);
            }
            glance
                .create(&fields)
                .context("creating the image record")?
        }
    };
    let img = if img.status == "queued" {
        add_location(ctx, i, step, &glance, &g.id, &url)?
    } else {
        img
    };
    if img.status != "active" {
        bail!(
            "image {} is {} after adding its location {url}",
            g.id,
            img.status
        );
    }
    Ok(format!("image {} {:?} active at {url}", g.id, g.name))
}

/// Adds the location. Glance checks it against Ceph and answers 400 while
/// the snapshot is missing: a run without the destination cluster cannot
/// see the copy itself, so it waits on that answer for the destination
/// storage part to publish it.
fn add_location(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    glance: &Glance<'_>,
    id: &str,
    url: &str,
) -> anyhow::Result<crate::openstack::Image> {
    let interval = ctx.opts.poll.max(std::time::Duration::from_secs(2));
    poll(ctx, i, step, interval, || {
        match glance.add_location(id, url) {
        Ok(img) => Ok(Ok(img)),
        Err(e) if e.status() == Some(400) && ctx.access.dst.is_none() => Ok(Err(format!(
            "Glance to accept {url} (the destination storage part publishes the verified copy)"
        ))),
        Err(e) => Err(anyhow::Error::new(e).context(
            "adding an rbd:// location (it needs show_multiple_locations = True on the destination glance-api)",
        )),
    }
    })
}

/// Reads the source cloud before the cut-over: the volume is still there
/// and idle (available, or its servers shut off), or the image active.
pub(super) fn check_source(
    ctx: &Ctx<'_>,
    object: &CloudObject,
    allow_in_use: bool,
    detached: bool,
) -> anyhow::Result<String> {
    let cloud = ctx.src_cloud()?;
    match object {
        CloudObject::Volume { id, .. } => {
            let v = Cinder(cloud).volume(id)?;
            if detached && v.status != "available" {
                bail!(
                    "volume {id} is {}: it streams only while attached to nothing (detach it from its server first)",
                    v.status
                );
            }
            crate::plan::check_volume_status(cloud, &v, allow_in_use)?;
            Ok(format!("volume {id} is {}", v.status))
        }
        CloudObject::Image { id, .. } => {
            let img = Glance(cloud).image(id)?;
            if img.status != "active" {
                bail!("image {id} is {}, not active", img.status);
            }
            Ok(format!("image {id} is active"))
        }
    }
}
