//! The migration spec users write (YAML): the two sites and what to move.
//! Parsing does no I/O beyond reading the file, and every error names the
//! field (and, for YAML syntax, the line) it is about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ceph::ClusterConfig;

mod options;

pub use options::*;

/// A whole migration spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The cluster the data leaves.
    pub source: SourceSite,
    /// The cluster the data arrives in.
    pub destination: DestinationSite,
    /// How to move it.
    #[serde(default)]
    pub options: Options,
    /// What to move.
    #[serde(default)]
    pub images: Vec<ImageEntry>,
    /// OS-Migrate's `workloads.yml` (its `export_workloads`): each server
    /// in it moves as a `server:` entry; ferry leaves making the servers to
    /// OS-Migrate's `import_workloads`, and after the run writes the file
    /// back beside it (`<name>.ferry.yml`) with each server's
    /// `_migration_params` set to boot from the moved volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_from: Option<PathBuf>,
    /// The conversion hosts of the stream path (`transfer: stream`, and
    /// volumes of a source backend that is not this Ceph cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_hosts: Option<ConversionHosts>,
}

/// The two conversion hosts a volume streams through: one in the source
/// cloud (its volumes are attached to it) and one in the destination cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionHosts {
    pub source: ConversionHost,
    pub destination: ConversionHost,
    /// Options for every `ssh` call (e.g. `["-F", "/path/ssh_config"]`); the
    /// system ssh, your keys and known_hosts apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_options: Vec<String>,
    /// Seconds without a byte before a stream is called stalled (default 60).
    #[serde(default = "default_stall")]
    pub stall_seconds: u64,
}

fn default_stall() -> u64 {
    DEFAULT_STALL_SECONDS
}

/// How long a stream may move no byte before it is called stalled, by
/// default (see [`ConversionHosts::stall_seconds`]); the stream path's own
/// default too.
pub const DEFAULT_STALL_SECONDS: u64 = 60;

/// A conversion host: how ssh reaches it, how Cinder knows it, and where
/// things are on it. Paths are the host's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionHost {
    /// What `ssh` takes: `host`, `user@host`, or a `Host` of the ssh config.
    pub ssh: String,
    /// The host's name in its cloud's attachments (the connector's `host`;
    /// default: `ssh` without a user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address the storage exports to (the connector's `ip`).
    pub ip: String,
    /// The ferry command there (default `ferry`, e.g. `sudo -n /usr/local/bin/ferry`).
    #[serde(default = "default_ferry")]
    pub ferry: String,
    /// Where the host mounts NFS shares, as os-brick does (`<base>/<md5 of
    /// the export>`); needed for volumes of an NFS backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs_mount_base: Option<String>,
    /// The Ceph conf for volumes of an RBD backend (monitors; default
    /// /etc/ceph/ceph.conf). The user is the connection info's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph_conf: Option<String>,
    /// The keyring of that user (default: the conf's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph_keyring: Option<String>,
    /// The receiver's record of what it wrote (the destination host; default
    /// `/var/lib/ferry/stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
}

fn default_ferry() -> String {
    "ferry".into()
}

impl ConversionHost {
    /// The host's name in its cloud's attachments.
    pub fn connector_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let h = self
                .ssh
                .rsplit_once('@')
                .map_or(self.ssh.as_str(), |(_, h)| h);
            h.to_string()
        })
    }
}

/// The source cluster and its OpenStack pools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSite {
    /// Needed unless every volume streams (`options.transfer: stream`).
    #[serde(default, skip_serializing_if = "is_absent")]
    pub cluster: ClusterConfig,
    #[serde(default, skip_serializing_if = "SourcePools::is_empty")]
    pub pools: SourcePools,
    /// The source cloud: a clouds.yaml entry, or `env` for the `OS_*`
    /// variables. Without it, `volume` and `glance_image` are ids and
    /// nothing is asked of OpenStack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
}

fn is_absent(c: &ClusterConfig) -> bool {
    !c.is_given()
}

impl SourcePools {
    fn is_empty(&self) -> bool {
        self.cinder.is_empty() && self.glance.is_none()
    }
}

impl DestinationPools {
    fn is_empty(&self) -> bool {
        *self == DestinationPools::default()
    }
}

/// What stands for the source Cinder pool in the name of a volume that
/// streams (it is no image of that pool): `(cinder)/volume-<id>`.
pub const NO_POOL: &str = "(cinder)";

