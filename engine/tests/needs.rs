//! `Engine::needs`: which request attributes a workload's rules can test, and the property
//! that makes it safe for a host to read only those: a request without the attributes no
//! rule tests is decided exactly as the whole request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use palisade_engine::Needs;
use palisade_engine::{
    Engine, HttpAttributes, Options, Protocol, Request, SourceFile, compile, load,
};
use proptest::prelude::*;

/// The workload every test decides for.
fn labels() -> Vec<(String, String)> {
    vec![("app".to_string(), "cart".to_string())]
}

fn engine(yaml: &str) -> Engine {
    let set = load(&[SourceFile::new("p.yaml", yaml)])
        .unwrap_or_else(|e| panic!("policy does not load: {e}\n{yaml}"));
    compile(&set, &Options::default()).unwrap()
}

/// One policy in `shop` with one rule (YAML flow text).
fn policy(action: &str, namespace: &str, rule: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p-{}, namespace: {namespace}}}\nspec:\n  action: {action}\n  rules:\n  - {rule}\n",
        action.to_ascii_lowercase()
    )
}

fn needs_of(yaml: &str, protocol: Protocol) -> Needs {
    let e = engine(yaml);
    let view = e.build_view("shop", &labels());
    e.needs(&view, protocol)
}

/// The rules under test: one field each, and what each needs.
fn fields() -> Vec<(&'static str, Needs)> {
    let n = Needs::default();
    vec![
        (
            r#"to: [{operation: {paths: ["/api/*"]}}]"#,
            Needs { headers: true, ..n },
        ),
        (
            r#"to: [{operation: {methods: ["GET"], hosts: ["cart"]}}]"#,
            Needs { headers: true, ..n },
        ),
        (
            r#"when: [{key: "request.headers[x-env]", values: ["prod"]}]"#,
            Needs { headers: true, ..n },
        ),
        (
            r#"when: [{key: "request.headers[x-extra]", notValues: ["prod"]}]"#,
            Needs { headers: true, ..n },
        ),
        (
            r#"to: [{operation: {ports: ["8080"]}}]"#,
            Needs {
                destination_port: true,
                ..n
            },
        ),
        (
            r#"when: [{key: destination.port, values: ["443"]}]"#,
            Needs {
                destination_port: true,
                ..n
            },
        ),
        (
            r#"when: [{key: destination.ip, values: ["10.1.0.0/16"]}]"#,
            Needs {
                destination_ip: true,
                ..n
            },
        ),
        (
            r#"from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]"#,
            Needs {
                source_ip: true,
                ..n
            },
        ),
        (
            r#"from: [{source: {remoteIpBlocks: ["203.0.113.0/24"]}}]"#,
            Needs {
                remote_ip: true,
                ..n
            },
        ),
        (
            r#"from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]"#,
            Needs {
                principal: true,
                ..n
            },
        ),
        (
            r#"from: [{source: {notNamespaces: ["pay"]}}]"#,
            Needs {
                principal: true,
                ..n
            },
        ),
        (
            r#"when: [{key: source.serviceAccount, values: ["shop/frontend"]}]"#,
            Needs {
                principal: true,
                ..n
            },
        ),
        (
            r#"when: [{key: connection.sni, values: ["cart.shop"]}]"#,
            Needs { sni: true, ..n },
        ),
        (
            r#"from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]"#,
            Needs { jwt: true, ..n },
        ),
        (
            r#"when: [{key: "request.auth.claims[groups]", values: ["admins"]}]"#,
            Needs { jwt: true, ..n },
        ),
        (
            r#"when: [{key: "experimental.envoy.filters.a.b[c]", values: ["v"]}]"#,
            n,
        ),
        (r#"{}"#, n),
    ]
}

#[test]
fn each_field_needs_its_attribute_in_every_action() {
    for (rule, want) in fields() {
        for action in ["ALLOW", "DENY", "AUDIT"] {
            let got = needs_of(&policy(action, "shop", rule), Protocol::Http);
            assert_eq!(got, want, "{action} {rule}");
        }
    }
}

#[test]
fn no_policy_needs_nothing_and_policies_elsewhere_do_not_count() {
    assert_eq!(needs_of("", Protocol::Http), Needs::default());
    let elsewhere = policy(
        "DENY",
        "pay",
        r#"when: [{key: connection.sni, values: ["x"]}]"#,
    );
    assert_eq!(needs_of(&elsewhere, Protocol::Http), Needs::default());
    let mesh_wide = policy(
        "DENY",
        "istio-system",
        r#"when: [{key: connection.sni, values: ["x"]}]"#,
    );
    assert!(needs_of(&mesh_wide, Protocol::Http).sni);
}

#[test]
fn dry_run_rules_count_and_tcp_leaves_out_what_istio_drops() {
    let dry = policy(
        "DENY",
        "shop",
        r#"from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]"#,
    )
    .replace(
        "metadata: {",
        "metadata: {annotations: {\"istio.io/dry-run\": \"true\"}, ",
    );
    assert!(needs_of(&dry, Protocol::Http).source_ip, "{dry}");
    // An ALLOW rule with an HTTP field is dropped on TCP; a DENY rule loses the field.
    let allow = policy(
        "ALLOW",
        "shop",
        r#"{from: [{source: {ipBlocks: ["10.0.0.0/8"]}}], to: [{operation: {paths: ["/a"]}}]}"#,
    );
    assert_eq!(needs_of(&allow, Protocol::Tcp), Needs::default());
    let deny = allow.replace("ALLOW", "DENY").replace("p-allow", "p-deny");
    assert_eq!(
        needs_of(&deny, Protocol::Tcp),
        Needs {
            source_ip: true,
            ..Needs::default()
        }
    );
}

#[test]
fn tested_headers_are_named_once_each() {
    let yaml = format!(
        "{}---\n{}",
        policy(
            "ALLOW",
            "shop",
            r#"{to: [{operation: {methods: ["GET"]}}], when: [{key: "request.headers[x-env]", values: ["a"]}, {key: "request.headers[x-b]", values: ["b"]}]}"#
        ),
        policy(
            "DENY",
            "shop",
            r#"when: [{key: "request.headers[x-env]", notValues: ["c"]}]"#
        ),
    );
    let e = engine(&yaml);
    let view = e.build_view("shop", &labels());
    let mut names = e.tested_headers(&view, Protocol::Http);
    names.sort();
    assert_eq!(names, ["x-b", "x-env"]);
    assert!(
        e.tested_headers(&view, Protocol::Tcp).is_empty(),
        "TCP drops headers"
    );
}

#[test]
fn the_peer_cidrs_of_a_view_are_named_once_each_and_remote_ones_are_not() {
    let yaml = format!(
        "{}---\n{}",
        policy(
            "ALLOW",
            "shop",
            r#"{from: [{source: {ipBlocks: ["10.0.0.0/8", "192.0.2.7"], remoteIpBlocks: ["203.0.113.0/24"]}}], when: [{key: source.ip, notValues: ["10.1.0.0/16"]}]}"#
        ),
        policy(
            "DENY",
            "shop",
            r#"from: [{source: {notIpBlocks: ["10.0.0.0/8", "2001:db8::/32"]}}]"#
        ),
    );
    let e = engine(&yaml);
    let view = e.build_view("shop", &labels());
    let mut nets: Vec<String> = e
        .source_ip_cidrs(&view, Protocol::Http)
        .iter()
        .map(ToString::to_string)
        .collect();
    nets.sort();
    assert_eq!(
        nets,
        ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.7/32", "2001:db8::/32"]
    );
    let other = e.build_view("other", &labels());
    assert!(e.source_ip_cidrs(&other, Protocol::Http).is_empty());
}

/// Keeps only the named headers, as a host that groups only those builds the request.
fn keep_headers(r: &mut Request, names: &[String]) {
    if let Some(h) = r.http.as_mut() {
        h.headers.retain(|k, _| names.contains(k));
    }
}

#[test]
fn network_policies_need_the_connection() {
    let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: shop}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
    let got = needs_of(yaml, Protocol::Http);
    assert!(got.source_ip && got.destination_ip && got.destination_port && got.principal);
    assert!(!got.headers && !got.jwt && !got.sni);
}

