//! Compilation: policies become predicates over request attributes, grouped per workload
//! into indexed rule sets, and [`Engine::decide`] combines them.
//!
//! Each rule of each AuthorizationPolicy becomes a [`CRule`]: `from` and `to` as ORs of ANDs of
//! [`Pred`]s and `when` as an AND, once for HTTP and once for TCP (Istio's downgrade: an ALLOW
//! rule using an HTTP-only field is dropped on TCP; a DENY or AUDIT rule loses only those
//! fields). A [`RuleSet`] holds the rules of one group (DENY, ALLOW, AUDIT, dry-run ALLOW,
//! dry-run DENY) for one workload and protocol, sorted in Envoy's order (by policy name, the
//! order in which RBAC reports the effective policy), with an [`Index`]: every rule is
//! filed under one necessary condition — an exact, prefix or suffix string of its most
//! selective attribute, a CIDR, a port — so a decision looks up the request's values and
//! evaluates only the rules that can match, whatever the number of rules.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::authn::{self, Authenticated};
use crate::authz::{Action, AuthorizationPolicy, ConditionKey, Operation, Rule, Scope, Source};
use crate::decision::{CustomCheck, Decision, RuleRef, ShadowResult, Step, Verdict};
use crate::diag::Errors;
use crate::inventory::{AddressOwner, Inventory};
use crate::netpol::{self, CompiledNetwork};
use crate::normalize::{normalize, strip_query};
use crate::pattern::{Glob, GlobPart, StrMatch, Template, parse_cidr};
use crate::request::{ExtAuthzAnswer, Protocol, Request, WorkloadRef};
use crate::{Options, PolicySet};

/// The request attribute a predicate tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Attr {
    /// The peer certificate's URI SAN; false without mTLS.
    Principal,
    /// The namespace part of the peer principal (`…/ns/<ns>/…`); false without mTLS.
    SourceNamespace,
    /// The JWT `iss` and `sub` pair.
    RequestPrincipal,
    /// The direct peer address.
    SourceIp,
    /// The original client address.
    RemoteIp,
    /// The local (destination) address.
    DestinationIp,
    /// The local (destination) port.
    DestinationPort,
    /// `:authority`, lower-cased.
    Host,
    /// `:method`.
    Method,
    /// The normalised path without query.
    Path,
    /// A request header (lower-case name), each value separately.
    Header(String),
    /// A JWT claim by path: a string, or any string of a list.
    Claim(Vec<String>),
    /// The TLS SNI.
    Sni,
    /// Envoy dynamic metadata, which Palisade's hosts do not carry: never present.
    Missing,
}

impl Attr {
    fn http_only(&self) -> bool {
        matches!(
            self,
            Attr::RequestPrincipal
                | Attr::Host
                | Attr::Method
                | Attr::Path
                | Attr::Header(_)
                | Attr::Claim(_)
        )
    }
}

/// The values a predicate accepts (ORed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Values {
    /// String matchers.
    Str(Vec<StrMatch>),
    /// Address ranges.
    Cidr(Vec<IpNet>),
    /// Port numbers.
    Port(Vec<u16>),
    /// JWT `(iss, sub)` matcher pairs.
    IssSub(Vec<(StrMatch, StrMatch)>),
    /// Matches nothing (attribute never present).
    Nothing,
}

/// "The attribute matches one of the values", possibly negated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pred {
    /// What is tested.
    pub attr: Attr,
    /// The accepted values.
    pub values: Values,
    /// `not*` fields and `notValues`.
    pub negate: bool,
}

/// The compiled body of a rule: any `from` AND any `to` AND every `when`.
/// An empty `from`/`to` list means "any"; an empty inner AND is true.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// ORed sources, each an AND of predicates.
    pub from: Vec<Vec<Pred>>,
    /// ORed operations, each an AND of predicates.
    pub to: Vec<Vec<Pred>>,
    /// ANDed conditions.
    pub when: Vec<Pred>,
}

/// One compiled rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CRule {
    /// Its name.
    pub rule: Arc<RuleRef>,
    /// The body on HTTP; `None` never happens today (kept for symmetry).
    pub http: Option<Body>,
    /// The body on TCP; `None` when Istio drops the rule on TCP (ALLOW with HTTP fields).
    pub tcp: Option<Body>,
}

/// A policy's header, kept for selection and reporting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CPolicy {
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
    /// The indices of its rules in [`Engine::rules`].
    pub rules: Vec<u32>,
    /// Source file and line, for `check`.
    pub origin: String,
}

/// A string-keyed index with exact, prefix and suffix keys; prefix and suffix keys are
/// looked up by every length that occurs (few), so lookups cost a handful of hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrIndex {
    exact: FxHashMap<String, Vec<u32>>,
    prefix: FxHashMap<String, Vec<u32>>,
    prefix_lens: Vec<usize>,
    suffix: FxHashMap<String, Vec<u32>>,
    suffix_lens: Vec<usize>,
}

impl StrIndex {
    fn add(&mut self, key: &Key, id: u32) {
        match key {
            Key::Exact(s) => self.exact.entry(s.clone()).or_default().push(id),
            Key::Prefix(s) => {
                self.prefix.entry(s.clone()).or_default().push(id);
                if !self.prefix_lens.contains(&s.len()) {
                    self.prefix_lens.push(s.len());
                    self.prefix_lens.sort_unstable();
                }
            }
            Key::Suffix(s) => {
                self.suffix.entry(s.clone()).or_default().push(id);
                if !self.suffix_lens.contains(&s.len()) {
                    self.suffix_lens.push(s.len());
                    self.suffix_lens.sort_unstable();
                }
            }
            Key::Cidr(_) | Key::Port(_) => {}
        }
    }

    fn lookup(&self, v: &str, out: &mut Candidates) {
        if let Some(ids) = self.exact.get(v) {
            out.extend_from_slice(ids);
        }
        for &l in &self.prefix_lens {
            if l > v.len() {
                break;
            }
            if let Some(ids) = v.get(..l).and_then(|p| self.prefix.get(p)) {
                out.extend_from_slice(ids);
            }
        }
        for &l in &self.suffix_lens {
            if l > v.len() {
                break;
            }
            if let Some(ids) = v.get(v.len() - l..).and_then(|s| self.suffix.get(s)) {
                out.extend_from_slice(ids);
            }
        }
    }
}

