//! `examples/shop` end to end in a real Envoy 1.40 with the Palisade plugin.
//!
//! One Envoy, listeners from a watched file (LDS, `path_config_source` + `watched_directory`,
//! updated by atomic rename) for five shop workloads — the ingress gateway (:8080), cart
//! (:8080), catalog (:9080), payments api (:8443, its policy as a bundle compiled by the engine)
//! and postgres (:5432, TCP through the network filter) — each on its own loopback address with
//! the shop's policies and its `workload`. Clients connect from the address the (test)
//! inventory gives their workload, with SPIFFE certificates of the shop identities, and send
//! the twelve `examples/shop/requests`: each must get the verdict (and on an HTTP denial the
//! deciding rule) the file expects. Then: the counters at `/stats/prometheus` with exact
//! values; a bad plugin configuration and a corrupt `.wasm` pushed through LDS, rejected with
//! the reason logged while the previous policy keeps enforcing; a good update switching the
//! cart to `mode: dry-run` (counted, not enforced); a trapping plugin failing closed (HTTP and
//! TCP); bundles signed by an untrusted key, with a flipped signature or for another workload
//! refused under `trustedKeys` while the cart keeps enforcing, and a good signed one taken;
//! and the recorded-traffic access log (`envoy/access-log.json`), every line parsed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use palisade_engine::Scope;
use palisade_envoy_harness::access_log;
use palisade_envoy_harness::bootstrap::ListenerKind;
use palisade_envoy_harness::client::{HttpResponse, Transport, probe_tcp, send_http_full};
use palisade_envoy_harness::jwt::{EXPIRY, mint};
use palisade_envoy_harness::plugin::{POLICY_HEADER, http_filter};
use palisade_envoy_harness::shop::{
    INTERNET, NO_SIDECAR, Shop, per_policy, request, shop_bundle_signed, spec, with_vm, workload,
};
use serde_json::{Value, json};

fn http(
    from: [u8; 4],
    to: SocketAddr,
    transport: &Transport,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let req = request(method, host, path, headers);
    send_http_full(Some(IpAddr::V4(from.into())), to, transport, &req).unwrap()
}

fn expectation(name: &str) -> (bool, String) {
    palisade_envoy_harness::shop::expectation(name).unwrap()
}

fn workload_ip(name: &str) -> std::net::Ipv4Addr {
    palisade_envoy_harness::shop::workload_ip(name).unwrap()
}

