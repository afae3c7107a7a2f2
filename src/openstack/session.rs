//! An authenticated connection to one cloud: Keystone v3 token, the
//! service catalog, endpoint selection by region and interface, and calls
//! that renew the token when it nears expiry or is refused.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::{Auth, CloudConfig, Domain, NameOrId};

/// A failed OpenStack call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{cloud}: {method} {what}: HTTP {status}: {message}")]
    Status {
        cloud: String,
        method: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("{cloud}: {what}: {message}")]
    Transport {
        cloud: String,
        what: String,
        message: String,
    },
    #[error("{cloud}: {message}")]
    Catalog { cloud: String, message: String },
}

impl ApiError {
    /// The HTTP status, for a call the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

/// OpenStack services ferry calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Identity,
    BlockStorage,
    Image,
    Compute,
}

impl Service {
    /// Catalog types that name the service, preferred first.
    fn types(self) -> &'static [&'static str] {
        match self {
            Service::Identity => &["identity"],
            Service::BlockStorage => &["block-storage", "volumev3", "volume"],
            Service::Image => &["image"],
            Service::Compute => &["compute"],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CatalogEntry {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    pub interface: String,
    #[serde(default)]
    pub region_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub url: String,
}

/// Picks the endpoint URL for `service` from `catalog`: matching interface,
/// and region when one is set (without a region, the catalog must offer only
/// one). Pure.
pub fn pick_endpoint(
    catalog: &[CatalogEntry],
    service: Service,
    region: Option<&str>,
    interface: &str,
) -> std::result::Result<String, String> {
    let entry = service
        .types()
        .iter()
        .find_map(|t| catalog.iter().find(|e| e.kind == *t))
        .ok_or_else(|| format!("no {} service in the catalog", service.types()[0]))?;
    let candidates: Vec<&Endpoint> = entry
        .endpoints
        .iter()
        .filter(|e| e.interface == interface)
        .collect();
    let in_region = |e: &&Endpoint| {
        region.is_none_or(|r| e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r))
    };
    let found: Vec<&Endpoint> = candidates.iter().copied().filter(in_region).collect();
    let regions = || {
        candidates
            .iter()
            .filter_map(|e| e.region_id.clone().or_else(|| e.region.clone()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match found.as_slice() {
        [one] => Ok(one.url.trim_end_matches('/').to_string()),
        [] => Err(format!(
            "no {interface} {} endpoint{} (regions offering one: {})",
            entry.kind,
            region
                .map(|r| format!(" in region {r}"))
                .unwrap_or_default(),
            regions()
        )),
        _ => Err(format!(
            "several {interface} {} endpoints (regions {}): set region_name",
            entry.kind,
            regions()
        )),
    }
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    /// Unix time.
    expires_at: i64,
    project_id: String,
    user_id: String,
    roles: Vec<String>,
    catalog: Vec<CatalogEntry>,
}

/// Renew this long before the token expires.
const RENEW_BEFORE: i64 = 300;

/// A connection to one cloud.
pub struct Cloud {
    cfg: CloudConfig,
    http: Client,
    token: Mutex<Option<Token>>,
    /// How many tokens were issued to this connection.
    authentications: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("name", &self.cfg.name)
            .finish()
    }
}

fn domain_json(d: &Domain) -> Value {
    match d {
        Domain::Id(id) => json!({ "id": id }),
        Domain::Name(n) => json!({ "name": n }),
    }
}

fn named_json(n: &NameOrId) -> Value {
    match n {
        NameOrId::Id(id) => json!({ "id": id }),
        NameOrId::Name { name, domain } => json!({ "name": name, "domain": domain_json(domain) }),
    }
}

/// The body of a Keystone v3 token request. Pure.
pub fn auth_body(auth: &Auth) -> Value {
    match auth {
        Auth::Password {
            user,
            password,
            project,
        } => {
            let mut u = named_json(user);
            u["password"] = json!(password);
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": u}},
                "scope": {"project": named_json(project)}
            }})
        }
        Auth::ApplicationCredential {
            credential,
            user,
            secret,
        } => {
            let mut c = match credential {
                NameOrId::Id(id) => json!({ "id": id }),
                NameOrId::Name { name, .. } => json!({ "name": name }),
            };
            if let Some(u) = user {
                c["user"] = named_json(u);
            }
            c["secret"] = json!(secret);
            json!({"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": c
            }}})
        }
    }
}

