//! Istio `RequestAuthentication` (`security.istio.io/v1` and `v1beta1`) and what Envoy's
//! `jwt_authn` filter, as Istio configures it, does to a token before any authorization
//! filter sees it.
//!
//! Istio turns the `jwtRules` of every RequestAuthentication that applies to a workload into
//! one `jwt_authn` filter (`pilot/pkg/security/authn/policy_applier.go`): one provider per rule,
//! ordered by issuer, each writing the verified payload into the dynamic metadata key `payload`
//! with `normalize_payload_in_metadata.space_delimited_claims` = the rule's
//! `spaceDelimitedClaims` plus `scope` and `permission`. Envoy then replaces each such
//! **top-level** claim whose value is a string by the list of its space-separated words (empty
//! words skipped); lists, numbers, objects and nested claims are left alone, and a string with
//! no word at all (`""`, `"   "`) stays the string it was. The requirement Istio writes is
//! "no token, or a token one provider accepts": a token whose issuer no rule names is refused
//! with 401 before RBAC, one whose audiences the rule with its issuer does not allow with 403.
//!
//! Without any RequestAuthentication for the workload Istio writes no `jwt_authn` filter and
//! no payload reaches RBAC. Palisade follows that as soon as its input holds a
//! RequestAuthentication; an input without any keeps the older reading of a request's `jwt`
//! (the payload a `jwt_authn` in front verified), normalised as Istio always does (`scope`,
//! `permission`). See `docs/request-authentication.md`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authz::{Origin, Scope};
use crate::yaml::{At, DResult, Fields, Str};

/// The claims Istio always has `jwt_authn` split (`buildSpaceDelimitedClaims`).
pub const DEFAULT_SPACE_DELIMITED_CLAIMS: [&str; 2] = ["permission", "scope"];

/// A RequestAuthentication: which workloads it applies to and the JWT rules they accept.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestAuthentication {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// Which workloads it applies to (as for AuthorizationPolicy).
    pub scope: Scope,
    /// `jwtRules`, in order.
    pub jwt_rules: Vec<JwtRule>,
    /// Where it was read.
    pub origin: Origin,
}

/// One `jwtRules` entry: a token issuer and how its tokens are found and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JwtRule {
    /// `issuer`; absent (a `jwksUri`-only rule) accepts any issuer, as an Envoy provider
    /// without `issuer` does.
    pub issuer: Option<String>,
    /// `audiences`: a token must carry one of them (none: any audience).
    pub audiences: Vec<String>,
    /// `jwksUri`.
    pub jwks_uri: Option<String>,
    /// `jwks` (inline JSON Web Key Set).
    pub jwks: Option<String>,
    /// `fromHeaders`: `(name, prefix)`.
    pub from_headers: Vec<(String, String)>,
    /// `fromParams`.
    pub from_params: Vec<String>,
    /// `fromCookies`.
    pub from_cookies: Vec<String>,
    /// `outputPayloadToHeader`.
    pub output_payload_to_header: Option<String>,
    /// `forwardOriginalToken`.
    pub forward_original_token: bool,
    /// `outputClaimToHeaders`: `(header, claim)`.
    pub output_claim_to_headers: Vec<(String, String)>,
    /// `timeout`, as written.
    pub timeout: Option<String>,
    /// `spaceDelimitedClaims`, as written.
    pub space_delimited_claims: Vec<String>,
}

