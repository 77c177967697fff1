//! RequestAuthentication: Istio's validation (message, field path, line and column), which
//! workloads it applies to, and what `jwt_authn` as Istio configures it does to a payload
//! before the rules see it (split claims, 401 refusals). One named case a row.
//!
//! The expected normalisations are Envoy's `normalize_payload_in_metadata` as its source reads
//! (`jwt_authn/authenticator.cc`, `setPayloadMetadata`: only top-level string claims, split on
//! `' '` with empty words skipped, a string without words left as it is) and as Istio
//! configures it (`policy_applier.go`, `buildSpaceDelimitedClaims`: the rule's claims plus
//! `scope` and `permission`); `envoy/harness/tests/request_authentication.rs` checks the same
//! in the real Envoy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use palisade_engine::authn::{Authenticated, JwtProvider, authenticate, normalize};
use palisade_engine::{
    Engine, Options, Protocol, Request, SourceFile, Step, Verdict, compile, load,
};
use serde_json::{Value, json};

fn ra(body: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: ra\n  namespace: shop\nspec:\n{body}"
    )
}

#[test]
fn invalid_request_authentications_are_refused_with_message_path_line_and_column() {
    // (case, YAML, message fragment, field path, line, column)
    let rows: &[(&str, String, &str, &str, usize, usize)] = &[
        (
            "a rule with neither issuer nor jwksUri",
            ra("  jwtRules:\n  - audiences: [a]\n"),
            "issuer or jwksUri must be non-empty string",
            "spec.jwtRules[0]",
            8,
            5,
        ),
        (
            "an empty issuer",
            ra("  jwtRules:\n  - issuer: \"\"\n"),
            "`issuer` must not be empty",
            "spec.jwtRules[0].issuer",
            8,
            13,
        ),
        (
            "an empty audience",
            ra("  jwtRules:\n  - issuer: i\n    audiences: [a, \"\"]\n"),
            "audience must be non-empty string",
            "spec.jwtRules[0].audiences[1]",
            9,
            20,
        ),
        (
            "jwks and jwksUri together",
            ra(
                "  jwtRules:\n  - issuer: i\n    jwksUri: https://i.example/jwks\n    jwks: '{\"keys\": []}'\n",
            ),
            "only one of `jwks` or `jwksUri` can be set",
            "spec.jwtRules[0].jwks",
            10,
            11,
        ),
        (
            "a jwksUri without http or https",
            ra("  jwtRules:\n  - issuer: i\n    jwksUri: ftp://i.example/jwks\n"),
            "url must have scheme http:// or https://",
            "spec.jwtRules[0].jwksUri",
            9,
            14,
        ),
        (
            "a jwksUri without a host",
            ra("  jwtRules:\n  - issuer: i\n    jwksUri: https:///jwks\n"),
            "no host",
            "spec.jwtRules[0].jwksUri",
            9,
            14,
        ),
        (
            "jwks that is not JSON",
            ra("  jwtRules:\n  - issuer: i\n    jwks: 'not json'\n"),
            "jwks parse error: not JSON",
            "spec.jwtRules[0].jwks",
            9,
            11,
        ),
        (
            "a jwks key without kty",
            ra("  jwtRules:\n  - issuer: i\n    jwks: '{\"keys\": [{\"k\": \"x\"}]}'\n"),
            "jwks parse error: key 0 has no string `kty`",
            "spec.jwtRules[0].jwks",
            9,
            11,
        ),
        (
            "a header location without a name",
            ra("  jwtRules:\n  - issuer: i\n    fromHeaders:\n    - prefix: 'Bearer '\n"),
            "missing required field `name`",
            "spec.jwtRules[0].fromHeaders[0]",
            10,
            7,
        ),
        (
            "an empty header location name",
            ra("  jwtRules:\n  - issuer: i\n    fromHeaders:\n    - name: \"\"\n"),
            "location header name must be non-empty string",
            "spec.jwtRules[0].fromHeaders[0].name",
            10,
            13,
        ),
        (
            "an empty query parameter",
            ra("  jwtRules:\n  - issuer: i\n    fromParams: [\"\"]\n"),
            "location query must be non-empty string",
            "spec.jwtRules[0].fromParams[0]",
            9,
            18,
        ),
        (
            "an empty cookie name",
            ra("  jwtRules:\n  - issuer: i\n    fromCookies: [c, \"\"]\n"),
            "cookie name must be non-empty string",
            "spec.jwtRules[0].fromCookies[1]",
            9,
            22,
        ),
        (
            "a claim header without a claim",
            ra("  jwtRules:\n  - issuer: i\n    outputClaimToHeaders:\n    - header: x-sub\n"),
            "missing required field `claim`",
            "spec.jwtRules[0].outputClaimToHeaders[0]",
            10,
            7,
        ),
        (
            "a claim header with an empty claim",
            ra(
                "  jwtRules:\n  - issuer: i\n    outputClaimToHeaders:\n    - {header: x-sub, claim: \"\"}\n",
            ),
            "outputClaimToHeaders header and claim value must be non-empty string",
            "spec.jwtRules[0].outputClaimToHeaders[0]",
            10,
            7,
        ),
        (
            "a claim header name with a space",
            ra(
                "  jwtRules:\n  - issuer: i\n    outputClaimToHeaders:\n    - {header: \"x sub\", claim: sub}\n",
            ),
            "invalid header name `x sub`",
            "spec.jwtRules[0].outputClaimToHeaders[0].header",
            10,
            16,
        ),
        (
            "a timeout below a millisecond",
            ra("  jwtRules:\n  - issuer: i\n    timeout: 500us\n"),
            "duration must be greater than 1ms",
            "spec.jwtRules[0].timeout",
            9,
            14,
        ),
        (
            "a timeout finer than a millisecond",
            ra("  jwtRules:\n  - issuer: i\n    timeout: 1.0005s\n"),
            "only durations to ms precision are supported",
            "spec.jwtRules[0].timeout",
            9,
            14,
        ),
        (
            "a timeout that is not a duration",
            ra("  jwtRules:\n  - issuer: i\n    timeout: soon\n"),
            "invalid duration `soon`",
            "spec.jwtRules[0].timeout",
            9,
            14,
        ),
        (
            "an empty space-delimited claim",
            ra("  jwtRules:\n  - issuer: i\n    spaceDelimitedClaims: [roles, \"\"]\n"),
            "claim name must be non-empty string",
            "spec.jwtRules[0].spaceDelimitedClaims[1]",
            9,
            35,
        ),
        (
            "an unknown rule field, with a hint",
            ra("  jwtRules:\n  - issuer: i\n    spaceDelimitedClaim: [roles]\n"),
            "unknown field `spaceDelimitedClaim`",
            "spec.jwtRules[0].spaceDelimitedClaim",
            9,
            5,
        ),
        (
            "selector and targetRefs together",
            ra(
                "  selector: {matchLabels: {app: cart}}\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n",
            ),
            "only one of `targetRefs` or `selector` can be set",
            "spec.selector",
            7,
            13,
        ),
        (
            "a wildcard in a selector",
            ra("  selector:\n    matchLabels: {app: \"cart*\"}\n"),
            "wildcard is not supported in selector: `app=cart*`",
            "spec.selector",
            8,
            5,
        ),
        (
            "a targetRef to another namespace",
            ra(
                "  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: gw, namespace: other}\n",
            ),
            "cross namespace referencing is not supported",
            "spec.targetRefs[0].namespace",
            8,
            76,
        ),
        (
            "a targetRef to a Deployment",
            ra("  targetRefs:\n  - {kind: Deployment, group: apps, name: cart}\n"),
            "targetRef must be to a Service, ServiceEntry, Gateway or GatewayClass, but was `apps/Deployment`",
            "spec.targetRefs[0].kind",
            8,
            12,
        ),
        (
            "a targetRef without a name",
            ra("  targetRefs:\n  - {kind: Service}\n"),
            "missing required field `name`",
            "spec.targetRefs[0]",
            8,
            5,
        ),
    ];
    for (case, yaml, message, path, line, column) in rows {
        let errors = load(&[SourceFile::new("ra.yaml", yaml.as_str())])
            .err()
            .unwrap_or_else(|| panic!("{case}: accepted"));
        let d = &errors.diagnostics[0];
        assert!(
            d.message.contains(message),
            "{case}: message `{}` lacks `{message}`",
            d.message
        );
        assert_eq!(d.path.as_deref(), Some(*path), "{case}: path");
        let at = d.location.as_ref().unwrap();
        assert_eq!((at.line, at.column), (*line, *column), "{case}: position");
        assert_eq!(at.file, "ra.yaml", "{case}: file");
        assert_eq!(
            d.document.as_deref(),
            Some("RequestAuthentication shop/ra"),
            "{case}: document"
        );
    }
}

