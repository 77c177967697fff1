//! Istio's translation: each rule of each AuthorizationPolicy becomes a [`CompiledRule`],
//! `from` and `to` as ORs of ANDs of [`Pred`]s and `when` as an AND, once for HTTP and once
//! for TCP (Istio's downgrade: an ALLOW rule using an HTTP-only field is dropped on TCP; a
//! DENY or AUDIT rule loses only those fields).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::authz::{Action, AuthorizationPolicy, ConditionKey, Operation, Rule, Scope, Source};
use crate::decision::RuleRef;
use crate::options::Options;
use crate::pattern::{Glob, GlobPart, StrMatch, Template, parse_cidr};
use crate::predicate::{Attr, Body, Pred, Values};
use crate::request::Protocol;

/// One compiled rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledRule {
    /// Its name.
    pub rule: Arc<RuleRef>,
    /// The body on HTTP; `None` never happens today (kept for symmetry).
    pub http: Option<Body>,
    /// The body on TCP; `None` when Istio drops the rule on TCP (ALLOW with HTTP fields).
    pub tcp: Option<Body>,
}

/// A policy's header, kept for selection and reporting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledPolicy {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Action.
    pub action: Action,
    /// The provider a CUSTOM policy asks.
    pub provider: Option<String>,
    /// Selector labels (`None` for namespace-wide, `Some([])` never).
    pub selector: Option<Vec<(String, String)>>,
    /// Only for gateways/waypoints (`targetRefs`): never applies to a workload.
    pub target_refs: bool,
    /// Dry-run.
    pub dry_run: bool,
    /// The indices of its rules in the engine's rules (`Engine::rules`).
    pub rules: Vec<u32>,
    /// Source file and line, for `check`.
    pub origin: String,
}

/// Translates one policy: its rules are appended to `rules`, its header returned.
pub(crate) fn translate(
    p: &AuthorizationPolicy,
    options: &Options,
    rules: &mut Vec<CompiledRule>,
) -> CompiledPolicy {
    let mut ids = Vec::new();
    // CUSTOM rules are named as Istio names them for the ext_authz filter's metadata match;
    // those of an undeclared provider become DENY rules with Istio's suffix.
    let prefix = match (&p.provider, p.action) {
        (Some(provider), Action::Custom) => format!("istio-ext-authz-{provider}-"),
        _ => String::new(),
    };
    let bad = p.action == Action::Custom
        && !p.dry_run
        && !options
            .extension_providers
            .iter()
            .any(|e| Some(&e.name) == p.provider.as_ref());
    let suffix = if bad {
        "-deny-due-to-bad-CUSTOM-action"
    } else {
        ""
    };
    for (i, rule) in p.rules.iter().flatten().enumerate() {
        let id = format!(
            "{prefix}ns[{}]-policy[{}]-rule[{i}]{suffix}",
            p.namespace, p.name
        );
        let rref = RuleRef {
            kind: "AuthorizationPolicy".into(),
            namespace: p.namespace.clone(),
            policy: p.name.clone(),
            rule: i,
            id,
        };
        let http = compile_rule(rule, &p.namespace, options);
        let tcp = tcp_body(&http, p.action);
        ids.push(u32::try_from(rules.len()).unwrap_or(u32::MAX));
        rules.push(CompiledRule {
            rule: Arc::new(rref),
            http: Some(http),
            tcp,
        });
    }
    let (selector, target_refs) = match &p.scope {
        Scope::Selector(l) => (Some(l.clone()), false),
        Scope::Namespace => (None, false),
        Scope::TargetRefs => (None, true),
    };
    CompiledPolicy {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        action: p.action,
        provider: p.provider.clone(),
        selector,
        target_refs,
        dry_run: p.dry_run,
        rules: ids,
        origin: format!("{}:{}", p.origin.file, p.origin.line),
    }
}

/// Istio's TCP downgrade: ALLOW rules with any HTTP-only predicate are dropped; DENY and
/// AUDIT rules lose those predicates.
fn tcp_body(http: &Body, action: Action) -> Option<Body> {
    let has_http = http
        .from
        .iter()
        .chain(http.to.iter())
        .flatten()
        .chain(http.when.iter())
        .any(|p| p.attr.http_only());
    match action {
        Action::Allow if has_http => None,
        Action::Allow => Some(http.clone()),
        Action::Deny | Action::Audit | Action::Custom => {
            let strip = |c: &Vec<Pred>| -> Vec<Pred> {
                c.iter().filter(|p| !p.attr.http_only()).cloned().collect()
            };
            Some(Body {
                from: http.from.iter().map(strip).collect(),
                to: http.to.iter().map(strip).collect(),
                when: strip(&http.when),
            })
        }
    }
}

