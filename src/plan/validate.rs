//! A plan bundle read as untrusted input. The source side writes it; the
//! operator of another role runs it with their own credentials, so nothing
//! in it may do more than its role's part of this plan: its format is
//! one this ferry writes, its names are of the alphabet their consumers
//! take, each step's action is its role's, acts on its role's site and
//! names only its own image's names, and nothing in it chooses how ssh
//! runs (the conversion hosts' ssh options are the runner's own, given on
//! their command line). Pure: a refusal names the field and says why.

use std::collections::BTreeSet;

use super::{
    cutover_snap, flat_name, original_key, partial_name, Action, Check, ImageAt, ImagePlan, Plan,
    Role, Site, Step,
};
use crate::spec::{ConversionHost, ConversionHosts, Transfer};
use crate::steps::{self, Place};

/// The bundle layout this ferry writes and reads, as the top-level
/// `bundle_format` line of the bundle.
pub const BUNDLE_FORMAT: u32 = 1;

/// The top-level key that holds [`BUNDLE_FORMAT`].
pub const FORMAT_KEY: &str = "bundle_format";

/// Why a bundle is refused: the field (`images[0].steps[3].role`) and what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Refused {
    pub field: String,
    pub problem: String,
}

fn refuse<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T, Refused> {
    Err(Refused {
        field: field.into(),
        problem: problem.into(),
    })
}

/// Checks the bundle's `bundle_format` line (a top-level key: ferry writes
/// it first). A bundle without it was written by an older ferry or by
/// hand; one with another number by another ferry.
pub fn check_format(text: &str) -> Result<(), Refused> {
    let value = text.lines().find_map(|l| {
        l.strip_prefix(FORMAT_KEY)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    });
    match value {
        None => refuse(
            FORMAT_KEY,
            "missing: the bundle was written by an older ferry or by hand; make it again with this ferry (ferry plan SPEC --bundle FILE)",
        ),
        Some(v) if v == BUNDLE_FORMAT.to_string() => Ok(()),
        Some(v) => refuse(
            FORMAT_KEY,
            format!(
                "{v:?} is not a format this ferry reads ({BUNDLE_FORMAT}): run it with the ferry that wrote it, or make it again with this one"
            ),
        ),
    }
}

/// Checks a bundle's plan (see the module's first lines).
pub fn check(plan: &Plan) -> Result<(), Refused> {
    check_word("id", &plan.id, is_id_char, 64)?;
    for (field, v) in [
        ("source_cluster", &plan.source_cluster),
        ("destination_cluster", &plan.destination_cluster),
    ] {
        if v.chars().any(char::is_control) {
            return refuse(field, "holds a control character");
        }
    }
    for (field, v) in [
        ("source_fsid", &plan.source_fsid),
        ("destination_fsid", &plan.destination_fsid),
    ] {
        if let Some(v) = v {
            check_word(field, v, |c| c.is_ascii_hexdigit() || c == '-', 64)?;
        }
    }
    let ids: BTreeSet<&str> = plan
        .images
        .iter()
        .flat_map(|i| &i.steps)
        .map(|s| s.id.as_str())
        .collect();
    for (i, img) in plan.images.iter().enumerate() {
        check_image(plan, i, img, &ids)?;
    }
    Ok(())
}

fn check_image(
    plan: &Plan,
    i: usize,
    img: &ImagePlan,
    ids: &BTreeSet<&str>,
) -> Result<(), Refused> {
    let at = format!("images[{i}].image");
    let r = &img.image;
    for (field, v) in [
        ("pool", &r.pool),
        ("name", &r.name),
        ("mirrored_pool", &r.mirrored_pool),
        ("dest_pool", &r.dest_pool),
        ("dest_name", &r.dest_name),
    ] {
        // A streamed volume may come from a spec that names no pool.
        if v.is_empty() && img.transfer == Transfer::Stream {
            continue;
        }
        check_rbd_name(&format!("{at}.{field}"), v)?;
    }
    if let Some(obj) = img.facts.cloud() {
        check_word(
            &format!("images[{i}].facts.cloud.id"),
            obj.id(),
            is_id_char,
            64,
        )?;
    }
    let names = Names::of(plan, img);
    let mut seen = BTreeSet::new();
    for (k, step) in img.steps.iter().enumerate() {
        let field = format!("images[{i}].steps[{k}]");
        if !seen.insert(step.id.as_str()) {
            return refuse(
                format!("{field}.id"),
                format!("{:?} is there twice", step.id),
            );
        }
        check_step(&field, i, step, &names, ids)?;
    }
    Ok(())
}

