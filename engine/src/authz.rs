//! Istio `AuthorizationPolicy` (`security.istio.io/v1` and `v1beta1`): the model, read from
//! YAML with Istio's own validation.
//!
//! Semantics (from the API's documentation, numbered as Istio numbers them):
//! 1. If any CUSTOM policy matches, ask its provider (an external authorizer); deny if it says
//!    deny (see [`crate::extauthz`] and `docs/custom-authorization.md`).
//! 2. If any DENY policy matches the request, deny.
//! 3. If there are no ALLOW policies for the workload, allow.
//! 4. If any ALLOW policy matches the request, allow.
//! 5. Deny.
//!
//! AUDIT policies never change the verdict; `istio.io/dry-run: "true"` policies are evaluated
//! beside the real ones and reported as shadow results.

use crate::diag::Diagnostic;
pub use crate::meta::Origin;
use crate::pattern::parse_cidr;
use crate::yaml::{At, DResult, Fields, Str, join};

pub(crate) mod translate;

pub use translate::CompiledPolicy;

/// What a policy does when one of its rules matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// Allow the request (and deny those no ALLOW rule matches, when any ALLOW policy applies).
    Allow,
    /// Deny the request.
    Deny,
    /// Mark the request for audit; never changes the verdict.
    Audit,
    /// Ask the policy's provider (an external authorizer) first; deny if it says deny.
    Custom,
}

impl Action {
    /// The upper-case name, as written in policies.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        }
    }
}

/// Which workloads a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Workloads in the policy's namespace (every namespace, for the root namespace) whose
    /// labels include all of these.
    Selector(Vec<(String, String)>),
    /// Every workload in the policy's namespace (the whole mesh, for the root namespace).
    Namespace,
    /// `targetRefs`: gateways and waypoints only; a sidecar workload ignores it.
    TargetRefs,
}

/// An AuthorizationPolicy: `rules` are ORed; `None` (no `rules` field) matches nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` when absent, as kubectl does).
    pub namespace: String,
    /// The action.
    pub action: Action,
    /// `provider.name`: the extension provider a CUSTOM policy asks (`Some` only for CUSTOM).
    pub provider: Option<String>,
    /// Which workloads it applies to.
    pub scope: Scope,
    /// The rules, ORed; `None` when the field is absent (the policy matches nothing).
    pub rules: Option<Vec<Rule>>,
    /// `istio.io/dry-run: "true"`: evaluated and reported, never enforced.
    pub dry_run: bool,
    /// Where the policy came from (file name) and its document index.
    pub origin: Origin,
}

/// A rule matches when any `from` matches (or there is none), any `to` matches (or there is
/// none) and every `when` condition matches. `{}` matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    /// Sources, ORed; empty means any source.
    pub from: Vec<Source>,
    /// Operations, ORed; empty means any operation.
    pub to: Vec<Operation>,
    /// Conditions, ANDed.
    pub when: Vec<Condition>,
}

/// Fields ANDed; the values of one field ORed; each `not*` list must not match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    /// Peer identities (`<trust-domain>/ns/<ns>/sa/<sa>`), mTLS only.
    pub principals: Vec<Str>,
    /// Negated principals.
    pub not_principals: Vec<Str>,
    /// JWT `iss/sub` pairs.
    pub request_principals: Vec<Str>,
    /// Negated request principals.
    pub not_request_principals: Vec<Str>,
    /// Peer namespaces, mTLS only.
    pub namespaces: Vec<Str>,
    /// Negated namespaces.
    pub not_namespaces: Vec<Str>,
    /// Service accounts (`sa` in the policy's namespace, or `ns/sa`), mTLS only.
    pub service_accounts: Vec<Str>,
    /// Negated service accounts.
    pub not_service_accounts: Vec<Str>,
    /// Peer trust domains (`td`, `td*`, `*td`, `*`), mTLS only.
    pub trust_domains: Vec<Str>,
    /// Negated trust domains.
    pub not_trust_domains: Vec<Str>,
    /// Direct peer addresses (CIDR or address).
    pub ip_blocks: Vec<Str>,
    /// Negated direct peer addresses.
    pub not_ip_blocks: Vec<Str>,
    /// Original client addresses (from `x-forwarded-for`).
    pub remote_ip_blocks: Vec<Str>,
    /// Negated original client addresses.
    pub not_remote_ip_blocks: Vec<Str>,
}

