//! The `register-image` step kind. A Glance image with the copy's protected
//! snapshot as its location; waits until `active`.

use super::prelude::*;
use crate::openstack::Glance;
use crate::plan::{whose, Whose, REGISTERED_FROM};
use anyhow::Context;

/// A Glance image with the copy's protected snapshot as its location;
/// waits until `active`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterImage {
    pub image: ImageAt,
    pub registration: ImageRegistration,
}

impl Kind for RegisterImage {
    fn role(&self) -> Role {
        Role::DestinationCloud
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Destination)]
    }

    fn describe(&self) -> String {
        let RegisterImage {
            image,
            registration,
        } = self;
        format!(
            "register {image} as Glance image {} {:?} ({})",
            registration.id, registration.name, registration.disk_format
        )
    }

    fn script(&self, _st: &Step, plan: &Plan, _img: &ImagePlan) -> String {
        let RegisterImage {
            image,
            registration: g,
        } = self;
        let mut b = String::new();
        let create = glance::create(&g.create_fields(&plan.id));
        let _ = writeln!(b, "need_glance\n[ -n \"$DEST_FSID\" ] || die 'the plan carries no destination fsid: make it with access to the destination cluster'");
        let _ = writeln!(
            b,
            "url=\"rbd://$DEST_FSID/\"{}",
            q(&format!(
                "{}/{}/{}",
                image.pool,
                image.image,
                image.snap.as_deref().unwrap_or("snap")
            ))
        );
        // The record through the API: `openstack image create` without
        // --file uploads whatever its stdin holds.
        let _ = writeln!(b, "KEPT=''\nif osq image show -f json -- {}; then\n  ! image_earlier {} {} || KEPT={}\nelse\n{}\n  [ \"$CODE\" = 201 ] || die \"creating the image record gave HTTP $CODE: $OUT\"\nfi", q(&g.id), q(&g.id), g.earlier.as_str(), q(&g.id), api::call(&create, &[]).lines("  ", "api_send"));
        let _ = writeln!(b, "if [ -n \"$KEPT\" ]; then\n  say {}\nelse", q(&format!("kept image {}, registered earlier, as the registration; this plan's copy is not registered", g.id)));
        let locate = api::call(
            &glance::add_location(&g.id, &api::URL.stand_in()),
            &[api::URL],
        );
        let _ = writeln!(b, "  if [ \"$(printf '%s' \"$OUT\" | jq -r .status)\" = queued ]; then\n{}\n  fi", locate.lines("    ", "wait_for \"Glance to accept $url (the destination storage part publishes the verified copy)\" add_location"));
        let _ = writeln!(
            b,
            "  image_registered {} {} || die {}\nfi",
            q(&g.id),
            g.earlier.as_str(),
            q(&format!(
                "image {} is not active after adding its location",
                g.id
            ))
        );

        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let RegisterImage {
            image,
            registration,
        } = self;
        register_image(cx, i, step, image, registration)
    }
}

/// A Glance image whose location is the copy's protected snapshot.
fn register_image(
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
    let plan_id = ctx.plan_id();
    let img = match existing {
        Some(img) if !img.user_properties().contains_key(REGISTERED_FROM) => bail!(
            "image id {} is taken in cloud {} by {:?}, which ferry did not register",
            g.id,
            cloud.name(),
            img.name.unwrap_or_default()
        ),
        Some(img) => {
            let w = whose(&img.user_properties(), &plan_id, None);
            if w != Whose::ThisPlan {
                return cloud::earlier_image(&g.id, &w, ctx.earlier_choice(g.earlier), &plan_id);
            }
            img
        }
        None => glance
            .create(&g.create_fields(&plan_id))
            .context("creating the image record")?,
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
    cloud::poll(ctx, i, step, interval, || {
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
