//! A request value printed as a script's call: the same
//! [`Request`](crate::openstack::Request) ferry sends, as the arguments of
//! `cloud.sh`'s `api_send` (method, URL, body, content type and, when the
//! call has one, microversion). Values only the running script knows (the
//! backend host it looked up, the volume it found) go into the builders as
//! a [`Var`]'s stand-in and come out as that shell variable.

use serde_json::Value;

use super::q;
use crate::openstack::{Request, Service};

/// A shell variable of the script, in place of a value in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var(pub &'static str);

/// The Cinder backend host `cinder_host` found.
pub const HOST: Var = Var("HOST");
/// The volume `adopted`/`stream_target` found or a create made.
pub const VOL: Var = Var("VOL");
/// A server's volumes at the destination, in device order, as the script
/// found them (a server takes at most this many).
pub const SERVER_VOLS: [Var; 16] = [
    Var("VOL1"),
    Var("VOL2"),
    Var("VOL3"),
    Var("VOL4"),
    Var("VOL5"),
    Var("VOL6"),
    Var("VOL7"),
    Var("VOL8"),
    Var("VOL9"),
    Var("VOL10"),
    Var("VOL11"),
    Var("VOL12"),
    Var("VOL13"),
    Var("VOL14"),
    Var("VOL15"),
    Var("VOL16"),
];
/// A server's networks at the destination, as the script found them.
pub const SERVER_NETS: [Var; 16] = [
    Var("NET1"),
    Var("NET2"),
    Var("NET3"),
    Var("NET4"),
    Var("NET5"),
    Var("NET6"),
    Var("NET7"),
    Var("NET8"),
    Var("NET9"),
    Var("NET10"),
    Var("NET11"),
    Var("NET12"),
    Var("NET13"),
    Var("NET14"),
    Var("NET15"),
    Var("NET16"),
];
/// The flavor `flavor_id` found.
pub const FLAVOR: Var = Var("FLAVOR");
/// The `rbd://` location of a copy.
pub const URL: Var = Var("url");

impl Var {
    /// What a request builder is given for it: only characters a path
    /// keeps as they are when encoded, so it is found in paths too.
    pub fn stand_in(self) -> String {
        format!("__ferry_script_var_{}__", self.0)
    }
}

/// A request as script lines: `setup` (one that sets `$body`, when it has
/// a body) and the arguments of `api_send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub setup: Option<String>,
    pub args: String,
}

impl Call {
    /// The lines calling `command` (`api_send`, or a helper that takes the
    /// same arguments), each after `indent`.
    pub fn lines(&self, indent: &str, command: &str) -> String {
        let mut out = String::new();
        if let Some(s) = &self.setup {
            out.push_str(&format!("{indent}{s}\n"));
        }
        out.push_str(&format!("{indent}{command} {}", self.args));
        out
    }
}

/// `req` as `api_send` arguments, the stand-ins of `vars` in its path and
/// body turned back into those variables.
pub fn call(req: &Request, vars: &[Var]) -> Call {
    let endpoint = match req.service {
        Service::BlockStorage => "$CINDER",
        Service::Image => "$GLANCE",
        Service::Compute => "$NOVA",
        Service::Network => "$NEUTRON",
        other => panic!("the scripts call no {other:?} API"),
    };
    let url = word(endpoint, &req.path, vars);
    let (setup, body, content_type) = match &req.body {
        None => (None, "''", "application/json"),
        Some(b) => (Some(body(b.json(), vars)), "\"$body\"", b.content_type()),
    };
    let mut args = format!("{} {url} {body} {content_type}", req.method);
    if let Some(mv) = req.microversion {
        args.push_str(&format!(" {}", q(mv)));
    }
    Call { setup, args }
}

