//! Replaying requests that CUSTOM policies match: the recorded provider answer (`extAuthz`) is
//! served to the plugin's `proxy_http_call`, so the `.wasm` and the native engine decide the
//! same way; without an answer the native verdict is `custom-pending` while the plugin's call
//! fails and it fails closed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use palisade_engine::extauthz::{ExtensionProvider, GrpcProvider, HttpProvider};
use palisade_engine::{Options, Request, SourceFile, Step, Verdict};
use palisade_wasm_host::{Replayer, provider_answers, same_decision};

const POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: CUSTOM
  provider: {name: ext-http}
  rules:
  - to: [{operation: {paths: ["/custom*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - to: [{operation: {methods: ["GET"]}}]
"#;

fn options() -> Options {
    Options {
        extension_providers: vec![
            ExtensionProvider {
                name: "ext-http".into(),
                envoy_ext_authz_http: Some(HttpProvider {
                    service: "foo/ext-authz.foo.svc.cluster.local".into(),
                    port: 8000,
                    ..HttpProvider::default()
                }),
                envoy_ext_authz_grpc: None,
            },
            ExtensionProvider {
                name: "ext-grpc".into(),
                envoy_ext_authz_http: None,
                envoy_ext_authz_grpc: Some(GrpcProvider {
                    service: "ext-authz-grpc.local".into(),
                    port: 9000,
                    ..GrpcProvider::default()
                }),
            },
        ],
        ..Options::default()
    }
}

fn request(method: &str, path: &str, answer: Option<&str>) -> Request {
    let mut r = serde_json::json!({
        "source": {"ip": "10.0.0.9", "port": 40000},
        "destination": {"ip": "10.0.1.1", "port": 8080,
            "workload": {"namespace": "shop", "labels": {"app": "cart"}}},
        "http": {"method": method, "host": "cart", "path": path},
    });
    if let Some(a) = answer {
        r["extAuthz"] = serde_json::json!({"ext-http": a});
    }
    serde_json::from_value(r).unwrap()
}

#[test]
fn recorded_answers_reach_the_plugin_and_both_sides_decide_alike() {
    let files = [SourceFile::new("policies.yaml", POLICIES)];
    let mut replayer = Replayer::new(common::host(), &files, &options()).unwrap();
    let cases = [
        (
            "no CUSTOM match",
            request("GET", "/public", None),
            Verdict::Allow,
            Step::AllowMatched,
        ),
        (
            "the provider allowed",
            request("GET", "/custom", Some("allow")),
            Verdict::Allow,
            Step::AllowMatched,
        ),
        (
            "the provider denied",
            request("GET", "/custom", Some("deny")),
            Verdict::Deny,
            Step::CustomDenied,
        ),
        (
            "the provider allowed, ALLOW still decides",
            request("POST", "/custom", Some("allow")),
            Verdict::Deny,
            Step::NoAllowMatched,
        ),
    ];
    for (name, r, verdict, step) in cases {
        let native = replayer.decide_native(&r);
        let wasm = replayer.decide_wasm(&r).unwrap().unwrap();
        assert_eq!(
            (native.verdict, native.step),
            (verdict, step),
            "{name}: native"
        );
        assert!(
            same_decision(&native, &wasm),
            "{name}:\n native {native:?}\n wasm {wasm:?}"
        );
        assert_eq!(wasm.custom, native.custom, "{name}: the providers asked");
    }
}

#[test]
fn without_a_recorded_answer_native_is_pending_and_the_plugin_fails_closed() {
    let files = [SourceFile::new("policies.yaml", POLICIES)];
    let mut replayer = Replayer::new(common::host(), &files, &options()).unwrap();
    let r = request("GET", "/custom", None);
    let native = replayer.decide_native(&r);
    assert_eq!(native.verdict, Verdict::CustomPending);
    let wasm = replayer.decide_wasm(&r).unwrap().unwrap();
    assert_eq!(
        (wasm.verdict, wasm.step),
        (Verdict::Deny, Step::CustomDenied)
    );
}

#[test]
fn answers_are_served_to_http_providers_clusters_only() {
    let mut r = request("GET", "/custom", Some("deny"));
    r.ext_authz
        .insert("ext-grpc".into(), palisade_engine::ExtAuthzAnswer::Allow);
    r.ext_authz
        .insert("undeclared".into(), palisade_engine::ExtAuthzAnswer::Allow);
    let answers = provider_answers(&options(), &r);
    let got: Vec<(&str, &str)> = answers
        .iter()
        .map(|(k, f)| (k.as_str(), f.headers[0].1.as_str()))
        .collect();
    assert_eq!(
        got,
        [("outbound|8000||ext-authz.foo.svc.cluster.local", "403")]
    );
}
