use super::*;
use crate::ceph::PoolMirrorMode;
use crate::plan::CloudObject;
use crate::plan::{build, AdoptOptions, BuildOptions, CephImage, ImageFacts, StepName};
use crate::spec::{BootableTo, ImageKind, ImageRef, Transfer};

fn plan(mode: MirrorMode) -> Plan {
    plan_named(mode, Transfer::Mirror, &|s: &str| s.to_string())
}

/// The plans of both transfers, each mirroring mode for mirror.
fn every_plan(name: &dyn Fn(&str) -> String) -> Vec<(String, Plan)> {
    vec![
        (
            "snapshot".into(),
            plan_named(MirrorMode::Snapshot, Transfer::Mirror, name),
        ),
        (
            "journal".into(),
            plan_named(MirrorMode::Journal, Transfer::Mirror, name),
        ),
        (
            "direct".into(),
            plan_named(MirrorMode::Snapshot, Transfer::Direct, name),
        ),
        (
            "stream".into(),
            plan_named(MirrorMode::Snapshot, Transfer::Stream, name),
        ),
    ]
}

/// A conversion host whose every value is dressed by `name`.
fn convhost(name: &dyn Fn(&str) -> String, site: &str) -> crate::spec::ConversionHost {
    crate::spec::ConversionHost {
        ssh: name(&format!("convhost-{site}")),
        name: None,
        ip: "192.0.2.1".into(),
        ferry: name("sudo -n ferry"),
        nfs_mount_base: Some(name("/var/lib/ferry/mnt")),
        ceph_conf: None,
        ceph_keyring: None,
        state_dir: None,
    }
}

/// Every name, type, description and metadata value of `plan` dressed by
/// `name` (the hostile plan: shell syntax in all of them).
fn plan_named(mode: MirrorMode, transfer: Transfer, name: &dyn Fn(&str) -> String) -> Plan {
    let opts = BuildOptions {
        mode,
        allow_in_use: false,
        cleanup: true,
        source_cluster: "site-a".into(),
        destination_cluster: "site-b".into(),
        adopt: Some(AdoptOptions {
            volume_types: [(name("ceph"), name("rbd"))].into(),
            cinder_host: None,
            bootable_to: BootableTo::Glance,
            earlier: Default::default(),
        }),
        plan_id: "0123abcd".into(),
        destination_fsid: Some(name("22477561-5e0d")),
        source_fsid: Some(name("a7f64266-0894")),
        clones: crate::spec::Clones::Flat,
        source_glance_pool: Some(name("images")),
        dest_glance_pool: Some(name("glance-images")),
        published_parents: Default::default(),
        transfer,
        conversion: Some(crate::spec::ConversionHosts {
            source: convhost(name, "a"),
            destination: convhost(name, "b"),
            ssh_options: vec!["-F".into(), name("/etc/ferry/ssh config")],
            stall_seconds: 60,
        }),
        warm_interval: Some(10),
        snapshots: crate::spec::Snapshots::Carry,
        servers: crate::plan::ServerOptions {
            servers: vec![crate::plan::server::ServerDef {
                id: name("s1"),
                name: name("web's"),
                flavor: name("m1 small"),
                key_name: Some(name("key")),
                security_groups: vec![name("default")],
                metadata: [(name("role"), name("db $HOME"))].into(),
                tags: vec![name("t1")],
                availability_zone: Some(name("nova")),
                description: Some(name("the web")),
                volumes: vec![name("v1")],
                networks: vec![crate::plan::server::ServerNetwork {
                    network: name("private net"),
                    fixed_ip: Some("10.0.0.5".into()),
                }],
                root_disk: None,
                moved_to: None,
            }],
            stop: true,
            start: false,
            create: true,
        },
    };
    let volume = |bootable: bool, id: &str| {
        (
            ImageRef {
                kind: ImageKind::Cinder,
                pool: name("volumes"),
                name: format!("volume-{}", name(id)),
                mirrored_pool: name("volumes"),
                dest_pool: name(if bootable {
                    "glance-images"
                } else {
                    "cinder-volumes"
                }),
                dest_name: format!("volume-{}", name(id)),
                new_name: None,
            },
            CephImage {
                cloud: Some(CloudObject::Volume {
                    id: name(id),
                    name: name("it's a db"),
                    description: Some(name("the db")),
                    size_gb: 1,
                    bootable,
                    volume_type: Some(name("ceph")),
                    metadata: [(name("app"), name("db $HOME"))].into(),
                    image_metadata: [(name("os_distro"), name("debian"))].into(),
                    status: "available".into(),
                    encrypted: false,
                    snapshots: vec![],
                }),
                user_snapshots: vec![name("s1"), name("s2")],
                ..CephImage::example()
            },
        )
    };
    // A volume streams as the cloud's volume; the others are RBD images.
    let volume = |bootable: bool, id: &str| {
        let (r, c) = volume(bootable, id);
        let facts = match (transfer, &c.cloud) {
            (Transfer::Stream, Some(v)) => ImageFacts::streamed(v),
            _ => c.into(),
        };
        (r, facts)
    };
    build(&opts, &[volume(false, "v1"), volume(true, "v2")])
}

