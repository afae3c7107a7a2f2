//! What the cloud step kinds (`src/steps/`: check-source-cloud,
//! check-destination-cloud, adopt-volume, register-image and the stream
//! path's volumes) share when ferry executes them: the clouds of a run,
//! finding earlier work by the adoption marker or the image id (so that
//! running again never creates a second volume or image), judging an
//! earlier adoption, and waiting for a volume's or an image's status.

use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use super::Ctx;
use crate::openstack::{Cinder, Cloud, Glance, Volume};
use crate::plan::{
    whose, Adoption, EarlierAdoption, ImageAt, Step, VolumeAdoption, Whose, ADOPTED_BY,
    ADOPTED_FROM, REGISTERED_FROM, STREAM_PENDING,
};
use crate::steps;

/// The statuses of a volume once adopted: available, or attached since.
const ADOPTED_STATUSES: [&str; 5] = ["available", "in-use", "reserved", "attaching", "detaching"];

/// The volumes marked as adopted from one source volume, sorted.
#[derive(Default)]
pub(crate) struct Adoptions {
    /// This plan's (of its verified copy, as far as the run can tell).
    pub ours: Option<Volume>,
    /// The others, with whose they are.
    pub earlier: Vec<(Volume, Whose)>,
}

impl Ctx<'_> {
    pub(crate) fn dst_cloud(&self) -> anyhow::Result<&Cloud> {
        self.access.dst_cloud.as_ref().ok_or_else(|| match self.role {
            Some(r) => anyhow!("the {r} part has no destination cloud (give --cloud)"),
            None => anyhow!(
                "the plan adopts into a destination cloud, but the spec names none (destination.cloud)"
            ),
        })
    }

    pub(crate) fn src_cloud(&self) -> anyhow::Result<&Cloud> {
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
    pub(crate) fn destination_fsid(&self) -> anyhow::Result<Option<String>> {
        if let Ok(dst) = self.dst() {
            return Ok(Some(dst.fsid()?));
        }
        Ok(self.plan.destination_fsid.clone())
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

    /// The stream path's volume for `source_volume`: this plan's, or else
    /// an unfinished one ([`STREAM_PENDING`] set) another plan made, which
    /// this plan takes over (nothing trusts a pending volume's data; the
    /// stream writes it and `finish-volume` marks it this plan's).
    pub(crate) fn stream_target(&self, source_volume: &str) -> anyhow::Result<Option<Volume>> {
        let found = self.adoptions(source_volume)?;
        if found.ours.is_some() {
            return Ok(found.ours);
        }
        let mut pending: Vec<Volume> = found
            .earlier
            .into_iter()
            .map(|(v, _)| v)
            .filter(|v| v.metadata.contains_key(STREAM_PENDING))
            .collect();
        if pending.len() > 1 {
            bail!(
                "{} unfinished destination volumes carry {ADOPTED_FROM}={source_volume} ({}): keep one",
                pending.len(),
                pending.iter().map(|v| v.id.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        Ok(pending.pop())
    }

    /// The destination volumes marked as adopted from `source_volume`: this
    /// plan's, and the others (another plan's, an older ferry's, or this
    /// plan's of another copy).
    pub(crate) fn adoptions(&self, source_volume: &str) -> anyhow::Result<Adoptions> {
        let cinder = Cinder(self.dst_cloud()?);
        let found = cinder.volumes_with_metadata(ADOPTED_FROM, source_volume)?;
        let plan_id = self.plan_id();
        let digest = if found.is_empty() {
            None
        } else {
            self.copy_digest(source_volume)?
        };
        let mut out = Adoptions::default();
        let mut ours = Vec::new();
        for v in found {
            match whose(&v.metadata, &plan_id, digest.as_deref()) {
                Whose::ThisPlan => ours.push(v),
                w => out.earlier.push((v, w)),
            }
        }
        if ours.len() > 1 {
            bail!(
                "{} destination volumes carry {ADOPTED_FROM}={source_volume} and {ADOPTED_BY}={plan_id} ({}): keep one",
                ours.len(),
                ours.iter().map(|v| v.id.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        out.ours = ours.pop();
        Ok(out)
    }

    /// The digest this plan's copy for `source_volume` was verified with,
    /// when this run reaches the destination cluster (its record); None
    /// otherwise (the plan id alone then tells this plan's adoption).
    pub(crate) fn copy_digest(&self, source_volume: &str) -> anyhow::Result<Option<String>> {
        if self.access.dst.is_none() {
            return Ok(None);
        }
        let verify = self
            .plan
            .images
            .iter()
            .filter(|p| {
                matches!(&p.adoption, Some(Adoption::Volume(v)) if v.source_volume == source_volume)
            })
            .flat_map(|p| &p.steps)
            .find_map(|s| match &s.action {
                crate::plan::Action::Verify(steps::Verify { copy, origin, .. }) => Some((copy, origin)),
                _ => None,
            });
        match verify {
            Some((copy, origin)) => Ok(self.record(copy, origin)?.map(|r| r.sha256)),
            None => Ok(None),
        }
    }

    /// Whether the source volume is adopted: by this plan (available, or
    /// attached since, as by the server made from it; not pending), or,
    /// when the plan keeps an earlier adoption, by that one.
    pub(super) fn volume_adopted(&self, source_volume: &str) -> anyhow::Result<bool> {
        let found = self.adoptions(source_volume)?;
        // Adopted, and maybe attached since (the server made from it).
        let ready = |v: &Volume| {
            ADOPTED_STATUSES.contains(&v.status.as_str())
                && !v.metadata.contains_key(STREAM_PENDING)
        };
        if let Some(v) = &found.ours {
            return Ok(ready(v));
        }
        let keep = self.earlier_choice(self.planned_earlier(|a| match a {
            Adoption::Volume(v) => v.source_volume == source_volume,
            Adoption::Image(_) => false,
        })) == EarlierAdoption::Keep;
        match found.earlier.as_slice() {
            [(v, w)] if keep && ready(v) => {
                tracing::warn!(
                    "keeps volume {} {:?}, adopted earlier by {}, as the adoption of {source_volume} (earlier adoption: keep): this plan's copy is not adopted",
                    v.id,
                    v.name.as_deref().unwrap_or(""),
                    w.describe(&self.plan_id())
                );
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Whether Glance holds image `id`, active, registered by this plan,
    /// or, when the plan keeps an earlier registration, by ferry.
    pub(super) fn image_registered(&self, id: &str) -> anyhow::Result<bool> {
        let img = match Glance(self.dst_cloud()?).image(id) {
            Ok(img) => img,
            Err(e) if e.status() == Some(404) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let props = img.user_properties();
        let plan_id = self.plan_id();
        let ours = match whose(&props, &plan_id, None) {
            Whose::ThisPlan => true,
            w => {
                let keep = props.contains_key(REGISTERED_FROM)
                    && self.earlier_choice(self.planned_earlier(|a| match a {
                        Adoption::Image(g) => g.id == id,
                        Adoption::Volume(_) => false,
                    })) == EarlierAdoption::Keep;
                if keep && img.status == "active" {
                    tracing::warn!(
                        "keeps image {id}, registered earlier by {}, as the registration (earlier adoption: keep): this plan's copy is not registered",
                        w.describe(&plan_id)
                    );
                }
                keep
            }
        };
        Ok(ours && img.status == "active")
    }

    /// The plan's choice for earlier adoptions of the adoption `which`
    /// picks.
    pub(crate) fn planned_earlier(&self, which: impl Fn(&Adoption) -> bool) -> EarlierAdoption {
        self.plan
            .images
            .iter()
            .filter_map(|p| p.adoption.as_ref())
            .find(|a| which(a))
            .map(|a| match a {
                Adoption::Volume(v) => v.earlier,
                Adoption::Image(g) => g.earlier,
            })
            .unwrap_or_default()
    }

    /// What this run does with an earlier adoption: `ferry run
    /// --earlier-adoption`, else the plan's.
    pub(crate) fn earlier_choice(&self, planned: EarlierAdoption) -> EarlierAdoption {
        self.opts.earlier_adoption.unwrap_or(planned)
    }

    /// `host@backend#pool` for manage-existing: the spec's, or the backend
    /// pool whose RBD location is this cluster's pool.
    pub(crate) fn cinder_host(
        &self,
        given: Option<&str>,
        rbd_pool: &str,
    ) -> anyhow::Result<String> {
        if let Some(h) = given {
            return Ok(h.to_string());
        }
        // One lookup per pool serves every image (and every poll) of the
        // run for a while: a backend's host rarely changes.
        let host = self.observer.hosts.get(rbd_pool.to_string(), || {
            let given = self
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

/// What a plan does about earlier adoptions of its source.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict<'v> {
    /// There is none.
    None,
    /// Keep this one as the adoption.
    Keep(&'v Volume),
    /// Rename and unmark these, then adopt this plan's copy.
    Replace(Vec<&'v Volume>),
}

/// Judges the earlier adoptions of `source_volume` for plan `plan_id`
/// under `choice`: refuses (naming them and the choices) or says what to
/// do. Pure.
pub(crate) fn judge_earlier<'v>(
    earlier: &'v [(Volume, Whose)],
    choice: EarlierAdoption,
    plan_id: &str,
    source_volume: &str,
) -> anyhow::Result<Verdict<'v>> {
    if earlier.is_empty() {
        return Ok(Verdict::None);
    }
    let named = earlier
        .iter()
        .map(|(v, w)| {
            format!(
                "volume {} {:?} ({}, adopted by {})",
                v.id,
                v.name.as_deref().unwrap_or(""),
                v.status,
                w.describe(plan_id)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    match choice {
        EarlierAdoption::Refuse => bail!(
            "source volume {source_volume} was adopted before, not by this plan ({plan_id}): {named}. \
             It is not taken as this plan's. Choose with options.earlier_adoption in the spec \
             (or ferry run --earlier-adoption, or FERRY_EARLIER_ADOPTION for the script): \
             keep (it stays the adoption; this plan's verified copy is not adopted), \
             replace (this plan's copy is adopted; the earlier volume keeps its data and is renamed \
             <name>.ferry-replaced-{plan_id}), or unmanage or delete it yourself"
        ),
        EarlierAdoption::Keep => match earlier {
            [(v, _)] => Ok(Verdict::Keep(v)),
            _ => bail!(
                "source volume {source_volume} has {} earlier adoptions ({named}): keep one, or replace them",
                earlier.len()
            ),
        },
        EarlierAdoption::Replace => {
            if let Some((v, _)) = earlier
                .iter()
                .find(|(v, _)| v.status == "in-use" || !v.attachments.is_empty())
            {
                bail!(
                    "volume {} {:?}, adopted earlier from {source_volume}, is attached (servers {}): replacing it would leave them on the old data; detach it first, or keep it",
                    v.id,
                    v.name.as_deref().unwrap_or(""),
                    v.attachments
                        .iter()
                        .filter_map(|a| a.server_id.as_deref())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(Verdict::Replace(earlier.iter().map(|(v, _)| v).collect()))
        }
    }
}

/// Renames and unmarks the earlier adoptions this plan replaces (their
/// data and other metadata stay); says what it did.
pub(crate) fn replace_earlier(
    cinder: &Cinder<'_>,
    replaced: &[&Volume],
    plan_id: &str,
) -> anyhow::Result<Vec<String>> {
    let mut said = Vec::new();
    for v in replaced {
        let old = v.name.clone().unwrap_or_default();
        let (name, metadata) = crate::plan::replaced(&old, &v.metadata, plan_id);
        cinder
            .update_volume(&v.id, &name, &metadata)
            .with_context(|| format!("renaming the replaced volume {}", v.id))?;
        tracing::warn!(
            "volume {} {old:?}, an earlier adoption of the same source, is replaced by plan {plan_id}: renamed {name:?}, its {ADOPTED_FROM} mark moved to {}; its data is kept (delete it once the new volume is trusted)",
            v.id,
            crate::plan::REPLACED_SOURCE
        );
        said.push(format!("volume {} {old:?} renamed {name:?}", v.id));
    }
    Ok(said)
}

/// Before the stream path makes its volume: refuses, or replaces, the
/// earlier adoptions of its source. A kept one is finished already when
/// this runs only if it is not (the step is past otherwise): refused.
pub(crate) fn earlier_before_create(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    cinder: &Cinder<'_>,
    earlier: &[(Volume, Whose)],
    a: &VolumeAdoption,
) -> anyhow::Result<()> {
    let plan_id = ctx.plan_id();
    match judge_earlier(earlier, ctx.earlier_choice(a.earlier), &plan_id, &a.source_volume)? {
        Verdict::Keep(k) => bail!(
            "volume {} {:?}, adopted earlier from {}, is to be kept, but it is {} and not finished ({} set): finish it with its own plan, or replace it",
            k.id,
            k.name.as_deref().unwrap_or(""),
            a.source_volume,
            k.status,
            STREAM_PENDING
        ),
        Verdict::Replace(r) => {
            for said in replace_earlier(cinder, &r, &plan_id)? {
                ctx.event(i, step.name.as_str(), "replaced", &said);
            }
        }
        Verdict::None => {}
    }
    Ok(())
}

/// What the input check says of a Glance image ferry registered under
/// this plan's image id: this plan's, kept, or refused. Glance never gives
/// an image id twice (a deleted image's id stays taken), so another plan's
/// image cannot be replaced. Pure.
pub(crate) fn earlier_image(
    id: &str,
    w: &Whose,
    choice: EarlierAdoption,
    plan_id: &str,
) -> anyhow::Result<String> {
    let who = w.describe(plan_id);
    match (w, choice) {
        (Whose::ThisPlan, _) => Ok(format!("registered already as image {id}")),
        (_, EarlierAdoption::Keep) => Ok(format!(
            "keeps image {id}, registered earlier by {who}, as the registration: this plan's copy is not registered"
        )),
        (_, EarlierAdoption::Replace) => bail!(
            "image {id} was registered earlier by {who}: Glance never gives an image id twice, so it cannot be replaced; keep it (options.earlier_adoption: keep), or delete it and move the source with a plan that gives the image another id"
        ),
        (_, EarlierAdoption::Refuse) => bail!(
            "image {id} was registered earlier by {who}, not by this plan ({plan_id}): it is not taken as this plan's. Keep it with options.earlier_adoption: keep (or ferry run --earlier-adoption keep, or FERRY_EARLIER_ADOPTION=keep for the script), or delete it (Glance will not take its id again)"
        ),
    }
}

/// Polls `read` until it gives a status in `done`, fails on `failed`, and
/// reports waiting once.
pub(crate) fn wait_status<T>(
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

/// Waits until server `id` has status `want`; one in `ERROR` fails the
/// step with Nova's fault.
pub(crate) fn wait_server(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    nova: &crate::openstack::Nova<'_>,
    id: &str,
    want: &str,
) -> anyhow::Result<()> {
    use crate::openstack::compute::{fault, status};
    poll(ctx, i, step, ctx.opts.poll, || {
        let s = nova.server(id)?;
        match status(&s) {
            w if w == want => Ok(Ok(())),
            "ERROR" => bail!("server {id} went to status ERROR: {}", fault(&s)),
            other => Ok(Err(format!("server {id} ({other}) to be {want}"))),
        }
    })
}

/// Stops server `id` (`os-stop`: Nova asks the guest to shut down, then
/// powers it off) and waits for `SHUTOFF`.
pub(crate) fn stop_server(
    ctx: &Ctx<'_>,
    i: usize,
    step: &Step,
    nova: &crate::openstack::Nova<'_>,
    id: &str,
) -> anyhow::Result<()> {
    match nova.stop(id) {
        Ok(()) => {}
        // Stopping already (or stopped meanwhile): the wait tells.
        Err(e) if e.status() == Some(409) => {}
        Err(e) => return Err(e.into()),
    }
    wait_server(ctx, i, step, nova, id, "SHUTOFF")
}

/// Calls `read` every `interval` until it gives a value; until then it
/// says what it waits for (reported once, and named when the run's wait
/// timeout is over).
pub(crate) fn poll<T>(
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
            ctx.event(
                i,
                step.name.as_str(),
                "waiting",
                &format!("for {waiting_for}"),
            );
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
pub(crate) fn volume_messages(cloud: &Cloud, id: &str) -> String {
    let reply: Result<Value, _> = cloud
        .request(&crate::openstack::api::cinder::messages(id))
        .and_then(|a| a.json("Cinder's messages"));
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

/// What a volume carries over besides its data: the bootable flag and the
/// image metadata, set where they differ.
pub(crate) fn volume_settings(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(id: &str, status: &str, servers: &[&str]) -> Volume {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": format!("db-{id}"), "size": 1, "status": status,
            "attachments": servers.iter().map(|s| serde_json::json!({"server_id": s})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn by(plan: Option<&str>) -> Whose {
        Whose::Earlier {
            plan: plan.map(str::to_string),
            digest: None,
        }
    }

    #[test]
    fn an_earlier_adoption_is_refused_by_default_naming_it_and_the_choices() {
        assert_eq!(
            judge_earlier(&[], EarlierAdoption::Refuse, "p2", "s1").unwrap(),
            Verdict::None
        );
        let trial = [(vol("v1", "available", &[]), by(Some("p1")))];
        let e = judge_earlier(&trial, EarlierAdoption::Refuse, "p2", "s1")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("source volume s1 was adopted before, not by this plan (p2): volume v1 \"db-v1\" (available, adopted by plan p1)"),
            "{e}"
        );
        assert!(
            e.contains("options.earlier_adoption") && e.contains("keep") && e.contains("replace"),
            "{e}"
        );
        let old = [(vol("v0", "available", &[]), by(None))];
        let e = judge_earlier(&old, EarlierAdoption::Refuse, "p2", "s1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("adopted by an older ferry (no plan noted)"),
            "{e}"
        );
    }

    #[test]
    fn keep_takes_one_earlier_adoption_and_replace_any_not_attached() {
        let one = [(vol("v1", "available", &[]), by(Some("p1")))];
        assert_eq!(
            judge_earlier(&one, EarlierAdoption::Keep, "p2", "s1").unwrap(),
            Verdict::Keep(&one[0].0)
        );
        assert_eq!(
            judge_earlier(&one, EarlierAdoption::Replace, "p2", "s1").unwrap(),
            Verdict::Replace(vec![&one[0].0])
        );
        let two = [
            (vol("v1", "available", &[]), by(Some("p1"))),
            (vol("v0", "error", &[]), by(None)),
        ];
        let e = judge_earlier(&two, EarlierAdoption::Keep, "p2", "s1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has 2 earlier adoptions"), "{e}");
        assert_eq!(
            judge_earlier(&two, EarlierAdoption::Replace, "p2", "s1").unwrap(),
            Verdict::Replace(vec![&two[0].0, &two[1].0])
        );
        // A server on the earlier volume would stay on the old data.
        let used = [(vol("v1", "in-use", &["srv1"]), by(Some("p1")))];
        let e = judge_earlier(&used, EarlierAdoption::Replace, "p2", "s1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is attached (servers srv1)"), "{e}");
    }

    #[test]
    fn an_earlier_glance_registration_is_kept_or_refused_never_replaced() {
        let mine = earlier_image("i1", &Whose::ThisPlan, EarlierAdoption::Refuse, "p2");
        assert_eq!(mine.unwrap(), "registered already as image i1");
        let w = by(Some("p1"));
        let e = earlier_image("i1", &w, EarlierAdoption::Refuse, "p2")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("image i1 was registered earlier by plan p1, not by this plan (p2)"),
            "{e}"
        );
        let e = earlier_image("i1", &w, EarlierAdoption::Replace, "p2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Glance never gives an image id twice"), "{e}");
        let kept = earlier_image("i1", &w, EarlierAdoption::Keep, "p2").unwrap();
        assert!(
            kept.starts_with("keeps image i1, registered earlier by plan p1"),
            "{kept}"
        );
    }
}
