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
//! TCP); and the recorded-traffic access log (`envoy/access-log.json`), every line parsed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_envoy_harness::access_log;
use palisade_envoy_harness::bootstrap::{EchoServer, ListenerKind, ListenerSpec, bootstrap};
use palisade_envoy_harness::certs::Pki;
use palisade_envoy_harness::client::{
    HttpRequest, HttpResponse, Transport, probe_tcp, send_http_full,
};
use palisade_envoy_harness::compare::listen_address;
use palisade_envoy_harness::envoy::{EnvoyProcess, find_or_install_envoy, validate_config};
use palisade_envoy_harness::jwt::{EXPIRY, base64url, mint};
use palisade_envoy_harness::plugin::{POLICY_HEADER, build_plugin, http_filter, network_filter};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shop_dir() -> PathBuf {
    repo_root().join("examples").join("shop")
}

/// The inventory's pod IPs and the loopback source address each workload's client uses
/// here; the test inventory is `examples/shop/inventory.yaml` with these swapped in, so that
/// NetworkPolicy finds the source pod of a connection by its address, as in a cluster.
const WORKLOAD_IPS: &[(&str, &str, [u8; 4])] = &[
    ("ingressgateway", "10.0.0.10", [127, 0, 0, 10]),
    ("frontend", "10.1.0.10", [127, 0, 0, 11]),
    ("cart", "10.1.0.20", [127, 0, 0, 12]),
    ("catalog", "10.1.0.30", [127, 0, 0, 13]),
    ("api", "10.2.0.10", [127, 0, 0, 14]),
    ("processor", "10.2.0.20", [127, 0, 0, 15]),
    ("postgres", "10.3.0.10", [127, 0, 0, 16]),
];
/// Clients outside the mesh (the Internet through the gateway, a pod without a sidecar).
const INTERNET: [u8; 4] = [127, 0, 0, 70];
const NO_SIDECAR: [u8; 4] = [127, 0, 0, 99];

fn workload_ip(name: &str) -> Ipv4Addr {
    WORKLOAD_IPS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, ip)| Ipv4Addr::from(*ip))
        .unwrap()
}

