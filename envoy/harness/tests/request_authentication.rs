//! RequestAuthentication and the claims `jwt_authn` normalises, in the real Envoy.
//!
//! One policy set — RequestAuthentications for three workloads of `shop` and a mesh-wide
//! AuthorizationPolicy whose rules test claims — runs in one Envoy for four workloads, each
//! twice: the `jwt_authn` filter Istio generates from the RequestAuthentications that apply
//! (`policy_applier.go`: providers `origins-<i>` sorted by issuer, payload in metadata key
//! `payload`, `normalize_payload_in_metadata.space_delimited_claims` = the rule's claims plus
//! `permission` and `scope`, the "provider or no token" requirements) followed once by the RBAC
//! filter Istio generates for the AuthorizationPolicy (metadata matchers as in the golden
//! files) and once by the Palisade plugin. The workloads:
//!
//! - `shop/api`: issuers A (splits `roles` and `realm.roles` besides the defaults) and B
//!   (requires audience `shop`), Istio's multi-provider requirement;
//! - `shop/solo`: one issuer (B), Istio's single-provider requirement;
//! - `billing/api`: no RequestAuthentication applies there, so Istio writes no `jwt_authn` and
//!   no payload reaches RBAC or the plugin;
//! - `shop/twin`: two rules for issuer A splitting different claims (the first provider's
//!   normalisation is the one that reaches RBAC).
//!
//! Every probe carries an HS256 token (or none) whose raw payload is also the engine request's
//! `jwt`. The engine must answer as RBAC does (200, 403, or 401 when `jwt_authn` refuses the
//! token; 403 for audiences), the plugin must answer as RBAC does, and RBAC's answers are also
//! written down by hand (the independent anchor).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::Path;

use palisade_engine::authn::rejection_status;
use palisade_engine::{Engine, Options, Request, SourceFile, Step, compile, load};
use palisade_envoy_harness::bootstrap::{EchoServer, ListenerKind, ListenerSpec, bootstrap};
use palisade_envoy_harness::certs::Pki;
use palisade_envoy_harness::client::{HttpRequest, Transport, send_http};
use palisade_envoy_harness::compare::listen_address;
use palisade_envoy_harness::envoy::{EnvoyProcess, find_or_install_envoy, validate_config};
use palisade_envoy_harness::jwt::{EXPIRY, jwks, mint};
use palisade_envoy_harness::plugin::{build_plugin, http_filter};
use serde_json::{Value, json};

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

const A: &str = "https://a.example";
const B: &str = "https://b.example";

/// The policies, as a user writes them (the engine and the plugin read this text).
fn policies() -> String {
    let keys = jwks().to_string();
    format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: issuers, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  jwtRules:
  - issuer: {B}
    audiences: [shop]
    jwks: '{keys}'
  - issuer: {A}
    jwks: '{keys}'
    spaceDelimitedClaims: [roles, realm.roles]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: solo, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: solo}}}}
  jwtRules:
  - issuer: {B}
    audiences: [shop]
    jwks: '{keys}'
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: twin, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: twin}}}}
  jwtRules:
  - issuer: {A}
    jwks: '{keys}'
    spaceDelimitedClaims: [roles]
  - issuer: {A}
    jwks: '{keys}'
    spaceDelimitedClaims: [realm.roles]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: claims, namespace: istio-system}}
spec:
  rules:
  - to: [{{operation: {{paths: [/scope]}}}}]
    when: [{{key: 'request.auth.claims[scope]', values: [write]}}]
  - to: [{{operation: {{paths: [/permission]}}}}]
    when: [{{key: 'request.auth.claims[permission]', values: ['orders:refund']}}]
  - to: [{{operation: {{paths: [/roles]}}}}]
    when: [{{key: 'request.auth.claims[roles]', values: [ops]}}]
  - to: [{{operation: {{paths: [/realm-dot]}}}}]
    when: [{{key: 'request.auth.claims[realm.roles]', values: [auditor]}}]
  - to: [{{operation: {{paths: [/realm-nested]}}}}]
    when: [{{key: 'request.auth.claims[realm][roles]', values: [auditor]}}]
  - from: [{{source: {{notRequestPrincipals: ['*']}}}}]
    to: [{{operation: {{paths: [/open]}}}}]
