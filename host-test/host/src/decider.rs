//! The proxy-wasm guest behind the corpus's [`Decider`] trait.
//!
//! `load` keeps the policy files and options; each request is then decided by a VM configured
//! as the request's destination sidecar would be: the files inlined as `policy`, the options
//! as `trustDomain`, `trustDomainAliases`, `rootNamespace` and `pathNormalization`, the
//! destination workload as `workload`, `protocol` from the request, and `numTrustedProxies` 1
//! (shown as at an Istio gateway, see [`crate::envoy`]) when the request's original client
//! differs from its direct peer. One VM per distinct
//! configuration, cached until the next `load`.
//!
//! The decision is read back from what the plugin shows Envoy: the verdict from the stream
//! (a local reply or a closed connection denies); the deciding rule from the response details
//! `rbac_access_denied_matched_policy[<id>]` and the `x-palisade-policy` header on a denial;
//! and the full explanation (step, rule, dry-run results, audit, NetworkPolicy verdict) from
//! the decision log line the plugin writes for every request, which is accepted only when
//! the decision read from it explains itself in exactly the same words. What that line does
//! not carry — the NetworkPolicy ingress and egress rules when AuthorizationPolicy decided —
//! is reported by `unsupported_checks`, and a request over UDP or SCTP (which no proxy-wasm
//! filter sees) by `cannot_express`: the corpus runner lists both instead of failing them.

use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_corpus::Decider;
use palisade_engine::decision::NetworkOutcome;
use palisade_engine::{
    CustomCheck, Decision, Engine, ExtAuthzAnswer, Options, Protocol, Request, RuleRef,
    ShadowResult, SourceFile, Step, Transport, Verdict, WorkloadRef,
};

use crate::envoy::{hidden_peer, trusted_proxies};
use crate::host::{LogLine, PluginInstance, ProxyWasmHost};

/// The response header naming the deciding policy on a denial.
pub const POLICY_HEADER: &str = "x-palisade-policy";

/// The plugin's decision log line starts with this.
const LOG_PREFIX: &str = "palisade: ";

/// The proxy-wasm plugin in the test host, as a corpus [`Decider`].
#[derive(Debug)]
pub struct ProxyWasmDecider {
    host: ProxyWasmHost,
    policy: String,
    options: Options,
    /// The natively compiled inventory, only to find a request's destination workload by its
    /// address (as the destination's sidecar knows its own workload).
    native: Option<Engine>,
    instances: BTreeMap<String, Result<PluginInstance, String>>,
    configured: usize,
}

impl ProxyWasmDecider {
    /// A decider running the plugin compiled in `host`.
    pub fn new(host: ProxyWasmHost) -> ProxyWasmDecider {
        ProxyWasmDecider {
            host,
            policy: String::new(),
            options: Options::default(),
            native: None,
            instances: BTreeMap::new(),
            configured: 0,
        }
    }

    /// How many VMs were configured so far (one per distinct plugin configuration).
    pub fn configured(&self) -> usize {
        self.configured
    }

    /// The plugin configuration for a destination workload.
    pub fn configuration(
        &self,
        workload: &WorkloadRef,
        protocol: Protocol,
        trusted: u32,
    ) -> String {
        sidecar_configuration(&self.options, &self.policy, workload, protocol, trusted)
    }

    /// The destination workload: the request's, else the inventory workload with the
    /// destination address.
    fn destination(&self, request: &Request) -> Result<WorkloadRef, String> {
        if let Some(w) = &request.destination.workload {
            return Ok(w.clone());
        }
        let ip = request
            .destination
            .ip
            .ok_or("the request names no destination workload or address")?;
        self.native
            .as_ref()
            .and_then(|e| match e.inventory().owner_of(ip) {
                // Only a live pod-network workload has a sidecar to decide in.
                palisade_engine::AddressOwner::Workload(i) => e.inventory().workloads.get(i),
                _ => None,
            })
            .map(|w| WorkloadRef {
                namespace: w.namespace.clone(),
                name: Some(w.name.clone()),
                ..WorkloadRef::default()
            })
            .ok_or_else(|| format!("no workload in the inventory has address `{ip}`"))
    }
}