/// The inventory with loopback addresses, then every policy file (sorted), as one multi-doc
/// YAML string: the plugin's inline `policy`.
fn shop_policy() -> String {
    let mut inventory = std::fs::read_to_string(shop_dir().join("inventory.yaml")).unwrap();
    for (name, from, to) in WORKLOAD_IPS {
        let (from, to) = (
            format!("ips: [{from}]"),
            format!("ips: [{}]", Ipv4Addr::from(*to)),
        );
        assert!(
            inventory.contains(&from),
            "{name}: no `{from}` in inventory.yaml"
        );
        inventory = inventory.replace(&from, &to);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(shop_dir().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut docs = vec![inventory];
    docs.extend(files.iter().map(|f| std::fs::read_to_string(f).unwrap()));
    docs.join("\n---\n")
}

/// The same policy compiled by the engine into a bundle (base64), as `palisade compile` does.
fn shop_bundle(policy: &str) -> String {
    let set =
        palisade_engine::load(&[palisade_engine::SourceFile::new("shop.yaml", policy)]).unwrap();
    let engine = palisade_engine::compile(&set, &palisade_engine::Options::default()).unwrap();
    // Standard base64 with padding, from the harness's base64url.
    let mut b64 = base64url(&palisade_engine::encode_bundle(&engine).unwrap())
        .replace('-', "+")
        .replace('_', "/");
    while !b64.len().is_multiple_of(4) {
        b64.push('=');
    }
    b64
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A module that speaks just enough of the proxy-wasm ABI (0.2.1) for Envoy to load and
/// configure it, and then traps (`unreachable`) on the first request headers or downstream
/// data. Encoded here so the test needs no WAT toolchain; as WAT:
///
/// ```text
/// (module (memory (export "memory") 1)
///   (func (export "proxy_abi_version_0_2_1"))
///   (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
///   (func (export "proxy_on_context_create") (param i32 i32))
///   (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
///   (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
///   (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable)
///   (func (export "proxy_on_new_connection") (param i32) (result i32) i32.const 0)
///   (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32) unreachable)
///   (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
///   (func (export "proxy_on_delete") (param i32)))
/// ```
fn trapping_module() -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn vector(items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        leb(items.len(), &mut out);
        for i in items {
            out.extend(i);
        }
        out
    }
    fn section(id: u8, content: Vec<u8>, out: &mut Vec<u8>) {
        out.push(id);
        leb(content.len(), out);
        out.extend(content);
    }
    const I32: u8 = 0x7f;
    let types: Vec<Vec<u8>> = vec![
        vec![0x60, 0, 0],                     // 0: () -> ()
        vec![0x60, 1, I32, 1, I32],           // 1: (i32) -> i32
        vec![0x60, 2, I32, I32, 0],           // 2: (i32, i32) -> ()
        vec![0x60, 2, I32, I32, 1, I32],      // 3: (i32, i32) -> i32
        vec![0x60, 3, I32, I32, I32, 1, I32], // 4: (i32, i32, i32) -> i32
        vec![0x60, 1, I32, 0],                // 5: (i32) -> ()
    ];
    let (unreachable, i32_const) = (0x00u8, 0x41u8);
    let funcs: Vec<(&str, u8, Vec<u8>)> = vec![
        ("proxy_abi_version_0_2_1", 0, vec![]),
        ("proxy_on_memory_allocate", 1, vec![i32_const, 0x80, 0x08]),
        ("proxy_on_context_create", 2, vec![]),
        ("proxy_on_vm_start", 3, vec![i32_const, 1]),
        ("proxy_on_configure", 3, vec![i32_const, 1]),
        ("proxy_on_request_headers", 4, vec![unreachable]),
        ("proxy_on_new_connection", 1, vec![i32_const, 0]),
        ("proxy_on_downstream_data", 4, vec![unreachable]),
        ("proxy_on_done", 1, vec![i32_const, 1]),
        ("proxy_on_delete", 5, vec![]),
    ];
    let name = |s: &str| {
        let mut out = Vec::new();
        leb(s.len(), &mut out);
        out.extend(s.as_bytes());
        out
    };
    let mut exports = vec![[name("memory"), vec![0x02, 0]].concat()];
    let mut bodies = Vec::new();
    for (i, (export, _, code)) in funcs.iter().enumerate() {
        exports.push([name(export), vec![0x00, i as u8]].concat());
        let body = [vec![0u8], code.clone(), vec![0x0b]].concat();
        let mut entry = Vec::new();
        leb(body.len(), &mut entry);
        entry.extend(body);
        bodies.push(entry);
    }
    let mut m = b"\0asm".to_vec();
    m.extend(1u32.to_le_bytes());
    section(1, vector(&types), &mut m);
    section(
        3,
        vector(&funcs.iter().map(|f| vec![f.1]).collect::<Vec<_>>()),
        &mut m,
    );
    section(5, vector(&[vec![0x00, 1]]), &mut m);
    section(7, vector(&exports), &mut m);
    section(10, vector(&bodies), &mut m);
    m
}

/// The listeners, written to a watched directory for Envoy's file-based LDS.
struct Lds {
    dir: PathBuf,
    version: u32,
}

impl Lds {
    fn file(&self) -> PathBuf {
        self.dir.join("listeners.json")
    }

    /// Writes a new version and moves it into place (Envoy reacts to the rename).
    fn push(&mut self, listeners: &[Value]) {
        self.version += 1;
        let resources: Vec<Value> = listeners
            .iter()
            .map(|l| {
                let mut l = l.clone();
                l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
                l
            })
            .collect();
        let doc = json!({"version_info": self.version.to_string(), "resources": resources});
        let tmp = self.dir.join("listeners.json.next");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        std::fs::rename(&tmp, self.file()).unwrap();
    }
}

/// The running Envoy and what the checks need.
struct Shop<'a> {
    envoy: EnvoyProcess,
    pki: &'a Pki,
    log: PathBuf,
}

impl Shop<'_> {
    fn mtls(&self, identity: &str, sni: &str) -> Transport {
        Transport::Tls {
            sni: Some(sni.into()),
            client: Some(
                self.pki
                    .client(&format!("spiffe://cluster.local/{identity}"))
                    .unwrap(),
            ),
        }
    }

    fn admin(&self, path: &str) -> String {
        let to = SocketAddr::from(([127, 0, 0, 1], self.envoy.admin_port));
        let req = HttpRequest {
            method: "GET".into(),
            host: "admin".into(),
            path: path.into(),
            headers: Vec::new(),
        };
        send_http_full(None, to, &Transport::Plain, &req)
            .unwrap()
            .body
    }

    /// The counters named `palisade_*` at `/stats/prometheus` (a counter never incremented is
    /// not defined, so it is absent: read as 0).
    fn metrics(&self) -> BTreeMap<String, u64> {
        self.admin("/stats/prometheus")
            .lines()
            .filter(|l| l.starts_with("palisade_"))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                let name = name.split('{').next()?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// A counter at `/stats` (e.g. `listener_manager.lds.update_rejected`).
    fn stat(&self, name: &str) -> u64 {
        self.admin(&format!("/stats?filter={name}"))
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn wait_stat(&self, name: &str, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.stat(name);
            if v >= at_least || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn envoy_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn http(
    from: [u8; 4],
    to: SocketAddr,
    transport: &Transport,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let req = HttpRequest {
        method: method.into(),
        host: host.into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    send_http_full(Some(IpAddr::V4(from.into())), to, transport, &req).unwrap()
}

/// A per-policy counter's name at `/stats/prometheus`.
fn per_policy(rule: &str, outcome: &str) -> String {
    format!("palisade.policy.{rule}.{outcome}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `examples/shop/requests/<name>.json`: (expect allowed, deciding rule or "none").
fn expectation(name: &str) -> (bool, String) {
    let path = shop_dir().join("requests").join(format!("{name}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let allowed = match v["expect"].as_str() {
        Some("allow") => true,
        Some("deny") => false,
        other => panic!("{name}: expect {other:?}"),
    };
    (allowed, v["rule"].as_str().unwrap_or("none").to_string())
}

#[test]
fn the_shop_runs_end_to_end_in_envoy() {
    let t0 = Instant::now();
    let root = repo_root();
    let envoy_bin = find_or_install_envoy(&root).unwrap();
    let wasm = build_plugin(&root).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let echo = EchoServer::start().unwrap();

    // Listener addresses: this process's 127/8 block (shared fixed ports stay free of
    // concurrent runs), one address per workload since the gateway and the cart both use 8080.
    let [a, b, c, _] = listen_address().octets();
    let at = |d: u8, port: u16| SocketAddr::from(([a, b, c, d], port));
    let gateway = at(10, 8080);
    let cart = at(20, 8080);
    let catalog = at(30, 9080);
    let payments = at(40, 8443);
    let postgres = at(50, 5432);
    let trap_http = at(60, free_port());
    let trap_tcp = at(61, free_port());
    let corrupt = at(62, free_port());

    let policy = shop_policy();
    let bundle = shop_bundle(&policy);
    let workload = |ns: &str, name: &str| json!({"namespace": ns, "name": name});
    let cart_config = |extra: Value| {
        let mut c = json!({"policy": policy, "workload": workload("shop", "cart")});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let trap_wasm = dir.path().join("trap.wasm");
    std::fs::write(&trap_wasm, trapping_module()).unwrap();
    let with_vm = |mut filter: Value, vm: &str| {
        filter["typed_config"]["config"]["vm_config"]["vm_id"] = json!(vm);
        filter
    };
    let spec = |name: &str, addr: SocketAddr, kind: ListenerKind| ListenerSpec {
        name: name.into(),
        address: match addr.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => unreachable!(),
        },
        port: addr.port(),
        kind,
    };
    let listeners_with = |cart_filter: Value, extra: Vec<ListenerSpec>| -> Vec<Value> {
        let mut specs = vec![
            spec(
                "gateway",
                gateway,
                ListenerKind::Http(vec![http_filter(
                    &wasm,
                    &json!({"policy": policy, "workload": workload("istio-system", "ingressgateway")}),
                )]),
            ),
            spec("cart", cart, ListenerKind::Http(vec![cart_filter])),
            spec(
                "catalog",
                catalog,
                ListenerKind::Http(vec![http_filter(
                    &wasm,
                    &json!({"policy": policy, "workload": workload("shop", "catalog")}),
                )]),
            ),
            spec(
                "payments_api",
                payments,
                ListenerKind::Http(vec![http_filter(
                    &wasm,
                    &json!({"bundle": bundle, "workload": workload("payments", "api")}),
                )]),
            ),
            spec(
                "postgres",
                postgres,
                ListenerKind::Tcp(vec![network_filter(
                    &wasm,
                    &json!({"policy": policy, "workload": workload("data", "postgres")}),
                )]),
            ),
            spec(
                "trap_http",
                trap_http,
                ListenerKind::Http(vec![with_vm(http_filter(&trap_wasm, &json!({})), "trap")]),
            ),
            spec(
                "trap_tcp",
                trap_tcp,
                ListenerKind::Tcp(vec![with_vm(
                    network_filter(&trap_wasm, &json!({})),
                    "trap",
                )]),
            ),
        ];
        specs.extend(extra);
        let mut listeners = bootstrap(&specs, &pki, echo.port)["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .clone();
        access_log::add_to_listeners(&mut listeners, &dir.path().join("access.log")).unwrap();
        listeners
    };
    let good = listeners_with(http_filter(&wasm, &cart_config(json!({}))), vec![]);

    let lds_dir = dir.path().join("lds");
    std::fs::create_dir_all(&lds_dir).unwrap();
    let mut lds = Lds {
        dir: lds_dir.clone(),
        version: 0,
    };
    lds.push(&good);
    let mut config = bootstrap(&[], &pki, echo.port);
    config["node"] = json!({"id": "shop-e2e", "cluster": "shop-e2e"});
    config["dynamic_resources"] = json!({"lds_config": {
        "resource_api_version": "V3",
        "path_config_source": {
            "path": lds.file().display().to_string(),
            "watched_directory": {"path": lds_dir.display().to_string()},
        },
    }});
    let config_file = dir.path().join("envoy.json");
    std::fs::write(&config_file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    // The access-log format validates (and every listener with it, in a static copy).
    let mut static_copy = config.clone();
    static_copy["dynamic_resources"] = json!({});
    static_copy["static_resources"]["listeners"] = json!(good);
    let static_file = dir.path().join("envoy-static.json");
    std::fs::write(
        &static_file,
        serde_json::to_vec_pretty(&static_copy).unwrap(),
    )
    .unwrap();
    validate_config(&envoy_bin, &static_file).unwrap();

    let envoy = EnvoyProcess::start(&envoy_bin, &config_file, dir.path()).unwrap();
    let s = Shop {
        envoy,
        pki: &pki,
        log: dir.path().join("envoy.log"),
    };
    s.admin("/ready");
    println!("envoy ready after {:.1}s", t0.elapsed().as_secs_f64());

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
    let frontend = s.mtls("ns/shop/sa/frontend", cart_sni);
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
            &s.mtls(gw_id, cart_sni),
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
            &s.mtls(gw_id, "catalog.shop.svc.cluster.local"),
            "GET",
            "catalog.shop.svc.cluster.local:9080",
            "/v1/products?limit=10",
            &[],
        ),
    );
    let pay_sni = "payments-api.payments.svc.cluster.local";
    let cart_to_payments = s.mtls("ns/shop/sa/cart", pay_sni);
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
            &s.mtls("ns/payments/sa/processor", pg_sni),
        )
        .unwrap(),
    );
    check_tcp(
        "cart-to-postgres",
        probe_tcp(
            Some(IpAddr::V4(cart_ip.into())),
            postgres,
            &s.mtls("ns/shop/sa/cart", pg_sni),
        )
        .unwrap(),
    );
    check(
        "processor-egress-blocked",
        &http(
            processor,
            payments,
            &s.mtls("ns/payments/sa/processor", pay_sni),
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
    let got = s.metrics();
    println!("metrics after the requests:");
    for (k, v) in &got {
        println!("  {k} {v}");
    }
    assert_eq!(got, want, "palisade counters at /stats/prometheus");

    // ---- 3. A bad plugin configuration for the cart, pushed through LDS: Envoy rejects the
    // update, logs our reason, and the cart keeps enforcing its previous policy.
    let bad_policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec: {action: MAYBE}\n";
    let bad = listeners_with(
        http_filter(
            &wasm,
            &json!({"policy": bad_policy, "workload": workload("shop", "cart")}),
        ),
        vec![],
    );
    let rejected = s.stat("listener_manager.lds.update_rejected");
    lds.push(&bad);
    assert_eq!(
        s.wait_stat("listener_manager.lds.update_rejected", rejected + 1),
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
    let corrupt_wasm = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt_wasm, b"\0asm\x01\0\0\0this is not a module").unwrap();
    let with_corrupt = listeners_with(
        http_filter(&wasm, &cart_config(json!({}))),
        vec![spec(
            "corrupt",
            corrupt,
            ListenerKind::Http(vec![with_vm(
                http_filter(&corrupt_wasm, &json!({"policy": policy})),
                "corrupt",
            )]),
        )],
    );
    lds.push(&with_corrupt);
    assert_eq!(
        s.wait_stat("listener_manager.lds.update_rejected", rejected + 2),
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

    // ---- 4. A good update: the cart in `mode: dry-run`. Denials are counted as shadow and
    // not enforced.
    let successes = s.stat("listener_manager.lds.update_success");
    let dry = listeners_with(
        http_filter(&wasm, &cart_config(json!({"mode": "dry-run"}))),
        vec![],
    );
    lds.push(&dry);
    s.wait_stat("listener_manager.lds.update_success", successes + 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.stat("listener_manager.total_listeners_warming") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = s.metrics();
    let r = plaintext_to_cart();
    assert_eq!(r.status, 200, "dry-run must not enforce: {r:?}");
    let after = s.metrics();
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
    // 16 HTTP requests (12 in step 1, 2 + 1 + 1 after the updates, 2 to the trap) and 3 TCP
    // connections (2 to postgres, 1 to the trap).
    const RECORDED: usize = 19;
    let fields = access_log::fields().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default();
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