fn check_step(
    field: &str,
    i: usize,
    step: &Step,
    names: &Names<'_>,
    ids: &BTreeSet<&str>,
) -> Result<(), Refused> {
    // Ids count images from 1 (`2.4`: image 2's fourth step).
    let prefix = format!("{}.", i + 1);
    if !step
        .id
        .strip_prefix(&prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return refuse(
            format!("{field}.id"),
            format!("{:?} is not a step id of this image ({prefix}N)", step.id),
        );
    }
    for a in &step.after {
        if !ids.contains(a.as_str()) {
            return refuse(
                format!("{field}.after"),
                format!("{a:?} is no step of this plan"),
            );
        }
    }
    let role = role_of(&step.action);
    if step.role != role {
        return refuse(
            format!("{field}.role"),
            format!(
                "{} is {role}'s action, not {}'s: a bundle's steps stay in their roles",
                action_name(&step.action),
                step.role
            ),
        );
    }
    for (part, image, place) in action_images(&step.action) {
        let f = format!("{field}.action.{part}");
        names.check(&f, image)?;
        let site = place.site(names.direct);
        if image.site != site {
            return refuse(
                f,
                format!(
                    "{image}: {} ({role}) acts on the {} site only",
                    action_name(&step.action),
                    site
                ),
            );
        }
    }
    check_action(field, step, names)?;
    for (part, checks) in [
        ("requires", &step.requires),
        ("done_when", &step.done_when),
        ("past_when", &step.past_when),
    ] {
        for (c, check) in checks.iter().enumerate() {
            let f = format!("{field}.{part}[{c}]");
            for image in check_images(check) {
                // A server's stop waits for the rounds of all its volumes:
                // read-only, it may name any image of the plan.
                if let Check::RoundArrived { .. } = check {
                    if names
                        .plan
                        .images
                        .iter()
                        .any(|other| Names::of(names.plan, other).check(&f, image).is_ok())
                    {
                        continue;
                    }
                }
                names.check(&f, image)?;
            }
            if let Some(id) = check_cloud_id(check) {
                check_word(&f, id, is_id_char, 64)?;
            }
        }
    }
    Ok(())
}