/// Fields ANDed; the values of one field ORed; each `not*` list must not match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Operation {
    /// `:authority`, case-insensitive, port included as sent. HTTP only.
    pub hosts: Vec<Str>,
    /// Negated hosts.
    pub not_hosts: Vec<Str>,
    /// Destination (workload target) ports.
    pub ports: Vec<Str>,
    /// Negated ports.
    pub not_ports: Vec<Str>,
    /// `:method`, case-sensitive. HTTP only.
    pub methods: Vec<Str>,
    /// Negated methods.
    pub not_methods: Vec<Str>,
    /// Normalised path without query; `{*}`/`{**}` templates. HTTP only.
    pub paths: Vec<Str>,
    /// Negated paths.
    pub not_paths: Vec<Str>,
}

/// A `when` condition: the key's value must match one of `values` (if given) and none of
/// `not_values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The attribute.
    pub key: ConditionKey,
    /// The key as written.
    pub key_text: Str,
    /// Values, ORed.
    pub values: Vec<Str>,
    /// Negated values.
    pub not_values: Vec<Str>,
}

/// The attributes a `when` condition can test.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConditionKey {
    /// `request.headers[<name>]` (name lower-cased).
    RequestHeader(String),
    /// `source.ip`.
    SourceIp,
    /// `remote.ip`.
    RemoteIp,
    /// `source.namespace`.
    SourceNamespace,
    /// `source.principal`.
    SourcePrincipal,
    /// `source.serviceAccount`.
    SourceServiceAccount,
    /// `source.trustDomain`.
    SourceTrustDomain,
    /// `request.auth.principal`.
    RequestAuthPrincipal,
    /// `request.auth.audiences`.
    RequestAuthAudiences,
    /// `request.auth.presenter`.
    RequestAuthPresenter,
    /// `request.auth.claims[a][b]...`.
    RequestAuthClaims(Vec<String>),
    /// `destination.ip`.
    DestinationIp,
    /// `destination.port`.
    DestinationPort,
    /// `connection.sni`.
    ConnectionSni,
    /// `experimental.envoy.filters.<filter>[<key>]...`: Envoy dynamic metadata, which
    /// Palisade's hosts do not carry — it never matches.
    ExperimentalMetadata(String),
}

impl ConditionKey {
    /// Parses a `when` key as Istio validates it.
    pub fn parse(key: &str) -> Option<ConditionKey> {
        Some(match key {
            "source.ip" => ConditionKey::SourceIp,
            "remote.ip" => ConditionKey::RemoteIp,
            "source.namespace" => ConditionKey::SourceNamespace,
            "source.principal" => ConditionKey::SourcePrincipal,
            "source.serviceAccount" => ConditionKey::SourceServiceAccount,
            "source.trustDomain" => ConditionKey::SourceTrustDomain,
            "request.auth.principal" => ConditionKey::RequestAuthPrincipal,
            "request.auth.audiences" => ConditionKey::RequestAuthAudiences,
            "request.auth.presenter" => ConditionKey::RequestAuthPresenter,
            "destination.ip" => ConditionKey::DestinationIp,
            "destination.port" => ConditionKey::DestinationPort,
            "connection.sni" => ConditionKey::ConnectionSni,
            _ => {
                if let Some(rest) = key.strip_prefix("request.headers") {
                    let names = brackets(rest)?;
                    return match names.as_slice() {
                        [one] => Some(ConditionKey::RequestHeader(one.to_ascii_lowercase())),
                        _ => None,
                    };
                }
                if let Some(rest) = key.strip_prefix("request.auth.claims") {
                    let names = brackets(rest)?;
                    return Some(ConditionKey::RequestAuthClaims(names));
                }
                if let Some(rest) = key.strip_prefix("experimental.envoy.filters.") {
                    let open = rest.find('[')?;
                    let filter = rest.get(..open)?;
                    brackets(rest.get(open..)?)?;
                    if filter.is_empty() {
                        return None;
                    }
                    return Some(ConditionKey::ExperimentalMetadata(key.to_string()));
                }
                return None;
            }
        })
    }