/// An index over address ranges: one hash table per prefix length that occurs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrIndex {
    nets: FxHashMap<IpNet, Vec<u32>>,
    lens: Vec<(bool, u8)>,
}

impl CidrIndex {
    fn add(&mut self, net: IpNet, id: u32) {
        let k = (net.addr().is_ipv4(), net.prefix_len());
        if !self.lens.contains(&k) {
            self.lens.push(k);
        }
        self.nets.entry(net.trunc()).or_default().push(id);
    }

    fn lookup(&self, ip: IpAddr, out: &mut Candidates) {
        for &(v4, len) in &self.lens {
            if v4 != ip.is_ipv4() {
                continue;
            }
            if let Ok(net) = IpNet::new(ip, len)
                && let Some(ids) = self.nets.get(&net.trunc())
            {
                out.extend_from_slice(ids);
            }
        }
    }
}

/// An index key: a necessary condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Cidr(IpNet),
    Port(u16),
}

/// Attributes that can anchor a rule in the index, most selective first.
const ANCHORS: &[Attr] = &[
    Attr::Path,
    Attr::Principal,
    Attr::SourceNamespace,
    Attr::Host,
    Attr::Sni,
    Attr::RemoteIp,
    Attr::SourceIp,
    Attr::DestinationIp,
    Attr::Method,
    Attr::DestinationPort,
];

/// The index of one rule set: per anchor attribute a string, CIDR or port table, plus the
/// rules no index can narrow (always evaluated).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    strs: Vec<(Attr, StrIndex)>,
    cidrs: Vec<(Attr, CidrIndex)>,
    ports: FxHashMap<u16, Vec<u32>>,
    always: Vec<u32>,
}

/// The rules of one group for one workload and protocol, in Envoy's evaluation order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    /// Indices into [`Engine::rules`], sorted by rule id (Envoy's order).
    pub rules: Vec<u32>,
    /// Positions in `rules`, by anchor.
    pub index: Index,
}

/// The groups for one protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    /// Enforced DENY rules.
    pub deny: RuleSet,
    /// Enforced ALLOW rules.
    pub allow: RuleSet,
    /// AUDIT rules.
    pub audit: RuleSet,
    /// Dry-run ALLOW rules.
    pub shadow_allow: RuleSet,
    /// Dry-run DENY rules.
    pub shadow_deny: RuleSet,
    /// Whether any enforced ALLOW policy applies (even one without rules).
    pub has_allow: bool,
    /// Whether any dry-run ALLOW policy applies.
    pub has_shadow_allow: bool,
    /// Whether any dry-run DENY policy applies.
    pub has_shadow_deny: bool,
    /// CUSTOM rules, one group per provider, sorted by provider name (Istio's filter order).
    pub custom: Vec<CustomGroup>,
}

/// The CUSTOM rules of one provider for one workload and protocol: in Envoy, an RBAC filter
/// (the enforced rules as DENY shadow rules, the dry-run ones as enforced DENY rules) followed
/// by the provider's `ext_authz` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomGroup {
    /// The provider's name.
    pub provider: String,
    /// Whether the mesh declares the provider. When it does not, Istio generates the enforced
    /// rules as DENY rules (`…-deny-due-to-bad-CUSTOM-action`) and no `ext_authz` filter.
    pub declared: bool,
    /// Rules of enforced policies: a match asks the provider.
    pub enforced: RuleSet,
    /// Rules of dry-run policies. Istio master puts them in the RBAC filter's enforced `rules`
    /// with action DENY, so a match is denied there, before the provider is asked.
    pub dry_run: RuleSet,
}

/// Everything that applies to one workload, indexed for both protocols.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadView {
    /// HTTP groups.
    pub http: Groups,
    /// TCP groups.
    pub tcp: Groups,
    /// Names (`ns/name`) of the policies that apply, for summaries.
    pub policies: Vec<String>,
    /// The workload's `jwt_authn` providers, from the RequestAuthentications that apply, in
    /// Istio's order (see [`authn::providers_for`]).
    pub jwt_providers: Vec<authn::JwtProvider>,
}

/// The compiled, indexed policy set: decide requests, or encode it as a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engine {
    /// The options it was compiled with.
    pub options: Options,
    /// AuthorizationPolicies.
    pub policies: Vec<CPolicy>,
    /// All rules.
    pub rules: Vec<CRule>,
    /// The inventory.
    pub inventory: Inventory,
    /// A view per inventory workload (same order as `inventory.workloads`).
    pub views: Vec<WorkloadView>,
    /// NetworkPolicies.
    pub network: CompiledNetwork,
    /// ContainerPolicies (decided by [`Engine::decide_container`]).
    pub container: Vec<crate::container::ContainerPolicy>,
    /// RequestAuthentications: which workloads run `jwt_authn` and with which providers.
    /// Empty when the input holds none (see [`authn::authenticate`]).
    pub authentication: Vec<authn::CRequestAuthentication>,
    /// Views built for destinations described inline (namespace and labels, not an inventory
    /// workload), kept so that [`Engine::decide`] builds each one once. Not part of the
    /// compiled policy: not encoded in bundles, not compared, empty in a clone.
    #[serde(skip)]
    pub inline_views: ViewCache,
}

/// A bounded cache of views for inline destinations (see [`Engine::inline_views`]): at most
/// [`ViewCache::CAPACITY`] entries, emptied when full. Looked up by a hash of the namespace and
/// labels and checked against them, so a hit allocates nothing. Shared between threads behind
/// a mutex; a poisoned lock only means the view is built again.
#[derive(Default)]
pub struct ViewCache(std::sync::Mutex<ViewMap>);

/// Views by the hash of their destination, each with the destination it was built for.
type ViewMap = FxHashMap<u64, Vec<(InlineKey, Arc<WorkloadView>)>>;

/// An inline destination: its namespace and its labels, sorted.
type InlineKey = (String, Vec<(String, String)>);

