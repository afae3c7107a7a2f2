//! Attaching a volume to a conversion host through Cinder's attachments API
//! (microversion 3.44), as `cinder local-attach` does: create the attachment
//! with the host's connector (Cinder asks the backend's driver for the
//! connection info), mark it complete (the volume becomes `in-use`), and
//! delete it when done (the volume is `available` again). Project-member
//! policy: a tenant admin attaches their own volumes, no cloud admin needed.
//!
//! The attachments ferry makes name no Nova server: Cinder lets a user
//! delete an attachment that names one only after asking Nova whether the
//! server still uses it (bug 2004555), and a conversion host that is not a
//! Nova server has no such answer; an attachment stuck that way is what
//! OS-Migrate's users find `reserved` after a failure.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::cinder as api;
use super::cinder::Cinder;
use super::session::{ApiError, Result};

/// The microversion of every attachments call: `os-complete` needs 3.44
/// (attachments themselves arrived in 3.27).
pub const MICROVERSION: (&str, &str) = ("OpenStack-API-Version", api::ATTACHMENTS);

/// What a conversion host tells Cinder about itself (os-brick's connector
/// properties, the fields the test environment's drivers read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    /// The host's name as Cinder records it (`attached_host`).
    pub host: String,
    /// The address the storage lets in (iSCSI, NFS export rules).
    pub ip: String,
    /// The iSCSI initiator name, for backends that export over iSCSI.
    pub initiator: Option<String>,
}

impl Connector {
    pub fn new(host: &str, ip: &str) -> Connector {
        Connector {
            host: host.into(),
            ip: ip.into(),
            initiator: None,
        }
    }

    /// The `mountpoint` ferry gives its attachments: Cinder shows it (as
    /// the volume's attachment `device`) to project members, who are not
    /// shown the host, so it is how a re-run finds its own leftovers.
    pub fn mountpoint(&self) -> String {
        format!("ferry:{}", self.host)
    }

    /// The connector as Cinder takes it. Pure.
    pub fn body(&self) -> Value {
        let mut c = json!({
            "host": self.host,
            "ip": self.ip,
            "multipath": false,
            "platform": std::env::consts::ARCH,
            "os_type": std::env::consts::OS,
            "mountpoint": self.mountpoint(),
            "do_local_attach": true,
        });
        if let Some(i) = &self.initiator {
            c["initiator"] = json!(i);
        }
        c
    }
}

/// Connection types ferry can read a volume through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    Nfs,
    Rbd,
}

impl ConnectionKind {
    pub fn name(self) -> &'static str {
        match self {
            ConnectionKind::Nfs => "nfs",
            ConnectionKind::Rbd => "rbd",
        }
    }
}

/// How an attached volume is reached, from Cinder's connection info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Nfs(NfsConnection),
    Rbd(RbdConnection),
}

impl Connection {
    pub fn kind(&self) -> ConnectionKind {
        match self {
            Connection::Nfs(_) => ConnectionKind::Nfs,
            Connection::Rbd(_) => ConnectionKind::Rbd,
        }
    }
}

/// A volume that is a file on an NFS share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsConnection {
    /// The share, `server:/path`.
    pub export: String,
    /// The volume's file in the share.
    pub name: String,
    /// `raw` or `qcow2`.
    pub format: String,
    /// Mount options the backend asks for, if any.
    pub options: Option<String>,
}

impl NfsConnection {
    /// The volume's file on a host that mounts its shares under
    /// `mount_base` as os-brick does (`<base>/<md5 of the export>`). Pure.
    pub fn path_under(&self, mount_base: &Path) -> PathBuf {
        nfs_mount_point(mount_base, &self.export).join(&self.name)
    }
}

/// Where os-brick mounts an NFS share under `mount_base`. Pure.
pub fn nfs_mount_point(mount_base: &Path, export: &str) -> PathBuf {
    let hash = Md5::digest(export.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    mount_base.join(hex)
}

/// A volume that is an RBD image. The user's key is not in it: the host
/// that opens the image needs that user's keyring (a driver configured
/// with `rbd_keyring_conf`, meant for cinderlib, does put the key in the
/// connection info; ferry never keeps it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdConnection {
    pub pool: String,
    pub image: String,
    /// Monitors as `host:port`.
    pub monitors: Vec<String>,
    /// The cephx user without `client.`, when the cluster uses cephx.
    pub user: Option<String>,
    /// The cluster name the backend uses (selects `/etc/ceph/<name>.conf`).
    pub cluster_name: Option<String>,
}