#[test]
fn valid_request_authentications_are_read_field_by_field() {
    let yaml = ra(
        "  selector: {matchLabels: {app: cart}}\n  jwtRules:\n  - issuer: https://a.example\n    audiences: [shop]\n    jwksUri: https://a.example/jwks.json\n    fromHeaders: [{name: x-jwt, prefix: 'Bearer '}]\n    fromParams: [token]\n    fromCookies: [session]\n    outputPayloadToHeader: x-payload\n    forwardOriginalToken: true\n    outputClaimToHeaders: [{header: x-sub, claim: sub}]\n    timeout: 1m30s\n    spaceDelimitedClaims: [roles, scope]\n  - jwksUri: http://b.example/keys\n    timeout: 300ms\n",
    );
    let set = load(&[SourceFile::new("ra.yaml", yaml.as_str())]).unwrap();
    let ra = &set.authentication[0];
    assert_eq!((ra.namespace.as_str(), ra.name.as_str()), ("shop", "ra"));
    let r = &ra.jwt_rules[0];
    assert_eq!(r.issuer.as_deref(), Some("https://a.example"));
    assert_eq!(r.audiences, ["shop"]);
    assert_eq!(
        r.from_headers,
        [("x-jwt".to_string(), "Bearer ".to_string())]
    );
    assert_eq!(r.from_params, ["token"]);
    assert_eq!(r.from_cookies, ["session"]);
    assert_eq!(r.output_payload_to_header.as_deref(), Some("x-payload"));
    assert!(r.forward_original_token);
    assert_eq!(
        r.output_claim_to_headers,
        [("x-sub".to_string(), "sub".to_string())]
    );
    assert_eq!(r.timeout.as_deref(), Some("1m30s"));
    // Istio's `buildSpaceDelimitedClaims`: the defaults added, each once, sorted.
    assert_eq!(r.split_claims(), ["permission", "roles", "scope"]);
    let r = &ra.jwt_rules[1];
    assert_eq!(r.issuer, None, "a jwksUri-only rule accepts any issuer");
    assert_eq!(r.split_claims(), ["permission", "scope"]);
    // v1beta1 and an empty spec are accepted too.
    let beta = "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {name: e, namespace: shop}\nspec: {}\n";
    assert_eq!(
        load(&[SourceFile::new("b.yaml", beta)])
            .unwrap()
            .authentication
            .len(),
        1
    );
    let alpha = "apiVersion: security.istio.io/v1alpha1\nkind: RequestAuthentication\nmetadata: {name: e, namespace: shop}\nspec: {}\n";
    let err = load(&[SourceFile::new("a.yaml", alpha)]).unwrap_err();
    assert_eq!(
        err.diagnostics[0].message,
        "unsupported apiVersion `security.istio.io/v1alpha1` for RequestAuthentication"
    );
}

