//! Differential: a random AuthorizationPolicy set (a small grammar over every source,
//! operation and condition field, ALLOW/DENY/AUDIT, dry-run) and a random request, decided by
//! the proxy-wasm plugin's `.wasm` in the wasmtime test host and by the native engine. Any
//! difference in verdict, step, deciding rule, dry-run results or audit panics with the
//! policy, the request and both decisions.
//!
//! The plugin is `$PALISADE_PROXY_WASM`, else `../target/wasm32-wasip1/plugin/…` or
//! `$CARGO_TARGET_DIR/wasm32-wasip1/plugin/…` (build it with `cargo xtask plugin`).

#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use palisade_engine::{
    Endpoint, HttpAttributes, Options, Protocol, Request, SourceFile, WorkloadRef,
};
use palisade_wasm_host::{ProxyWasmHost, Replayer, same_decision};

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
const PATHS: &[&str] = &[
    "/api/*",
    "/admin",
    "*/health",
    "/",
    "*",
    "/api/{*}/items",
    "/a/{**}",
];
const REQUEST_PRINCIPALS: &[&str] = &[
    "https://issuer.example/alice",
    "*",
    "https://issuer.example/*",
    "*/bob",
];
const WHEN: &[(&str, &[&str])] = &[
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

/// Request values: the pools above plus near misses and odd bytes.
const REQ_PRINCIPALS: &[&str] = &[
    "spiffe://cluster.local/ns/shop/sa/frontend",
    "spiffe://cluster.local/ns/pay/sa/api",
    "spiffe://other.domain/ns/shop/sa/x",
    "spiffe://cluster.local/ns/shopx/sa/api",
    "not-a-spiffe-id",
];
const REQ_IPS: &[&str] = &[
    "10.1.2.3",
    "10.1.9.9",
    "192.168.0.7",
    "203.0.113.5",
    "fd00::1",
    "8.8.8.8",
];
const REQ_HOSTS: &[&str] = &[
    "cart",
    "cart.shop.svc.cluster.local",
    "www.example.com",
    "api.x",
    "CART",
    "cart:8080",
];
const REQ_PATHS: &[&str] = &[
    "/api/v1",
    "/admin",
    "/x/health",
    "/",
    "/api/a/items",
    "/a/b/c",
    "/admin?x=1",
    "/api/%2e%2e/admin",
    "//admin",
    "/ADMIN",
    "/a/../admin",
    "/api/a%2Fb/items",
];
const REQ_METHODS: &[&str] = &["GET", "POST", "DELETE", "get", "PATCH"];
const SNIS: &[&str] = &["cart.shop", "api.shop", "cart.shopx"];

fn pick<'a>(u: &mut Unstructured, pool: &[&'a str]) -> Result<&'a str> {
    Ok(*u.choose(pool)?)
}

fn list(u: &mut Unstructured, names: &[&str], pool: &[&str]) -> Result<String> {
    let name = pick(u, names)?;
    let n = u.int_in_range(1..=2)?;
    let mut values = Vec::new();
    for _ in 0..n {
        values.push(format!("{:?}", pick(u, pool)?));
    }
    Ok(format!("{name}: [{}]", values.join(", ")))
}

fn source(u: &mut Unstructured) -> Result<String> {
    let mut fields = Vec::new();
    for _ in 0..u.int_in_range(1..=2)? {
        fields.push(match u.int_in_range(0..=3)? {
            0 => list(u, &["principals", "notPrincipals"], PRINCIPALS)?,
            1 => list(u, &["namespaces", "notNamespaces"], NAMESPACES)?,
            2 => list(
                u,
                &[
                    "ipBlocks",
                    "notIpBlocks",
                    "remoteIpBlocks",
                    "notRemoteIpBlocks",
                ],
                IPS,
            )?,
            _ => list(
                u,
                &["requestPrincipals", "notRequestPrincipals"],
                REQUEST_PRINCIPALS,
            )?,
        });
    }
    Ok(format!("{{source: {{{}}}}}", fields.join(", ")))
}

fn operation(u: &mut Unstructured) -> Result<String> {
    let mut fields = Vec::new();
    for _ in 0..u.int_in_range(1..=2)? {
        fields.push(match u.int_in_range(0..=3)? {
            0 => list(u, &["hosts", "notHosts"], HOSTS)?,
            1 => list(u, &["ports", "notPorts"], PORTS)?,
            2 => list(u, &["methods", "notMethods"], METHODS)?,
            _ => list(u, &["paths", "notPaths"], PATHS)?,
        });
    }
    Ok(format!("{{operation: {{{}}}}}", fields.join(", ")))
}

fn rule(u: &mut Unstructured) -> Result<String> {
    let mut parts = Vec::new();
    if u.arbitrary()? {
        parts.push(format!("from: [{}]", source(u)?));
    }
    if u.arbitrary()? {
        parts.push(format!("to: [{}]", operation(u)?));
    }
    if u.arbitrary()? {
        let (key, values) = *u.choose(WHEN)?;
        let kind = if u.arbitrary()? {
            "notValues"
        } else {
            "values"
        };
        parts.push(format!(
            "when: [{{key: {key:?}, {kind}: [{:?}]}}]",
            pick(u, values)?
        ));
    }
    Ok(format!("{{{}}}", parts.join(", ")))
}

