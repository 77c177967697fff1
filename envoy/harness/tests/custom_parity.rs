//! CUSTOM (external authorization) in the real Envoy: the Palisade plugin against Envoy's own
//! `ext_authz` and RBAC filters configured as Istio configures a CUSTOM policy (an RBAC filter
//! whose DENY `shadow_rules` mark the requests to check, with `shadow_rules_stat_prefix:
//! istio_ext_authz_`; an `ext_authz` filter enabled by the metadata
//! `istio_ext_authz_shadow_effective_policy_id` starting with `istio-ext-authz-<provider>`; the
//! DENY policy's RBAC filter after them), on the same requests, with a stub authorizer that
//! follows Istio's `samples/extauthz` logic (`palisade_envoy_harness::extauthz`).
//!
//! Both sides of each scenario call the same stub through the same cluster, named as Istio
//! names it (`outbound|<port>||<host>`). Every request's status, body and
//! `x-ext-authz-check-result` header must be equal, and so must the number of checks the
//! provider received for it. Scenarios: the HTTP API and the gRPC API, an unreachable provider
//! and a provider that never answers (timeout), each with `failOpen` false and true and a
//! `statusOnError`; TCP with a gRPC provider.
//!
//! The Envoy side's configuration follows Istio's golden files (`custom-http-provider-out2.yaml`,
//! `custom-grpc-provider-out1/2.yaml`, `tcp/custom-both-http-tcp-out1/2.yaml` of
//! `pilot/pkg/security/authz/builder/testdata`, Istio master 2026-08), written here for the
//! scenario's provider.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use palisade_envoy_harness::bootstrap::{
    EchoServer, ListenerKind, ListenerSpec, UPSTREAM_RESULT_HEADER, bootstrap_with_clusters,
};
use palisade_envoy_harness::certs::{ClientIdentity, Pki};
use palisade_envoy_harness::client::{HttpRequest, Transport, probe_tcp, send_http_full};
use palisade_envoy_harness::envoy::{EnvoyProcess, find_or_install_envoy, validate_config};
use palisade_envoy_harness::extauthz::{self, RESULT_HEADER, Stub};
use palisade_envoy_harness::plugin;
use serde_json::{Value, json};

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn free_port() -> u16 {
    palisade_envoy_harness::shop::free_port().unwrap()
}

/// The policies: CUSTOM on `/custom*` asking `provider`, DENY on `/custom/admin`.
fn policies(provider: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: cart}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules:
  - to: [{{operation: {{paths: ["/custom*"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: cart}}}}
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/custom/admin"]}}}}]
"#
    )
}

/// The TCP policy: CUSTOM with one empty rule (every connection) asking `provider`.
fn tcp_policy(provider: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: ext, namespace: shop}}\nspec:\n  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules: [{{}}]\n"
    )
}

/// Where a provider's cluster points.
#[derive(Clone, Copy)]
enum Upstream {
    /// The HTTP stub.
    Http,
    /// The gRPC stub.
    Grpc,
    /// Nothing listens there.
    Unreachable,
    /// Accepts and never answers.
    Silent,
}

/// A scenario: the provider as meshConfig declares it (the plugin's `extensionProviders`
/// entry), where its cluster points, and whether it is for TCP.
struct Scenario {
    name: &'static str,
    provider: Value,
    upstream: Upstream,
    tcp: bool,
}

impl Scenario {
    fn provider_name(&self) -> &str {
        self.provider["name"].as_str().unwrap()
    }
    fn grpc(&self) -> bool {
        self.provider.get("envoyExtAuthzGrpc").is_some()
    }
    fn api(&self) -> &Value {
        self.provider
            .get("envoyExtAuthzGrpc")
            .or_else(|| self.provider.get("envoyExtAuthzHttp"))
            .unwrap()
    }
    fn host(&self) -> String {
        let service = self.api()["service"].as_str().unwrap();
        service.rsplit('/').next().unwrap().to_string()
    }
    fn cluster(&self) -> String {
        format!("outbound|{}||{}", self.api()["port"], self.host())
    }
    fn timeout(&self) -> String {
        self.api()
            .get("timeout")
            .and_then(Value::as_str)
            .unwrap_or("600s")
            .to_string()
    }
    fn fail_open(&self) -> bool {
        self.api().get("failOpen").and_then(Value::as_bool) == Some(true)
    }
    fn status_on_error(&self) -> Option<u64> {
        self.api()
            .get("statusOnError")
            .and_then(Value::as_str)
            .map(|s| s.parse().unwrap())
    }

