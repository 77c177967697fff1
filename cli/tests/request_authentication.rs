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

// ---------------------------------------------------------------------------------------
// Raw tokens (`jwtToken`): verified against the rule's inline `jwks` as `jwt_authn` would.

fn testdata(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/istio-jwt")
        .join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        let sym = |s: u32| char::from(A[(s & 63) as usize]);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        if chunk.len() > 1 {
            out.push(sym(n >> 6));
        }
        if chunk.len() > 2 {
            out.push(sym(n));
        }
    }
    out
}

const HS_KEY: &[u8] = b"palisade-cli-test-hs256-key-0123456789";

/// An HS256 token over `payload`, signed with `key`.
fn hs256(payload: &Value, key: &[u8]) -> String {
    let header = b64url(br#"{"alg":"HS256","typ":"JWT","kid":"hs"}"#);
    let input = format!("{header}.{}", b64url(payload.to_string().as_bytes()));
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        input.as_bytes(),
    );
    format!("{input}.{}", b64url(tag.as_ref()))
}

/// A case: its name, the path, the raw token, and the verdict, step and error expected.
type TokenCase = (
    &'static str,
    &'static str,
    String,
    &'static str,
    &'static str,
    Option<&'static str>,
);

#[test]
fn eval_verifies_raw_tokens_against_inline_jwks_as_jwt_authn() {
    let dir = tempfile::tempdir().unwrap();
    let istio_jwks = testdata("jwks.json").replace('\n', " ");
    let hs_jwks = format!(
        r#"{{"keys": [{{"kty": "oct", "alg": "HS256", "kid": "hs", "k": "{}"}}]}}"#,
        b64url(HS_KEY)
    );
    let policies = format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: tokens, namespace: shop}}
spec:
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '{istio_jwks}'
  - issuer: https://hs.example
    jwks: '{hs_jwks}'
  - issuer: https://remote.example
    jwksUri: https://remote.example/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: api, namespace: shop}}
spec:
  rules:
  - to: [{{operation: {{paths: [/demo]}}}}]
    from: [{{source: {{requestPrincipals: [testing@secure.istio.io/testing@secure.istio.io]}}}}]
  - to: [{{operation: {{paths: [/scope]}}}}]
    when: [{{key: 'request.auth.claims[scope]', values: [scope2, write]}}]
"
    );
    std::fs::write(dir.path().join("policies.yaml"), policies).unwrap();
    let demo = testdata("demo.jwt");
    let mut tampered = demo.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let hs = |p: Value| hs256(&p, HS_KEY);
    let far = 4_102_444_800u64;
    // (case, path, token, verdict, step, error)
    let rows: Vec<TokenCase> = vec![
        (
            "Istio's demo.jwt (RS256)",
            "/demo",
            demo.clone(),
            "allow",
            "allow-matched",
            None,
        ),
        (
            "Istio's groups-scope.jwt: its scope list",
            "/scope",
            testdata("groups-scope.jwt"),
            "allow",
            "allow-matched",
            None,
        ),
        (
            "demo.jwt with a changed signature",
            "/demo",
            tampered,
            "deny",
            "jwt-rejected",
            Some("Jwt verification fails"),
        ),
        (
            "an HS256 token with a space-delimited scope",
            "/scope",
            hs(json!({"iss": "https://hs.example", "sub": "u", "scope": "read write", "exp": far})),
            "allow",
            "allow-matched",
            None,
        ),
        (
            "an HS256 token signed with another key",
            "/scope",
            hs256(
                &json!({"iss": "https://hs.example", "sub": "u", "scope": "write", "exp": far}),
                b"another-key",
            ),
            "deny",
            "jwt-rejected",
            Some("Jwt verification fails"),
        ),
        (
            "an expired token",
            "/scope",
            hs(json!({"iss": "https://hs.example", "sub": "u", "scope": "write", "exp": 1000})),
            "deny",
            "jwt-rejected",
            Some("Jwt is expired"),
        ),
        (
            "a token not valid yet",
            "/scope",
            hs(json!({"iss": "https://hs.example", "sub": "u", "scope": "write", "nbf": far})),
            "deny",
            "jwt-rejected",
            Some("Jwt not yet valid"),
        ),
        (
            "a token of an unknown issuer",
            "/scope",
            hs(json!({"iss": "https://other.example", "sub": "u", "scope": "write"})),
            "deny",
            "jwt-rejected",
            Some("Jwt issuer is not configured"),
        ),
        (
            "a token that is not a JWT",
            "/scope",
            "not-a-token".to_string(),
            "deny",
            "jwt-rejected",
            Some("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
        ),
        (
            "a rule whose keys are behind jwksUri cannot verify: fail closed",
            "/scope",
            hs(json!({"iss": "https://remote.example", "sub": "u", "scope": "write"})),
            "deny",
            "error",
            None,
        ),
    ];
    let requests: Vec<String> = rows
        .iter()
        .map(|(case, path, token, ..)| {
            format!(
                r#"{{"name": "{case}", "request": {{"destination": {{"port": 8080, "workload": {{"namespace": "shop", "labels": {{"app": "api"}}}}}},
 "http": {{"method": "GET", "host": "api", "path": "{path}"}}, "jwtToken": "{token}"}}}}"#
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("requests.json"),
        format!("[{}]", requests.join(",\n")),
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
    for (i, (case, _, _, verdict, step, error)) in rows.iter().enumerate() {
        let r = &v["results"][i];
        assert_eq!(
            (r["verdict"].as_str(), r["step"].as_str()),
            (Some(*verdict), Some(*step)),
            "{case}: {}",
            r["explanation"]
        );
        if let Some(e) = error {
            assert_eq!(r["errors"][0], *e, "{case}");
        }
    }
}