    /// Whether Istio treats the key as HTTP-only (dropped on TCP).
    pub fn http_only(&self) -> bool {
        matches!(
            self,
            ConditionKey::RequestHeader(_)
                | ConditionKey::RequestAuthPrincipal
                | ConditionKey::RequestAuthAudiences
                | ConditionKey::RequestAuthPresenter
                | ConditionKey::RequestAuthClaims(_)
        )
    }
}

/// `[a][b]` → `["a", "b"]`; `None` when malformed or any name is empty.
fn brackets(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        let name = inner.get(..close)?;
        if name.is_empty() || name.contains('[') {
            return None;
        }
        out.push(name.to_string());
        rest = inner.get(close + 1..)?;
    }
    Some(out)
}

const SOURCE_FIELDS: &[&str] = &[
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "trustDomains",
    "notTrustDomains",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
];
const OPERATION_FIELDS: &[&str] = &[
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
];

/// Reads an AuthorizationPolicy's `metadata` and `spec` (the caller has taken `apiVersion`
/// and `kind`).
pub fn parse(
    mut top: Fields<'_>,
    name: String,
    namespace: String,
    annotations: &[(String, String)],
    origin: Origin,
) -> DResult<AuthorizationPolicy> {
    let dry_run = annotations
        .iter()
        .any(|(k, v)| k == "istio.io/dry-run" && v.eq_ignore_ascii_case("true"));
    let spec = top.take("spec");
    top.ignore(&["status"]);
    top.finish(&["apiVersion", "kind", "metadata", "spec", "status"])?;
    let Some(spec) = spec else {
        // An empty spec: ALLOW with no rules, no selector (Istio's allow-nothing).
        return Ok(AuthorizationPolicy {
            name,
            namespace,
            action: Action::Allow,
            provider: None,
            scope: Scope::Namespace,
            rules: None,
            dry_run,
            origin,
        });
    };
    let spec_at = spec.at();
    let mut f = spec_at.fields()?;
    let selector = f.take("selector");
    let target_ref = f.take("targetRef");
    let target_refs = f.take("targetRefs");
    let action_f = f.take("action");
    let provider = f.take("provider");
    let rules_f = f.take("rules");
    f.finish(&[
        "selector",
        "targetRef",
        "targetRefs",
        "rules",
        "action",
        "provider",
    ])?;

    let action = match &action_f {
        None => Action::Allow,
        Some(a) => match a.at().string()?.as_str() {
            "ALLOW" => Action::Allow,
            "DENY" => Action::Deny,
            "AUDIT" => Action::Audit,
            "CUSTOM" => Action::Custom,
            other => {
                return Err(a
                    .at()
                    .error(format!("unknown action `{other}`"))
                    .with_help("expected one of `ALLOW`, `DENY`, `AUDIT`, `CUSTOM`"));
            }
        },
    };
    // Istio's validation: `provider` only with CUSTOM, and CUSTOM needs a named provider.
    let provider = match (&provider, action) {
        (Some(p), Action::Custom) => {
            let at = p.at();
            let mut pf = at.fields()?;
            let name = pf.take("name").map(|n| n.at().string()).transpose()?;
            pf.finish(&["name"])?;
            match name {
                Some(n) if !n.is_empty() => Some(n),
                _ => return Err(at.error("`provider.name` must not be empty")),
            }
        }
        (Some(p), _) => {
            return Err(p
                .at()
                .error("`provider` is only allowed with action `CUSTOM`"));
        }
        (None, Action::Custom) => {
            let at = action_f.as_ref().map_or(spec_at, |a| a.at());
            return Err(at.error("action `CUSTOM` needs a `provider`").with_help(
                "name one of the mesh's extension providers: `provider: {name: my-ext-authz}`",
            ));
        }
        (None, _) => None,
    };

    let has_targets = target_ref.is_some() || target_refs.is_some();
    let scope = match (&selector, has_targets) {
        (Some(s), true) => {
            return Err(s
                .at()
                .error("only one of `selector` or `targetRefs` can be set"));
        }
        (Some(s), false) => {
            let at = s.at();
            let mut sf = at.fields()?;
            let labels = match sf.take("matchLabels") {
                Some(m) => m.at().string_map()?,
                None => Vec::new(),
            };
            sf.finish(&["matchLabels"])?;
            for (k, v) in &labels {
                if k.is_empty() || v.contains('*') || k.contains('*') {
                    return Err(at.error(format!(
                        "invalid selector label `{k}: {v}`: wildcards are not allowed in selectors"
                    )));
                }
            }
            if labels.is_empty() {
                Scope::Namespace
            } else {
                Scope::Selector(labels)
            }
        }
        (None, true) => Scope::TargetRefs,
        (None, false) => Scope::Namespace,
    };

    let rules = match &rules_f {
        None => None,
        Some(r) => {
            let at = r.at();
            let items = at.items()?;
            let mut rules = Vec::with_capacity(items.len());
            for (item, path) in items {
                rules.push(parse_rule(item.with_path(&path), &namespace)?);
            }
            Some(rules)
        }
    };
    let rule_count = rules.as_ref().map_or(0, Vec::len);
    if action == Action::Deny && rule_count == 0 {
        let d = match &rules_f {
            Some(r) => r.at().error("DENY policy with empty rules is meaningless"),
            None => spec_at.error("DENY policy without `rules` is meaningless"),
        };
        return Err(d.with_help(
            "add a rule; `rules: [{}]` denies every request to the selected workloads",
        ));
    }
    if action == Action::Custom
        && let Some(rules) = &rules
    {
        check_custom_rules(rules)?;
    }
    Ok(AuthorizationPolicy {
        name,
        namespace,
        action,
        provider,
        scope,
        rules,
        dry_run,
        origin,
    })
}

