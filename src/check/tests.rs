use super::*;
use crate::ceph::{
    ErrorKind, Features, Health, HealthCheck, MirrorMode, MirrorPeer, PeerDirection,
    PoolMirrorMode, ServiceDaemon, Usage,
};
use crate::plan::Site;
use crate::spec::{ImageKind, ImageRef, Snapshots, Transfer};

fn site(side: Site, cluster: &str, pools: Vec<PoolReport>) -> SiteReport {
    SiteReport {
        side,
        cluster: cluster.into(),
        conf: format!("/etc/ceph/{cluster}.conf").into(),
        client: "admin".into(),
        connect_error: None,
        fsid: Some("f".into()),
        health: Some(Health {
            status: "HEALTH_OK".into(),
            checks: vec![],
        }),
        usage: Some(Usage {
            total_bytes: 100,
            used_bytes: 10,
            avail_bytes: 90,
        }),
        pools,
        rbd_mirror_daemons: (side == Site::Destination).then(|| {
            vec![ServiceDaemon {
                gid: "1".into(),
                id: "b".into(),
                hostname: "h".into(),
                start_stamp: String::new(),
            }]
        }),
    }
}

fn pool(
    name: &str,
    purpose: PoolPurpose,
    mode: PoolMirrorMode,
    peers: Vec<MirrorPeer>,
) -> PoolReport {
    PoolReport {
        name: name.into(),
        purpose,
        error: None,
        mirror_mode: Some(mode),
        mirror_uuid: Some(format!("uuid-{name}-{purpose:?}")),
        peers,
    }
}

fn peer(direction: PeerDirection, mirror_uuid: &str) -> MirrorPeer {
    MirrorPeer {
        uuid: "p".into(),
        direction,
        site_name: "site-a".into(),
        mirror_uuid: mirror_uuid.into(),
        client_name: String::new(),
    }
}

fn healthy() -> CheckReport {
    let src_uuid = "uuid-volumes-Cinder";
    CheckReport {
        source: site(
            Site::Source,
            "site-a",
            vec![pool(
                "volumes",
                PoolPurpose::Cinder,
                PoolMirrorMode::Image,
                vec![peer(PeerDirection::TxOnly, "")],
            )],
        ),
        destination: site(
            Site::Destination,
            "site-b",
            vec![pool(
                "volumes",
                PoolPurpose::MirroredCinder,
                PoolMirrorMode::Image,
                vec![peer(PeerDirection::RxOnly, src_uuid)],
            )],
        ),
        clouds: vec![],
        images: vec![],
        conversion_hosts: vec![],
        problems: vec![],
    }
}

fn image(name: &str) -> ImageReport {
    ImageReport {
        image: ImageRef {
            kind: ImageKind::Cinder,
            pool: "volumes".into(),
            name: name.into(),
            mirrored_pool: "volumes".into(),
            dest_pool: "cinder-volumes".into(),
            dest_name: name.into(),
            new_name: None,
        },
        error: None,
        size: Some(1 << 30),
        features: Some(Features::DEFAULT),
        user_snapshots: vec![],
        mirror_snapshots: 0,
        watchers: vec![],
        lockers: vec![],
        users: vec![],
        parent: None,
        encrypted: false,
        mirroring: None,
        primary: None,
        dest_exists: Some(false),
        streamed: false,
    }
}

#[test]
fn healthy_setup_has_no_problems() {
    let r = healthy();
    assert_eq!(
        assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry),
        vec![]
    );
}

#[test]
fn missing_rbd_mirror_daemon_is_an_error_with_a_hint() {
    let mut r = healthy();
    r.destination.rbd_mirror_daemons = Some(vec![]);
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].severity, Severity::Error);
    assert_eq!(
        p[0].message,
        "no rbd-mirror daemon is running for the destination cluster"
    );
    assert!(p[0].hint.as_deref().unwrap().contains("rbd-mirror"));
}