/// Source pools: Cinder volumes are mirrored per image, Glance images per pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePools {
    /// The source Cinder backend's RBD pool (image-mode mirroring).
    #[serde(default)]
    pub cinder: String,
    /// The source Glance store's RBD pool (pool-mode mirroring).
    #[serde(default)]
    pub glance: Option<String>,
    /// Nova's RBD pool (`[libvirt] images_rbd_pool`): where the root disk
    /// of a server booted from an image is (`<server id>_disk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nova: Option<String>,
}

/// The destination cluster: where mirrored images land, and the pools the
/// destination cloud adopts them from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSite {
    /// Needed unless every volume streams (`options.transfer: stream`).
    #[serde(default, skip_serializing_if = "is_absent")]
    pub cluster: ClusterConfig,
    #[serde(default, skip_serializing_if = "DestinationPools::is_empty")]
    pub pools: DestinationPools,
    /// The destination cloud that adopts the copies (clouds.yaml entry or
    /// `env`). Without it, the copies stay plain RBD images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// Cinder's `host@backend#pool` for manage-existing (default: the backend
    /// pool whose RBD location is this cluster's Cinder pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cinder_host: Option<String>,
}

/// Destination pools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationPools {
    /// Receives the source Cinder pool's mirrored images (same name as the
    /// source pool unless set).
    #[serde(default)]
    pub mirrored_cinder: Option<String>,
    /// Receives the source Glance pool's mirrored images.
    #[serde(default)]
    pub mirrored_glance: Option<String>,
    /// Receives the source Nova pool's mirrored root disks (same name as
    /// the source pool unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrored_nova: Option<String>,
    /// The destination Cinder backend's RBD pool.
    #[serde(default)]
    pub cinder: String,
    /// The destination Glance store's RBD pool.
    #[serde(default)]
    pub glance: Option<String>,
}

/// One thing to move: exactly one of `volume`, `glance_image` or `rbd`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// A Cinder volume id: the RBD image `volume-<id>` in the source Cinder pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// A Glance image id: the RBD image `<id>` in the source Glance pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glance_image: Option<String>,
    /// Any RBD image in one of the source pools, as `pool/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbd: Option<String>,
    /// A server id: every volume attached to it (needs source.cloud).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Name of the copy in the destination pool (default: the source name;
    /// with a destination cloud, `volume-<source id>` or the image id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_name: Option<String>,
    /// Name of the adopted volume or image in the destination cloud
    /// (default: the source's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Which OpenStack service an image belongs to, which decides its pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageKind {
    Cinder,
    Glance,
}

/// An image entry resolved against the spec's pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub kind: ImageKind,
    /// Source pool.
    pub pool: String,
    /// Source RBD image name.
    pub name: String,
    /// Destination pool the mirror lands in.
    pub mirrored_pool: String,
    /// Destination pool the copy is adopted from.
    pub dest_pool: String,
    /// Destination image name.
    pub dest_name: String,
    /// Name for the adopted volume or image in the destination cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
}

impl ImageRef {
    /// `pool/name` on the source.
    pub fn source_spec(&self) -> String {
        format!("{}/{}", self.pool, self.name)
    }
}