/// Istio's validation refuses the authentication fields in CUSTOM rules: `principals`,
/// `namespaces`, `requestPrincipals` and their negations, and the conditions
/// `source.principal`, `source.namespace` and `request.auth.*`.
fn check_custom_rules(rules: &[Rule]) -> DResult<()> {
    let refuse = |v: &Str, field: &str| {
        Err(v.error(format!(
            "{field} is currently not supported with CUSTOM action"
        )))
    };
    for rule in rules {
        for s in &rule.from {
            for (values, field) in [
                (&s.principals, "From.Principals"),
                (&s.not_principals, "From.NotPrincipals"),
                (&s.request_principals, "From.RequestPrincipals"),
                (&s.not_request_principals, "From.NotRequestPrincipals"),
                (&s.namespaces, "From.Namespaces"),
                (&s.not_namespaces, "From.NotNamespaces"),
            ] {
                if let Some(v) = values.first() {
                    return refuse(v, field);
                }
            }
        }
        for c in &rule.when {
            let auth = matches!(
                c.key,
                ConditionKey::SourcePrincipal
                    | ConditionKey::SourceNamespace
                    | ConditionKey::RequestAuthPrincipal
                    | ConditionKey::RequestAuthAudiences
                    | ConditionKey::RequestAuthPresenter
                    | ConditionKey::RequestAuthClaims(_)
            );
            if auth {
                return refuse(&c.key_text, &format!("When.Key `{}`", c.key_text.value));
            }
        }
    }
    Ok(())
}

fn parse_rule(at: At<'_>, namespace: &str) -> DResult<Rule> {
    let mut f = at.fields()?;
    let from = f.take("from");
    let to = f.take("to");
    let when = f.take("when");
    f.finish(&["from", "to", "when"])?;
    let mut rule = Rule::default();
    if let Some(from) = from {
        let items = from.at().items()?;
        if items.is_empty() {
            return Err(from.at().error("`from` must not be empty"));
        }
        // Exact capacities here and below: a decoded policy set is held while it compiles,
        // and a plugin's peak memory stays resident.
        rule.from.reserve_exact(items.len());
        for (item, path) in items {
            let item = item.with_path(&path);
            let mut ff = item.fields()?;
            let source = ff.require("source")?;
            ff.finish(&["source"])?;
            rule.from.push(parse_source(source.at(), namespace)?);
        }
    }
    if let Some(to) = to {
        let items = to.at().items()?;
        if items.is_empty() {
            return Err(to.at().error("`to` must not be empty"));
        }
        rule.to.reserve_exact(items.len());
        for (item, path) in items {
            let item = item.with_path(&path);
            let mut ff = item.fields()?;
            let op = ff.require("operation")?;
            ff.finish(&["operation"])?;
            rule.to.push(parse_operation(op.at())?);
        }
    }
    if let Some(when) = when {
        let items = when.at().items()?;
        rule.when.reserve_exact(items.len());
        for (item, path) in items {
            rule.when.push(parse_condition(item.with_path(&path))?);
        }
    }
    Ok(rule)
}

