//! Where a cloud's credentials come from, as the OpenStack client finds them:
//! a named entry of clouds.yaml (merged with secure.yaml), or the `OS_*`
//! environment variables. Secrets never appear in Debug output or errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

/// How to authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Password auth, scoped to a project.
    Password {
        user: NameOrId,
        password: String,
        project: NameOrId,
    },
    /// An application credential (already scoped to its project).
    ApplicationCredential {
        /// By id, or by name with its user.
        credential: NameOrId,
        user: Option<NameOrId>,
        secret: String,
    },
}

/// An identity named by id, or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOrId {
    Id(String),
    Name { name: String, domain: Domain },
}

/// A Keystone domain, by id or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    Id(String),
    Name(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Password { user, project, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .field("project", project)
                .field("password", &"<redacted>")
                .finish(),
            Auth::ApplicationCredential {
                credential, user, ..
            } => f
                .debug_struct("ApplicationCredential")
                .field("credential", credential)
                .field("user", user)
                .field("secret", &"<redacted>")
                .finish(),
        }
    }
}

/// Everything needed to talk to one cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// The cloud's name in clouds.yaml, or `env`.
    pub name: String,
    /// Keystone v3 URL, ending in `/v3`.
    pub auth_url: String,
    pub auth: Auth,
    /// Region to pick endpoints from (None: the catalog must have only one).
    pub region: Option<String>,
    /// Endpoint interface: public, internal or admin.
    pub interface: String,
    /// Verify TLS certificates (on unless turned off explicitly).
    pub verify: bool,
    /// Extra CA bundle (PEM) to trust.
    pub cacert: Option<PathBuf>,
}

/// Why a cloud's configuration could not be formed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cloud {cloud:?} is not in {}", files_list(.searched))]
    NotFound {
        cloud: String,
        searched: Vec<PathBuf>,
    },
    #[error("no clouds.yaml found (looked at {})", files_list(.searched))]
    NoFile { searched: Vec<PathBuf> },
    #[error("reading {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cloud {cloud:?}: {message}")]
    Invalid { cloud: String, message: String },
}

fn files_list(p: &[PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The clouds.yaml (or secure.yaml) locations the OpenStack client searches,
/// in order: `$OS_CLIENT_CONFIG_FILE` (or `$OS_CLIENT_SECURE_FILE`), the
/// current directory, `~/.config/openstack`, `/etc/openstack`.
pub fn search_path(
    file: &str,
    env_var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(f) = env(env_var) {
        v.push(PathBuf::from(f));
    }
    v.push(PathBuf::from(file));
    if let Some(home) = env("HOME") {
        v.push(Path::new(&home).join(".config/openstack").join(file));
    }
    v.push(Path::new("/etc/openstack").join(file));
    v
}

#[derive(Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: BTreeMap<String, Value>,
}

fn read_clouds(path: &Path) -> Result<Option<BTreeMap<String, Value>>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError::Read {
                path: path.into(),
                message: e.to_string(),
            })
        }
    };
    let f: CloudsFile = serde_yaml::from_str(&text).map_err(|e| ConfigError::Read {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(Some(f.clouds))
}

/// Deep-merges `over` into `base` (secure.yaml over clouds.yaml).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Loads the cloud `name` from the first clouds.yaml found, merged with the
/// first secure.yaml found.
pub fn load(name: &str) -> Result<CloudConfig, ConfigError> {
    load_with(name, &|k| std::env::var(k).ok())
}

/// [`load`] with an injectable environment (for tests).
pub fn load_with(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CloudConfig, ConfigError> {
    let searched = search_path("clouds.yaml", "OS_CLIENT_CONFIG_FILE", env);
    let mut clouds = None;
    for p in &searched {
        if let Some(c) = read_clouds(p)? {
            clouds = Some(c);
            break;
        }
    }
    let Some(mut clouds) = clouds else {
        return Err(ConfigError::NoFile { searched });
    };
    for p in search_path("secure.yaml", "OS_CLIENT_SECURE_FILE", env) {
        if let Some(secure) = read_clouds(&p)? {
            for (k, v) in secure {
                match clouds.get_mut(&k) {
                    Some(base) => merge(base, v),
                    None => {
                        clouds.insert(k, v);
                    }
                }
            }
            break;
        }
    }
    let entry = clouds.remove(name).ok_or_else(|| ConfigError::NotFound {
        cloud: name.into(),
        searched: searched.clone(),
    })?;
    from_entry(name, &entry)
}

fn s(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn b(v: &Value, key: &str) -> Option<bool> {
    match v.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "yes" | "1"
        )),
        _ => None,
    }
}