impl ViewCache {
    /// The most views kept.
    pub const CAPACITY: usize = 1024;

    /// How many views are kept now.
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.values().map(Vec::len).sum())
    }

    /// Whether no view is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The view for a destination, built by `build` when it is not kept yet.
    fn get_or_build(
        &self,
        namespace: &str,
        labels: &std::collections::BTreeMap<String, String>,
        build: impl FnOnce(&str, &[(String, String)]) -> WorkloadView,
    ) -> Arc<WorkloadView> {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        namespace.hash(&mut h);
        labels.hash(&mut h);
        let hash = h.finish();
        let same = |(ns, l): &InlineKey| {
            ns == namespace
                && l.len() == labels.len()
                && l.iter()
                    .zip(labels)
                    .all(|((a, b), (c, d))| a == c && b == d)
        };
        if let Ok(map) = self.0.lock()
            && let Some((_, v)) = map.get(&hash).and_then(|e| e.iter().find(|(k, _)| same(k)))
        {
            return Arc::clone(v);
        }
        let key: InlineKey = (
            namespace.to_string(),
            labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        );
        let view = Arc::new(build(&key.0, &key.1));
        if let Ok(mut map) = self.0.lock() {
            if map.values().map(Vec::len).sum::<usize>() >= Self::CAPACITY {
                map.clear();
            }
            map.entry(hash).or_default().push((key, Arc::clone(&view)));
        }
        view
    }
}

impl Clone for ViewCache {
    fn clone(&self) -> Self {
        ViewCache::default()
    }
}

impl PartialEq for ViewCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ViewCache {}

impl std::fmt::Debug for ViewCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ViewCache({} views)", self.len())
    }
}

/// Compiles a validated policy set.
pub fn compile(set: &PolicySet, options: &Options) -> Result<Engine, Errors> {
    crate::extauthz::validate_all(&options.extension_providers).map_err(|e| {
        Errors::one(
            crate::diag::Diagnostic::new(format!("invalid extension providers: {e}"))
                .with_help("fix the mesh's `extensionProviders`"),
        )
    })?;
    let mut engine = Engine {
        options: options.clone(),
        inventory: set.inventory.clone(),
        ..Engine::default()
    };
    for p in &set.authorization {
        add_policy(&mut engine, p);
    }
    engine.network = netpol::compile(&set.network, &set.inventory)?;
    engine.container.clone_from(&set.container);
    engine.authentication = authn::compile(&set.authentication);
    let views: Vec<WorkloadView> = engine
        .inventory
        .workloads
        .iter()
        .map(|w| engine.build_view(&w.namespace, &w.labels_vec()))
        .collect();
    engine.views = views;
    Ok(engine)
}

