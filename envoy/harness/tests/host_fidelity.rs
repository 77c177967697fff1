//! Host fidelity: the same requests through the real Envoy 1.40 with the plugin and through
//! the wasmtime test host (`palisade-wasm-host`) running the same `.wasm` with the same plugin
//! configuration give the same decisions and the same metric counts.
//!
//! Envoy runs the shop as `tests/shop_e2e.rs` does ([`Shop::start`]). Each request — the twelve
//! `examples/shop/requests` and allow/deny variants, HTTP and TCP — is sent to Envoy, and
//! the engine `Request` Envoy saw (source address and port as the client socket had them,
//! the listener's address and port, the client certificate's URI SAN, the SNI, the headers as
//! they reach the filter, the JWT payload `jwt_authn` verified) runs through the host
//! instance configured with the JSON that listener's filter got. Per request: the same verdict,
//! status and `x-palisade-policy`. Per workload: the host's counters equal the change in
//! Envoy's `palisade_*` counters at `/stats/prometheus` over that workload's requests (Envoy
//! shares one VM and one stats scope across the listeners, so counters are global there).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use palisade_engine::{Endpoint, HttpAttributes, Protocol, Request};
use palisade_envoy_harness::client::{Transport, probe_tcp_from, send_http_from};
use palisade_envoy_harness::jwt::{EXPIRY, mint};
use palisade_envoy_harness::plugin::POLICY_HEADER;
use palisade_envoy_harness::shop::{
    INTERNET, NO_SIDECAR, Shop, expectation, prometheus_name, request, workload_ip,
};
use palisade_wasm_host::{PluginInstance, ProxyWasmHost};
use serde_json::{Value, json};

/// How a client reaches a listener.
#[derive(Clone)]
enum Peer {
    Plain,
    /// TLS with this SNI, no client certificate.
    Tls(&'static str),
    /// Mutual TLS as `spiffe://cluster.local/<identity>` with this SNI.
    Mtls(&'static str, &'static str),
}

/// Method, host, path, headers.
type HttpSpec = (&'static str, &'static str, String, Vec<(String, String)>);

struct Case {
    name: String,
    /// The sample in `examples/shop/requests` this is, if any.
    sample: bool,
    from: Ipv4Addr,
    peer: Peer,
    /// HTTP: method, host, path, headers; TCP when absent.
    http: Option<HttpSpec>,
    /// The verified JWT payload (sent as a bearer token).
    jwt: Option<Value>,
}

fn case(name: &str, sample: bool, from: Ipv4Addr, peer: Peer) -> Case {
    Case {
        name: name.into(),
        sample,
        from,
        peer,
        http: None,
        jwt: None,
    }
}

impl Case {
    fn http(
        mut self,
        method: &'static str,
        host: &'static str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Case {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.http = Some((method, host, path.into(), headers));
        self
    }

