//! Differential test: random AuthorizationPolicies (a small grammar over every field) and
//! random requests, decided by the proxy-wasm plugin's `.wasm` in the test host and by the
//! native engine; any difference in verdict, deciding rule, step, dry-run results or audit
//! fails with the minimised case.
//!
//! The pools reach past one header with one value and IPv4-only remote addresses: two headers
//! tested by `when` (`x-env`, `x-tenant`) each sent with zero, one or several values (a
//! repeated header) or a comma-joined single value; IPv4, IPv6 and IPv4-mapped IPv6 peers and
//! original clients, IPv6 CIDRs in `ipBlocks`/`remoteIpBlocks`. The run is seeded
//! ([`SEED`]), so the number of requests compared is exact and asserted.
//!
//! The pools above alone did not catch a plugin that reads only the first value of a repeated
//! header (issue 15's broken builds): a second property makes header conditions decide
//! requests that repeat the header, and counts the requests a first-value reading would decide
//! otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use palisade_corpus::{Decider, Native};
use palisade_engine::{Options, Request, SourceFile};
use palisade_wasm_host::ProxyWasmDecider;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError};

/// The run's seed: the same 128 policy sets and requests every time, so that the counts
/// asserted at the end are exact. (Change it to explore; then update the counts.)
const SEED: u64 = 15;

const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/shop/sa/frontend",
    "cluster.local/ns/pay/sa/api",
    "*",
    "cluster.local/ns/shop/*",
    "*/sa/api",
];
const NAMESPACES: &[&str] = &["shop", "pay", "*", "pa*", "*op"];
const IPS: &[&str] = &[
    "10.1.0.0/16",
    "10.1.2.3",
    "192.168.0.0/24",
    "fd00::/8",
    "2001:db8::/32",
    "2001:db8::7",
    "203.0.113.0/24",
];
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
    (
        "request.headers[x-env]",
        &["prod", "dev", "pr*", "*", "*ev"],
    ),
    ("request.headers[x-tenant]", &["t-1", "t-*", "*", "t-1,t-2"]),
    (
        "source.ip",
        &["10.1.0.0/16", "192.168.0.7", "fd00::/8", "2001:db8::5"],
    ),
    (
        "remote.ip",
        &["203.0.113.0/24", "10.1.2.3", "2001:db8::/32", "fd00::5"],
    ),
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
        any::<prop::sample::Index>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(|((key, values), not, i, j, two)| {
            let v = values[i.index(values.len())];
            let w = values[j.index(values.len())];
            let kind = if not { "notValues" } else { "values" };
            if two && v != w {
                format!("{{key: {key:?}, {kind}: [{v:?}, {w:?}]}}")
            } else {
                format!("{{key: {key:?}, {kind}: [{v:?}]}}")
            }
        })
}