    /// The Envoy filter Istio's `generateFilterMatcher` writes for this provider.
    fn enabled_metadata(&self, rbac_filter: &str) -> Value {
        json!({
            "filter": rbac_filter,
            "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
            "value": {"string_match": {"prefix": format!("istio-ext-authz-{}", self.provider_name())}},
        })
    }

    fn grpc_service(&self) -> Value {
        let cluster = self.cluster();
        json!({
            "envoy_grpc": {"cluster_name": cluster, "authority": cluster.replace('|', "_.")},
            "timeout": self.timeout(),
        })
    }

    /// The reference HTTP filters: Istio's CUSTOM pair, then the DENY policy's RBAC filter.
    fn reference_http(&self) -> Vec<Value> {
        let p = self.provider_name();
        let shadow = json!({
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "shadow_rules": {"action": "DENY", "policies": {
                    format!("istio-ext-authz-{p}-ns[shop]-policy[ext]-rule[0]"): {
                        "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [
                            {"url_path": {"path": {"prefix": "/custom"}}}]}}]}}],
                        "principals": [{"and_ids": {"ids": [{"any": true}]}}],
                    },
                }},
                "shadow_rules_stat_prefix": "istio_ext_authz_",
            },
        });
        let mut ext = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "failure_mode_allow": self.fail_open(),
            "transport_api_version": "V3",
            "filter_enabled_metadata": self.enabled_metadata("envoy.filters.http.rbac"),
        });
        if let Some(code) = self.status_on_error() {
            ext["status_on_error"] = json!({"code": code});
        }
        let patterns = |key: &str| -> Option<Value> {
            let list = self.api().get(key)?.as_array()?;
            let p: Vec<Value> = list
                .iter()
                .map(|h| json!({"exact": h, "ignore_case": true}))
                .collect();
            Some(json!({"patterns": p}))
        };
        if self.grpc() {
            ext["grpc_service"] = self.grpc_service();
        } else {
            let mut service = json!({
                "server_uri": {"uri": format!("http://{}", self.host()), "cluster": self.cluster(), "timeout": self.timeout()},
                "path_prefix": self.api().get("pathPrefix").cloned().unwrap_or(json!("")),
            });
            let mut response = json!({});
            if let Some(p) = patterns("headersToUpstreamOnAllow") {
                response["allowed_upstream_headers"] = p;
            }
            if let Some(p) = patterns("headersToDownstreamOnDeny") {
                response["allowed_client_headers"] = p;
            }
            service["authorization_response"] = response;
            ext["http_service"] = service;
            if let Some(p) = patterns("includeRequestHeadersInCheck") {
                ext["allowed_headers"] = p;
            }
        }
        let ext = json!({"name": "envoy.filters.http.ext_authz", "typed_config": ext});
        let deny = json!({
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "DENY", "policies": {
                    "ns[shop]-policy[deny-admin]-rule[0]": {
                        "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [
                            {"url_path": {"path": {"exact": "/custom/admin"}}}]}}]}}],
                        "principals": [{"and_ids": {"ids": [{"any": true}]}}],
                    },
                }},
            },
        });
        vec![shadow, ext, deny]
    }

    /// The reference network filters: the network RBAC shadow filter and `ext_authz`.
    fn reference_tcp(&self) -> Vec<Value> {
        let p = self.provider_name();
        vec![
            json!({
                "name": "envoy.filters.network.rbac",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
                    "stat_prefix": "tcp.",
                    "shadow_rules": {"action": "DENY", "policies": {
                        format!("istio-ext-authz-{p}-ns[shop]-policy[ext]-rule[0]"): {
                            "permissions": [{"and_rules": {"rules": [{"any": true}]}}],
                            "principals": [{"and_ids": {"ids": [{"any": true}]}}],
                        },
                    }},
                    "shadow_rules_stat_prefix": "istio_ext_authz_",
                },
            }),
            json!({
                "name": "envoy.filters.network.ext_authz",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
                    "stat_prefix": "tcp.",
                    "failure_mode_allow": self.fail_open(),
                    "transport_api_version": "V3",
                    "grpc_service": self.grpc_service(),
                    "filter_enabled_metadata": self.enabled_metadata("envoy.filters.network.rbac"),
                },
            }),
        ]
    }

    fn plugin_config(&self) -> Value {
        let policy = if self.tcp {
            tcp_policy(self.provider_name())
        } else {
            policies(self.provider_name())
        };
        json!({
            "policy": policy,
            "workload": {"namespace": "shop", "labels": {"app": "cart"}},
            "extensionProviders": [self.provider],
        })
    }

    fn cluster_config(&self, stubs: &Stubs) -> Value {
        let port = match self.upstream {
            Upstream::Http => stubs.http.port,
            Upstream::Grpc => stubs.grpc.port,
            Upstream::Unreachable => stubs.unreachable,
            Upstream::Silent => stubs.silent.port,
        };
        let mut c = json!({
            "name": self.cluster(),
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": self.cluster(),
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
            },
        });
        if self.grpc() {
            c["typed_extension_protocol_options"] = json!({
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            });
        }
        c
    }
}