fn add_policy(engine: &mut Engine, p: &AuthorizationPolicy) {
    let mut ids = Vec::new();
    // CUSTOM rules are named as Istio names them for the ext_authz filter's metadata match;
    // those of an undeclared provider become DENY rules with Istio's suffix.
    let prefix = match (&p.provider, p.action) {
        (Some(provider), Action::Custom) => format!("istio-ext-authz-{provider}-"),
        _ => String::new(),
    };
    let bad = p.action == Action::Custom
        && !p.dry_run
        && !engine
            .options
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
        let http = compile_rule(rule, &p.namespace, &engine.options);
        let tcp = tcp_body(&http, p.action);
        ids.push(u32::try_from(engine.rules.len()).unwrap_or(u32::MAX));
        engine.rules.push(CRule {
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
    engine.policies.push(CPolicy {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        action: p.action,
        provider: p.provider.clone(),
        selector,
        target_refs,
        dry_run: p.dry_run,
        rules: ids,
        origin: format!("{}:{}", p.origin.file, p.origin.line),
    });
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

// ---------------------------------------------------------------------------------------
// Views and indexes.

impl crate::inventory::Workload {
    fn labels_vec(&self) -> Vec<(String, String)> {
        self.labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Engine {
    /// Whether a policy applies to a workload in `namespace` with `labels`.
    fn applies(&self, p: &CPolicy, namespace: &str, labels: &[(String, String)]) -> bool {
        if p.target_refs {
            return false;
        }
        if p.namespace != namespace && p.namespace != self.options.root_namespace {
            return false;
        }
        match &p.selector {
            None => true,
            Some(sel) => sel
                .iter()
                .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v)),
        }
    }

    /// Builds the indexed view of everything that applies to one workload.
    pub fn build_view(&self, namespace: &str, labels: &[(String, String)]) -> WorkloadView {
        let mut view = WorkloadView {
            jwt_providers: authn::providers_for(
                &self.authentication,
                &self.options.root_namespace,
                namespace,
                labels,
            ),
            ..WorkloadView::default()
        };
        let mut members: [Vec<u32>; 5] = Default::default();
        // Per provider (sorted, as Istio orders the filter pairs): enforced and dry-run rules.
        let mut custom: std::collections::BTreeMap<String, (Vec<u32>, Vec<u32>)> =
            std::collections::BTreeMap::new();
        for p in &self.policies {
            if !self.applies(p, namespace, labels) {
                continue;
            }
            view.policies.push(format!("{}/{}", p.namespace, p.name));
            let slot = match (p.action, p.dry_run) {
                (Action::Deny, false) => 0,
                (Action::Allow, false) => 1,
                (Action::Audit, _) => 2,
                (Action::Allow, true) => 3,
                (Action::Deny, true) => 4,
                (Action::Custom, dry_run) => {
                    let provider = p.provider.clone().unwrap_or_default();
                    let entry = custom.entry(provider).or_default();
                    let ids = if dry_run { &mut entry.1 } else { &mut entry.0 };
                    ids.extend_from_slice(&p.rules);
                    continue;
                }
            };
            for g in [&mut view.http, &mut view.tcp] {
                match slot {
                    1 => g.has_allow = true,
                    3 => g.has_shadow_allow = true,
                    4 => g.has_shadow_deny = true,
                    _ => {}
                }
            }
            if let Some(m) = members.get_mut(slot) {
                m.extend_from_slice(&p.rules);
            }
        }
        for (proto, groups) in [
            (Protocol::Http, &mut view.http),
            (Protocol::Tcp, &mut view.tcp),
        ] {
            let sets = [
                &mut groups.deny,
                &mut groups.allow,
                &mut groups.audit,
                &mut groups.shadow_allow,
                &mut groups.shadow_deny,
            ];
            for (set, ids) in sets.into_iter().zip(members.iter()) {
                *set = self.build_set(ids, proto);
            }
            for (provider, (enforced, dry_run)) in &custom {
                let declared = self
                    .options
                    .extension_providers
                    .iter()
                    .find(|e| &e.name == provider);
                // Envoy's network filters have no HTTP ext_authz: Istio skips an HTTP
                // provider's CUSTOM rules on TCP (an undeclared provider's still deny).
                if proto == Protocol::Tcp && declared.is_some_and(|e| !e.is_grpc()) {
                    continue;
                }
                groups.custom.push(CustomGroup {
                    provider: provider.clone(),
                    declared: declared.is_some(),
                    enforced: self.build_set(enforced, proto),
                    // An undeclared provider's dry-run rules generate nothing.
                    dry_run: if declared.is_some() {
                        self.build_set(dry_run, proto)
                    } else {
                        RuleSet::default()
                    },
                });
            }
        }
        view
    }

    fn body(&self, id: u32, proto: Protocol) -> Option<&Body> {
        let r = self.rules.get(id as usize)?;
        match proto {
            Protocol::Http => r.http.as_ref(),
            Protocol::Tcp => r.tcp.as_ref(),
        }
    }

    fn build_set(&self, ids: &[u32], proto: Protocol) -> RuleSet {
        let mut rules: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| self.body(*id, proto).is_some())
            .collect();
        rules.sort_by(|a, b| {
            let ra = self.rules.get(*a as usize).map(|r| r.rule.id.as_str());
            let rb = self.rules.get(*b as usize).map(|r| r.rule.id.as_str());
            ra.cmp(&rb)
        });
        rules.dedup();
        let mut index = Index::default();
        for (pos, id) in rules.iter().enumerate() {
            let pos = u32::try_from(pos).unwrap_or(u32::MAX);
            let anchor = self.body(*id, proto).and_then(anchor_of);
            match anchor {
                None => index.always.push(pos),
                Some((attr, keys)) => {
                    for key in keys {
                        match key {
                            Key::Port(p) => index.ports.entry(p).or_default().push(pos),
                            Key::Cidr(net) => {
                                let slot = match index.cidrs.iter_mut().find(|(a, _)| *a == attr) {
                                    Some(s) => s,
                                    None => {
                                        index.cidrs.push((attr.clone(), CidrIndex::default()));
                                        match index.cidrs.last_mut() {
                                            Some(s) => s,
                                            None => continue,
                                        }
                                    }
                                };
                                slot.1.add(net, pos);
                            }
                            k => {
                                let slot = match index.strs.iter_mut().find(|(a, _)| *a == attr) {
                                    Some(s) => s,
                                    None => {
                                        index.strs.push((attr.clone(), StrIndex::default()));
                                        match index.strs.last_mut() {
                                            Some(s) => s,
                                            None => continue,
                                        }
                                    }
                                };
                                slot.1.add(&k, pos);
                            }
                        }
                    }
                }
            }
        }
        RuleSet { rules, index }
    }
}

/// The index keys of a predicate's values, when every value has one.
fn keys_of(attr: &Attr, values: &Values) -> Option<Vec<Key>> {
    let mut keys = Vec::new();
    match values {
        Values::Cidr(nets) => keys.extend(nets.iter().map(|n| Key::Cidr(*n))),
        Values::Port(ports) => keys.extend(ports.iter().map(|p| Key::Port(*p))),
        Values::Str(ms) => {
            for m in ms {
                let k = match (attr, m) {
                    (Attr::SourceNamespace, StrMatch::Glob(Glob(parts))) => {
                        match parts.as_slice() {
                            [GlobPart::Star, GlobPart::Lit(l), GlobPart::Star] => {
                                let ns = l.strip_prefix("/ns/")?.strip_suffix('/')?;
                                if ns.contains('/') || ns.is_empty() {
                                    return None;
                                }
                                Key::Exact(ns.to_string())
                            }
                            _ => return None,
                        }
                    }
                    (Attr::SourceNamespace, _) => return None,
                    (Attr::Principal, StrMatch::Glob(Glob(parts))) => match parts.as_slice() {
                        [GlobPart::Lit(_), GlobPart::Star, GlobPart::Lit(s)] if !s.is_empty() => {
                            Key::Suffix(s.clone())
                        }
                        _ => return None,
                    },
                    (_, StrMatch::Exact(s)) => Key::Exact(s.clone()),
                    (_, StrMatch::Prefix(s)) if !s.is_empty() => Key::Prefix(s.clone()),
                    (_, StrMatch::Suffix(s)) if !s.is_empty() => Key::Suffix(s.clone()),
                    (Attr::Path, StrMatch::Template(t)) if !t.literal_prefix().is_empty() => {
                        Key::Prefix(t.literal_prefix().to_string())
                    }
                    _ => return None,
                };
                keys.push(k);
            }
        }
        Values::IssSub(_) | Values::Nothing => return None,
    }
    if keys.is_empty() { None } else { Some(keys) }
}

/// A necessary condition of the rule, on its most selective attribute.
fn anchor_of(body: &Body) -> Option<(Attr, Vec<Key>)> {
    let mut best: Option<(usize, Attr, Vec<Key>)> = None;
    let mut consider = |attr: &Attr, keys: Vec<Key>| {
        let Some(rank) = ANCHORS.iter().position(|a| a == attr) else {
            return;
        };
        if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
            best = Some((rank, attr.clone(), keys));
        }
    };
    for p in &body.when {
        if !p.negate
            && let Some(keys) = keys_of(&p.attr, &p.values)
        {
            consider(&p.attr, keys);
        }
    }
    for group in [&body.from, &body.to] {
        if group.is_empty() {
            continue;
        }
        for attr in ANCHORS {
            // Every alternative must require the attribute positively.
            let mut keys = Vec::new();
            let all = group.iter().all(|conj| {
                conj.iter()
                    .find(|p| !p.negate && p.attr == *attr)
                    .and_then(|p| keys_of(&p.attr, &p.values))
                    .map(|k| keys.extend(k))
                    .is_some()
            });
            if all {
                consider(attr, keys);
            }
        }
    }
    best.map(|(_, a, k)| (a, k))
}

// ---------------------------------------------------------------------------------------
// Deciding.

/// A request's values for one attribute (a header's values, a principal's namespaces, a
/// claim's strings): almost always one or two, kept inline.
type Strs<'a> = smallvec::SmallVec<[&'a str; 2]>;