/// The line that sets `$body` to `json`, the stand-ins of `vars` in it set
/// by jq from those variables. Through jq even without a variable: a `$`
/// in a value is then plainly data, to a reader and to shellcheck.
fn body(json: &Value, vars: &[Var]) -> String {
    let mut json = json.clone();
    let (mut args, mut filter) = (String::new(), "$v".to_string());
    for v in vars {
        let mut paths = Vec::new();
        take_stand_ins(&mut json, &v.stand_in(), &mut Vec::new(), &mut |p| {
            paths.push(p)
        });
        if !paths.is_empty() {
            args.push_str(&format!(" --arg {0} \"${0}\"", v.0));
        }
        for p in paths {
            filter.push_str(&format!(" | setpath({}; ${})", Value::Array(p), v.0));
        }
    }
    format!(
        "body=$(jq -cn --argjson v {}{args} {})",
        q(&json.to_string()),
        q(&filter)
    )
}

/// `endpoint` (a variable) and `path` as one shell word: the variables'
/// stand-ins as those variables, the rest through [`q`], as every value
/// enters a script.
fn word(endpoint: &str, path: &str, vars: &[Var]) -> String {
    let mut w = format!("\"{endpoint}\"");
    let mut rest = path;
    loop {
        let next = vars
            .iter()
            .filter_map(|v| rest.find(&v.stand_in()).map(|at| (at, *v)))
            .min_by_key(|(at, _)| *at);
        let text = next.map_or(rest, |(at, _)| &rest[..at]);
        if !text.is_empty() {
            w.push_str(&q(text));
        }
        let Some((at, v)) = next else { break };
        w.push_str(&format!("\"${}\"", v.0));
        rest = &rest[at + v.stand_in().len()..];
    }
    w
}

/// Replaces each string of `json` equal to `stand_in` by null, telling
/// `found` its path.
fn take_stand_ins(
    json: &mut Value,
    stand_in: &str,
    path: &mut Vec<Value>,
    found: &mut dyn FnMut(Vec<Value>),
) {
    match json {
        Value::String(s) if s == stand_in => {
            found(path.clone());
            *json = Value::Null;
        }
        Value::Array(items) => {
            for (k, item) in items.iter_mut().enumerate() {
                path.push(k.into());
                take_stand_ins(item, stand_in, path, found);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                path.push(k.clone().into());
                take_stand_ins(item, stand_in, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openstack::api::{cinder, glance};
    use std::collections::BTreeMap;

    #[test]
    fn a_body_is_set_by_jq_and_a_path_quoted() {
        let c = call(&glance::create(&serde_json::json!({"id": "i'1"})), &[]);
        assert_eq!(
            c.lines("  ", "api_send"),
            r#"  body=$(jq -cn --argjson v '{"id":"i'\''1"}' '$v')
  api_send POST "$GLANCE"'/v2/images' "$body" application/json"#
        );
    }

    #[test]
    fn variables_in_a_body_are_set_by_jq_and_in_a_path_expanded() {
        let meta = BTreeMap::new();
        let host = HOST.stand_in();
        let c = call(
            &cinder::manage(&cinder::Manage {
                host: &host,
                source_name: "volume-1",
                name: "db",
                description: None,
                volume_type: None,
                bootable: false,
                metadata: &meta,
            }),
            &[HOST],
        );
        assert_eq!(
            c.setup.as_deref(),
            Some(
                r#"body=$(jq -cn --argjson v '{"volume":{"bootable":false,"host":null,"metadata":{},"name":"db","ref":{"source-name":"volume-1"}}}' --arg HOST "$HOST" '$v | setpath(["volume","host"]; $HOST)')"#
            )
        );
        assert_eq!(
            c.args,
            r#"POST "$CINDER"'/os-volume-manage' "$body" application/json"#
        );
        let c = call(&cinder::delete_metadata(&VOL.stand_in(), "k"), &[VOL]);
        assert_eq!(
            c.lines("", "api_send"),
            r#"api_send DELETE "$CINDER"'/volumes/'"$VOL"'/metadata/k' '' application/json"#
        );
    }

    #[test]
    fn a_microversion_is_passed() {
        let c = call(&cinder::manageable("h", 10, 0), &[]);
        assert_eq!(
            c.args,
            r#"GET "$CINDER"'/manageable_volumes/detail?host=h&limit=10&offset=0' '' application/json 'volume 3.8'"#
        );
    }
}