const ROLES: [Role; 6] = [
    Role::SourceCloud,
    Role::SourceStorage,
    Role::DestinationStorage,
    Role::DestinationCloud,
    Role::Cleanup,
    Role::ConversionHosts,
];

#[test]
fn quoting_keeps_every_character_literal() {
    assert_eq!(q("it's"), r"'it'\''s'");
    assert_eq!(q("$HOME `x`"), "'$HOME `x`'");
    assert_eq!(q("a\nb"), "'a'\"$NL\"'b'");
    // What sh makes of it, indented as a block's body is: the same bytes.
    for v in [
        "it's \"q\" $(touch x) `y`\n  two\r\n\nthree\n",
        "\n",
        "",
        "tab\there",
    ] {
        let line = format!("    printf '%s' {}", q(v));
        assert_eq!(line.lines().count(), 1, "{line}");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("set -eu\nNL='\n'\nif true; then\n{line}\nfi"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), v, "{line}");
    }
}

#[test]
fn each_role_gets_only_its_steps_and_tools() {
    let p = plan(MirrorMode::Snapshot);
    for role in ROLES {
        let s = script(&p, role);
        assert!(s.starts_with("#!/bin/sh\n"), "{role}");
        assert!(s.contains("\nset -eu\n"), "{role}");
        for st in p.images.iter().flat_map(|i| &i.steps) {
            let marker = format!("\n# {} {}:", st.id, st.name);
            assert_eq!(s.contains(&marker), st.role == role, "{role}: {marker}");
        }
        let cloud = matches!(role, Role::SourceCloud | Role::DestinationCloud);
        let storage = !cloud && role != Role::ConversionHosts;
        assert_eq!(s.contains("rbdw "), storage, "{role}");
        assert_eq!(
            s.contains("\nlogin\n"),
            role == Role::DestinationCloud,
            "{role}"
        );
    }
    let dst = script(&p, Role::DestinationStorage);
    assert!(dst.contains("printf '%s %s %s\\n' ferry-verified \"$PLAN\" \"$OUT\""));
    assert!(dst.contains(
        r#"{"fsid":"a7f64266-0894","pool":"volumes","image":"volume-v1","id":"10ad5eed"}"#
    ));
    assert!(script(&p, Role::Cleanup).contains("HANDOFF=${1:-}"));
}

#[test]
fn snapshot_and_journal_modes_wait_differently() {
    let snap = script(&plan(MirrorMode::Snapshot), Role::DestinationStorage);
    let journal = script(&plan(MirrorMode::Journal), Role::DestinationStorage);
    assert!(snap.contains("mirror_synced_snapshot 'volumes/volume-v1' 'ferry-cutover-0123abcd'"));
    assert!(journal.contains("mirror_synced_journal 'volumes/volume-v1' 'ferry-cutover-0123abcd'"));
    let src = script(&plan(MirrorMode::Journal), Role::SourceStorage);
    // Journaling beside the image's other features; they go only if the
    // cluster refuses it.
    assert!(
        src.contains("enable_journaling 'volumes/volume-v1' deep-flatten fast-diff object-map"),
        "{src}"
    );
    assert!(!src.contains("rbdw feature disable '"), "{src}");
    assert!(!src.contains("mirror image snapshot"));
}

