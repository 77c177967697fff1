//! A decision read back from what the plugin showed Envoy: the verdict from the stream, the
//! deciding rule from the local reply, and the full explanation from the decision log line the
//! plugin writes for every request — accepted only when the decision read from it explains
//! itself in exactly the same words.

use std::sync::Arc;

use crate::error::ReadBackError;
use crate::outcome::LogLine;
use palisade_engine::decision::NetworkOutcome;
use palisade_engine::{
    CustomCheck, Decision, ExtAuthzAnswer, RuleRef, ShadowResult, Step, Verdict,
};

/// The plugin's decision log line starts with this.
const LOG_PREFIX: &str = "palisade: ";

/// Reads the decision back from a stream's outcome: the verdict from the stream, the rest
/// from the plugin's decision log line, cross-checked against the local reply's details and
/// policy header when there is one.
pub fn decision_from(
    allowed: bool,
    logs: &[LogLine],
    details: Option<&str>,
    policy_header: Option<&str>,
) -> Result<Decision, ReadBackError> {
    let line = logs
        .iter()
        .map(|l| l.message.as_str())
        .find(|m| m.starts_with(LOG_PREFIX) && m.contains(" by policy "))
        .ok_or_else(|| ReadBackError::NoDecisionLogged {
            log: logs
                .iter()
                .map(|l| l.message.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
        })?;
    let (policy, decision) =
        parse_log_line(line).ok_or_else(|| ReadBackError::UnreadableLine { line: line.into() })?;
    let verdict = if allowed {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    if decision.verdict != verdict {
        return Err(ReadBackError::VerdictDiffers {
            stream: verdict,
            logged: decision.verdict,
            line: line.into(),
        });
    }
    // A provider that failed closed replies `ext_authz_error` where one that denied replies
    // `ext_authz_denied`; the engine sees both as the provider's deny.
    let failed_closed = decision.step == Step::CustomDenied && details == Some("ext_authz_error");
    if let Some(d) = details
        && d != decision.envoy_details()
        && !failed_closed
    {
        return Err(ReadBackError::DetailsDiffer {
            details: d.into(),
            line: line.into(),
        });
    }
    if let Some(h) = policy_header
        && h != policy
    {
        return Err(ReadBackError::PolicyHeaderDiffers {
            header: h.into(),
            line: line.into(),
        });
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

    fn logged(lines: &[&str]) -> Vec<LogLine> {
        lines
            .iter()
            .map(|m| LogLine {
                level: crate::abi::LogLevel::Info,
                message: (*m).to_string(),
                context_id: 2,
            })
            .collect()
    }

    const DENIED: &str = "palisade: denied GET cart/x by policy ns[shop]-policy[d]-rule[0]: denied: DENY rule ns[shop]-policy[d]-rule[0] matched";

    #[test]
    fn a_denial_whose_reply_matches_its_log_line_reads_back() {
        let d = decision_from(
            false,
            &logged(&[DENIED]),
            Some("rbac_access_denied_matched_policy[ns[shop]-policy[d]-rule[0]]"),
            Some("ns[shop]-policy[d]-rule[0]"),
        )
        .unwrap();
        assert_eq!((d.verdict, d.step), (Verdict::Deny, Step::DenyMatched));
    }

    #[test]
    fn a_stream_without_a_decision_line_names_what_it_logged() {
        let e = decision_from(true, &logged(&["hello", "world"]), None, None).unwrap_err();
        assert_eq!(
            e,
            ReadBackError::NoDecisionLogged {
                log: "hello | world".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "the plugin logged no decision (log: hello | world)"
        );
    }

    #[test]
    fn a_line_that_does_not_read_back_is_named() {
        let line = "palisade: allowed x by policy none: allowed: maybe";
        let e = decision_from(true, &logged(&[line]), None, None).unwrap_err();
        assert_eq!(e, ReadBackError::UnreadableLine { line: line.into() });
    }

    #[test]
    fn a_stream_that_went_on_against_a_logged_denial_is_a_verdict_difference() {
        let e = decision_from(true, &logged(&[DENIED]), None, None).unwrap_err();
        assert_eq!(
            e,
            ReadBackError::VerdictDiffers {
                stream: Verdict::Allow,
                logged: Verdict::Deny,
                line: DENIED.into()
            }
        );
        assert_eq!(
            e.to_string(),
            format!("the stream was allowed but the log line says deny (`{DENIED}`)")
        );
    }

    #[test]
    fn reply_details_of_another_rule_are_a_details_difference() {
        let e = decision_from(
            false,
            &logged(&[DENIED]),
            Some("rbac_access_denied_matched_policy[ns[shop]-policy[e]-rule[0]]"),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "response details `rbac_access_denied_matched_policy[ns[shop]-policy[e]-rule[0]]` disagree with the log line `{DENIED}`"
            )
        );
    }

    #[test]
    fn a_policy_header_naming_another_policy_is_a_header_difference() {
        let e = decision_from(false, &logged(&[DENIED]), None, Some("other")).unwrap_err();
        assert_eq!(
            e,
            ReadBackError::PolicyHeaderDiffers {
                header: "other".into(),
                line: DENIED.into()
            }
        );
        assert_eq!(
            e.to_string(),
            format!("`x-palisade-policy: other` disagrees with the log line `{DENIED}`")
        );
    }
}