/// Forms a config from one clouds.yaml entry.
pub fn from_entry(name: &str, entry: &Value) -> Result<CloudConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        cloud: name.into(),
        message,
    };
    let empty = Value::Mapping(Default::default());
    let auth = entry.get("auth").unwrap_or(&empty);
    let get = |k: &str| s(auth, k);
    let auth_type = s(entry, "auth_type").unwrap_or_else(|| "password".into());
    let auth_url = get("auth_url").ok_or_else(|| invalid("no auth.auth_url".into()))?;
    let domain = |id_key: &str, name_key: &str| {
        get(id_key)
            .map(Domain::Id)
            .or_else(|| get(name_key).map(Domain::Name))
            .or_else(|| get("domain_id").map(Domain::Id))
            .or_else(|| get("domain_name").map(Domain::Name))
            .unwrap_or_else(|| Domain::Id("default".into()))
    };
    let user = || {
        get("user_id").map(NameOrId::Id).or_else(|| {
            get("username").map(|n| NameOrId::Name {
                name: n,
                domain: domain("user_domain_id", "user_domain_name"),
            })
        })
    };
    let auth = match auth_type.as_str() {
        "password" | "v3password" => Auth::Password {
            user: user().ok_or_else(|| invalid("no auth.username or auth.user_id".into()))?,
            password: get("password").ok_or_else(|| invalid("no auth.password".into()))?,
            project: get("project_id")
                .or_else(|| get("tenant_id"))
                .map(NameOrId::Id)
                .or_else(|| {
                    get("project_name")
                        .or_else(|| get("tenant_name"))
                        .map(|n| NameOrId::Name {
                            name: n,
                            domain: domain("project_domain_id", "project_domain_name"),
                        })
                })
                .ok_or_else(|| invalid("no auth.project_name or auth.project_id".into()))?,
        },
        "v3applicationcredential" | "applicationcredential" => {
            let secret = get("application_credential_secret")
                .ok_or_else(|| invalid("no auth.application_credential_secret".into()))?;
            match get("application_credential_id") {
                Some(id) => Auth::ApplicationCredential {
                    credential: NameOrId::Id(id),
                    user: None,
                    secret,
                },
                None => Auth::ApplicationCredential {
                    credential: NameOrId::Name {
                        name: get("application_credential_name").ok_or_else(|| {
                            invalid("no auth.application_credential_id or _name".into())
                        })?,
                        domain: Domain::Id("default".into()),
                    },
                    user: Some(user().ok_or_else(|| {
                        invalid("an application credential by name needs its user".into())
                    })?),
                    secret,
                },
            }
        }
        other => {
            return Err(invalid(format!(
                "auth_type {other:?} is not supported (password, v3applicationcredential)"
            )))
        }
    };
    let verify = match (b(entry, "verify"), b(entry, "insecure")) {
        (Some(v), _) => v,
        (None, Some(insecure)) => !insecure,
        (None, None) => true,
    };
    Ok(CloudConfig {
        name: name.into(),
        auth_url: v3_url(&auth_url),
        auth,
        region: s(entry, "region_name"),
        interface: s(entry, "interface")
            .or_else(|| s(entry, "endpoint_type"))
            .map(|i| i.trim_end_matches("URL").to_string())
            .unwrap_or_else(|| "public".into()),
        verify,
        cacert: s(entry, "cacert").map(PathBuf::from),
    })
}

/// A cloud from the `OS_*` variables, as the OpenStack client reads them
/// when no cloud is named: `OS_CLOUD` names a clouds.yaml entry; otherwise
/// `OS_AUTH_URL`, `OS_USERNAME`/`OS_PASSWORD`/`OS_PROJECT_NAME` (or the
/// `OS_APPLICATION_CREDENTIAL_*` pair), `OS_REGION_NAME`, `OS_INTERFACE`,
/// `OS_CACERT`, `OS_INSECURE`.
pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<CloudConfig, ConfigError> {
    if let Some(cloud) = env("OS_CLOUD").filter(|c| !c.is_empty()) {
        return load_with(&cloud, env);
    }
    let mut auth = serde_yaml::Mapping::new();
    let mut entry = serde_yaml::Mapping::new();
    for (var, key) in [
        ("OS_AUTH_URL", "auth_url"),
        ("OS_USERNAME", "username"),
        ("OS_USER_ID", "user_id"),
        ("OS_PASSWORD", "password"),
        ("OS_PROJECT_NAME", "project_name"),
        ("OS_TENANT_NAME", "project_name"),
        ("OS_PROJECT_ID", "project_id"),
        ("OS_USER_DOMAIN_NAME", "user_domain_name"),
        ("OS_USER_DOMAIN_ID", "user_domain_id"),
        ("OS_PROJECT_DOMAIN_NAME", "project_domain_name"),
        ("OS_PROJECT_DOMAIN_ID", "project_domain_id"),
        ("OS_APPLICATION_CREDENTIAL_ID", "application_credential_id"),
        (
            "OS_APPLICATION_CREDENTIAL_NAME",
            "application_credential_name",
        ),
        (
            "OS_APPLICATION_CREDENTIAL_SECRET",
            "application_credential_secret",
        ),
    ] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            auth.insert(key.into(), v.into());
        }
    }
    for (var, key) in [
        ("OS_AUTH_TYPE", "auth_type"),
        ("OS_REGION_NAME", "region_name"),
        ("OS_INTERFACE", "interface"),
        ("OS_CACERT", "cacert"),
        ("OS_INSECURE", "insecure"),
    ] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            entry.insert(key.into(), v.into());
        }
    }
    if !auth.contains_key("auth_url") {
        return Err(ConfigError::Invalid {
            cloud: "env".into(),
            message: "neither OS_CLOUD nor OS_AUTH_URL is set".into(),
        });
    }
    if auth.contains_key("application_credential_secret") && !entry.contains_key("auth_type") {
        entry.insert("auth_type".into(), "v3applicationcredential".into());
    }
    entry.insert("auth".into(), Value::Mapping(auth));
    from_entry("env", &Value::Mapping(entry))
}