// ---------------------------------------------------------------------------------------
// Decisions.

/// ALLOW policies in `shop` for `app: api`: rule 0 needs `request.auth.claims[<claim>]` =
/// `value` (the claim path given as `[a][b]`).
fn allow_claim(claim: &str, value: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: need-claim, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  rules:\n  - when:\n    - key: request.auth.claims{claim}\n      values: [\"{value}\"]\n"
    )
}

const ISSUER_A: &str = "https://a.example";
const ISSUER_B: &str = "https://b.example";

/// Issuer A splits `roles` and `realm.roles` (a top-level name with a dot), issuer B only the
/// defaults; both for `app: api` in `shop`.
fn two_issuers() -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: issuers, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  jwtRules:\n  - issuer: {ISSUER_A}\n    spaceDelimitedClaims: [roles, realm.roles]\n  - issuer: {ISSUER_B}\n"
    )
}

fn engine(docs: &[String]) -> Engine {
    let files: Vec<SourceFile> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| SourceFile::new(format!("doc{i}.yaml"), d.as_str()))
        .collect();
    compile(&load(&files).unwrap(), &Options::default()).unwrap()
}

fn to(namespace: &str, app: &str, jwt: Option<Value>) -> Request {
    let mut r: Request = serde_json::from_value(json!({
        "destination": {"port": 8080, "workload": {"namespace": namespace, "labels": {"app": app}}},
        "http": {"method": "GET", "host": "api", "path": "/"},
    }))
    .unwrap();
    r.jwt = jwt;
    r
}