/// Connection info ferry cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("connection type {0:?} is not supported yet (ferry reads nfs and rbd volumes)")]
    Unsupported(String),
    #[error("connection type {kind} is not accepted here (accepted: {accepted})")]
    NotAccepted { kind: String, accepted: String },
    #[error("the {kind} connection info has no usable {field:?}")]
    Missing { kind: String, field: &'static str },
    #[error("the {kind} connection info's {field:?} is {value:?}: {why}")]
    Invalid {
        kind: String,
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Reads Cinder's connection info (the flat form the attachments API
/// returns: the driver's data beside `driver_volume_type`). Pure.
pub fn parse_connection(info: &Value) -> std::result::Result<Connection, ConnectionError> {
    let kind = info
        .get("driver_volume_type")
        .and_then(Value::as_str)
        .ok_or_else(|| ConnectionError::Missing {
            kind: "attachment".into(),
            field: "driver_volume_type",
        })?;
    let text = |field: &'static str| -> std::result::Result<String, ConnectionError> {
        info.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ConnectionError::Missing {
                kind: kind.into(),
                field,
            })
    };
    let optional = |field: &str| {
        info.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match kind {
        "nfs" => {
            let name = text("name")?;
            if name.contains('/') || name == ".." {
                return Err(ConnectionError::Invalid {
                    kind: kind.into(),
                    field: "name",
                    value: name,
                    why: "a file name in the share was expected",
                });
            }
            Ok(Connection::Nfs(NfsConnection {
                export: text("export")?,
                name,
                // Drivers before `format` was sent made raw files only.
                format: optional("format").unwrap_or_else(|| "raw".into()),
                options: optional("options"),
            }))
        }
        "rbd" => {
            let name = text("name")?;
            let Some((pool, image)) = name
                .split_once('/')
                .filter(|(p, i)| !p.is_empty() && !i.is_empty() && !i.contains('/'))
            else {
                return Err(ConnectionError::Invalid {
                    kind: kind.into(),
                    field: "name",
                    value: name,
                    why: "pool/image was expected",
                });
            };
            let list = |field: &'static str| -> std::result::Result<Vec<String>, ConnectionError> {
                let items = info.get(field).and_then(Value::as_array).ok_or_else(|| {
                    ConnectionError::Missing {
                        kind: kind.into(),
                        field,
                    }
                })?;
                // Ports come as strings from Cinder's RBD driver; numbers
                // are taken too.
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) if !s.is_empty() => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        other => Err(ConnectionError::Invalid {
                            kind: kind.into(),
                            field,
                            value: other.to_string(),
                            why: "a list of strings was expected",
                        }),
                    })
                    .collect()
            };
            let hosts = list("hosts")?;
            let ports = list("ports")?;
            if hosts.is_empty() || hosts.len() != ports.len() {
                return Err(ConnectionError::Invalid {
                    kind: kind.into(),
                    field: "ports",
                    value: format!("{} ports for {} hosts", ports.len(), hosts.len()),
                    why: "one port per monitor host was expected",
                });
            }
            let monitors = hosts
                .iter()
                .zip(&ports)
                .map(|(h, p)| {
                    // An IPv6 address is bracketed, as Ceph writes it.
                    if h.contains(':') && !h.starts_with('[') {
                        format!("[{h}]:{p}")
                    } else {
                        format!("{h}:{p}")
                    }
                })
                .collect();
            Ok(Connection::Rbd(RbdConnection {
                pool: pool.into(),
                image: image.into(),
                monitors,
                user: optional("auth_username"),
                cluster_name: optional("cluster_name"),
            }))
        }
        other => Err(ConnectionError::Unsupported(other.into())),
    }
}

/// A volume attached to a conversion host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAttachment {
    pub id: String,
    pub volume_id: String,
    pub connection: Connection,
}

/// An attachment of a volume as Cinder lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AttachmentRecord {
    pub id: String,
    /// reserved, attaching, attached, detached, error_attaching, ...
    pub status: String,
    /// The Nova server it belongs to, if any.
    #[serde(default)]
    pub instance: Option<String>,
}