    fn jwt(mut self, claims: Value) -> Case {
        self.jwt = Some(claims);
        self
    }
}

/// A workload's listener and its requests.
struct Workload {
    listener: &'static str,
    addr: SocketAddr,
    cases: Vec<Case>,
}

fn ip(name: &str) -> Ipv4Addr {
    workload_ip(name).unwrap()
}

fn workloads(shop: &Shop) -> Vec<Workload> {
    let a = shop.setup.addrs;
    let (internet, no_sidecar) = (Ipv4Addr::from(INTERNET), Ipv4Addr::from(NO_SIDECAR));
    let gw_id = "ns/istio-system/sa/istio-ingressgateway";
    let h = "shop.example.com";
    let cart_sni = "cart.shop.svc.cluster.local";
    let catalog_sni = "catalog.shop.svc.cluster.local";
    let pay_sni = "payments-api.payments.svc.cluster.local";
    let pg_sni = "postgres.data.svc.cluster.local";
    let ph = "payments-api.payments:8443";
    let claims = |scope: &[&str]| {
        json!({
            "iss": "https://auth.shop.example.com", "sub": "user-7",
            "scope": scope, "exp": EXPIRY,
        })
    };
    vec![
        Workload {
            listener: "gateway",
            addr: a.gateway,
            cases: vec![
                case("browse-home", true, internet, Peer::Plain).http("GET", h, "/", &[]),
                case("gateway-debug-denied", true, internet, Peer::Plain).http(
                    "GET",
                    h,
                    "/debug/pprof/heap",
                    &[],
                ),
                case("gateway-unknown-host", true, internet, Peer::Plain).http(
                    "GET",
                    "admin.example.net",
                    "/",
                    &[],
                ),
                case("gateway-product-with-xff", false, internet, Peer::Plain).http(
                    "GET",
                    "www.shop.example.com",
                    "/products/42?ref=ad",
                    &[
                        ("x-forwarded-for", "203.0.113.7, 198.51.100.2"),
                        ("user-agent", "fidelity/1"),
                    ],
                ),
                case("gateway-delete-denied", false, internet, Peer::Plain).http(
                    "DELETE",
                    h,
                    "/",
                    &[],
                ),
                case("gateway-internal-denied", false, internet, Peer::Plain).http(
                    "POST",
                    h,
                    "/internal/reindex",
                    &[],
                ),
            ],
        },
        Workload {
            listener: "cart",
            addr: a.cart,
            cases: vec![
                case(
                    "frontend-adds-to-cart",
                    true,
                    ip("frontend"),
                    Peer::Mtls("ns/shop/sa/frontend", cart_sni),
                )
                .http(
                    "POST",
                    "cart.shop.svc.cluster.local:8080",
                    "/api/cart/u123/items/sku-42",
                    &[
                        ("x-forwarded-for", "203.0.113.9"),
                        ("user-agent", "shop-e2e/1"),
                    ],
                ),
                case("plaintext-to-cart", true, no_sidecar, Peer::Plain).http(
                    "GET",
                    "cart",
                    "/api/cart/u123",
                    &[],
                ),
                case(
                    "mobile-reads-cart",
                    true,
                    ip("ingressgateway"),
                    Peer::Mtls(gw_id, cart_sni),
                )
                .http("GET", "cart", "/api/cart/u7?fields=items", &[])
                .jwt(claims(&["profile", "cart.read"])),
                case(
                    "mobile-without-cart-scope",
                    false,
                    ip("ingressgateway"),
                    Peer::Mtls(gw_id, cart_sni),
                )
                .http("GET", "cart", "/api/cart/u7", &[])
                .jwt(claims(&["profile"])),
                case(
                    "frontend-empties-cart",
                    false,
                    ip("frontend"),
                    Peer::Mtls("ns/shop/sa/frontend", cart_sni),
                )
                .http("DELETE", "cart", "/api/cart/u123", &[]),
                case(
                    "frontend-cart-admin-denied",
                    false,
                    ip("frontend"),
                    Peer::Mtls("ns/shop/sa/frontend", cart_sni),
                )
                .http("GET", "cart", "/admin", &[]),
                case(
                    "tls-without-cert-to-cart",
                    false,
                    no_sidecar,
                    Peer::Tls(cart_sni),
                )
                .http("GET", "cart", "/api/cart/u123", &[]),
            ],
        },
        Workload {
            listener: "catalog",
            addr: a.catalog,
            cases: vec![
                case(
                    "gateway-reads-catalog",
                    true,
                    ip("ingressgateway"),
                    Peer::Mtls(gw_id, catalog_sni),
                )
                .http(
                    "GET",
                    "catalog.shop.svc.cluster.local:9080",
                    "/v1/products?limit=10",
                    &[],
                ),
                case(
                    "frontend-reads-catalog",
                    false,
                    ip("frontend"),
                    Peer::Mtls("ns/shop/sa/frontend", catalog_sni),
                )
                .http("GET", "catalog", "/v1/products/42", &[]),
                case(
                    "catalog-admin-edits-product",
                    false,
                    ip("frontend"),
                    Peer::Mtls("ns/shop/sa/catalog-admin", catalog_sni),
                )
                .http(
                    "POST",
                    "catalog",
                    "/v1/products/9",
                    &[("x-change-ticket", "CHG-1")],
                ),
                case(
                    "catalog-admin-without-ticket",
                    false,
                    ip("frontend"),
                    Peer::Mtls("ns/shop/sa/catalog-admin", catalog_sni),
                )
                .http("PUT", "catalog", "/v1/products/9", &[]),
            ],
        },
        Workload {
            listener: "payments_api",
            addr: a.payments,
            cases: vec![
                case(
                    "cart-charges-payment",
                    true,
                    ip("cart"),
                    Peer::Mtls("ns/shop/sa/cart", pay_sni),
                )
                .http("POST", ph, "/v1/charges", &[("idempotency-key", "c0ffee")]),
                case(
                    "cart-refund-without-ops-token",
                    true,
                    ip("cart"),
                    Peer::Mtls("ns/shop/sa/cart", pay_sni),
                )
                .http("POST", ph, "/v1/refunds", &[("idempotency-key", "r-1")]),
                case(
                    "processor-egress-blocked",
                    true,
                    ip("processor"),
                    Peer::Mtls("ns/payments/sa/processor", pay_sni),
                )
                .http("GET", ph, "/v1/charges/ch_1", &[]),
                case(
                    "cart-charge-without-key",
                    false,
                    ip("cart"),
                    Peer::Mtls("ns/shop/sa/cart", pay_sni),
                )
                .http("POST", ph, "/v1/charges", &[]),
                case("plaintext-to-payments", false, no_sidecar, Peer::Plain).http(
                    "POST",
                    ph,
                    "/v1/charges",
                    &[("idempotency-key", "c0ffee")],
                ),
            ],
        },
        Workload {
            listener: "postgres",
            addr: a.postgres,
            cases: vec![
                case(
                    "processor-to-postgres",
                    true,
                    ip("processor"),
                    Peer::Mtls("ns/payments/sa/processor", pg_sni),
                ),
                case(
                    "cart-to-postgres",
                    true,
                    ip("cart"),
                    Peer::Mtls("ns/shop/sa/cart", pg_sni),
                ),
                case(
                    "catalog-to-postgres",
                    false,
                    ip("catalog"),
                    Peer::Mtls("ns/shop/sa/catalog", pg_sni),
                ),
                case(
                    "plaintext-processor-to-postgres",
                    false,
                    ip("processor"),
                    Peer::Plain,
                ),
            ],
        },
    ]
}

/// What Envoy answered, comparable with the host's outcome.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    allowed: bool,
    /// HTTP: the status (200 from the route when allowed).
    status: Option<u16>,
    /// HTTP: `x-palisade-policy` on a denial.
    policy: Option<String>,
}