/// What only some actions carry: what a cleanup may remove, the plan an
/// original record names, the stream path's volume and hosts.
fn check_action(field: &str, step: &Step, names: &Names<'_>) -> Result<(), Refused> {
    let f = |part: &str| format!("{field}.action.{part}");
    match &step.action {
        Action::RemoveImage(steps::RemoveImage { image })
            if image.image != flat_name(&names.img.image.name) =>
        {
            refuse(
                f("image"),
                format!(
                    "{image} is not this image's flat copy: a bundle removes only what ferry made"
                ),
            )
        }
        Action::RemoveMetadata(steps::RemoveMetadata { key, .. })
            if *key != original_key(names.plan_id) =>
        {
            refuse(
                f("key"),
                format!(
                    "{key:?} is not this plan's record ({})",
                    original_key(names.plan_id)
                ),
            )
        }
        Action::RecordOriginal(steps::RecordOriginal { record, .. })
            if record.plan != names.plan_id =>
        {
            refuse(
                f("record.plan"),
                format!("{:?} is not this plan ({})", record.plan, names.plan_id),
            )
        }
        Action::RemoveSnapshot(steps::RemoveSnapshot { image })
        | Action::FreezeSnapshot(steps::FreezeSnapshot { image })
        | Action::CreateCutover(steps::CreateCutover { image, .. })
            if image.snap.as_deref() != Some(names.cut.as_str()) =>
        {
            refuse(
                f("image"),
                format!(
                    "{image} is not at this plan's cut-over snapshot {}",
                    names.cut
                ),
            )
        }
        Action::Copy(steps::CopyImage { to, .. })
        | Action::FlatCopy(steps::FlatCopy { to, .. })
            if !names.is_made(to) =>
        {
            refuse(f("to"), format!("{to} is not a name this plan makes"))
        }
        Action::WarmRounds(steps::WarmRounds { partial, .. })
        | Action::WarmCopy(steps::WarmCopy { partial, .. })
            if !names.is_made(partial)
                || partial.image != crate::plan::partial_name(&names.img.image.dest_name) =>
        {
            refuse(
                f("partial"),
                format!("{partial} is not this image's partial copy: rounds write only into it"),
            )
        }
        Action::WarmCopy(steps::WarmCopy { cut, .. })
            if cut.snap.as_deref() != Some(names.cut.as_str()) =>
        {
            refuse(
                f("cut"),
                format!(
                    "{cut} is not at this plan's cut-over snapshot {}",
                    names.cut
                ),
            )
        }
        Action::CopySnapshots(steps::CopySnapshots { snapshots, .. }) => {
            for (k, s) in snapshots.iter().enumerate() {
                let f = f(&format!("snapshots[{k}]"));
                if !names.is_own(s) {
                    return refuse(f, format!("{s:?} is not one of the image's own snapshots"));
                }
                check_rbd_name(&f, s)?;
            }
            Ok(())
        }
        Action::Copy(steps::CopyImage { onto: Some(s), .. }) if !names.is_own(s) => refuse(
            f("onto"),
            format!("{s:?} is not one of the image's own snapshots"),
        ),
        Action::StreamVolume(steps::StreamVolume {
            source_volume,
            hosts,
        }) => {
            names.check_volume(&f("source_volume"), source_volume)?;
            check_hosts(&f("hosts"), hosts)
        }
        Action::CreateVolume(steps::CreateVolume { adoption, .. })
        | Action::FinishVolume(steps::FinishVolume { adoption })
        | Action::AdoptVolume(steps::AdoptVolume { adoption, .. }) => {
            names.check_volume(&f("adoption.source_volume"), &adoption.source_volume)
        }
        Action::ManageSnapshots(steps::ManageSnapshots {
            source_volume,
            snapshots,
            ..
        }) => {
            names.check_volume(&f("source_volume"), source_volume)?;
            for (k, s) in snapshots.iter().enumerate() {
                if !names.is_own(&s.rbd) {
                    return refuse(
                        f(&format!("snapshots[{k}].rbd")),
                        format!("{:?} is not one of the image's own snapshots", s.rbd),
                    );
                }
            }
            Ok(())
        }
        Action::RegisterImage(steps::RegisterImage { registration, .. }) => {
            check_word(&f("registration.id"), &registration.id, is_id_char, 64)
        }
        Action::StopServer(_) | Action::CheckDestinationServer(_) | Action::CreateServer(_) => {
            check_server_action(field, &step.action, names)
        }
        _ => Ok(()),
    }
}

/// The conversion hosts: names ssh takes as a host, a ferry command of
/// plain words, paths without control characters, and no ssh option.
pub fn check_hosts(field: &str, hosts: &ConversionHosts) -> Result<(), Refused> {
    if let Some(o) = hosts.ssh_options.first() {
        return refuse(
            format!("{field}.ssh_options"),
            format!(
                "{o:?}: a bundle sets no ssh option (ssh runs on your machine: -oProxyCommand would run a command there); give yours with ferry run --role conversion-hosts --ssh-config FILE / --ssh-option KEY=VALUE"
            ),
        );
    }
    for (side, h) in [
        ("source", &hosts.source),
        ("destination", &hosts.destination),
    ] {
        check_host(&format!("{field}.{side}"), h)?;
    }
    Ok(())
}

fn check_host(field: &str, h: &ConversionHost) -> Result<(), Refused> {
    check_word(
        &format!("{field}.ssh"),
        &h.ssh,
        |c| c.is_ascii_alphanumeric() || "._-@:".contains(c),
        255,
    )?;
    if h.ssh.starts_with('-') {
        return refuse(format!("{field}.ssh"), "begins with '-'");
    }
    if h.ip.parse::<std::net::IpAddr>().is_err() {
        return refuse(
            format!("{field}.ip"),
            format!("{:?} is not an IP address", h.ip),
        );
    }
    if let Some(n) = &h.name {
        check_word(
            &format!("{field}.name"),
            n,
            |c| c.is_ascii_alphanumeric() || "._-".contains(c),
            255,
        )?;
    }
    check_ferry_command(&format!("{field}.ferry"), &h.ferry)?;
    for (part, v) in [
        ("nfs_mount_base", &h.nfs_mount_base),
        ("ceph_conf", &h.ceph_conf),
        ("ceph_keyring", &h.ceph_keyring),
        ("state_dir", &h.state_dir),
    ] {
        if let Some(v) = v {
            if !v.starts_with('/') || v.chars().any(|c| c.is_control() || "?&".contains(c)) {
                return refuse(
                    format!("{field}.{part}"),
                    format!("{v:?} is not an absolute path without control characters, '?' or '&'"),
                );
            }
        }
    }
    Ok(())
}

