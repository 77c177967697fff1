//! What `palisade replay` reports: the counts, the disagreements, the live differences and
//! the listed records, as JSON (their `Serialize`) or as text for people ([`human`]).

use std::fmt::Write as _;

use palisade_engine::{Decision, Request, Verdict};
use palisade_traffic::{Format as TrafficFormat, Live};
use palisade_wasm_host::{Observed, PluginFailure};
use serde::Serialize;

/// At most this many disagreements, live differences and unroutable records are listed in
/// the human output (all of them in JSON).
const LIST_AT_MOST: usize = 50;

/// A decision as reported.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    /// Allow or deny (absent when the side failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The deciding rule, or the step in parentheses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The one-paragraph explanation, or the failure.
    pub explanation: String,
    /// What the plugin shows Envoy (`--compare outcome`): the local reply and the counters
    /// incremented — for the native side, what the plugin's mapping of its decision shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy: Option<String>,
}

impl Shown {
    pub(super) fn of(d: &Decision) -> Shown {
        Shown {
            verdict: Some(d.verdict),
            rule: Some(decider(d)),
            explanation: d.explain(),
            envoy: None,
        }
    }

    pub(super) fn observed(o: &Observed) -> Shown {
        Shown {
            verdict: Some(o.verdict),
            rule: Some(o.rule()),
            explanation: format!("the plugin showed Envoy: {o}"),
            envoy: Some(o.to_string()),
        }
    }

    pub(super) fn failed(e: &PluginFailure) -> Shown {
        Shown {
            verdict: None,
            rule: None,
            explanation: format!("error: {e}"),
            envoy: None,
        }
    }

    fn human(&self) -> String {
        match (self.verdict, &self.rule) {
            (Some(v), Some(r)) => format!("{v} by {r}"),
            _ => self.explanation.clone(),
        }
    }
}

/// The deciding rule's id, or the deciding step in parentheses.
pub(super) fn decider(d: &Decision) -> String {
    match &d.rule {
        Some(r) => r.id.clone(),
        None => format!("({})", d.step.as_str()),
    }
}

/// A record the `.wasm` and the native engine decide differently.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Disagreement {
    /// Its line in the recording.
    pub line: usize,
    /// Its name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The request.
    pub request: Request,
    /// The plugin's decision.
    pub wasm: Shown,
    /// The native engine's decision.
    pub native: Shown,
}

/// A record this policy decides differently from the live system.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveDifference {
    /// Its line in the recording.
    pub line: usize,
    /// Its name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What differs: `verdict`, or `rule` (both denied, by different rules).
    pub differs: &'static str,
    /// What the live system did.
    pub live: Live,
    /// What this policy decides (the native engine).
    pub policy: Shown,
    /// The request.
    pub request: Request,
}

/// One record as `--list` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    /// Its line in the recording.
    pub line: usize,
    /// Its name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The request in one line.
    pub request: String,
    /// The plugin's verdict and deciding rule (`allow by <rule>`), or its failure.
    pub wasm: String,
    /// The native engine's verdict and deciding rule.
    pub native: String,
    /// Whether the plugin and the native engine agree (as `--compare` compares them).
    pub agree: bool,
    /// What the live system did, when the recording says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Live>,
}

/// A record no sidecar can be found for.
#[derive(Debug, Serialize)]
pub struct Unrouted {
    /// Its line.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// Allow and deny counts under one key.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Count {
    /// Allowed.
    pub allowed: usize,
    /// Denied.
    pub denied: usize,
    /// Pending on a CUSTOM provider's answer (the record carries none).
    #[serde(skip_serializing_if = "is_zero")]
    pub pending: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Count {
    pub(super) fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Allow => self.allowed = self.allowed.saturating_add(1),
            Verdict::Deny => self.denied = self.denied.saturating_add(1),
            Verdict::CustomPending => self.pending = self.pending.saturating_add(1),
        }
    }
}

/// Counts for one deciding rule (or step).
#[derive(Debug, Serialize)]
pub struct RuleCount {
    /// The rule id, or the step in parentheses.
    pub rule: String,
    /// Its policy (`<namespace>/<name>`), or the step.
    pub policy: String,
    /// The counts.
    #[serde(flatten)]
    pub count: Count,
}

/// Counts for one policy.
#[derive(Debug, Serialize)]
pub struct PolicyCount {
    /// `<namespace>/<name>`, or the step in parentheses.
    pub policy: String,
    /// The counts.
    #[serde(flatten)]
    pub count: Count,
}

/// The live comparison.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveSummary {
    /// Records that carry the live outcome.
    pub compared: usize,
    /// Of those, decided as live.
    pub same: usize,
    /// The others.
    pub differences: Vec<LiveDifference>,
}