/// Rule candidates from the indexes, kept inline up to 16 (a decision looks them up a few
/// times, so a heap allocation each time would show).
type Candidates = smallvec::SmallVec<[u32; 16]>;

/// A request's attributes, prepared once per decision.
#[derive(Debug)]
pub struct Facts<'r> {
    req: &'r Request,
    /// The JWT payload as the rules see it (after `jwt_authn`, see [`authn::authenticate`]).
    jwt: Option<std::borrow::Cow<'r, serde_json::Value>>,
    principal: Option<&'r str>,
    path: std::borrow::Cow<'r, str>,
    /// `:path` as a header condition sees it (normalised path and query), built on first use.
    path_header: std::cell::OnceCell<String>,
    host: std::borrow::Cow<'r, str>,
}

impl<'r> Facts<'r> {
    /// Prepares a request: normalises the path and lower-cases the host. The JWT payload is
    /// taken as it is.
    pub fn new(req: &'r Request, options: &Options) -> Self {
        Self::with_jwt(
            req,
            options,
            req.jwt.as_ref().map(std::borrow::Cow::Borrowed),
        )
    }

    /// Like [`Facts::new`], with the JWT payload the rules see.
    pub fn with_jwt(
        req: &'r Request,
        options: &Options,
        jwt: Option<std::borrow::Cow<'r, serde_json::Value>>,
    ) -> Self {
        let principal = if req.is_mtls() {
            req.source.principal.as_deref()
        } else {
            None
        };
        let (path, host) = match &req.http {
            Some(h) => (
                normalize(strip_query(&h.path), options.path_normalization),
                if h.host.bytes().any(|b| b.is_ascii_uppercase()) {
                    std::borrow::Cow::Owned(h.host.to_ascii_lowercase())
                } else {
                    std::borrow::Cow::Borrowed(h.host.as_str())
                },
            ),
            None => (
                std::borrow::Cow::Borrowed(""),
                std::borrow::Cow::Borrowed(""),
            ),
        };
        Facts {
            req,
            jwt,
            principal,
            path,
            path_header: std::cell::OnceCell::new(),
            host,
        }
    }

    /// `:path` for a header condition: the normalised path with the query kept.
    fn path_header(&self) -> &str {
        self.path_header.get_or_init(|| {
            let full = self.req.http.as_ref().map_or("", |h| h.path.as_str());
            let query = full.get(strip_query(full).len()..).unwrap_or("");
            format!("{}{query}", self.path)
        })
    }

    fn header_values(&self, name: &str) -> Strs<'_> {
        let Some(h) = &self.req.http else {
            return Strs::new();
        };
        match name {
            ":method" => smallvec::smallvec![h.method.as_str()],
            ":path" => smallvec::smallvec![self.path_header()],
            ":authority" | "host" => smallvec::smallvec![h.host.as_str()],
            _ => h
                .headers
                .get(name)
                .map(|v| v.iter().map(String::as_str).collect())
                .unwrap_or_default(),
        }
    }

    fn namespaces(&self) -> Strs<'_> {
        let Some(p) = self.principal else {
            return Strs::new();
        };
        let mut out = Strs::new();
        let mut rest = p;
        while let Some(i) = rest.find("/ns/") {
            let after = rest.get(i + 4..).unwrap_or("");
            if let Some(end) = after.find('/') {
                out.push(after.get(..end).unwrap_or(""));
            }
            rest = after;
        }
        out
    }

    fn claim(&self, path: &[String]) -> Strs<'_> {
        let mut v = match &self.jwt {
            Some(j) => j.as_ref(),
            None => return Strs::new(),
        };
        for key in path {
            match v.get(key) {
                Some(next) => v = next,
                None => return Strs::new(),
            }
        }
        match v {
            serde_json::Value::String(s) => smallvec::smallvec![s.as_str()],
            serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str()).collect(),
            _ => Strs::new(),
        }
    }

    fn matches(&self, p: &Pred) -> bool {
        self.test(p) != p.negate
    }

    fn test(&self, p: &Pred) -> bool {
        let any_str = |values: &[&str]| match &p.values {
            Values::Str(ms) => values.iter().any(|v| ms.iter().any(|m| m.matches(v))),
            _ => false,
        };
        let ip_in = |ip: Option<IpAddr>| match (&p.values, ip) {
            (Values::Cidr(nets), Some(ip)) => nets.iter().any(|n| n.contains(&ip)),
            _ => false,
        };
        match &p.attr {
            Attr::Principal => self.principal.is_some_and(|v| any_str(&[v])),
            Attr::SourceNamespace => self.principal.is_some_and(|v| any_str(&[v])),
            Attr::RequestPrincipal => {
                // `iss` and `sub` must be strings (a verifier rejects anything else).
                let string_claim = |k: &str| self.jwt.as_ref()?.get(k)?.as_str();
                match (&p.values, string_claim("iss"), string_claim("sub")) {
                    (Values::IssSub(pairs), Some(i), Some(s)) => {
                        pairs.iter().any(|(mi, ms)| mi.matches(i) && ms.matches(s))
                    }
                    _ => false,
                }
            }
            Attr::SourceIp => ip_in(self.req.source.ip),
            Attr::RemoteIp => ip_in(self.req.remote_ip()),
            Attr::DestinationIp => ip_in(self.req.destination.ip),
            Attr::DestinationPort => match (&p.values, self.req.destination.port) {
                (Values::Port(ports), Some(port)) => ports.contains(&port),
                _ => false,
            },
            Attr::Host => self.req.http.is_some() && any_str(&[self.host.as_ref()]),
            Attr::Method => self
                .req
                .http
                .as_ref()
                .is_some_and(|h| any_str(&[h.method.as_str()])),
            Attr::Path => self.req.http.is_some() && any_str(&[self.path.as_ref()]),
            Attr::Header(name) => any_str(&self.header_values(name)),
            Attr::Claim(path) => any_str(&self.claim(path)),
            Attr::Sni => any_str(&[self.req.sni.as_deref().unwrap_or("")]),
            Attr::Missing => false,
        }
    }

    fn body_matches(&self, b: &Body) -> bool {
        let conj = |c: &Vec<Pred>| c.iter().all(|p| self.matches(p));
        (b.from.is_empty() || b.from.iter().any(conj))
            && (b.to.is_empty() || b.to.iter().any(conj))
            && b.when.iter().all(|p| self.matches(p))
    }

    /// The request's value for an anchor attribute, looked up in a string index.
    fn lookup_str(&self, attr: &Attr, idx: &StrIndex, out: &mut Candidates) {
        match attr {
            Attr::Path => idx.lookup(&self.path, out),
            Attr::Principal => {
                if let Some(p) = self.principal {
                    idx.lookup(p, out);
                }
            }
            Attr::SourceNamespace => {
                for ns in self.namespaces() {
                    idx.lookup(ns, out);
                }
            }
            Attr::Host => idx.lookup(&self.host, out),
            Attr::Sni => idx.lookup(self.req.sni.as_deref().unwrap_or(""), out),
            Attr::Method => {
                if let Some(h) = &self.req.http {
                    idx.lookup(&h.method, out);
                }
            }
            _ => {}
        }
    }
}