/// A remote ferry command (`ferry`, `sudo -n /usr/local/bin/ferry`): words
/// of letters, digits and `_./@:+=,-`, which the remote shell reads as
/// they are (each is quoted anyway), the first not an option.
pub fn check_ferry_command(field: &str, cmd: &str) -> Result<(), Refused> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    if words.is_empty() || words[0].starts_with('-') {
        return refuse(field, format!("{cmd:?} is not a command"));
    }
    if cmd.chars().any(|c| c.is_whitespace() && c != ' ') {
        return refuse(field, "words are separated by spaces only");
    }
    for w in words {
        if let Some(c) = w
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_./@:+=,-".contains(*c)))
        {
            return refuse(
                field,
                format!("{cmd:?} holds {c:?}: a ferry command is plain words (no shell syntax)"),
            );
        }
    }
    Ok(())
}

/// The names one image's steps may use: the source image and its flat
/// carrier, their mirrored copies, the copy and its partial name; at no
/// snapshot, this plan's cut-over, or Glance's `snap`. A copy may also be a
/// clone of a destination parent's snapshot (read only).
struct Names<'a> {
    plan: &'a Plan,
    img: &'a ImagePlan,
    plan_id: &'a str,
    cut: String,
    direct: bool,
    parents: Vec<&'a ImageAt>,
}

impl<'a> Names<'a> {
    fn of(plan: &'a Plan, img: &'a ImagePlan) -> Names<'a> {
        let parents = img
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Copy(steps::CopyImage {
                    clone_of: Some(p), ..
                }) => Some(p),
                _ => None,
            })
            .collect();
        Names {
            plan,
            img,
            plan_id: &plan.id,
            cut: cutover_snap(&plan.id),
            direct: img.transfer == Transfer::Direct,
            parents,
        }
    }

    fn check(&self, field: &str, at: &ImageAt) -> Result<(), Refused> {
        if self.parents.contains(&at) {
            check_rbd_name(field, &at.pool)?;
            return check_rbd_name(field, &at.image);
        }
        let r = &self.img.image;
        let source = [r.name.clone(), flat_name(&r.name)];
        let ok = match at.site {
            Site::Source => at.pool == r.pool && source.contains(&at.image),
            Site::Destination => {
                (at.pool == r.mirrored_pool && source.contains(&at.image))
                    || self.is_made(at)
                    // The stream path's destination volume has no pool.
                    || (at.pool == "(cloud)" && self.img.transfer == Transfer::Stream)
            }
        };
        if !ok {
            return refuse(
                field,
                format!(
                    "{at} is not one of this image's names ({}): a step names only its own image",
                    r.source_spec()
                ),
            );
        }
        match at.snap.as_deref() {
            None | Some("snap") => Ok(()),
            Some(s) if s == self.cut => Ok(()),
            Some(s) if self.is_own(s) => check_rbd_name(field, s),
            Some(s) => refuse(
                field,
                format!(
                    "snapshot {s:?} is not this plan's ({}, snap, or one of the image's own)",
                    self.cut
                ),
            ),
        }
    }

    /// Whether `snap` is one of the image's own snapshots (its facts list
    /// them), which a plan carries.
    fn is_own(&self, snap: &str) -> bool {
        self.img
            .facts
            .ceph()
            .is_some_and(|c| c.user_snapshots.iter().any(|s| s == snap))
    }

    /// A name this image's steps make: its flat carrier on the source, its
    /// copy (partial and final) on the destination.
    fn is_made(&self, at: &ImageAt) -> bool {
        let r = &self.img.image;
        match at.site {
            Site::Source => at.pool == r.pool && at.image == flat_name(&r.name),
            Site::Destination => {
                at.pool == r.dest_pool
                    && (at.image == r.dest_name || at.image == partial_name(&r.dest_name))
            }
        }
    }

    /// The source volume a stream or adoption step names must be this
    /// image's.
    fn check_volume(&self, field: &str, id: &str) -> Result<(), Refused> {
        match self.img.facts.cloud() {
            Some(obj) if obj.id() == id => Ok(()),
            _ => refuse(
                field,
                format!(
                    "{id:?} is not this image's source volume ({})",
                    self.img.image.source_spec()
                ),
            ),
        }
    }
}

