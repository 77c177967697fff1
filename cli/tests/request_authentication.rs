//! `palisade eval` and `check` with a RequestAuthentication: a space-delimited scope is split
//! as the mesh's `jwt_authn` splits it, a token no rule accepts is refused as `jwt_authn`
//! refuses it (401: a deny, step `jwt-rejected`), and a bad rule is an error with its position.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Output, Stdio};

use serde_json::Value;

const POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: accounts, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  jwtRules:
  - issuer: https://accounts.example
    jwksUri: https://accounts.example/jwks.json
    spaceDelimitedClaims: [roles]
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

fn request(name: &str, method: &str, jwt: &str) -> String {
    format!(
        r#"{{"name": "{name}", "request": {{"destination": {{"port": 8080, "workload": {{"namespace": "shop", "labels": {{"app": "cart"}}}}}},
 "http": {{"method": "{method}", "host": "cart", "path": "/api/cart"}}, "jwt": {jwt}}}}}"#
    )
}

fn palisade(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn eval_splits_space_delimited_claims_and_refuses_tokens_jwt_authn_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.yaml"), POLICIES).unwrap();
    let batch = [
        request(
            "a space-delimited scope",
            "GET",
            r#"{"iss": "https://accounts.example", "sub": "u", "scope": "profile cart.read"}"#,
        ),
        request(
            "the issuer's own space-delimited roles",
            "DELETE",
            r#"{"iss": "https://accounts.example", "sub": "u", "roles": "viewer admin"}"#,
        ),
        request(
            "a scope without the word",
            "GET",
            r#"{"iss": "https://accounts.example", "sub": "u", "scope": "profile cart.readonly"}"#,
        ),
        request(
            "another issuer",
            "GET",
            r#"{"iss": "https://evil.example", "sub": "u", "scope": "cart.read"}"#,
        ),
    ];
    std::fs::write(
        dir.path().join("requests.json"),
        format!("[{}]", batch.join(",\n")),
    )
    .unwrap();
    let o = palisade(
        &[
            "eval",
            "-p",
            "policies.yaml",
            "-r",
            "requests.json",
            "--output",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let got: Vec<(String, String, String)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["verdict"].as_str().unwrap().to_string(),
                r["step"].as_str().unwrap().to_string(),
                r["rule"]["id"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let want = [
        ("allow", "allow-matched", "ns[shop]-policy[cart]-rule[0]"),
        ("allow", "allow-matched", "ns[shop]-policy[cart]-rule[1]"),
        ("deny", "no-allow-matched", "-"),
        ("deny", "jwt-rejected", "-"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect();
    assert_eq!(got, want);
    let refused = &v["results"][3];
    assert_eq!(refused["errors"][0], "Jwt issuer is not configured");
    assert_eq!(
        refused["envoyDetails"],
        "jwt_authn_access_denied{Jwt_issuer_is_not_configured}"
    );
    assert_eq!(
        refused["explanation"],
        "denied (HTTP 401): jwt_authn refuses the token: Jwt issuer is not configured"
    );
}

#[test]
fn check_refuses_a_bad_jwt_rule_with_its_line_column_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = POLICIES.replace(
        "    jwksUri: https://accounts.example/jwks.json\n",
        "    jwksUri: https://accounts.example/jwks.json\n    jwks: '{\"keys\": []}'\n",
    );
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    let o = palisade(&["check", "bad.yaml", "--error-format", "json"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&o.stderr).unwrap();
    let d = &v["diagnostics"][0];
    assert_eq!(d["message"], "only one of `jwks` or `jwksUri` can be set");
    assert_eq!(d["path"], "spec.jwtRules[0].jwks");
    assert_eq!(d["location"]["file"], "bad.yaml");
    assert_eq!(
        (
            d["location"]["line"].as_u64(),
            d["location"]["column"].as_u64()
        ),
        (Some(9), Some(11))
    );
    assert_eq!(d["document"], "RequestAuthentication shop/accounts");
}