fn api(jwt: Value) -> Request {
    to("shop", "api", Some(jwt))
}

#[test]
fn claims_are_split_as_jwt_authn_splits_them_before_the_rules_see_them() {
    // (case, claim path, value the rule needs, payload, allowed)
    let rows: &[(&str, &str, &str, Value, bool)] = &[
        (
            "a space-delimited scope is split",
            "[scope]",
            "write",
            json!({"iss": ISSUER_A, "scope": "read write"}),
            true,
        ),
        (
            "a one-word scope still matches",
            "[scope]",
            "read",
            json!({"iss": ISSUER_A, "scope": "read"}),
            true,
        ),
        (
            "a scope that is already a list stays a list",
            "[scope]",
            "write",
            json!({"iss": ISSUER_A, "scope": ["read", "write"]}),
            true,
        ),
        (
            "a list element holding a space is not split",
            "[scope]",
            "write",
            json!({"iss": ISSUER_A, "scope": ["read write"]}),
            false,
        ),
        (
            "several spaces between words leave no empty word",
            "[scope]",
            "write",
            json!({"iss": ISSUER_A, "scope": "  read   write  "}),
            true,
        ),
        (
            "the unsplit string no longer matches once split",
            "[scope]",
            "read write",
            json!({"iss": ISSUER_A, "scope": "read write"}),
            false,
        ),
        (
            "a scope of spaces only stays the string it was",
            "[scope]",
            "   ",
            json!({"iss": ISSUER_A, "scope": "   "}),
            true,
        ),
        (
            "a tab is not a separator",
            "[scope]",
            "read\twrite",
            json!({"iss": ISSUER_A, "scope": "read\twrite"}),
            true,
        ),
        (
            "permission is split too",
            "[permission]",
            "orders:read",
            json!({"iss": ISSUER_B, "permission": "orders:read orders:write"}),
            true,
        ),
        (
            "the issuer's own spaceDelimitedClaims are split",
            "[roles]",
            "ops",
            json!({"iss": ISSUER_A, "roles": "admin ops"}),
            true,
        ),
        (
            "a claim named by another issuer's rule is not split",
            "[roles]",
            "ops",
            json!({"iss": ISSUER_B, "roles": "admin ops"}),
            false,
        ),
        (
            "a claim named by another issuer's rule matches whole",
            "[roles]",
            "admin ops",
            json!({"iss": ISSUER_B, "roles": "admin ops"}),
            true,
        ),
        (
            "a nested claim is never split",
            "[realm][roles]",
            "ops",
            json!({"iss": ISSUER_A, "realm": {"roles": "admin ops"}}),
            false,
        ),
        (
            "a top-level claim whose name has a dot is split",
            "[realm.roles]",
            "ops",
            json!({"iss": ISSUER_A, "realm.roles": "admin ops"}),
            true,
        ),
        (
            "a nested scope is not split",
            "[ext][scope]",
            "write",
            json!({"iss": ISSUER_A, "ext": {"scope": "read write"}}),
            false,
        ),
        (
            "a number claim is left alone",
            "[scope]",
            "1",
            json!({"iss": ISSUER_A, "scope": 1}),
            false,
        ),
    ];
    for (case, claim, value, payload, allowed) in rows {
        let e = engine(&[two_issuers(), allow_claim(claim, value)]);
        let d = e.decide(&api(payload.clone()));
        assert_eq!(d.allowed(), *allowed, "{case}: {}", d.explain());
        let step = if *allowed {
            Step::AllowMatched
        } else {
            Step::NoAllowMatched
        };
        assert_eq!(d.step, step, "{case}");
    }
}