impl JwtRule {
    /// The claims `jwt_authn` splits for this rule: its `spaceDelimitedClaims` with `scope`
    /// and `permission`, each once, sorted (Istio's `buildSpaceDelimitedClaims`).
    pub fn split_claims(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .space_delimited_claims
            .iter()
            .cloned()
            .chain(
                DEFAULT_SPACE_DELIMITED_CLAIMS
                    .iter()
                    .map(|c| (*c).to_string()),
            )
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

// ---------------------------------------------------------------------------------------
// Reading and validation (Istio's `ValidateRequestAuthentication` and the CRD schema).

/// The `targetRefs` kinds Istio accepts: `(canonical group, kind)`.
const TARGET_KINDS: [(&str, &str); 4] = [
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

const RULE_FIELDS: &[&str] = &[
    "issuer",
    "audiences",
    "jwksUri",
    "jwks_uri",
    "jwks",
    "fromHeaders",
    "fromParams",
    "fromCookies",
    "outputPayloadToHeader",
    "forwardOriginalToken",
    "outputClaimToHeaders",
    "timeout",
    "spaceDelimitedClaims",
];

/// Reads a RequestAuthentication's `spec` (the caller has taken `apiVersion`, `kind` and
/// `metadata`).
pub fn parse(
    mut top: Fields<'_>,
    name: String,
    namespace: String,
    origin: Origin,
) -> DResult<RequestAuthentication> {
    let spec = top.take("spec");
    top.ignore(&["status"]);
    top.finish(&["apiVersion", "kind", "metadata", "spec", "status"])?;
    let mut ra = RequestAuthentication {
        name,
        namespace,
        scope: Scope::Namespace,
        jwt_rules: Vec::new(),
        origin,
    };
    let Some(spec) = spec else {
        return Ok(ra);
    };
    let spec_at = spec.at();
    let mut f = spec_at.fields()?;
    let selector = f.take("selector");
    let target_ref = f.take("targetRef");
    let target_refs = f.take("targetRefs");
    let rules = f.take("jwtRules");
    f.finish(&["selector", "targetRef", "targetRefs", "jwtRules"])?;

    let mut refs = Vec::new();
    if let Some(t) = &target_ref {
        refs.push((t.at(), t.path.clone()));
    }
    let mut ref_count = 0;
    if let Some(t) = &target_refs {
        let items = t.at().items()?;
        ref_count = items.len();
        if items.len() > 16 {
            return Err(t.at().error(format!(
                "`targetRefs` has {} entries; at most 16 are allowed",
                items.len()
            )));
        }
        refs.extend(items);
    }
    let kinds_set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(ref_count > 0);
    if kinds_set > 1 {
        let at = selector.as_ref().map_or(spec_at, |s| s.at());
        return Err(at
            .error("only one of `targetRefs` or `selector` can be set")
            .with_help("a RequestAuthentication selects workloads by labels or attaches to gateways and services, not both"));
    }
    for (at, path) in &refs {
        check_target_ref(at.with_path(path))?;
    }
    ra.scope = if let Some(s) = &selector {
        selector_scope(s.at())?
    } else if refs.is_empty() {
        Scope::Namespace
    } else {
        Scope::TargetRefs
    };

    if let Some(r) = &rules {
        let items = r.at().items()?;
        if items.len() > 4096 {
            return Err(r.at().error(format!(
                "`jwtRules` has {} entries; at most 4096 are allowed",
                items.len()
            )));
        }
        ra.jwt_rules.reserve_exact(items.len());
        for (item, path) in items {
            ra.jwt_rules.push(parse_rule(item.with_path(&path))?);
        }
    }
    Ok(ra)
}

fn selector_scope(at: At<'_>) -> DResult<Scope> {
    let mut sf = at.fields()?;
    let labels = match sf.take("matchLabels") {
        Some(m) => m.at().string_map()?,
        None => Vec::new(),
    };
    sf.finish(&["matchLabels"])?;
    for (k, v) in &labels {
        if k.is_empty() {
            return Err(at.error(format!("empty key is not supported in selector: `{k}={v}`")));
        }
        if k.contains('*') || v.contains('*') {
            return Err(at.error(format!("wildcard is not supported in selector: `{k}={v}`")));
        }
    }
    Ok(if labels.is_empty() {
        Scope::Namespace
    } else {
        Scope::Selector(labels)
    })
}

fn check_target_ref(at: At<'_>) -> DResult<()> {
    let mut f = at.fields()?;
    let group = match f.take("group") {
        Some(g) => g.at().string()?,
        None => String::new(),
    };
    let kind = f.require("kind")?;
    let kind_text = kind.at().string()?;
    let name = f.require("name")?;
    let name_text = name.at().string()?;
    let namespace = f.take("namespace");
    f.finish(&["group", "kind", "name", "namespace"])?;
    if name_text.is_empty() {
        return Err(name.at().error("targetRef name must be set"));
    }
    if let Some(ns) = namespace
        && !ns.at().string()?.is_empty()
    {
        return Err(ns.at().error(
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        ));
    }
    let canonical = if group.is_empty() { "core" } else { &group };
    if !TARGET_KINDS
        .iter()
        .any(|(g, k)| *g == canonical && *k == kind_text)
    {
        return Err(kind
            .at()
            .error(format!(
                "targetRef must be to a Service, ServiceEntry, Gateway or GatewayClass, but was `{group}/{kind_text}`"
            ))
            .with_help("kinds: `Service` (group \"\"), `ServiceEntry` (networking.istio.io), `Gateway` and `GatewayClass` (gateway.networking.k8s.io)"));
    }
    Ok(())
}

/// A string list field whose values must be non-empty (`what` names them in the message).
fn non_empty_list(f: &mut Fields<'_>, key: &str, what: &str) -> DResult<Vec<String>> {
    let Some(field) = f.take(key) else {
        return Ok(Vec::new());
    };
    let values = field.at().strings()?;
    for v in &values {
        if v.value.is_empty() {
            return Err(v.error(format!("{what} must be non-empty string")));
        }
    }
    Ok(values.into_iter().map(|v| v.value).collect())
}

fn optional_string(f: &mut Fields<'_>, key: &str) -> DResult<Option<Str>> {
    match f.take(key) {
        None => Ok(None),
        Some(field) => Ok(Some(Str {
            value: field.at().string()?,
            path: field.path.clone(),
            pos: field.node.pos,
        })),
    }
}

fn parse_rule(at: At<'_>) -> DResult<JwtRule> {
    let mut f = at.fields()?;
    let issuer = optional_string(&mut f, "issuer")?;
    let audiences = non_empty_list(&mut f, "audiences", "audience")?;
    let jwks_uri = match optional_string(&mut f, "jwksUri")? {
        Some(u) => Some(u),
        None => optional_string(&mut f, "jwks_uri")?,
    };
    let jwks = optional_string(&mut f, "jwks")?;
    let from_headers_f = f.take("fromHeaders");
    let from_params = non_empty_list(&mut f, "fromParams", "location query")?;
    let from_cookies = non_empty_list(&mut f, "fromCookies", "cookie name")?;
    let output_payload_to_header = optional_string(&mut f, "outputPayloadToHeader")?;
    let forward_original_token = match f.take("forwardOriginalToken") {
        Some(b) => b.at().boolean()?,
        None => false,
    };
    let claim_headers_f = f.take("outputClaimToHeaders");
    let timeout = optional_string(&mut f, "timeout")?;
    let claims_f = f.take("spaceDelimitedClaims");
    f.finish(RULE_FIELDS)?;

    if let Some(i) = &issuer
        && i.value.is_empty()
    {
        return Err(i.error("`issuer` must not be empty").with_help(
            "name the token issuer (the `iss` claim), e.g. `https://accounts.example.com`",
        ));
    }
    if issuer.is_none() && jwks_uri.as_ref().is_none_or(|u| u.value.is_empty()) {
        return Err(at
            .error("issuer or jwksUri must be non-empty string")
            .with_help("add `issuer: <the token's iss>`"));
    }
    if let (Some(_), Some(j)) = (&jwks_uri, &jwks) {
        return Err(j.error("only one of `jwks` or `jwksUri` can be set"));
    }
    if let Some(u) = &jwks_uri {
        check_jwks_uri(u)?;
    }
    if let Some(j) = &jwks {
        check_jwks(j)?;
    }
    let mut from_headers = Vec::new();
    if let Some(h) = &from_headers_f {
        for (item, path) in h.at().items()? {
            let item = item.with_path(&path);
            let mut hf = item.fields()?;
            let name = hf.require("name")?;
            let name_text = name.at().string()?;
            let prefix = match hf.take("prefix") {
                Some(p) => p.at().string()?,
                None => String::new(),
            };
            hf.finish(&["name", "prefix"])?;
            if name_text.is_empty() {
                return Err(name
                    .at()
                    .error("location header name must be non-empty string"));
            }
            from_headers.push((name_text, prefix));
        }
    }
    let mut output_claim_to_headers = Vec::new();
    if let Some(c) = &claim_headers_f {
        for (item, path) in c.at().items()? {
            let item = item.with_path(&path);
            let mut cf = item.fields()?;
            let header = cf.require("header")?;
            let claim = cf.require("claim")?;
            let (header_text, claim_text) = (header.at().string()?, claim.at().string()?);
            cf.finish(&["header", "claim"])?;
            if header_text.is_empty() || claim_text.is_empty() {
                return Err(item.error(
                    "outputClaimToHeaders header and claim value must be non-empty string",
                ));
            }
            if !header_text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(header.at().error(format!(
                    "invalid header name `{header_text}`: only letters, digits, `-` and `_` are allowed"
                )));
            }
            output_claim_to_headers.push((header_text, claim_text));
        }
    }
    if let Some(t) = &timeout {
        check_timeout(t)?;
    }
    let mut space_delimited_claims = Vec::new();
    if let Some(c) = &claims_f {
        let values = c.at().strings()?;
        if values.len() > 64 {
            return Err(c.at().error(format!(
                "`spaceDelimitedClaims` has {} entries; at most 64 are allowed",
                values.len()
            )));
        }
        for v in values {
            if v.value.is_empty() {
                return Err(v.error("claim name must be non-empty string"));
            }
            space_delimited_claims.push(v.value);
        }
    }
    Ok(JwtRule {
        issuer: issuer.map(|i| i.value),
        audiences,
        jwks_uri: jwks_uri.map(|u| u.value),
        jwks: jwks.map(|j| j.value),
        from_headers,
        from_params,
        from_cookies,
        output_payload_to_header: output_payload_to_header.map(|o| o.value),
        forward_original_token,
        output_claim_to_headers,
        timeout: timeout.map(|t| t.value),
        space_delimited_claims,
    })
}

/// The CRD's rules for `jwksUri`: 1 to 2048 characters, an `http` or `https` URL with a host.
fn check_jwks_uri(u: &Str) -> DResult<()> {
    let len = u.value.chars().count();
    if len == 0 || len > 2048 {
        return Err(u.error(format!(
            "`jwksUri` must be 1 to 2048 characters long, found {len}"
        )));
    }
    let rest = u
        .value
        .strip_prefix("https://")
        .or_else(|| u.value.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => Ok(()),
        Some(_) => Err(u.error(format!("invalid `jwksUri` `{}`: no host", u.value))),
        None => Err(u
            .error(format!(
                "invalid `jwksUri` `{}`: url must have scheme http:// or https://",
                u.value
            ))
            .with_help("e.g. `https://issuer.example.com/.well-known/jwks.json`")),
    }
}

/// An inline JWKS must parse as a JSON Web Key Set (or one key): every key an object with a
/// string `kty`.
fn check_jwks(j: &Str) -> DResult<()> {
    let bad = |why: String| {
        Err(j
            .error(format!("jwks parse error: {why}"))
            .with_help("`jwks` is the JSON text of a key set: `{\"keys\": [{\"kty\": ...}]}`"))
    };
    let v: Value = match serde_json::from_str(&j.value) {
        Ok(v) => v,
        Err(e) => return bad(format!("not JSON ({e})")),
    };
    let keys: Vec<&Value> = match v.get("keys") {
        Some(Value::Array(k)) => k.iter().collect(),
        Some(_) => return bad("`keys` is not a list".into()),
        None if v.is_object() => vec![&v],
        None => return bad("not a JSON object".into()),
    };
    for (i, k) in keys.iter().enumerate() {
        if !k.get("kty").is_some_and(Value::is_string) {
            return bad(format!("key {i} has no string `kty`"));
        }
    }
    Ok(())
}

/// A duration as Istio accepts it (`5s`, `1.5s`, `300ms`, `1m30s`): at least 1 ms, in whole
/// milliseconds.
fn check_timeout(t: &Str) -> DResult<()> {
    let Some(nanos) = parse_duration(&t.value) else {
        return Err(t
            .error(format!("invalid duration `{}`", t.value))
            .with_help("write a duration such as `5s`, `1.5s` or `300ms`"));
    };
    if nanos < 1_000_000 {
        return Err(t.error("duration must be greater than 1ms"));
    }
    if nanos % 1_000_000 != 0 {
        return Err(t.error("only durations to ms precision are supported"));
    }
    Ok(())
}

/// A Go-style duration (`1h2m3.5s`, `300ms`) in nanoseconds; `None` when malformed.
fn parse_duration(s: &str) -> Option<u128> {
    const UNITS: [(&str, u128); 7] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = rest.get(..num_len)?;
        rest = rest.get(num_len..)?;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest.get(..unit_len)?;
        rest = rest.get(unit_len..)?;
        let scale = UNITS.iter().find(|(u, _)| *u == unit)?.1;
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut part = int.checked_mul(scale)?;
        let mut div = 1u128;
        let mut frac_v = 0u128;
        for c in frac.chars().take(18) {
            frac_v = frac_v * 10 + u128::from(c.to_digit(10)?);
            div *= 10;
        }
        part = part.checked_add(frac_v.checked_mul(scale)? / div)?;
        total = total.checked_add(part)?;
    }
    Some(total)
}

// ---------------------------------------------------------------------------------------
// Compiled: what a workload's `jwt_authn` accepts.

/// One `jwt_authn` provider as Istio writes it for a jwtRule: what it accepts and which
/// claims it splits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtProvider {
    /// The issuer it accepts (`None`: any).
    pub issuer: Option<String>,
    /// The audiences it accepts (empty: any).
    pub audiences: Vec<String>,
    /// `normalize_payload_in_metadata.space_delimited_claims`, sorted.
    pub split_claims: Vec<String>,
    /// The rule's inline `jwks` (raw tokens are verified against it; see [`verify_token`]).
    pub jwks: Option<String>,
    /// `ns/name` of the RequestAuthentication it comes from, for explanations.
    pub policy: String,
}