impl Engine {
    /// The first rule of a set (in Envoy's order) that matches, by index lookup.
    fn first_match(&self, set: &RuleSet, proto: Protocol, f: &Facts<'_>) -> Option<u32> {
        let idx = &set.index;
        let mut cand: Candidates = idx.always.iter().copied().collect();
        for (attr, s) in &idx.strs {
            f.lookup_str(attr, s, &mut cand);
        }
        for (attr, c) in &idx.cidrs {
            let ip = match attr {
                Attr::SourceIp => f.req.source.ip,
                Attr::RemoteIp => f.req.remote_ip(),
                Attr::DestinationIp => f.req.destination.ip,
                _ => None,
            };
            if let Some(ip) = ip {
                c.lookup(ip, &mut cand);
            }
        }
        if let Some(ids) = f.req.destination.port.and_then(|p| idx.ports.get(&p)) {
            cand.extend_from_slice(ids);
        }
        cand.sort_unstable();
        cand.dedup();
        cand.into_iter().find_map(|pos| {
            let id = *set.rules.get(pos as usize)?;
            let body = self.body(id, proto)?;
            f.body_matches(body).then_some(id)
        })
    }

    fn rule_ref(&self, id: Option<u32>) -> Option<Arc<RuleRef>> {
        id.and_then(|i| self.rules.get(i as usize))
            .map(|r| r.rule.clone())
    }

    /// Decides with a view (the plugin's path: its workload's view is built once).
    pub fn decide_in_view(&self, view: &WorkloadView, req: &Request) -> Decision {
        self.decide_in_view_with(view, req, None)
    }

    /// [`Engine::decide_in_view`], with a verifier for a request's raw `jwtToken`.
    pub fn decide_in_view_with(
        &self,
        view: &WorkloadView,
        req: &Request,
        verifier: Option<&dyn authn::TokenVerifier>,
    ) -> Decision {
        let proto = req.protocol;
        let configured = !self.authentication.is_empty();
        // `jwt_authn` is an HTTP filter: on TCP no token is read and none is refused.
        let auth = match (proto, &req.jwt, &req.jwt_token) {
            (Protocol::Tcp, _, _) => Authenticated::Anonymous,
            (Protocol::Http, None, Some(token)) => {
                authn::authenticate_token(configured, &view.jwt_providers, token, verifier)
            }
            (Protocol::Http, jwt, _) => {
                authn::authenticate(configured, &view.jwt_providers, jwt.as_ref())
            }
        };
        let jwt = match auth {
            Authenticated::Anonymous => None,
            Authenticated::Payload(p) => Some(p),
            Authenticated::Rejected(why) => return jwt_rejected(why),
            Authenticated::Unverifiable(why) => return error_decision(why),
        };
        let facts = Facts::with_jwt(req, &self.options, jwt);
        let g = match proto {
            Protocol::Http => &view.http,
            Protocol::Tcp => &view.tcp,
        };
        let mut shadow = Vec::new();
        if g.has_shadow_allow {
            let m = self.first_match(&g.shadow_allow, proto, &facts);
            shadow.push(ShadowResult {
                action: "ALLOW".into(),
                verdict: if m.is_some() {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                },
                matched: self.rule_ref(m),
            });
        }
        if g.has_shadow_deny {
            let m = self.first_match(&g.shadow_deny, proto, &facts);
            shadow.push(ShadowResult {
                action: "DENY".into(),
                verdict: if m.is_some() {
                    Verdict::Deny
                } else {
                    Verdict::Allow
                },
                matched: self.rule_ref(m),
            });
        }
        let audit = self.rule_ref(self.first_match(&g.audit, proto, &facts));
        let (custom, outcome) = self.decide_custom(g, proto, &facts, req);
        let (verdict, step, rule) = if let Some(outcome) = outcome {
            outcome
        } else if let Some(id) = self.first_match(&g.deny, proto, &facts) {
            (Verdict::Deny, Step::DenyMatched, self.rule_ref(Some(id)))
        } else if !g.has_allow {
            (Verdict::Allow, Step::NoAllowPolicies, None)
        } else if let Some(id) = self.first_match(&g.allow, proto, &facts) {
            (Verdict::Allow, Step::AllowMatched, self.rule_ref(Some(id)))
        } else {
            (Verdict::Deny, Step::NoAllowMatched, None)
        };
        Decision {
            verdict,
            step,
            rule,
            shadow,
            audit,
            network: None,
            errors: Vec::new(),
            custom,
        }
    }

