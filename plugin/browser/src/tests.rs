#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use palisade_engine::{Request, SourceFile, Step, Verdict, compile, load};
use serde_json::Value;

use super::*;

fn shop() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop")
}

/// The shop's inventory and policies, as separate files (as `palisade eval` reads them).
fn shop_files() -> Vec<SourceFile> {
    let mut paths = vec![shop().join("inventory.yaml")];
    let mut policies: Vec<PathBuf> = std::fs::read_dir(shop().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    policies.sort();
    paths.extend(policies);
    paths
        .iter()
        .map(|p| SourceFile::new(p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect()
}

/// The same files as one YAML text, as the page's textarea holds them.
fn shop_text() -> String {
    shop_files()
        .iter()
        .map(|f| f.text.as_str())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn shop_requests() -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(shop().join("requests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_shop_checks_with_its_counts() {
    let c = check(&shop_text());
    assert!(c.ok, "{:?}", c.errors);
    assert!(c.errors.is_empty());
    let s = c.summary.unwrap();
    // The counts `palisade check examples/shop` prints (examples/shop/README.md).
    assert_eq!(
        (
            s.authorization_policies,
            s.allow,
            s.deny,
            s.audit,
            s.dry_run
        ),
        (14, 8, 5, 1, 1)
    );
    assert_eq!((s.network_policies, s.workloads), (3, 7));
}

#[test]
fn every_shop_request_decides_as_the_native_engine_on_separate_files() {
    let native = compile(&load(&shop_files()).unwrap(), &Options::default()).unwrap();
    let sim = Simulator::new(&shop_text());
    let requests = shop_requests();
    assert_eq!(requests.len(), 12);
    for (name, text) in &requests {
        let e = sim.evaluate(text).unwrap();
        assert_eq!(e.results.len(), 1, "{name}");
        let r = &e.results[0];
        let v: Value = serde_json::from_str(text).unwrap();
        let request: Request = serde_json::from_value(v["request"].clone()).unwrap();
        assert_eq!(r.decision, native.decide(&request), "{name}");
        assert_eq!(r.explanation, r.decision.explain(), "{name}");
        assert_eq!(r.name.as_deref(), Some(name.as_str()));
        // Each sample names the verdict (and rule) it expects.
        assert_eq!(r.as_expected, Some(true), "{name}: {}", r.explanation);
    }
}

#[test]
fn an_array_of_requests_is_decided_in_order_with_totals() {
    let texts: Vec<String> = shop_requests().into_iter().map(|(_, t)| t).collect();
    let e = evaluate(&shop_text(), &format!("[{}]", texts.join(","))).unwrap();
    assert_eq!(e.results.len(), 12);
    assert_eq!(e.totals.requests, 12);
    assert_eq!(e.totals.allowed + e.totals.denied, 12);
    assert_eq!(e.totals.unexpected, 0);
    // Each sample file names its verdict: six `allow`, six `deny`.
    assert_eq!((e.totals.allowed, e.totals.denied), (6, 6));
    assert_eq!(
        e.results.iter().map(|r| r.index).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
}

#[test]
fn a_bad_policy_names_line_column_and_path() {
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: shop\nspec:\n  action: MAYBE\n";
    let c = check(text);
    assert!(!c.ok);
    assert!(c.summary.is_none());
    let p = &c.errors[0];
    assert_eq!(p.file.as_deref(), Some(POLICIES_FILE));
    assert_eq!(p.line, Some(7), "{p:?}");
    assert_eq!(p.column, Some(11), "{p:?}");
    assert_eq!(p.path.as_deref(), Some("spec.action"));
    assert!(p.message.contains("MAYBE"), "{}", p.message);
    // Evaluating with invalid policies answers the policies' errors, not a decision.
    let f = evaluate(text, "{}").unwrap_err();
    assert_eq!(f.stage, Stage::Policies);
    assert_eq!(f.errors, c.errors);
}

#[test]
fn text_that_is_not_yaml_is_an_error_not_a_panic() {
    for text in ["a: [", "\"", "- x\n y: 1", "\u{0}"] {
        let c = check(text);
        assert!(!c.ok, "{text:?}");
        assert!(!c.errors.is_empty());
    }
}

#[test]
fn a_bad_request_names_line_column_and_path() {
    let text = "[\n  {},\n  {\"destination\": {\"prot\": 1}}\n]";
    let f = evaluate(&shop_text(), text).unwrap_err();
    assert_eq!(f.stage, Stage::Request);
    let p = &f.errors[0];
    assert_eq!(p.path.as_deref(), Some("[1].destination.prot"));
    assert_eq!((p.line, p.column), (Some(3), Some(25)));
    assert!(p.message.contains("unknown field `prot`"), "{}", p.message);
    for bad in ["", "  ", "{", "[1, 2", "nonsense"] {
        let f = evaluate(&shop_text(), bad).unwrap_err();
        assert_eq!(f.stage, Stage::Request, "{bad:?}");
        assert!(!f.errors.is_empty());
    }
}

#[test]
fn an_unknown_workload_fails_closed() {
    let r = r#"{"destination": {"port": 80, "workload": {"namespace": "shop", "name": "nope"}}}"#;
    let e = evaluate(&shop_text(), r).unwrap();
    let d = &e.results[0].decision;
    assert_eq!((d.verdict, d.step), (Verdict::Deny, Step::Error));
    assert!(!d.errors.is_empty());
}

#[test]
fn the_json_answers_have_the_documented_shape() {
    let (_, text) = &shop_requests()[0];
    let ok: Value = serde_json::from_str(&evaluation_json(&evaluate(&shop_text(), text))).unwrap();
    assert_eq!(ok["ok"], true);
    let r = &ok["results"][0];
    for field in ["verdict", "step", "rule", "explanation", "asExpected"] {
        assert!(r.get(field).is_some(), "{field} missing: {r}");
    }
    // Envoy shows response code details only on a denial.
    assert_eq!(
        r.get("envoyDetails").is_some(),
        r["verdict"] == "deny",
        "envoyDetails on a {} result: {r}",
        r["verdict"]
    );
    assert_eq!(ok["totals"]["requests"], 1);
    let bad: Value = serde_json::from_str(&evaluation_json(&evaluate(&shop_text(), "{"))).unwrap();
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["stage"], "request");
    assert!(bad["errors"][0]["line"].is_u64());
    let c: Value = serde_json::from_str(&check_json(&shop_text(), "")).unwrap();
    assert_eq!(
        (c["ok"].clone(), c["summary"]["networkPolicies"].clone()),
        (Value::Bool(true), Value::from(3))
    );
    let js: Value = serde_json::from_str(&js::Simulator::new("kind: [", None).check()).unwrap();
    assert_eq!(js["ok"], false);
}

/// A policy that allows `/public` on the cart, for the mesh-option tests.
const PUBLIC: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: public, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - to:
    - operation: {paths: [/public/*]}
";

fn to_cart(path: &str) -> String {
    serde_json::json!({"destination": {"workload": {"namespace": "shop", "labels": {"app": "cart"}}},
        "http": {"method": "GET", "path": path}})
    .to_string()
}

#[test]
fn the_mesh_options_change_what_the_engine_sees() {
    // `/public/../admin` is `/admin` once normalised (BASE, the default): denied; with
    // normalisation off the prefix `/public/` matches as sent.
    let r = to_cart("/public/../admin");
    let verdict = |options: &str| {
        evaluate_with(PUBLIC, &r, options).unwrap().results[0]
            .decision
            .verdict
    };
    assert_eq!(verdict(""), Verdict::Deny);
    assert_eq!(verdict(r#"{"pathNormalization": "BASE"}"#), Verdict::Deny);
    assert_eq!(verdict(r#"{"pathNormalization": "NONE"}"#), Verdict::Allow);

    // A policy in the root namespace applies mesh-wide: with `rootNamespace: shop` the policy
    // (now without a selector) covers every workload of the mesh, `web` in `store` included.
    let mesh = PUBLIC.replace("  selector: {matchLabels: {app: cart}}\n", "");
    let to_web = r#"{"destination": {"workload": {"namespace": "store", "labels": {"app": "web"}}}, "http": {"method": "GET", "path": "/admin"}}"#;
    let web = |options: &str| {
        evaluate_with(&mesh, to_web, options).unwrap().results[0]
            .decision
            .verdict
    };
    assert_eq!(web(""), Verdict::Allow, "no policy applies to store/web");
    assert_eq!(web(r#"{"rootNamespace": "shop"}"#), Verdict::Deny);
}

/// A mesh-wide DENY in `istio-system` (the default root namespace), beside [`PUBLIC`].
const MESH_DENY: &str = "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-secrets, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: [/public/secret]}
";

#[test]
fn moving_the_root_namespace_elsewhere_changes_a_decision() {
    // Hand-written expectations: with the default root namespace `istio-system` the DENY
    // there has no selector and so applies to every workload of the mesh, `shop/cart`
    // included; with `rootNamespace: elsewhere` it applies only to workloads in
    // `istio-system`, and cart's own ALLOW of `/public/*` decides.
    let policies = format!("{PUBLIC}{MESH_DENY}");
    let r = to_cart("/public/secret");
    let decide = |options: &str| evaluate_with(&policies, &r, options).unwrap().results[0].clone();
    let default = decide("");
    assert_eq!(default.decision.verdict, Verdict::Deny);
    assert_eq!(
        default.decision.rule.as_ref().map(|r| r.id.as_str()),
        Some("ns[istio-system]-policy[no-secrets]-rule[0]")
    );
    let elsewhere = decide(r#"{"rootNamespace": "elsewhere"}"#);
    assert_eq!(elsewhere.decision.verdict, Verdict::Allow);
    assert_eq!(
        elsewhere.decision.rule.as_ref().map(|r| r.id.as_str()),
        Some("ns[shop]-policy[public]-rule[0]")
    );
}

#[test]
fn the_shop_root_namespace_turns_shops_deny_plaintext_mesh_wide() {
    // With `rootNamespace: shop`, `shop/deny-plaintext` (no selector) applies to every
    // workload: the one plaintext sample that was allowed, `browse-home` (the Internet to the
    // ingress gateway), is denied by it; no other sample changes (hand-derived from
    // examples/shop: every other plaintext sample is denied already, and the istio-system
    // policies select only istio-system workloads anyway). The browser test shows the same.
    let text = shop_text();
    let mut changed = Vec::new();
    for (name, request) in shop_requests() {
        let default = evaluate(&text, &request).unwrap().results[0].clone();
        let moved = evaluate_with(&text, &request, r#"{"rootNamespace": "shop"}"#)
            .unwrap()
            .results[0]
            .clone();
        if moved.decision.verdict != default.decision.verdict {
            changed.push((
                name,
                moved.decision.verdict,
                moved.decision.rule.as_ref().map(|r| r.id.clone()),
            ));
        }
    }
    assert_eq!(
        changed,
        [(
            "browse-home".to_string(),
            Verdict::Deny,
            Some("ns[shop]-policy[deny-plaintext]-rule[0]".to_string())
        )]
    );
}

#[test]
fn options_that_do_not_read_are_a_located_error() {
    for bad in [
        "{",
        r#"{"pathNormalization": "SOMETIMES"}"#,
        r#"{"trustDomian": "x"}"#,
    ] {
        let sim = Simulator::with_options(PUBLIC, bad);
        let c = sim.check();
        assert!(!c.ok, "{bad}");
        assert_eq!(c.errors[0].file.as_deref(), Some(OPTIONS_FILE), "{bad}");
        let e = sim.evaluate(&to_cart("/public/x")).unwrap_err();
        assert_eq!(e.stage, Stage::Policies, "{bad}");
    }
    let answer: Value = serde_json::from_str(&js::evaluate(
        PUBLIC,
        &to_cart("/public/x"),
        Some("{".into()),
    ))
    .unwrap();
    assert_eq!(
        (answer["ok"].clone(), answer["stage"].clone()),
        (Value::Bool(false), Value::from("policies"))
    );
}

#[test]
fn custom_policies_are_pending_until_the_request_carries_the_providers_answer() {
    let policy = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: CUSTOM
  provider: {name: authz}
  rules:
  - to: [{operation: {paths: [/custom]}}]
";
    let options = r#"{"extensionProviders": [{"name": "authz",
        "envoyExtAuthzGrpc": {"service": "authz.local", "port": 9000}}]}"#;
    let with = |answer: &str| {
        let r = serde_json::json!({"destination": {"workload": {"namespace": "shop", "labels": {"app": "cart"}}},
            "http": {"method": "GET", "path": "/custom"}, "extAuthz": {"authz": answer}});
        evaluate_with(policy, &r.to_string(), options)
            .unwrap()
            .results[0]
            .decision
            .verdict
    };
    let pending = evaluate_with(policy, &to_cart("/custom"), options).unwrap();
    let d = &pending.results[0].decision;
    assert_eq!(
        (d.verdict, d.custom[0].provider.as_str()),
        (Verdict::CustomPending, "authz")
    );
    assert_eq!(with("allow"), Verdict::Allow);
    assert_eq!(with("deny"), Verdict::Deny);
    // Without the provider declared, Istio's deny rule applies.
    let undeclared = evaluate_with(policy, &to_cart("/custom"), "").unwrap();
    assert_eq!(undeclared.results[0].decision.verdict, Verdict::Deny);
    // A bad provider in the options is an error of the policies' stage.
    let bad = r#"{"extensionProviders": [{"name": "authz", "envoyExtAuthzGrpc": {"service": "a", "port": 0}}]}"#;
    assert!(evaluate_with(policy, &to_cart("/custom"), bad).is_err());
}
