//! AuthorizationPolicies → Envoy RBAC filters, as Istio's pilot translates them.
//!
//! A second implementation of the policy semantics, written from Istio's translator
//! (`pilot/pkg/security/authz/builder/builder.go` and `model/{model,generator}.go` at the
//! commit of `testdata/istio-authz`), not from Palisade's engine: the filters it writes are
//! Envoy's own RBAC, so traffic through them is decided by a peer. `tests/istio_translation.rs`
//! checks it against Istio's golden files (every case it can translate must come out equal
//! to the file, field for field).
//!
//! What it does as Istio does: the policies that apply to a workload (its namespace's and the
//! root namespace's, by `selector.matchLabels`), one filter per action in the order AUDIT (RBAC
//! `LOG`), DENY, ALLOW, dry-run policies in `shadowRules`, one RBAC policy per rule named
//! `ns[<ns>]-policy[<name>]-rule[<i>]`, `when` conditions split between permissions and
//! principals, and on TCP the HTTP-only fields: an ALLOW rule with one is dropped (it can never
//! match), a DENY or AUDIT rule loses the field (it matches more). What it does not do:
//! CUSTOM, `targetRef(s)`, trust-domain aliases — it fails on them rather than guess.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// The `@type` of the HTTP filter's configuration.
pub const HTTP_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/// The `@type` of the network filter's configuration.
pub const TCP_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";

/// The proxy the filters are for: its namespace and pod labels.
#[derive(Debug, Clone, Default)]
pub struct Proxy {
    /// The workload's namespace.
    pub namespace: String,
    /// Its pod labels.
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Log,
    Deny,
    Allow,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Log => "LOG",
            Action::Deny => "DENY",
            Action::Allow => "ALLOW",
        }
    }
}

/// The RBAC filters Istio gives `proxy` for these objects (AuthorizationPolicies; other kinds
/// are ignored), in filter-chain order: `tcp` the network filters of a TCP listener, else the
/// HTTP filters. `root` is the mesh's root namespace. Written as Istio's golden files are
/// (proto JSON, camelCase), which Envoy reads as they are.
pub fn filters(objects: &[Value], proxy: &Proxy, root: &str, tcp: bool) -> Result<Vec<Value>> {
    let mut by_action: BTreeMap<u8, Vec<&Value>> = BTreeMap::new();
    for o in objects {
        if o.get("kind").and_then(Value::as_str) != Some("AuthorizationPolicy") {
            continue;
        }
        let ns = meta(o, "namespace").unwrap_or("default");
        if ns != proxy.namespace && ns != root {
            continue;
        }
        let spec = o.get("spec").cloned().unwrap_or(Value::Null);
        if spec.get("targetRef").is_some() || spec.get("targetRefs").is_some() {
            return Err(Error::new(format!(
                "{}: targetRef is not translated",
                meta(o, "name").unwrap_or("?")
            )));
        }
        let selected = match spec.pointer("/selector/matchLabels") {
            None | Some(Value::Null) => true,
            Some(Value::Object(m)) => m
                .iter()
                .all(|(k, v)| proxy.labels.get(k).map(String::as_str) == v.as_str()),
            Some(_) => false,
        };
        if !selected {
            continue;
        }
        let order = match spec
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("ALLOW")
        {
            "AUDIT" => 0,
            "DENY" => 1,
            "ALLOW" => 2,
            other => {
                return Err(Error::new(format!(
                    "{}: action {other} is not translated",
                    meta(o, "name").unwrap_or("?")
                )));
            }
        };
        by_action.entry(order).or_default().push(o);
    }
    let mut out = Vec::new();
    for (order, policies) in by_action {
        let action = match order {
            0 => Action::Log,
            1 => Action::Deny,
            _ => Action::Allow,
        };
        out.push(filter(&policies, action, tcp)?);
    }
    Ok(out)
}

fn meta<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.get("metadata")?.get(key)?.as_str()
}