/// The server steps: ids of their alphabet, and only this image's volume.
fn check_server_action(field: &str, action: &Action, names: &Names<'_>) -> Result<(), Refused> {
    let f = |part: &str| format!("{field}.action.{part}");
    match action {
        // A server is stopped only for this image's own volume (and the
        // step checks that the server holds it).
        Action::StopServer(steps::StopServer { server, volume, .. }) => {
            check_word(&f("server"), server, is_id_char, 64)?;
            names.check_volume(&f("volume"), volume)
        }
        Action::CheckDestinationServer(steps::CheckDestinationServer { server, .. }) => {
            check_word(&f("server"), server, is_id_char, 64)
        }
        // The server a step makes boots from its image's volume and the
        // plan's other volumes only: ids of their alphabet, and this
        // image's volume among them (names are quoted where they are used).
        Action::CreateServer(steps::CreateServer { server, .. }) => {
            check_word(&f("server.id"), &server.id, is_id_char, 64)?;
            for (k, v) in server.volumes.iter().enumerate() {
                check_word(&f(&format!("server.volumes[{k}]")), v, is_id_char, 64)?;
            }
            if server
                .volumes
                .iter()
                .any(|v| names.check_volume("", v).is_ok())
            {
                return Ok(());
            }
            refuse(
                f("server.volumes"),
                format!(
                    "no volume of server {} is this image's source volume",
                    server.id
                ),
            )
        }
        _ => Ok(()),
    }
}

/// The one role each action belongs to.
fn role_of(a: &Action) -> Role {
    a.kind().role()
}

/// The action's kebab-case name, as the bundle spells it.
fn action_name(a: &Action) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.get("action").and_then(|s| s.as_str()).map(String::from))
        .unwrap_or_else(|| "this action".into())
}

/// The images an action names, each with its field and where it must be.
fn action_images(a: &Action) -> Vec<(&'static str, &ImageAt, Place)> {
    a.kind().images()
}

/// The images a check names.
fn check_images(c: &Check) -> Vec<&ImageAt> {
    match c {
        Check::Exists { image }
        | Check::Absent { image }
        | Check::NotInUse { image }
        | Check::FeaturesPresent { image, .. }
        | Check::FeaturesAbsent { image, .. }
        | Check::MirroringEnabled { image, .. }
        | Check::MirroringDisabled { image }
        | Check::SnapshotProtected { image }
        | Check::SnapshotExists { image }
        | Check::MetadataPresent { image, .. }
        | Check::MetadataAbsent { image, .. }
        | Check::SnapshotAbsent { image }
        | Check::MirrorSnapshotAfter { image }
        | Check::Published { image } => vec![image],
        Check::RoundArrived { source, image } => vec![source, image],
        Check::MirrorSynced {
            source, mirrored, ..
        } => vec![source, mirrored],
        Check::Verified { source, copy, .. } => vec![source, copy],
        Check::VolumeAdopted { .. }
        | Check::ImageRegistered { .. }
        | Check::VolumeCreated { .. }
        | Check::StreamVerified { .. }
        | Check::ServerStopped { .. }
        | Check::ServerCreated { .. } => vec![],
    }
}

/// The cloud id a check names.
fn check_cloud_id(c: &Check) -> Option<&str> {
    match c {
        Check::VolumeAdopted { source_volume }
        | Check::VolumeCreated { source_volume }
        | Check::StreamVerified { source_volume } => Some(source_volume),
        Check::ImageRegistered { id } => Some(id),
        Check::ServerStopped { server } => Some(server),
        Check::ServerCreated { source_server, .. } => Some(source_server),
        _ => None,
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn check_word(field: &str, v: &str, ok: impl Fn(char) -> bool, max: usize) -> Result<(), Refused> {
    if v.is_empty() || v.len() > max {
        return refuse(field, format!("{v:?} is empty or longer than {max}"));
    }
    match v.chars().find(|c| !ok(*c)) {
        Some(c) => refuse(field, format!("{v:?} holds {c:?}, which it may not")),
        None => Ok(()),
    }
}

/// A pool or image name as RBD takes it and `pool/image@snap` can say it:
/// no control character (a newline would end a script's line), no `/` or
/// `@`, not an option. The scripts quote every name.
fn check_rbd_name(field: &str, v: &str) -> Result<(), Refused> {
    check_word(field, v, |c| !c.is_control() && c != '/' && c != '@', 255)?;
    if v.starts_with('-') {
        return refuse(field, format!("{v:?} begins with '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