/// Takes a string list field and checks every value is non-empty.
fn list(f: &mut Fields<'_>, key: &str) -> DResult<Vec<Str>> {
    let Some(field) = f.take(key) else {
        return Ok(Vec::new());
    };
    let values = field.at().strings()?;
    for v in &values {
        if v.value.is_empty() {
            return Err(v.error(format!("empty value is not allowed in `{key}`")));
        }
    }
    Ok(values)
}

/// Istio's wildcard rule: at most one `*`, only at the start or the end.
fn check_wildcards(values: &[Str]) -> DResult<()> {
    for v in values {
        let stars = v.value.matches('*').count();
        let ok = stars == 0 || (stars == 1 && (v.value.starts_with('*') || v.value.ends_with('*')));
        if !ok {
            return Err(v
                .error(format!(
                    "invalid value `{}`: wildcard is only allowed at the start or end",
                    v.value
                ))
                .with_help("use one `*` as a prefix (`*abc`), a suffix (`abc*`) or alone (`*`)"));
        }
    }
    Ok(())
}

fn check_ips(values: &[Str]) -> DResult<()> {
    for v in values {
        if parse_cidr(&v.value).is_none() {
            return Err(v.error(format!("invalid IP address or CIDR block `{}`", v.value)));
        }
    }
    Ok(())
}

fn check_ports(values: &[Str]) -> DResult<()> {
    for v in values {
        if v.value.parse::<u16>().is_err() {
            return Err(v.error(format!(
                "invalid port `{}`: expected a number from 0 to 65535",
                v.value
            )));
        }
    }
    Ok(())
}

fn check_service_accounts(values: &[Str]) -> DResult<()> {
    if values.len() > 16 {
        return Err(values.get(16).map_or_else(
            || Diagnostic::new("too many service accounts"),
            |v| v.error("at most 16 service accounts are allowed"),
        ));
    }
    for v in values {
        let parts: Vec<&str> = v.value.split('/').collect();
        if v.value.contains('*') || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(v
                .error(format!("invalid service account `{}`", v.value))
                .with_help(
                    "write `sa` (the policy's namespace) or `namespace/sa`, without wildcards",
                ));
        }
    }
    Ok(())
}

fn parse_source(at: At<'_>, _namespace: &str) -> DResult<Source> {
    let mut f = at.fields()?;
    let s = Source {
        principals: list(&mut f, "principals")?,
        not_principals: list(&mut f, "notPrincipals")?,
        request_principals: list(&mut f, "requestPrincipals")?,
        not_request_principals: list(&mut f, "notRequestPrincipals")?,
        namespaces: list(&mut f, "namespaces")?,
        not_namespaces: list(&mut f, "notNamespaces")?,
        service_accounts: list(&mut f, "serviceAccounts")?,
        not_service_accounts: list(&mut f, "notServiceAccounts")?,
        trust_domains: list(&mut f, "trustDomains")?,
        not_trust_domains: list(&mut f, "notTrustDomains")?,
        ip_blocks: list(&mut f, "ipBlocks")?,
        not_ip_blocks: list(&mut f, "notIpBlocks")?,
        remote_ip_blocks: list(&mut f, "remoteIpBlocks")?,
        not_remote_ip_blocks: list(&mut f, "notRemoteIpBlocks")?,
    };
    f.finish(SOURCE_FIELDS)?;
    if s == Source::default() {
        return Err(at.error("`source` must set at least one field"));
    }
    for v in [
        &s.principals,
        &s.not_principals,
        &s.request_principals,
        &s.not_request_principals,
        &s.namespaces,
        &s.not_namespaces,
        &s.trust_domains,
        &s.not_trust_domains,
    ] {
        check_wildcards(v)?;
    }
    for v in [
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
    ] {
        check_ips(v)?;
    }
    check_service_accounts(&s.service_accounts)?;
    check_service_accounts(&s.not_service_accounts)?;
    let has_sa = !s.service_accounts.is_empty() || !s.not_service_accounts.is_empty();
    let has_pn = !s.principals.is_empty()
        || !s.not_principals.is_empty()
        || !s.namespaces.is_empty()
        || !s.not_namespaces.is_empty();
    if has_sa && has_pn {
        return Err(
            at.error("`serviceAccounts` cannot be set together with `principals` or `namespaces`")
        );
    }
    Ok(s)
}