fn dry_run(o: &Value) -> bool {
    o.pointer("/metadata/annotations/istio.io~1dry-run")
        .and_then(Value::as_str)
        .is_some_and(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

fn filter(policies: &[&Value], action: Action, tcp: bool) -> Result<Value> {
    let (mut enforce, mut shadow) = (None::<Map<String, Value>>, None::<Map<String, Value>>);
    for p in policies {
        let ns = meta(p, "namespace").unwrap_or("default");
        let name = meta(p, "name").unwrap_or("");
        let set = if dry_run(p) {
            shadow.get_or_insert_with(Map::new)
        } else {
            enforce.get_or_insert_with(Map::new)
        };
        let rules = p
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if rules.is_empty() {
            // Istio's `rbacPolicyMatchNever`.
            set.insert(
                format!("ns[{ns}]-policy[{name}]-rule[0]"),
                json!({"permissions": [{"notRule": {"any": true}}],
                       "principals": [{"notId": {"any": true}}]}),
            );
        }
        for (i, rule) in rules.iter().enumerate() {
            if let Some(policy) = translate_rule(rule, ns, action, tcp)? {
                set.insert(format!("ns[{ns}]-policy[{name}]-rule[{i}]"), policy);
            }
        }
    }
    let rbac = |policies: Map<String, Value>| {
        let mut r = Map::new();
        if action != Action::Allow {
            r.insert("action".into(), json!(action.name()));
        }
        if !policies.is_empty() {
            r.insert("policies".into(), Value::Object(policies));
        }
        Value::Object(r)
    };
    // Istio takes the prefix from the shadow rules' action, whose default (no shadow rules)
    // is ALLOW.
    let prefix = match (&shadow, action) {
        (Some(_), Action::Deny) => "istio_dry_run_deny_",
        (Some(_), Action::Log) => "",
        _ => "istio_dry_run_allow_",
    };
    let mut config = Map::new();
    config.insert(
        "@type".into(),
        json!(if tcp { TCP_RBAC_TYPE } else { HTTP_RBAC_TYPE }),
    );
    if let Some(e) = enforce {
        config.insert("rules".into(), rbac(e));
    }
    if tcp {
        config.insert("statPrefix".into(), json!("tcp."));
    }
    if let Some(s) = shadow {
        config.insert("shadowRules".into(), rbac(s));
    }
    if !prefix.is_empty() {
        config.insert("shadowRulesStatPrefix".into(), json!(prefix));
    }
    Ok(json!({
        "name": if tcp { "envoy.filters.network.rbac" } else { "envoy.filters.http.rbac" },
        "typedConfig": Value::Object(config),
    }))
}

/// What a rule's field turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gen {
    DestIp,
    DestPort,
    Sni,
    EnvoyFilter,
    SrcIp,
    RemoteIp,
    Namespace,
    TrustDomain,
    ServiceAccount,
    Principal,
    RequestPrincipal,
    Audiences,
    Presenter,
    Header,
    Claims,
    Host,
    Path,
    Method,
}

impl Gen {
    /// Istio's "extended" generators take all values at once.
    fn extended(self) -> bool {
        matches!(
            self,
            Gen::EnvoyFilter
                | Gen::RequestPrincipal
                | Gen::Audiences
                | Gen::Presenter
                | Gen::Claims
        )
    }
    fn http_only(self) -> bool {
        matches!(
            self,
            Gen::RequestPrincipal
                | Gen::Audiences
                | Gen::Presenter
                | Gen::Header
                | Gen::Claims
                | Gen::Host
                | Gen::Path
                | Gen::Method
        )
    }
}

#[derive(Debug, Clone)]
struct Field {
    kind: Gen,
    key: String,
    values: Vec<String>,
    not_values: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn field(kind: Gen, key: &str, obj: &Value, pos: &str, neg: &str) -> Option<Field> {
    let (values, not_values) = (strings(obj.get(pos)), strings(obj.get(neg)));
    (!values.is_empty() || !not_values.is_empty()).then(|| Field {
        kind,
        key: key.to_string(),
        values,
        not_values,
    })
}

/// One rule → one RBAC policy, or `None` when Istio skips the rule (an ALLOW rule with a field
/// this listener cannot check).
fn translate_rule(rule: &Value, ns: &str, action: Action, tcp: bool) -> Result<Option<Value>> {
    let (mut base_perm, mut base_princ) = (Vec::new(), Vec::new());
    for when in rule
        .get("when")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = when.get("key").and_then(Value::as_str).unwrap_or("");
        let kind = match key {
            "destination.ip" => Gen::DestIp,
            "destination.port" => Gen::DestPort,
            "connection.sni" => Gen::Sni,
            k if k.starts_with("experimental.envoy.filters.") => Gen::EnvoyFilter,
            "source.ip" => Gen::SrcIp,
            "remote.ip" => Gen::RemoteIp,
            "source.namespace" => Gen::Namespace,
            "source.trustDomain" | "source.trust_domain" => Gen::TrustDomain,
            "source.serviceAccount" | "source.service_account" => Gen::ServiceAccount,
            "source.principal" => Gen::Principal,
            "request.auth.principal" => Gen::RequestPrincipal,
            "request.auth.audiences" => Gen::Audiences,
            "request.auth.presenter" => Gen::Presenter,
            k if k.starts_with("request.headers") => Gen::Header,
            k if k.starts_with("request.auth.claims") => Gen::Claims,
            other => return Err(Error::new(format!("unknown attribute {other}"))),
        };
        let on_permission = matches!(
            kind,
            Gen::DestIp | Gen::DestPort | Gen::Sni | Gen::EnvoyFilter
        );
        if let Some(f) = field(kind, key, when, "values", "notValues") {
            if on_permission {
                base_perm.push(f);
            } else {
                base_princ.push(f);
            }
        }
    }
    let mut principals = Vec::new();
    let froms = rule.get("from").and_then(Value::as_array);
    for from in froms.into_iter().flatten() {
        let mut fields = Vec::new();
        if let Some(s) = from.get("source").filter(|s| !s.is_null()) {
            // Istio inserts each at the front, so the last inserted comes first.
            for (kind, key, pos, neg) in [
                (
                    Gen::Principal,
                    "source.principal",
                    "principals",
                    "notPrincipals",
                ),
                (
                    Gen::RequestPrincipal,
                    "request.auth.principal",
                    "requestPrincipals",
                    "notRequestPrincipals",
                ),
                (
                    Gen::ServiceAccount,
                    "source.serviceAccount",
                    "serviceAccounts",
                    "notServiceAccounts",
                ),
                (
                    Gen::TrustDomain,
                    "source.trustDomain",
                    "trustDomains",
                    "notTrustDomains",
                ),
                (
                    Gen::Namespace,
                    "source.namespace",
                    "namespaces",
                    "notNamespaces",
                ),
                (
                    Gen::RemoteIp,
                    "remote.ip",
                    "remoteIpBlocks",
                    "notRemoteIpBlocks",
                ),
                (Gen::SrcIp, "source.ip", "ipBlocks", "notIpBlocks"),
            ] {
                fields.extend(field(kind, key, s, pos, neg));
            }
        }
        fields.extend(base_princ.iter().cloned());
        principals.push(fields);
    }
    if froms.is_none_or(Vec::is_empty) {
        principals.push(base_princ.clone());
    }
    let mut permissions = Vec::new();
    let tos = rule.get("to").and_then(Value::as_array);
    for to in tos.into_iter().flatten() {
        let mut fields = Vec::new();
        if let Some(o) = to.get("operation").filter(|o| !o.is_null()) {
            for (kind, key, pos, neg) in [
                (Gen::Host, ":authority", "hosts", "notHosts"),
                (Gen::Method, ":method", "methods", "notMethods"),
                (Gen::Path, "path-matcher", "paths", "notPaths"),
                (Gen::DestPort, "destination.port", "ports", "notPorts"),
            ] {
                fields.extend(field(kind, key, o, pos, neg));
            }
        }
        fields.extend(base_perm.iter().cloned());
        permissions.push(fields);
    }
    if tos.is_none_or(Vec::is_empty) {
        permissions.push(base_perm);
    }

    let mut perms = Vec::new();
    for fields in &permissions {
        let mut and = Vec::new();
        for f in fields {
            match side(f, ns, action, tcp, true) {
                Ok(v) => and.extend(v),
                Err(_) => return Ok(None),
            }
        }
        if and.is_empty() {
            and.push(json!({"any": true}));
        }
        perms.push(json!({"andRules": {"rules": and}}));
    }
    let mut princs = Vec::new();
    for fields in &principals {
        let mut and = Vec::new();
        for f in fields {
            match side(f, ns, action, tcp, false) {
                Ok(v) => and.extend(v),
                Err(_) => return Ok(None),
            }
        }
        if and.is_empty() {
            and.push(json!({"any": true}));
        }
        princs.push(json!({"andIds": {"ids": and}}));
    }
    Ok(Some(json!({"permissions": perms, "principals": princs})))
}

/// A field's matchers on the permission (`perm`) or principal side: its values OR-ed, its
/// not-values OR-ed and negated. An error skips the rule for ALLOW; DENY and AUDIT skip only
/// the value (Istio's `checkError`).
fn side(f: &Field, ns: &str, action: Action, tcp: bool, perm: bool) -> Result<Vec<Value>> {
    let (or_key, not_key, set_key) = if perm {
        ("orRules", "notRule", "rules")
    } else {
        ("orIds", "notId", "ids")
    };
    let check = |r: Result<Value>| -> Result<Option<Value>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if action == Action::Allow => Err(e),
            Err(_) => Ok(None),
        }
    };
    let mut out = Vec::new();
    for (values, negate) in [(&f.values, false), (&f.not_values, true)] {
        if values.is_empty() {
            continue;
        }
        let m = if f.kind.extended() {
            check(extended(f, values, tcp))?
        } else {
            let mut or = Vec::new();
            for v in values {
                or.extend(check(single(f, v, ns, tcp, perm))?);
            }
            (!or.is_empty()).then(|| json!({ or_key: { set_key: or } }))
        };
        if let Some(m) = m {
            out.push(if negate { json!({ not_key: m }) } else { m });
        }
    }
    Ok(out)
}