    /// Istio step 1, CUSTOM, provider by provider in Envoy's filter order. An undeclared
    /// provider's matching rule denies; a declared one's matching dry-run rule denies (Istio
    /// master makes them enforced DENY rules of the provider's RBAC filter); a matching
    /// enforced rule asks the provider: its answer in the request allows (go on to the next
    /// provider, then DENY and ALLOW) or denies, and no answer leaves the request pending.
    /// Returns the providers asked and, when CUSTOM decided, the verdict.
    fn decide_custom(
        &self,
        g: &Groups,
        proto: Protocol,
        facts: &Facts<'_>,
        req: &Request,
    ) -> (Vec<CustomCheck>, Option<Settled>) {
        let mut asked = Vec::new();
        for cg in &g.custom {
            if !cg.declared {
                if let Some(id) = self.first_match(&cg.enforced, proto, facts) {
                    let outcome = (
                        Verdict::Deny,
                        Step::CustomProviderMissing,
                        self.rule_ref(Some(id)),
                    );
                    return (asked, Some(outcome));
                }
                continue;
            }
            if let Some(id) = self.first_match(&cg.dry_run, proto, facts) {
                let outcome = (Verdict::Deny, Step::DenyMatched, self.rule_ref(Some(id)));
                return (asked, Some(outcome));
            }
            let Some(id) = self.first_match(&cg.enforced, proto, facts) else {
                continue;
            };
            let Some(rule) = self.rule_ref(Some(id)) else {
                continue;
            };
            let answer = req.ext_authz.get(&cg.provider).copied();
            asked.push(CustomCheck {
                provider: cg.provider.clone(),
                rule: Arc::clone(&rule),
                answer,
            });
            match answer {
                Some(ExtAuthzAnswer::Allow) => {}
                Some(ExtAuthzAnswer::Deny) => {
                    return (asked, Some((Verdict::Deny, Step::CustomDenied, Some(rule))));
                }
                None => {
                    let outcome = (Verdict::CustomPending, Step::CustomPending, Some(rule));
                    return (asked, Some(outcome));
                }
            }
        }
        (asked, None)
    }

    /// The inventory index of the destination workload, or its namespace and labels.
    fn resolve<'a>(
        &self,
        w: Option<&'a WorkloadRef>,
        ip: Option<IpAddr>,
    ) -> Result<Resolved<'a>, String> {
        match w {
            Some(WorkloadRef {
                namespace,
                name: Some(name),
                ..
            }) => self
                .inventory
                .workloads
                .iter()
                .position(|x| &x.namespace == namespace && &x.name == name)
                .map(Resolved::Known)
                .ok_or_else(|| format!("workload `{namespace}/{name}` is not in the inventory")),
            Some(w) => Ok(Resolved::Inline(w)),
            None => match ip {
                Some(ip) => match self.inventory.owner_of(ip) {
                    AddressOwner::Workload(i) => Ok(Resolved::Known(i)),
                    AddressOwner::Node(node) => Err(format!(
                        "the address `{ip}` is node `{node}`'s (a node or a hostNetwork pod), not a pod's: name the workload"
                    )),
                    AddressOwner::Ambiguous(a, b) => {
                        let name = |i: usize| {
                            self.inventory
                                .workloads
                                .get(i)
                                .map_or_else(String::new, |w| {
                                    format!("`{}/{}`", w.namespace, w.name)
                                })
                        };
                        Err(format!(
                            "the address `{ip}` is held by both {} and {}: which one it is cannot be known; mark the stale one finished (`phase`) or remove it from the inventory",
                            name(a),
                            name(b)
                        ))
                    }
                    AddressOwner::External => {
                        Err(format!("no workload in the inventory has address `{ip}`"))
                    }
                },
                None => Err("the request names no destination workload or address".into()),
            },
        }
    }

    /// Decides a request: AuthorizationPolicy at the destination workload, then
    /// NetworkPolicy (source egress and destination ingress); both must allow.
    pub fn decide(&self, req: &Request) -> Decision {
        self.decide_with(req, None)
    }

    /// [`Engine::decide`], with a verifier for a request's raw `jwtToken` (see
    /// [`authn::verify_token`]).
    pub fn decide_with(
        &self,
        req: &Request,
        verifier: Option<&dyn authn::TokenVerifier>,
    ) -> Decision {
        let dst = self.resolve(req.destination.workload.as_ref(), req.destination.ip);
        let mut decision = match dst {
            Ok(Resolved::Known(i)) => match self.views.get(i) {
                Some(v) => self.decide_in_view_with(v, req, verifier),
                None => error_decision("inventory view missing".into()),
            },
            Ok(Resolved::Inline(w)) => {
                let view = self
                    .inline_views
                    .get_or_build(&w.namespace, &w.labels, |ns, labels| {
                        self.build_view(ns, labels)
                    });
                self.decide_in_view_with(&view, req, verifier)
            }
            Err(e) if !self.policies.is_empty() => error_decision(e),
            Err(_) => Decision {
                verdict: Verdict::Allow,
                step: Step::NoAllowPolicies,
                rule: None,
                shadow: Vec::new(),
                audit: None,
                network: None,
                errors: Vec::new(),
                custom: Vec::new(),
            },
        };
        // A refused token never reaches a decision NetworkPolicy could add to.
        if matches!(decision.step, Step::Error | Step::JwtRejected) || self.network.is_empty() {
            return decision;
        }
        match netpol::evaluate(
            &self.network,
            &self.inventory,
            req,
            self.options.node_traffic,
        ) {
            Ok(outcome) => {
                // A NetworkPolicy denial stands even when a CUSTOM provider is pending: the
                // connection never reaches the proxy.
                if outcome.verdict == Verdict::Deny && decision.verdict != Verdict::Deny {
                    decision.verdict = Verdict::Deny;
                    decision.step = outcome.step;
                    decision.rule = None;
                } else if decision.step == Step::NoAllowPolicies
                    && outcome.verdict == Verdict::Allow
                {
                    decision.step = outcome.step;
                }
                decision.network = Some(outcome);
            }
            Err(e) => return error_decision(e),
        }
        decision
    }

    /// The view of an inventory workload.
    pub fn view_of(&self, namespace: &str, name: &str) -> Option<&WorkloadView> {
        let i = self
            .inventory
            .workloads
            .iter()
            .position(|w| w.namespace == namespace && w.name == name)?;
        self.views.get(i)
    }
}

