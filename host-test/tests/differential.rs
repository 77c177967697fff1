//! Differential test: random AuthorizationPolicies (a small grammar over every field) and
//! random requests, decided by the proxy-wasm plugin's `.wasm` in the test host and by the
//! native engine; any difference in verdict, deciding rule, step, dry-run results or audit
//! fails with the minimised case.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use palisade_corpus::{Decider, Native};
use palisade_engine::{Options, Request, SourceFile};
use palisade_host_test::ProxyWasmDecider;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/shop/sa/frontend",
    "cluster.local/ns/pay/sa/api",
    "*",
    "cluster.local/ns/shop/*",
    "*/sa/api",
];
const NAMESPACES: &[&str] = &["shop", "pay", "*", "pa*", "*op"];
const IPS: &[&str] = &["10.1.0.0/16", "10.1.2.3", "192.168.0.0/24", "fd00::/8"];
const HOSTS: &[&str] = &[
    "cart",
    "cart.shop.svc.cluster.local",
    "*.example.com",
    "api.*",
    "*",
];
const PORTS: &[&str] = &["8080", "9090", "443"];
const METHODS: &[&str] = &["GET", "POST", "DELETE", "*"];
const PATHS: &[&str] = &["/api/*", "/admin", "*/health", "/", "*", "/api/{*}/items"];
const REQUEST_PRINCIPALS: &[&str] = &[
    "https://issuer.example/alice",
    "*",
    "https://issuer.example/*",
    "*/bob",
];
const WHEN_KEYS: &[(&str, &[&str])] = &[
    ("request.headers[x-env]", &["prod", "dev", "pr*"]),
    ("source.ip", &["10.1.0.0/16", "192.168.0.7"]),
    ("remote.ip", &["203.0.113.0/24", "10.1.2.3"]),
    ("source.namespace", &["shop", "pay"]),
    (
        "source.principal",
        &["cluster.local/ns/shop/sa/frontend", "*"],
    ),
    ("destination.port", &["8080", "9090"]),
    ("connection.sni", &["cart.shop", "*.shop"]),
    ("request.auth.principal", &["https://issuer.example/alice"]),
    ("request.auth.audiences", &["shop", "pay"]),
    ("request.auth.presenter", &["web"]),
    ("request.auth.claims[groups]", &["admins", "users"]),
];

/// A list field: `name: [values]`, from a pool.
fn field(
    names: &'static [&'static str],
    pool: &'static [&'static str],
) -> impl Strategy<Value = Option<String>> {
    (
        prop::sample::select(names),
        prop::sample::subsequence(pool, 1..=2),
    )
        .prop_map(|(name, values)| {
            let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
            Some(format!("{name}: [{}]", quoted.join(", ")))
        })
}

fn source() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            field(&["principals", "notPrincipals"], PRINCIPALS),
            field(&["namespaces", "notNamespaces"], NAMESPACES),
            field(
                &[
                    "ipBlocks",
                    "notIpBlocks",
                    "remoteIpBlocks",
                    "notRemoteIpBlocks"
                ],
                IPS
            ),
            field(
                &["requestPrincipals", "notRequestPrincipals"],
                REQUEST_PRINCIPALS
            ),
        ],
        1..=2,
    )
    .prop_map(|fs| {
        format!(
            "{{source: {{{}}}}}",
            fs.into_iter().flatten().collect::<Vec<_>>().join(", ")
        )
    })
}

fn operation() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            field(&["hosts", "notHosts"], HOSTS),
            field(&["ports", "notPorts"], PORTS),
            field(&["methods", "notMethods"], METHODS),
            field(&["paths", "notPaths"], PATHS),
        ],
        1..=2,
    )
    .prop_map(|fs| {
        format!(
            "{{operation: {{{}}}}}",
            fs.into_iter().flatten().collect::<Vec<_>>().join(", ")
        )
    })
}