/// A header's values on the wire: absent, one, repeated, or one comma-joined value.
fn header_values(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        Just(Vec::new()),
        prop::sample::select(pool).prop_map(|v| vec![v.to_string()]),
        prop::sample::subsequence(pool, 2..=3)
            .prop_map(|vs| vs.iter().map(|v| (*v).to_string()).collect()),
        prop::sample::subsequence(pool, 2..=2).prop_map(|vs| vec![vs.join(",")]),
    ]
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
            opt(&["10.1.2.3", "10.9.0.1", "192.168.0.7", "fd00::5", "2001:db8::5", "::ffff:10.1.2.3", "::1"]),
            opt(&["203.0.113.9", "10.1.2.3", "2001:db8::9", "fd00::5", "::ffff:203.0.113.9"]),
            prop::sample::select(&[8080u16, 9090, 443][..]),
            prop::sample::select(&["a", "b"][..]),
            opt(&["cart.shop", "api.shop"]),
        ),
        (
            prop::sample::select(&["GET", "POST", "DELETE", "get"][..]),
            prop::sample::select(&["/", "/api/v1/items", "/admin", "/x/health", "/api//admin", "/api/%2e%2e/admin?x=1"][..]),
            prop::sample::select(&["cart", "Cart.Shop.Svc.Cluster.Local", "www.example.com", "api.v2", "cart:8080"][..]),
            (header_values(&["prod", "dev", "preview", "ev"]), header_values(&["t-1", "t-2", "t-3"])),
            prop::option::of(prop::sample::select(&[
                r#"{"iss": "https://issuer.example", "sub": "alice", "aud": "shop", "azp": "web", "groups": ["admins"]}"#,
                r#"{"iss": "https://other", "sub": "bob", "aud": ["pay", "shop"], "groups": "users"}"#,
                r#"{"iss": "https://issuer.example", "sub": "carol"}"#,
            ][..])),
        ),
    )
        .prop_map(|((tcp, principal, ip, remote, port, app, sni), (method, path, host, (env, tenant), jwt))| {
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
            if !env.is_empty() {
                r["http"]["headers"]["x-env"] = env.into();
            }
            if !tenant.is_empty() {
                r["http"]["headers"]["x-tenant"] = tenant.into();
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
        rng_seed: RngSeed::Fixed(SEED),
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let compared = std::cell::Cell::new(0usize);
    let skipped = std::cell::Cell::new(0usize);
    let invalid = std::cell::Cell::new(0usize);
    // Compared requests that carry a repeated header, an IPv6 peer, an IPv6 original client.
    let repeated = std::cell::Cell::new(0usize);
    let v6_peer = std::cell::Cell::new(0usize);
    let v6_remote = std::cell::Cell::new(0usize);
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
                invalid.set(invalid.get() + 1);
                return Ok(());
            }
            let mut guest = ProxyWasmDecider::new(host.clone());
            guest
                .load(&files, &options)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for request in &requests {
                if guest.cannot_express(request).is_some() {
                    skipped.set(skipped.get() + 1);
                    continue;
                }
                let want = native
                    .decide(request)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let got = guest.decide(request).map_err(|e| {
                    TestCaseError::fail(format!(
                        "guest failed on {}: {e}",
                        serde_json::to_string(request).unwrap()
                    ))
                })?;
                compared.set(compared.get() + 1);
                let headers = request.http.as_ref().map(|h| &h.headers);
                if headers.is_some_and(|h| h.values().any(|v| v.len() > 1)) {
                    repeated.set(repeated.get() + 1);
                }
                if request.source.ip.is_some_and(|ip| ip.is_ipv6()) {
                    v6_peer.set(v6_peer.get() + 1);
                }
                if request.remote_ip.is_some_and(|ip| ip.is_ipv6()) {
                    v6_remote.set(v6_remote.get() + 1);
                }
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
        "differential: 128 cases ({} invalid policy sets), {} requests compared ({} with a \
         repeated header, {} from an IPv6 peer, {} with an IPv6 original client; {} a proxy \
         cannot see, skipped) in {:?}",
        invalid.get(),
        compared.get(),
        repeated.get(),
        v6_peer.get(),
        v6_remote.get(),
        skipped.get(),
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("the guest and the native engine disagree: {e}");
    }
    // Exact for SEED (measured; the generator and proptest 1.12 fix them): a change in the
    // strategies, the seed, or in what `cannot_express` skips shows here.
    assert_eq!(
        (
            invalid.get(),
            compared.get(),
            repeated.get(),
            v6_peer.get(),
            v6_remote.get(),
            skipped.get()
        ),
        EXPECTED
    );
}

/// (invalid policy sets, compared, with a repeated header, from an IPv6 peer, with an IPv6
/// original client, skipped) for [`SEED`].
const EXPECTED: (usize, usize, usize, usize, usize, usize) = (24, 181, 78, 68, 37, 89);

/// The seed of [`repeated_headers_decide_in_the_guest_as_in_the_native_engine`].
const HEADER_SEED: u64 = 15;

/// The headers [`header_policy`] tests and the patterns it tests them with.
const HEADER_POOLS: &[(&str, &[&str])] = &[
    ("x-env", &["prod", "dev", "pr*", "*ev", "*"]),
    ("x-tenant", &["t-1", "t-*", "*-2", "t-1,t-2"]),
];

/// One policy whose rules test only a request header, with `values` or `notValues` in every
/// form (exact, prefix, suffix, presence, a value with a comma).
fn header_policy() -> impl Strategy<Value = String> {
    let when = (
        prop::sample::select(HEADER_POOLS),
        prop::bool::ANY,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|((name, pool), not, i, j)| {
            let (v, w) = (pool[i.index(pool.len())], pool[j.index(pool.len())]);
            let kind = if not { "notValues" } else { "values" };
            let values = if v == w {
                format!("[{v:?}]")
            } else {
                format!("[{v:?}, {w:?}]")
            };
            format!("{{when: [{{key: \"request.headers[{name}]\", {kind}: {values}}}]}}")
        });
    (
        prop::sample::select(&["ALLOW", "DENY"][..]),
        prop::collection::vec(when, 1..=2),
    )
        .prop_map(|(action, rules)| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: h, namespace: shop}}\nspec:\n  action: {action}\n  rules: [{}]\n",
                rules.join(", ")
            )
        })
}

