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
use super::request::{self, Request};
use super::retry::{self, Failure, Repeat, RetryPolicy};

pub use super::error::*;
use super::error::{retry_after, REQUESTS};

/// OpenStack services ferry calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Identity,
    BlockStorage,
    Image,
    Compute,
    Network,
}

impl Service {
    /// Catalog types that name the service, preferred first.
    fn types(self) -> &'static [&'static str] {
        match self {
            Service::Identity => &["identity"],
            Service::BlockStorage => &["block-storage", "volumev3", "volume"],
            Service::Image => &["image"],
            Service::Compute => &["compute"],
            Service::Network => &["network"],
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

/// The longest a first authentication is retried ([`Cloud::connect_with`]).
pub const START_DEADLINE: Duration = Duration::from_secs(10);

/// Renew this long before the token expires.
const RENEW_BEFORE: i64 = 300;

/// A connection to one cloud.
pub struct Cloud {
    cfg: CloudConfig,
    http: Client,
    token: Mutex<Option<Token>>,
    /// How many tokens were issued to this connection.
    authentications: std::sync::atomic::AtomicUsize,
    retry: RetryPolicy,
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

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Cloud {
    /// Connects and authenticates, with the default retries.
    pub fn connect(cfg: CloudConfig) -> anyhow::Result<Cloud> {
        Cloud::connect_with(cfg, RetryPolicy::default())
    }

    /// Connects and authenticates; later calls are retried under `retry`.
    /// The first authentication is retried for [`START_DEADLINE`] at most:
    /// a cloud that does not answer before anything began is more likely
    /// misnamed than restarting, and is reported without a long wait.
    pub fn connect_with(cfg: CloudConfig, retry: RetryPolicy) -> anyhow::Result<Cloud> {
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
            retry,
        };
        cloud.token_within(&retry.with_deadline(retry.deadline.min(START_DEADLINE)))?;
        Ok(cloud)
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn config(&self) -> &CloudConfig {
        &self.cfg
    }

    /// How long a failing call is retried from now on (connection errors,
    /// 5xx and 429; see [`retry`]).
    pub fn set_retry_deadline(&mut self, deadline: Duration) {
        self.retry = self.retry.with_deadline(deadline);
    }

    /// One attempt's failure to get an answer.
    fn transport_failure(&self, what: &str, source: reqwest::Error) -> Failure {
        Failure {
            retry: retry::transport_retry(&source),
            error: self.transport(what, source),
            retry_after: None,
        }
    }

    /// `what` names the URL: reqwest's own copy of it is dropped, so the
    /// message says it once.
    fn transport(&self, what: &str, source: reqwest::Error) -> ApiError {
        ApiErrorKind::Transport {
            cloud: self.cfg.name.clone(),
            what: what.into(),
            tries: Tries::default(),
            source: source.without_url(),
        }
        .into()
    }

    fn token_error(&self, url: &str, message: &str) -> ApiError {
        ApiErrorKind::Token {
            cloud: self.cfg.name.clone(),
            url: url.into(),
            message: message.into(),
        }
        .into()
    }

    fn authenticate(&self, policy: &RetryPolicy) -> Result<Token> {
        let url = format!("{}/auth/tokens", self.cfg.auth_url);
        // Asking for a token twice only issues two: safe to repeat, so a
        // Keystone restarting behind its load balancer is waited for.
        let (value, request_id, body) = retry::retrying(
            policy,
            true,
            &mut retry::WallClock::start(),
            |_| {
                let resp = self
                    .http
                    .post(&url)
                    .json(&auth_body(&self.cfg.auth))
                    .send()
                    .map_err(|e| self.transport_failure(&format!("authenticating at {url}"), e))?;
                let status = resp.status();
                let value = resp
                    .headers()
                    .get("X-Subject-Token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let request_id = request_id(resp.headers());
                let retry_after = retry_after(resp.headers());
                let body = resp.text().map_err(|e| {
                    self.transport_failure(&format!("reading the answer of {url}"), e)
                })?;
                if !status.is_success() {
                    return Err(Failure {
                        retry: retry::status_retry(status.as_u16()),
                        retry_after,
                        error: ApiErrorKind::Status {
                            cloud: self.cfg.name.clone(),
                            method: "POST".into(),
                            what: url.clone(),
                            status: status.as_u16(),
                            message: match status.as_u16() {
                                401 => "authentication failed: check the user, password or application credential"
                                    .into(),
                                _ => error_message(&body),
                            },
                            request_id,
                            tries: Tries::default(),
                        }
                        .into(),
                    });
                }
                Ok((value, request_id, body))
            },
        )?;
        let answer = Answer {
            cloud: self.cfg.name.clone(),
            what: format!("POST {url}"),
            request_id,
            body,
        };
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
        let r: Reply = answer.json("a Keystone token")?;
        Ok(Token {
            value: value.ok_or_else(|| {
                self.token_error(&url, "the answer has no X-Subject-Token header")
            })?,
            expires_at: parse_utc(&r.token.expires_at).unwrap_or_else(|| now() + 600),
            project_id: r.token.project.map(|p| p.id).ok_or_else(|| {
                self.token_error(
                    &url,
                    "the token is not scoped to a project: give project_name or project_id",
                )
            })?,
            user_id: r.token.user.id,
            roles: r.token.roles.into_iter().map(|r| r.name).collect(),
            catalog: r.token.catalog,
        })
    }

    /// The current token, renewed when it expires within five minutes.
    fn token(&self) -> Result<Token> {
        self.token_within(&self.retry)
    }

    /// [`Cloud::token`], a new one asked for under `policy`.
    fn token_within(&self, policy: &RetryPolicy) -> Result<Token> {
        // A panic while it was held left the token as it was, or none.
        let mut t = self.token.lock().unwrap_or_else(|p| p.into_inner());
        match &*t {
            Some(tok) if tok.expires_at - now() > RENEW_BEFORE => Ok(tok.clone()),
            _ => {
                let tok = self.authenticate(policy)?;
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
            Err(ApiErrorKind::Status {
                cloud: self.cfg.name.clone(),
                method: "DELETE".into(),
                what: url,
                status: resp.status().as_u16(),
                request_id: request_id(resp.headers()),
                message: error_message(&resp.text().unwrap_or_default()),
                tries: Tries::default(),
            }
            .into())
        }
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
        .map_err(|message| {
            ApiErrorKind::Catalog {
                cloud: self.cfg.name.clone(),
                message,
            }
            .into()
        })
    }

    /// Calls `service`: `path` is appended to its endpoint. Extra headers
    /// (e.g. a microversion) may be given. A refused token is renewed and
    /// the call made once more; a failure that may pass (no connection, a
    /// timeout, 5xx, 429) is retried with backoff when the method may be
    /// repeated (see [`retry`]). Non-2xx answers become
    /// [`ApiErrorKind::Status`]. The answer's body is left to the caller:
    /// a body that breaks off while read is not retried here.
    pub fn call(
        &self,
        service: Service,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Body<'_>>,
    ) -> Result<Response> {
        self.send(Repeat::ByMethod, service, method, path, headers, body, Ok)
    }

    /// One call, retried as [`Cloud::call`] says and as `repeat` allows;
    /// `read` takes the successful answer within the attempt, so that an
    /// answer whose body breaks off is retried too.
    #[allow(clippy::too_many_arguments)]
    fn send<T>(
        &self,
        repeat: Repeat,
        service: Service,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Body<'_>>,
        read: impl Fn(Response) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let base = self.endpoint(service)?;
        let url = format!("{base}{path}");
        let repeatable = repeat.allows(&method);
        retry::retrying(
            &self.retry,
            repeatable,
            &mut retry::WallClock::start(),
            |_| {
                let resp = self.attempt(&method, &url, path, headers, &body)?;
                read(resp)
            },
        )
    }

    /// One attempt of a call: sent, and sent once more with a new token
    /// when the service refuses the token.
    fn attempt(
        &self,
        method: &Method,
        url: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Option<Body<'_>>,
    ) -> std::result::Result<Response, Failure> {
        REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for renewed in [false, true] {
            // Authentication retries on its own: its failure is final here.
            let tok = self.token().map_err(Failure::fatal)?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .header("X-Auth-Token", &tok.value)
                .header("Accept", "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req = match body {
                Some(Body::Json(v)) => req.json(v),
                Some(Body::Raw(b)) => req.body(b.to_vec()),
                Some(Body::Patch(v)) => req
                    .header("Content-Type", request::GLANCE_PATCH)
                    .body(v.to_string()),
                None => req,
            };
            let resp = req
                .send()
                .map_err(|e| self.transport_failure(&format!("{method} {url}"), e))?;
            let status = resp.status();
            if status.as_u16() == 401 && !renewed {
                self.forget_token();
                continue;
            }
            if status.is_success() {
                return Ok(resp);
            }
            let request_id = request_id(resp.headers());
            let retry_after = retry_after(resp.headers());
            let text = resp.text().unwrap_or_default();
            return Err(Failure {
                retry: retry::status_retry(status.as_u16()),
                retry_after,
                error: ApiErrorKind::Status {
                    cloud: self.cfg.name.clone(),
                    method: method.to_string(),
                    what: path.into(),
                    status: status.as_u16(),
                    message: error_message(&text),
                    request_id,
                    tries: Tries::default(),
                }
                .into(),
            });
        }
        unreachable!("the loop returns on its second pass")
    }

    /// A call whose answer is read whole, to be decoded by the caller.
    pub fn answer(
        &self,
        service: Service,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Body<'_>>,
    ) -> Result<Answer> {
        self.answer_as(Repeat::ByMethod, service, method, path, headers, body)
    }

    /// [`Cloud::answer`] for a call the caller marks: [`Repeat::Safe`] lets
    /// a POST that does the same when sent twice be retried as a GET is.
    pub fn answer_as(
        &self,
        repeat: Repeat,
        service: Service,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Body<'_>>,
    ) -> Result<Answer> {
        let what = format!("{method} {path}");
        self.send(repeat, service, method, path, headers, body, |resp| {
            self.read_answer(&what, resp)
        })
    }

    /// Sends `req`, its answer read whole (see [`Cloud::call`] for the
    /// retries and the token renewal).
    pub fn request(&self, req: &Request) -> Result<Answer> {
        let what = req.what();
        self.send_request(req, |resp| self.read_answer(&what, resp))
    }

    /// Sends `req`; the answer's body is left to the caller (a download).
    pub fn respond(&self, req: &Request) -> Result<Response> {
        self.send_request(req, Ok)
    }

    fn send_request<T>(
        &self,
        req: &Request,
        read: impl Fn(Response) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let headers: Vec<(&str, &str)> = req
            .microversion
            .map(|v| ("OpenStack-API-Version", v))
            .into_iter()
            .collect();
        let body = req.body.as_ref().map(Body::of);
        let method = req.method.clone();
        self.send(
            req.repeat,
            req.service,
            method,
            &req.path,
            &headers,
            body,
            read,
        )
    }

    /// A successful answer, read whole.
    fn read_answer(&self, what: &str, resp: Response) -> std::result::Result<Answer, Failure> {
        let request_id = request_id(resp.headers());
        let body = resp
            .text()
            .map_err(|e| self.transport_failure(&format!("reading the answer of {what}"), e))?;
        Ok(Answer {
            cloud: self.cfg.name.clone(),
            what: what.to_string(),
            request_id,
            body,
        })
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
        self.answer(service, method, path, headers, body)?
            .json("a JSON answer")
    }
}

impl<'a> Body<'a> {
    /// The body of a request value.
    fn of(body: &'a request::Body) -> Body<'a> {
        match body {
            request::Body::Json(v) => Body::Json(v),
            request::Body::Patch(v) => Body::Patch(v),
        }
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

    /// A port on this machine that nothing listens on.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
        // dropped here: the port is closed
    }

    fn cfg(auth_url: String) -> CloudConfig {
        CloudConfig {
            name: "site-x".into(),
            auth_url,
            auth: Auth::Password {
                user: NameOrId::Id("u".into()),
                password: "secret-password".into(),
                project: NameOrId::Id("p".into()),
            },
            region: None,
            interface: "public".into(),
            verify: true,
            cacert: None,
        }
    }

    fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
        format!("{:#}", anyhow::Error::new(e))
    }

    #[test]
    fn a_refused_connection_says_so_once() {
        let url = format!("http://127.0.0.1:{}/v3", closed_port());
        let retry = RetryPolicy::default().with_deadline(Duration::from_secs(1));
        let started = std::time::Instant::now();
        let e = Cloud::connect_with(cfg(url.clone()), retry).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        let e = e.downcast::<ApiError>().expect("an ApiError");
        assert!(matches!(e.kind(), ApiErrorKind::Transport { .. }), "{e:?}");
        // Nothing was sent: retried even though a token request is a POST.
        let tries = e.tries().expect("retried");
        assert!(tries.attempts >= 2, "{tries:?}");
        let text = chain(e);
        assert!(
            text.starts_with(&format!(
                "site-x: authenticating at {url}/auth/tokens; gave up after {} attempts over ",
                tries.attempts
            )),
            "{text}"
        );
        let refused = text.to_lowercase().matches("connection refused").count();
        assert_eq!(refused, 1, "the cause, once: {text}");
        assert_eq!(text.matches(&url).count(), 1, "the URL, once: {text}");
        assert!(!text.contains("secret-password"), "{text}");
    }

    #[test]
    fn a_tls_failure_keeps_its_reason() {
        // A plain-HTTP listener answering a TLS handshake: the client's
        // reason (not a TLS record, or the connection closed) is kept.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            if let Ok((mut c, _)) = l.accept() {
                let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            }
        });
        let once = RetryPolicy::default().with_deadline(Duration::ZERO);
        let e = Cloud::connect_with(cfg(format!("https://127.0.0.1:{port}/v3")), once).unwrap_err();
        server.join().unwrap();
        let e = e.downcast::<ApiError>().expect("an ApiError");
        let ApiErrorKind::Transport { source, .. } = e.kind() else {
            panic!("{e:?}")
        };
        let own = source.to_string();
        let text = chain(e);
        // More than reqwest's own line: its causes follow, each once.
        assert!(text.len() > own.len() + 30, "{text}");
        assert_eq!(
            text.matches("127.0.0.1").count(),
            1,
            "the URL, once: {text}"
        );
        let mut parts: Vec<&str> = text.split(": ").collect();
        let n = parts.len();
        parts.sort();
        parts.dedup();
        assert_eq!(parts.len(), n, "a part repeated: {text}");
    }

    fn answer(body: &str) -> Answer {
        Answer {
            cloud: "site-b".into(),
            what: "GET /volumes/v1".into(),
            request_id: Some("req-1234".into()),
            body: body.into(),
        }
    }

    #[test]
    fn a_body_that_does_not_parse_says_what_was_expected_and_shows_it() {
        #[derive(Debug, Deserialize)]
        struct Vol {
            #[allow(dead_code)]
            id: String,
        }
        let e = answer(r#"{"volume": {"name": "v"}}"#)
            .field::<Vol>("volume", "a volume")
            .unwrap_err();
        assert_eq!(e.request_id(), Some("req-1234"));
        assert_eq!(
            chain(e),
            r#"site-b: GET /volumes/v1: expected a volume (request req-1234); the body was "{\"volume\": {\"name\": \"v\"}}": missing field `id`"#
        );

        let e = answer("{}").field::<Vol>("volume", "a volume").unwrap_err();
        assert_eq!(
            chain(e),
            r#"site-b: GET /volumes/v1: expected a volume (a "volume" member) (request req-1234); the body was "{}""#
        );

        // A proxy's HTML page, long and on many lines: one line, bounded.
        let page = format!(
            "<html>\n<body>\n{}</body></html>",
            "<p>502 Bad Gateway</p>\n".repeat(100)
        );
        let text = chain(answer(&page).json::<Vol>("a volume").unwrap_err());
        assert!(text.contains("expected a volume"), "{text}");
        assert!(text.contains(&format!("({} bytes)", page.len())), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(text.len() < EXCERPT_CHARS + 200, "{}: {text}", text.len());
        assert!(
            text.ends_with("expected value at line 1 column 1"),
            "{text}"
        );

        let text = chain(answer("").json::<Vol>("a volume").unwrap_err());
        assert!(text.contains("the body was empty"), "{text}");
    }

    #[test]
    fn excerpts_cut_on_characters_not_bytes() {
        let body = "é".repeat(EXCERPT_CHARS * 2);
        let e = excerpt(&body);
        assert_eq!(e.chars().filter(|c| *c == 'é').count(), EXCERPT_CHARS);
        assert!(e.ends_with(&format!("…\" ({} bytes)", body.len())), "{e}");
        assert_eq!(excerpt("  \n "), "empty");
        assert_eq!(excerpt("a\n  b"), "\"a b\"");
    }

    #[test]
    fn status_errors_carry_the_request_id() {
        let e: ApiError = ApiErrorKind::Status {
            cloud: "site-b".into(),
            method: "POST".into(),
            what: "/os-volume-manage".into(),
            status: 400,
            message: "Manage existing volume failed".into(),
            request_id: Some("req-5f2c".into()),
            tries: Tries::default(),
        }
        .into();
        assert_eq!(e.request_id(), Some("req-5f2c"));
        assert_eq!(e.status(), Some(400));
        assert_eq!(
            e.to_string(),
            "site-b: POST /os-volume-manage: HTTP 400: Manage existing volume failed (request req-5f2c)"
        );
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(request_id(&h), None);
        h.insert("x-compute-request-id", "req-c".parse().unwrap());
        assert_eq!(request_id(&h).as_deref(), Some("req-c"));
        h.insert("X-OpenStack-Request-ID", "req-o".parse().unwrap());
        assert_eq!(request_id(&h).as_deref(), Some("req-o"));
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