#[test]
fn streamed_volumes_are_not_judged_as_images_and_their_hosts_must_answer() {
    let mut r = healthy();
    let mut gone = image("volume-nfs");
    gone.streamed = true;
    gone.size = None;
    gone.features = None;
    r.images = vec![gone];
    let here = concat!("ferry ", env!("CARGO_PKG_VERSION")).to_string();
    r.conversion_hosts = vec![
        HostReport {
            side: Site::Source,
            ssh: "convhost-a".into(),
            version: Some(here.clone()),
            error: None,
        },
        HostReport {
            side: Site::Destination,
            ssh: "convhost-b".into(),
            version: Some(here),
            error: None,
        },
    ];
    assert_eq!(
        assess(&r, MirrorMode::Snapshot, Transfer::Stream, Snapshots::Carry),
        vec![]
    );
    assert!(render_text(&r).contains("streams through the conversion hosts"));
    r.conversion_hosts[0].version = Some("ferry 0.0.1".into());
    r.conversion_hosts[1].version = None;
    r.conversion_hosts[1].error = Some("Permission denied (publickey). (exit status: 255)".into());
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Stream, Snapshots::Carry);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].severity, Severity::Warning);
    assert!(p[0].message.starts_with("runs ferry 0.0.1"), "{p:?}");
    assert_eq!(p[1].severity, Severity::Error);
    assert_eq!(p[1].subject, "conversion host convhost-b (destination)");
    assert!(p[1].message.contains("Permission denied"), "{p:?}");
}

#[test]
fn a_direct_transfer_needs_neither_rbd_mirror_nor_peers_nor_pool_mirroring() {
    let mut r = healthy();
    r.destination.rbd_mirror_daemons = Some(vec![]);
    r.destination.pools[0].peers = vec![];
    for site in [&mut r.source, &mut r.destination] {
        for p in &mut site.pools {
            p.mirror_mode = Some(PoolMirrorMode::Disabled);
        }
    }
    assert_eq!(
        assess(&r, MirrorMode::Snapshot, Transfer::Direct, Snapshots::Carry),
        vec![]
    );
    // The same setup fails the mirror transfer several ways.
    assert!(assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry).len() >= 3);
}

#[test]
fn destination_pool_without_receiving_peer_is_an_error() {
    let mut r = healthy();
    r.destination.pools[0].peers = vec![peer(PeerDirection::TxOnly, "x")];
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].subject, "site-b/volumes");
    assert!(
        p[0].message.starts_with("no mirror peer receives"),
        "{}",
        p[0].message
    );
    assert!(p[0]
        .hint
        .as_deref()
        .unwrap()
        .contains("bootstrap import --direction rx-only volumes"));
}

#[test]
fn peer_with_another_clusters_uuid_is_an_error() {
    let mut r = healthy();
    r.destination.pools[0].peers = vec![peer(PeerDirection::RxOnly, "someone-else")];
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].message.contains("not the source pool"),
        "{}",
        p[0].message
    );
}

#[test]
fn wrong_key_and_missing_pool_get_specific_hints() {
    let mut r = healthy();
    r.source.connect_error = Some(Failure {
        kind: ErrorKind::PermissionDenied,
        message: "rados_connect(x): EACCES (permission denied)".into(),
    });
    r.destination.pools[0].error = Some(Failure {
        kind: ErrorKind::NotFound,
        message: "rados_ioctx_create(site-b/nope): ENOENT (not found)".into(),
    });
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0]
        .message
        .starts_with("cannot connect to the source cluster"));
    assert!(p[0]
        .hint
        .as_deref()
        .unwrap()
        .contains("refused client.admin's key"));
    assert!(p[1]
        .hint
        .as_deref()
        .unwrap()
        .contains("no pool \"volumes\" on cluster site-b"));
}

#[test]
fn disabled_mirroring_and_pool_mode_with_snapshot_mirroring_are_errors() {
    let mut r = healthy();
    r.source.pools[0].mirror_mode = Some(PoolMirrorMode::Disabled);
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry);
    assert_eq!(
        p[0].hint.as_deref(),
        Some("rbd mirror pool enable volumes image")
    );
    let mut r = healthy();
    r.source.pools[0].mirror_mode = Some(PoolMirrorMode::Pool);
    assert_eq!(
        assess(&r, MirrorMode::Journal, Transfer::Mirror, Snapshots::Carry),
        vec![]
    );
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry);
    assert!(p[0].message.contains("snapshot-based"), "{p:?}");
}

