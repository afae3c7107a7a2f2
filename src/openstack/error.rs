//! What an OpenStack call gives back: its answer ([`Answer`]), or an error
//! that names the cloud, the call, the status, the tries and the request
//! id ([`ApiError`]), with the excerpts of bodies errors show.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::retry;

/// A failed OpenStack call: it names the cloud and the call; print the
/// chain (`{:#}`) to read the cause (a refused connection, a TLS reason,
/// the parser's complaint) once. Boxed: a `Result` stays small.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(Box<ApiErrorKind>);

impl From<ApiErrorKind> for ApiError {
    fn from(k: ApiErrorKind) -> Self {
        ApiError(Box::new(k))
    }
}

/// What went wrong in an OpenStack call.
#[derive(Debug, thiserror::Error)]
pub enum ApiErrorKind {
    /// The service answered with an error status.
    #[error("{cloud}: {method} {what}: HTTP {status}: {message}{}{tries}", request_note(.request_id))]
    Status {
        cloud: String,
        method: String,
        what: String,
        status: u16,
        message: String,
        /// `x-openstack-request-id`: what the cloud's operators look up.
        request_id: Option<String>,
        /// The attempts made before giving up.
        tries: Tries,
    },
    /// No answer: connection, TLS, timeout, or the body could not be read.
    #[error("{cloud}: {what}{tries}")]
    Transport {
        cloud: String,
        what: String,
        tries: Tries,
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not what the call expects.
    #[error("{cloud}: {what}: expected {expected}{}; the body was {excerpt}", request_note(.request_id))]
    Decode {
        cloud: String,
        what: String,
        /// What the body should have held, in words.
        expected: String,
        /// The body's start, on one line ([`excerpt`]).
        excerpt: String,
        request_id: Option<String>,
        #[source]
        source: Option<serde_json::Error>,
    },
    /// A token Keystone issued that ferry cannot use.
    #[error("{cloud}: authenticating at {url}: {message}")]
    Token {
        cloud: String,
        url: String,
        message: String,
    },
    #[error("{cloud}: {message}")]
    Catalog { cloud: String, message: String },
}

/// How many attempts a call made, over how long, before its error stood.
/// Says nothing for a call made once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tries {
    pub attempts: u32,
    pub over: Duration,
}

impl std::fmt::Display for Tries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.attempts > 1 {
            write!(
                f,
                "; gave up after {} attempts over {:.1} s",
                self.attempts,
                self.over.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

fn request_note(id: &Option<String>) -> String {
    id.as_deref()
        .map(|id| format!(" (request {id})"))
        .unwrap_or_default()
}

impl ApiError {
    pub fn kind(&self) -> &ApiErrorKind {
        &self.0
    }

    /// The HTTP status, for a call the service answered.
    pub fn status(&self) -> Option<u16> {
        match self.kind() {
            ApiErrorKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The attempts made, when the call was tried more than once.
    pub fn tries(&self) -> Option<Tries> {
        match self.kind() {
            ApiErrorKind::Status { tries, .. } | ApiErrorKind::Transport { tries, .. }
                if tries.attempts > 1 =>
            {
                Some(*tries)
            }
            _ => None,
        }
    }

    /// The same error, saying how many attempts were made over how long.
    pub(super) fn after(mut self, attempts: u32, over: Duration) -> ApiError {
        if let ApiErrorKind::Status { tries, .. } | ApiErrorKind::Transport { tries, .. } =
            &mut *self.0
        {
            *tries = Tries { attempts, over };
        }
        self
    }

    /// The `x-openstack-request-id` of the call, when the service answered.
    pub fn request_id(&self) -> Option<&str> {
        match self.kind() {
            ApiErrorKind::Status { request_id, .. } | ApiErrorKind::Decode { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }
}

/// The longest excerpt of a body an error shows, in characters.
pub const EXCERPT_CHARS: usize = 200;

/// OpenStack requests this process sent (attempts, not counting the
/// re-send with a renewed token): how hard a run polls the clouds.
pub(super) static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The OpenStack requests sent so far by this process.
pub fn requests_sent() -> u64 {
    REQUESTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A body as an error shows it: on one line, at most [`EXCERPT_CHARS`]
/// characters, quoted, with the full length when it was cut. Pure.
pub fn excerpt(body: &str) -> String {
    if body.trim().is_empty() {
        return "empty".into();
    }
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = one_line.chars().take(EXCERPT_CHARS).collect();
    if cut.len() < one_line.len() {
        cut.push('…');
        format!("{cut:?} ({} bytes)", body.len())
    } else {
        format!("{cut:?}")
    }
}

/// The request id a service put on its answer (Cinder, Glance, Keystone and
/// Nova all send `x-openstack-request-id`; older Nova `x-compute-request-id`).
pub fn request_id(headers: &reqwest::header::HeaderMap) -> Option<String> {
    ["x-openstack-request-id", "x-compute-request-id"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok())
        .map(str::to_string)
}

/// The pause an answer's `Retry-After` header asks for (429, 503).
pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    retry::parse_retry_after(v, super::session::now())
}

/// A successful answer, read whole, with what names it in errors.
#[derive(Debug)]
pub struct Answer {
    pub cloud: String,
    /// The call, e.g. `GET /volumes/x`.
    pub what: String,
    pub request_id: Option<String>,
    pub body: String,
}

impl Answer {
    /// The body as `T`; `expected` says in words what it should be ("a volume").
    pub fn json<T: DeserializeOwned>(&self, expected: &str) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|e| self.not(expected, Some(e)))
    }

    /// The value under `key` of the body's top object, as `T`.
    pub fn field<T: DeserializeOwned>(&self, key: &str, expected: &str) -> Result<T> {
        let v: Value = self.json(expected)?;
        let Some(inner) = v.get(key) else {
            return Err(self.not(&format!("{expected} (a {key:?} member)"), None));
        };
        T::deserialize(inner).map_err(|e| self.not(expected, Some(e)))
    }

    /// The error for a body that is not `expected`.
    pub fn not(&self, expected: &str, source: Option<serde_json::Error>) -> ApiError {
        ApiErrorKind::Decode {
            cloud: self.cloud.clone(),
            what: self.what.clone(),
            expected: expected.into(),
            excerpt: excerpt(&self.body),
            request_id: self.request_id.clone(),
            source,
        }
        .into()
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

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