fn compile_rule(rule: &Rule, namespace: &str, o: &Options) -> Body {
    Body {
        from: rule
            .from
            .iter()
            .map(|s| compile_source(s, namespace, o))
            .collect(),
        to: rule.to.iter().map(compile_operation).collect(),
        when: rule
            .when
            .iter()
            .flat_map(|c| {
                let mut preds = Vec::new();
                let vals: Vec<&str> = c.values.iter().map(|s| s.value.as_str()).collect();
                let nots: Vec<&str> = c.not_values.iter().map(|s| s.value.as_str()).collect();
                if !vals.is_empty() {
                    preds.push(condition_pred(&c.key, &vals, false, namespace, o));
                }
                if !nots.is_empty() {
                    preds.push(condition_pred(&c.key, &nots, true, namespace, o));
                }
                preds
            })
            .collect(),
    }
}

fn strs(v: &[crate::yaml::Str]) -> Vec<&str> {
    v.iter().map(|s| s.value.as_str()).collect()
}

fn push(out: &mut Vec<Pred>, attr: Attr, values: Values, negate: bool, empty: bool) {
    if !empty {
        out.push(Pred {
            attr,
            values,
            negate,
        });
    }
}

fn compile_source(s: &Source, namespace: &str, o: &Options) -> Vec<Pred> {
    let mut out = Vec::new();
    let pairs: [(&[crate::yaml::Str], bool); 2] =
        [(&s.principals, false), (&s.not_principals, true)];
    for (v, neg) in pairs {
        push(
            &mut out,
            Attr::Principal,
            principal_values(&strs(v), o),
            neg,
            v.is_empty(),
        );
    }
    for (v, neg) in [
        (&s.request_principals, false),
        (&s.not_request_principals, true),
    ] {
        push(
            &mut out,
            Attr::RequestPrincipal,
            iss_sub_values(&strs(v)),
            neg,
            v.is_empty(),
        );
    }
    for (v, neg) in [(&s.namespaces, false), (&s.not_namespaces, true)] {
        push(
            &mut out,
            Attr::SourceNamespace,
            namespace_values(&strs(v)),
            neg,
            v.is_empty(),
        );
    }
    for (v, neg) in [
        (&s.service_accounts, false),
        (&s.not_service_accounts, true),
    ] {
        push(
            &mut out,
            Attr::Principal,
            service_account_values(&strs(v), namespace),
            neg,
            v.is_empty(),
        );
    }
    for (v, neg) in [(&s.trust_domains, false), (&s.not_trust_domains, true)] {
        push(
            &mut out,
            Attr::Principal,
            trust_domain_values(&strs(v)),
            neg,
            v.is_empty(),
        );
    }
    for (v, neg) in [(&s.ip_blocks, false), (&s.not_ip_blocks, true)] {
        push(
            &mut out,
            Attr::SourceIp,
            cidr_values(&strs(v)),
            neg,
            v.is_empty(),
        );
    }
    for (v, neg) in [
        (&s.remote_ip_blocks, false),
        (&s.not_remote_ip_blocks, true),
    ] {
        push(
            &mut out,
            Attr::RemoteIp,
            cidr_values(&strs(v)),
            neg,
            v.is_empty(),
        );
    }
    out
}

fn compile_operation(op: &Operation) -> Vec<Pred> {
    let mut out = Vec::new();
    for (v, neg) in [(&op.hosts, false), (&op.not_hosts, true)] {
        let vals = v
            .iter()
            .map(|s| StrMatch::istio(&s.value.to_ascii_lowercase(), StrMatch::Present))
            .collect();
        push(&mut out, Attr::Host, Values::Str(vals), neg, v.is_empty());
    }
    for (v, neg) in [(&op.ports, false), (&op.not_ports, true)] {
        push(
            &mut out,
            Attr::DestinationPort,
            port_values(&strs(v)),
            neg,
            v.is_empty(),
        );
    }
    for (v, neg) in [(&op.methods, false), (&op.not_methods, true)] {
        let vals = v
            .iter()
            .map(|s| StrMatch::istio(&s.value, StrMatch::Present))
            .collect();
        push(&mut out, Attr::Method, Values::Str(vals), neg, v.is_empty());
    }
    for (v, neg) in [(&op.paths, false), (&op.not_paths, true)] {
        push(
            &mut out,
            Attr::Path,
            path_values(&strs(v)),
            neg,
            v.is_empty(),
        );
    }
    out
}

