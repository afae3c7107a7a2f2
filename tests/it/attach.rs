//! Volumes attached to a conversion host through the source cloud's Cinder
//! attachments API, as a project member: a volume of the non-Ceph (NFS)
//! backend is reached as a file, written with data and holes, and streamed
//! to the other conversion host with an equal digest; an RBD volume's
//! connection info gives its pool, image, monitors and user. Every path,
//! the failing ones too, leaves the volume `available` with no attachment.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry::openstack::attach::{AttachError, ConnectionError, MICROVERSION};
use ferry::openstack::{Cinder, Cloud, Connection, ConnectionKind, Connector, Service};
use ferry::transfer::digest::DigestWriter;
use ferry::transfer::stream::relay::{self, RelayOptions, Remote};
use reqwest::Method;
use serde_json::json;

use crate::common::{unique, wait_for, Noise, TestEnv};
use crate::it::openstack::{wait_volume, VolumeGuard};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The source conversion host as Cinder sees it.
fn convhost_a() -> Connector {
    Connector::new("convhost-a", "127.0.0.1")
}

/// A new 1 GiB volume of `volume_type` in the source cloud, deleted at the
/// end (after its attachments, which are removed first).
fn new_volume<'c>(src: &'c Cloud, volume_type: &str) -> VolumeGuard<'c> {
    let name = unique(&format!("attach-{volume_type}"));
    let v = Cinder(src)
        .create_volume(&name, 1, Some(volume_type), &BTreeMap::new())
        .unwrap_or_else(|e| panic!("creating a {volume_type} volume: {e:#}"));
    let guard = VolumeGuard {
        cloud: src,
        id: v.id.clone(),
    };
    wait_volume(src, &v.id, "available");
    guard
}

/// Removes ferry's attachments of a volume to convhost-a when a test ends
/// early, so that the volume can be deleted.
struct Detach<'c>(&'c Cloud, String);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        let _ = Cinder(self.0).remove_leftover_attachments(&self.1, &convhost_a());
    }
}

/// Asserts the volume is `available` and Cinder lists no attachment of it.
fn assert_free(src: &Cloud, id: &str) {
    let v = wait_volume(src, id, "available");
    assert!(v.attachments.is_empty(), "{:?}", v.attachments);
    let left = Cinder(src).attachments(id).unwrap();
    assert!(left.is_empty(), "attachments left: {left:?}");
}