/// `palisade replay`'s result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayResult {
    /// The recording.
    pub traffic: String,
    /// Its format.
    pub format: Option<TrafficFormat>,
    /// The plugin module.
    pub wasm: String,
    /// Records read.
    pub records: usize,
    /// Lines skipped as invalid (`--skip-invalid`).
    pub skipped: Vec<palisade_traffic::LineError>,
    /// Lines that carry no decision (Hubble replies, later TCP segments, ...).
    pub ignored: usize,
    /// Plugin VMs configured (one per destination workload and protocol).
    pub vms: usize,
    /// Whether the `.wasm` and the native engine agree on every record.
    pub agree: bool,
    /// The native engine's totals.
    pub native: Count,
    /// The plugin's totals.
    pub wasm_totals: Count,
    /// Native counts by deciding rule.
    pub rules: Vec<RuleCount>,
    /// Native counts by deciding policy.
    pub policies: Vec<PolicyCount>,
    /// Every disagreement.
    pub disagreements: Vec<Disagreement>,
    /// Records whose destination sidecar is unknown (not decided).
    pub unroutable: Vec<Unrouted>,
    /// The comparison with the live outcome.
    pub live: LiveSummary,
    /// Every record, with `--list`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listed: Vec<Listed>,
}

/// A request in one line: `GET host/path from <principal|ip>` or `TCP :port from ...`.
pub(super) fn brief(r: &Request) -> String {
    let from = r
        .source
        .principal
        .clone()
        .or_else(|| r.source.ip.map(|ip| ip.to_string()))
        .unwrap_or_else(|| "?".into());
    let to = r
        .destination
        .workload
        .as_ref()
        .map(|w| {
            format!(
                "{}/{}",
                w.namespace,
                w.name.as_deref().unwrap_or("(inline)")
            )
        })
        .or_else(|| r.destination.ip.map(|ip| ip.to_string()))
        .unwrap_or_else(|| "?".into());
    let port = r
        .destination
        .port
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    match &r.http {
        Some(h) if r.protocol == palisade_engine::Protocol::Http => {
            format!(
                "{} {}{} to {to}{port} from {from}",
                h.method, h.host, h.path
            )
        }
        _ => format!("TCP to {to}{port} from {from}"),
    }
}

fn label(line: usize, name: Option<&String>) -> String {
    match name {
        Some(n) => format!("line {line} ({n})"),
        None => format!("line {line}"),
    }
}