fn condition_pred(key: &ConditionKey, v: &[&str], negate: bool, ns: &str, o: &Options) -> Pred {
    let (attr, values) = match key {
        ConditionKey::RequestHeader(name) => (
            Attr::Header(name.clone()),
            Values::Str(
                v.iter()
                    .map(|s| StrMatch::istio(s, StrMatch::Present))
                    .collect(),
            ),
        ),
        ConditionKey::SourceIp => (Attr::SourceIp, cidr_values(v)),
        ConditionKey::RemoteIp => (Attr::RemoteIp, cidr_values(v)),
        ConditionKey::DestinationIp => (Attr::DestinationIp, cidr_values(v)),
        ConditionKey::SourceNamespace => (Attr::SourceNamespace, namespace_values(v)),
        ConditionKey::SourcePrincipal => (Attr::Principal, principal_values(v, o)),
        ConditionKey::SourceServiceAccount => (Attr::Principal, service_account_values(v, ns)),
        ConditionKey::SourceTrustDomain => (Attr::Principal, trust_domain_values(v)),
        ConditionKey::RequestAuthPrincipal => (Attr::RequestPrincipal, iss_sub_values(v)),
        ConditionKey::RequestAuthAudiences => (Attr::Claim(vec!["aud".into()]), claim_values(v)),
        ConditionKey::RequestAuthPresenter => (Attr::Claim(vec!["azp".into()]), claim_values(v)),
        ConditionKey::RequestAuthClaims(path) => (Attr::Claim(path.clone()), claim_values(v)),
        ConditionKey::DestinationPort => (Attr::DestinationPort, port_values(v)),
        ConditionKey::ConnectionSni => (
            Attr::Sni,
            Values::Str(
                v.iter()
                    .map(|s| StrMatch::istio(s, StrMatch::NonEmpty))
                    .collect(),
            ),
        ),
        ConditionKey::ExperimentalMetadata(_) => (Attr::Missing, Values::Nothing),
    };
    Pred {
        attr,
        values,
        negate,
    }
}

fn claim_values(v: &[&str]) -> Values {
    Values::Str(
        v.iter()
            .map(|s| StrMatch::istio(s, StrMatch::NonEmpty))
            .collect(),
    )
}

fn cidr_values(v: &[&str]) -> Values {
    Values::Cidr(v.iter().filter_map(|s| parse_cidr(s)).collect())
}

fn port_values(v: &[&str]) -> Values {
    Values::Port(v.iter().filter_map(|s| s.parse().ok()).collect())
}

fn path_values(v: &[&str]) -> Values {
    Values::Str(
        v.iter()
            .map(|s| {
                if s.contains('{') {
                    StrMatch::Template(Template::parse(s))
                } else {
                    StrMatch::istio(s, StrMatch::NonEmpty)
                }
            })
            .collect(),
    )
}

