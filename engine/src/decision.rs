//! What the engine answers: allow or deny, who decided, and what the shadow (dry-run) and
//! audit policies would have said.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::DecisionError;

/// Allow or deny — or, when a CUSTOM policy's provider has not answered yet, pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
    /// A CUSTOM rule matched and its provider must be asked: the request carried no answer
    /// from it ([`Decision::custom`] names the provider). Not an allow: a host that cannot ask
    /// denies.
    CustomPending,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::CustomPending => "custom-pending",
        })
    }
}

/// Which step of the combining algorithm produced the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// A DENY AuthorizationPolicy rule matched (Istio step 2).
    DenyMatched,
    /// No ALLOW AuthorizationPolicy applies to the workload (Istio step 3).
    NoAllowPolicies,
    /// An ALLOW AuthorizationPolicy rule matched (Istio step 4).
    AllowMatched,
    /// ALLOW policies apply but none matched (Istio step 5).
    NoAllowMatched,
    /// Neither side of the connection is isolated by a NetworkPolicy for this direction.
    NetworkNotIsolated,
    /// A NetworkPolicy rule allowed the connection.
    NetworkAllowed,
    /// The destination is isolated for ingress and no NetworkPolicy rule allowed it.
    NetworkIngressDenied,
    /// The source is isolated for egress and no NetworkPolicy rule allowed it.
    NetworkEgressDenied,
    /// The destination is isolated for ingress, and the connection comes from the node the
    /// destination runs on, which Kubernetes always lets in.
    NetworkFromOwnNode,
    /// The request could not be evaluated (for example an unknown workload); denied (fail closed).
    Error,
    /// `jwt_authn`, as Istio configures it from the RequestAuthentications of the workload,
    /// refuses the token before any authorization: HTTP 401, or 403 for audiences it does not
    /// allow (the reason is in `errors`).
    JwtRejected,
    /// A CUSTOM rule matched and its provider has not answered (Istio step 1): pending.
    CustomPending,
    /// A CUSTOM rule matched and its provider denied (Istio step 1).
    CustomDenied,
    /// A CUSTOM rule matched whose provider is not declared: Istio turns such rules into
    /// DENY rules (`…-deny-due-to-bad-CUSTOM-action`).
    CustomProviderMissing,
}

impl Step {
    /// The step's name as it is serialised (`deny-matched`, `no-allow-policies`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::DenyMatched => "deny-matched",
            Step::NoAllowPolicies => "no-allow-policies",
            Step::AllowMatched => "allow-matched",
            Step::NoAllowMatched => "no-allow-matched",
            Step::NetworkNotIsolated => "network-not-isolated",
            Step::NetworkAllowed => "network-allowed",
            Step::NetworkIngressDenied => "network-ingress-denied",
            Step::NetworkEgressDenied => "network-egress-denied",
            Step::NetworkFromOwnNode => "network-from-own-node",
            Step::Error => "error",
            Step::JwtRejected => "jwt-rejected",
            Step::CustomPending => "custom-pending",
            Step::CustomDenied => "custom-denied",
            Step::CustomProviderMissing => "custom-provider-missing",
        }
    }
}

/// One external authorizer a CUSTOM rule asked, in the order Envoy asks them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomCheck {
    /// The provider's name.
    pub provider: String,
    /// The first CUSTOM rule of this provider that matched (Envoy's shadow effective policy
    /// id, `istio-ext-authz-<provider>-ns[<ns>]-policy[<name>]-rule[<i>]`).
    pub rule: Arc<RuleRef>,
    /// What the provider answered (from the request's `extAuthz`), or `None`: not yet asked.
    pub answer: Option<crate::request::ExtAuthzAnswer>,
}

/// A rule that matched, named as Envoy names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    /// `AuthorizationPolicy` or `NetworkPolicy`.
    pub kind: String,
    /// Namespace of the policy.
    pub namespace: String,
    /// Name of the policy.
    pub policy: String,
    /// Index of the rule in the policy (`spec.rules[i]`, or `spec.ingress[i]` / `spec.egress[i]`).
    pub rule: usize,
    /// Envoy's name: `ns[<ns>]-policy[<name>]-rule[<i>]` for AuthorizationPolicy,
    /// `netpol[<ns>/<name>]-ingress[<i>]` / `-egress[<i>]` for NetworkPolicy.
    pub id: String,
}

