//! Property tests: nothing ferry reads from Ceph, a cloud or a file can make
//! it panic. Every parser of remote or user data is listed here, so a new
//! one joins the list. Bounded (cases per property below) to run in a few
//! seconds within `cargo test`.

use std::path::Path;

use proptest::prelude::*;

use crate::ceph::{parse_description, SiteState};
use crate::exec::{parse_handoff, RunState};
use crate::openstack::session::{error_message, parse_utc};
use crate::osm::Workloads;
use crate::plan::{OriginalRecord, Plan, VerifiedRecord};
use crate::spec::Spec;

/// Text near what the parsers expect: their prefixes and JSON pieces mixed
/// with anything.
fn near(prefixes: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        proptest::sample::select(prefixes),
        proptest::collection::vec(
            prop_oneof![
                Just("{".to_string()),
                Just("}".to_string()),
                Just("\"".to_string()),
                Just(":".to_string()),
                Just(",".to_string()),
                Just("-".to_string()),
                Just(" ".to_string()),
                Just("\n".to_string()),
                Just("%".to_string()),
                "[0-9]{1,25}",
                "[a-z_]{1,24}",
                any::<String>(),
            ],
            0..24,
        ),
    )
        .prop_map(|(p, parts)| format!("{p}{}", parts.concat()))
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mirror_status_descriptions_never_panic(
        d in near(&["", "bootstrapping, ", "bootstrapping, IMAGE_SYNC/COPY_IMAGE ", "replaying, ",
            "replaying, {\"entries_behind_primary\":", "replaying, {\"replay_state\":\"syncing\",\"syncing_percent\":"]),
        syncing in any::<bool>(),
    ) {
        let state = if syncing { SiteState::Syncing } else { SiteState::Replaying };
        let _ = parse_description(state, &d);
    }

    #[test]
    fn api_bodies_and_times_never_panic(
        body in near(&["", "{\"error\": {\"message\": ", "{\"badRequest\": {\"message\": "]),
        t in near(&["", "2026-11-22T", "9999999999999999999-12-31T23:59:59Z", "999999999999999999-12-31T23:59:59Z", "2026-", "-9223372036854775808-1-1T0:0:0"]),
    ) {
        let _ = error_message(&body);
        let _ = parse_utc(&t);
    }

    #[test]
    fn utc_times_in_range_parse(
        y in 1970i64..2400, m in 1i64..=12, d in 1i64..=28, hh in 0i64..24, mm in 0i64..60, ss in 0i64..60,
    ) {
        let s = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.000000Z");
        prop_assert!(parse_utc(&s).is_some(), "{}", s);
    }

    #[test]
    fn records_and_hand_offs_never_panic(
        text in near(&["", "{\"sha256\":", "{\"sha256\":\"ab\",\"source\":{", "ferry-verified p1 ",
            "ferry-verified p1 {\"sha256\":", "ferry-verified "]),
    ) {
        let _ = VerifiedRecord::parse(&text);
        let _ = parse_handoff(&text, "p1");
    }

    #[test]
    fn original_records_never_panic(
        key in near(&["", "ferry-plan-", "ferry-plan-p1.original", "ferry-plan-.original"]),
        text in near(&["", "{\"plan\":\"p1\",\"features\":[", "{\"plan\":", "{\"mirroring\":"]),
    ) {
        let _ = crate::plan::original_key_plan(&key);
        let _ = OriginalRecord::parse(&key, &text);
    }

    #[test]
    fn specs_bundles_and_state_files_never_panic(
        text in near(&["", "source:\n  cluster: {conf: a}\n  pools: {cinder: v}\ndestination:\n  cluster: {conf: b}\n  pools: {cinder: w}\nimages:\n  - ",
            "images:\n- ", "id: p1\nmode: snapshot\n", "format: 2\nplan:\n", "format: "]),
    ) {
        let _ = Spec::parse(&text, Path::new("/specs"));
        let _ = serde_yaml::from_str::<Plan>(&text);
        let _ = RunState::parse(&text);
    }

    /// OS-Migrate's workloads files: no panic, and what ferry writes reads
    /// back as itself.
    #[test]
    fn workloads_files_never_panic_and_write_back_as_read(
        text in near(&["os_migrate_version: '1'\nresources:\n- type: openstack.compute.Server\n  _info: {id: a}\n  params: ",
            "os_migrate_version: x\nresources: [{type: openstack.compute.Server, _info: {id: a}, params: {name: b, volumes: ",
            "os_migrate_version: '1'\nresources:\n- type: openstack.compute.Server\n  _info: {id: a}\n  params: {name: b}\n  ",
            "os_migrate_version: '1'\nresources:\n- "]),
    ) {
        if let Ok(mut w) = Workloads::parse(&text, "w.yml") {
            for s in w.servers() {
                let _ = w.set_ferry_volumes(&s.id, Some("v"), &["d".to_string()]);
            }
            if let Ok(out) = w.to_yaml() {
                let again = Workloads::parse(&out, "again.yml").map(|a| a.to_yaml().ok());
                prop_assert_eq!(again.ok().flatten(), Some(out));
            }
        }
    }
}
