//! A [`Decision`] turned into what the filter does: block or continue, the local reply, the
//! counters to increment and the log line. Pure, so that every host glue and the tests agree.

use palisade_engine::{Decision, Step, Verdict};

use crate::config::{Mode, Plugin};

/// The response header naming the deciding policy on an HTTP denial.
pub const POLICY_HEADER: &str = "x-palisade-policy";

/// Metric names, as defined through the proxy-wasm metrics API. Envoy shows them under the
/// `wasmcustom.` prefix (`/stats`), `envoy_wasmcustom_palisade_…` at `/stats/prometheus`.
pub mod metric {
    /// Requests or connections allowed (enforce mode).
    pub const ALLOWED: &str = "palisade.allowed";
    /// Requests or connections denied (enforce mode), errors included.
    pub const DENIED: &str = "palisade.denied";
    /// Dry-run results that would allow: dry-run policies, or every decision in `dry-run` mode.
    pub const SHADOW_ALLOWED: &str = "palisade.shadow_allowed";
    /// Dry-run results that would deny.
    pub const SHADOW_DENIED: &str = "palisade.shadow_denied";
    /// Internal errors (a property that cannot be read, an engine error): denied, fail closed.
    pub const ERRORS: &str = "palisade.errors";
    /// Requests an AUDIT policy matched.
    pub const AUDITED: &str = "palisade.audited";

    /// `palisade.policy.<policy id>.<outcome>`; dots in the id become `_` so that the id stays
    /// one stat-name segment.
    pub fn per_policy(id: &str, outcome: &str) -> String {
        format!("palisade.policy.{}.{outcome}", id.replace('.', "_"))
    }
}

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Allows: only at debug.
    Debug,
    /// Denials, dry-run denials and audits.
    Info,
    /// Internal errors.
    Warn,
}

/// What the filter does with a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Stop the request (HTTP: a local reply) or close the connection (TCP).
    pub block: bool,
    /// HTTP: the local reply's status.
    pub status: u32,
    /// HTTP: the local reply's body.
    pub body: String,
    /// HTTP: the response code details (`%RESPONSE_CODE_DETAILS%`), in Envoy RBAC's form.
    pub details: String,
    /// The deciding policy (`ns[..]-policy[..]-rule[..]`), `none`, or `error`.
    pub policy: String,
    /// Counters to increment by one.
    pub counters: Vec<String>,
    /// The log line and its level.
    pub log: (Level, String),
}

/// Maps a decision to an outcome. `what` describes the request for the log line.
pub fn outcome(decision: &Decision, plugin: &Plugin, what: &str) -> Outcome {
    outcome_with(decision, plugin, || what.to_string(), |_| true)
}

/// [`outcome`], building the log line only when `logged(level)` says the host keeps lines of
/// that level; otherwise the line is left empty, so that the request path does not format
/// the request and the decision's explanation only for the host to drop them (an allow is
/// logged at debug, a denial at info, and Envoy runs at `warning` by default). Everything else
/// is the same.
pub fn outcome_with(
    decision: &Decision,
    plugin: &Plugin,
    what: impl FnOnce() -> String,
    logged: impl FnOnce(Level) -> bool,
) -> Outcome {
    let policy = if decision.step == Step::Error {
        "error".to_string()
    } else {
        decision
            .rule
            .as_ref()
            .map_or_else(|| "none".to_string(), |r| r.id.clone())
    };
    let denied = decision.verdict == Verdict::Deny;
    let mut counters = Vec::new();
    let per_policy_rule = decision.rule.as_ref().map(|r| r.id.as_str());
    match plugin.mode {
        Mode::Enforce => {
            let (total, label) = if denied {
                (metric::DENIED, "denied")
            } else {
                (metric::ALLOWED, "allowed")
            };
            counters.push(total.to_string());
            if let Some(id) = per_policy_rule {
                counters.push(metric::per_policy(id, label));
            }
        }
        Mode::DryRun => {
            let (total, label) = if denied {
                (metric::SHADOW_DENIED, "shadow_denied")
            } else {
                (metric::SHADOW_ALLOWED, "shadow_allowed")
            };
            counters.push(total.to_string());
            if let Some(id) = per_policy_rule {
                counters.push(metric::per_policy(id, label));
            }
        }
    }
    for s in &decision.shadow {
        let (total, label) = match s.verdict {
            Verdict::Allow => (metric::SHADOW_ALLOWED, "shadow_allowed"),
            Verdict::Deny => (metric::SHADOW_DENIED, "shadow_denied"),
        };
        counters.push(total.to_string());
        if let Some(m) = &s.matched {
            counters.push(metric::per_policy(&m.id, label));
        }
    }
    if decision.audit.is_some() {
        counters.push(metric::AUDITED.to_string());
    }
    if decision.step == Step::Error {
        counters.push(metric::ERRORS.to_string());
    }
    let block = denied && plugin.mode == Mode::Enforce;
    let verb = match (denied, plugin.mode) {
        (true, Mode::Enforce) => "denied",
        (true, Mode::DryRun) => "dry-run: would deny",
        (false, Mode::Enforce) => "allowed",
        (false, Mode::DryRun) => "dry-run: would allow",
    };
    let level = if decision.step == Step::Error {
        Level::Warn
    } else if denied
        || decision.audit.is_some()
        || decision.shadow.iter().any(|s| s.verdict == Verdict::Deny)
    {
        Level::Info
    } else {
        Level::Debug
    };
    let log = if !logged(level) {
        (level, String::new())
    } else {
        (
            level,
            format!(
                "palisade: {verb} {} by policy {policy}: {}",
                what(),
                decision.explain()
            ),
        )
    };
    Outcome {
        block,
        status: plugin.deny_status,
        body: plugin.deny_body.clone(),
        details: decision.envoy_details(),
        policy,
        counters,
        log,
    }
}

