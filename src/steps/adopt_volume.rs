//! The `adopt-volume` step kind. Cinder manage-existing of the copy, then
//! bootable flag and image metadata; waits until `available`.

use super::prelude::*;

/// Cinder manage-existing of the copy, then bootable flag and image
/// metadata; waits until `available`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptVolume {
    pub image: ImageAt,
    pub adoption: VolumeAdoption,
}

impl Kind for AdoptVolume {
    fn role(&self) -> Role {
        Role::DestinationCloud
    }

    fn images(&self) -> Vec<(&'static str, &ImageAt, Place)> {
        vec![("image", &self.image, Place::Destination)]
    }

    fn describe(&self) -> String {
        let AdoptVolume { image, adoption } = self;
        format!(
            "manage {image} as volume {:?}{}{}",
            adoption.name,
            type_words(adoption),
            if adoption.bootable { ", bootable" } else { "" }
        )
    }

    fn script(&self, _st: &Step, plan: &Plan, _img: &ImagePlan) -> String {
        let AdoptVolume { image, adoption: a } = self;
        let mut b = String::new();
        let (host, metadata) = (api::HOST.stand_in(), a.adopted_metadata(&plan.id, None));
        let manage = cinder::manage(&a.manage(&host, &image.image, &metadata));
        let _ = writeln!(
            b,
            "KEPT=''\nif ! adopted {}; then\n  judge_earlier {} {}\n  if [ -z \"$KEPT\" ]; then\n    replace_earlier",
            q(&a.source_volume),
            q(&a.source_volume),
            a.earlier.as_str()
        );
        let _ = writeln!(
            b,
            "{}",
            api::call(&manage, &[api::HOST]).lines("    ", "api_send")
        );
        let _ = writeln!(b, "    case $CODE in 2*) ;; *) die \"manage-existing of \"{}\" gave HTTP $CODE: $OUT\" ;; esac\n    VOL=$(printf '%s' \"$OUT\" | jq -r .volume.id)\n  fi\nfi", q(&image.to_string()));
        let _ = writeln!(
            b,
            "if [ -n \"$KEPT\" ]; then\n  wait_for \"volume $KEPT to be available\" volume_status_is \"$KEPT\" available\n  say \"kept volume $KEPT, adopted earlier, as the adoption;\" {}\nelse",
            q(&format!("{image} is not adopted"))
        );
        let mut rest = String::new();
        let _ = writeln!(
            rest,
            "wait_for \"volume $VOL to be available\" volume_status_is \"$VOL\" available"
        );
        volume_settings(&mut rest, a);
        let _ = writeln!(
            rest,
            "say \"volume $VOL\" {}",
            q(&format!("{:?} available", a.name))
        );
        for l in rest.lines() {
            let _ = writeln!(b, "  {l}");
        }
        let _ = writeln!(b, "fi");

        b
    }

    fn execute(&self, cx: &Ctx<'_>, i: usize, step: &Step) -> anyhow::Result<String> {
        let AdoptVolume { image, adoption } = self;
        cloud::adopt_volume(cx, i, step, image, adoption)
    }
}
