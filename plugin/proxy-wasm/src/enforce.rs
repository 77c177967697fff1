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
    /// Calls to CUSTOM policies' providers (external authorizers).
    pub const EXT_AUTHZ_CALLS: &str = "palisade.ext_authz.calls";
    /// Provider calls that failed (unreachable, 5xx, unreadable answer, timeouts included).
    pub const EXT_AUTHZ_ERRORS: &str = "palisade.ext_authz.errors";
    /// Provider calls that timed out.
    pub const EXT_AUTHZ_TIMEOUTS: &str = "palisade.ext_authz.timeouts";

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

/// A total counter: one of the fixed `palisade.*` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Total {
    /// [`metric::ALLOWED`].
    Allowed,
    /// [`metric::DENIED`].
    Denied,
    /// [`metric::SHADOW_ALLOWED`].
    ShadowAllowed,
    /// [`metric::SHADOW_DENIED`].
    ShadowDenied,
    /// [`metric::ERRORS`].
    Errors,
    /// [`metric::AUDITED`].
    Audited,
    /// [`metric::EXT_AUTHZ_CALLS`].
    ExtAuthzCalls,
    /// [`metric::EXT_AUTHZ_ERRORS`].
    ExtAuthzErrors,
    /// [`metric::EXT_AUTHZ_TIMEOUTS`].
    ExtAuthzTimeouts,
}

impl Total {
    /// Every total, in [`Total::index`] order.
    pub const ALL: [Total; 9] = [
        Total::Allowed,
        Total::Denied,
        Total::ShadowAllowed,
        Total::ShadowDenied,
        Total::Errors,
        Total::Audited,
        Total::ExtAuthzCalls,
        Total::ExtAuthzErrors,
        Total::ExtAuthzTimeouts,
    ];

    /// Its metric name.
    pub fn name(self) -> &'static str {
        match self {
            Total::Allowed => metric::ALLOWED,
            Total::Denied => metric::DENIED,
            Total::ShadowAllowed => metric::SHADOW_ALLOWED,
            Total::ShadowDenied => metric::SHADOW_DENIED,
            Total::Errors => metric::ERRORS,
            Total::Audited => metric::AUDITED,
            Total::ExtAuthzCalls => metric::EXT_AUTHZ_CALLS,
            Total::ExtAuthzErrors => metric::EXT_AUTHZ_ERRORS,
            Total::ExtAuthzTimeouts => metric::EXT_AUTHZ_TIMEOUTS,
        }
    }

    /// Its position in [`Total::ALL`] (a cache slot).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The last segment of the matching per-policy counter (`allowed`, …); `None` for the
    /// totals that have none.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Total::Allowed => Some("allowed"),
            Total::Denied => Some("denied"),
            Total::ShadowAllowed => Some("shadow_allowed"),
            Total::ShadowDenied => Some("shadow_denied"),
            Total::Errors
            | Total::Audited
            | Total::ExtAuthzCalls
            | Total::ExtAuthzErrors
            | Total::ExtAuthzTimeouts => None,
        }
    }
}

/// A counter to increment by one: a total, or a rule's per-policy counter
/// (`palisade.policy.<rule id>.<label of the total>`). Borrowed from the decision, so that
/// naming the counters of a request allocates nothing; the glue caches the host's metric id
/// per counter and builds a name only the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter<'d> {
    /// A total.
    Total(Total),
    /// The rule `id`'s counter for `outcome` (one of the four totals with a label).
    Policy {
        /// The rule id.
        id: &'d str,
        /// Which outcome.
        outcome: Total,
    },
}

impl Counter<'_> {
    /// The metric name, as defined through the proxy-wasm metrics API.
    pub fn name(&self) -> String {
        match self {
            Counter::Total(t) => t.name().to_string(),
            Counter::Policy { id, outcome } => {
                metric::per_policy(id, outcome.label().unwrap_or("unknown"))
            }
        }
    }
}

/// What the filter does with a decision (borrowing from the decision and the plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<'a> {
    /// Stop the request (HTTP: a local reply) or close the connection (TCP).
    pub block: bool,
    /// HTTP: the local reply's status.
    pub status: u32,
    /// HTTP: the local reply's body.
    pub body: &'a str,
    /// HTTP: the response code details (`%RESPONSE_CODE_DETAILS%`), in Envoy RBAC's form;
    /// empty unless `block` (only a local reply carries them).
    pub details: String,
    /// The deciding policy (`ns[..]-policy[..]-rule[..]`), `none`, or `error`.
    pub policy: &'a str,
    /// Counters to increment by one.
    pub counters: Vec<Counter<'a>>,
    /// The log line and its level.
    pub log: (Level, String),
}

impl Outcome<'_> {
    /// The counters' metric names.
    pub fn counter_names(&self) -> Vec<String> {
        self.counters.iter().map(Counter::name).collect()
    }
}

/// Maps a decision to an outcome. `what` describes the request for the log line.
pub fn outcome<'a>(decision: &'a Decision, plugin: &'a Plugin, what: &str) -> Outcome<'a> {
    outcome_with(decision, plugin, || what.to_string(), |_| true)
}

