//! The plan for people: one line per step, grouped by image.

use std::fmt::Write;

use super::{Action, Check, CloudObject, ImageAt, Plan};
use crate::steps;
use crate::units::human_bytes;

/// Renders a plan as text for a terminal.
pub fn render_text(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan: {} -> {}, {} image(s), cleanup {}",
        plan.source_cluster,
        plan.destination_cluster,
        plan.images.len(),
        if plan.cleanup { "on" } else { "off" }
    );
    let resumed: Vec<String> = plan
        .images
        .iter()
        .filter(|i| i.facts.ceph().is_some_and(|c| c.recorded.is_some()))
        .map(|i| i.image.source_spec())
        .collect();
    if !resumed.is_empty() {
        let _ = writeln!(
            s,
            "resumes plan {}: begun before on {}, whose records give the features and mirroring they had before it",
            plan.id,
            resumed.join(", ")
        );
    }
    for img in &plan.images {
        if img.transfer == crate::spec::Transfer::Stream {
            let _ = writeln!(
                s,
                "\n{} (cinder volume, {}, streamed through the conversion hosts) -> a new volume of the destination cloud",
                img.image.source_spec(),
                human_bytes(img.facts.size()),
            );
        } else {
            let _ = writeln!(
                s,
                "\n{} ({}, {}, {} mirroring) -> {}/{}",
                img.image.source_spec(),
                serde_plain(&img.image.kind),
                human_bytes(img.facts.size()),
                img.mode,
                img.image.dest_pool,
                img.image.dest_name
            );
        }
        match img.facts.cloud() {
            Some(CloudObject::Volume {
                id,
                name,
                bootable,
                volume_type,
                ..
            }) => {
                let _ = writeln!(
                    s,
                    "  volume {id} {name:?}, type {}{}",
                    volume_type.as_deref().unwrap_or("(none)"),
                    if *bootable { ", bootable" } else { "" }
                );
            }
            Some(CloudObject::Image {
                id,
                name,
                disk_format,
                ..
            }) => {
                let _ = writeln!(s, "  image {id} {name:?}, {disk_format}");
            }
            None => {}
        }
        for w in &img.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        for step in &img.steps {
            let _ = writeln!(
                s,
                "  {:<5} {:<20} {}",
                step.id,
                step.role.to_string(),
                describe(&step.action)
            );
            let waits: Vec<String> = step
                .requires
                .iter()
                .filter(|c| matches!(c, Check::NotInUse { .. } | Check::MirrorSynced { .. }))
                .map(describe_check)
                .collect();
            if !waits.is_empty() {
                let _ = writeln!(s, "  {:<5} {:<20}   needs: {}", "", "", waits.join("; "));
            }
        }
    }
    s
}

fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `, type T` when the volume has a type.
pub(crate) fn type_words(a: &crate::plan::VolumeAdoption) -> String {
    a.volume_type
        .as_ref()
        .map(|t| format!(", type {t}"))
        .unwrap_or_default()
}

pub(crate) fn describe(a: &Action) -> String {
    a.kind().describe()
}

fn describe_check(c: &Check) -> String {
    let at = |i: &ImageAt| i.to_string();
    match c {
        Check::NotInUse { image } => format!("{} not in use", at(image)),
        Check::MirrorSynced { mirrored, .. } => format!("{} in sync", at(mirrored)),
        other => format!("{other:?}"),
    }
}

/// Images listed in full by [`role_preview`]; the rest are counted.
const PREVIEW_IMAGES: usize = 20;