struct Stubs {
    http: Stub,
    grpc: Stub,
    silent: Stub,
    unreachable: u16,
}

fn scenarios() -> Vec<Scenario> {
    let http_api = |name: &str, service: &str, extra: Value| {
        let mut api = json!({
            "service": service,
            "port": 8000,
            "pathPrefix": "/check",
            "includeRequestHeadersInCheck": ["x-ext-authz"],
            "headersToUpstreamOnAllow": ["x-ext-authz-check-result"],
            "headersToDownstreamOnDeny": ["x-ext-authz-check-result"],
            "timeout": "10s",
        });
        for (k, v) in extra.as_object().unwrap() {
            api[k] = v.clone();
        }
        json!({"name": name, "envoyExtAuthzHttp": api})
    };
    let grpc_api = |name: &str, service: &str, extra: Value| {
        let mut api = json!({"service": service, "port": 9000, "timeout": "10s"});
        for (k, v) in extra.as_object().unwrap() {
            api[k] = v.clone();
        }
        json!({"name": name, "envoyExtAuthzGrpc": api})
    };
    let s = |name, provider, upstream, tcp| Scenario {
        name,
        provider,
        upstream,
        tcp,
    };
    vec![
        s(
            "HTTP API",
            http_api(
                "ext-authz-http",
                "foo/ext-authz-http.foo.svc.cluster.local",
                json!({}),
            ),
            Upstream::Http,
            false,
        ),
        s(
            "gRPC API",
            grpc_api(
                "ext-authz-grpc",
                "foo/ext-authz-grpc.foo.svc.cluster.local",
                json!({}),
            ),
            Upstream::Grpc,
            false,
        ),
        s(
            "HTTP, unreachable, closed, statusOnError 503",
            http_api(
                "down-closed",
                "down-closed.local",
                json!({"statusOnError": "503"}),
            ),
            Upstream::Unreachable,
            false,
        ),
        s(
            "HTTP, unreachable, failOpen",
            http_api("down-open", "down-open.local", json!({"failOpen": true})),
            Upstream::Unreachable,
            false,
        ),
        s(
            "HTTP, timeout 0.3s, closed (Envoy's default 403)",
            http_api("slow-http", "slow-http.local", json!({"timeout": "0.3s"})),
            Upstream::Silent,
            false,
        ),
        s(
            "gRPC, timeout 0.3s, closed, statusOnError 401",
            grpc_api(
                "slow-grpc",
                "slow-grpc.local",
                json!({"timeout": "0.3s", "statusOnError": "401"}),
            ),
            Upstream::Silent,
            false,
        ),
        s(
            "gRPC, timeout 0.3s, failOpen",
            grpc_api(
                "slow-grpc-open",
                "slow-grpc-open.local",
                json!({"timeout": "0.3s", "failOpen": true}),
            ),
            Upstream::Silent,
            false,
        ),
        s(
            "gRPC, unreachable, closed",
            grpc_api("down-grpc", "down-grpc.local", json!({})),
            Upstream::Unreachable,
            false,
        ),
        s(
            "TCP, gRPC API",
            grpc_api(
                "tcp-grpc",
                "foo/ext-authz-grpc.foo.svc.cluster.local",
                json!({}),
            ),
            Upstream::Grpc,
            true,
        ),
        s(
            "TCP, gRPC unreachable, failOpen",
            grpc_api(
                "tcp-down-open",
                "tcp-down-open.local",
                json!({"failOpen": true}),
            ),
            Upstream::Unreachable,
            true,
        ),
    ]
}