fn single(f: &Field, v: &str, ns: &str, tcp: bool, perm: bool) -> Result<Value> {
    if tcp && f.kind.http_only() {
        return Err(Error::new(format!("{:?} is HTTP only", f.key)));
    }
    let unimplemented = || Error::new("unimplemented");
    let authenticated = |m: Value| json!({"authenticated": {"principalName": m}});
    match (f.kind, perm) {
        (Gen::DestIp, true) => Ok(json!({"destinationIp": cidr(v)?})),
        (Gen::DestPort, true) => {
            let p: u16 = v
                .parse()
                .map_err(|_| Error::new(format!("invalid port {v}")))?;
            Ok(json!({"destinationPort": p}))
        }
        (Gen::Sni, true) => Ok(json!({"requestedServerName": string_matcher(v, "")})),
        (Gen::Host, true) => Ok(json!({"header": header_matcher(":authority", v, true)})),
        (Gen::Method, true) => Ok(json!({"header": header_matcher(":method", v, false)})),
        (Gen::Path, true) => Ok(if v.contains("{*}") || v.contains("{**}") {
            json!({"uriTemplate": {
                "name": "uri-template",
                "typedConfig": {
                    "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
                    "pathTemplate": v.replace("{**}", "**").replace("{*}", "*"),
                },
            }})
        } else {
            json!({"urlPath": {"path": string_matcher(v, "")}})
        }),
        (Gen::SrcIp, false) => Ok(json!({"directRemoteIp": cidr(v)?})),
        (Gen::RemoteIp, false) => Ok(json!({"remoteIp": cidr(v)?})),
        (Gen::Namespace, false) => {
            let ns: Vec<String> = v.split('*').map(quote_meta).collect();
            Ok(authenticated(
                json!({"safeRegex": {"regex": format!(".*/ns/{}/.*", ns.join(".*"))}}),
            ))
        }
        (Gen::ServiceAccount, false) => {
            let (sa_ns, sa) = v.split_once('/').unwrap_or((ns, v));
            Ok(authenticated(json!({"safeRegex": {"regex": format!(
                "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
                quote_meta(sa_ns),
                quote_meta(sa)
            )}})))
        }
        (Gen::TrustDomain, false) => Ok(authenticated(if v == "*" {
            json!({"prefix": "spiffe://"})
        } else if !v.contains('*') {
            json!({"prefix": format!("spiffe://{v}/")})
        } else {
            let (a, b) = v.split_once('*').unwrap_or((v, ""));
            json!({"safeRegex": {"regex": format!(
                "spiffe://{}[^/]*{}/.*",
                quote_meta(a),
                quote_meta(b)
            )}})
        })),
        (Gen::Principal, false) => Ok(authenticated(string_matcher(v, "spiffe://"))),
        (Gen::Header, false) => {
            let name = f
                .key
                .strip_prefix("request.headers")
                .and_then(|s| s.strip_prefix('['))
                .and_then(|s| s.strip_suffix(']'))
                .ok_or_else(|| Error::new(format!("expecting [<NAME>] in {}", f.key)))?;
            Ok(json!({"header": header_matcher(name, v, false)}))
        }
        _ => Err(unimplemented()),
    }
}

