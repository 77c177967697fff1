//! Replay with a RequestAuthentication: the records' raw JWT payloads go to the native engine
//! and, as `jwt_authn` metadata, to the plugin's `.wasm`; both split the space-delimited
//! claims and refuse the tokens `jwt_authn` would refuse (401), with the same decisions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use palisade_engine::{Options, Request, SourceFile, Step, Verdict};
use palisade_wasm_host::{ReadBack, Replayer, same_decision};
use serde_json::{Value, json};

const POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: accounts, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  jwtRules:
  - issuer: https://accounts.example
    jwksUri: https://accounts.example/jwks.json
    spaceDelimitedClaims: [roles]
  - issuer: https://partners.example
    jwksUri: https://partners.example/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - to: [{operation: {methods: [GET]}}]
    when: [{key: 'request.auth.claims[scope]', values: [cart.read]}]
  - to: [{operation: {methods: [DELETE]}}]
    when: [{key: 'request.auth.claims[roles]', values: [admin]}]
"#;

fn request(method: &str, jwt: Option<Value>) -> Request {
    let mut r: Request = serde_json::from_value(json!({
        "source": {"ip": "10.0.0.9", "port": 40000},
        "destination": {"ip": "10.0.0.20", "port": 8080,
                        "workload": {"namespace": "shop", "labels": {"app": "cart"}}},
        "http": {"method": method, "host": "cart", "path": "/api/cart"},
    }))
    .unwrap();
    r.jwt = jwt;
    r
}

/// A case: its name, the method, the payload, and the verdict, step and rule expected.
type Row = (
    &'static str,
    &'static str,
    Option<Value>,
    Verdict,
    Step,
    Option<&'static str>,
);

#[test]
fn replayed_payloads_are_normalised_and_refused_alike_by_the_wasm_and_the_native_engine() {
    let accounts = "https://accounts.example";
    let partners = "https://partners.example";
    // (case, method, payload, verdict, step, rule)
    let rows: Vec<Row> = vec![
        (
            "a space-delimited scope",
            "GET",
            Some(json!({"iss": accounts, "sub": "u", "scope": "profile cart.read"})),
            Verdict::Allow,
            Step::AllowMatched,
            Some("ns[shop]-policy[cart]-rule[0]"),
        ),
        (
            "the same scope already split",
            "GET",
            Some(json!({"iss": accounts, "sub": "u", "scope": ["profile", "cart.read"]})),
            Verdict::Allow,
            Step::AllowMatched,
            Some("ns[shop]-policy[cart]-rule[0]"),
        ),
        (
            "the issuer's own roles",
            "DELETE",
            Some(json!({"iss": accounts, "sub": "u", "roles": "viewer admin"})),
            Verdict::Allow,
            Step::AllowMatched,
            Some("ns[shop]-policy[cart]-rule[1]"),
        ),
        (
            "roles of the issuer that does not split them",
            "DELETE",
            Some(json!({"iss": partners, "sub": "u", "roles": "viewer admin"})),
            Verdict::Deny,
            Step::NoAllowMatched,
            None,
        ),
        (
            "an unknown issuer",
            "GET",
            Some(json!({"iss": "https://evil.example", "sub": "u", "scope": "cart.read"})),
            Verdict::Deny,
            Step::JwtRejected,
            None,
        ),
        (
            "no token",
            "GET",
            None,
            Verdict::Deny,
            Step::NoAllowMatched,
            None,
        ),
    ];
    let sources = [SourceFile::new("policies.yaml", POLICIES)];
    let mut full = Replayer::new(common::host(), &sources, &Options::default()).unwrap();
    let mut outcome = Replayer::with_read_back(
        common::host(),
        &sources,
        &Options::default(),
        ReadBack::Outcome,
    )
    .unwrap();
    for (case, method, payload, verdict, step, rule) in rows {
        let r = request(method, payload);
        let native = full.decide_native(&r);
        assert_eq!(
            (
                native.verdict,
                native.step,
                native.rule.as_ref().map(|x| x.id.as_str())
            ),
            (verdict, step, rule),
            "{case}: native {}",
            native.explain()
        );
        let wasm = full.decide_wasm(&r).unwrap().unwrap();
        assert!(
            same_decision(&wasm, &native),
            "{case}: wasm {} / native {}",
            wasm.explain(),
            native.explain()
        );
        let observed = outcome.observe_wasm(&r).unwrap().unwrap();
        assert_eq!(
            observed,
            outcome.expected(&r, &native).unwrap().unwrap(),
            "{case}"
        );
        if step == Step::JwtRejected {
            assert_eq!(
                observed.reply,
                Some((
                    401,
                    "jwt_authn_access_denied{Jwt_issuer_is_not_configured}".to_string()
                )),
                "{case}"
            );
        }
    }
}