/// The result of one group of dry-run (shadow) policies, as Envoy's shadow rules report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowResult {
    /// `ALLOW` or `DENY`: which dry-run policies (`istio.io/dry-run: "true"`) this is.
    pub action: String,
    /// What enforcing these policies alone would have decided.
    pub verdict: Verdict,
    /// The shadow effective policy id, when a rule matched.
    pub matched: Option<Arc<RuleRef>>,
}

/// A decision and its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// The step that decided.
    pub step: Step,
    /// The deciding rule, where one rule decided.
    pub rule: Option<Arc<RuleRef>>,
    /// AuthorizationPolicy dry-run results (Envoy's `shadow_rules`), allow first.
    pub shadow: Vec<ShadowResult>,
    /// The AUDIT rule that matched, if any (never changes the verdict).
    pub audit: Option<Arc<RuleRef>>,
    /// The NetworkPolicy outcome when NetworkPolicies were evaluated (they must allow too).
    pub network: Option<NetworkOutcome>,
    /// Evaluation errors; any error denies.
    pub errors: Vec<DecisionError>,
    /// The external authorizers CUSTOM rules asked, in order (empty when none matched). The
    /// last one decided when the step is [`Step::CustomPending`] or [`Step::CustomDenied`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomCheck>,
}

/// What NetworkPolicy said about the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkOutcome {
    /// Allow only when both the source's egress and the destination's ingress allow.
    pub verdict: Verdict,
    /// The step for the direction that decided (a deny names the refusing side).
    pub step: Step,
    /// The ingress rule that allowed (when the destination is isolated for ingress).
    pub ingress_rule: Option<RuleRef>,
    /// The egress rule that allowed (when the source is isolated for egress).
    pub egress_rule: Option<RuleRef>,
}

impl Decision {
    /// Joins the NetworkPolicy outcome to an authorization decision: a NetworkPolicy denial
    /// stands over anything but a deny (even a CUSTOM provider pending: the connection never
    /// reaches the proxy), and an allow names the step when no AuthorizationPolicy applied.
    pub fn join_network(&mut self, outcome: NetworkOutcome) {
        if outcome.verdict == Verdict::Deny && self.verdict != Verdict::Deny {
            self.verdict = Verdict::Deny;
            self.step = outcome.step;
            self.rule = None;
        } else if self.step == Step::NoAllowPolicies && outcome.verdict == Verdict::Allow {
            self.step = outcome.step;
        }
        self.network = Some(outcome);
    }

    /// The errors as one line, `; `-separated (empty when there are none).
    pub fn error_message(&self) -> String {
        join(&self.errors)
    }

    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// Envoy's response code details for this decision:
    /// `rbac_access_denied_matched_policy[<id>]` (`[none]` when no rule matched), or
    /// `ext_authz_denied` when a CUSTOM provider denied.
    pub fn envoy_details(&self) -> String {
        if self.step == Step::JwtRejected {
            // Envoy's `jwt_authn_access_denied{<status, spaces as underscores>}`.
            let why = self
                .errors
                .first()
                .map_or_else(String::new, ToString::to_string)
                .replace(' ', "_");
            return format!("jwt_authn_access_denied{{{why}}}");
        }
        if self.step == Step::CustomDenied {
            return "ext_authz_denied".to_string();
        }
        let id = self.rule.as_ref().map_or("none", |r| r.id.as_str());
        format!("rbac_access_denied_matched_policy[{id}]")
    }