/// An HTTP probe: a name, the client identity (None: plaintext), method, path, headers.
struct Probe {
    name: &'static str,
    client: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

fn probes() -> Vec<Probe> {
    let p = |name, client, method, path, headers| Probe {
        name,
        client,
        method,
        path,
        headers,
    };
    let allow = vec![("x-ext-authz", "allow")];
    vec![
        p("no CUSTOM rule matches", None, "GET", "/public", vec![]),
        p("CUSTOM matches, no header", None, "GET", "/custom", vec![]),
        p(
            "CUSTOM matches, x-ext-authz: allow",
            None,
            "GET",
            "/custom",
            allow.clone(),
        ),
        p(
            "CUSTOM matches, x-ext-authz: deny",
            None,
            "GET",
            "/custom",
            vec![("x-ext-authz", "deny")],
        ),
        p(
            "POST under the prefix, allowed",
            None,
            "POST",
            "/custom/items?x=1",
            allow.clone(),
        ),
        p(
            "the provider allows, the DENY policy still denies",
            None,
            "GET",
            "/custom/admin",
            allow.clone(),
        ),
        p(
            "adversarial: dot segments normalised into the prefix",
            None,
            "GET",
            "/public/../custom",
            vec![],
        ),
        p(
            "adversarial: case differs, no CUSTOM match",
            None,
            "GET",
            "/CUSTOM",
            vec![],
        ),
        p(
            "adversarial: the header twice",
            None,
            "GET",
            "/custom",
            vec![("x-ext-authz", "deny"), ("x-ext-authz", "allow")],
        ),
        p(
            "mTLS sa/a without the header",
            Some("spiffe://cluster.local/ns/x/sa/a"),
            "GET",
            "/custom",
            vec![],
        ),
        p(
            "mTLS sa/ab without the header",
            Some("spiffe://cluster.local/ns/x/sa/ab"),
            "GET",
            "/custom",
            vec![],
        ),
    ]
}

/// What a request got: status, body, the stub's result header, checks the provider received.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    body: String,
    result: Option<String>,
    /// The provider's header as the route saw it in the request (set on allow).
    upstream: Option<String>,
    checks: usize,
}