/// One to three policies selecting `app: cart` in `shop` (or mesh-wide from the root).
fn policies(u: &mut Unstructured) -> Result<String> {
    let mut docs = Vec::new();
    for i in 0..u.int_in_range(1..=3)? {
        let action = pick(u, &["ALLOW", "ALLOW", "DENY", "AUDIT"])?;
        let ns = pick(u, &["shop", "shop", "istio-system"])?;
        let dry_run = u.ratio(1, 6)?;
        let mut rules = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            rules.push(rule(u)?);
        }
        let annotations = if dry_run {
            ", annotations: {istio.io/dry-run: \"true\"}"
        } else {
            ""
        };
        let selector = if u.arbitrary()? {
            "selector: {matchLabels: {app: cart}}, "
        } else {
            ""
        };
        docs.push(format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{i}, namespace: {ns}{annotations}}}\nspec: {{{selector}action: {action}, rules: [{}]}}\n",
            rules.join(", ")
        ));
    }
    Ok(docs.join("---\n"))
}

fn request(u: &mut Unstructured) -> Result<Request> {
    let protocol = if u.ratio(1, 4)? {
        Protocol::Tcp
    } else {
        Protocol::Http
    };
    let ip = |u: &mut Unstructured| -> Result<Option<IpAddr>> {
        Ok(if u.ratio(1, 8)? {
            None
        } else {
            pick(u, REQ_IPS)?.parse().ok()
        })
    };
    let mut headers = BTreeMap::new();
    if u.arbitrary()? {
        headers.insert(
            "x-env".to_string(),
            vec![pick(u, &["prod", "dev", "preview", ""])?.to_string()],
        );
    }
    let http = (protocol == Protocol::Http).then(|| -> Result<HttpAttributes> {
        Ok(HttpAttributes {
            method: pick(u, REQ_METHODS)?.into(),
            host: pick(u, REQ_HOSTS)?.into(),
            path: pick(u, REQ_PATHS)?.into(),
            headers,
        })
    });
    let jwt = if protocol == Protocol::Http && u.arbitrary()? {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), "https://issuer.example".into());
        claims.insert("sub".into(), pick(u, &["alice", "bob", "carol"])?.into());
        if u.arbitrary()? {
            claims.insert("aud".into(), pick(u, &["shop", "pay"])?.into());
        }
        if u.arbitrary()? {
            claims.insert("azp".into(), "web".into());
        }
        if u.arbitrary()? {
            let g: Vec<serde_json::Value> = vec![pick(u, &["admins", "users", "x"])?.into()];
            claims.insert("groups".into(), g.into());
        }
        Some(serde_json::Value::Object(claims))
    } else {
        None
    };
    Ok(Request {
        protocol,
        source: Endpoint {
            ip: ip(u)?,
            port: Some(40000),
            principal: if u.ratio(1, 4)? {
                None
            } else {
                Some(pick(u, REQ_PRINCIPALS)?.into())
            },
            workload: None,
        },
        destination: Endpoint {
            ip: ip(u)?,
            port: Some(pick(u, &["8080", "9090", "443"])?.parse().unwrap_or(8080)),
            principal: None,
            workload: Some(WorkloadRef {
                namespace: "shop".into(),
                labels: [("app".to_string(), "cart".to_string())].into(),
                ..WorkloadRef::default()
            }),
        },
        // Envoy shows a TCP connection's original client only as its peer (there is no
        // `x-forwarded-for`): a different `remoteIp` cannot reach the plugin.
        remote_ip: if protocol == Protocol::Http && u.arbitrary()? {
            ip(u)?
        } else {
            None
        },
        sni: if u.arbitrary()? {
            Some(pick(u, SNIS)?.into())
        } else {
            None
        },
        http: http.transpose()?,
        jwt,
        ..Request::default()
    })
}

fn host() -> &'static ProxyWasmHost {
    static HOST: OnceLock<ProxyWasmHost> = OnceLock::new();
    HOST.get_or_init(|| {
        const WASM: &str = "wasm32-wasip1/plugin/palisade_proxy_wasm.wasm";
        let path = std::env::var_os("PALISADE_PROXY_WASM")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join(WASM)))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("../target").join(WASM));
        let wasm = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read the plugin {}: {e}", path.display()));
        ProxyWasmHost::new(&wasm).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(policy), Ok(requests)) = (
        policies(&mut u),
        (0..3).map(|_| request(&mut u)).collect::<Result<Vec<_>>>(),
    ) else {
        return;
    };
    let files = [SourceFile::new("fuzz.yaml", policy.as_str())];
    // A policy the grammar made invalid is refused by both (the native load is the check).
    let Ok(mut replayer) = Replayer::new(host().clone(), &files, &Options::default()) else {
        return;
    };
    for req in &requests {
        let native = replayer.decide_native(req);
        let wasm = match replayer.decide_wasm(req) {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => panic!(
                "the plugin failed where the engine decided {}\npolicy:\n{policy}\nrequest: {}\nplugin: {e}",
                native.explain(),
                serde_json::to_string(req).unwrap_or_default()
            ),
            Err(e) => panic!("unroutable: {e}"),
        };
        if !same_decision(&wasm, &native) {
            panic!(
                "wasm and native disagree\npolicy:\n{policy}\nrequest: {}\nwasm:   {}\nnative: {}",
                serde_json::to_string(req).unwrap_or_default(),
                wasm.explain(),
                native.explain()
            );
        }
    }
});