/// Seconds since the epoch of an ISO 8601 UTC time such as
/// `2026-11-22T23:01:33.000000Z`. Pure.
pub fn parse_utc(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let time = time.split(['+']).next()?;
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    // A time read from a service: out of range is not a time (and would
    // overflow the arithmetic below).
    let ok = (0..=9999).contains(&y)
        && (1..=12).contains(&m)
        && (1..=31).contains(&day)
        && (0..=23).contains(&hh)
        && (0..=59).contains(&mm)
        && (0..=60).contains(&ss);
    if !ok {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The message a service put in its error body (Keystone, Cinder, Glance
/// shapes), or the body's start.
pub fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(m) = v.pointer("/error/message").and_then(Value::as_str) {
            return m.to_string();
        }
        if let Some(obj) = v.as_object() {
            for inner in obj.values() {
                if let Some(m) = inner.get("message").and_then(Value::as_str) {
                    return m.to_string();
                }
            }
        }
    }
    // Glance answers some errors in HTML: keep the text, drop the tags.
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text.chars().take(300).collect()
}

impl Cloud {
    /// Connects and authenticates.
    pub fn connect(cfg: CloudConfig) -> anyhow::Result<Cloud> {
        let mut b = Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.cacert {
            let pem = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("reading cacert {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("cacert {}: {e}", ca.display()))?;
            b = b.tls_certs_merge(certs);
        }
        if !cfg.verify {
            tracing::warn!(cloud = %cfg.name, "TLS certificate verification is off for this cloud");
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let http = b.build()?;
        let cloud = Cloud {
            cfg,
            http,
            token: Mutex::new(None),
            authentications: Default::default(),
        };
        cloud.token()?;
        Ok(cloud)
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn config(&self) -> &CloudConfig {
        &self.cfg
    }

    fn transport(&self, what: &str, e: impl std::fmt::Display) -> ApiError {
        ApiError::Transport {
            cloud: self.cfg.name.clone(),
            what: what.into(),
            message: e.to_string(),
        }
    }

    fn authenticate(&self) -> Result<Token> {
        let url = format!("{}/auth/tokens", self.cfg.auth_url);
        let resp = self
            .http
            .post(&url)
            .json(&auth_body(&self.cfg.auth))
            .send()
            .map_err(|e| self.transport(&format!("authenticating at {url}"), e))?;
        let status = resp.status();
        let value = resp
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().unwrap_or_default();
        if !status.is_success() {
            return Err(ApiError::Status {
                cloud: self.cfg.name.clone(),
                method: "POST".into(),
                what: url,
                status: status.as_u16(),
                message: match status.as_u16() {
                    401 => {
                        "authentication failed: check the user, password or application credential"
                            .into()
                    }
                    _ => error_message(&body),
                },
            });
        }
        #[derive(Deserialize)]
        struct Reply {
            token: Body,
        }
        #[derive(Deserialize)]
        struct Body {
            expires_at: String,
            #[serde(default)]
            project: Option<Idd>,
            user: Idd,
            #[serde(default)]
            roles: Vec<Named>,
            #[serde(default)]
            catalog: Vec<CatalogEntry>,
        }
        #[derive(Deserialize)]
        struct Idd {
            id: String,
        }
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        let r: Reply =
            serde_json::from_str(&body).map_err(|e| self.transport("reading the token", e))?;
        Ok(Token {
            value: value.ok_or_else(|| self.transport("authenticating", "no X-Subject-Token"))?,
            expires_at: parse_utc(&r.token.expires_at).unwrap_or_else(|| now() + 600),
            project_id: r.token.project.map(|p| p.id).ok_or_else(|| {
                self.transport("authenticating", "the token is not scoped to a project")
            })?,
            user_id: r.token.user.id,
            roles: r.token.roles.into_iter().map(|r| r.name).collect(),
            catalog: r.token.catalog,
        })
    }

    /// The current token, renewed when it expires within five minutes.
    fn token(&self) -> Result<Token> {
        let mut t = self.token.lock().unwrap();
        match &*t {
            Some(tok) if tok.expires_at - now() > RENEW_BEFORE => Ok(tok.clone()),
            _ => {
                let tok = self.authenticate()?;
                self.authentications
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                *t = Some(tok.clone());
                Ok(tok)
            }
        }
    }

    /// How many tokens this connection has obtained (renewals included).
    pub fn authentications(&self) -> usize {
        self.authentications
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Revokes the current token at Keystone (logs out). The next call finds
    /// it refused and authenticates again.
    pub fn revoke_token(&self) -> Result<()> {
        let tok = self.token()?;
        let url = format!("{}/auth/tokens", self.cfg.auth_url);
        let resp = self
            .http
            .delete(&url)
            .header("X-Auth-Token", &tok.value)
            .header("X-Subject-Token", &tok.value)
            .send()
            .map_err(|e| self.transport("revoking the token", e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(ApiError::Status {
                cloud: self.cfg.name.clone(),
                method: "DELETE".into(),
                what: url,
                status: resp.status().as_u16(),
                message: error_message(&resp.text().unwrap_or_default()),
            })
        }
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap() = None;
    }

    /// The project the credentials are scoped to.
    pub fn project_id(&self) -> Result<String> {
        Ok(self.token()?.project_id)
    }

    pub fn user_id(&self) -> Result<String> {
        Ok(self.token()?.user_id)
    }

    /// Role names the token carries.
    pub fn roles(&self) -> Result<Vec<String>> {
        Ok(self.token()?.roles)
    }

    /// The endpoint URL of `service` for this cloud's region and interface.
    pub fn endpoint(&self, service: Service) -> Result<String> {
        let tok = self.token()?;
        pick_endpoint(
            &tok.catalog,
            service,
            self.cfg.region.as_deref(),
            &self.cfg.interface,
        )
        .map_err(|message| ApiError::Catalog {
            cloud: self.cfg.name.clone(),
            message,
        })
    }

    /// Calls `service`: `path` is appended to its endpoint. Extra headers
    /// (e.g. a microversion) may be given. A refused token is renewed and
    /// the call made once more. Non-2xx answers become [`ApiError::Status`].
    pub fn call(
        &self,
        service: Service,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Body<'_>>,
    ) -> Result<Response> {
        let base = self.endpoint(service)?;
        let url = format!("{base}{path}");
        for attempt in 0..2 {
            let tok = self.token()?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("X-Auth-Token", &tok.value)
                .header("Accept", "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req = match &body {
                Some(Body::Json(v)) => req.json(v),
                Some(Body::Raw(b)) => req.body(b.to_vec()),
                Some(Body::Patch(v)) => req
                    .header(
                        "Content-Type",
                        "application/openstack-images-v2.1-json-patch",
                    )
                    .body(v.to_string()),
                None => req,
            };
            let resp = req
                .send()
                .map_err(|e| self.transport(&format!("{method} {path}"), e))?;
            let status = resp.status();
            if status.as_u16() == 401 && attempt == 0 {
                self.forget_token();
                continue;
            }
            if status.is_success() {
                return Ok(resp);
            }
            let text = resp.text().unwrap_or_default();
            return Err(ApiError::Status {
                cloud: self.cfg.name.clone(),
                method: method.to_string(),
                what: path.into(),
                status: status.as_u16(),
                message: error_message(&text),
            });
        }
        unreachable!("the loop returns on its second pass")
    }

    /// A call whose JSON answer is read into `T`.
    pub fn call_json<T: DeserializeOwned>(
        &self,
        service: Service,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Body<'_>>,
    ) -> Result<T> {
        let resp = self.call(service, method.clone(), path, headers, body)?;
        let text = resp
            .text()
            .map_err(|e| self.transport(&format!("{method} {path}"), e))?;
        serde_json::from_str(&text)
            .map_err(|e| self.transport(&format!("reading {method} {path}"), e))
    }
}

/// A request body.
pub enum Body<'a> {
    Json(&'a Value),
    /// A Glance JSON patch.
    Patch(&'a Value),
    /// Bytes, sent as they are (set Content-Type in the headers).
    Raw(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Vec<CatalogEntry> {
        serde_json::from_value(json!([
            {"type": "volumev3", "endpoints": [
                {"interface": "public", "region_id": "site-a", "url": "http://a:8776/v3/p/"},
                {"interface": "internal", "region_id": "site-a", "url": "http://a-int:8776/v3/p"},
                {"interface": "public", "region_id": "site-b", "url": "http://b:8776/v3/p"}
            ]},
            {"type": "image", "endpoints": [
                {"interface": "public", "region": "site-a", "url": "http://a:9292"}
            ]}
        ]))
        .unwrap()
    }

    #[test]
    fn endpoints_are_picked_by_region_and_interface() {
        let c = catalog();
        let pick = |s, r, i| pick_endpoint(&c, s, r, i);
        assert_eq!(
            pick(Service::BlockStorage, Some("site-b"), "public").unwrap(),
            "http://b:8776/v3/p"
        );
        assert_eq!(
            pick(Service::BlockStorage, Some("site-a"), "internal").unwrap(),
            "http://a-int:8776/v3/p"
        );
        assert_eq!(
            pick(Service::Image, None, "public").unwrap(),
            "http://a:9292"
        );
        assert_eq!(
            pick(Service::BlockStorage, None, "public").unwrap_err(),
            "several public volumev3 endpoints (regions site-a, site-b): set region_name"
        );
        assert_eq!(
            pick(Service::Image, Some("site-c"), "public").unwrap_err(),
            "no public image endpoint in region site-c (regions offering one: site-a)"
        );
        assert_eq!(
            pick(Service::Identity, None, "public").unwrap_err(),
            "no identity service in the catalog"
        );
    }

    #[test]
    fn auth_bodies_follow_keystone_v3() {
        let b = auth_body(&Auth::Password {
            user: NameOrId::Name {
                name: "u".into(),
                domain: Domain::Name("Default".into()),
            },
            password: "p".into(),
            project: NameOrId::Id("pid".into()),
        });
        assert_eq!(
            b,
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
                {"name": "u", "domain": {"name": "Default"}, "password": "p"}}},
                "scope": {"project": {"id": "pid"}}}})
        );
        let b = auth_body(&Auth::ApplicationCredential {
            credential: NameOrId::Id("ac".into()),
            user: None,
            secret: "s".into(),
        });
        assert_eq!(
            b,
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "ac", "secret": "s"}}}})
        );
    }

    #[test]
    fn token_expiry_times_parse() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_utc("2026-11-22T23:01:33.000000Z"),
            Some(1_795_388_493)
        );
        assert_eq!(parse_utc("2000-02-29T12:00:00+00:00"), Some(951_825_600));
        assert_eq!(parse_utc("yesterday"), None);
    }

    #[test]
    fn error_messages_are_found_in_each_services_shape() {
        assert_eq!(
            error_message(
                r#"{"error": {"message": "The request you have made requires authentication.", "code": 401}}"#
            ),
            "The request you have made requires authentication."
        );
        assert_eq!(
            error_message(
                r#"{"itemNotFound": {"message": "Volume x could not be found.", "code": 404}}"#
            ),
            "Volume x could not be found."
        );
        assert_eq!(
            error_message(
                "<html><body><h1>404 Not Found</h1>No image found with ID x</body></html>"
            ),
            "404 Not Found No image found with ID x"
        );
    }
}