/// A RequestAuthentication's header and providers, kept for selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledRequestAuthentication {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Selector labels (`None`: the whole namespace, or the mesh from the root namespace).
    pub selector: Option<Vec<(String, String)>>,
    /// `targetRefs`: gateways and services only, never a sidecar workload.
    pub target_refs: bool,
    /// One provider per jwtRule, in rule order.
    pub providers: Vec<JwtProvider>,
}

/// Compiles RequestAuthentications for selection.
pub fn compile(set: &[RequestAuthentication]) -> Vec<CompiledRequestAuthentication> {
    set.iter()
        .map(|ra| {
            let (selector, target_refs) = match &ra.scope {
                Scope::Selector(l) => (Some(l.clone()), false),
                Scope::Namespace => (None, false),
                Scope::TargetRefs => (None, true),
            };
            let policy = format!("{}/{}", ra.namespace, ra.name);
            CompiledRequestAuthentication {
                name: ra.name.clone(),
                namespace: ra.namespace.clone(),
                selector,
                target_refs,
                providers: ra
                    .jwt_rules
                    .iter()
                    .map(|r| JwtProvider {
                        issuer: r.issuer.clone(),
                        audiences: r.audiences.clone(),
                        split_claims: r.split_claims(),
                        jwks: r.jwks.clone(),
                        policy: policy.clone(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The providers of a workload's `jwt_authn`, in Istio's order: the RequestAuthentications
/// that apply (the workload's namespace first, then the root namespace; as for
/// AuthorizationPolicy, a selector must match the labels and `targetRefs` never applies to a
/// workload), their rules sorted by issuer, ties kept in that order.
pub fn providers_for(
    set: &[CompiledRequestAuthentication],
    root_namespace: &str,
    namespace: &str,
    labels: &[(String, String)],
) -> Vec<JwtProvider> {
    let applies = |ra: &CompiledRequestAuthentication, ns: &str| {
        !ra.target_refs
            && ra.namespace == ns
            && ra.selector.as_ref().is_none_or(|sel| {
                sel.iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
    };
    let mut namespaces = vec![namespace];
    if root_namespace != namespace {
        namespaces.push(root_namespace);
    }
    let mut out: Vec<JwtProvider> = namespaces
        .iter()
        .flat_map(|ns| set.iter().filter(move |ra| applies(ra, ns)))
        .flat_map(|ra| ra.providers.iter().cloned())
        .collect();
    // Istio: `slices.SortBy(rules, issuer)` — a stable sort; a rule without issuer sorts as "".
    out.sort_by(|a, b| {
        a.issuer
            .as_deref()
            .unwrap_or("")
            .cmp(b.issuer.as_deref().unwrap_or(""))
    });
    out
}

// ---------------------------------------------------------------------------------------
// Authentication of a request's payload.

/// What reaches the authorization rules after `jwt_authn`.
#[derive(Debug, Clone, PartialEq)]
pub enum Authenticated<'r> {
    /// No payload: no token, or no `jwt_authn` on the workload.
    Anonymous,
    /// The payload as RBAC sees it (normalised).
    Payload(Cow<'r, Value>),
    /// `jwt_authn` refuses the request (see [`rejection_status`]); the reason as Envoy words it.
    Rejected(&'static str),
    /// A raw token that cannot be checked here: the request fails closed.
    Unverifiable(String),
}

/// Envoy's wording for a token whose issuer no provider accepts (`JwtUnknownIssuer`).
pub const UNKNOWN_ISSUER: &str = "Jwt issuer is not configured";
pub use crate::error::{AUDIENCE_NOT_ALLOWED, rejection_status};

/// What `jwt_authn` does with a verified payload.
///
/// - `configured` false (the input holds no RequestAuthentication at all): the payload is
///   taken as one a `jwt_authn` in front verified, and normalised as Istio always configures
///   it (`scope`, `permission`).
/// - `configured` and no provider for the workload: Istio writes no `jwt_authn`, so nothing
///   reaches the rules.
/// - Otherwise the first provider (in [`providers_for`]'s order) whose issuer and audiences
///   accept the payload normalises it; when none does, the request is refused (401, or 403
///   for audiences: [`rejection_status`]).
pub fn authenticate<'r>(
    configured: bool,
    providers: &[JwtProvider],
    payload: Option<&'r Value>,
) -> Authenticated<'r> {
    let Some(payload) = payload else {
        return Authenticated::Anonymous;
    };
    if !configured {
        return Authenticated::Payload(normalize(payload, &DEFAULT_SPACE_DELIMITED_CLAIMS));
    }
    if providers.is_empty() {
        return Authenticated::Anonymous;
    }
    let iss = payload.get("iss");
    let mut issuer_known = false;
    for p in providers {
        let issuer_ok = match (&p.issuer, iss) {
            (None, _) => true,
            (Some(want), Some(Value::String(got))) => want == got,
            (Some(_), _) => false,
        };
        if !issuer_ok {
            continue;
        }
        issuer_known = true;
        if audiences_allowed(&p.audiences, payload.get("aud")) {
            return Authenticated::Payload(normalize(payload, &p.split_claims));
        }
    }
    Authenticated::Rejected(if issuer_known {
        AUDIENCE_NOT_ALLOWED
    } else {
        UNKNOWN_ISSUER
    })
}

/// What `jwt_authn` does with a raw bearer token (a request's `jwtToken`): nothing when no
/// `jwt_authn` runs (no provider for the workload, or no RequestAuthentication in the input);
/// otherwise [`verify_token`] with the host's verifier, and without one the token cannot be
/// trusted.
pub fn authenticate_token<'r>(
    configured: bool,
    providers: &[JwtProvider],
    token: &str,
    verifier: Option<&dyn TokenVerifier>,
) -> Authenticated<'r> {
    if !configured || providers.is_empty() {
        return Authenticated::Anonymous;
    }
    let Some(verifier) = verifier else {
        return Authenticated::Unverifiable(
            "a raw `jwtToken` needs a host that verifies signatures (`palisade eval`); give `jwt`, the verified payload, instead".into(),
        );
    };
    match verify_token(token, providers, verifier) {
        Ok(p) => Authenticated::Payload(Cow::Owned(p)),
        Err(TokenError::Rejected(why)) => Authenticated::Rejected(why),
        Err(TokenError::Unverifiable(why)) => Authenticated::Unverifiable(why),
    }
}

/// `jwt_verify_lib`'s audience check: any configured audience equals any of the token's
/// (`aud` a string or a list), both compared without an `http://` / `https://` prefix and
/// without a trailing `/`. No configured audience allows every token.
fn audiences_allowed(allowed: &[String], aud: Option<&Value>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    fn bare(a: &str) -> &str {
        let a = a
            .strip_prefix("http://")
            .or_else(|| a.strip_prefix("https://"))
            .unwrap_or(a);
        a.strip_suffix('/').unwrap_or(a)
    }
    let got: Vec<&str> = match aud {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    got.iter()
        .any(|g| allowed.iter().any(|a| bare(a) == bare(g)))
}

/// Envoy's `normalize_payload_in_metadata`: each named top-level claim whose value is a
/// string becomes the list of its words split on `' '` (empty words skipped); a string with
/// no word stays as it is, every other value (lists included) is left alone, and nested
/// claims are never split. Borrowed when nothing changes, so normalising twice is a no-op.
pub fn normalize<'v, S: AsRef<str>>(payload: &'v Value, claims: &[S]) -> Cow<'v, Value> {
    let splits = |v: &Value| match v {
        Value::String(s) => s.split(' ').any(|w| !w.is_empty()),
        _ => false,
    };
    let changes = claims
        .iter()
        .any(|c| payload.get(c.as_ref()).is_some_and(splits));
    if !changes {
        return Cow::Borrowed(payload);
    }
    let mut out = payload.clone();
    if let Value::Object(map) = &mut out {
        for c in claims {
            if let Some(v) = map.get_mut(c.as_ref())
                && let Value::String(s) = v
                && s.split(' ').any(|w| !w.is_empty())
            {
                let words: Vec<Value> = s
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .map(|w| Value::String(w.to_string()))
                    .collect();
                *v = Value::Array(words);
            }
        }
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------------------
// Raw tokens: what `jwt_authn` checks before it trusts a payload.

/// Checks a token's signature: `alg` from its header, one key of the JSON Web Key Set, the
/// signing input (`header.payload`) and the decoded signature. The engine has no cryptography
/// and no clock: a host that verifies raw tokens (`palisade eval`) supplies both.
pub trait TokenVerifier {
    /// Whether `signature` is `alg`'s signature of `signing_input` under `jwk`.
    fn verify(&self, alg: &str, jwk: &Value, signing_input: &[u8], signature: &[u8]) -> bool;
    /// Seconds since the Unix epoch, for `exp` and `nbf`.
    fn now(&self) -> u64;
}

/// Why a raw token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// `jwt_authn` refuses it; Envoy's wording (see [`rejection_status`]).
    Rejected(&'static str),
    /// It cannot be checked here (the rule's keys are behind `jwksUri`): fail closed.
    Unverifiable(String),
}

/// `jwt_verify_lib`'s wording for the refusals below.
const BAD_FORMAT: &str =
    "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
const BAD_HEADER: &str = "Jwt header is an invalid JSON";
const BAD_PAYLOAD: &str = "Jwt payload is an invalid JSON";
const BAD_BASE64: &str = "Jwt is an invalid Base64url encoded";
const EXPIRED: &str = "Jwt is expired";
const NOT_YET_VALID: &str = "Jwt not yet valid";
const VERIFICATION_FAILS: &str = "Jwt verification fails";

/// The clock skew `jwt_authn` allows by default, in seconds.
const CLOCK_SKEW: u64 = 60;

/// Unpadded (or padded) base64url; `None` when malformed.
fn base64url(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
        acc &= (1 << bits) - 1;
    }
    (bits < 6).then_some(out)
}

/// What `jwt_authn` does with a raw bearer token for a workload with these providers: parse
/// it, find a provider for its issuer, check `exp`/`nbf` (60 s skew), the audiences and the
/// signature against the provider's inline `jwks`. The first provider (in
/// [`providers_for`]'s order) that accepts it gives the payload, normalised with its claims.
pub fn verify_token(
    token: &str,
    providers: &[JwtProvider],
    verifier: &dyn TokenVerifier,
) -> Result<Value, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Rejected(BAD_FORMAT));
    };
    let decode = |part: &str| base64url(part).ok_or(TokenError::Rejected(BAD_BASE64));
    let header: Value =
        serde_json::from_slice(&decode(h)?).map_err(|_| TokenError::Rejected(BAD_HEADER))?;
    let payload: Value =
        serde_json::from_slice(&decode(p)?).map_err(|_| TokenError::Rejected(BAD_PAYLOAD))?;
    let signature = decode(s)?;
    if !payload.is_object() {
        return Err(TokenError::Rejected(BAD_PAYLOAD));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let signing_input = token.get(..h.len() + 1 + p.len()).unwrap_or("").as_bytes();
    let iss = payload.get("iss").and_then(Value::as_str);
    let now = verifier.now();
    let mut refusal = UNKNOWN_ISSUER;
    for provider in providers {
        if provider.issuer.as_deref().is_some_and(|i| Some(i) != iss) {
            continue;
        }
        let number = |k: &str| payload.get(k).and_then(Value::as_f64);
        #[expect(
            clippy::cast_precision_loss,
            reason = "seconds since 1970 fit a double"
        )]
        let (now_f, skew) = (now as f64, CLOCK_SKEW as f64);
        if number("exp").is_some_and(|exp| exp + skew < now_f) {
            refusal = EXPIRED;
            continue;
        }
        if number("nbf").is_some_and(|nbf| nbf > now_f + skew) {
            refusal = NOT_YET_VALID;
            continue;
        }
        if !audiences_allowed(&provider.audiences, payload.get("aud")) {
            refusal = AUDIENCE_NOT_ALLOWED;
            continue;
        }
        let Some(jwks) = &provider.jwks else {
            return Err(TokenError::Unverifiable(format!(
                "the jwtRule for issuer `{}` in {} has no inline `jwks`; Palisade does not fetch `jwksUri`",
                provider.issuer.as_deref().unwrap_or("*"),
                provider.policy
            )));
        };
        let set: Value = serde_json::from_str(jwks).unwrap_or(Value::Null);
        let keys: Vec<&Value> = match set.get("keys") {
            Some(Value::Array(keys)) => keys.iter().collect(),
            Some(_) => Vec::new(),
            None => vec![&set],
        };
        let ok = keys.iter().any(|k| {
            kid.is_none_or(|kid| {
                k.get("kid")
                    .and_then(Value::as_str)
                    .is_none_or(|x| x == kid)
            }) && verifier.verify(alg, k, signing_input, &signature)
        });
        if ok {
            return Ok(normalize(&payload, &provider.split_claims).into_owned());
        }
        refusal = VERIFICATION_FAILS;
    }
    Err(TokenError::Rejected(refusal))
}