fn extended(f: &Field, values: &[String], tcp: bool) -> Result<Value> {
    if tcp && f.kind.http_only() {
        return Err(Error::new(format!("{:?} is HTTP only", f.key)));
    }
    match f.kind {
        Gen::RequestPrincipal => {
            let any = json!({"safeRegex": {"regex": ".+"}});
            let mut or = Vec::new();
            for value in values {
                let (iss, sub, found) = match value.rfind('/') {
                    Some(i) => (&value[..i], &value[i + 1..], true),
                    None => (value.as_str(), "", false),
                };
                let (mi, ms) = if value == "*" {
                    (any.clone(), any.clone())
                } else if let Some(rest) = value.strip_prefix('*') {
                    if found {
                        let mi = if iss == "*" {
                            any.clone()
                        } else {
                            json!({"suffix": iss.trim_start_matches('*')})
                        };
                        (mi, json!({"exact": sub}))
                    } else {
                        (any.clone(), json!({"suffix": rest}))
                    }
                } else if value.ends_with('*') {
                    if found {
                        let ms = if sub == "*" {
                            any.clone()
                        } else {
                            json!({"prefix": sub.trim_end_matches('*')})
                        };
                        (json!({"exact": iss}), ms)
                    } else {
                        (json!({"prefix": value.trim_end_matches('*')}), any.clone())
                    }
                } else {
                    (json!({"exact": iss}), json!({"exact": sub}))
                };
                let claim = |c: &str, m: Value| {
                    json!({"metadata": {"filter": JWT_FILTER,
                        "path": [{"key": "payload"}, {"key": c}],
                        "value": {"stringMatch": m}}})
                };
                or.push(json!({"andIds": {"ids": [claim("iss", mi), claim("sub", ms)]}}));
            }
            Ok(if or.len() == 1 {
                or.remove(0)
            } else {
                json!({"orIds": {"ids": or}})
            })
        }
        Gen::Audiences | Gen::Presenter | Gen::Claims => {
            let mut path = vec![json!({"key": "payload"})];
            match f.kind {
                Gen::Audiences => path.push(json!({"key": "aud"})),
                Gen::Presenter => path.push(json!({"key": "azp"})),
                _ => {
                    let rest = f.key.strip_prefix("request.auth.claims").unwrap_or("");
                    for c in nested_brackets(rest)? {
                        path.push(json!({ "key": c }));
                    }
                }
            }
            let v = or_matcher(
                values
                    .iter()
                    .map(|s| json!({"stringMatch": string_matcher(s, "")}))
                    .collect(),
            );
            Ok(
                json!({"metadata": {"filter": JWT_FILTER, "path": path, "value": {"orMatch":
                {"valueMatchers": [{"listMatch": {"oneOf": v.clone()}}, v]}}}}),
            )
        }
        Gen::EnvoyFilter => {
            let inner = f
                .key
                .trim_start_matches("experimental.")
                .trim_end_matches(']');
            let (filter, key) = inner
                .split_once('[')
                .ok_or_else(|| Error::new(format!("invalid key: {}", f.key)))?;
            let ms = values
                .iter()
                .map(|v| {
                    if v.starts_with('[') && v.ends_with(']') {
                        json!({"listMatch": {"oneOf": {"stringMatch":
                            string_matcher(v.trim_matches(|c| c == '[' || c == ']'), "")}}})
                    } else {
                        json!({"stringMatch": string_matcher(v, "")})
                    }
                })
                .collect();
            Ok(
                json!({"metadata": {"filter": filter, "path": [{"key": key}],
                "value": or_matcher(ms)}}),
            )
        }
        _ => Err(Error::new("unimplemented")),
    }
}

