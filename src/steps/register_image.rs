//! The `register-image` step kind. A Glance image with the copy's protected
//! snapshot as its location; waits until `active`.

use super::prelude::*;

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
        cloud::register_image(cx, i, step, image, registration)
    }
}