/// The request as a host that reads only `needs` builds it: the rest absent.
fn strip(r: &Request, needs: Needs) -> Request {
    let mut s = r.clone();
    if !needs.source_ip && !needs.remote_ip {
        s.source.ip = None;
        s.source.port = None;
    }
    if !needs.remote_ip {
        s.remote_ip = None;
    }
    if !needs.destination_ip {
        s.destination.ip = None;
    }
    if !needs.destination_port {
        s.destination.port = None;
    }
    if !needs.principal {
        s.source.principal = None;
        s.mtls = None;
    }
    if !needs.sni {
        s.sni = None;
    }
    if !needs.headers && s.http.is_some() {
        s.http = Some(HttpAttributes::default());
    }
    if !needs.jwt {
        s.jwt = None;
    }
    s
}

fn request() -> impl Strategy<Value = Request> {
    let opt = |pool: &'static [&'static str]| prop::option::of(prop::sample::select(pool));
    (
        (
            prop::bool::weighted(0.2),
            opt(&["spiffe://cluster.local/ns/shop/sa/frontend", "spiffe://cluster.local/ns/pay/sa/api"]),
            opt(&["10.1.2.3", "192.168.0.7"]),
            opt(&["203.0.113.9", "10.1.2.3"]),
            prop::sample::select(&[8080u16, 443][..]),
            opt(&["cart.shop", "api.shop"]),
            prop::bool::ANY,
        ),
        (
            prop::sample::select(&["GET", "POST"][..]),
            prop::sample::select(&["/", "/api/v1", "/a"][..]),
            prop::sample::select(&["cart", "www.example.com"][..]),
            opt(&["prod", "dev"]),
            prop::option::of(prop::sample::select(&[
                r#"{"iss": "https://issuer.example", "sub": "alice", "groups": ["admins"]}"#,
                r#"{"iss": "https://other", "sub": "bob", "groups": "users"}"#,
            ][..])),
        ),
    )
        .prop_map(|((tcp, principal, ip, remote, port, sni, mtls), (method, path, host, env, jwt))| {
            let mut r = serde_json::json!({
                "protocol": if tcp { "tcp" } else { "http" },
                "destination": {"ip": "10.1.0.20", "port": port, "workload": {"namespace": "shop", "labels": {"app": "cart"}}},
                "source": {"port": 40000},
                "mtls": mtls,
            });
            if !tcp {
                r["http"] = serde_json::json!({"method": method, "path": path, "host": host, "headers": {}});
                if let Some(env) = env {
                    r["http"]["headers"]["x-env"] = env.into();
                }
                r["http"]["headers"]["x-extra"] = "prod".into();
                if let Some(jwt) = jwt {
                    r["jwt"] = serde_json::from_str::<serde_json::Value>(jwt).unwrap();
                }
            }
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
            serde_json::from_value(r).unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Two random rules (any fields of the table, any actions): the decision of the request
    /// without what the view does not need equals the decision of the whole request.
    #[test]
    fn leaving_out_what_is_not_needed_decides_the_same(
        a in 0..fields().len(),
        b in 0..fields().len(),
        actions in prop::sample::select(&[("ALLOW", "DENY"), ("ALLOW", "AUDIT"), ("DENY", "AUDIT"), ("ALLOW", "ALLOW")][..]),
        req in request(),
    ) {
        let fields = fields();
        let yaml = format!(
            "{}---\n{}",
            policy(actions.0, "shop", fields[a].0),
            policy(actions.1, "shop", fields[b].0).replace("name: p-", "name: q-"),
        );
        let e = engine(&yaml);
        let view = e.build_view("shop", &labels());
        let needs = e.needs(&view, req.protocol);
        let whole = e.decide_in_view(&view, &req);
        let mut part_req = strip(&req, needs);
        keep_headers(&mut part_req, &e.tested_headers(&view, req.protocol));
        let part = e.decide_in_view(&view, &part_req);
        prop_assert_eq!(whole, part, "{}\n{:?}", yaml, needs);
    }
}