fn or_matcher(mut ms: Vec<Value>) -> Value {
    if ms.len() == 1 {
        ms.remove(0)
    } else {
        json!({"orMatch": {"valueMatchers": ms}})
    }
}

/// `[a][b]` → `[a, b]`; anything else as Istio's `extractNameInNestedBrackets` reads it.
fn nested_brackets(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let parsed = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .filter(|(name, _)| !name.contains('['));
        match parsed {
            Some((name, after)) => {
                out.push(name.to_string());
                rest = after;
            }
            None => {
                let whole = s
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .ok_or_else(|| Error::new(format!("expecting [<NAME>] in {s}")))?;
                return Ok(vec![whole.to_string()]);
            }
        }
    }
    Ok(out)
}

/// Istio's `StringMatcherWithPrefix`.
fn string_matcher(v: &str, prefix: &str) -> Value {
    if v == "*" {
        json!({"safeRegex": {"regex": ".+"}})
    } else if let Some(rest) = v.strip_prefix('*') {
        if prefix.is_empty() {
            json!({ "suffix": rest })
        } else {
            json!({"safeRegex": {"regex": format!("{prefix}.*{}", quote_meta(rest))}})
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        json!({ "prefix": format!("{prefix}{rest}") })
    } else {
        json!({ "exact": format!("{prefix}{v}") })
    }
}

/// Istio's `HeaderMatcher` (`HostMatcher` with `ignore_case`).
fn header_matcher(name: &str, v: &str, ignore_case: bool) -> Value {
    let with_case = |mut m: Value| {
        if ignore_case && let Some(o) = m.as_object_mut() {
            o.insert("ignoreCase".into(), json!(true));
        }
        m
    };
    if v == "*" {
        json!({"name": name, "presentMatch": true})
    } else if let Some(rest) = v.strip_prefix('*') {
        json!({"name": name, "stringMatch": with_case(json!({"suffix": rest}))})
    } else if let Some(rest) = v.strip_suffix('*') {
        json!({"name": name, "stringMatch": with_case(json!({"prefix": rest}))})
    } else {
        json!({"name": name, "stringMatch": with_case(json!({"exact": v}))})
    }
}

/// Istio's `AddrStrToCidrRange`: an address is a /32 or /128, a CIDR keeps its host bits.
fn cidr(v: &str) -> Result<Value> {
    let bad = || Error::new(format!("invalid address {v}"));
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().map_err(|_| bad())?)),
        None => (v, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(bits);
    if len > bits {
        return Err(bad());
    }
    // Proto JSON leaves a zero length out.
    Ok(if len == 0 {
        json!({"addressPrefix": ip.to_string()})
    } else {
        json!({"addressPrefix": ip.to_string(), "prefixLen": len})
    })
}

/// Go's `regexp.QuoteMeta`.
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
