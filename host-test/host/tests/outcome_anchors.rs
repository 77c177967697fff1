//! Independent anchor for the replay read-back (`host-test/host/tests/replay.rs`): there, the
//! "expected" side is the plugin crate's own `enforce::outcome_with` applied to the native
//! decision, the same function the plugin runs — so a wrong mapping (a wrong status, wrong
//! response details, a missing or extra counter) would be wrong on both sides and pass.
//!
//! Anchor kind: **hand-written expected values.** Each case below names a request and writes
//! down, from the plugin's specification (README, "The Envoy plugin": a denial is a local
//! reply with `denyStatus` (403), Envoy RBAC's `%RESPONSE_CODE_DETAILS%`
//! `rbac_access_denied_matched_policy[<rule id>|none]` and the header `x-palisade-policy`; the
//! totals `palisade.allowed`/`denied`/`shadow_*`/`audited` and the per-policy
//! `palisade.policy.<rule id>.<outcome>` counters, each incremented once; a dry-run policy is
//! evaluated on every request, as Envoy's `shadow_rules` are, so each request counts one
//! `shadow_allowed` or `shadow_denied`), what Envoy must be shown. The observed side is the plugin's `.wasm` in the test host; nothing on the expected
//! side runs Palisade code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use palisade_engine::{Options, Request, SourceFile, Verdict};
use palisade_wasm_host::{Bound, HostSettings, Observed, ProxyWasmHost, ReadBack, Replayer};

/// A DENY rule, an ALLOW rule, an AUDIT rule and a dry-run DENY rule, all for `shop/cart`.
const POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: public, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: ALLOW
  rules:
  - to: [{operation: {methods: ["GET"], paths: ["/public/*"]}}]
  - to: [{operation: {methods: ["PUT"], paths: ["/public/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-writes, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: AUDIT
  rules: [{to: [{operation: {methods: ["POST", "PUT"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: would-deny-debug
  namespace: shop
  annotations: {"istio.io/dry-run": "true"}
spec:
  selector: {matchLabels: {app: cart}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/public/debug"]}}]}]
"#;

fn request(method: &str, path: &str) -> Request {
    serde_json::from_value(serde_json::json!({
        "source": {"ip": "10.0.0.1"},
        "destination": {"ip": "10.0.0.2", "port": 8080,
                        "workload": {"namespace": "shop", "labels": {"app": "cart"}}},
        "http": {"method": method, "host": "cart.shop", "path": path},
    }))
    .unwrap()
}

fn counters(names: &[&str]) -> Vec<(Arc<str>, i64)> {
    names.iter().map(|n| (Arc::from(*n), 1)).collect()
}

fn denial(details: &str, policy: &str, names: &[&str]) -> Observed {
    Observed {
        verdict: Verdict::Deny,
        reply: Some((403, details.to_string())),
        policy: Some(policy.to_string()),
        counters: counters(names),
    }
}

fn allowed(names: &[&str]) -> Observed {
    Observed {
        verdict: Verdict::Allow,
        reply: None,
        policy: None,
        counters: counters(names),
    }
}

#[test]
fn the_plugin_shows_envoy_the_hand_written_outcome_of_each_named_request() {
    let cases: Vec<(&str, Request, Observed)> = vec![
        (
            "a GET under /public is allowed by the first ALLOW rule and counted for it",
            request("GET", "/public/items"),
            allowed(&[
                "palisade.allowed",
                "palisade.policy.ns[shop]-policy[public]-rule[0].allowed",
                "palisade.shadow_allowed",
            ]),
        ),
        (
            "a GET under /admin is a 403 local reply naming the DENY rule",
            request("GET", "/admin/users"),
            denial(
                "rbac_access_denied_matched_policy[ns[shop]-policy[deny-admin]-rule[0]]",
                "ns[shop]-policy[deny-admin]-rule[0]",
                &[
                    "palisade.denied",
                    "palisade.policy.ns[shop]-policy[deny-admin]-rule[0].denied",
                    "palisade.shadow_allowed",
                ],
            ),
        ),
        (
            "a DELETE matches no ALLOW rule: a 403 naming no policy, and no per-policy counter",
            request("DELETE", "/public/items"),
            denial(
                "rbac_access_denied_matched_policy[none]",
                "none",
                &["palisade.denied", "palisade.shadow_allowed"],
            ),
        ),
        (
            "a POST is audited and, matching no ALLOW rule, denied naming no policy",
            request("POST", "/public/items"),
            denial(
                "rbac_access_denied_matched_policy[none]",
                "none",
                &[
                    "palisade.denied",
                    "palisade.shadow_allowed",
                    "palisade.audited",
                ],
            ),
        ),
        (
            "a PUT under /public is allowed by the second ALLOW rule (index 1) and audited",
            request("PUT", "/public/items"),
            allowed(&[
                "palisade.allowed",
                "palisade.policy.ns[shop]-policy[public]-rule[1].allowed",
                "palisade.shadow_allowed",
                "palisade.audited",
            ]),
        ),
        (
            "GET /public/debug is allowed, and the dry-run DENY counts a shadow denial for its rule",
            request("GET", "/public/debug"),
            allowed(&[
                "palisade.allowed",
                "palisade.policy.ns[shop]-policy[public]-rule[0].allowed",
                "palisade.shadow_denied",
                "palisade.policy.ns[shop]-policy[would-deny-debug]-rule[0].shadow_denied",
            ]),
        ),
        (
            "GET /public/../admin/x is /admin/x once normalised (BASE): denied by the DENY rule",
            request("GET", "/public/../admin/x"),
            denial(
                "rbac_access_denied_matched_policy[ns[shop]-policy[deny-admin]-rule[0]]",
                "ns[shop]-policy[deny-admin]-rule[0]",
                &[
                    "palisade.denied",
                    "palisade.policy.ns[shop]-policy[deny-admin]-rule[0].denied",
                    "palisade.shadow_allowed",
                ],
            ),
        ),
    ];
    let host = ProxyWasmHost::with_settings(
        &common::plugin_wasm(),
        HostSettings {
            bound: Bound::TIME,
            ..HostSettings::default()
        },
    )
    .unwrap();
    let files = [SourceFile::new("policy.yaml", POLICY)];
    let mut replayer =
        Replayer::with_read_back(host, &files, &Options::default(), ReadBack::Outcome).unwrap();
    let mut failures = Vec::new();
    for (name, request, want) in &cases {
        let got = replayer.observe_wasm(request).unwrap().unwrap();
        if &got != want {
            failures.push(format!("{name}:\n  want {want}\n  got  {got}"));
        }
        // The mapping the replay test uses as its expected side agrees with the hand-written
        // value too (so the two anchors cannot drift apart unnoticed).
        let native = replayer.decide_native(request);
        let mapped = replayer.expected(request, &native).unwrap().unwrap();
        if &mapped != want {
            failures.push(format!(
                "{name} (enforce::outcome_with):\n  want {want}\n  got  {mapped}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(cases.len(), 7);
}