/// [`outcome`], building the log line only when `logged(level)` says the host keeps lines of
/// that level; otherwise the line is left empty, so that the request path does not format
/// the request and the decision's explanation only for the host to drop them (an allow is
/// logged at debug, a denial at info, and Envoy runs at `warning` by default). Everything else
/// is the same.
pub fn outcome_with<'a>(
    decision: &'a Decision,
    plugin: &'a Plugin,
    what: impl FnOnce() -> String,
    logged: impl FnOnce(Level) -> bool,
) -> Outcome<'a> {
    let policy = if decision.step == Step::Error {
        "error"
    } else {
        decision.rule.as_ref().map_or("none", |r| r.id.as_str())
    };
    // Anything but an allow blocks: a pending CUSTOM check the glue could not make included.
    let denied = decision.verdict != Verdict::Allow;
    let mut counters = Vec::with_capacity(2);
    let total = match (plugin.mode, denied) {
        (Mode::Enforce, true) => Total::Denied,
        (Mode::Enforce, false) => Total::Allowed,
        (Mode::DryRun, true) => Total::ShadowDenied,
        (Mode::DryRun, false) => Total::ShadowAllowed,
    };
    counters.push(Counter::Total(total));
    if let Some(r) = &decision.rule {
        counters.push(Counter::Policy {
            id: &r.id,
            outcome: total,
        });
    }
    for s in &decision.shadow {
        let total = match s.verdict {
            Verdict::Allow => Total::ShadowAllowed,
            // A shadow result is never pending; count it with the denials if it were.
            Verdict::Deny | Verdict::CustomPending => Total::ShadowDenied,
        };
        counters.push(Counter::Total(total));
        if let Some(m) = &s.matched {
            counters.push(Counter::Policy {
                id: &m.id,
                outcome: total,
            });
        }
    }
    if decision.audit.is_some() {
        counters.push(Counter::Total(Total::Audited));
    }
    if decision.step == Step::Error {
        counters.push(Counter::Total(Total::Errors));
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
    // A token `jwt_authn` would refuse gets its answer: 401 (403 for audiences) with the
    // reason as the body.
    let (status, body) = match (decision.step, decision.errors.first()) {
        (Step::JwtRejected, Some(why)) => {
            let why = why.text().unwrap_or_default();
            (palisade_engine::authn::rejection_status(why), why)
        }
        _ => (plugin.deny_status, plugin.deny_body.as_str()),
    };
    Outcome {
        block,
        status,
        body,
        details: if block {
            decision.envoy_details()
        } else {
            String::new()
        },
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
            &crate::config::test_configuration(json),
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

    /// An [`Outcome`] with its borrowed parts owned and the counters named.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        block: bool,
        status: u32,
        body: String,
        details: String,
        policy: String,
        counters: Vec<String>,
        log: (Level, String),
    }

    fn owned(o: &Outcome<'_>) -> Owned {
        Owned {
            block: o.block,
            status: o.status,
            body: o.body.to_string(),
            details: o.details.clone(),
            policy: o.policy.to_string(),
            counters: o.counter_names(),
            log: o.log.clone(),
        }
    }

    fn decide(p: &Plugin, method: &str, path: &str) -> Owned {
        let mut r = get(method, path);
        r.destination.workload = Some(p.workload.clone());
        owned(&outcome(&p.decide(&r), p, "GET cart/x"))
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
            let full = owned(&outcome(&d, &p, "GET cart/x"));
            let quiet = owned(&outcome_with(
                &d,
                &p,
                || unreachable!("described"),
                |_| false,
            ));
            assert_eq!(quiet.log, (full.log.0, String::new()));
            assert_eq!(
                Owned {
                    log: full.log.clone(),
                    ..quiet
                },
                full
            );
            let kept = owned(&outcome_with(
                &d,
                &p,
                || "GET cart/x".into(),
                |l| l == full.log.0,
            ));
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
        let o = owned(&outcome(&error_decision("bad property"), &p, "x"));
        assert!(o.block);
        assert_eq!(o.policy, "error");
        assert_eq!(o.counters, vec!["palisade.denied", "palisade.errors"]);
        assert_eq!(o.log.0, Level::Warn);
    }

    #[test]
    fn an_allow_has_no_details_and_counters_borrow_the_rule_id() {
        let p = plugin("enforce");
        let mut r = get("GET", "/items");
        r.destination.workload = Some(p.workload.clone());
        let d = p.decide(&r);
        let o = outcome(&d, &p, "GET cart/x");
        assert_eq!(o.details, "", "only a local reply carries details");
        assert_eq!(
            o.counters,
            vec![
                Counter::Total(Total::Allowed),
                Counter::Policy {
                    id: "ns[shop]-policy[allow-get]-rule[0]",
                    outcome: Total::Allowed
                }
            ]
        );
        for t in Total::ALL {
            assert_eq!(Total::ALL[t.index()], t);
        }
        assert_eq!(
            Total::ALL.map(|t| t.label()),
            [
                Some("allowed"),
                Some("denied"),
                Some("shadow_allowed"),
                Some("shadow_denied"),
                None,
                None,
                None,
                None,
                None
            ]
        );
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