"
    )
}

/// The `jwt_authn` filter Istio generates from a RequestAuthentication above: for `shop/api`
/// (`two`) providers sorted by issuer (A is `origins-0`, B `origins-1`) and, for more than one
/// provider, `requires_any: [origins-0, origins-1, requires_all: [any(origins-i,
/// allow_missing)...]]`; for `shop/solo` the one provider B and `any(origins-0, allow_missing)`.
fn istio_jwt_authn(jwt: Jwt) -> Value {
    let provider = |issuer: &str, audiences: &[&str], extra: &[&str]| {
        let mut claims: Vec<&str> = extra.to_vec();
        claims.extend(["permission", "scope"]);
        claims.sort_unstable();
        claims.dedup();
        let mut p = json!({
            "issuer": issuer,
            "local_jwks": {"inline_string": jwks().to_string()},
            "forward": false,
            "payload_in_metadata": "payload",
            "normalize_payload_in_metadata": {"space_delimited_claims": claims},
        });
        if !audiences.is_empty() {
            p["audiences"] = json!(audiences);
        }
        p
    };
    let either = |name: &str| json!({"requires_any": {"requirements": [{"provider_name": name}, {"allow_missing": {}}]}});
    // One provider: `{origins-0 or allow_missing}`; several: the OR above.
    let several = json!({"requires_any": {"requirements": [
        {"provider_name": "origins-0"},
        {"provider_name": "origins-1"},
        {"requires_all": {"requirements": [either("origins-0"), either("origins-1")]}},
    ]}});
    let (providers, requires) = match jwt {
        Jwt::TwoProviders => (
            json!({
                "origins-0": provider(A, &[], &["roles", "realm.roles"]),
                "origins-1": provider(B, &["shop"], &[]),
            }),
            several,
        ),
        Jwt::OneProvider => (
            json!({"origins-0": provider(B, &["shop"], &[])}),
            either("origins-0"),
        ),
        Jwt::SameIssuerTwice => (
            json!({
                "origins-0": provider(A, &[], &["roles"]),
                "origins-1": provider(A, &[], &["realm.roles"]),
            }),
            several,
        ),
        Jwt::None => return Value::Null,
    };
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": providers,
            "rules": [{"match": {"prefix": "/"}, "requires": requires}],
            "bypass_cors_preflight": true,
        },
    })
}

/// The RBAC filter Istio generates for the AuthorizationPolicy (matchers as in the golden
/// files, each value list of one: a claim is a list-or-string metadata matcher under `payload`; `requestPrincipals:
/// ["*"]` is `iss` and `sub` both non-empty).
fn istio_rbac() -> Value {
    let md = |path: &[&str], value: Value| {
        let mut p = vec![json!({"key": "payload"})];
        p.extend(path.iter().map(|k| json!({"key": k})));
        json!({"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": p, "value": value}})
    };
    let claim = |path: &[&str], v: &str| {
        md(
            path,
            json!({"orMatch": {"valueMatchers": [
                {"listMatch": {"oneOf": {"stringMatch": {"exact": v}}}},
                {"stringMatch": {"exact": v}},
            ]}}),
        )
    };
    let path = |p: &str| {
        json!([{"andRules": {"rules": [{"orRules": {"rules": [
            {"urlPath": {"path": {"exact": p}}},
        ]}}]}}])
    };
    let rule = |p: &str, principal: Value| json!({"permissions": path(p), "principals": [{"andIds": {"ids": [principal]}}]});
    let any_token = json!({"andIds": {"ids": [
        md(&["iss"], json!({"stringMatch": {"safeRegex": {"regex": ".+"}}})),
        md(&["sub"], json!({"stringMatch": {"safeRegex": {"regex": ".+"}}})),
    ]}});
    let id = |i: usize| format!("ns[istio-system]-policy[claims]-rule[{i}]");
    let mut policies = serde_json::Map::new();
    policies.insert(id(0), rule("/scope", claim(&["scope"], "write")));
    policies.insert(
        id(1),
        rule("/permission", claim(&["permission"], "orders:refund")),
    );
    policies.insert(id(2), rule("/roles", claim(&["roles"], "ops")));
    policies.insert(
        id(3),
        rule("/realm-dot", claim(&["realm.roles"], "auditor")),
    );
    policies.insert(
        id(4),
        rule("/realm-nested", claim(&["realm", "roles"], "auditor")),
    );
    policies.insert(
        id(5),
        rule("/open", json!({"notId": {"orIds": {"ids": [any_token]}}})),
    );
    json!({"name": "envoy.filters.http.rbac", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"policies": policies},
    }})
}