/// What one role's part of a plan will do, for its operator to read before
/// anything changes (`ferry run --role`): the plan, then per image the
/// steps of that role, and for the stream part the commands ssh runs on
/// the conversion hosts. Steps already done are skipped when run.
pub fn role_preview(plan: &Plan, role: super::Role) -> String {
    let mut s = String::new();
    let mine: Vec<_> = plan
        .run_order()
        .into_iter()
        .map(|k| &plan.images[k])
        .filter(|i| i.steps.iter().any(|st| st.role == role))
        .collect();
    let _ = writeln!(
        s,
        "the {role} part of plan {} ({} -> {}): {} of its {} image(s); each step checks first and skips what is done",
        plan.id,
        plan.source_cluster,
        plan.destination_cluster,
        mine.len(),
        plan.images.len()
    );
    for img in mine.iter().take(PREVIEW_IMAGES) {
        let _ = writeln!(s, "  {}:", printable(&img.image.source_spec()));
        for st in img.steps.iter().filter(|st| st.role == role) {
            let what = printable(&describe(&st.action));
            let _ = writeln!(s, "    {} {}: {what}", st.id, st.name);
            if let Action::StreamVolume(steps::StreamVolume { hosts, .. }) = &st.action {
                for h in [&hosts.source, &hosts.destination] {
                    let _ = writeln!(
                        s,
                        "      ssh {} runs: {} agent ...",
                        printable(&h.ssh),
                        printable(&h.ferry)
                    );
                }
            }
        }
    }
    if mine.len() > PREVIEW_IMAGES {
        let _ = writeln!(
            s,
            "  ... and {} more image(s) (ferry script --role {role} lists every step)",
            mine.len() - PREVIEW_IMAGES
        );
    }
    s
}

/// `s` without control characters (a name may hold any): a terminal
/// escape or a line break in a bundle's name cannot hide or fake a line.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StepName;
    use crate::plan::{Role, Step};

    #[test]
    fn a_role_preview_lists_that_roles_steps_and_no_control_character() {
        let mut plan: Plan = serde_yaml::from_str(
            "id: 0123abcd\nmode: snapshot\nsource_cluster: site-a\ndestination_cluster: site-b\ncleanup: false\nimages: []\n",
        )
        .unwrap();
        let image = |pool: &str, name: &str| ImageAt {
            site: crate::plan::Site::Destination,
            pool: pool.into(),
            image: name.into(),
            snap: None,
        };
        let step = |id: &str, name: StepName, role: Role, action: Action| Step {
            id: id.into(),
            name,
            role,
            action,
            after: vec![],
            requires: vec![],
            done_when: vec![],
            past_when: vec![],
        };
        let img: crate::plan::ImagePlan = serde_yaml::from_str(
            "image: {kind: cinder, pool: volumes, name: \"volume-1\\e[2J\", mirrored_pool: volumes, dest_pool: cinder-volumes, dest_name: volume-1}\nmode: snapshot\nfacts: {size: 1, features: [], user_snapshots: [], mirroring: null, in_use: false, pool_mode: image}\nwarnings: []\nsteps: []\n",
        )
        .unwrap();
        for k in 0..(PREVIEW_IMAGES + 2) {
            let mut img = img.clone();
            img.steps = vec![
                step(
                    &format!("{}.1", k + 1),
                    StepName::Publish,
                    Role::DestinationStorage,
                    Action::Publish(steps::Publish {
                        partial: image("cinder-volumes", "volume-1.ferry-partial"),
                        copy: image("cinder-volumes", "volume-1"),
                    }),
                ),
                step(
                    &format!("{}.2", k + 1),
                    StepName::Preflight,
                    Role::SourceStorage,
                    Action::Preflight(steps::Preflight {
                        image: image("volumes", "volume-1"),
                    }),
                ),
            ];
            plan.images.push(img);
        }
        let p = role_preview(&plan, Role::DestinationStorage);
        assert!(p.starts_with("the destination-storage part of plan 0123abcd (site-a -> site-b): 22 of its 22 image(s)"), "{p}");
        assert!(
            p.contains("  volumes/volume-1?[2J:\n    1.1 publish: "),
            "{p}"
        );
        assert!(!p.contains("preflight"), "{p}");
        assert!(p.contains("... and 2 more image(s) (ferry script --role destination-storage lists every step)"), "{p}");
        assert!(!p.chars().any(|c| c.is_control() && c != '\n'), "{p}");
    }
}