#[test]
fn values_from_the_source_are_quoted() {
    let s = script(&plan(MirrorMode::Snapshot), Role::DestinationCloud);
    // A name with a quote and metadata with a dollar sign stay literal.
    assert!(s.contains(r#""name":"it'\''s a db""#), "{s}");
    assert!(s.contains(r#""app":"db $HOME""#));
}

#[test]
fn every_script_passes_shellcheck() {
    let Ok(out) = std::process::Command::new("shellcheck")
        .arg("--version")
        .output()
    else {
        panic!("shellcheck is not installed (ceph-testenv/testenv install adds it)");
    };
    assert!(out.status.success());
    for (mode, p) in every_plan(&|s: &str| s.to_string()) {
        for role in ROLES {
            let dir = std::env::temp_dir().join(format!("ferry-sc-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let f = dir.join(format!("{role}-{mode}.sh"));
            std::fs::write(&f, script(&p, role)).unwrap();
            let out = std::process::Command::new("shellcheck")
                .args(["-s", "sh"])
                .arg(&f)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{role} ({mode}): {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// Shell syntax a name may hold: every kind of quote, substitutions, a
/// newline that would end a comment, a leading dash.
const HOSTILE: &str = "-x $(touch PWNED) `touch PWNED` \"PWNED\" 'PWNED' \\ ;\n touch PWNED #";

fn hostile(s: &str) -> String {
    format!("{s}{HOSTILE}")
}

/// Where the shell would see each byte of `script`: quoted literally, in a
/// comment, or as code (double quotes, command substitution and backticks
/// count as code: they expand).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Lex {
    Code,
    Single,
    Double,
    Backtick,
    Comment,
}

fn lex(script: &str) -> Vec<Lex> {
    let b = script.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    // A stack of open contexts; `$(` inside double quotes opens code again.
    let mut stack = vec![(Lex::Code, 0usize)];
    let mut i = 0;
    while i < b.len() {
        let (top, depth) = *stack.last().unwrap();
        let c = b[i];
        let prev = if i == 0 { b'\n' } else { b[i - 1] };
        out.push(top);
        match top {
            Lex::Single => {
                if c == b'\'' {
                    stack.pop();
                }
            }
            Lex::Comment => {
                if c == b'\n' {
                    stack.pop();
                }
            }
            Lex::Double | Lex::Backtick | Lex::Code => {
                if c == b'\\' && i + 1 < b.len() {
                    out.push(top);
                    i += 2;
                    continue;
                }
                match c {
                    b'"' if top == Lex::Double => {
                        stack.pop();
                    }
                    b'`' if top == Lex::Backtick => {
                        stack.pop();
                    }
                    b'`' => stack.push((Lex::Backtick, 0)),
                    b'$' if b.get(i + 1) == Some(&b'(') => {
                        out.push(top);
                        i += 2;
                        stack.push((Lex::Code, 1));
                        continue;
                    }
                    b'\'' if top != Lex::Double => stack.push((Lex::Single, 0)),
                    b'"' => stack.push((Lex::Double, 0)),
                    b'#' if top != Lex::Double && b" \t\n;|&(".contains(&prev) => {
                        stack.push((Lex::Comment, 0))
                    }
                    b'(' if top == Lex::Code && depth > 0 => {
                        stack.last_mut().unwrap().1 += 1;
                    }
                    b')' if top == Lex::Code && depth > 0 => {
                        stack.last_mut().unwrap().1 -= 1;
                        if depth == 1 {
                            stack.pop();
                        }
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    out
}

#[test]
fn the_lexer_tells_quoted_from_code() {
    let s = "a 'PWNED' \"PWNED\" # PWNED\n$(x 'PWNED' \"$(PWNED)\") `PWNED`";
    let lexed = lex(s);
    let at: Vec<Lex> = s.match_indices("PWNED").map(|(k, _)| lexed[k]).collect();
    use Lex::*;
    assert_eq!(at, [Single, Double, Comment, Single, Code, Backtick]);
}

#[test]
fn hostile_names_stay_literal_in_every_script() {
    for (mode, p) in every_plan(&hostile) {
        for role in ROLES {
            let s = script(&p, role);
            let lexed = lex(&s);
            let mut seen = 0;
            for (k, _) in s.match_indices("PWNED") {
                seen += 1;
                let line = s[..k].lines().count();
                assert!(
                    matches!(lexed[k], Lex::Single | Lex::Comment),
                    "{role} ({mode}), line {line}: PWNED as {:?}:\n{}",
                    lexed[k],
                    s.lines().nth(line.saturating_sub(1)).unwrap_or_default()
                );
            }
            let has_steps = p
                .images
                .iter()
                .flat_map(|i| &i.steps)
                .any(|st| st.role == role);
            assert_eq!(
                seen > 0,
                has_steps,
                "{role} ({mode}): the hostile names are rendered"
            );
            // SC2016 ("expressions don't expand in single quotes") is the
            // point here: the names hold `$(...)` that must not expand.
            shellcheck(&s, &format!("hostile-{role}-{mode}"), &["-e", "SC2016"]);
        }
    }
}

fn shellcheck(script: &str, name: &str, extra: &[&str]) {
    let dir = std::env::temp_dir().join(format!("ferry-sc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join(format!("{name}.sh"));
    std::fs::write(&f, script).unwrap();
    let out = std::process::Command::new("shellcheck")
        .args(["-s", "sh"])
        .args(extra)
        .arg(&f)
        .output()
        .expect("shellcheck is not installed (ceph-testenv/testenv install adds it)");
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A volume cloned from a Glance image, listed before that image, with
/// `clones: clone-of-parent`.
fn clone_of_parent_plan() -> Plan {
    let volume = ImageRef {
        kind: ImageKind::Cinder,
        pool: "volumes".into(),
        name: "volume-v1".into(),
        mirrored_pool: "volumes".into(),
        dest_pool: "cinder-volumes".into(),
        dest_name: "volume-v1".into(),
        new_name: None,
    };
    let facts = CephImage {
        parent: Some(crate::ceph::Parent {
            pool: "images".into(),
            namespace: String::new(),
            image: "abcd".into(),
            snap: "snap".into(),
            clone_format: 2,
            in_trash: false,
        }),
        ..CephImage::example()
    };
    let image = ImageRef {
        kind: ImageKind::Glance,
        pool: "images".into(),
        name: "abcd".into(),
        mirrored_pool: "images".into(),
        dest_pool: "glance-images".into(),
        dest_name: "abcd".into(),
        new_name: None,
    };
    let image_facts = CephImage {
        parent: None,
        pool_mode: PoolMirrorMode::Pool,
        size: 6 << 20,
        id: "1d".into(),
        ..facts.clone()
    };
    let opts = BuildOptions {
        mode: MirrorMode::Snapshot,
        allow_in_use: false,
        cleanup: true,
        source_cluster: "site-a".into(),
        destination_cluster: "site-b".into(),
        adopt: None,
        plan_id: "0123abcd".into(),
        destination_fsid: None,
        source_fsid: Some("a7f64266-0894".into()),
        clones: crate::spec::Clones::CloneOfParent,
        source_glance_pool: Some("images".into()),
        dest_glance_pool: Some("glance-images".into()),
        published_parents: Default::default(),
        transfer: crate::spec::Transfer::Mirror,
        conversion: None,
        warm_interval: Some(10),
        snapshots: crate::spec::Snapshots::Carry,
        servers: Default::default(),
    };
    build(
        &opts,
        &[(volume, facts.into()), (image, image_facts.into())],
    )
}

#[test]
fn a_clone_of_parent_copy_waits_for_the_parent_and_writes_what_differs() {
    let s = script(&clone_of_parent_plan(), Role::DestinationStorage);
    // The parent's part comes first: its snapshot is what the clone waits for.
    let parent = s.find("\n# --- images/abcd ---").unwrap();
    let clone = s.find("\n# --- volumes/volume-v1 ---").unwrap();
    assert!(parent < clone, "{s}");
    assert!(s.contains(
        "wait_for 'destination:glance-images/abcd@snap, the parent this copy is a clone of, to be published and protected (the migration of that Glance image does it)' snap_protected 'glance-images/abcd' 'snap'"
    ), "{s}");
    assert!(s.contains(
        "copy_onto_parent 'volumes/volume-v1.ferry-flat@ferry-cutover-0123abcd' 'glance-images/abcd@snap' 'cinder-volumes/volume-v1.ferry-partial' --image-feature layering"
    ), "{s}");
    // The verify reads the clone back, as for any scripted copy.
    assert!(s.contains("image_digest 'cinder-volumes/volume-v1.ferry-partial'"));
    shellcheck(&s, "clone-of-parent", &[]);
}

#[test]
fn a_direct_transfer_reads_the_source_with_its_own_options_in_the_destination_part() {
    let p = plan_named(MirrorMode::Snapshot, Transfer::Direct, &|s: &str| {
        s.to_string()
    });
    let dst = script(&p, Role::DestinationStorage);
    assert!(dst.contains("FERRY_SOURCE_CEPH_ARGS holds"), "{dst}");
    // The carried snapshots (v1's), the copy and the verify read the
    // source; the rest is this cluster's.
    assert_eq!(
        dst.matches("FROM_ARGS=${FERRY_SOURCE_CEPH_ARGS:?").count(),
        9
    );
    assert!(
        dst.contains(
            "import_since 'volumes/volume-v1@s2' 'cinder-volumes/volume-v1.ferry-partial' 's1'"
        ),
        "{dst}"
    );
    assert!(
        dst.contains("from_source snap_exists 'volumes/volume-v1' 's2'"),
        "{dst}"
    );
    assert!(
        !dst.contains("to be in sync"),
        "no mirror to wait for: {dst}"
    );
    assert!(
        dst.contains("from_source snap_exists 'volumes/volume-v1' "),
        "{dst}"
    );
    assert!(
        dst.contains("from_source meta_present 'volumes/volume-v1' "),
        "{dst}"
    );
    // v1 (its snapshots carried) is brought forward from its last one; v2
    // (bootable, to Glance) has none carried and is copied whole.
    assert!(
        dst.contains("import_since 'volumes/volume-v1@ferry-cutover-0123abcd' 'cinder-volumes/volume-v1.ferry-partial' 's2'"),
        "{dst}"
    );
    assert!(dst.contains("copy_flat 'volumes/volume-v2@"), "{dst}");
    let src = script(&p, Role::SourceStorage);
    assert!(!src.contains("mirror image enable"), "{src}");
    assert!(!src.contains("rbdw feature enable '"), "{src}");
    assert!(!src.contains("enable_journaling '"), "{src}");
    assert!(src.contains("snap create"), "{src}");
}

#[test]
fn every_images_input_checks_come_before_any_image_begins() {
    // Two volumes: the destination cloud part checks both before it
    // adopts either, and each check is rendered once.
    let p = plan(MirrorMode::Snapshot);
    let s = script(&p, Role::DestinationCloud);
    let marker = |image: usize, name: StepName| {
        let st = p.images[image]
            .steps
            .iter()
            .find(|st| st.name == name)
            .unwrap_or_else(|| panic!("{name} in image {image}"));
        let m = format!("\n# {} {}:", st.id, st.name);
        assert_eq!(s.matches(&m).count(), 1, "{m}");
        s.find(&m).unwrap()
    };
    let checks = s
        .find("the checks of every image's inputs, before any image begins")
        .expect("a section of checks");
    let first_check = marker(0, StepName::CheckDestinationCloud);
    let last_check = marker(1, StepName::CheckDestinationCloud);
    assert!(checks < first_check && first_check < last_check);
    let first_adoption = p.images[0]
        .steps
        .iter()
        .filter(|st| st.role == Role::DestinationCloud && !st.checks_inputs())
        .map(|st| s.find(&format!("\n# {} {}:", st.id, st.name)).unwrap())
        .min()
        .expect("the first image is adopted in this part");
    assert!(last_check < first_adoption);
}

#[test]
fn bundles_read_one_image_at_a_time_equal_a_whole_read() {
    let names: [&dyn Fn(&str) -> String; 3] = [
        &|s: &str| s.to_string(),
        &hostile,
        // Names YAML would take for other things unquoted.
        &|s: &str| format!("- {s}:\n- images: [] # #"),
    ];
    for name in names {
        for (what, p) in every_plan(name) {
            let text = format!(
                "# ferry plan bundle\n{}",
                serde_yaml::to_string(&p).unwrap()
            );
            let whole: Plan = serde_yaml::from_str(&text).unwrap();
            assert_eq!(whole, p, "{what}");
            let (_, items) = crate::plan::split_top_level_list(&text, "images")
                .unwrap_or_else(|| panic!("{what}: no image list found"));
            assert_eq!(items.len(), p.images.len(), "{what}");
            let read = crate::plan::parse_bundle(&text).unwrap();
            assert_eq!(read, p, "{what}");
            // Read lists hold no spare room (serde grows them by doubling).
            for s in read.images.iter().flat_map(|i| &i.steps) {
                for (list, len, cap) in [
                    ("requires", s.requires.len(), s.requires.capacity()),
                    ("done_when", s.done_when.len(), s.done_when.capacity()),
                    ("past_when", s.past_when.len(), s.past_when.capacity()),
                    ("after", s.after.len(), s.after.capacity()),
                ] {
                    assert_eq!(len, cap, "{what}: step {} {list}", s.id);
                }
            }
        }
    }
    // Another shape reads whole, and its error keeps its line.
    let e = crate::plan::parse_bundle("id: x\nimages:\n- image: {kind: nope}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3"), "{e}");
}

/// The text of the shell function `name` in `script`.
fn shell_function<'a>(script: &'a str, name: &str) -> &'a str {
    let start = script
        .find(&format!("\n{name}() {{\n"))
        .unwrap_or_else(|| panic!("no function {name}"));
    let end = start + script[start..].find("\n}\n").expect("the function's end") + 3;
    &script[start..end]
}

#[test]
fn the_scripts_stream_verified_answers_as_ferry_does() {
    let f = shell_function(CLOUD, "stream_verified");
    let d = "5d41402abc4b2a76b9719d911017c592";
    let mark = |p: &str, s: &str, d: &str| crate::plan::stream_mark(p, s, d);
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![],
        // A digest an earlier move left, with or without its mark.
        vec![("ferry_sha256", d.into())],
        vec![
            ("ferry_sha256", d.into()),
            ("ferry_stream_verified", mark("old plan", "vol-1", d)),
        ],
        vec![
            ("ferry_sha256", d.into()),
            ("ferry_stream_verified", mark("p-1", "vol-0", d)),
        ],
        vec![
            ("ferry_sha256", "other".into()),
            ("ferry_stream_verified", mark("p-1", "vol-1", d)),
        ],
        vec![
            ("ferry_sha256", String::new()),
            ("ferry_stream_verified", mark("p-1", "vol-1", "")),
        ],
        vec![("ferry_stream_verified", mark("p-1", "vol-1", d))],
        // This plan's stream of this source.
        vec![
            ("ferry_sha256", d.into()),
            ("ferry_stream_verified", mark("p-1", "vol-1", d)),
            ("team", "blue".into()),
        ],
    ];
    let mut held = 0;
    for c in cases {
        let m: std::collections::BTreeMap<String, String> =
            c.into_iter().map(|(k, v)| (k.into(), v)).collect();
        let want = crate::plan::stream_verified(&m, "p-1", "vol-1");
        held += usize::from(want);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "set -eu\nPLAN='p-1'\nstream_target() {{ VOL_META=$META; }}{f}stream_verified vol-1"
            ))
            .env("META", serde_json::to_string(&m).unwrap())
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            want,
            "{m:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(held, 1);
}