/// Why an attach failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("volume {volume}, attachment {attachment}: {source}")]
    Connection {
        volume: String,
        attachment: String,
        /// Boxed: keeps every `Result` of an attach small.
        #[source]
        source: Box<ConnectionError>,
    },
    /// The attach failed after the attachment was made, and removing it
    /// failed too: the volume may be left `reserved` or `in-use`; a re-run
    /// removes it ([`Cinder::remove_leftover_attachments`]).
    #[error("{error}; removing attachment {attachment} of volume {volume} failed too ({cleanup}): a re-run removes it")]
    NotRemoved {
        volume: String,
        attachment: String,
        error: Box<AttachError>,
        cleanup: ApiError,
    },
}

/// Whether `a`, an attachment of a volume, is one ferry left for
/// `connector`'s host: no Nova server, and either not finished (nothing
/// uses a half-made attachment) or finished with ferry's mountpoint for
/// that host. `device` is the mountpoint Cinder shows for finished ones.
/// Pure.
pub fn is_leftover(a: &AttachmentRecord, device: Option<&str>, connector: &Connector) -> bool {
    if a.instance.as_deref().is_some_and(|i| !i.is_empty()) {
        return false;
    }
    match a.status.as_str() {
        "attached" => device == Some(connector.mountpoint().as_str()),
        "detached" => false,
        _ => true,
    }
}