/// A spec that could not be read or is not valid. The cause is the error's
/// source, not part of its message: print the chain (`{:#}`) to read both
/// once.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spec {path}")]
    Syntax {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("spec {path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

impl Spec {
    /// Reads and validates a spec file. Relative paths inside it are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Spec::parse(&text, base).map_err(|e| match e {
            ParseError::Syntax(source) => SpecError::Syntax {
                path: path.to_path_buf(),
                source,
            },
            ParseError::Invalid { field, message } => SpecError::Invalid {
                path: path.to_path_buf(),
                field,
                message,
            },
        })
    }

    /// Parses and validates spec text; `base` anchors relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<Spec, ParseError> {
        let mut spec: Spec = serde_yaml::from_str(text).map_err(ParseError::Syntax)?;
        for c in [&mut spec.source.cluster, &mut spec.destination.cluster] {
            c.conf = anchor(base, &c.conf);
            c.keyring = c.keyring.as_ref().map(|k| anchor(base, k));
        }
        let lines = entry_lines(text, spec.images.len());
        if let Some(f) = &spec.servers_from {
            let path = anchor(base, f);
            let workloads = read_workloads(&path).map_err(|e| ParseError::Invalid {
                field: "servers_from".into(),
                message: format!("{e:#}"),
            })?;
            for s in workloads.servers() {
                spec.images.push(ImageEntry {
                    server: Some(s.id),
                    ..ImageEntry::default()
                });
            }
            spec.servers_from = Some(path);
        }
        spec.validate()?;
        spec.refuse_duplicates(&lines)?;
        Ok(spec)
    }

    /// Two entries with one source would migrate it twice; two with one
    /// destination would verify, adopt and clean up one image on the
    /// other's record. `lines[i]` is the line of `images[i]`, when known.
    fn refuse_duplicates(&self, lines: &[Option<usize>]) -> Result<(), ParseError> {
        let at = |i: usize| match lines.get(i).copied().flatten() {
            Some(l) => format!("images[{i}] (line {l})"),
            None => format!("images[{i}]"),
        };
        let mut sources: BTreeMap<String, usize> = BTreeMap::new();
        let mut dests: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..self.images.len() {
            if self.images[i].server.is_some() {
                continue;
            }
            let r = self.resolve(i)?;
            let src = r.source_spec();
            if let Some(j) = sources.insert(src.clone(), i) {
                return Err(ParseError::Invalid {
                    field: at(i),
                    message: format!("moves {src} again, as {} does: list it once", at(j)),
                });
            }
            let dst = format!("{}/{}", r.dest_pool, r.dest_name);
            if let Some(j) = dests.insert(dst.clone(), i) {
                return Err(ParseError::Invalid {
                    field: at(i),
                    message: format!(
                        "copies to {dst}, as {} does: give one of them another dest_name",
                        at(j)
                    ),
                });
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ParseError> {
        let invalid = |field: &str, message: &str| ParseError::Invalid {
            field: field.to_string(),
            message: message.to_string(),
        };
        // Without clusters, only the stream path can move anything.
        let streams = self.options.transfer == Transfer::Stream;
        for (field, c, pool) in [
            (
                "source",
                &self.source.cluster,
                self.source.pools.cinder.as_str(),
            ),
            (
                "destination",
                &self.destination.cluster,
                self.destination.pools.cinder.as_str(),
            ),
        ] {
            if !c.is_given() && streams {
                continue;
            }
            if !c.is_given() {
                return Err(invalid(
                    &format!("{field}.cluster.conf"),
                    "must name a conf file (only a spec whose volumes all stream, options.transfer: stream, needs no cluster)",
                ));
            }
            if pool.is_empty() {
                return Err(invalid(
                    &format!("{field}.pools.cinder"),
                    "must name the Cinder backend's pool",
                ));
            }
            let field = format!("{field}.cluster");
            if c.client.is_empty() || c.client.starts_with("client.") {
                return Err(invalid(
                    &format!("{field}.client"),
                    "give the cephx user id without the 'client.' prefix, e.g. 'admin'",
                ));
            }
        }
        if self.destination.cloud.is_some() && self.source.cloud.is_none() {
            return Err(invalid(
                "destination.cloud",
                "adopting needs what the source cloud knows (names, types, metadata): set source.cloud too",
            ));
        }
        for (i, e) in self.images.iter().enumerate() {
            if e.server.is_some() {
                let field = format!("images[{i}]");
                if self.source.cloud.is_none() {
                    return Err(invalid(
                        &field,
                        "server: the volumes of a server are found through source.cloud",
                    ));
                }
                if [&e.volume, &e.glance_image, &e.rbd, &e.name, &e.dest_name]
                    .iter()
                    .any(|v| v.is_some())
                {
                    return Err(invalid(
                        &field,
                        "server: stands alone (its volumes keep their names)",
                    ));
                }
            }
            if e.name.is_some() && self.destination.cloud.is_none() {
                return Err(invalid(
                    &format!("images[{i}].name"),
                    "names the adopted volume or image: needs destination.cloud",
                ));
            }
        }
        if self.options.transfer == Transfer::Stream {
            if self.conversion_hosts.is_none() {
                return Err(invalid(
                    "options.transfer",
                    "stream goes through conversion hosts: set conversion_hosts (source and destination)",
                ));
            }
            if self.source.cloud.is_none() || self.destination.cloud.is_none() {
                return Err(invalid(
                    "options.transfer",
                    "stream attaches volumes through both clouds: set source.cloud and destination.cloud",
                ));
            }
            if let Some(i) = self
                .images
                .iter()
                .position(|e| e.volume.is_none() && e.server.is_none())
            {
                return Err(invalid(
                    &format!("images[{i}]"),
                    "stream moves Cinder volumes (volume: or server:), not Glance or plain RBD images",
                ));
            }
        }
        if let Some(c) = &self.conversion_hosts {
            for (field, h) in [("source", &c.source), ("destination", &c.destination)] {
                if h.ssh.is_empty() || h.ssh.starts_with('-') {
                    return Err(invalid(
                        &format!("conversion_hosts.{field}.ssh"),
                        "must name a host (not an option)",
                    ));
                }
                if h.ip.is_empty() {
                    return Err(invalid(
                        &format!("conversion_hosts.{field}.ip"),
                        "must give the address the storage exports to",
                    ));
                }
            }
            if c.stall_seconds == 0 {
                return Err(invalid(
                    "conversion_hosts.stall_seconds",
                    "must be at least 1",
                ));
            }
        }
        if self.options.timeout_seconds == 0 {
            return Err(invalid("options.timeout_seconds", "must be at least 1"));
        }
        if self.options.clones == Clones::CloneOfParent && self.destination.pools.glance.is_none() {
            return Err(invalid(
                "options.clones",
                "clone-of-parent clones volumes from the destination copy of their Glance image: set destination.pools.glance",
            ));
        }
        for (i, e) in self.images.iter().enumerate() {
            if e.server.is_none() {
                self.resolve(i)?;
            }
        }
        Ok(())
    }

    /// Resolves `images[index]` into pools and names.
    pub fn resolve(&self, index: usize) -> Result<ImageRef, ParseError> {
        let e = &self.images[index];
        let field = format!("images[{index}]");
        let invalid = |message: String| ParseError::Invalid {
            field: field.clone(),
            message,
        };
        if e.server.is_some() {
            return Err(invalid(
                "server: its volumes are found through the source cloud".into(),
            ));
        }
        let given = [&e.volume, &e.glance_image, &e.rbd]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given != 1 {
            return Err(invalid(
                "give exactly one of 'volume', 'glance_image', 'rbd' or 'server'".into(),
            ));
        }
        let src = &self.source.pools;
        let (kind, pool, name) = if let Some(id) = &e.volume {
            (
                ImageKind::Cinder,
                self.cinder_pool(),
                format!("volume-{id}"),
            )
        } else if let Some(id) = &e.glance_image {
            let pool = src.glance.clone().ok_or_else(|| {
                invalid("glance_image needs source.pools.glance in the spec".into())
            })?;
            (ImageKind::Glance, pool, id.clone())
        } else {
            let rbd = e.rbd.as_deref().unwrap_or_default();
            let (pool, name) = rbd
                .split_once('/')
                .filter(|(p, n)| !p.is_empty() && !n.is_empty() && !n.contains('/'))
                .ok_or_else(|| invalid(format!("rbd: {rbd:?} is not of the form pool/image")))?;
            let kind = if pool == src.cinder {
                ImageKind::Cinder
            } else if src.glance.as_deref() == Some(pool) {
                ImageKind::Glance
            } else {
                return Err(invalid(format!(
                    "rbd: pool {pool:?} is neither source.pools.cinder nor source.pools.glance"
                )));
            };
            (kind, pool.to_string(), name.to_string())
        };
        for (what, v) in [
            ("image name", &name),
            ("dest_name", &e.dest_name.clone().unwrap_or_default()),
        ] {
            if v.contains(['/', '@', '\0']) {
                return Err(invalid(format!(
                    "{what} {v:?} may not contain '/', '@' or NUL"
                )));
            }
        }
        let dst = &self.destination.pools;
        let (mirrored_pool, dest_pool) = match kind {
            ImageKind::Cinder => (
                dst.mirrored_cinder.clone().unwrap_or_else(|| pool.clone()),
                dst.cinder.clone(),
            ),
            ImageKind::Glance => (
                dst.mirrored_glance.clone().unwrap_or_else(|| pool.clone()),
                dst.glance.clone().ok_or_else(|| {
                    invalid("a Glance image needs destination.pools.glance in the spec".into())
                })?,
            ),
        };
        Ok(ImageRef {
            kind,
            new_name: e.name.clone(),
            dest_name: e.dest_name.clone().unwrap_or_else(|| name.clone()),
            pool,
            name,
            mirrored_pool,
            dest_pool,
        })
    }

    /// Resolves a volume entry once the source cloud has named it: `id` is
    /// the volume id, and `to_glance` sends it to the destination Glance pool
    /// as the image `image_id`.
    pub fn resolve_volume(
        &self,
        index: usize,
        id: &str,
        to_glance: Option<&str>,
    ) -> Result<ImageRef, ParseError> {
        let e = &self.images[index];
        let invalid = |message: String| ParseError::Invalid {
            field: format!("images[{index}]"),
            message,
        };
        let pool = self.cinder_pool();
        let name = format!("volume-{id}");
        let dst = &self.destination.pools;
        let mirrored_pool = dst.mirrored_cinder.clone().unwrap_or_else(|| pool.clone());
        let (dest_pool, default_name) = match to_glance {
            Some(image_id) => (
                dst.glance.clone().ok_or_else(|| {
                    invalid("a bootable volume goes to Glance: set destination.pools.glance, or options.bootable_volumes: cinder".into())
                })?,
                image_id.to_string(),
            ),
            None => (dst.cinder.clone(), name.clone()),
        };
        Ok(ImageRef {
            kind: ImageKind::Cinder,
            new_name: e.name.clone(),
            dest_name: e.dest_name.clone().unwrap_or(default_name),
            pool,
            name,
            mirrored_pool,
            dest_pool,
        })
    }

    /// The root disk of a server booted from an image (`images[index]`
    /// is its `server:` entry): `<server id>_disk` in Nova's pool, copied
    /// into the destination Cinder pool to become its boot volume.
    pub fn resolve_root_disk(&self, index: usize, server_id: &str) -> Result<ImageRef, ParseError> {
        let pool = self.source.pools.nova.clone().ok_or_else(|| ParseError::Invalid {
            field: format!("images[{index}]"),
            message: format!(
                "server {server_id} boots from an image: its root disk is in Nova's RBD pool; name it (source.pools.nova)"
            ),
        })?;
        let dst = &self.destination.pools;
        let name = format!("{server_id}_disk");
        Ok(ImageRef {
            kind: ImageKind::Cinder,
            mirrored_pool: dst.mirrored_nova.clone().unwrap_or_else(|| pool.clone()),
            dest_pool: dst.cinder.clone(),
            dest_name: name.clone(),
            new_name: None,
            pool,
            name,
        })
    }

    /// The source Cinder pool, or what stands for it without clusters.
    fn cinder_pool(&self) -> String {
        match self.source.pools.cinder.as_str() {
            "" => NO_POOL.to_string(),
            p => p.to_string(),
        }
    }

    /// Every image entry, resolved (the spec was validated when parsed).
    pub fn image_refs(&self) -> Vec<ImageRef> {
        (0..self.images.len())
            .filter_map(|i| self.resolve(i).ok())
            .collect()
    }

    /// Timeout for cluster operations.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.options.timeout_seconds)
    }

    /// The limits of a run's cluster connections: `timeout_seconds` for the
    /// monitors, `data_timeout_seconds` for the OSDs.
    pub fn run_timeouts(&self) -> crate::ceph::Timeouts {
        crate::ceph::Timeouts {
            control: self.timeout(),
            data: std::time::Duration::from_secs(self.options.data_timeout_seconds),
        }
    }

    /// How OpenStack calls are retried (`api_retry_seconds`).
    pub fn api_retry(&self) -> crate::openstack::RetryPolicy {
        crate::openstack::RetryPolicy::default().with_deadline(std::time::Duration::from_secs(
            self.options.api_retry_seconds,
        ))
    }
}

/// Why spec text was rejected (without the file name; see `SpecError`).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Malformed YAML or wrong field types; the message carries line and column.
    #[error("{0}")]
    Syntax(serde_yaml::Error),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// The 1-based line of each item of the top-level `images:` list, when it is
/// written in block style (one `- ` per item); None for any other layout.
fn entry_lines(text: &str, count: usize) -> Vec<Option<usize>> {
    let mut lines = text.lines().enumerate();
    let none = vec![None; count];
    if !lines.any(|(_, l)| l.trim_end() == "images:" || l.starts_with("images: #")) {
        return none;
    }
    let mut indent = None;
    let mut found = Vec::new();
    for (n, l) in lines {
        let body = l.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let ind = l.len() - body.len();
        let item = body == "-" || body.starts_with("- ");
        match indent {
            None if item => indent = Some(ind),
            None => return none,
            Some(i) if ind < i || (ind == i && !item) => break,
            _ => {}
        }
        if item && Some(ind) == indent {
            found.push(Some(n + 1));
        }
    }
    if found.len() == count {
        found
    } else {
        none
    }
}

/// An OS-Migrate workloads file, read.
pub fn read_workloads(path: &Path) -> anyhow::Result<crate::osm::Workloads> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    crate::osm::Workloads::parse(&text, &path.display().to_string())
}