#[test]
fn the_shop_runs_end_to_end_in_envoy() {
    let t0 = Instant::now();
    let mut s = Shop::start().unwrap();
    println!("envoy ready after {:.1}s", t0.elapsed().as_secs_f64());
    let a = s.setup.addrs;
    let (gateway, cart, catalog, payments, postgres) =
        (a.gateway, a.cart, a.catalog, a.payments, a.postgres);
    let (trap_http, trap_tcp, corrupt) = (a.trap_http, a.trap_tcp, a.spare);
    let wasm = s.setup.wasm.clone();
    let policy = s.setup.policy.clone();
    let dir = s.setup.dir.path().to_path_buf();

    // ---- 1. The twelve sample requests.
    let plain = Transport::Plain;
    let gw_id = "ns/istio-system/sa/istio-ingressgateway";
    let check = |name: &str, r: &HttpResponse| {
        let (allowed, rule) = expectation(name);
        if allowed {
            assert_eq!(r.status, 200, "{name}: {r:?}");
        } else {
            assert_eq!(r.status, 403, "{name}: {r:?}");
            assert_eq!(
                r.header(POLICY_HEADER),
                Some(rule.as_str()),
                "{name}: {r:?}"
            );
        }
        println!(
            "  {name:<32} {} {}",
            r.status,
            r.header(POLICY_HEADER).unwrap_or("-")
        );
    };
    let check_tcp = |name: &str, got: bool| {
        assert_eq!(got, expectation(name).0, "{name}");
        println!(
            "  {name:<32} tcp {}",
            if got { "allowed" } else { "closed" }
        );
    };
    println!("requests (examples/shop/requests):");
    let h = "shop.example.com";
    check(
        "browse-home",
        &http(INTERNET, gateway, &plain, "GET", h, "/", &[]),
    );
    check(
        "gateway-debug-denied",
        &http(
            INTERNET,
            gateway,
            &plain,
            "GET",
            h,
            "/debug/pprof/heap",
            &[],
        ),
    );
    check(
        "gateway-unknown-host",
        &http(
            INTERNET,
            gateway,
            &plain,
            "GET",
            "admin.example.net",
            "/",
            &[],
        ),
    );
    let cart_sni = "cart.shop.svc.cluster.local";
    let frontend = s.mtls("ns/shop/sa/frontend", cart_sni).unwrap();
    let frontend_ip = workload_ip("frontend").octets();
    let adds_to_cart = || {
        http(
            frontend_ip,
            cart,
            &frontend,
            "POST",
            "cart.shop.svc.cluster.local:8080",
            "/api/cart/u123/items/sku-42",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("user-agent", "shop-e2e/1"),
            ],
        )
    };
    check("frontend-adds-to-cart", &adds_to_cart());
    let plaintext_to_cart = || {
        http(
            NO_SIDECAR,
            cart,
            &plain,
            "GET",
            "cart",
            "/api/cart/u123",
            &[],
        )
    };
    check("plaintext-to-cart", &plaintext_to_cart());
    let token = mint(&json!({
        "iss": "https://auth.shop.example.com", "sub": "user-7",
        "scope": ["profile", "cart.read"], "exp": EXPIRY,
    }))
    .unwrap();
    let bearer = format!("Bearer {token}");
    check(
        "mobile-reads-cart",
        &http(
            workload_ip("ingressgateway").octets(),
            cart,
            &s.mtls(gw_id, cart_sni).unwrap(),
            "GET",
            "cart",
            "/api/cart/u7?fields=items",
            &[("authorization", &bearer)],
        ),
    );
    check(
        "gateway-reads-catalog",
        &http(
            workload_ip("ingressgateway").octets(),
            catalog,
            &s.mtls(gw_id, "catalog.shop.svc.cluster.local").unwrap(),
            "GET",
            "catalog.shop.svc.cluster.local:9080",
            "/v1/products?limit=10",
            &[],
        ),
    );
    let pay_sni = "payments-api.payments.svc.cluster.local";
    let cart_to_payments = s.mtls("ns/shop/sa/cart", pay_sni).unwrap();
    let cart_ip = workload_ip("cart").octets();
    let ph = "payments-api.payments:8443";
    check(
        "cart-charges-payment",
        &http(
            cart_ip,
            payments,
            &cart_to_payments,
            "POST",
            ph,
            "/v1/charges",
            &[("idempotency-key", "c0ffee")],
        ),
    );
    check(
        "cart-refund-without-ops-token",
        &http(
            cart_ip,
            payments,
            &cart_to_payments,
            "POST",
            ph,
            "/v1/refunds",
            &[("idempotency-key", "r-1")],
        ),
    );
    let processor_ip = IpAddr::V4(workload_ip("processor"));
    let processor = workload_ip("processor").octets();
    let pg_sni = "postgres.data.svc.cluster.local";
    check_tcp(
        "processor-to-postgres",
        probe_tcp(
            Some(processor_ip),
            postgres,
            &s.mtls("ns/payments/sa/processor", pg_sni).unwrap(),
        )
        .unwrap(),
    );
    check_tcp(
        "cart-to-postgres",
        probe_tcp(
            Some(IpAddr::V4(cart_ip.into())),
            postgres,
            &s.mtls("ns/shop/sa/cart", pg_sni).unwrap(),
        )
        .unwrap(),
    );
    check(
        "processor-egress-blocked",
        &http(
            processor,
            payments,
            &s.mtls("ns/payments/sa/processor", pay_sni).unwrap(),
            "GET",
            ph,
            "/v1/charges/ch_1",
            &[],
        ),
    );

    // ---- 2. The counters: six allowed, six denied, the catalog's dry-run policy would deny
    // the gateway (shadow, not enforced), the charge was audited; one per-policy counter per
    // decision that names a rule.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    let mut add = |name: String, n: u64| *want.entry(name).or_default() += n;
    add("palisade_allowed".into(), 6);
    add("palisade_denied".into(), 6);
    add("palisade_shadow_denied".into(), 1);
    add("palisade_audited".into(), 1);
    for (rule, outcome) in [
        ("ns[istio-system]-policy[ingress]-rule[0]", "allowed"),
        (
            "ns[istio-system]-policy[deny-internal-paths]-rule[0]",
            "denied",
        ),
        ("ns[shop]-policy[cart]-rule[0]", "allowed"),
        ("ns[shop]-policy[deny-plaintext]-rule[0]", "denied"),
        ("ns[shop]-policy[cart]-rule[1]", "allowed"),
        ("ns[shop]-policy[catalog]-rule[0]", "allowed"),
        ("ns[payments]-policy[payments-api]-rule[0]", "allowed"),
        ("ns[payments]-policy[refunds-need-ops]-rule[0]", "denied"),
        ("ns[data]-policy[postgres]-rule[0]", "allowed"),
    ] {
        add(per_policy(rule, outcome), 1);
    }
    let got = s.metrics().unwrap();
    println!("metrics after the requests:");
    for (k, v) in &got {
        println!("  {k} {v}");
    }
    assert_eq!(got, want, "palisade counters at /stats/prometheus");

    // ---- 3. A bad plugin configuration for the cart, pushed through LDS: Envoy rejects the
    // update, logs our reason, and the cart keeps enforcing its previous policy.
    let bad_policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec: {action: MAYBE}\n";
    let bad = s
        .setup
        .listeners_with(
            http_filter(
                &wasm,
                &json!({"policy": bad_policy, "workload": workload("shop", "cart")}),
            ),
            vec![],
        )
        .unwrap();
    let rejected = s.stat("listener_manager.lds.update_rejected").unwrap();
    s.setup.lds.push(&bad).unwrap();
    assert_eq!(
        s.wait_stat("listener_manager.lds.update_rejected", rejected + 1)
            .unwrap(),
        rejected + 1,
        "the bad configuration was not rejected:\n{}",
        s.envoy_log()
    );
    let log = s.envoy_log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("palisade: configuration refused") || l.contains("rejected"))
        .collect();
    println!(
        "bad configuration, Envoy's log:\n  {}",
        refused.join("\n  ")
    );
    assert!(
        log.contains("palisade: configuration refused: invalid policy") && log.contains("MAYBE"),
        "{log}"
    );
    check("plaintext-to-cart", &plaintext_to_cart());
    check("frontend-adds-to-cart", &adds_to_cart());

    // A corrupt `.wasm` for a new listener: the listener is refused (nothing listens, so
    // nothing is let through), the others stay.
    let corrupt_wasm = dir.join("corrupt.wasm");
    std::fs::write(&corrupt_wasm, b"\0asm\x01\0\0\0this is not a module").unwrap();
    let with_corrupt = s
        .setup
        .listeners_with(
            s.setup.cart_filter(&json!({})),
            vec![
                spec(
                    "corrupt",
                    corrupt,
                    ListenerKind::Http(vec![with_vm(
                        http_filter(&corrupt_wasm, &json!({"policy": policy})),
                        "corrupt",
                    )]),
                )
                .unwrap(),
            ],
        )
        .unwrap();
    s.setup.lds.push(&with_corrupt).unwrap();
    assert_eq!(
        s.wait_stat("listener_manager.lds.update_rejected", rejected + 2)
            .unwrap(),
        rejected + 2,
        "the corrupt module was not rejected:\n{}",
        s.envoy_log()
    );
    let log = s.envoy_log();
    let corrupt_lines: Vec<&str> = log.lines().filter(|l| l.contains("corrupt")).collect();
    println!(
        "corrupt .wasm, Envoy's log:\n  {}",
        corrupt_lines.join("\n  ")
    );
    assert!(!corrupt_lines.is_empty(), "{log}");
    let refused_conn = std::net::TcpStream::connect_timeout(&corrupt, Duration::from_secs(2));
    assert!(
        refused_conn.is_err(),
        "a listener with a corrupt module accepted a connection"
    );
    check("plaintext-to-cart", &plaintext_to_cart());

    // ---- 3b. Signed bundles: with `trustedKeys` the cart takes only a bundle signed by a
    // trusted key for itself. A bundle signed by an unknown key, one with a flipped signature
    // byte and one signed for another workload are each rejected with the reason, and the cart
    // keeps enforcing; then a good one is taken and decides as the policy says.
    let cart_scope = Scope::Workload {
        namespace: "shop".into(),
        name: "cart".into(),
    };
    let (good, key_a) = shop_bundle_signed(&policy, 1, "ci-a", cart_scope.clone(), false).unwrap();
    let (_, key_b) = shop_bundle_signed(&policy, 2, "ci-b", Scope::Mesh, false).unwrap();
    let (flipped, _) = shop_bundle_signed(&policy, 1, "ci-a", cart_scope.clone(), true).unwrap();
    let frontend = Scope::Workload {
        namespace: "shop".into(),
        name: "frontend".into(),
    };
    let (elsewhere, _) = shop_bundle_signed(&policy, 1, "ci-a", frontend, false).unwrap();
    let signed_cart = |bundle: &str, key: &Value| {
        s.setup
            .listeners_with(
                http_filter(
                    &wasm,
                    &json!({"bundle": bundle, "trustedKeys": [key], "workload": workload("shop", "cart")}),
                ),
                vec![],
            )
            .unwrap()
    };
    let refusals = [
        (
            "an unknown key",
            signed_cart(&good, &key_b),
            "bundle is signed by key `ci-a`, which this host does not trust",
        ),
        (
            "a flipped signature byte",
            signed_cart(&flipped, &key_a),
            "bundle signature by key `ci-a` does not verify",
        ),
        (
            "another workload's bundle",
            signed_cart(&elsewhere, &key_a),
            "bundle is for workload:shop/frontend, and this host enforces workload:shop/cart",
        ),
    ];
    let accepted = signed_cart(&good, &key_a);
    for (name, listeners, reason) in refusals {
        let rejected = s.stat("listener_manager.lds.update_rejected").unwrap();
        s.setup.lds.push(&listeners).unwrap();
        assert_eq!(
            s.wait_stat("listener_manager.lds.update_rejected", rejected + 1)
                .unwrap(),
            rejected + 1,
            "{name}: not rejected:\n{}",
            s.envoy_log()
        );
        let log = s.envoy_log();
        assert!(log.contains(reason), "{name}: {log}");
        println!("signed bundle, {name}: rejected ({reason})");
        check("plaintext-to-cart", &plaintext_to_cart());
        check("frontend-adds-to-cart", &adds_to_cart());
    }
    let successes = s.stat("listener_manager.lds.update_success").unwrap();
    s.setup.lds.push(&accepted).unwrap();
    s.wait_stat("listener_manager.lds.update_success", successes + 1)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.stat("listener_manager.total_listeners_warming").unwrap() > 0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    check("plaintext-to-cart", &plaintext_to_cart());
    check("frontend-adds-to-cart", &adds_to_cart());

    // ---- 4. A good update: the cart in `mode: dry-run`. Denials are counted as shadow and
    // not enforced.
    let successes = s.stat("listener_manager.lds.update_success").unwrap();
    let dry = s
        .setup
        .listeners_with(s.setup.cart_filter(&json!({"mode": "dry-run"})), vec![])
        .unwrap();
    s.setup.lds.push(&dry).unwrap();
    s.wait_stat("listener_manager.lds.update_success", successes + 1)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.stat("listener_manager.total_listeners_warming").unwrap() > 0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = s.metrics().unwrap();
    let r = plaintext_to_cart();
    assert_eq!(r.status, 200, "dry-run must not enforce: {r:?}");
    let after = s.metrics().unwrap();
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    let dry_rule = per_policy("ns[shop]-policy[deny-plaintext]-rule[0]", "shadow_denied");
    println!(
        "dry-run cart: plaintext request 200; shadow_denied +{}, {dry_rule} +{}, denied +{}",
        delta("palisade_shadow_denied"),
        delta(&dry_rule),
        delta("palisade_denied")
    );
    assert_eq!(delta("palisade_shadow_denied"), 1);
    assert_eq!(delta(&dry_rule), 1);
    assert_eq!(delta("palisade_denied"), 0);
    assert_eq!(delta("palisade_allowed"), 0);

    // ---- 5. A plugin that traps fails closed: HTTP gets a local reply, never the route;
    // TCP is closed, never proxied.
    let trap_statuses: Vec<u16> = (0..2)
        .map(|_| http(INTERNET, trap_http, &plain, "GET", h, "/", &[]).status)
        .collect();
    let trap_tcp_allowed = probe_tcp(Some(IpAddr::V4(INTERNET.into())), trap_tcp, &plain).unwrap();
    println!("trapping plugin: HTTP statuses {trap_statuses:?}, TCP allowed: {trap_tcp_allowed}");
    for st in &trap_statuses {
        assert!(*st >= 500, "a trapping plugin let a request through ({st})");
    }
    assert!(
        !trap_tcp_allowed,
        "a trapping plugin let a connection through"
    );
    let log = s.envoy_log();
    let trap_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("unreachable") || l.contains("proxy_on_request_headers"))
        .take(3)
        .collect();
    println!("trap, Envoy's log:\n  {}", trap_lines.join("\n  "));

    // ---- 6. The access log: one JSON object per line with every field of the format.
    // 24 HTTP requests (12 in step 1, 2 + 1 + 1 after the updates, 2 after each of the four
    // signed-bundle updates, 2 to the trap) and 3 TCP connections (2 to postgres, 1 to the
    // trap).
    const RECORDED: usize = 27;
    let fields = access_log::fields().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
        // Only complete lines (a flush may be under way).
        let lines: Vec<Value> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let trap_logged = lines.iter().any(|l| {
            l["local_address"]
                .as_str()
                .is_some_and(|a| a.ends_with(&format!(":{}", trap_http.port())))
        });
        if (trap_logged && lines.len() >= RECORDED) || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("access log: {} lines", lines.len());
    assert_eq!(lines.len(), RECORDED, "{lines:#?}");
    for l in &lines {
        for f in &fields {
            assert!(l.get(f).is_some(), "line without `{f}`: {l}");
        }
    }
    let find = |pred: &dyn Fn(&Value) -> bool| -> &Value {
        lines
            .iter()
            .find(|l| pred(l))
            .unwrap_or_else(|| panic!("no such line in {lines:#?}"))
    };
    let add_line = find(&|l| l["path"] == "/api/cart/u123/items/sku-42");
    println!("  {add_line}");
    assert_eq!(
        add_line["peer_uri_san"],
        "spiffe://cluster.local/ns/shop/sa/frontend"
    );
    assert!(
        add_line["direct_peer_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.11:")
    );
    assert_eq!(add_line["sni"], cart_sni);
    assert_eq!(add_line["method"], "POST");
    assert_eq!(add_line["authority"], "cart.shop.svc.cluster.local:8080");
    assert_eq!(
        add_line["request_headers"]["x-forwarded-for"],
        "203.0.113.9"
    );
    assert_eq!(add_line["request_headers"]["user-agent"], "shop-e2e/1");
    assert_eq!(add_line["response_code"], 200);
    assert_eq!(add_line["destination_port"], 8080);
    let deny_line = find(&|l| l["path"] == "/v1/refunds");
    println!("  {deny_line}");
    assert_eq!(deny_line["response_code"], 403);
    assert_eq!(
        deny_line["response_code_details"],
        "rbac_access_denied_matched_policy[ns[payments]-policy[refunds-need-ops]-rule[0]]"
    );
    assert_eq!(
        deny_line["palisade_policy"],
        "ns[payments]-policy[refunds-need-ops]-rule[0]"
    );
    let jwt_line = find(&|l| l["path"] == "/api/cart/u7?fields=items");
    println!("  {jwt_line}");
    assert_eq!(
        jwt_line["jwt_payload"]["iss"],
        "https://auth.shop.example.com"
    );
    let tcp_line = find(&|l| {
        l["destination_port"] == 5432
            && l["peer_uri_san"] == "spiffe://cluster.local/ns/payments/sa/processor"
    });
    println!("  {tcp_line}");
    assert_eq!(tcp_line["method"], Value::Null);
    let trap_line = find(&|l| l["destination_port"] == trap_http.port());
    println!("  {trap_line}");
    println!("test ran in {:.1}s", t0.elapsed().as_secs_f64());
}