    /// A one-paragraph human explanation.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let rule = |r: Option<&RuleRef>| r.map_or_else(|| "none".to_string(), |r| r.id.clone());
        out.push_str(&match self.step {
            Step::DenyMatched => format!("denied: DENY rule {} matched", rule(self.rule.as_deref())),
            Step::NoAllowPolicies => {
                "allowed: no ALLOW AuthorizationPolicy applies to the workload".to_string()
            }
            Step::AllowMatched => format!("allowed: ALLOW rule {} matched", rule(self.rule.as_deref())),
            Step::NoAllowMatched => {
                "denied: ALLOW policies apply to the workload and none of their rules matched"
                    .to_string()
            }
            Step::NetworkNotIsolated => {
                "allowed: no policy applies and no NetworkPolicy isolates either side".to_string()
            }
            Step::NetworkAllowed => format!(
                "allowed: NetworkPolicy allows it (ingress {}, egress {})",
                rule(self.network.as_ref().and_then(|n| n.ingress_rule.as_ref())),
                rule(self.network.as_ref().and_then(|n| n.egress_rule.as_ref()))
            ),
            Step::NetworkIngressDenied => {
                "denied: the destination is isolated for ingress and no NetworkPolicy ingress rule allows the connection".to_string()
            }
            Step::NetworkEgressDenied => {
                "denied: the source is isolated for egress and no NetworkPolicy egress rule allows the connection".to_string()
            }
            Step::NetworkFromOwnNode => {
                "allowed: the connection comes from the destination pod's own node, which NetworkPolicy always lets in".to_string()
            }
            Step::JwtRejected => {
                let why = join(&self.errors);
                format!(
                    "denied (HTTP {}): jwt_authn refuses the token: {why}",
                    crate::error::rejection_status(&why)
                )
            }
            Step::Error => format!(
                "denied (fail closed): {}",
                join(&self.errors)
            ),
            Step::CustomPending => format!(
                "pending: CUSTOM rule {} matched; ask provider `{}`",
                rule(self.rule.as_deref()),
                self.custom.last().map_or("?", |c| c.provider.as_str())
            ),
            Step::CustomDenied => format!(
                "denied: CUSTOM rule {} matched and provider `{}` denied",
                rule(self.rule.as_deref()),
                self.custom.last().map_or("?", |c| c.provider.as_str())
            ),
            Step::CustomProviderMissing => format!(
                "denied: rule {} matched and its CUSTOM provider is not declared in the mesh's extension providers",
                rule(self.rule.as_deref())
            ),
        });
        for c in &self.custom {
            if c.answer == Some(crate::request::ExtAuthzAnswer::Allow) {
                out.push_str(&format!(
                    "; provider `{}` allowed ({})",
                    c.provider, c.rule.id
                ));
            }
        }
        if let Some(n) = &self.network
            && !matches!(
                self.step,
                Step::NetworkAllowed | Step::NetworkNotIsolated | Step::NetworkFromOwnNode
            )
        {
            out.push_str(&format!("; network policy: {}", n.verdict));
        }
        for s in &self.shadow {
            out.push_str(&format!(
                "; dry-run {} policies would {} ({})",
                s.action,
                s.verdict,
                rule(s.matched.as_deref())
            ));
        }
        if let Some(a) = &self.audit {
            out.push_str(&format!("; audited by {}", a.id));
        }
        out
    }
}

/// Errors as one line, `; `-separated.
fn join(errors: &[DecisionError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Step;

    #[test]
    fn every_step_name_is_the_name_it_is_serialised_as() {
        let steps = [
            (Step::DenyMatched, "deny-matched"),
            (Step::NoAllowPolicies, "no-allow-policies"),
            (Step::AllowMatched, "allow-matched"),
            (Step::NoAllowMatched, "no-allow-matched"),
            (Step::NetworkNotIsolated, "network-not-isolated"),
            (Step::NetworkAllowed, "network-allowed"),
            (Step::NetworkIngressDenied, "network-ingress-denied"),
            (Step::NetworkEgressDenied, "network-egress-denied"),
            (Step::NetworkFromOwnNode, "network-from-own-node"),
            (Step::Error, "error"),
            (Step::JwtRejected, "jwt-rejected"),
            (Step::CustomPending, "custom-pending"),
            (Step::CustomDenied, "custom-denied"),
            (Step::CustomProviderMissing, "custom-provider-missing"),
        ];
        for (step, name) in steps {
            assert_eq!(step.as_str(), name);
            assert_eq!(serde_json::to_value(step).unwrap(), name);
            assert_eq!(serde_json::from_value::<Step>(name.into()).unwrap(), step);
        }
    }
}