/// A request sending both headers several times (one to three values, in any order).
fn header_request() -> impl Strategy<Value = Request> {
    let values = |pool: &'static [&'static str]| {
        prop::sample::subsequence(pool, 1..=3)
            .prop_shuffle()
            .prop_map(|v| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>())
    };
    (
        values(&["prod", "dev", "preview", "qa"]),
        values(&["t-1", "t-2", "x-3"]),
    )
        .prop_map(|(env, tenant)| {
            serde_json::from_value(serde_json::json!({
                "protocol": "http",
                "destination": {"ip": "10.1.0.20", "port": 8080, "workload": {"namespace": "shop", "labels": {"app": "a"}}},
                "source": {"ip": "10.1.2.3", "port": 40000},
                "http": {"method": "GET", "path": "/", "host": "cart",
                         "headers": {"x-env": env, "x-tenant": tenant}},
            }))
            .unwrap()
        })
}

/// The main differential above rarely lets a header condition decide a request carrying a
/// repeated header, so a plugin reading only the first value of a header passed it. Here every
/// rule tests only a header, every request sends the headers several times in any order, and
/// the test counts the requests on which reading only the first value would change the
/// native decision: those are the ones that catch such a bug, and their number is exact.
#[test]
fn repeated_headers_decide_in_the_guest_as_in_the_native_engine() {
    let host = common::host();
    let mut runner = proptest::test_runner::TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(HEADER_SEED),
        ..Config::default()
    });
    let compared = std::cell::Cell::new(0usize);
    let repeated = std::cell::Cell::new(0usize);
    let first_value_decides_otherwise = std::cell::Cell::new(0usize);
    let result = runner.run(
        &(
            header_policy(),
            prop::collection::vec(header_request(), 1..=4),
        ),
        |(policy, requests)| {
            let files = vec![SourceFile::new("h.yaml", policy.clone())];
            let options = Options::default();
            let mut native = Native::default();
            native
                .load(&files, &options)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut guest = ProxyWasmDecider::new(host.clone());
            guest
                .load(&files, &options)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for request in &requests {
                let want = native
                    .decide(request)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let got = guest
                    .decide(request)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                compared.set(compared.get() + 1);
                let mut first = request.clone();
                if let Some(h) = first.http.as_mut() {
                    for values in h.headers.values_mut() {
                        values.truncate(1);
                    }
                }
                if request
                    .http
                    .as_ref()
                    .is_some_and(|h| h.headers.values().any(|v| v.len() > 1))
                {
                    repeated.set(repeated.get() + 1);
                }
                let first_only = native
                    .decide(&first)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if summary(&first_only) != summary(&want) {
                    first_value_decides_otherwise.set(first_value_decides_otherwise.get() + 1);
                }
                prop_assert_eq!(
                    summary(&got),
                    summary(&want),
                    "policy {}\nrequest {}",
                    policy,
                    serde_json::to_string(request).unwrap()
                );
            }
            Ok(())
        },
    );
    println!(
        "repeated headers: {} requests compared, {} with a repeated header, {} decided \
         otherwise on the first value alone",
        compared.get(),
        repeated.get(),
        first_value_decides_otherwise.get()
    );
    if let Err(e) = result {
        panic!("the guest and the native engine disagree: {e}");
    }
    assert_eq!(
        (
            compared.get(),
            repeated.get(),
            first_value_decides_otherwise.get()
        ),
        (159, 139, 38),
        "(compared, with a repeated header, decided otherwise on the first value) for HEADER_SEED"
    );
}