fn condition() -> impl Strategy<Value = String> {
    (
        prop::sample::select(WHEN_KEYS),
        prop::bool::ANY,
        any::<prop::sample::Index>(),
    )
        .prop_map(|((key, values), not, i)| {
            let v = values[i.index(values.len())];
            let kind = if not { "notValues" } else { "values" };
            format!("{{key: {key:?}, {kind}: [{v:?}]}}")
        })
}

fn rule() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop::collection::vec(source(), 1..=2)),
        prop::option::of(prop::collection::vec(operation(), 1..=2)),
        prop::option::of(prop::collection::vec(condition(), 1..=2)),
    )
        .prop_map(|(from, to, when)| {
            let mut parts = Vec::new();
            if let Some(f) = from {
                parts.push(format!("from: [{}]", f.join(", ")));
            }
            if let Some(t) = to {
                parts.push(format!("to: [{}]", t.join(", ")));
            }
            if let Some(w) = when {
                parts.push(format!("when: [{}]", w.join(", ")));
            }
            format!("{{{}}}", parts.join(", "))
        })
}

fn policy(index: usize) -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["ALLOW", "DENY", "AUDIT"][..]),
        prop::sample::select(&["", "app: a", "app: b"][..]),
        prop::bool::weighted(0.2),
        prop::sample::select(&["shop", "istio-system"][..]),
        prop::collection::vec(rule(), 0..=3),
    )
        .prop_map(move |(action, selector, dry_run, ns, rules)| {
            let annotations = if dry_run {
                ", annotations: {\"istio.io/dry-run\": \"true\"}"
            } else {
                ""
            };
            let selector = if selector.is_empty() {
                String::new()
            } else {
                format!("  selector: {{matchLabels: {{{selector}}}}}\n")
            };
            let rules = if rules.is_empty() && action != "ALLOW" {
                "  rules: [{}]\n".to_string()
            } else {
                format!("  rules: [{}]\n", rules.join(", "))
            };
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{index}, namespace: {ns}{annotations}}}\nspec:\n  action: {action}\n{selector}{rules}"
            )
        })
}

fn policies() -> impl Strategy<Value = Vec<String>> {
    (1usize..=3).prop_flat_map(|n| (0..n).map(policy).collect::<Vec<_>>())
}

fn request() -> impl Strategy<Value = Request> {
    let opt = |pool: &'static [&'static str]| prop::option::of(prop::sample::select(pool));
    (
        (
            prop::bool::weighted(0.2),
            opt(&["spiffe://cluster.local/ns/shop/sa/frontend", "spiffe://cluster.local/ns/pay/sa/api", "spiffe://other.domain/ns/shop/sa/x"]),
            opt(&["10.1.2.3", "10.9.0.1", "192.168.0.7", "fd00::5"]),
            opt(&["203.0.113.9", "10.1.2.3"]),
            prop::sample::select(&[8080u16, 9090, 443][..]),
            prop::sample::select(&["a", "b"][..]),
            opt(&["cart.shop", "api.shop"]),
        ),
        (
            prop::sample::select(&["GET", "POST", "DELETE", "get"][..]),
            prop::sample::select(&["/", "/api/v1/items", "/admin", "/x/health", "/api//admin", "/api/%2e%2e/admin?x=1"][..]),
            prop::sample::select(&["cart", "Cart.Shop.Svc.Cluster.Local", "www.example.com", "api.v2", "cart:8080"][..]),
            opt(&["prod", "dev", "preview"]),
            prop::option::of(prop::sample::select(&[
                r#"{"iss": "https://issuer.example", "sub": "alice", "aud": "shop", "azp": "web", "groups": ["admins"]}"#,
                r#"{"iss": "https://other", "sub": "bob", "aud": ["pay", "shop"], "groups": "users"}"#,
                r#"{"iss": "https://issuer.example", "sub": "carol"}"#,
            ][..])),
        ),
    )
        .prop_map(|((tcp, principal, ip, remote, port, app, sni), (method, path, host, env, jwt))| {
            let mut r = serde_json::json!({
                "protocol": if tcp { "tcp" } else { "http" },
                "destination": {"ip": "10.1.0.20", "port": port, "workload": {"namespace": "shop", "labels": {"app": app}}},
                "source": {"port": 40000},
                "http": {"method": method, "path": path, "host": host, "headers": {}},
            });
            if let Some(p) = principal {
                r["source"]["principal"] = p.into();
            }
            if let Some(ip) = ip {
                r["source"]["ip"] = ip.into();
            }
            if let Some(remote) = remote {
                r["remoteIp"] = remote.into();
            }
            if let Some(sni) = sni {
                r["sni"] = sni.into();
            }
            if let Some(env) = env {
                r["http"]["headers"]["x-env"] = env.into();
            }
            if let Some(jwt) = jwt {
                r["jwt"] = serde_json::from_str::<serde_json::Value>(jwt).unwrap();
            }
            serde_json::from_value(r).unwrap()
        })
}

