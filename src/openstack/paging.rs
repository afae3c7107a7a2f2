//! Listings longer than one page. Cinder cuts a list at `osapi_max_limit`
//! (1,000 by default) and links the next page (`volumes_links`); Glance at
//! 25 images by default, with a `next` path in the body. A list read as its
//! first page only misses volumes without a word, so every listing follows
//! its pages to the end. Pure: the calls are in `cinder` and `glance`.

use serde_json::Value;

/// The marker of the next page a Cinder list body links to under
/// `links_key` (`volumes_links`: `[{"rel": "next", "href": "…?marker=…"}]`),
/// or None on the last page. The marker, not the link: the link's host and
/// scheme are how Cinder sees itself, which behind a proxy need not be how
/// ferry reaches it.
pub fn next_marker(body: &Value, links_key: &str) -> Option<String> {
    let href = body
        .get(links_key)?
        .as_array()?
        .iter()
        .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))?
        .get("href")?
        .as_str()?;
    query_param(href, "marker")
}

/// The path of the next page of a Glance list body (`"next":
/// "/v2/images?marker=…"`), relative to the endpoint as ferry's paths are.
pub fn glance_next(body: &Value) -> Option<String> {
    let next = body.get("next")?.as_str()?;
    // Only a path under the image API: the answer is remote data.
    next.starts_with("/v2/").then(|| next.to_string())
}

/// The value of query parameter `name` in `url`, percent-decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// `path` with query parameter `name` set to `value` (encoded), replacing
/// a value it had.
pub fn with_param(path: &str, name: &str, value: &str) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(name))
        .map(str::to_string)
        .collect();
    pairs.push(format!("{name}={}", super::cinder::urlencode(value)));
    format!("{base}?{}", pairs.join("&"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A listing's pages, as far as it has read them: refuses a next page it
/// has already read, so that a service that links a page to itself (or
/// back) does not keep ferry reading forever.
#[derive(Debug, Default)]
pub struct Pages {
    seen: std::collections::BTreeSet<String>,
}

impl Pages {
    /// Whether `next` (a marker or a path) is new; records it.
    pub fn is_new(&mut self, next: &str) -> bool {
        self.seen.insert(next.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cinder_next_links_give_their_marker() {
        // As Cinder (Zed) answers GET /volumes/detail at its limit.
        let body = json!({
            "volumes": [{"id": "6edbc2f4-1507-44f8-ac0d-eed1d2608d38", "status": "available"}],
            "volumes_links": [{
                "href": "http://cinder.internal:8776/v3/89afd400b2a74f2c9fc07e9d2b1b7b97/volumes/detail?limit=1&marker=6edbc2f4-1507-44f8-ac0d-eed1d2608d38",
                "rel": "next"
            }]
        });
        assert_eq!(
            next_marker(&body, "volumes_links").as_deref(),
            Some("6edbc2f4-1507-44f8-ac0d-eed1d2608d38")
        );
        // The last page has no links, or none named next.
        assert_eq!(next_marker(&json!({"volumes": []}), "volumes_links"), None);
        let prev = json!({"volumes_links": [{"rel": "previous", "href": "x?marker=a"}]});
        assert_eq!(next_marker(&prev, "volumes_links"), None);
        assert_eq!(
            next_marker(&json!({"volumes_links": "x"}), "volumes_links"),
            None
        );
    }

    #[test]
    fn glance_next_paths_are_taken_under_v2_only() {
        // As Glance answers GET /v2/images when more images follow.
        let body = json!({
            "images": [{"id": "d6a3f9c4-1c8c-4d6b-8f1e-5d7b3a1f9e2a", "status": "active"}],
            "first": "/v2/images?name=cirros",
            "next": "/v2/images?name=cirros&marker=d6a3f9c4-1c8c-4d6b-8f1e-5d7b3a1f9e2a",
            "schema": "/v2/schemas/images"
        });
        assert_eq!(
            glance_next(&body).as_deref(),
            Some("/v2/images?name=cirros&marker=d6a3f9c4-1c8c-4d6b-8f1e-5d7b3a1f9e2a")
        );
        assert_eq!(glance_next(&json!({"images": []})), None);
        assert_eq!(glance_next(&json!({"next": "http://elsewhere/x"})), None);
    }

    #[test]
    fn query_parameters_are_read_and_set() {
        assert_eq!(
            query_param("/v3/p/x?name=my%20vol&marker=a%2Fb#frag", "marker").as_deref(),
            Some("a/b")
        );
        assert_eq!(query_param("/x?name=a+b", "name").as_deref(), Some("a b"));
        assert_eq!(query_param("/x?markers=1", "marker"), None);
        assert_eq!(query_param("/x", "marker"), None);
        assert_eq!(
            query_param("/x?marker=%zz%4", "marker").as_deref(),
            Some("%zz%4")
        );
        assert_eq!(
            with_param("/volumes/detail?name=x&marker=old", "marker", "new id"),
            "/volumes/detail?name=x&marker=new%20id"
        );
        assert_eq!(
            with_param("/volumes/detail", "limit", "1000"),
            "/volumes/detail?limit=1000"
        );
    }

    #[test]
    fn a_page_seen_before_is_not_read_again() {
        let mut p = Pages::default();
        assert!(p.is_new("m1"));
        assert!(p.is_new("m2"));
        assert!(!p.is_new("m1"));
    }
}