impl Decider for ProxyWasmDecider {
    fn name(&self) -> String {
        "proxy-wasm".into()
    }

    /// The plugin's decision log line names the NetworkPolicy ingress and egress rules only
    /// when NetworkPolicy decided.
    fn unsupported_checks(&self) -> &'static [&'static str] {
        &["network.ingressRule", "network.egressRule"]
    }

    /// Envoy runs proxy-wasm network filters on TCP connections only: a UDP or SCTP
    /// request cannot reach the plugin.
    /// A TCP connection whose original client differs from its peer cannot be shown either:
    /// without HTTP there is no `x-forwarded-for`.
    fn cannot_express(&self, request: &Request) -> Option<String> {
        if request.transport != Transport::Tcp {
            return Some(format!(
                "transport {:?}: Envoy runs proxy-wasm network filters on TCP only",
                request.transport
            ));
        }
        if request.protocol == Protocol::Tcp && trusted_proxies(request) > 0 {
            return Some(
                "a TCP connection has no `x-forwarded-for`: its `remote.ip` is its peer".into(),
            );
        }
        hidden_peer(request)
    }

    fn load(&mut self, files: &[SourceFile], options: &Options) -> Result<(), String> {
        self.instances.clear();
        self.options = options.clone();
        let mut policy = String::new();
        for f in files {
            policy.push_str("---\n");
            policy.push_str(&f.text);
            if !f.text.ends_with('\n') {
                policy.push('\n');
            }
        }
        self.policy = policy;
        let set = palisade_engine::load(files).map_err(|e| format!("load: {e}"))?;
        self.native =
            Some(palisade_engine::compile(&set, options).map_err(|e| format!("compile: {e}"))?);
        Ok(())
    }

    fn decide(&mut self, request: &Request) -> Result<Decision, String> {
        let workload = self.destination(request)?;
        let config = self.configuration(&workload, request.protocol, trusted_proxies(request));
        if !self.instances.contains_key(&config) {
            self.configured = self.configured.saturating_add(1);
            let vm = self
                .host
                .configure(&config)
                .map_err(|e| format!("configuration refused: {e}"));
            self.instances.insert(config.clone(), vm);
        }
        let vm = match self.instances.get_mut(&config) {
            Some(Ok(vm)) => vm,
            Some(Err(e)) => return Err(e.clone()),
            None => return Err("no VM".into()),
        };
        match request.protocol {
            Protocol::Http => {
                let o = vm.http(request);
                if let Some(t) = o.trap {
                    return Err(format!("the guest trapped: {t}"));
                }
                let header = o
                    .headers
                    .iter()
                    .find(|(k, _)| k == POLICY_HEADER)
                    .map(|(_, v)| v.clone());
                decision_from(o.allowed, &o.logs, o.details.as_deref(), header.as_deref())
            }
            Protocol::Tcp => {
                let o = vm.tcp(request);
                if let Some(t) = o.trap {
                    return Err(format!("the guest trapped: {t}"));
                }
                decision_from(o.allowed, &o.logs, None, None)
            }
        }
    }
}