fn options() -> impl Strategy<Value = Options> {
    (
        prop::bool::weighted(0.3),
        prop::sample::select(&["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"][..]),
    )
        .prop_map(|(alias, norm)| {
            let mut o: Options =
                serde_json::from_value(serde_json::json!({"pathNormalization": norm})).unwrap();
            if alias {
                o.trust_domain_aliases = vec!["other.domain".into()];
            }
            o
        })
}

/// What both must agree on.
fn summary(d: &palisade_engine::Decision) -> String {
    format!(
        "verdict {}, rule {:?}, step {:?}, audit {:?}, shadow {:?}",
        d.verdict,
        d.rule.as_ref().map(|r| &r.id),
        d.step,
        d.audit.as_ref().map(|r| &r.id),
        d.shadow
            .iter()
            .map(|s| (
                s.action.clone(),
                s.verdict,
                s.matched.as_ref().map(|r| r.id.clone())
            ))
            .collect::<Vec<_>>()
    )
}

#[test]
fn the_guest_decides_random_policies_and_requests_like_the_native_engine() {
    let host = common::host();
    let mut runner = proptest::test_runner::TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let compared = std::cell::Cell::new(0usize);
    let skipped = std::cell::Cell::new(0usize);
    let result = runner.run(
        &(
            policies(),
            options(),
            prop::collection::vec(request(), 1..=4),
        ),
        |(policies, options, requests)| {
            let files: Vec<SourceFile> = policies
                .iter()
                .enumerate()
                .map(|(i, p)| SourceFile::new(format!("p{i}.yaml"), p.clone()))
                .collect();
            let mut native = Native::default();
            if native.load(&files, &options).is_err() {
                // Not a valid policy set: nothing to compare (the grammar rarely makes one).
                return Ok(());
            }
            let mut guest = ProxyWasmDecider::new(host.clone());
            guest.load(&files, &options).map_err(TestCaseError::fail)?;
            for request in &requests {
                if guest.cannot_express(request).is_some() {
                    skipped.set(skipped.get() + 1);
                    continue;
                }
                let want = native.decide(request).map_err(TestCaseError::fail)?;
                let got = guest.decide(request).map_err(|e| {
                    TestCaseError::fail(format!(
                        "guest failed on {}: {e}",
                        serde_json::to_string(request).unwrap()
                    ))
                })?;
                compared.set(compared.get() + 1);
                prop_assert_eq!(
                    summary(&got),
                    summary(&want),
                    "request {}",
                    serde_json::to_string(request).unwrap()
                );
            }
            Ok(())
        },
    );
    println!(
        "differential: 128 cases, {} requests compared ({} a proxy cannot see, skipped) in {:?}",
        compared.get(),
        skipped.get(),
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("the guest and the native engine disagree: {e}");
    }
}