/// The bootstrap's HTTP listeners start with the harness's own `jwt_authn`: replace it with
/// Istio's, or take it out where no RequestAuthentication applies.
fn set_jwt_authn(config: &mut Value, listener: &str, filter: Option<Value>) {
    let listeners = config["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap();
    let l = listeners
        .iter_mut()
        .find(|l| l["name"] == listener)
        .unwrap();
    for chain in l["filter_chains"].as_array_mut().unwrap() {
        let filters = chain["filters"][0]["typed_config"]["http_filters"]
            .as_array_mut()
            .unwrap();
        assert_eq!(filters[0]["name"], "envoy.filters.http.jwt_authn");
        match &filter {
            Some(f) => filters[0] = f.clone(),
            None => {
                filters.remove(0);
            }
        }
    }
}

/// The three workloads: namespace, `app` label, and which `jwt_authn` Istio gives it.
const CONTEXTS: [(&str, &str, Jwt); 4] = [
    ("shop", "api", Jwt::TwoProviders),
    ("shop", "solo", Jwt::OneProvider),
    ("billing", "api", Jwt::None),
    ("shop", "twin", Jwt::SameIssuerTwice),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jwt {
    /// `shop/api`: issuers A (splits `roles`, `realm.roles`) and B (audience `shop`).
    TwoProviders,
    /// `shop/solo`: issuer B only.
    OneProvider,
    /// `billing/api`: no RequestAuthentication, no `jwt_authn`.
    None,
    /// `shop/twin`: two rules for issuer A, the first splitting `roles`, the second
    /// `realm.roles`: the first provider's normalisation is what reaches RBAC.
    SameIssuerTwice,
}

/// One probe: a path and the token's payload (`None`: no token), with the answers RBAC gives
/// on `shop/api`, `shop/solo`, `billing/api` and `shop/twin`, written by hand.
struct Probe {
    name: &'static str,
    path: &'static str,
    payload: Option<Value>,
    expect: [u16; 4],
}

fn probes() -> Vec<Probe> {
    let with = |base: Value, claims: Value| {
        let mut p = base;
        p.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        Some(p)
    };
    let a = |claims: Value| with(json!({"iss": A, "sub": "user", "exp": EXPIRY}), claims);
    let b = |claims: Value| {
        with(
            json!({"iss": B, "sub": "user", "aud": "shop", "exp": EXPIRY}),
            claims,
        )
    };
    let p = |name, path, payload, expect| Probe {
        name,
        path,
        payload,
        expect,
    };
    vec![
        p("no token", "/scope", None, [403, 403, 403, 403]),
        p(
            "a space-delimited scope is split",
            "/scope",
            a(json!({"scope": "read write"})),
            [200, 401, 403, 200],
        ),
        p(
            "a scope without the word",
            "/scope",
            a(json!({"scope": "read"})),
            [403, 401, 403, 403],
        ),
        p(
            "a scope that is a list",
            "/scope",
            a(json!({"scope": ["read", "write"]})),
            [200, 401, 403, 200],
        ),
        p(
            "a list element with a space is not split",
            "/scope",
            a(json!({"scope": ["read write"]})),
            [403, 401, 403, 403],
        ),
        p(
            "several spaces leave no empty word",
            "/scope",
            a(json!({"scope": "  read   write  "})),
            [200, 401, 403, 200],
        ),
        p(
            "a scope of spaces only",
            "/scope",
            a(json!({"scope": "   "})),
            [403, 401, 403, 403],
        ),
        p(
            "a tab is not a separator",
            "/scope",
            a(json!({"scope": "read\twrite"})),
            [403, 401, 403, 403],
        ),
        p(
            "issuer B's scope is split too",
            "/scope",
            b(json!({"scope": "write admin"})),
            [200, 200, 403, 401],
        ),
        p(
            "permission is split",
            "/permission",
            b(json!({"permission": "orders:read orders:refund"})),
            [200, 200, 403, 401],
        ),
        p(
            "issuer A's own claim is split",
            "/roles",
            a(json!({"roles": "admin ops"})),
            [200, 401, 403, 200],
        ),
        p(
            "issuer A's claim is not split for issuer B",
            "/roles",
            b(json!({"roles": "admin ops"})),
            [403, 403, 403, 401],
        ),
        p(
            "issuer B's roles as a list",
            "/roles",
            b(json!({"roles": ["admin", "ops"]})),
            [200, 200, 403, 401],
        ),
        p(
            "issuer B's one-word roles match whole",
            "/roles",
            b(json!({"roles": "ops"})),
            [200, 200, 403, 401],
        ),
        p(
            "a top-level claim named with a dot is split",
            "/realm-dot",
            a(json!({"realm.roles": "viewer auditor"})),
            [200, 401, 403, 403],
        ),
        p(
            "a dotted claim is not split for issuer B",
            "/realm-dot",
            b(json!({"realm.roles": "viewer auditor"})),
            [403, 403, 403, 401],
        ),
        p(
            "a nested claim is not split",
            "/realm-nested",
            a(json!({"realm": {"roles": "viewer auditor"}})),
            [403, 401, 403, 403],
        ),
        p(
            "a nested one-word claim matches",
            "/realm-nested",
            a(json!({"realm": {"roles": "auditor"}})),
            [200, 401, 403, 200],
        ),
        p(
            "an unknown issuer",
            "/scope",
            Some(
                json!({"iss": "https://c.example", "sub": "user", "scope": "write", "exp": EXPIRY}),
            ),
            [401, 401, 403, 401],
        ),
        p(
            "an audience issuer B does not accept (jwt_authn answers 403)",
            "/scope",
            b(json!({"aud": "other", "scope": "write"})),
            [403, 403, 403, 401],
        ),
        p(
            "an audience issuer B does not accept, where no token is wanted",
            "/open",
            b(json!({"aud": "other"})),
            [403, 403, 200, 401],
        ),
        p(
            "a matching scope on another path",
            "/roles",
            a(json!({"scope": "write"})),
            [403, 401, 403, 403],
        ),
        p(
            "no token where none is wanted",
            "/open",
            None,
            [200, 200, 200, 200],
        ),
        p(
            "a token where none is wanted",
            "/open",
            b(json!({})),
            [403, 403, 200, 401],
        ),
    ]
}

fn engine_code(engine: &Engine, (namespace, app): (&str, &str), probe: &Probe) -> u16 {
    let mut request: Request = serde_json::from_value(json!({
        "destination": {"port": 8080, "workload": {"namespace": namespace, "labels": {"app": app}}},
        "http": {"method": "GET", "host": "api", "path": probe.path},
    }))
    .unwrap();
    request.jwt.clone_from(&probe.payload);
    let d = engine.decide(&request);
    match (d.allowed(), d.step) {
        (true, _) => 200,
        (false, Step::JwtRejected) => {
            u16::try_from(rejection_status(&d.errors[0].to_string())).unwrap()
        }
        (false, _) => 403,
    }
}

#[test]
fn envoys_jwt_authn_and_rbac_agree_with_the_engine_and_the_plugin_on_normalised_claims() {
    let envoy = find_or_install_envoy(repo_root()).unwrap();
    let wasm = build_plugin(repo_root()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let text = policies();
    let engine = compile(
        &load(&[SourceFile::new("policies.yaml", text.as_str())]).unwrap(),
        &Options::default(),
    )
    .unwrap();

    // Per context two listeners, RBAC then the plugin, on ports 15301.. in order.
    let addr = listen_address();
    let mut listeners = Vec::new();
    for (i, (ns, app, _)) in CONTEXTS.iter().enumerate() {
        let port = 15301 + 2 * u16::try_from(i).unwrap();
        let config = json!({"policy": text, "workload": {"namespace": ns, "labels": {"app": app}}});
        listeners.push(ListenerSpec {
            name: format!("{ns}_{app}_rbac"),
            address: addr,
            port,
            kind: ListenerKind::Http(vec![istio_rbac()]),
        });
        listeners.push(ListenerSpec {
            name: format!("{ns}_{app}_plugin"),
            address: addr,
            port: port + 1,
            kind: ListenerKind::Http(vec![http_filter(&wasm, &config)]),
        });
    }
    let echo = EchoServer::start().unwrap();
    let mut config = bootstrap(&listeners, &pki, echo.port);
    for (ns, app, jwt) in CONTEXTS {
        let filter = (jwt != Jwt::None).then(|| istio_jwt_authn(jwt));
        for side in ["rbac", "plugin"] {
            set_jwt_authn(&mut config, &format!("{ns}_{app}_{side}"), filter.clone());
        }
    }
    let cfg = dir.path().join("envoy.json");
    std::fs::write(&cfg, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    validate_config(&envoy, &cfg).unwrap();
    let proc = EnvoyProcess::start(&envoy, &cfg, dir.path()).unwrap();

    let send = |port: u16, probe: &Probe| {
        let headers = probe
            .payload
            .as_ref()
            .map(|p| {
                vec![(
                    "authorization".to_string(),
                    format!("Bearer {}", mint(p).unwrap()),
                )]
            })
            .unwrap_or_default();
        let req = HttpRequest {
            method: "GET".into(),
            host: "api".into(),
            path: probe.path.into(),
            headers,
        };
        send_http(
            None,
            SocketAddr::from((addr, port)),
            &Transport::Plain,
            &req,
        )
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", probe.name, proc.log_tail()))
    };

    let probes = probes();
    let mut differences = Vec::new();
    let mut compared = 0;
    for probe in &probes {
        for (i, (ns, app, _)) in CONTEXTS.iter().enumerate() {
            let port = 15301 + 2 * u16::try_from(i).unwrap();
            let rbac = send(port, probe);
            let plugin = send(port + 1, probe);
            let engine = engine_code(&engine, (ns, app), probe);
            let checks = [
                ("RBAC vs the hand-written answer", rbac, probe.expect[i]),
                ("plugin vs RBAC", plugin, rbac),
                ("engine vs RBAC", engine, rbac),
            ];
            for (what, got, want) in checks {
                compared += 1;
                if got != want {
                    differences.push(format!(
                        "{}: {ns}/{app}: {what}: {got} != {want}",
                        probe.name
                    ));
                }
            }
        }
    }
    println!(
        "{} probes x {} workloads, {compared} comparisons, {} differences",
        probes.len(),
        CONTEXTS.len(),
        differences.len()
    );
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert_eq!((probes.len(), compared), (24, 24 * 4 * 3));
    // Every answer occurs: allowed, denied by RBAC, refused by jwt_authn.
    for code in [200, 401, 403] {
        assert!(
            probes.iter().any(|p| p.expect.contains(&code)),
            "no {code} expected"
        );
    }
}