/// Principals: `spiffe://` + value (exact or prefix), suffix as regex `spiffe://.*<s>`, `*` any
/// non-empty identity; trust-domain aliases expand each value.
fn principal_values(v: &[&str], o: &Options) -> Values {
    let mut out = Vec::new();
    for value in v {
        for p in with_trust_domain_aliases(value, o) {
            let m = if p == "*" {
                StrMatch::NonEmpty
            } else if let Some(prefix) = p.strip_suffix('*') {
                StrMatch::Prefix(format!("spiffe://{prefix}"))
            } else if let Some(suffix) = p.strip_prefix('*') {
                StrMatch::Glob(Glob(vec![
                    GlobPart::Lit("spiffe://".into()),
                    GlobPart::Star,
                    GlobPart::Lit(suffix.to_string()),
                ]))
            } else {
                StrMatch::Exact(format!("spiffe://{p}"))
            };
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Values::Str(out)
}

/// Istio's trust-domain migration: a principal `<td>/ns/<ns>/sa/<sa>` whose trust domain is
/// the mesh's, one of its aliases, or `cluster.local` is written once for every one of them.
fn with_trust_domain_aliases(principal: &str, o: &Options) -> Vec<String> {
    let parts: Vec<&str> = principal.split('/').collect();
    let (Some(td), 5) = (parts.first(), parts.len()) else {
        return vec![principal.to_string()];
    };
    if *td == "*" || o.trust_domain_aliases.is_empty() {
        return vec![principal.to_string()];
    }
    let mut domains = vec![o.trust_domain.as_str()];
    domains.extend(o.trust_domain_aliases.iter().map(String::as_str));
    let known = domains.iter().any(|d| td_match(td, d)) || *td == "cluster.local";
    if !known {
        return vec![principal.to_string()];
    }
    let rest = principal.get(td.len()..).unwrap_or("");
    let mut out: Vec<String> = Vec::new();
    for d in domains {
        let p = if td_match(td, d) {
            principal.to_string()
        } else {
            format!("{d}{rest}")
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// A policy's trust domain, possibly `*x` or `x*`, against a concrete one.
fn td_match(pattern: &str, td: &str) -> bool {
    if let Some(s) = pattern.strip_prefix('*') {
        td.ends_with(s)
    } else if let Some(p) = pattern.strip_suffix('*') {
        td.starts_with(p)
    } else {
        pattern == td
    }
}

/// Trust domains: `prefix: spiffe://<td>/`; `td*` / `*td` as regex `spiffe://td[^/]*/.*`
/// (`spiffe://[^/]*td/.*`); `*` as `prefix: spiffe://`.
fn trust_domain_values(v: &[&str]) -> Values {
    Values::Str(
        v.iter()
            .map(|td| {
                if *td == "*" {
                    StrMatch::Prefix("spiffe://".into())
                } else if let Some(p) = td.strip_suffix('*') {
                    StrMatch::Glob(Glob(vec![
                        GlobPart::Lit(format!("spiffe://{p}")),
                        GlobPart::NoSlash,
                        GlobPart::Lit("/".into()),
                        GlobPart::Star,
                    ]))
                } else if let Some(s) = td.strip_prefix('*') {
                    StrMatch::Glob(Glob(vec![
                        GlobPart::Lit("spiffe://".into()),
                        GlobPart::NoSlash,
                        GlobPart::Lit(format!("{s}/")),
                        GlobPart::Star,
                    ]))
                } else {
                    StrMatch::Prefix(format!("spiffe://{td}/"))
                }
            })
            .collect(),
    )
}

/// Namespaces: regex `.*/ns/<ns>/.*` over the principal, `*` pieces as `.*`.
fn namespace_values(v: &[&str]) -> Values {
    Values::Str(
        v.iter()
            .map(|ns| {
                let text = format!("*/ns/{ns}/*");
                let pieces: Vec<&str> = text.split('*').collect();
                StrMatch::Glob(Glob(Glob::from_star_text(&pieces)))
            })
            .collect(),
    )
}

/// Service accounts: regex `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`, as four globs.
fn service_account_values(v: &[&str], namespace: &str) -> Values {
    let mut out = Vec::new();
    for sa in v {
        let (ns, name) = sa.split_once('/').unwrap_or((namespace, sa));
        let head = [
            GlobPart::Lit("spiffe://".into()),
            GlobPart::Plus,
            GlobPart::Lit(format!("/ns/{ns}/")),
        ];
        for middle in [false, true] {
            for tail in [false, true] {
                let mut parts = head.to_vec();
                if middle {
                    parts.push(GlobPart::Plus);
                    parts.push(GlobPart::Lit(format!("/sa/{name}")));
                } else {
                    parts.push(GlobPart::Lit(format!("sa/{name}")));
                }
                if tail {
                    parts.push(GlobPart::Lit("/".into()));
                    parts.push(GlobPart::Plus);
                }
                out.push(StrMatch::Glob(Glob(parts)));
            }
        }
    }
    Values::Str(out)
}

/// Request principals `iss/sub`, split at the last `/`, as Istio's generator does.
fn iss_sub_values(v: &[&str]) -> Values {
    let any = || StrMatch::NonEmpty;
    Values::IssSub(
        v.iter()
            .map(|s| {
                if *s == "*" {
                    (any(), any())
                } else if let Some(prefix) = s.strip_suffix('*') {
                    match prefix.rsplit_once('/') {
                        Some((iss, "")) => (StrMatch::Exact(iss.into()), any()),
                        Some((iss, sub)) => {
                            (StrMatch::Exact(iss.into()), StrMatch::Prefix(sub.into()))
                        }
                        None => (StrMatch::Prefix(prefix.into()), any()),
                    }
                } else if let Some(suffix) = s.strip_prefix('*') {
                    match suffix.rsplit_once('/') {
                        Some(("", sub)) => (any(), StrMatch::Exact(sub.into())),
                        Some((iss, sub)) => {
                            (StrMatch::Suffix(iss.into()), StrMatch::Exact(sub.into()))
                        }
                        None => (any(), StrMatch::Suffix(suffix.into())),
                    }
                } else {
                    match s.rsplit_once('/') {
                        Some((iss, sub)) => {
                            (StrMatch::Exact(iss.into()), StrMatch::Exact(sub.into()))
                        }
                        None => (StrMatch::Exact((*s).into()), StrMatch::Exact(String::new())),
                    }
                }
            })
            .collect(),
    )
}

/// The body of rule `id` on `proto`, when the rule exists on that protocol.
pub(crate) fn body_of(rules: &[CompiledRule], id: u32, proto: Protocol) -> Option<&Body> {
    let r = rules.get(id as usize)?;
    match proto {
        Protocol::Http => r.http.as_ref(),
        Protocol::Tcp => r.tcp.as_ref(),
    }
}