#[test]
fn image_problems_in_use_snapshots_missing_and_taken_name() {
    let mut r = healthy();
    let mut busy = image("volume-1");
    busy.users = vec!["client.4100 at 10.0.0.5:0/1 (holds the exclusive lock: it writes)".into()];
    busy.user_snapshots = vec!["before-upgrade".into()];
    busy.dest_exists = Some(true);
    let mut missing = image("volume-2");
    missing.error = Some(Failure {
        kind: ErrorKind::NotFound,
        message: "rbd_open_read_only(volumes/volume-2): ENOENT (not found)".into(),
    });
    r.images = vec![busy, missing];
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry);
    let msgs: Vec<(Severity, &str)> = p.iter().map(|p| (p.severity, p.message.as_str())).collect();
    assert_eq!(
        msgs[0],
        (
            Severity::Warning,
            "in use: client.4100 at 10.0.0.5:0/1 (holds the exclusive lock: it writes)"
        )
    );
    assert_eq!(
        msgs[1],
        (
            Severity::Warning,
            "1 snapshot(s) will be carried: before-upgrade"
        )
    );
    assert_eq!(
        msgs[2],
        (
            Severity::Warning,
            "cinder-volumes/volume-1 already exists on site-b"
        )
    );
    assert_eq!(msgs[3].0, Severity::Error);
    assert!(msgs[3].1.starts_with("image not found"));
    assert_eq!(p[3].subject, "site-a/volumes/volume-2");
}

#[test]
fn health_and_fullness_are_reported() {
    let mut r = healthy();
    r.destination.health = Some(Health {
        status: "HEALTH_WARN".into(),
        checks: vec![HealthCheck {
            code: "OSD_NEARFULL".into(),
            severity: "HEALTH_WARN".into(),
            summary: "1 nearfull osd(s)".into(),
            details: vec![],
        }],
    });
    r.destination.usage = Some(Usage {
        total_bytes: 100,
        used_bytes: 96,
        avail_bytes: 4,
    });
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry);
    assert_eq!(
        p[0].message,
        "HEALTH_WARN (OSD_NEARFULL: 1 nearfull osd(s))"
    );
    assert_eq!(p[1].severity, Severity::Error);
    assert_eq!(p[1].message, "cluster is 96% full");
}

#[test]
fn text_report_ends_with_a_verdict() {
    let mut r = healthy();
    r.images = vec![image("volume-1")];
    let t = render_text(&r);
    assert!(t.contains("rbd-mirror  b on h"), "{t}");
    assert!(t.contains("volumes/volume-1"), "{t}");
    assert!(
        t.trim_end().ends_with("ready: 0 error(s), 0 warning(s)"),
        "{t}"
    );
    r.problems = assess(
        &{
            let mut x = r.clone();
            x.destination.rbd_mirror_daemons = Some(vec![]);
            x
        },
        MirrorMode::Snapshot,
        Transfer::Mirror,
        Snapshots::Carry,
    );
    assert!(render_text(&r)
        .trim_end()
        .ends_with("NOT READY: 1 error(s), 0 warning(s)"));
}

#[test]
fn cloud_problems_are_reported() {
    let mut r = healthy();
    r.clouds = vec![
        CloudReport {
            side: Site::Source,
            name: "src".into(),
            region: None,
            error: Some("connecting to the source cloud: authentication failed".into()),
            project_id: None,
            roles: vec![],
            endpoints: vec![],
        },
        CloudReport {
            side: Site::Destination,
            name: "dst".into(),
            region: Some("b".into()),
            error: None,
            project_id: Some("p".into()),
            roles: vec!["member".into()],
            endpoints: vec![
                ("block-storage".into(), Ok("http://c".into())),
                (
                    "image".into(),
                    Err("no image service in the catalog".into()),
                ),
            ],
        },
    ];
    let p = assess(&r, MirrorMode::Snapshot, Transfer::Mirror, Snapshots::Carry);
    let got: Vec<(Severity, &str, &str)> = p
        .iter()
        .map(|p| (p.severity, p.subject.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Severity::Error,
                "cloud src",
                "connecting to the source cloud: authentication failed"
            ),
            (Severity::Error, "cloud dst", "no image service in the catalog"),
            (
                Severity::Warning,
                "cloud dst",
                "the destination credentials lack the admin role, which Cinder's default policy requires for manage-existing and for listing backend pools"
            ),
        ]
    );
    assert!(!r.ok() || p.iter().any(|x| x.severity == Severity::Error));
}