/// Serializes header pairs in the proxy-wasm map format (for `proxy_send_local_response`).
pub fn serialize_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let len = |s: &str| u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = u32::try_from(pairs.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes()
        .to_vec();
    for (k, v) in pairs {
        out.extend(len(k));
        out.extend(len(v));
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;
    use crate::attributes::decode_pairs;
    use crate::config::{NodeMetadata, error_decision};
    use palisade_engine::Request;

    const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: shop}
spec:
  rules:
  - to: [{operation: {methods: ["GET"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: shop}
spec:
  action: AUDIT
  rules:
  - to: [{operation: {paths: ["/audited"]}}]
"#;

    fn plugin(mode: &str) -> Plugin {
        let json = serde_json::json!({
            "policy": POLICIES, "mode": mode, "denyStatus": 418, "denyBody": "nope",
            "workload": {"namespace": "shop"},
        });
        Plugin::configure(
            &serde_json::to_vec(&json).unwrap(),
            &NodeMetadata::default(),
        )
        .unwrap()
    }

    fn get(method: &str, path: &str) -> Request {
        serde_json::from_value(serde_json::json!({
            "http": {"method": method, "host": "cart", "path": path},
        }))
        .unwrap()
    }

    fn decide(p: &Plugin, method: &str, path: &str) -> Outcome {
        let mut r = get(method, path);
        r.destination.workload = Some(p.workload.clone());
        outcome(&p.decide(&r), p, "GET cart/x")
    }

    #[test]
    fn an_allow_continues_counts_allowed_and_logs_at_debug() {
        let o = decide(&plugin("enforce"), "GET", "/items");
        assert!(!o.block);
        assert_eq!(o.policy, "ns[shop]-policy[allow-get]-rule[0]");
        assert_eq!(
            o.counters,
            vec![
                "palisade.allowed",
                "palisade.policy.ns[shop]-policy[allow-get]-rule[0].allowed"
            ]
        );
        assert_eq!(o.log.0, Level::Debug);
    }

    #[test]
    fn a_line_the_host_drops_is_not_built_and_nothing_else_changes() {
        let p = plugin("enforce");
        for (method, path) in [("GET", "/items"), ("GET", "/admin"), ("GET", "/audited")] {
            let mut r = get(method, path);
            r.destination.workload = Some(p.workload.clone());
            let d = p.decide(&r);
            let full = outcome(&d, &p, "GET cart/x");
            let quiet = outcome_with(&d, &p, || unreachable!("described"), |_| false);
            assert_eq!(quiet.log, (full.log.0, String::new()));
            assert_eq!(
                Outcome {
                    log: full.log.clone(),
                    ..quiet
                },
                full
            );
            let kept = outcome_with(&d, &p, || "GET cart/x".into(), |l| l == full.log.0);
            assert_eq!(kept, full);
        }
    }

    #[test]
    fn a_deny_rule_blocks_with_envoys_details_and_the_configured_reply() {
        let o = decide(&plugin("enforce"), "GET", "/admin");
        assert!(o.block);
        assert_eq!((o.status, o.body.as_str()), (418, "nope"));
        assert_eq!(
            o.details,
            "rbac_access_denied_matched_policy[ns[shop]-policy[deny-admin]-rule[0]]"
        );
        assert!(o.counters.contains(&"palisade.denied".to_string()));
        assert_eq!(o.log.0, Level::Info);
        assert!(
            o.log.1.contains("ns[shop]-policy[deny-admin]-rule[0]"),
            "{}",
            o.log.1
        );
    }

    #[test]
    fn no_matching_allow_blocks_naming_no_policy() {
        let o = decide(&plugin("enforce"), "POST", "/items");
        assert!(o.block);
        assert_eq!(o.policy, "none");
        assert_eq!(o.details, "rbac_access_denied_matched_policy[none]");
        assert_eq!(o.counters, vec!["palisade.denied"]);
    }

    #[test]
    fn dry_run_never_blocks_and_counts_shadow() {
        let o = decide(&plugin("dry-run"), "GET", "/admin");
        assert!(!o.block);
        assert_eq!(
            o.counters,
            vec![
                "palisade.shadow_denied",
                "palisade.policy.ns[shop]-policy[deny-admin]-rule[0].shadow_denied"
            ]
        );
        assert_eq!(o.log.0, Level::Info);
        assert!(o.log.1.contains("would deny"));
    }

    #[test]
    fn audit_never_blocks_and_is_counted_and_logged() {
        let o = decide(&plugin("enforce"), "GET", "/audited");
        assert!(!o.block);
        assert!(o.counters.contains(&"palisade.audited".to_string()));
        assert_eq!(o.log.0, Level::Info);
    }

    #[test]
    fn an_internal_error_blocks_and_counts_an_error() {
        let p = plugin("enforce");
        let o = outcome(&error_decision("bad property".into()), &p, "x");
        assert!(o.block);
        assert_eq!(o.policy, "error");
        assert_eq!(o.counters, vec!["palisade.denied", "palisade.errors"]);
        assert_eq!(o.log.0, Level::Warn);
    }

    #[test]
    fn dots_in_a_policy_id_stay_in_one_stat_segment() {
        assert_eq!(
            metric::per_policy("ns[a]-policy[b.c]-rule[0]", "denied"),
            "palisade.policy.ns[a]-policy[b_c]-rule[0].denied"
        );
    }

    #[test]
    fn local_reply_headers_serialize_in_the_pairs_format() {
        let b = serialize_pairs(&[(POLICY_HEADER, "none")]);
        assert_eq!(
            decode_pairs(&b).unwrap(),
            vec![(POLICY_HEADER.as_bytes(), &b"none"[..])]
        );
    }
}