/// The request as the Palisade filter in Envoy sees it: the client's socket address, the
/// listener's address, the certificate's URI SAN (mTLS only), the SNI, and the headers
/// after the HTTP connection manager and `jwt_authn` (which verifies and removes the bearer
/// token: `forward: false`, and stores the payload for `request.auth.*`).
fn envoy_request(c: &Case, client: SocketAddr, listener: SocketAddr) -> Request {
    let (principal, sni, tls) = match &c.peer {
        Peer::Plain => (None, None, false),
        Peer::Tls(sni) => (None, Some(sni.to_string()), true),
        Peer::Mtls(id, sni) => (
            Some(format!("spiffe://cluster.local/{id}")),
            Some(sni.to_string()),
            true,
        ),
    };
    let http = c.http.as_ref().map(|(method, host, path, headers)| {
        let mut h: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in headers {
            h.entry(k.to_ascii_lowercase()).or_default().push(v.clone());
        }
        // Added by the HTTP connection manager before the filters.
        h.insert(
            "x-forwarded-proto".into(),
            vec![if tls { "https" } else { "http" }.into()],
        );
        HttpAttributes {
            method: method.to_string(),
            host: host.to_string(),
            path: path.clone(),
            headers: h,
        }
    });
    Request {
        protocol: if http.is_some() {
            Protocol::Http
        } else {
            Protocol::Tcp
        },
        source: Endpoint {
            ip: Some(client.ip()),
            port: Some(client.port()),
            principal: principal.clone(),
            workload: None,
        },
        destination: Endpoint {
            ip: Some(listener.ip()),
            port: Some(listener.port()),
            principal: None,
            workload: None,
        },
        mtls: Some(principal.is_some()),
        sni,
        http,
        jwt: c.jwt.clone(),
        ..Request::default()
    }
}

/// Sends a case to Envoy: its verdict and the client's socket address.
fn send(shop: &Shop, c: &Case, to: SocketAddr) -> (Verdict, SocketAddr) {
    let transport = match &c.peer {
        Peer::Plain => Transport::Plain,
        Peer::Tls(sni) => Transport::Tls {
            sni: Some(sni.to_string()),
            client: None,
        },
        Peer::Mtls(id, sni) => shop.mtls(id, sni).unwrap(),
    };
    let from = Some(IpAddr::V4(c.from));
    match &c.http {
        Some((method, host, path, headers)) => {
            let mut headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let bearer = c
                .jwt
                .as_ref()
                .map(|claims| format!("Bearer {}", mint(claims).unwrap()));
            if let Some(b) = &bearer {
                headers.push(("authorization", b));
            }
            let req = request(method, host, path, &headers);
            let (r, local) = send_http_from(from, to, &transport, &req).unwrap();
            let verdict = Verdict {
                allowed: r.status == 200,
                status: Some(r.status),
                policy: r.header(POLICY_HEADER).map(str::to_string),
            };
            (verdict, local)
        }
        None => {
            let (allowed, local) = probe_tcp_from(from, to, &transport).unwrap();
            let verdict = Verdict {
                allowed,
                status: None,
                policy: None,
            };
            (verdict, local)
        }
    }
}