/// A verdict, the step that gave it and the deciding rule.
type Settled = (Verdict, Step, Option<Arc<RuleRef>>);

enum Resolved<'a> {
    Known(usize),
    Inline(&'a WorkloadRef),
}

/// `jwt_authn` refused the token (HTTP 401 or 403): RBAC never runs.
fn jwt_rejected(why: &str) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        step: Step::JwtRejected,
        rule: None,
        shadow: Vec::new(),
        audit: None,
        network: None,
        errors: vec![why.to_string()],
        custom: Vec::new(),
    }
}

fn error_decision(e: String) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        step: Step::Error,
        rule: None,
        shadow: Vec::new(),
        audit: None,
        network: None,
        errors: vec![e],
        custom: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// What a view can test.

/// The request attributes the rules of a view can test on one protocol (every group:
/// enforced ALLOW and DENY, AUDIT, dry-run ALLOW and DENY), plus the NetworkPolicies'
/// needs when there are any. A host that reads its attributes one call at a time (the
/// proxy-wasm plugin) reads only these: an attribute no rule tests cannot change the
/// decision, so leaving it out of the [`Request`] (absent) decides exactly as reading it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The direct peer address (`ipBlocks`, `source.ip`).
    pub source_ip: bool,
    /// The original client address (`remoteIpBlocks`, `remote.ip`): `x-forwarded-for` and
    /// the direct peer (its fallback).
    pub remote_ip: bool,
    /// The local address (`destination.ip`).
    pub destination_ip: bool,
    /// The local port (`ports`, `destination.port`).
    pub destination_port: bool,
    /// The peer principal (`principals`, `namespaces`, service accounts, trust domains):
    /// mTLS and the peer certificate's URI SAN.
    pub principal: bool,
    /// The TLS SNI (`connection.sni`).
    pub sni: bool,
    /// The request headers (`hosts`, `methods`, `paths`, `request.headers[...]`).
    pub headers: bool,
    /// The verified JWT payload (`requestPrincipals`, `request.auth.*`).
    pub jwt: bool,
}

impl Needs {
    /// Every attribute.
    pub const ALL: Needs = Needs {
        source_ip: true,
        remote_ip: true,
        destination_ip: true,
        destination_port: true,
        principal: true,
        sni: true,
        headers: true,
        jwt: true,
    };

    fn add(&mut self, attr: &Attr) {
        match attr {
            Attr::Principal | Attr::SourceNamespace => self.principal = true,
            Attr::RequestPrincipal | Attr::Claim(_) => self.jwt = true,
            Attr::SourceIp => self.source_ip = true,
            Attr::RemoteIp => self.remote_ip = true,
            Attr::DestinationIp => self.destination_ip = true,
            Attr::DestinationPort => self.destination_port = true,
            Attr::Host | Attr::Method | Attr::Path | Attr::Header(_) => self.headers = true,
            Attr::Sni => self.sni = true,
            Attr::Missing => {}
        }
    }
}

impl Engine {
    /// What the rules of `view` can test on `protocol` (see [`Needs`]). NetworkPolicies
    /// resolve both endpoints by address or identity and test the port, so with any
    /// NetworkPolicy the connection attributes are all needed.
    pub fn needs(&self, view: &WorkloadView, protocol: Protocol) -> Needs {
        let mut needs = Needs::default();
        if !self.network.is_empty() {
            needs.source_ip = true;
            needs.destination_ip = true;
            needs.destination_port = true;
            needs.principal = true;
        }
        self.each_pred(view, protocol, |p| needs.add(&p.attr));
        // With `jwt_authn` on the workload a payload can be refused whatever the rules test.
        if protocol == Protocol::Http && !view.jwt_providers.is_empty() {
            needs.jwt = true;
        }
        needs
    }

    /// The request headers the rules of `view` test by name on `protocol`
    /// (`request.headers[<name>]`), each once, in the order first met. `hosts`, `methods` and
    /// `paths` are not among them (see [`Needs::headers`]).
    pub fn tested_headers(&self, view: &WorkloadView, protocol: Protocol) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        self.each_pred(view, protocol, |p| {
            if let Attr::Header(name) = &p.attr
                && !names.contains(name)
            {
                names.push(name.clone());
            }
        });
        names
    }

    /// The CIDRs the rules of `view` test the direct peer against on `protocol` (`ipBlocks`,
    /// `notIpBlocks`, `source.ip`), each once, in the order first met. A decision depends on
    /// `source.ip` only through membership in these (NetworkPolicy aside, which also looks the
    /// peer up in the inventory): hosts that cannot see the peer use them to tell whether it
    /// matters.
    pub fn source_ip_cidrs(&self, view: &WorkloadView, protocol: Protocol) -> Vec<IpNet> {
        let mut nets: Vec<IpNet> = Vec::new();
        self.each_pred(view, protocol, |p| {
            if p.attr == Attr::SourceIp
                && let Values::Cidr(v) = &p.values
            {
                for n in v {
                    if !nets.contains(n) {
                        nets.push(*n);
                    }
                }
            }
        });
        nets
    }

    /// Every predicate of every rule of `view` on `protocol` (all groups).
    fn each_pred(&self, view: &WorkloadView, protocol: Protocol, mut f: impl FnMut(&Pred)) {
        let g = match protocol {
            Protocol::Http => &view.http,
            Protocol::Tcp => &view.tcp,
        };
        let sets = [&g.deny, &g.allow, &g.audit, &g.shadow_allow, &g.shadow_deny];
        let custom = g.custom.iter().flat_map(|c| [&c.enforced, &c.dry_run]);
        for id in sets.into_iter().chain(custom).flat_map(|s| s.rules.iter()) {
            let Some(b) = self.body(*id, protocol) else {
                continue;
            };
            for p in b.from.iter().chain(b.to.iter()).flatten().chain(&b.when) {
                f(p);
            }
        }
    }
}
