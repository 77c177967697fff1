//! The simulator with a RequestAuthentication pasted beside the policies: its summary counts
//! it, a space-delimited scope is split as the mesh splits it, a token no jwtRule accepts is
//! refused (step `jwt-rejected`), and a bad jwtRule comes back with its line and column.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use palisade_engine::{Step, Verdict};
use serde_json::Value;

const POLICIES: &str = "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: accounts, namespace: shop}
spec:
  jwtRules:
  - issuer: https://accounts.example
    jwksUri: https://accounts.example/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart, namespace: shop}
spec:
  rules:
  - when: [{key: 'request.auth.claims[scope]', values: [cart.read]}]
";

fn request(scope: &str, iss: &str) -> String {
    format!(
        r#"{{"destination": {{"port": 8080, "workload": {{"namespace": "shop", "labels": {{"app": "cart"}}}}}},
 "http": {{"method": "GET", "host": "cart", "path": "/"}},
 "jwt": {{"iss": "{iss}", "sub": "u", "scope": "{scope}"}}}}"#
    )
}

#[test]
fn the_simulator_splits_scope_and_refuses_unknown_issuers_as_the_mesh() {
    let summary = palisade_simulator::check(POLICIES).summary.unwrap();
    assert_eq!(
        (
            summary.request_authentications,
            summary.authorization_policies
        ),
        (1, 1)
    );
    let requests = format!(
        "[{}, {}, {}]",
        request("profile cart.read", "https://accounts.example"),
        request("profile cart.readonly", "https://accounts.example"),
        request("cart.read", "https://evil.example"),
    );
    let e = palisade_simulator::evaluate(POLICIES, &requests).unwrap();
    let got: Vec<(Verdict, Step)> = e
        .results
        .iter()
        .map(|r| (r.decision.verdict, r.decision.step))
        .collect();
    assert_eq!(
        got,
        [
            (Verdict::Allow, Step::AllowMatched),
            (Verdict::Deny, Step::NoAllowMatched),
            (Verdict::Deny, Step::JwtRejected),
        ]
    );
    let json: Value = serde_json::from_str(&palisade_simulator::evaluation_json(&Ok(e))).unwrap();
    assert_eq!(json["results"][2]["step"], "jwt-rejected");
    assert_eq!(
        json["results"][2]["envoyDetails"],
        "jwt_authn_access_denied{Jwt_issuer_is_not_configured}"
    );
}

#[test]
fn a_bad_jwt_rule_is_shown_with_its_line_and_column() {
    let bad = POLICIES.replace(
        "  - issuer: https://accounts.example\n    jwksUri: https://accounts.example/jwks.json\n",
        "  - jwksUri: ftp://accounts.example/jwks.json\n",
    );
    let c = palisade_simulator::check(&bad);
    assert!(!c.ok);
    let p = &c.errors[0];
    assert_eq!(p.path.as_deref(), Some("spec.jwtRules[0].jwksUri"));
    assert_eq!((p.line, p.column), (Some(6), Some(14)));
    assert!(
        p.message
            .contains("url must have scheme http:// or https://"),
        "{}",
        p.message
    );
}