/// `https://k:5000` → `https://k:5000/v3`; a URL already ending in `/v3` stays.
fn v3_url(url: &str) -> String {
    let u = url.trim_end_matches('/');
    if u.ends_with("/v3") {
        u.to_string()
    } else {
        format!("{u}/v3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn password_entry_with_domains_and_region() {
        let c = from_entry(
            "src",
            &entry(
                "{auth: {auth_url: 'https://keystone:5000/', username: u, password: p, \
                 project_name: proj, user_domain_name: Users, project_domain_id: abc}, \
                 region_name: R1, interface: internal}",
            ),
        )
        .unwrap();
        assert_eq!(c.auth_url, "https://keystone:5000/v3");
        assert_eq!(c.region.as_deref(), Some("R1"));
        assert_eq!(c.interface, "internal");
        assert!(c.verify);
        assert_eq!(
            c.auth,
            Auth::Password {
                user: NameOrId::Name {
                    name: "u".into(),
                    domain: Domain::Name("Users".into())
                },
                password: "p".into(),
                project: NameOrId::Name {
                    name: "proj".into(),
                    domain: Domain::Id("abc".into())
                },
            }
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = from_entry(
            "src",
            &entry(
                "auth: {auth_url: 'http://k/v3', username: u, password: hunter2, project_id: p}",
            ),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn application_credential_and_tls_options() {
        let c = from_entry(
            "x",
            &entry(
                "{auth_type: v3applicationcredential, auth: {auth_url: 'https://k/v3', \
                 application_credential_id: ac, application_credential_secret: s}, \
                 verify: false, cacert: /etc/ssl/ca.pem}",
            ),
        )
        .unwrap();
        assert!(
            matches!(c.auth, Auth::ApplicationCredential { credential: NameOrId::Id(ref i), .. } if i == "ac")
        );
        assert!(!c.verify);
        assert_eq!(c.cacert, Some(PathBuf::from("/etc/ssl/ca.pem")));
    }

    #[test]
    fn missing_pieces_are_named() {
        let e = from_entry(
            "x",
            &entry("auth: {auth_url: 'http://k', username: u, project_id: p}"),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "cloud \"x\": no auth.password");
        let e = from_entry(
            "x",
            &entry("auth_type: token\nauth: {auth_url: 'http://k'}"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }

    #[test]
    fn clouds_yaml_is_merged_with_secure_yaml_and_found_by_env() {
        let dir = std::env::temp_dir().join(format!("ferry-clouds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let clouds = dir.join("clouds.yaml");
        let secure = dir.join("secure.yaml");
        std::fs::write(
            &clouds,
            "clouds:\n  a:\n    auth: {auth_url: 'http://k', username: u, project_name: p}\n    region_name: R\n",
        )
        .unwrap();
        std::fs::write(&secure, "clouds:\n  a:\n    auth: {password: s3cret}\n").unwrap();
        let (c, s) = (clouds.display().to_string(), secure.display().to_string());
        let env = move |k: &str| match k {
            "OS_CLIENT_CONFIG_FILE" => Some(c.clone()),
            "OS_CLIENT_SECURE_FILE" => Some(s.clone()),
            _ => None,
        };
        let cfg = load_with("a", &env).unwrap();
        assert!(matches!(cfg.auth, Auth::Password { ref password, .. } if password == "s3cret"));
        let e = load_with("b", &env).unwrap_err();
        assert!(e.to_string().starts_with("cloud \"b\" is not in "), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn os_variables_form_a_cloud() {
        let vars: BTreeMap<&str, &str> = [
            ("OS_AUTH_URL", "http://k:5000"),
            ("OS_APPLICATION_CREDENTIAL_ID", "id1"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "sec"),
            ("OS_REGION_NAME", "R2"),
            ("OS_INSECURE", "true"),
        ]
        .into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let c = from_env(&env).unwrap();
        assert_eq!(c.name, "env");
        assert_eq!(c.region.as_deref(), Some("R2"));
        assert!(!c.verify);
        assert!(matches!(c.auth, Auth::ApplicationCredential { .. }));
        let none = |_: &str| None;
        assert!(from_env(&none)
            .unwrap_err()
            .to_string()
            .contains("OS_AUTH_URL"));
    }
}