/// Runs the request through the host.
fn replay(vm: &mut PluginInstance, c: &Case, request: &Request) -> Verdict {
    if c.http.is_some() {
        let o = vm.http(request);
        assert!(o.trap.is_none(), "{}: host trap {:?}", c.name, o.trap);
        Verdict {
            allowed: o.allowed,
            status: Some(o.status.map_or(200, |s| u16::try_from(s).unwrap())),
            policy: o
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(POLICY_HEADER))
                .map(|(_, v)| v.clone()),
        }
    } else {
        let o = vm.tcp(request);
        assert!(o.trap.is_none(), "{}: host trap {:?}", c.name, o.trap);
        Verdict {
            allowed: o.allowed,
            status: None,
            policy: None,
        }
    }
}

/// Counters as `/stats/prometheus` names them, zeros dropped (Envoy lists a counter once it
/// is defined; the comparison is on values).
fn prometheus(metrics: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in metrics {
        *out.entry(prometheus_name(k)).or_default() += v;
    }
    out.retain(|_, v| *v > 0);
    out
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .collect();
    out.retain(|_, v| *v > 0);
    out
}

#[test]
fn the_host_decides_and_counts_like_envoy() {
    let t0 = Instant::now();
    let shop = Shop::start().unwrap();
    println!("envoy ready after {:.1}s", t0.elapsed().as_secs_f64());
    let wasm = std::fs::read(&shop.setup.wasm).unwrap();
    let host = ProxyWasmHost::new(&wasm).unwrap();

    let (mut compared, mut allowed, mut samples, mut tcp) = (0, 0, 0, 0);
    let mut host_total: BTreeMap<String, u64> = BTreeMap::new();
    let envoy_start = shop.metrics().unwrap();
    for w in workloads(&shop) {
        // The configuration JSON this listener's filter got in Envoy.
        let configuration = shop.setup.configuration(w.listener).unwrap();
        let mut vm = host
            .configure(&configuration)
            .unwrap_or_else(|e| panic!("{}: host refused the configuration: {e:?}", w.listener));
        println!("{} ({}):", w.listener, w.addr);
        let before = shop.metrics().unwrap();
        for c in &w.cases {
            let (envoy, client) = send(&shop, c, w.addr);
            let request = envoy_request(c, client, w.addr);
            let host_verdict = replay(&mut vm, c, &request);
            println!(
                "  {:<34} envoy {:<5} {:<4} {:<48} host {:<5} {}",
                c.name,
                envoy.allowed,
                envoy.status.map_or("tcp".into(), |s| s.to_string()),
                envoy.policy.as_deref().unwrap_or("-"),
                host_verdict.allowed,
                host_verdict.policy.as_deref().unwrap_or("-"),
            );
            assert_eq!(
                host_verdict, envoy,
                "{}: host vs Envoy for {request:?}",
                c.name
            );
            if c.sample {
                let (want, rule) = expectation(&c.name).unwrap();
                assert_eq!(envoy.allowed, want, "{}: the sample's expectation", c.name);
                if !want && c.http.is_some() {
                    assert_eq!(envoy.policy.as_deref(), Some(rule.as_str()), "{}", c.name);
                }
                samples += 1;
            }
            compared += 1;
            allowed += usize::from(envoy.allowed);
            tcp += usize::from(c.http.is_none());
        }
        let envoy_counts = delta(&shop.metrics().unwrap(), &before);
        let host_counts = prometheus(&vm.metrics());
        for (k, v) in &host_counts {
            println!("    {k} {v}");
        }
        assert_eq!(
            host_counts, envoy_counts,
            "{}: host counters vs Envoy's /stats/prometheus",
            w.listener
        );
        for (k, v) in host_counts {
            *host_total.entry(k).or_default() += v;
        }
    }
    let envoy_total = delta(&shop.metrics().unwrap(), &envoy_start);
    assert_eq!(host_total, envoy_total, "all workloads: counters");
    println!(
        "{compared} requests ({samples} samples, {tcp} TCP): {allowed} allowed, {} denied; \
         same verdicts, rules and counters ({} counters, {} counts) in Envoy and the host; \
         {:.1}s",
        compared - allowed,
        envoy_total.len(),
        envoy_total.values().sum::<u64>(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(samples, 12);
    assert!(
        allowed >= 8 && compared - allowed >= 8,
        "both verdicts exercised"
    );
}