#[test]
fn split_claims_feed_request_principals_and_audiences_as_envoy_sees_them() {
    // A rule splitting `sub` turns it into a list: `requestPrincipals` (a string matcher on
    // `[payload, sub]`) no longer matches, as in Envoy.
    let ra_sub = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: sub, namespace: shop}}\nspec:\n  jwtRules:\n  - issuer: {ISSUER_A}\n    spaceDelimitedClaims: [sub]\n"
    );
    let principals = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  rules:\n  - from:\n    - source: {{requestPrincipals: [\"{ISSUER_A}/alice\"]}}\n"
    );
    let e = engine(&[ra_sub, principals.clone()]);
    assert!(
        !e.decide(&api(json!({"iss": ISSUER_A, "sub": "alice"})))
            .allowed(),
        "a split sub is a list"
    );
    let e = engine(&[two_issuers(), principals]);
    assert!(
        e.decide(&api(json!({"iss": ISSUER_A, "sub": "alice"})))
            .allowed(),
        "an unsplit sub matches"
    );
}

#[test]
fn jwt_authn_refuses_tokens_no_provider_of_the_workload_accepts() {
    let with_aud = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: aud, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  jwtRules:\n  - issuer: {ISSUER_A}\n    audiences: [shop, https://orders.example/]\n"
    );
    // (case, payload, refusal reason or None when the rules decide)
    let rows: &[(&str, Value, Option<&str>)] = &[
        (
            "an unknown issuer",
            json!({"iss": "https://c.example", "aud": "shop"}),
            Some("Jwt issuer is not configured"),
        ),
        (
            "no issuer at all",
            json!({"sub": "x", "aud": "shop"}),
            Some("Jwt issuer is not configured"),
        ),
        (
            "an issuer that is not a string",
            json!({"iss": 7, "aud": "shop"}),
            Some("Jwt issuer is not configured"),
        ),
        (
            "an audience the rule does not list",
            json!({"iss": ISSUER_A, "aud": "other"}),
            Some("Audiences in Jwt are not allowed"),
        ),
        (
            "no audience when the rule lists some",
            json!({"iss": ISSUER_A}),
            Some("Audiences in Jwt are not allowed"),
        ),
        (
            "one listed audience among others",
            json!({"iss": ISSUER_A, "aud": ["x", "shop"]}),
            None,
        ),
        (
            "an audience compared without scheme and trailing slash",
            json!({"iss": ISSUER_A, "aud": "orders.example"}),
            None,
        ),
    ];
    let e = engine(&[with_aud]);
    for (case, payload, refused) in rows {
        let d = e.decide(&api(payload.clone()));
        match refused {
            Some(why) => {
                assert_eq!(
                    (d.verdict, d.step),
                    (Verdict::Deny, Step::JwtRejected),
                    "{case}"
                );
                assert_eq!(d.errors, [why.to_string()], "{case}");
                assert_eq!(
                    d.envoy_details(),
                    format!("jwt_authn_access_denied{{{}}}", why.replace(' ', "_")),
                    "{case}"
                );
                let status = if why.starts_with("Audiences") {
                    403
                } else {
                    401
                };
                assert_eq!(
                    d.explain(),
                    format!("denied (HTTP {status}): jwt_authn refuses the token: {why}"),
                    "{case}"
                );
            }
            None => assert_eq!(
                (d.verdict, d.step),
                (Verdict::Allow, Step::NoAllowPolicies),
                "{case}"
            ),
        }
    }
    // No token is never refused; a TCP connection never sees jwt_authn.
    let d = e.decide(&to("shop", "api", None));
    assert_eq!(d.step, Step::NoAllowPolicies);
    let mut tcp = api(json!({"iss": "https://c.example"}));
    tcp.protocol = Protocol::Tcp;
    assert_eq!(e.decide(&tcp).step, Step::NoAllowPolicies);
}

#[test]
fn request_authentication_applies_with_authorization_policy_scoping() {
    let doc = |ns: &str, name: &str, scope: &str, issuer: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{scope}  jwtRules:\n  - issuer: {issuer}\n    spaceDelimitedClaims: [roles]\n"
        )
    };
    let docs = vec![
        // Mesh-wide (root namespace, no selector): issuer `mesh`.
        doc("istio-system", "mesh", "", "mesh"),
        // Root namespace with a selector: every namespace's `app: edge`.
        doc(
            "istio-system",
            "edge",
            "  selector: {matchLabels: {app: edge}}\n",
            "edge",
        ),
        // Namespace-wide in `shop`.
        doc("shop", "shop-wide", "", "shop"),
        // `app: api` in `shop` only.
        doc(
            "shop",
            "api-only",
            "  selector: {matchLabels: {app: api}}\n",
            "api",
        ),
        // targetRefs: a gateway, never a sidecar workload.
        doc(
            "shop",
            "gateway",
            "  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n",
            "gateway",
        ),
    ];
    let e = engine(&docs);
    let issuers = |ns: &str, app: &str| -> Vec<String> {
        let view = e.build_view(ns, &[("app".to_string(), app.to_string())]);
        view.jwt_providers
            .iter()
            .map(|p| p.issuer.clone().unwrap())
            .collect()
    };
    // (case, namespace, app, issuers in provider order: sorted by issuer)
    let rows: &[(&str, &str, &str, &[&str])] = &[
        (
            "a selected workload gets its namespace's and the mesh's rules",
            "shop",
            "api",
            &["api", "mesh", "shop"],
        ),
        (
            "an unselected workload in the namespace gets the namespace-wide and mesh rules",
            "shop",
            "cart",
            &["mesh", "shop"],
        ),
        (
            "another namespace gets only the mesh rules",
            "billing",
            "api",
            &["mesh"],
        ),
        (
            "a root-namespace selector applies in every namespace",
            "billing",
            "edge",
            &["edge", "mesh"],
        ),
        (
            "the root namespace's own workloads get its rules once",
            "istio-system",
            "edge",
            &["edge", "mesh"],
        ),
    ];
    for (case, ns, app, want) in rows {
        assert_eq!(issuers(ns, app), *want, "{case}");
    }
    // A workload no RequestAuthentication applies to has no jwt_authn: its payload never
    // reaches the rules, so a claim rule does not match and nothing is refused.
    let only_api = vec![
        doc(
            "shop",
            "api-only",
            "  selector: {matchLabels: {app: api}}\n",
            "api",
        ),
        allow_claim("[roles]", "ops").replace("app: api", "app: cart"),
        allow_claim("[roles]", "ops"),
    ];
    let e = engine(&only_api);
    let payload = json!({"iss": "api", "roles": "admin ops"});
    let d = e.decide(&to("shop", "cart", Some(payload.clone())));
    assert_eq!(
        (d.verdict, d.step),
        (Verdict::Deny, Step::NoAllowMatched),
        "no jwt_authn on cart: {}",
        d.explain()
    );
    let d = e.decide(&to("shop", "api", Some(payload)));
    assert_eq!((d.verdict, d.step), (Verdict::Allow, Step::AllowMatched));
    let d = e.decide(&to("shop", "cart", Some(json!({"iss": "unknown"}))));
    assert_eq!(d.step, Step::NoAllowMatched, "nothing to refuse it on cart");
}