/// The image digest of a file, read whole (not through the data engine).
fn file_digest(path: &Path) -> String {
    let mut w = DigestWriter::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut w).unwrap();
    w.finish().0
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn nfs_volume_attached_to_a_conversion_host_streams_with_equal_digest_and_detaches() {
    let _shared = crate::common::mirror_daemon_shared();
    let env = TestEnv::load();
    let src = env.cloud("source");
    let vol = new_volume(&src, env.var("SOURCE_NFS_VOLUME_TYPE"));
    let _detach = Detach(&src, vol.id.clone());
    let host = convhost_a();
    assert_eq!(
        Cinder(&src)
            .remove_leftover_attachments(&vol.id, &host)
            .unwrap(),
        Vec::<String>::new()
    );

    let att = Cinder(&src)
        .attach(&vol.id, &host, &[ConnectionKind::Nfs])
        .unwrap_or_else(|e| panic!("attach: {e:#}"));
    let v = Cinder(&src).volume(&vol.id).unwrap();
    assert_eq!(v.status, "in-use");
    assert_eq!(v.attachments.len(), 1, "{:?}", v.attachments);
    assert_eq!(v.attachments[0].attachment_id.as_deref(), Some(&*att.id));
    assert_eq!(v.attachments[0].device.as_deref(), Some("ferry:convhost-a"));
    let Connection::Nfs(nfs) = &att.connection else {
        panic!("an nfs volume came as {:?}", att.connection)
    };
    assert_eq!(nfs.format, "raw");
    assert_eq!(nfs.name, format!("volume-{}", vol.id));

    // The file, where the conversion host mounts the share.
    let path = nfs.path_under(&env.path("CONVHOST_NFS_MOUNT_BASE"));
    let meta = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("the attached volume's file {}: {e}", path.display()));
    assert_eq!(meta.len(), GIB);
    // Data in chunks 0, 3 (across its end into 4) and the last one; the
    // other 252 chunks are holes.
    let runs = [
        (0, MIB),
        (16 * MIB - 4096, 2 * MIB),
        (GIB - 3 * MIB, 3 * MIB),
    ];
    {
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for (i, (off, len)) in runs.iter().enumerate() {
            let mut buf = vec![0u8; *len as usize];
            Noise::new(40 + i as u64).fill(&mut buf);
            f.write_all_at(&buf, *off).unwrap();
        }
        f.sync_all().unwrap();
    }
    let source_digest = file_digest(&path);

    let dir = Scratch(std::env::temp_dir().join(unique("attach-stream")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let target = dir.0.join("volume.img");
    let opts = RelayOptions {
        ssh_options: vec!["-F".into(), env.var("CONVHOST_SSH_CONFIG").into()],
        remote_ferry: env!("CARGO_BIN_EXE_ferry").into(),
        identity: Some(format!("cinder volume {}", vol.id)),
        ..RelayOptions::default()
    };
    let report = relay::stream(
        &Remote {
            host: "convhost-a".into(),
            path: path.display().to_string(),
        },
        &Remote {
            host: "convhost-b".into(),
            path: target.display().to_string(),
        },
        &opts,
    )
    .unwrap_or_else(|e| panic!("stream: {e:#}"));
    assert_eq!(report.digest, source_digest);
    assert_eq!(file_digest(&target), source_digest);
    assert_eq!(report.size, GIB);
    assert_eq!(report.chunks_sent, 4, "{report:?}");
    assert_eq!(report.chunks_hole, 252, "{report:?}");
    assert!(
        report.bytes_sent <= 7 * MIB,
        "only data crosses: {report:?}"
    );

    Cinder(&src).delete_attachment(&att.id).unwrap();
    assert_free(&src, &vol.id);
}

#[test]
fn rbd_volume_attachment_gives_pool_image_monitors_and_user() {
    let _shared = crate::common::mirror_daemon_shared();
    let env = TestEnv::load();
    let src = env.cloud("source");
    let vol = new_volume(&src, "ceph");
    let _detach = Detach(&src, vol.id.clone());
    let att = Cinder(&src)
        .attach(
            &vol.id,
            &convhost_a(),
            &[ConnectionKind::Nfs, ConnectionKind::Rbd],
        )
        .unwrap_or_else(|e| panic!("attach: {e:#}"));
    let Connection::Rbd(rbd) = &att.connection else {
        panic!("a ceph volume came as {:?}", att.connection)
    };
    assert_eq!(rbd.pool, env.var("MIRROR_IMAGE_POOL"));
    assert_eq!(rbd.image, format!("volume-{}", vol.id));
    assert_eq!(rbd.monitors, vec![env.var("SITE_A_MON_HOST").to_string()]);
    assert_eq!(rbd.user.as_deref(), Some("cinder"));
    assert_eq!(Cinder(&src).volume(&vol.id).unwrap().status, "in-use");
    Cinder(&src).delete_attachment(&att.id).unwrap();
    assert_free(&src, &vol.id);
}

#[test]
fn a_failed_attach_leaves_the_volume_available_without_attachments() {
    let _shared = crate::common::mirror_daemon_shared();
    let env = TestEnv::load();
    let src = env.cloud("source");
    let vol = new_volume(&src, "ceph");
    let _detach = Detach(&src, vol.id.clone());

    // Cinder makes the attachment and hands out rbd connection info, which
    // this caller does not accept: the attachment is removed again.
    let err = Cinder(&src)
        .attach(&vol.id, &convhost_a(), &[ConnectionKind::Nfs])
        .unwrap_err();
    match &err {
        AttachError::Connection { source, .. } => assert_eq!(
            **source,
            ConnectionError::NotAccepted {
                kind: "rbd".into(),
                accepted: "nfs".into()
            }
        ),
        other => panic!("{other:#}"),
    }
    assert!(err.to_string().contains(&vol.id), "{err}");
    assert_free(&src, &vol.id);

    // A volume that does not exist: Cinder refuses, nothing is made.
    let missing = "00000000-0000-4000-8000-000000000000";
    let err = Cinder(&src)
        .attach(missing, &convhost_a(), &[ConnectionKind::Rbd])
        .unwrap_err();
    assert!(
        matches!(&err, AttachError::Api(e) if e.status() == Some(404)),
        "{err:#}"
    );
}

#[test]
fn leftover_attachments_of_an_earlier_run_are_removed_for_their_host_only() {
    let _shared = crate::common::mirror_daemon_shared();
    let env = TestEnv::load();
    let src = env.cloud("source");
    let vol = new_volume(&src, env.var("SOURCE_NFS_VOLUME_TYPE"));
    let _detach = Detach(&src, vol.id.clone());
    let host = convhost_a();

    // A run that attached and died before detaching.
    let att = Cinder(&src)
        .attach(&vol.id, &host, &[ConnectionKind::Nfs])
        .unwrap();
    let other = Connector::new("convhost-b", "127.0.0.1");
    assert_eq!(
        Cinder(&src)
            .remove_leftover_attachments(&vol.id, &other)
            .unwrap(),
        Vec::<String>::new(),
        "another host's attachment is not touched"
    );
    assert_eq!(Cinder(&src).volume(&vol.id).unwrap().status, "in-use");
    assert_eq!(
        Cinder(&src)
            .remove_leftover_attachments(&vol.id, &host)
            .unwrap(),
        vec![att.id.clone()]
    );
    assert_free(&src, &vol.id);

    // A run that died between making the attachment and completing it:
    // the volume is `reserved`.
    src.answer(
        Service::BlockStorage,
        Method::POST,
        "/attachments",
        &[MICROVERSION],
        Some(ferry::openstack::session::Body::Json(
            &json!({"attachment": {"volume_uuid": vol.id}}),
        )),
    )
    .unwrap();
    wait_for("volume reserved", Duration::from_secs(30), || {
        (Cinder(&src).volume(&vol.id).unwrap().status == "reserved").then_some(())
    });
    assert_eq!(
        Cinder(&src)
            .remove_leftover_attachments(&vol.id, &host)
            .unwrap()
            .len(),
        1
    );
    assert_free(&src, &vol.id);
}