fn parse_operation(at: At<'_>) -> DResult<Operation> {
    let mut f = at.fields()?;
    let o = Operation {
        hosts: list(&mut f, "hosts")?,
        not_hosts: list(&mut f, "notHosts")?,
        ports: list(&mut f, "ports")?,
        not_ports: list(&mut f, "notPorts")?,
        methods: list(&mut f, "methods")?,
        not_methods: list(&mut f, "notMethods")?,
        paths: list(&mut f, "paths")?,
        not_paths: list(&mut f, "notPaths")?,
    };
    f.finish(OPERATION_FIELDS)?;
    if o == Operation::default() {
        return Err(at.error("`operation` must set at least one field"));
    }
    for v in [&o.hosts, &o.not_hosts, &o.methods, &o.not_methods] {
        check_wildcards(v)?;
    }
    check_ports(&o.ports)?;
    check_ports(&o.not_ports)?;
    check_paths(&o.paths)?;
    check_paths(&o.not_paths)?;
    Ok(o)
}

/// Paths: plain values follow the wildcard rule; values with `{` are URI templates, where
/// `{*}` and `{**}` must each be a whole segment, `{**}` must be the last operator, and no
/// other `*`, `{` or `}` may appear.
fn check_paths(values: &[Str]) -> DResult<()> {
    for v in values {
        if !v.value.contains('{') && !v.value.contains('}') {
            check_wildcards(std::slice::from_ref(v))?;
            continue;
        }
        let bad = |why: &str| {
            Err(v
                .error(format!("invalid path template `{}`: {why}", v.value))
                .with_help("path templates use `{*}` for one segment and `{**}` for the rest, each as a whole segment"))
        };
        if !v.value.starts_with('/') {
            return bad("it must start with `/`");
        }
        let segments: Vec<&str> = v.value.split('/').skip(1).collect();
        let mut seen_double = false;
        for seg in &segments {
            let is_op = *seg == "{*}" || *seg == "{**}";
            if is_op {
                if seen_double {
                    return bad("`{**}` must be the last operator");
                }
                if *seg == "{**}" {
                    seen_double = true;
                }
            } else if seg.contains(['*', '{', '}']) {
                return bad("an operator must be a whole segment and only `{*}` or `{**}`");
            }
        }
    }
    Ok(())
}

fn parse_condition(at: At<'_>) -> DResult<Condition> {
    let mut f = at.fields()?;
    let key_f = f.require("key")?;
    let values = list(&mut f, "values")?;
    let not_values = list(&mut f, "notValues")?;
    f.finish(&["key", "values", "notValues"])?;
    let key_text = Str {
        value: key_f.at().string()?,
        path: key_f.path.clone(),
        pos: key_f.node.pos,
    };
    let Some(key) = ConditionKey::parse(&key_text.value) else {
        return Err(key_text
            .error(format!("unknown attribute `{}`", key_text.value))
            .with_help("supported keys: request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, source.trustDomain, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>], destination.ip, destination.port, connection.sni, experimental.envoy.filters.<filter>[<key>]"));
    };
    if values.is_empty() && not_values.is_empty() {
        return Err(at.error(format!(
            "condition on `{}` needs `values` or `notValues`",
            key_text.value
        )));
    }
    for vs in [&values, &not_values] {
        match key {
            ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
                check_ips(vs)?;
            }
            ConditionKey::DestinationPort => check_ports(vs)?,
            ConditionKey::SourceServiceAccount => check_service_accounts(vs)?,
            _ => check_wildcards(vs)?,
        }
    }
    Ok(Condition {
        key,
        key_text,
        values,
        not_values,
    })
}

/// Path of a field under a document, for messages built outside the decoder.
pub fn field_path(base: &str, key: &str) -> String {
    join(base, key)
}