impl Cinder<'_> {
    /// Attaches volume `volume_id` to the host `connector` describes and
    /// returns how to reach it, if its connection type is one of
    /// `accepted`. Any failure after the attachment was made removes it
    /// again, so the volume is left as it was (`available`).
    pub fn attach(
        &self,
        volume_id: &str,
        connector: &Connector,
        accepted: &[ConnectionKind],
    ) -> std::result::Result<LocalAttachment, AttachError> {
        let answer = self.0.request(&api::attach(volume_id, connector.body()))?;
        #[derive(Deserialize)]
        struct Made {
            id: String,
            #[serde(default)]
            connection_info: Value,
        }
        let made: Made = answer.field("attachment", "the new attachment")?;
        let result = (|| {
            let connection = parse_connection(&made.connection_info)
                .and_then(|c| {
                    if accepted.contains(&c.kind()) {
                        Ok(c)
                    } else {
                        Err(ConnectionError::NotAccepted {
                            kind: c.kind().name().into(),
                            accepted: accepted
                                .iter()
                                .map(|k| k.name())
                                .collect::<Vec<_>>()
                                .join(", "),
                        })
                    }
                })
                .map_err(|source| AttachError::Connection {
                    volume: volume_id.into(),
                    attachment: made.id.clone(),
                    source: Box::new(source),
                })?;
            self.complete_attachment(&made.id)?;
            Ok(connection)
        })();
        match result {
            Ok(connection) => Ok(LocalAttachment {
                id: made.id,
                volume_id: volume_id.into(),
                connection,
            }),
            Err(error) => match self.delete_attachment(&made.id) {
                Ok(()) => Err(error),
                Err(cleanup) => Err(AttachError::NotRemoved {
                    volume: volume_id.into(),
                    attachment: made.id,
                    error: Box::new(error),
                    cleanup,
                }),
            },
        }
    }

    /// Marks an attachment complete: the volume becomes `in-use`.
    pub fn complete_attachment(&self, attachment_id: &str) -> Result<()> {
        self.0
            .request(&api::complete_attachment(attachment_id))
            .map(|_| ())
    }

    /// Deletes an attachment (the detach): the volume becomes `available`
    /// when it was its last. One already gone is not an error.
    pub fn delete_attachment(&self, attachment_id: &str) -> Result<()> {
        match self.0.request(&api::delete_attachment(attachment_id)) {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The attachments of a volume, in any state.
    pub fn attachments(&self, volume_id: &str) -> Result<Vec<AttachmentRecord>> {
        self.0
            .request(&api::attachments(volume_id))?
            .field("attachments", "a list of attachments")
    }

    /// Removes what an earlier run left attached of `volume_id` to
    /// `connector`'s host (see [`is_leftover`]); returns the ids removed.
    pub fn remove_leftover_attachments(
        &self,
        volume_id: &str,
        connector: &Connector,
    ) -> Result<Vec<String>> {
        let volume = self.volume(volume_id)?;
        let mut removed = Vec::new();
        for a in self.attachments(volume_id)? {
            let device = volume
                .attachments
                .iter()
                .find(|v| v.attachment_id.as_deref() == Some(a.id.as_str()))
                .and_then(|v| v.device.as_deref());
            if is_leftover(&a, device, connector) {
                self.delete_attachment(&a.id)?;
                removed.push(a.id);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfs_connection_info_gives_the_file_under_the_hosts_mount_base() {
        let c = parse_connection(&json!({
            "export": "nfs.example:/cinder", "name": "volume-v1", "options": null,
            "format": "raw", "driver_volume_type": "nfs",
            "mount_point_base": "/var/lib/cinder/mnt", "attachment_id": "a1"
        }))
        .unwrap();
        let Connection::Nfs(n) = &c else {
            panic!("{c:?}")
        };
        assert_eq!(n.format, "raw");
        assert_eq!(n.options, None);
        // md5("nfs.example:/cinder"), as os-brick names the mount point.
        assert_eq!(
            n.path_under(Path::new("/mnt")),
            Path::new("/mnt/de088d453a6990609e11a72c900ca0fc/volume-v1")
        );
    }

    #[test]
    fn rbd_connection_info_gives_pool_image_monitors_and_user_but_no_key() {
        let c = parse_connection(&json!({
            "name": "volumes/volume-v1", "hosts": ["10.0.0.1", "::1"], "ports": ["6789", 3300],
            "cluster_name": "ceph", "auth_enabled": true, "auth_username": "cinder",
            "secret_type": "ceph", "secret_uuid": null, "volume_id": "v1", "discard": true,
            "keyring": "[client.cinder]\n\tkey = AQSECRET==\n",
            "driver_volume_type": "rbd"
        }))
        .unwrap();
        assert_eq!(
            c,
            Connection::Rbd(RbdConnection {
                pool: "volumes".into(),
                image: "volume-v1".into(),
                monitors: vec!["10.0.0.1:6789".into(), "[::1]:3300".into()],
                user: Some("cinder".into()),
                cluster_name: Some("ceph".into()),
            })
        );
        assert!(!format!("{c:?}").contains("AQSECRET"));
    }

    #[test]
    fn other_connection_types_are_named_as_not_supported() {
        let e = parse_connection(&json!({"driver_volume_type": "iscsi", "target_iqn": "x"}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "connection type \"iscsi\" is not supported yet (ferry reads nfs and rbd volumes)"
        );
    }

    #[test]
    fn malformed_connection_info_is_refused() {
        let cases = [
            json!({}),
            json!({"driver_volume_type": "nfs", "name": "v"}),
            json!({"driver_volume_type": "nfs", "export": "h:/e", "name": "../etc/passwd"}),
            json!({"driver_volume_type": "rbd", "name": "no-pool", "hosts": ["h"], "ports": ["1"]}),
            json!({"driver_volume_type": "rbd", "name": "p/i", "hosts": ["h", "g"], "ports": ["1"]}),
            json!({"driver_volume_type": "rbd", "name": "p/i", "hosts": [], "ports": []}),
            json!({"driver_volume_type": "rbd", "name": "p/i", "hosts": [null], "ports": ["1"]}),
        ];
        for c in cases {
            assert!(parse_connection(&c).is_err(), "{c}");
        }
    }

    #[test]
    fn leftovers_are_serverless_attachments_ferry_made_for_this_host() {
        let me = Connector::new("convhost-a", "127.0.0.1");
        let rec = |status: &str, instance: Option<&str>| AttachmentRecord {
            id: "a".into(),
            status: status.into(),
            instance: instance.map(str::to_string),
        };
        assert!(is_leftover(&rec("reserved", None), None, &me));
        assert!(is_leftover(&rec("attaching", None), None, &me));
        assert!(is_leftover(
            &rec("attached", None),
            Some("ferry:convhost-a"),
            &me
        ));
        assert!(!is_leftover(
            &rec("attached", None),
            Some("ferry:convhost-b"),
            &me
        ));
        assert!(!is_leftover(&rec("attached", None), Some("/dev/vdb"), &me));
        assert!(!is_leftover(&rec("reserved", Some("server-1")), None, &me));
        assert!(!is_leftover(&rec("detached", None), None, &me));
    }

    #[test]
    fn connectors_carry_ferrys_mountpoint() {
        let mut c = Connector::new("convhost-a", "192.0.2.7");
        c.initiator = Some("iqn.2004-10.com.example:a".into());
        let b = c.body();
        assert_eq!(b["host"], "convhost-a");
        assert_eq!(b["ip"], "192.0.2.7");
        assert_eq!(b["multipath"], false);
        assert_eq!(b["mountpoint"], "ferry:convhost-a");
        assert_eq!(b["initiator"], "iqn.2004-10.com.example:a");
    }
}