/// Where a workloads file goes back to (`workloads.yml` →
/// `workloads.ferry.yml`, beside it).
pub fn workloads_back_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workloads".into());
    path.with_file_name(format!("{stem}.ferry.yml"))
}

fn anchor(base: &Path, p: &Path) -> PathBuf {
    if p.is_relative() && !p.as_os_str().is_empty() {
        base.join(p)
    } else {
        p.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceph::MirrorMode;

    const GOOD: &str = r#"
source:
  cluster: {conf: site-a.conf, keyring: site-a.keyring, client: ferry-source}
  pools: {cinder: volumes, glance: images}
destination:
  cluster: {conf: /etc/ceph/site-b.conf}
  pools: {cinder: cinder-volumes, glance: glance-images}
images:
  - volume: 1234
  - glance_image: abcd
  - rbd: volumes/plain
    dest_name: renamed
"#;

    fn parse(text: &str) -> Result<Spec, ParseError> {
        Spec::parse(text, Path::new("/specs"))
    }

    #[test]
    fn each_server_of_an_os_migrate_workloads_file_is_a_server_entry() {
        let dir = std::env::temp_dir().join(format!("ferry-spec-osm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("workloads.yml"),
            include_str!("../osm/workloads.yml"),
        )
        .unwrap();
        let text = GOOD
            .replace(
                "  pools: {cinder: volumes, glance: images}\n",
                "  pools: {cinder: volumes, glance: images}\n  cloud: src\n",
            )
            .replace("images:\n  - volume: 1234\n  - glance_image: abcd\n  - rbd: volumes/plain\n    dest_name: renamed\n", "servers_from: workloads.yml\n");
        let spec = Spec::parse(&text, &dir).unwrap();
        let servers: Vec<&str> = spec
            .images
            .iter()
            .filter_map(|e| e.server.as_deref())
            .collect();
        assert_eq!(servers.len(), 2, "{text}");
        assert_eq!(
            spec.servers_from.as_deref(),
            Some(dir.join("workloads.yml").as_path())
        );
        assert_eq!(
            workloads_back_path(&dir.join("workloads.yml")),
            dir.join("workloads.ferry.yml")
        );
        let bad = Spec::parse(&text.replace("workloads.yml", "missing.yml"), &dir).unwrap_err();
        assert!(bad.to_string().contains("servers_from"), "{bad}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn resolves_volumes_glance_images_and_plain_rbd_names() {
        let spec = parse(GOOD).unwrap();
        let refs = spec.image_refs();
        assert_eq!(refs[0].source_spec(), "volumes/volume-1234");
        assert_eq!(refs[0].kind, ImageKind::Cinder);
        assert_eq!(refs[0].mirrored_pool, "volumes");
        assert_eq!(refs[0].dest_pool, "cinder-volumes");
        assert_eq!(refs[0].dest_name, "volume-1234");
        assert_eq!(refs[1].source_spec(), "images/abcd");
        assert_eq!(refs[1].dest_pool, "glance-images");
        assert_eq!(refs[2].kind, ImageKind::Cinder);
        assert_eq!(refs[2].dest_name, "renamed");
    }

    #[test]
    fn relative_paths_are_anchored_at_the_spec_file_and_defaults_apply() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.source.cluster.conf, Path::new("/specs/site-a.conf"));
        assert_eq!(
            spec.source.cluster.keyring.as_deref(),
            Some(Path::new("/specs/site-a.keyring"))
        );
        assert_eq!(
            spec.destination.cluster.conf,
            Path::new("/etc/ceph/site-b.conf")
        );
        assert_eq!(spec.destination.cluster.client, "admin");
        assert_eq!(spec.options.mirror_mode, MirrorMode::Snapshot);
        assert_eq!(spec.timeout().as_secs(), 30);
        let t = spec.run_timeouts();
        assert_eq!((t.control.as_secs(), t.data.as_secs()), (30, 600));
        assert_eq!(spec.api_retry().deadline.as_secs(), 120);
    }

    #[test]
    fn data_timeout_and_api_retries_are_set_in_the_options() {
        let text = format!(
            "{GOOD}options: {{timeout_seconds: 5, data_timeout_seconds: 0, api_retry_seconds: 30}}\n"
        );
        let spec = parse(&text).unwrap();
        let t = spec.run_timeouts();
        assert_eq!((t.control.as_secs(), t.data.as_secs()), (5, 0));
        assert_eq!(spec.api_retry().deadline.as_secs(), 30);
    }

    #[test]
    fn unknown_field_is_reported_with_its_line() {
        let text = GOOD.replace(
            "  pools: {cinder: volumes, glance: images}",
            "  pool: {cinder: volumes}",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("unknown field `pool`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn entry_with_two_kinds_is_rejected_with_its_index() {
        let text = GOOD.replace("  - volume: 1234", "  - volume: 1234\n    rbd: volumes/x");
        let e = parse(&text).unwrap_err().to_string();
        assert_eq!(
            e,
            "images[0]: give exactly one of 'volume', 'glance_image', 'rbd' or 'server'"
        );
    }

    #[test]
    fn cloud_fields_need_their_clouds() {
        let with_server = GOOD.replace("  - volume: 1234", "  - server: s-1");
        let e = parse(&with_server).unwrap_err().to_string();
        assert_eq!(
            e,
            "images[0]: server: the volumes of a server are found through source.cloud"
        );
        let clouds = with_server
            .replace(
                "  pools: {cinder: volumes, glance: images}",
                "  pools: {cinder: volumes, glance: images}\n  cloud: src",
            )
            .replace(
                "  pools: {cinder: cinder-volumes, glance: glance-images}",
                "  pools: {cinder: cinder-volumes, glance: glance-images}\n  cloud: dst",
            );
        let spec = parse(&clouds).unwrap();
        assert_eq!(
            spec.image_refs().len(),
            2,
            "the server entry expands at discovery"
        );
        let e = parse(&clouds.replace("  - server: s-1", "  - server: s-1\n    name: x"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "images[0]: server: stands alone (its volumes keep their names)"
        );
        let only_dst = GOOD.replace(
            "  pools: {cinder: cinder-volumes, glance: glance-images}",
            "  pools: {cinder: cinder-volumes, glance: glance-images}\n  cloud: dst",
        );
        let e = parse(&only_dst).unwrap_err().to_string();
        assert!(e.starts_with("destination.cloud: adopting needs"), "{e}");
        let named = GOOD.replace("  - volume: 1234", "  - volume: 1234\n    name: db");
        let e = parse(&named).unwrap_err().to_string();
        assert_eq!(
            e,
            "images[0].name: names the adopted volume or image: needs destination.cloud"
        );
    }

    #[test]
    fn the_stream_path_needs_conversion_hosts_both_clouds_and_volumes() {
        let clouds = GOOD
            .replace(
                "  pools: {cinder: volumes, glance: images}",
                "  pools: {cinder: volumes, glance: images}\n  cloud: src",
            )
            .replace(
                "  pools: {cinder: cinder-volumes, glance: glance-images}",
                "  pools: {cinder: cinder-volumes, glance: glance-images}\n  cloud: dst",
            );
        let volumes_only = clouds
            .replace("  - glance_image: abcd\n", "")
            .replace("  - rbd: volumes/plain\n    dest_name: renamed\n", "");
        let hosts = "conversion_hosts:\n  source: {ssh: ops@convhost-a, ip: 10.0.0.5, nfs_mount_base: /mnt}\n  destination: {ssh: convhost-b, ip: 10.1.0.5, ferry: sudo -n ferry}\n  ssh_options: [-F, /etc/ferry/ssh_config]\n";
        let stream = "options: {transfer: stream}\n";
        let spec = parse(&format!("{volumes_only}{stream}{hosts}")).unwrap();
        let c = spec.conversion_hosts.as_ref().unwrap();
        assert_eq!(c.source.connector_name(), "convhost-a");
        assert_eq!(c.destination.ferry, "sudo -n ferry");
        assert_eq!(c.source.ferry, "ferry");
        assert_eq!(c.stall_seconds, 60);
        assert_eq!(spec.options.transfer, Transfer::Stream);

        // No cluster at all: only when every volume streams.
        let bare = "source: {cloud: src}\ndestination: {cloud: dst}\nimages:\n  - volume: 1234\n";
        let spec = parse(&format!("{bare}{stream}{hosts}")).unwrap();
        assert!(!spec.source.cluster.is_given() && !spec.destination.cluster.is_given());
        assert_eq!(spec.image_refs()[0].source_spec(), "(cinder)/volume-1234");
        let e = parse(&format!("{bare}{hosts}")).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "source.cluster.conf: must name a conf file (only a spec whose volumes all stream"
            ),
            "{e}"
        );
        let e = parse(&volumes_only.replace("  pools: {cinder: volumes, glance: images}\n", ""))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "source.pools.cinder: must name the Cinder backend's pool"
        );

        let e = parse(&format!("{volumes_only}{stream}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("options.transfer: stream goes through conversion hosts"),
            "{e}"
        );
        let e = parse(&format!("{clouds}{stream}{hosts}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("images[1]: stream moves Cinder volumes"),
            "{e}"
        );
        let e = parse(&format!("{GOOD}{stream}{hosts}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("set source.cloud and destination.cloud"), "{e}");
        let e = parse(&format!(
            "{volumes_only}{}",
            hosts.replace("ip: 10.1.0.5", "ip: ''")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("conversion_hosts.destination.ip:"), "{e}");
        let e = parse(&format!(
            "{volumes_only}{}",
            hosts.replace("ssh: convhost-b", "ssh: -oProxyCommand=x")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("conversion_hosts.destination.ssh:"), "{e}");
    }

    #[test]
    fn rbd_entry_outside_the_source_pools_is_rejected() {
        let text = GOOD.replace("rbd: volumes/plain", "rbd: other/plain");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("images[2]: rbd: pool \"other\""), "{e}");
        let text = GOOD.replace("rbd: volumes/plain", "rbd: justaname");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("not of the form pool/image"), "{e}");
    }

    #[test]
    fn client_with_prefix_is_rejected() {
        let text = GOOD.replace("client: ferry-source", "client: client.ferry-source");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("source.cluster.client:"), "{e}");
    }

    #[test]
    fn bad_mirror_mode_names_the_choices() {
        let text = format!("{GOOD}options: {{mirror_mode: both}}\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("unknown variant `both`"), "{e}");
        assert!(e.contains("journal") && e.contains("snapshot"), "{e}");
    }

    #[test]
    fn earlier_adoption_defaults_to_refuse_and_names_its_choices() {
        assert_eq!(
            parse(GOOD).unwrap().options.earlier_adoption,
            EarlierAdoption::Refuse
        );
        let text = format!("{GOOD}options: {{earlier_adoption: replace}}\n");
        assert_eq!(
            parse(&text).unwrap().options.earlier_adoption,
            EarlierAdoption::Replace
        );
        let text = format!("{GOOD}options: {{earlier_adoption: delete}}\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("refuse") && e.contains("keep") && e.contains("replace"),
            "{e}"
        );
    }

    #[test]
    fn clones_option_defaults_to_flat_and_is_validated_with_its_place() {
        assert_eq!(parse(GOOD).unwrap().options.clones, Clones::Flat);
        let text = format!("{GOOD}options: {{clones: clone-of-parent}}\n");
        assert_eq!(parse(&text).unwrap().options.clones, Clones::CloneOfParent);
        // An unknown choice names the choices and the line.
        let text = format!("{GOOD}options:\n  clones: cow\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("unknown variant `cow`"), "{e}");
        assert!(e.contains("flat") && e.contains("clone-of-parent"), "{e}");
        assert!(e.contains("line 14"), "{e}");
        // The destination Glance pool is where the parents are.
        let text = GOOD
            .replace("cinder-volumes, glance: glance-images}", "cinder-volumes}")
            .replace("  - glance_image: abcd\n", "")
            + "options: {clones: clone-of-parent}\n";
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "options.clones: clone-of-parent clones volumes from the destination copy"
            ),
            "{e}"
        );
    }

    #[test]
    fn glance_image_without_glance_pools_is_rejected() {
        let text = GOOD.replace(", glance: images}", "}");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("images[1]: glance_image needs source.pools.glance"),
            "{e}"
        );
    }

    #[test]
    fn load_errors_read_once_with_their_cause() {
        let dir = std::env::temp_dir().join(format!("ferry-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.yaml");
        let e = anyhow::Error::new(Spec::load(&missing).unwrap_err());
        let text = format!("{e:#}");
        assert!(text.starts_with("cannot read spec "), "{text}");
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
        let f = dir.join("nosource.yaml");
        std::fs::write(
            &f,
            "destination: {cluster: {conf: b.conf}, pools: {cinder: v}}\n",
        )
        .unwrap();
        let text = format!("{:#}", anyhow::Error::new(Spec::load(&f).unwrap_err()));
        assert_eq!(text.matches("missing field `source`").count(), 1, "{text}");
    }

    #[test]
    fn two_entries_with_one_destination_or_source_are_refused_with_their_lines() {
        let text = GOOD.replace(
            "    dest_name: renamed\n",
            "    dest_name: renamed\n  # a comment\n\n  - rbd: volumes/other\n    dest_name: renamed\n",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert_eq!(
            e,
            "images[3] (line 15): copies to cinder-volumes/renamed, as images[2] (line 11) does: give one of them another dest_name"
        );
        let text = GOOD.replace(
            "  - glance_image: abcd\n",
            "  - glance_image: abcd\n  - volume: 1234\n    dest_name: x\n",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert_eq!(
            e,
            "images[2] (line 11): moves volumes/volume-1234 again, as images[0] (line 9) does: list it once"
        );
        // Flow style: no lines, still refused.
        let flow = "source:\n  cluster: {conf: a.conf}\n  pools: {cinder: v}\ndestination:\n  cluster: {conf: b.conf}\n  pools: {cinder: w}\nimages: [{volume: a}, {rbd: v/volume-a}]\n";
        let e = parse(flow).unwrap_err().to_string();
        assert_eq!(
            e,
            "images[1]: moves v/volume-a again, as images[0] does: list it once"
        );
    }
}
