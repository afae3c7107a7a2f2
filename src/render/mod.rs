//! Renders one role's part of a plan as a POSIX shell script of plain
//! `rbd`/`rados` (storage roles) or `openstack`/`curl`/`jq` (cloud roles)
//! commands: the second reading of the same plan that `exec` runs. Every
//! step is guarded by its `past_when`/`done_when` checks, waits poll with a
//! timeout, and the exit status says whether the next role may go.

pub mod api;

use std::fmt::Write;

use crate::ceph::{Features, MirrorMode};
use crate::openstack::api::cinder;
use crate::plan::{describe, Action, Adoption, Check, ImageAt, ImagePlan, Plan, Role, Site, Step};
use crate::steps;

const COMMON: &str = include_str!("common.sh");
const STORAGE: &str = include_str!("storage.sh");
const CLOUD: &str = include_str!("cloud.sh");

/// The shell-writing helpers the step kinds' `script` uses.
pub(crate) mod sh {
    pub(crate) use super::{
        cond, feature_args, feature_names, origin_json, q, snap, snap_create, spec, unchanged,
        volume_settings, with_snap, FROM_SOURCE,
    };
}

/// A shell word holding `s` literally: the one way a value enters a
/// script. Inside double quotes, close them around it (`"text "'value'" more"`
/// is one word).
pub fn q(s: &str) -> String {
    // A newline is `"$NL"` between quoted parts: every rendered value then
    // sits on one line, so indenting a block cannot change it.
    s.split('\n')
        .map(|part| format!("'{}'", part.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join("\"$NL\"")
}

/// `s` made safe for the rest of a `#` comment line: a newline or another
/// control character would end the comment and start a command.
pub(crate) fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub(crate) fn spec(at: &ImageAt) -> String {
    q(&format!("{}/{}", at.pool, at.image))
}

pub(crate) fn snap(at: &ImageAt) -> String {
    q(at.snap.as_deref().unwrap_or_default())
}

pub(crate) fn with_snap(at: &ImageAt) -> String {
    q(&format!(
        "{}/{}@{}",
        at.pool,
        at.image,
        at.snap.as_deref().unwrap_or_default()
    ))
}

/// The script's line that takes the snapshot `at` names, unless it exists.
pub(crate) fn snap_create(at: &ImageAt) -> String {
    format!(
        "snap_exists {} {} || rbdw snap create {}\n",
        spec(at),
        snap(at),
        with_snap(at)
    )
}

/// `rbd create`/`cp` options that create an image with `f`.
pub(crate) fn feature_args(f: Features) -> String {
    feature_names(f)
        .iter()
        .map(|n| format!(" --image-feature {n}"))
        .collect()
}

/// Feature names `rbd` takes (internal flags left out).
pub(crate) fn feature_names(f: Features) -> Vec<&'static str> {
    Features(f.0 & Features::CREATABLE.0).names()
}

struct Text {
    role: Role,
    what: &'static str,
    needs: &'static str,
    before: &'static str,
    after: &'static str,
}

fn text(role: Role) -> Text {
    match role {
        Role::SourceCloud => Text {
            role,
            what: "checks in the source cloud that every volume is still there and idle (available, or its servers shut off) and every image active. Reads only.",
            needs: "openstack and jq; OS_CLOUD naming the source cloud's clouds.yaml entry (or OS_* variables).",
            before: "ferry plan (this bundle).",
            after: "the source storage part. Stop or detach what this script names first.",
        },
        Role::SourceStorage => Text {
            role,
            what: "prepares each source image (features for journaling, mirroring), then takes the cut-over snapshot and sets its digest as image metadata, which mirroring carries to the destination.",
            needs: "rbd and jq with a key for the source pools (CEPH_CONF / CEPH_ARGS='--id <user> --keyring <file>').",
            before: "the source cloud part (the images are idle).",
            after: "the destination storage part, once this exits 0.",
        },
        Role::DestinationStorage => Text {
            role,
            what: "waits until the cut-over has arrived by rbd-mirror, copies it out of the mirrored pool under a partial name, verifies it against the cut-over's digest, and only then gives it its final name. Prints the hand-off lines (ferry-verified ...) on stdout.",
            needs: "rbd, rados and jq with a key for the destination pools (CEPH_CONF / CEPH_ARGS='--id <user> --keyring <file>').",
            before: "the source storage part (it may run earlier: it waits for the mirror).",
            after: "the destination cloud part; the hand-off lines go to the cleanup part.",
        },
        Role::DestinationCloud => Text {
            role,
            what: "checks the destination cloud's inputs (volume type, free names, Cinder host), waits for each verified copy, then adopts it with Cinder manage-existing or registers it as a Glance image.",
            needs: "openstack, curl and jq; OS_CLOUD naming the destination cloud's clouds.yaml entry (manage-existing needs the admin role by default). A volume another plan adopted from the same source (a kept trial migration's) is refused, naming it; FERRY_EARLIER_ADOPTION=keep (it stays the adoption) or replace (renamed <name>.ferry-replaced-<plan>, data kept; this plan's copy adopted) decides otherwise.",
            before: "the destination storage part (it may run earlier: it checks, then waits for the verified copies).",
            after: "the cleanup part.",
        },
        Role::ConversionHosts => Text {
            role,
            what: "streams each volume of the stream path: attaches it to the source conversion host and its new volume to the destination one, carries the blocks between them over ssh, verifies and detaches. The data path is ferry's own agent on each host, so this part runs ferry itself.",
            needs: "ferry and ssh access to both conversion hosts (your ssh options after the bundle: --ssh-config FILE, --ssh-option KEY=VALUE); FERRY_SOURCE_CLOUD and FERRY_DESTINATION_CLOUD naming both clouds' clouds.yaml entries (project member in each); the plan bundle: sh conversion-hosts.sh plan.yaml [--ssh-config FILE]",
            before: "the destination cloud part (it makes the volumes; this part waits for them).",
            after: "the destination cloud part finishes the volumes.",
        },
        Role::Cleanup => Text {
            role,
            what: "on the source, after the copies are verified: notes the verified digest on each image, checks nothing was written after the cut-over, disables mirroring, removes the cut-over snapshot (and a clone's flat copy) and restores the features the plan found. Source data is not deleted.",
            needs: "rbd, ceph (for the cluster's fsid) and jq with the source storage key; the hand-off lines of the destination storage part, as a file: sh cleanup.sh verified.txt",
            before: "the destination storage part (its hand-off) and, usually, the destination cloud part.",
            after: "nothing: the migration is finished.",
        },
    }
}

/// Sets FROM_ARGS for a step that reads the source cluster (a direct
/// transfer's copy and verify, in the destination storage part).
pub(crate) const FROM_SOURCE: &str = "FROM_ARGS=${FERRY_SOURCE_CEPH_ARGS:?set FERRY_SOURCE_CEPH_ARGS to the rbd options for the source cluster, which a direct transfer reads}\n";

/// The script for one role's part of `plan`.
pub fn script(plan: &Plan, role: Role) -> String {
    let t = text(role);
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/sh");
    let _ = writeln!(
        s,
        "# ferry: the {} part of plan {} ({} image(s), {} mirroring).",
        t.role,
        comment(&plan.id),
        plan.images.len(),
        plan.mode
    );
    let _ = writeln!(s, "#");
    for (k, v) in [
        ("What it does", t.what),
        ("Needs", t.needs),
        ("Runs after", t.before),
        ("Then", t.after),
    ] {
        let _ = writeln!(s, "# {k}: {v}");
    }
    let direct = plan
        .images
        .iter()
        .any(|i| i.transfer == crate::spec::Transfer::Direct);
    if direct && role == Role::DestinationStorage {
        let _ = writeln!(
            s,
            "# Direct transfer: this part also reads the source cluster, and notes\n# the cut-over's digest on each source image. FERRY_SOURCE_CEPH_ARGS holds\n# rbd's options for it: '-c <source conf> --id <user> --keyring <file>'."
        );
    }
    let _ = writeln!(
        s,
        "#\n# Every step checks first and skips what is done: running this again is\n# harmless. Waits poll every FERRY_POLL (5) s for up to FERRY_WAIT_TIMEOUT\n# (3600) s.\n# Exit status: 0 done, the next part may go; 1 failed (see the message);\n# 2 gave up waiting (nothing half-done; run it again later).\n#\n# Generated by ferry {} from the plan bundle; edit the bundle, not this.",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(s, "set -eu\n");
    // Values holding a newline are quoted as '...'"$NL"'...' (see `q`).
    let _ = writeln!(
        s,
        "# shellcheck disable=SC2034 # not every script has such a value\nNL='\n'"
    );
    let _ = writeln!(s, "ROLE={}", q(&role.to_string()));
    let _ = writeln!(s, "PLAN={}", q(&plan.id));
    s.push_str(COMMON);
    if role == Role::ConversionHosts {
        conversion_hosts(&mut s, plan);
        return s;
    }
    match role {
        Role::SourceCloud | Role::DestinationCloud => s.push_str(CLOUD),
        _ => s.push_str(STORAGE),
    }
    if role == Role::Cleanup {
        s.push_str(CLEANUP_PRELUDE);
    }
    if role == Role::DestinationStorage {
        s.push_str(VERIFIED_RECORD);
    }
    if role == Role::DestinationCloud {
        let _ = writeln!(
            s,
            "# shellcheck disable=SC2034 # a plan of streamed volumes uses none\nDEST_FSID={}",
            q(plan.destination_fsid.as_deref().unwrap_or(""))
        );
        s.push_str("login\n");
    }
    let mut any = false;
    // Every image's read-only checks of its inputs first, as `ferry run`
    // does: one bad entry stops the part before any image is begun.
    let batch = plan.images.len() > 1;
    let parts: Vec<(&ImagePlan, Vec<&Step>, usize)> = plan
        .run_order()
        .into_iter()
        .map(|k| {
            let img = &plan.images[k];
            let steps: Vec<&Step> = img.steps.iter().filter(|st| st.role == role).collect();
            let lead = if batch {
                steps.iter().take_while(|st| st.checks_inputs()).count()
            } else {
                0
            };
            (img, steps, lead)
        })
        .collect();
    if parts.iter().any(|(_, _, lead)| *lead > 0) {
        let _ = writeln!(
            s,
            "\n# --- the checks of every image's inputs, before any image begins ---"
        );
        for (img, steps, lead) in &parts {
            for st in &steps[..*lead] {
                step(&mut s, plan, img, st);
            }
        }
    }
    for (img, steps, lead) in &parts {
        any |= !steps.is_empty();
        if steps.len() == *lead {
            continue;
        }
        let _ = writeln!(s, "\n# --- {} ---", comment(&img.image.source_spec()));
        for st in &steps[*lead..] {
            step(&mut s, plan, img, st);
        }
    }
    if !any {
        let _ = writeln!(s, "\nsay 'this plan has nothing for this part'");
    }
    if role == Role::DestinationStorage {
        let _ = writeln!(s, "\n# The hand-off for the cleanup part, on stdout.");
        for img in &plan.images {
            for st in &img.steps {
                if let Action::Verify(steps::Verify { copy, origin, .. }) = &st.action {
                    let _ = writeln!(
                        s,
                        "verified_record {} {} {} {} || die {}\nprintf '%s %s %s\\n' ferry-verified \"$PLAN\" \"$OUT\"",
                        q(&copy.pool),
                        q(&crate::plan::record_object(&plan.id)),
                        q(&copy.image),
                        q(&origin_json(origin)),
                        q(&format!("no record of the verified copy {copy}")),
                    );
                }
            }
        }
    }
    let _ = writeln!(s, "\nsay \"all done (plan $PLAN); the next part may go\"");
    s
}

const VERIFIED_RECORD: &str = r#"
# verified_record POOL OBJECT IMAGE ORIGIN: this plan's record of the
# verified copy IMAGE (one line of JSON) in OUT; it must name the source
# ORIGIN: a record of another source under this name stops the script. A
# record whose copy (by its RBD id, whatever its name now) is gone is none.
verified_record() {
  OUT=$(bounded rados -p "$1" getxattr "$2" "$3" 2>"$ERR") || {
    grep -q '(2)\|(61)' "$ERR" && return 1
    die "rados getxattr $2 $3 in pool $1: $(cat "$ERR")"
  }
  printf '%s' "$OUT" | jq -e --argjson o "$4" \
    '.source == $o and (.sha256 | test("^[0-9a-f]{64}$"))' >/dev/null 2>&1 ||
    die "the record of the verified copy $3 in pool $1 is not of this source (or of an older ferry): $OUT; this plan's source is $4"
  rec=$OUT
  cid=$(printf '%s' "$rec" | jq -r '.copy_id // empty')
  if [ -n "$cid" ] && ! bounded rados -p "$1" stat "rbd_header.$cid" >/dev/null 2>"$ERR"; then
    grep -q '(2)' "$ERR" || die "rados stat rbd_header.$cid in pool $1: $(cat "$ERR")"
    say "the record of the verified copy $3 names image id $cid, which pool $1 no longer holds: the copy is made again"
    return 1
  fi
  # A trashed image (rbd trash mv, Cinder's deferred deletion) keeps its
  # header: it is no copy either.
  if [ -n "$cid" ]; then
    OUT=$(bounded rbd trash ls -p "$1" --format json 2>"$ERR") ||
      die "rbd trash ls -p $1: $(cat "$ERR")"
    if printf '%s' "$OUT" | jq -e --arg id "$cid" 'any(.[]; .id == $id)' >/dev/null; then
      say "the record of the verified copy $3 names image id $cid, which pool $1 no longer holds (or holds in its trash): the copy is made again"
      return 1
    fi
  fi
  OUT=$rec
}
"#;

const CLEANUP_PRELUDE: &str = r#"
HANDOFF=${1:-}
[ -n "$HANDOFF" ] || die "give the destination storage part's hand-off file (its ferry-verified lines): sh $0 verified.txt"
[ -r "$HANDOFF" ] || die "cannot read the hand-off file $HANDOFF"

# verified_source IMAGE SNAP [ORIGIN]: the copy of ORIGIN (default IMAGE),
# whose cut-over digest IMAGE holds (a clone's flat copy holds it for the
# clone), was verified: noted on ORIGIN already, or the hand-off names ORIGIN
# itself and the cut-over's digest; the digest in OUT.
verified_source() {
  o=${3:-$1}
  meta "$o" "$2.verified" && return 0
  handed=$(awk -v p="$PLAN" '$1 == "ferry-verified" && $2 == p { sub(/^[^ ]+ [^ ]+ /, ""); print }' "$HANDOFF" |
    jq -c --arg p "${o%%/*}" --arg i "${o#*/}" 'select(.source.pool == $p and .source.image == $i)' 2>"$ERR") ||
    die "the hand-off $HANDOFF holds lines this ferry does not understand: $(cat "$ERR")"
  handed=$(printf '%s\n' "$handed" | tail -n 1)
  [ -n "$handed" ] || return 1
  fsid=$(bounded ceph fsid --format json 2>"$ERR" | jq -r .fsid) || die "reading the source cluster's fsid: $(cat "$ERR")"
  rbdq info --format json "$o" || die "$o is gone"
  live=$(printf '%s' "$OUT" | jq -c --arg f "$fsid" --arg p "${o%%/*}" --arg i "${o#*/}" '{fsid: $f, pool: $p, image: $i, id: .id}')
  printf '%s' "$handed" | jq -e --argjson l "$live" '.source == $l' >/dev/null ||
    die "the hand-off's copy of $o was made from $(printf '%s' "$handed" | jq -c .source), not from this image ($live): not the same data; nothing is cleaned up"
  sum=$(printf '%s' "$handed" | jq -r .sha256)
  meta "$1" "$2.digest" || die "$1 has no digest $2.digest: was the cut-over made by this plan?"
  [ "$OUT" = "$sum" ] || die "the hand-off says the copy of $o has digest $sum, but the cut-over $2 has $OUT: not the same data; nothing is cleaned up"
}
"#;

/// The conversion-hosts part: its steps are ferry's own (the agents on
/// the hosts are ferry), so the script names them and runs ferry's role run
/// on the bundle, which checks, skips what is done and resumes as a script
/// would.
fn conversion_hosts(s: &mut String, plan: &Plan) {
    let mut any = false;
    for img in plan.run_order().into_iter().map(|k| &plan.images[k]) {
        for st in img
            .steps
            .iter()
            .filter(|st| st.role == Role::ConversionHosts)
        {
            any = true;
            let _ = writeln!(
                s,
                "# {}",
                comment(&format!("{} {}: {}", st.id, st.name, describe(&st.action)))
            );
        }
    }
    if !any {
        let _ = writeln!(s, "\nsay \"plan $PLAN has nothing for this part\"");
        return;
    }
    let _ = writeln!(
        s,
        r#"BUNDLE=${{1:-}}
[ -n "$BUNDLE" ] || die "give the plan bundle: sh $0 plan.yaml"
[ -r "$BUNDLE" ] || die "cannot read the plan bundle $BUNDLE"
shift
: "${{FERRY_SOURCE_CLOUD:?set FERRY_SOURCE_CLOUD to the clouds.yaml entry of the source cloud}}"
: "${{FERRY_DESTINATION_CLOUD:?set FERRY_DESTINATION_CLOUD to the clouds.yaml entry of the destination cloud}}"
say "streaming through the conversion hosts (plan $PLAN)"
# ferry's exit status is this part's: 0 done, 1 failed, 2 gave up waiting.
# --yes: this script is what you read first. The arguments after the
# bundle are your ssh options (--ssh-config FILE, --ssh-option KEY=VALUE).
exec ferry run --role conversion-hosts "$BUNDLE" --yes --cloud "$FERRY_SOURCE_CLOUD" --destination-cloud "$FERRY_DESTINATION_CLOUD" "$@""#
    );
}

/// What a volume carries over besides its data, set on `$VOL`: the bootable
/// flag and the image metadata.
pub(crate) fn volume_settings(b: &mut String, a: &crate::plan::VolumeAdoption) {
    let vol = api::VOL.stand_in();
    let mut set = |req, what: &str| {
        let call = api::call(&req, &[api::VOL]).lines("", "api_send");
        let _ = writeln!(b, "{call}\ncase $CODE in 2*) ;; *) die \"setting the {what} of volume $VOL gave HTTP $CODE: $OUT\" ;; esac");
    };
    if a.bootable {
        set(cinder::set_bootable(&vol, true), "bootable flag");
    }
    if !a.image_metadata.is_empty() {
        set(
            cinder::set_image_metadata(&vol, &a.image_metadata),
            "image metadata",
        );
    }
}

/// The source a record must name, as the JSON the scripts compare.
pub(crate) fn origin_json(origin: &crate::plan::SourceId) -> String {
    serde_json::to_string(origin).expect("a source id serialises")
}

/// A check as one shell command; None when the role cannot observe it and
/// the action guards itself (a Glance location).
pub(crate) fn cond(c: &Check, role: Role, plan: &Plan, img: &ImagePlan) -> Option<String> {
    let cmd = cond_here(c, role, plan, img)?;
    // A direct transfer's destination part checks the source too.
    let on_source = |at: &ImageAt| at.site == Site::Source && role == Role::DestinationStorage;
    Some(match c {
        Check::MetadataPresent { image, .. } | Check::SnapshotExists { image }
            if on_source(image) =>
        {
            format!("from_source {cmd}")
        }
        _ => cmd,
    })
}

/// A check as a command on the script's own cluster or cloud.
fn cond_here(c: &Check, role: Role, plan: &Plan, img: &ImagePlan) -> Option<String> {
    Some(match c {
        Check::Exists { image } => format!("image_exists {}", spec(image)),
        Check::Absent { image } => format!("image_absent {}", spec(image)),
        Check::NotInUse { image } => format!("not_in_use {}", spec(image)),
        Check::FeaturesPresent { image, features } => format!(
            "has_features {} {}",
            spec(image),
            feature_names(*features).join(" ")
        ),
        Check::FeaturesAbsent { image, features } => format!(
            "lacks_features {} {}",
            spec(image),
            feature_names(*features).join(" ")
        ),
        Check::MirroringEnabled { image, mode } => {
            format!("mirroring_enabled {} {mode}", spec(image))
        }
        Check::MirroringDisabled { image } => format!("mirroring_disabled {}", spec(image)),
        Check::MirrorSynced { mirrored, mode, .. } => match mode {
            MirrorMode::Snapshot => {
                format!(
                    "mirror_synced_snapshot {} {}",
                    spec(mirrored),
                    snap(mirrored)
                )
            }
            MirrorMode::Journal => {
                format!(
                    "mirror_synced_journal {} {}",
                    spec(mirrored),
                    snap(mirrored)
                )
            }
        },
        Check::SnapshotProtected { image } => {
            format!("snap_protected {} {}", spec(image), snap(image))
        }
        Check::SnapshotExists { image } => format!("snap_exists {} {}", spec(image), snap(image)),
        Check::SnapshotAbsent { image } => format!("snap_absent {} {}", spec(image), snap(image)),
        Check::MetadataPresent { image, key } => {
            format!("meta_present {} {}", spec(image), q(key))
        }
        Check::MetadataAbsent { image, key } => format!("meta_absent {} {}", spec(image), q(key)),
        Check::MirrorSnapshotAfter { image } => {
            format!("mirror_snapshot_after {} {}", spec(image), snap(image))
        }
        Check::Verified {
            source,
            copy,
            origin,
        } => match role {
            Role::DestinationStorage => format!(
                "verified_record {} {} {} {}",
                q(&copy.pool),
                q(&crate::plan::record_object(&plan.id)),
                q(&copy.image),
                q(&origin_json(origin))
            ),
            _ => format!(
                "verified_source {} {} {}",
                spec(source),
                snap(source),
                q(&format!("{}/{}", origin.pool, origin.image))
            ),
        },
        Check::Published { image } => {
            if image.snap.is_some() {
                return None;
            }
            let _ = img;
            format!("manageable \"$HOST\" {}", q(&image.image))
        }
        Check::VolumeAdopted { source_volume } => {
            format!(
                "volume_adopted {} {}",
                q(source_volume),
                planned_earlier(img)
            )
        }
        Check::VolumeCreated { source_volume } => format!("volume_created {}", q(source_volume)),
        Check::StreamVerified { source_volume } => {
            format!("stream_verified {}", q(source_volume))
        }
        Check::ImageRegistered { id } => {
            format!("image_registered {} {}", q(id), planned_earlier(img))
        }
        Check::ServerStopped { server } => format!("server_status_is {} SHUTOFF", q(server)),
        Check::ServerCreated {
            source_server,
            start,
        } => format!(
            "server_created {} {}",
            q(source_server),
            if *start { "ACTIVE" } else { "SHUTOFF" }
        ),
        // The source cloud's part sees no cluster: whoever runs it
        // chooses the moment (after the source storage part's rounds).
        Check::RoundArrived { .. } => return None,
    })
}

/// The plan's choice for an earlier adoption of the image's source (the
/// script's `FERRY_EARLIER_ADOPTION` overrides it).
fn planned_earlier(img: &ImagePlan) -> &'static str {
    match &img.adoption {
        Some(Adoption::Volume(v)) => v.earlier.as_str(),
        Some(Adoption::Image(g)) => g.earlier.as_str(),
        None => "refuse",
    }
}

fn waitable(c: &Check) -> Option<String> {
    match c {
        Check::NotInUse { image } => Some(format!(
            "{image} to be idle (stop the client or shut its server off)"
        )),
        Check::MirrorSynced { mirrored, .. } => Some(format!("{mirrored} to be in sync")),
        Check::Exists { image } => Some(format!("{image} to appear (rbd-mirror creates it)")),
        // A direct transfer's copy, in the destination part.
        Check::SnapshotExists { image }
            if image.site == Site::Source
                && image
                    .snap
                    .as_deref()
                    .is_some_and(|s| s.starts_with(crate::plan::CUTOVER_SNAP)) =>
        {
            Some(format!(
                "the cut-over snapshot {image} (the source storage part takes it)"
            ))
        }
        // A direct transfer's carried snapshot: the volume's own.
        Check::SnapshotExists { image } if image.site == Site::Source => Some(format!(
            "the snapshot {image} (the volume's own; removed since the plan was made?)"
        )),
        Check::Published { image } => Some(format!(
            "the verified copy {image} (the destination storage part publishes it after verify)"
        )),
        Check::SnapshotProtected { image } => Some(format!(
            "{image}, the parent this copy is a clone of, to be published and protected (the migration of that Glance image does it)"
        )),
        Check::StreamVerified { source_volume } => Some(format!(
            "the stream of volume {source_volume} (the conversion-hosts part)"
        )),
        Check::VolumeAdopted { source_volume } => Some(format!(
            "the volume adopted from {source_volume} (this part adopts it in its own plan entry)"
        )),
        // The source's digest, which mirroring carries after the source
        // storage part's hash-source step.
        Check::MetadataPresent { image, key }
            if image.site == Site::Destination && key.ends_with(crate::plan::DIGEST_SUFFIX) =>
        {
            Some(format!(
            "the source's digest {key} on {image} (the source storage part's hash-source step sets it; mirroring carries it)"
        ))
        }
        _ => None,
    }
}

fn conds(cs: &[Check], role: Role, plan: &Plan, img: &ImagePlan) -> Option<String> {
    let v: Vec<String> = cs.iter().filter_map(|c| cond(c, role, plan, img)).collect();
    match v.len() {
        0 => None,
        1 => Some(v[0].clone()),
        _ => Some(format!("{{ {}; }}", v.join(" && "))),
    }
}

fn step(s: &mut String, plan: &Plan, img: &ImagePlan, st: &Step) {
    let role = st.role;
    let what = describe(&st.action);
    let _ = writeln!(
        s,
        "\n# {}",
        comment(&format!("{} {}: {what}", st.id, st.name))
    );
    let (id, name) = (q(&st.id), q(st.name.as_str()));
    // Cloud steps that adopt need the Cinder host before their checks.
    if let Some(Adoption::Volume(v)) = match &st.action {
        Action::CheckDestinationCloud(steps::CheckDestinationCloud {
            adoption,
            create: false,
            ..
        }) => Some(adoption),
        _ => None,
    }
    .or(match (&st.action, &img.adoption) {
        (Action::AdoptVolume(steps::AdoptVolume { .. }), a) => a.as_ref(),
        _ => None,
    }) {
        match &v.host {
            Some(h) => {
                let _ = writeln!(s, "HOST={}", q(h));
            }
            None => {
                let _ = writeln!(s, "cinder_host {} \"$DEST_FSID\"", q(&img.image.dest_pool));
            }
        }
    }
    let mut open = "if";
    if let Some(p) = conds(&st.past_when, role, plan, img) {
        let _ = writeln!(s, "{open} {p}; then\n  skip {id} {name} ' (past it)'");
        open = "elif";
    }
    let done = conds(&st.done_when, role, plan, img);
    if let Some(d) = &done {
        let _ = writeln!(s, "{open} {d}; then\n  skip {id} {name} ''");
        open = "elif";
    }
    let body_indent = if open == "if" { "" } else { "  " };
    if open == "elif" {
        let _ = writeln!(s, "else");
    }
    let mut body = String::new();
    let _ = writeln!(body, "begin {id} {name} {}", q(&what));
    for c in &st.requires {
        let Some(cmd) = cond(c, role, plan, img) else {
            continue;
        };
        match waitable(c) {
            Some(w) => {
                let _ = writeln!(body, "wait_for {} {cmd}", q(&w));
            }
            None => {
                let _ = writeln!(
                    body,
                    "{cmd} || die {}",
                    q(&format!("step {} ({}) needs: {}", st.id, st.name, needs(c)))
                );
            }
        }
    }
    body.push_str(&action(st, plan, img));
    if let Some(d) = &done {
        let _ = writeln!(
            body,
            "{d} || die {}",
            q(&format!("step {} ({}) did not take effect", st.id, st.name))
        );
    }
    let _ = writeln!(body, "finish {id} {name}");
    for l in body.lines() {
        let _ = writeln!(s, "{body_indent}{l}");
    }
    if open == "elif" {
        let _ = writeln!(s, "fi");
    }
}

/// The script's refusal when `image` was written after its cut-over
/// snapshot (`image.snap`).
pub(crate) fn unchanged(b: &mut String, image: &ImageAt) {
    let _ = writeln!(
        b,
        "unchanged_since {} {} || die {}",
        spec(image),
        snap(image),
        q(&format!("{} was written after the cut-over {} (see above): the copy does not hold those writes. Nothing is cleaned up; migrate the image again with a new plan, or remove the snapshot yourself once you accept the loss", ImageAt { snap: None, ..image.clone() }, image.snap.as_deref().unwrap_or_default()))
    );
}

fn needs(c: &Check) -> String {
    match c {
        Check::Verified { source, copy, .. } => format!(
            "the copy {copy} of {source} verified (the destination storage part's hand-off)"
        ),
        Check::Absent { image } => format!("{image} absent (a copy there already?)"),
        Check::MetadataPresent { image, key } => format!("{key} on {image}"),
        other => format!("{other:?}"),
    }
}

fn action(st: &Step, plan: &Plan, img: &ImagePlan) -> String {
    st.action.kind().script(st, plan, img)
}

#[cfg(test)]
mod tests;