/// The report as text for people.
pub(super) fn human(r: &ReplayResult) -> String {
    let mut out = String::new();
    let format = r.format.map_or("-".to_string(), |f| f.to_string());
    let _ = writeln!(
        out,
        "replayed {} records from {} ({format}; {} skipped, {} ignored) through {} ({} VMs) and the native engine",
        r.records,
        r.traffic,
        r.skipped.len(),
        r.ignored,
        r.wasm,
        r.vms
    );
    for s in &r.skipped {
        let _ = writeln!(out, "  skipped {s}");
    }
    let _ = writeln!(
        out,
        "native: {} allowed, {} denied; wasm: {} allowed, {} denied",
        r.native.allowed, r.native.denied, r.wasm_totals.allowed, r.wasm_totals.denied
    );
    let _ = writeln!(out);
    if !r.listed.is_empty() {
        for l in &r.listed {
            let wasm = if l.agree {
                "wasm: same".to_string()
            } else {
                format!("WASM: {}", l.wasm)
            };
            let live = l
                .live
                .as_ref()
                .map_or_else(String::new, |live| format!("; live: {}", live.verdict));
            let _ = writeln!(
                out,
                "{:<9} {}\n          {} ({wasm}{live})",
                label(l.line, l.name.as_ref()),
                l.request,
                l.native,
            );
        }
        let _ = writeln!(out);
    }
    let width = r
        .rules
        .iter()
        .map(|c| c.rule.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(out, "{:<width$}  {:>7}  {:>7}", "rule", "allowed", "denied");
    for c in &r.rules {
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>7}",
            c.rule, c.count.allowed, c.count.denied
        );
    }
    let _ = writeln!(out);
    let width = r
        .policies
        .iter()
        .map(|c| c.policy.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>7}",
        "policy", "allowed", "denied"
    );
    for c in &r.policies {
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>7}",
            c.policy, c.count.allowed, c.count.denied
        );
    }
    let _ = writeln!(out);
    if r.disagreements.is_empty() {
        let _ = writeln!(out, "wasm/native: agree on all {} records", r.records);
    } else {
        let _ = writeln!(
            out,
            "wasm/native: DISAGREE on {} records",
            r.disagreements.len()
        );
        for d in r.disagreements.iter().take(LIST_AT_MOST) {
            let _ = writeln!(
                out,
                "  {}: {}\n    wasm:   {}\n    native: {}",
                label(d.line, d.name.as_ref()),
                brief(&d.request),
                d.wasm.human(),
                d.native.human(),
            );
            if let (Some(w), Some(n)) = (&d.wasm.envoy, &d.native.envoy) {
                let _ = writeln!(
                    out,
                    "    the plugin showed Envoy:  {w}\n    its mapping of native:    {n}"
                );
            }
            let _ = writeln!(
                out,
                "    request: {}",
                serde_json::to_string(&d.request).unwrap_or_default()
            );
        }
    }
    if !r.unroutable.is_empty() {
        let _ = writeln!(
            out,
            "not decided: {} records have no known destination workload (give `--inventory` or `--workload`)",
            r.unroutable.len()
        );
        for u in r.unroutable.iter().take(LIST_AT_MOST) {
            let _ = writeln!(out, "  line {}: {}", u.line, u.reason);
        }
    }
    let l = &r.live;
    if l.compared == 0 {
        let _ = writeln!(out, "live outcome: no record carries one");
    } else {
        let _ = writeln!(
            out,
            "live outcome: {} records carry one; this policy decides {} the same, {} differently",
            l.compared,
            l.same,
            l.differences.len()
        );
        for d in l.differences.iter().take(LIST_AT_MOST) {
            let live = match &d.live.rule {
                Some(rule) => format!("{} by {rule}", d.live.verdict),
                None => d.live.verdict.to_string(),
            };
            let _ = writeln!(
                out,
                "  {}: {}\n    live: {live}; policy: {}",
                label(d.line, d.name.as_ref()),
                brief(&d.request),
                d.policy.human()
            );
        }
    }
    let listed = r.disagreements.len().max(l.differences.len());
    if listed > LIST_AT_MOST {
        let _ = writeln!(
            out,
            "(lists cut at {LIST_AT_MOST}; `--output json` has every record)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::sync::Arc;

    use palisade_engine::{Decision, Step};

    use super::*;

    #[test]
    fn an_outcome_disagreement_shows_the_record_both_decisions_and_what_envoy_saw() {
        let request: Request = serde_json::from_value(serde_json::json!({
            "destination": {"workload": {"namespace": "shop", "name": "cart"}},
            "http": {"method": "GET", "host": "cart", "path": "/x"},
        }))
        .unwrap();
        let native = Decision {
            verdict: Verdict::Allow,
            step: Step::NoAllowPolicies,
            rule: None,
            shadow: Vec::new(),
            audit: None,
            network: None,
            errors: Vec::new(),
            custom: Vec::new(),
        };
        let observed = Observed {
            verdict: Verdict::Deny,
            reply: Some((403, "rbac_access_denied_matched_policy[none]".into())),
            policy: Some("none".into()),
            counters: vec![(Arc::from("palisade.denied"), 1)],
        };
        let expected = Observed {
            verdict: Verdict::Allow,
            reply: None,
            policy: None,
            counters: vec![(Arc::from("palisade.allowed"), 1)],
        };
        let result = ReplayResult {
            traffic: "t.jsonl".into(),
            format: None,
            wasm: "p.wasm".into(),
            records: 1,
            skipped: Vec::new(),
            ignored: 0,
            vms: 1,
            agree: false,
            native: Count::default(),
            wasm_totals: Count::default(),
            rules: Vec::new(),
            policies: Vec::new(),
            disagreements: vec![Disagreement {
                line: 7,
                name: Some("r7".into()),
                request,
                wasm: Shown::observed(&observed),
                native: Shown {
                    envoy: Some(expected.to_string()),
                    ..Shown::of(&native)
                },
            }],
            unroutable: Vec::new(),
            live: LiveSummary::default(),
            listed: Vec::new(),
        };
        let text = human(&result);
        assert!(text.contains("DISAGREE on 1 records"), "{text}");
        assert!(
            text.contains("line 7 (r7): GET cart/x to shop/cart"),
            "{text}"
        );
        assert!(text.contains("wasm:   deny by none"), "{text}");
        assert!(
            text.contains("native: allow by (no-allow-policies)"),
            "{text}"
        );
        assert!(
            text.contains(
                "the plugin showed Envoy:  local reply 403 `rbac_access_denied_matched_policy[none]`, x-palisade-policy: none; counters: palisade.denied +1"
            ),
            "{text}"
        );
        assert!(
            text.contains("its mapping of native:    allowed; counters: palisade.allowed +1"),
            "{text}"
        );
        assert!(text.contains("request: {"), "{text}");
        let json = serde_json::to_value(&result).unwrap();
        let d = &json["disagreements"][0];
        assert_eq!(d["wasm"]["verdict"], "deny");
        assert_eq!(d["native"]["verdict"], "allow");
        assert!(
            d["native"]["explanation"]
                .as_str()
                .unwrap()
                .contains("allowed")
        );
        assert!(
            d["wasm"]["envoy"]
                .as_str()
                .unwrap()
                .contains("palisade.denied")
        );
    }
}