/// Reads the decision back from a stream's outcome: the verdict from the stream, the rest
/// from the plugin's decision log line, cross-checked against the local reply's details and
/// policy header when there is one.
pub fn decision_from(
    allowed: bool,
    logs: &[LogLine],
    details: Option<&str>,
    policy_header: Option<&str>,
) -> Result<Decision, String> {
    let line = logs
        .iter()
        .map(|l| l.message.as_str())
        .find(|m| m.starts_with(LOG_PREFIX) && m.contains(" by policy "))
        .ok_or_else(|| {
            format!(
                "the plugin logged no decision (log: {})",
                logs.iter()
                    .map(|l| l.message.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        })?;
    let (policy, decision) = parse_log_line(line)
        .ok_or_else(|| format!("cannot read the decision from the log line `{line}`"))?;
    let verdict = if allowed {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    if decision.verdict != verdict {
        return Err(format!(
            "the stream was {verdict}ed but the log line says {} (`{line}`)",
            decision.verdict
        ));
    }
    // A provider that failed closed replies `ext_authz_error` where one that denied replies
    // `ext_authz_denied`; the engine sees both as the provider's deny.
    let failed_closed = decision.step == Step::CustomDenied && details == Some("ext_authz_error");
    if let Some(d) = details
        && d != decision.envoy_details()
        && !failed_closed
    {
        return Err(format!(
            "response details `{d}` disagree with the log line `{line}`"
        ));
    }
    if let Some(h) = policy_header
        && h != policy
    {
        return Err(format!(
            "`{POLICY_HEADER}: {h}` disagrees with the log line `{line}`"
        ));
    }
    Ok(decision)
}

/// `palisade: <verb> <what> by policy <policy>: <explanation>` → the policy and the decision
/// whose `explain()` is exactly that explanation.
fn parse_log_line(line: &str) -> Option<(String, Decision)> {
    let mut from = 0;
    while let Some(i) = line.get(from..).and_then(|s| s.find(" by policy ")) {
        let at = from.checked_add(i)?;
        let rest = line.get(at.checked_add(" by policy ".len())?..)?;
        if let Some((policy, explanation)) = rest.split_once(": ")
            && !policy.contains(' ')
            && let Some(d) = parse_explanation(explanation)
            && d.explain() == explanation
        {
            return Some((policy.to_string(), d));
        }
        from = at.checked_add(1)?;
    }
    None
}

/// A rule id back into a [`RuleRef`]: `ns[<ns>]-policy[<name>]-rule[<i>]` or
/// `netpol[<ns>/<name>]-ingress[<i>]` (`-egress[<i>]`).
pub fn rule_ref(id: &str) -> Option<RuleRef> {
    if id == "none" {
        return None;
    }
    let index = |s: &str| s.strip_suffix(']').and_then(|n| n.parse::<usize>().ok());
    // CUSTOM rules: `istio-ext-authz-<provider>-ns[..]-policy[..]-rule[..]`, with Istio's
    // suffix when the provider is not declared.
    if let Some(rest) = id.strip_prefix("istio-ext-authz-") {
        let at = rest.find("-ns[")?;
        let inner = rest.get(at + 1..)?;
        let inner = inner
            .strip_suffix("-deny-due-to-bad-CUSTOM-action")
            .unwrap_or(inner);
        let mut r = rule_ref(inner)?;
        r.id = id.into();
        return Some(r);
    }
    if let Some(rest) = id.strip_prefix("ns[") {
        let (ns, rest) = rest.split_once("]-policy[")?;
        let (policy, rule) = rest.rsplit_once("]-rule[")?;
        return Some(RuleRef {
            kind: "AuthorizationPolicy".into(),
            namespace: ns.into(),
            policy: policy.into(),
            rule: index(rule)?,
            id: id.into(),
        });
    }
    let rest = id.strip_prefix("netpol[")?;
    let (name, rule) = rest
        .rsplit_once("]-ingress[")
        .or_else(|| rest.rsplit_once("]-egress["))?;
    let (ns, policy) = name.split_once('/')?;
    Some(RuleRef {
        kind: "NetworkPolicy".into(),
        namespace: ns.into(),
        policy: policy.into(),
        rule: index(rule)?,
        id: id.into(),
    })
}

fn verdict(s: &str) -> Option<Verdict> {
    match s {
        "allow" => Some(Verdict::Allow),
        "deny" => Some(Verdict::Deny),
        _ => None,
    }
}

/// The inverse of [`Decision::explain`] (checked by the caller: the result must explain
/// itself in the same words).
fn parse_explanation(text: &str) -> Option<Decision> {
    let mut d = Decision {
        verdict: Verdict::Deny,
        step: Step::Error,
        rule: None,
        shadow: Vec::new(),
        audit: None,
        network: None,
        errors: Vec::new(),
        custom: Vec::new(),
    };
    if let Some(errors) = text.strip_prefix("denied (fail closed): ") {
        d.errors = vec![errors.to_string().into()];
        return Some(d);
    }
    if let Some((_, why)) = text
        .strip_prefix("denied (HTTP ")
        .and_then(|t| t.split_once("): jwt_authn refuses the token: "))
    {
        d.step = Step::JwtRejected;
        d.errors = vec![why.to_string().into()];
        return Some(d);
    }
    let mut parts = text.split("; ");
    let head = parts.next()?;
    let mut last_custom: Option<(String, Option<ExtAuthzAnswer>)> = None;
    let network = |verdict, step, ingress, egress| NetworkOutcome {
        verdict,
        step,
        ingress_rule: ingress,
        egress_rule: egress,
    };
    const HEADS: &[(&str, Verdict, Step)] = &[
        (
            "allowed: no ALLOW AuthorizationPolicy applies to the workload",
            Verdict::Allow,
            Step::NoAllowPolicies,
        ),
        (
            "denied: ALLOW policies apply to the workload and none of their rules matched",
            Verdict::Deny,
            Step::NoAllowMatched,
        ),
        (
            "allowed: no policy applies and no NetworkPolicy isolates either side",
            Verdict::Allow,
            Step::NetworkNotIsolated,
        ),
        (
            "denied: the destination is isolated for ingress and no NetworkPolicy ingress rule allows the connection",
            Verdict::Deny,
            Step::NetworkIngressDenied,
        ),
        (
            "denied: the source is isolated for egress and no NetworkPolicy egress rule allows the connection",
            Verdict::Deny,
            Step::NetworkEgressDenied,
        ),
    ];
    if let Some((_, v, s)) = HEADS.iter().find(|(h, _, _)| *h == head) {
        d.verdict = *v;
        d.step = *s;
        if d.step == Step::NetworkNotIsolated {
            d.network = Some(network(
                Verdict::Allow,
                Step::NetworkNotIsolated,
                None,
                None,
            ));
        }
    } else if let Some(id) = head
        .strip_prefix("denied: DENY rule ")
        .and_then(|s| s.strip_suffix(" matched"))
    {
        d.step = Step::DenyMatched;
        d.rule = rule_ref(id).map(Arc::new);
    } else if let Some(id) = head
        .strip_prefix("allowed: ALLOW rule ")
        .and_then(|s| s.strip_suffix(" matched"))
    {
        d.verdict = Verdict::Allow;
        d.step = Step::AllowMatched;
        d.rule = rule_ref(id).map(Arc::new);
    } else if let Some(rules) = head
        .strip_prefix("allowed: NetworkPolicy allows it (ingress ")
        .and_then(|s| s.strip_suffix(')'))
    {
        let (ingress, egress) = rules.split_once(", egress ")?;
        d.verdict = Verdict::Allow;
        d.step = Step::NetworkAllowed;
        d.network = Some(network(
            Verdict::Allow,
            Step::NetworkAllowed,
            rule_ref(ingress),
            rule_ref(egress),
        ));
    } else if let Some(id) = head
        .strip_prefix("pending: CUSTOM rule ")
        .and_then(|s| s.strip_suffix(" matched"))
    {
        d.verdict = Verdict::CustomPending;
        d.step = Step::CustomPending;
        d.rule = rule_ref(id).map(Arc::new);
    } else if let Some((id, provider)) = head
        .strip_prefix("denied: CUSTOM rule ")
        .and_then(|s| s.strip_suffix("` denied"))
        .and_then(|s| s.split_once(" matched and provider `"))
    {
        d.step = Step::CustomDenied;
        d.rule = rule_ref(id).map(Arc::new);
        last_custom = Some((provider.to_string(), Some(ExtAuthzAnswer::Deny)));
    } else if let Some(id) = head.strip_prefix("denied: rule ").and_then(|s| {
        s.strip_suffix(
            " matched and its CUSTOM provider is not declared in the mesh's extension providers",
        )
    }) {
        d.step = Step::CustomProviderMissing;
        d.rule = rule_ref(id).map(Arc::new);
    } else {
        return None;
    }
    for part in parts {
        if let Some(p) = part
            .strip_prefix("ask provider `")
            .and_then(|s| s.strip_suffix('`'))
        {
            last_custom = Some((p.to_string(), None));
        } else if let Some((p, id)) = part
            .strip_prefix("provider `")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.split_once("` allowed ("))
        {
            d.custom.push(CustomCheck {
                provider: p.into(),
                rule: Arc::new(rule_ref(id)?),
                answer: Some(ExtAuthzAnswer::Allow),
            });
        } else if let Some(v) = part.strip_prefix("network policy: ") {
            let v = verdict(v)?;
            let step = match (v, d.step) {
                (Verdict::Deny, s @ (Step::NetworkIngressDenied | Step::NetworkEgressDenied)) => s,
                (Verdict::Deny, _) => Step::NetworkIngressDenied,
                (Verdict::Allow, _) => Step::NetworkAllowed,
                // A NetworkPolicy outcome is never pending.
                (Verdict::CustomPending, _) => return None,
            };
            d.network = Some(network(v, step, None, None));
        } else if let Some(rest) = part.strip_prefix("dry-run ") {
            let (action, rest) = rest.split_once(" policies would ")?;
            let (v, matched) = rest.split_once(" (")?;
            let matched = matched.strip_suffix(')')?;
            d.shadow.push(ShadowResult {
                action: action.into(),
                verdict: verdict(v)?,
                matched: rule_ref(matched).map(Arc::new),
            });
        } else if let Some(id) = part.strip_prefix("audited by ") {
            d.audit = rule_ref(id).map(Arc::new);
        } else {
            return None;
        }
    }
    // The provider that decided (pending or denied) was asked last.
    if let Some((provider, answer)) = last_custom {
        d.custom.push(CustomCheck {
            provider,
            rule: d.rule.clone()?,
            answer,
        });
    }
    Some(d)
}

/// The plugin configuration JSON a destination workload's sidecar gets: the mesh options, the
/// policy inline, the workload, the filter (`http` or `tcp`) and, when `trusted` is not 0,
/// `numTrustedProxies` (the request is shown as at an Istio gateway).
pub fn sidecar_configuration(
    options: &Options,
    policy: &str,
    workload: &WorkloadRef,
    protocol: Protocol,
    trusted: u32,
) -> String {
    let mut c = match serde_json::to_value(options) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    c.insert("policy".into(), policy.into());
    c.insert(
        "workload".into(),
        serde_json::to_value(workload).unwrap_or_default(),
    );
    c.insert(
        "protocol".into(),
        match protocol {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
        .into(),
    );
    if trusted > 0 {
        c.insert("numTrustedProxies".into(), trusted.into());
    }
    serde_json::Value::Object(c).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rule_ids_parse_back_into_rule_refs() {
        let r = rule_ref("ns[shop]-policy[a-b]-rule[3]").unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.policy.as_str(), r.rule),
            ("shop", "a-b", 3)
        );
        let n = rule_ref("netpol[x/allow]-egress[0]").unwrap();
        assert_eq!(
            (n.kind.as_str(), n.policy.as_str()),
            ("NetworkPolicy", "allow")
        );
        assert_eq!(rule_ref("none"), None);
    }

    #[test]
    fn a_log_line_gives_back_the_decision_it_explains() {
        let line = "palisade: allowed GET cart/x by policy ns[shop]-policy[p]-rule[0] from a by policy x: allowed: ALLOW rule ns[shop]-policy[p]-rule[0] matched; dry-run DENY policies would deny (ns[shop]-policy[d]-rule[1]); audited by ns[shop]-policy[au]-rule[0]";
        let (policy, d) = parse_log_line(line).unwrap();
        assert_eq!(policy, "x");
        assert_eq!(d.step, Step::AllowMatched);
        assert_eq!(d.shadow.len(), 1);
        assert_eq!(d.audit.unwrap().policy, "au");
    }

    #[test]
    fn a_line_that_does_not_explain_itself_is_refused() {
        assert!(parse_log_line("palisade: allowed x by policy none: allowed: maybe").is_none());
    }
}