#[test]
fn without_any_request_authentication_a_payload_is_taken_as_verified_and_scope_split() {
    // The older reading of `jwt`: the payload a jwt_authn in front verified. Istio always
    // splits scope and permission, so they are split; other claims are not.
    let rows: &[(&str, &str, &str, Value, bool)] = &[
        (
            "scope is split",
            "[scope]",
            "write",
            json!({"iss": "any", "scope": "read write"}),
            true,
        ),
        (
            "permission is split",
            "[permission]",
            "p2",
            json!({"iss": "any", "permission": "p1 p2"}),
            true,
        ),
        (
            "another claim is not",
            "[roles]",
            "ops",
            json!({"iss": "any", "roles": "admin ops"}),
            false,
        ),
        (
            "an unknown issuer is not refused",
            "[scope]",
            "read",
            json!({"iss": "whoever", "scope": "read"}),
            true,
        ),
    ];
    for (case, claim, value, payload, allowed) in rows {
        let e = engine(&[allow_claim(claim, value)]);
        assert_eq!(
            e.decide(&api(payload.clone())).allowed(),
            *allowed,
            "{case}"
        );
    }
}

#[test]
fn normalising_twice_changes_nothing_and_borrows_when_nothing_splits() {
    let claims = ["permission", "roles", "scope"];
    let payloads = [
        json!({"scope": "a b", "roles": "x  y", "permission": ["p q"], "n": {"scope": "c d"}}),
        json!({"scope": "   ", "roles": "", "other": "u v"}),
        json!({"scope": ["a", "b"]}),
        json!("not an object"),
    ];
    for p in &payloads {
        let once = normalize(p, &claims).into_owned();
        let twice = normalize(&once, &claims);
        assert!(
            matches!(twice, std::borrow::Cow::Borrowed(_)),
            "{p}: a normalised payload is borrowed"
        );
        assert_eq!(*twice, once, "{p}");
    }
    assert_eq!(
        normalize(&payloads[0], &claims).into_owned(),
        json!({"scope": ["a", "b"], "roles": ["x", "y"], "permission": ["p q"], "n": {"scope": "c d"}})
    );
    assert_eq!(
        normalize(&payloads[1], &claims).into_owned(),
        payloads[1],
        "strings without words and unnamed claims stay"
    );
}

