//! The plugin in a real Envoy 1.40 (V8), on loopback: HTTP allow and deny (status, body,
//! `x-palisade-policy`, `%RESPONSE_CODE_DETAILS%`), an mTLS principal rule with SPIFFE client
//! certificates made here, a JWT verified by `jwt_authn`, `x-forwarded-for` with a trusted
//! hop, dry-run, the workload read from Istio-style node metadata, TCP allow and deny, the
//! counters at `/stats/prometheus`, and a bad configuration refused with our reason logged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_envoy_harness::bootstrap::{EchoServer, ListenerKind, ListenerSpec, bootstrap};
use palisade_envoy_harness::certs::Pki;
use palisade_envoy_harness::client::{
    HttpRequest, HttpResponse, Transport, probe_tcp, send_http_full,
};
use palisade_envoy_harness::envoy::{EnvoyProcess, find_or_install_envoy, validate_config};
use palisade_envoy_harness::jwt::{EXPIRY, mint};
use palisade_envoy_harness::plugin::{build_plugin, http_filter, network_filter};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const HTTP_POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-access, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - to: [{operation: {methods: ["GET"], paths: ["/public*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
    to: [{operation: {paths: ["/orders*"]}}]
  - from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]
    to: [{operation: {paths: ["/jwt*"]}}]
    when: [{key: "request.auth.claims[group]", values: ["admins"]}]
  - from: [{source: {remoteIpBlocks: ["203.0.113.0/24"]}}]
    to: [{operation: {paths: ["/xff*"]}}]
"#;

const TCP_POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-access, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/cart"]}}]
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(path: &str) -> HttpRequest {
    request("GET", path, &[])
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        host: "cart.shop".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Adds an access log with `%RESPONSE_CODE_DETAILS%` to every HTTP connection manager.
fn add_access_log(config: &mut Value, file: &Path) {
    for l in config["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
    {
        for chain in l["filter_chains"].as_array_mut().unwrap() {
            for f in chain["filters"].as_array_mut().unwrap() {
                if f["name"] == "envoy.filters.network.http_connection_manager" {
                    f["typed_config"]["access_log"] = json!([{
                        "name": "envoy.access_loggers.file",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                            "path": file.display().to_string(),
                            "log_format": {"text_format_source": {"inline_string":
                                "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS%\n"}},
                        },
                    }]);
                }
            }
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    envoy: EnvoyProcess,
    pki: Pki,
    access_log: PathBuf,
    http: SocketAddr,
    dry_run: SocketAddr,
    tcp: SocketAddr,
}

impl Setup {
    fn send(&self, to: SocketAddr, transport: &Transport, req: &HttpRequest) -> HttpResponse {
        send_http_full(
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
            to,
            transport,
            req,
        )
        .unwrap()
    }

    fn mtls(&self, spiffe: &str) -> Transport {
        Transport::Tls {
            sni: Some("cart.shop.svc".into()),
            client: Some(self.pki.client(spiffe).unwrap()),
        }
    }

    fn admin(&self, method: &str, path: &str) -> String {
        let to = SocketAddr::from(([127, 0, 0, 1], self.envoy.admin_port));
        let req = HttpRequest {
            method: method.into(),
            host: "admin".into(),
            path: path.into(),
            headers: Vec::new(),
        };
        send_http_full(None, to, &Transport::Plain, &req)
            .unwrap()
            .body
    }
}

fn start(envoy: &Path, wasm: &Path) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let addr = Ipv4Addr::LOCALHOST;
    let (http, dry_run, tcp) = (free_port(), free_port(), free_port());
    // The HTTP listener reads its workload from node metadata, as under Istio.
    let http_config = json!({"policy": HTTP_POLICY});
    let dry_run_config = json!({
        "policy": HTTP_POLICY, "mode": "dry-run",
        "workload": {"namespace": "shop", "labels": {"app": "cart"}},
    });
    let tcp_config =
        json!({"policy": TCP_POLICY, "workload": {"namespace": "shop", "labels": {"app": "db"}}});
    let listeners = vec![
        ListenerSpec {
            name: "plugin_http".into(),
            address: addr,
            port: http,
            kind: ListenerKind::Http(vec![http_filter(wasm, &http_config)]),
        },
        ListenerSpec {
            name: "plugin_dry_run".into(),
            address: addr,
            port: dry_run,
            kind: ListenerKind::Http(vec![http_filter(wasm, &dry_run_config)]),
        },
        ListenerSpec {
            name: "plugin_tcp".into(),
            address: addr,
            port: tcp,
            kind: ListenerKind::Tcp(vec![network_filter(wasm, &tcp_config)]),
        },
    ];
    let mut config = bootstrap(&listeners, &pki, EchoServer::start().unwrap().port);
    config["node"] = json!({
        "id": "cart-v1-abc.shop", "cluster": "cart.shop",
        "metadata": {
            "NAMESPACE": "shop", "WORKLOAD_NAME": "cart-v1",
            "SERVICE_ACCOUNT": "cart", "LABELS": {"app": "cart", "version": "v1"},
        },
    });
    let access_log = dir.path().join("access.log");
    add_access_log(&mut config, &access_log);
    let file = dir.path().join("envoy.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let envoy = EnvoyProcess::start(envoy, &file, dir.path()).unwrap();
    Setup {
        _dir: dir,
        envoy,
        pki,
        access_log,
        http: (addr, http).into(),
        dry_run: (addr, dry_run).into(),
        tcp: (addr, tcp).into(),
    }
}

#[test]
fn the_plugin_enforces_in_a_real_envoy() {
    let t0 = Instant::now();
    let root = repo_root();
    let envoy = find_or_install_envoy(&root).unwrap();
    let wasm = build_plugin(&root).unwrap();
    let size = std::fs::metadata(&wasm).unwrap().len();
    println!(
        "plugin: {} ({size} bytes, {:.0} KiB)",
        wasm.display(),
        size as f64 / 1024.0
    );
    assert!(size < 1024 * 1024, "the plugin is {size} bytes, over 1 MiB");

    let s = start(&envoy, &wasm);
    println!("envoy ready after {:?}", t0.elapsed());
    s.admin("POST", "/logging?wasm=info");
    let plain = Transport::Plain;

    // Allowed by the GET /public rule; the route answers "ok".
    let r = s.send(s.http, &plain, &get("/public/items"));
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{r:?}");
    assert_eq!(r.header("x-palisade-policy"), None);

    // No ALLOW rule matches a POST: denied naming no policy.
    let r = s.send(s.http, &plain, &request("POST", "/public/items", &[]));
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, "RBAC: access denied"),
        "{r:?}"
    );
    assert_eq!(r.header("x-palisade-policy"), Some("none"));

    // The DENY policy wins and is named.
    let r = s.send(s.http, &plain, &get("/admin/users"));
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        r.header("x-palisade-policy"),
        Some("ns[shop]-policy[deny-admin]-rule[0]")
    );

    // mTLS principal rule: the frontend's SPIFFE certificate, another identity, and none.
    let frontend = s.mtls("spiffe://cluster.local/ns/shop/sa/frontend");
    let r = s.send(s.http, &frontend, &get("/orders/1"));
    assert_eq!(r.status, 200, "frontend over mTLS: {r:?}");
    let other = s.mtls("spiffe://cluster.local/ns/shop/sa/other");
    assert_eq!(s.send(s.http, &other, &get("/orders/1")).status, 403);
    assert_eq!(s.send(s.http, &plain, &get("/orders/1")).status, 403);
    let tls_only = Transport::Tls {
        sni: None,
        client: None,
    };
    assert_eq!(s.send(s.http, &tls_only, &get("/orders/1")).status, 403);

    // A JWT verified by jwt_authn: requestPrincipals `iss/sub` and a claim.
    let token = |group: &str| {
        mint(&json!({"iss": "https://issuer.example", "sub": "alice", "group": group, "exp": EXPIRY}))
            .unwrap()
    };
    let bearer = format!("Bearer {}", token("admins"));
    let r = s.send(
        s.http,
        &plain,
        &request("GET", "/jwt", &[("authorization", &bearer)]),
    );
    assert_eq!(r.status, 200, "JWT alice/admins: {r:?}");
    let bearer = format!("Bearer {}", token("users"));
    let r = s.send(
        s.http,
        &plain,
        &request("GET", "/jwt", &[("authorization", &bearer)]),
    );
    assert_eq!(r.status, 403, "JWT alice/users: {r:?}");
    assert_eq!(s.send(s.http, &plain, &get("/jwt")).status, 403, "no JWT");

    // remote.ip on a sidecar-shaped listener (use_remote_address: false): Envoy takes the
    // rightmost x-forwarded-for address, and the plugin reads it from source.address.
    let xff = |v: &str| request("GET", "/xff", &[("x-forwarded-for", v)]);
    assert_eq!(
        s.send(s.http, &plain, &xff("10.0.0.1, 203.0.113.7")).status,
        200
    );
    assert_eq!(
        s.send(s.http, &plain, &xff("203.0.113.7, 10.0.0.1")).status,
        403
    );
    assert_eq!(s.send(s.http, &plain, &get("/xff")).status, 403);

    // Dry-run: the same denials pass.
    assert_eq!(s.send(s.dry_run, &plain, &get("/admin/users")).status, 200);
    assert_eq!(
        s.send(s.dry_run, &plain, &request("POST", "/x", &[]))
            .status,
        200
    );

    // TCP: decided on the first bytes, once the peer certificate is known.
    let cart = s.mtls("spiffe://cluster.local/ns/shop/sa/cart");
    assert!(
        probe_tcp(None, s.tcp, &cart).unwrap(),
        "cart may reach the db"
    );
    assert!(
        !probe_tcp(None, s.tcp, &frontend).unwrap(),
        "frontend may not"
    );
    assert!(
        !probe_tcp(None, s.tcp, &plain).unwrap(),
        "plaintext may not"
    );

    // %RESPONSE_CODE_DETAILS% names the deciding policy, as Envoy's RBAC filter does.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while Instant::now() < deadline && !log.contains("/xff 403") {
        std::thread::sleep(Duration::from_millis(100));
        log = std::fs::read_to_string(&s.access_log).unwrap_or_default();
    }
    println!("access log:\n{log}");
    assert!(
        log.contains(
            "/admin/users 403 rbac_access_denied_matched_policy[ns[shop]-policy[deny-admin]-rule[0]]"
        ),
        "{log}"
    );
    assert!(
        log.contains("/public/items 403 rbac_access_denied_matched_policy[none]"),
        "{log}"
    );

    // The counters, as Prometheus sees them.
    let prom = s.admin("GET", "/stats/prometheus");
    let ours: Vec<&str> = prom
        .lines()
        .filter(|l| l.contains("palisade") && !l.starts_with('#'))
        .collect();
    println!("metrics:\n{}", ours.join("\n"));
    let value = |name: &str| -> u64 {
        ours.iter()
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` at /stats/prometheus:\n{prom}"))
    };
    // allowed: /public, /orders (frontend), /jwt, /xff, tcp cart.
    assert_eq!(value("palisade_allowed"), 5);
    // denied: POST /public, /admin/users, /orders as `other`, plaintext and TLS without a
    // certificate, /jwt as alice/users and without a token, /xff with the wrong rightmost and
    // without the header (9 HTTP), tcp frontend and plaintext (2). The dry-run listener's two
    // denials count as `shadow_denied`, never as `denied`.
    assert_eq!(value("palisade_denied"), 11);
    assert_eq!(value("palisade_shadow_denied"), 2);

    // One info line per denial, naming the policy (wasm info logging turned on above).
    let tail = s.envoy.log_tail();
    assert!(
        tail.contains("palisade: denied connection to port"),
        "{tail}"
    );
    assert!(tail.contains("by policy none"), "{tail}");
    println!("test ran in {:?}", t0.elapsed());
}

#[test]
fn a_bad_configuration_is_refused_with_the_reason_logged() {
    let root = repo_root();
    let envoy = find_or_install_envoy(&root).unwrap();
    let wasm = build_plugin(&root).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let bad = json!({
        "policy": "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec: {action: MAYBE}\n",
        "workload": {"namespace": "shop"},
    });
    let listeners = vec![ListenerSpec {
        name: "bad".into(),
        address: Ipv4Addr::LOCALHOST,
        port: free_port(),
        kind: ListenerKind::Http(vec![http_filter(&wasm, &bad)]),
    }];
    let file = dir.path().join("envoy.json");
    let config = bootstrap(&listeners, &pki, 9);
    std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let validated = validate_config(&envoy, &file);
    let started = EnvoyProcess::start(&envoy, &file, dir.path());
    let err = started
        .expect_err("envoy must refuse the configuration")
        .to_string();
    println!("validate: {validated:?}\nstart: {err}");
    assert!(
        err.contains("palisade: configuration refused: invalid policy"),
        "{err}"
    );
    assert!(err.contains("MAYBE"), "{err}");
}