#[test]
fn the_plugin_decides_custom_as_envoys_ext_authz_and_rbac_filters() {
    let envoy = find_or_install_envoy(repo_root()).unwrap();
    let wasm = plugin::build_plugin(repo_root()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let stubs = Stubs {
        http: extauthz::start_http().unwrap(),
        grpc: extauthz::start_grpc().unwrap(),
        silent: extauthz::start_black_hole().unwrap(),
        unreachable: free_port(),
    };
    let scenarios = scenarios();
    let addr = Ipv4Addr::new(127, 0, 0, 1);
    let mut listeners = Vec::new();
    let mut clusters: Vec<Value> = Vec::new();
    let mut ports = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        let (reference, plugin_side) = (free_port(), free_port());
        ports.push((reference, plugin_side));
        let (r, p) = if s.tcp {
            (
                ListenerKind::Tcp(s.reference_tcp()),
                ListenerKind::Tcp(vec![plugin::network_filter(&wasm, &s.plugin_config())]),
            )
        } else {
            (
                ListenerKind::Http(s.reference_http()),
                ListenerKind::Http(vec![plugin::http_filter(&wasm, &s.plugin_config())]),
            )
        };
        listeners.push(ListenerSpec {
            name: format!("s{i}_envoy"),
            address: addr,
            port: reference,
            kind: r,
        });
        listeners.push(ListenerSpec {
            name: format!("s{i}_plugin"),
            address: addr,
            port: plugin_side,
            kind: p,
        });
        let c = s.cluster_config(&stubs);
        if !clusters.iter().any(|x| x["name"] == c["name"]) {
            clusters.push(c);
        }
    }
    let cfg = dir.path().join("envoy.json");
    let echo = EchoServer::start().unwrap().port;
    let boot = bootstrap_with_clusters(&listeners, &pki, echo, &clusters);
    std::fs::write(&cfg, serde_json::to_vec_pretty(&boot).unwrap()).unwrap();
    validate_config(&envoy, &cfg).unwrap();
    let proc = EnvoyProcess::start(&envoy, &cfg, dir.path()).unwrap();

    let identities: std::collections::BTreeMap<&str, Arc<ClientIdentity>> = [
        "spiffe://cluster.local/ns/x/sa/a",
        "spiffe://cluster.local/ns/x/sa/ab",
    ]
    .into_iter()
    .map(|u| (u, pki.client(u).unwrap()))
    .collect();
    let transport = |client: Option<&str>| match client {
        None => Transport::Plain,
        Some(u) => Transport::Tls {
            sni: None,
            client: Some(Arc::clone(&identities[u])),
        },
    };
    let checks = || stubs.http.count() + stubs.grpc.count();

    let mut differences = Vec::new();
    let mut compared = 0;
    let mut upstream_allowed = 0;
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    for (s, (reference, plugin_side)) in scenarios.iter().zip(&ports) {
        if s.tcp {
            for client in [
                None,
                Some("spiffe://cluster.local/ns/x/sa/a"),
                Some("spiffe://cluster.local/ns/x/sa/ab"),
            ] {
                let mut seen = Vec::new();
                for port in [*reference, *plugin_side] {
                    let before = checks();
                    // A connection closed during the TLS handshake is closed too.
                    let open = probe_tcp(None, SocketAddr::from((addr, port)), &transport(client))
                        .unwrap_or(false);
                    seen.push((open, checks() - before));
                }
                compared += 1;
                *outcomes
                    .entry(format!("tcp {}", if seen[0].0 { "open" } else { "closed" }))
                    .or_default() += 1;
                if seen[0] != seen[1] {
                    differences.push(format!(
                        "{} / {client:?}: envoy {:?}, plugin {:?}",
                        s.name, seen[0], seen[1]
                    ));
                }
            }
            continue;
        }
        for p in probes() {
            let mut seen = Vec::new();
            for port in [*reference, *plugin_side] {
                let req = HttpRequest {
                    method: p.method.into(),
                    host: "cart.shop.svc.cluster.local".into(),
                    path: p.path.into(),
                    headers: p
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                };
                let before = checks();
                let r = send_http_full(
                    None,
                    SocketAddr::from((addr, port)),
                    &transport(p.client),
                    &req,
                )
                .unwrap_or_else(|e| panic!("{} / {}: {e}\n{}", s.name, p.name, proc.log_tail()));
                seen.push(Seen {
                    status: r.status,
                    body: r.body.clone(),
                    result: r.header(RESULT_HEADER).map(String::from),
                    upstream: r.header(UPSTREAM_RESULT_HEADER).map(String::from),
                    checks: checks() - before,
                });
            }
            compared += 1;
            upstream_allowed += usize::from(seen[0].upstream.as_deref() == Some("allowed"));
            *outcomes
                .entry(format!("http {}", seen[0].status))
                .or_default() += 1;
            if seen[0] != seen[1] {
                differences.push(format!(
                    "{} / {}:\n  envoy  {:?}\n  plugin {:?}",
                    s.name, p.name, seen[0], seen[1]
                ));
            }
        }
    }
    eprintln!("CUSTOM parity: {compared} requests compared, outcomes {outcomes:?}");
    assert!(
        differences.is_empty(),
        "{} of {compared} differ:\n{}\n{}",
        differences.len(),
        differences.join("\n"),
        proc.log_tail()
    );
    // The comparison must exercise every outcome: allowed, denied by the provider, by the DENY
    // policy, failed closed with each statusOnError, failed open, and TCP both ways.
    for status in [200, 403, 503, 401] {
        assert!(
            outcomes.contains_key(&format!("http {status}")),
            "no request got {status}: {outcomes:?}"
        );
    }
    assert!(outcomes.contains_key("tcp open") && outcomes.contains_key("tcp closed"));
    assert!(
        upstream_allowed > 0,
        "no allowed request carried the provider's header upstream"
    );
    // The plugin's counters. Calls: 9 probes match the CUSTOM rule in each of the 8 HTTP
    // scenarios (every `/custom` probe, `POST /custom/items`, `/custom/admin`,
    // `/public/../custom`), and 3 connections in each of the 2 TCP ones: 78. Errors: every call
    // of the unreachable (HTTP 2 × 9, gRPC 9, TCP 3) and silent (3 × 9) scenarios: 57.
    // Timeouts: the silent ones, 27.
    let stats = send_http_full(
        None,
        SocketAddr::from(([127, 0, 0, 1], proc.admin_port)),
        &Transport::Plain,
        &HttpRequest {
            method: "GET".into(),
            host: "admin".into(),
            path: "/stats?filter=palisade.ext_authz".into(),
            headers: vec![],
        },
    )
    .unwrap()
    .body;
    let counter = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("wasmcustom.palisade.ext_authz.{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no counter {name} in:\n{stats}"))
    };
    assert_eq!(
        (counter("calls"), counter("errors"), counter("timeouts")),
        (78, 57, 27),
        "{stats}\n{}",
        proc.log_tail()
    );
    // 8 HTTP scenarios × 11 probes + 2 TCP scenarios × 3 clients.
    assert_eq!(compared, 94);
}