#[test]
fn the_first_provider_in_istios_order_that_accepts_the_token_normalises_it() {
    let provider = |issuer: Option<&str>, aud: &[&str], claims: &[&str]| JwtProvider {
        issuer: issuer.map(str::to_string),
        audiences: aud.iter().map(|a| (*a).to_string()).collect(),
        split_claims: claims.iter().map(|c| (*c).to_string()).collect(),
        jwks: None,
        policy: "shop/ra".into(),
    };
    let payload = json!({"iss": "i", "aud": "b", "x": "1 2", "y": "3 4"});
    let providers = [
        provider(Some("i"), &["a"], &["x"]),
        provider(Some("i"), &["b"], &["y"]),
        provider(None, &[], &["x", "y"]),
    ];
    let Authenticated::Payload(p) = authenticate(true, &providers, Some(&payload)) else {
        panic!("refused");
    };
    assert_eq!(
        p.get("x"),
        Some(&json!("1 2")),
        "the first provider refused the audience"
    );
    assert_eq!(
        p.get("y"),
        Some(&json!(["3", "4"])),
        "the second accepted it"
    );
    // An issuer-less provider accepts any issuer.
    let other = json!({"iss": "j", "x": "1 2"});
    let Authenticated::Payload(p) = authenticate(true, &providers, Some(&other)) else {
        panic!("refused");
    };
    assert_eq!(p.get("x"), Some(&json!(["1", "2"])));
    assert_eq!(
        authenticate(true, &providers[..2], Some(&other)),
        Authenticated::Rejected("Jwt issuer is not configured")
    );
    assert_eq!(
        authenticate(true, &[], Some(&other)),
        Authenticated::Anonymous
    );
    assert_eq!(
        authenticate(true, &providers, None),
        Authenticated::Anonymous
    );
}

#[test]
fn a_workload_with_jwt_authn_needs_the_payload_even_when_no_rule_tests_it() {
    let e = engine(&[two_issuers()]);
    let view = e.build_view("shop", &[("app".into(), "api".into())]);
    assert!(e.needs(&view, Protocol::Http).jwt, "a token may be refused");
    assert!(!e.needs(&view, Protocol::Tcp).jwt, "no jwt_authn on TCP");
    let other = e.build_view("shop", &[("app".into(), "cart".into())]);
    assert!(!e.needs(&other, Protocol::Http).jwt);
}
