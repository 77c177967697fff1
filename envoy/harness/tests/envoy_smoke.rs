//! Envoy install, bootstrap validation and the clients, against a deny-all and an allow-all
//! listener, and the `jwt_authn` filter feeding Istio-style JWT metadata matchers (no engine
//! involved).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use palisade_envoy_harness::bootstrap::{EchoServer, ListenerKind, ListenerSpec, bootstrap};
use palisade_envoy_harness::certs::Pki;
use palisade_envoy_harness::client::{HttpRequest, Transport, probe_tcp, send_http};
use palisade_envoy_harness::envoy::{EnvoyProcess, find_or_install_envoy, validate_config};
use palisade_envoy_harness::jwt::{EXPIRY, mint};
use serde_json::json;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn envoy_enforces_deny_all_and_allow_all_over_every_transport() {
    let envoy = find_or_install_envoy(repo_root()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let deny_all_tcp = json!({"name": "envoy.filters.network.rbac", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
        "rules": {}, "statPrefix": "tcp."}});
    let deny_all_http = json!({"name": "envoy.filters.http.rbac", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", "rules": {}}});
    let addr = Ipv4Addr::new(127, 0, 0, 1);
    let base = 20000 + (std::process::id() % 20000) as u16;
    let listeners = vec![
        ListenerSpec {
            name: "http_deny".into(),
            address: addr,
            port: base,
            kind: ListenerKind::Http(vec![deny_all_http]),
        },
        ListenerSpec {
            name: "http_allow".into(),
            address: addr,
            port: base + 1,
            kind: ListenerKind::Http(vec![]),
        },
        ListenerSpec {
            name: "tcp_deny".into(),
            address: addr,
            port: base + 2,
            kind: ListenerKind::Tcp(vec![deny_all_tcp]),
        },
        ListenerSpec {
            name: "tcp_allow".into(),
            address: addr,
            port: base + 3,
            kind: ListenerKind::Tcp(vec![]),
        },
    ];
    let cfg = dir.path().join("envoy.json");
    std::fs::write(
        &cfg,
        serde_json::to_vec_pretty(&bootstrap(
            &listeners,
            &pki,
            EchoServer::start().unwrap().port,
        ))
        .unwrap(),
    )
    .unwrap();
    validate_config(&envoy, &cfg).unwrap();
    let _proc = EnvoyProcess::start(&envoy, &cfg, dir.path()).unwrap();

    let id = pki.client("spiffe://cluster.local/ns/foo/sa/bar").unwrap();
    let transports = [
        Transport::Plain,
        Transport::Tls {
            sni: Some("exact.com".into()),
            client: None,
        },
        Transport::Tls {
            sni: None,
            client: Some(id),
        },
    ];
    let req = HttpRequest {
        method: "GET".into(),
        host: "h".into(),
        path: "/".into(),
        headers: vec![],
    };
    let src = Some("127.0.0.9".parse().unwrap());
    for t in &transports {
        let at = |p: u16| SocketAddr::from((addr, p));
        assert_eq!(send_http(src, at(base), t, &req).unwrap(), 403, "{t:?}");
        assert_eq!(send_http(src, at(base + 1), t, &req).unwrap(), 200, "{t:?}");
        assert!(!probe_tcp(src, at(base + 2), t).unwrap(), "{t:?}");
        assert!(probe_tcp(src, at(base + 3), t).unwrap(), "{t:?}");
    }
}

#[test]
fn jwt_authn_verifies_harness_tokens_and_feeds_rbac_metadata_matchers() {
    let envoy = find_or_install_envoy(repo_root()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    // What Istio generates for `requestPrincipals: ["https://issuer.example.com/*"]` and
    // `request.auth.claims[n1][n2]: ["v"]` (one list-or-string matcher).
    let md = |path: &[&str], value: serde_json::Value| {
        let mut p = vec![json!({"key": "payload"})];
        p.extend(path.iter().map(|k| json!({"key": k})));
        json!({"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": p, "value": value}})
    };
    let allow_jwt = json!({"name": "envoy.filters.http.rbac", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"policies": {"p": {
            "permissions": [{"any": true}],
            "principals": [{"andIds": {"ids": [
                md(&["iss"], json!({"stringMatch": {"exact": "https://issuer.example.com"}})),
                md(&["sub"], json!({"stringMatch": {"safeRegex": {"regex": ".+"}}})),
                md(&["n1", "n2"], json!({"orMatch": {"valueMatchers": [
                    {"listMatch": {"oneOf": {"stringMatch": {"exact": "v"}}}},
                    {"stringMatch": {"exact": "v"}},
                ]}})),
            ]}}],
        }}},
    }});
    let addr = Ipv4Addr::new(127, 0, 0, 1);
    let port = 40000 + (std::process::id() % 20000) as u16;
    let listeners = vec![ListenerSpec {
        name: "http_jwt".into(),
        address: addr,
        port,
        kind: ListenerKind::Http(vec![allow_jwt]),
    }];
    let cfg = dir.path().join("envoy.json");
    let echo = EchoServer::start().unwrap().port;
    std::fs::write(
        &cfg,
        serde_json::to_vec_pretty(&bootstrap(&listeners, &pki, echo)).unwrap(),
    )
    .unwrap();
    validate_config(&envoy, &cfg).unwrap();
    let _proc = EnvoyProcess::start(&envoy, &cfg, dir.path()).unwrap();

    let send = |token: Option<String>| {
        let req = HttpRequest {
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            headers: token
                .map(|t| vec![("authorization".to_string(), format!("Bearer {t}"))])
                .unwrap_or_default(),
        };
        send_http(
            None,
            SocketAddr::from((addr, port)),
            &Transport::Plain,
            &req,
        )
        .unwrap()
    };
    let token = |p: serde_json::Value| Some(mint(&p).unwrap());
    let good = json!({"iss": "https://issuer.example.com", "sub": "s", "n1": {"n2": ["x", "v"]}, "exp": EXPIRY});
    assert_eq!(send(token(good.clone())), 200);
    assert_eq!(
        send(token(
            json!({"iss": "https://issuer.example.com", "sub": "s", "n1": {"n2": "v"}, "exp": EXPIRY})
        )),
        200
    );
    // Near misses reach RBAC and are denied there.
    assert_eq!(
        send(token(
            json!({"iss": "https://issuer.example.com", "sub": "", "n1": {"n2": "v"}, "exp": EXPIRY})
        )),
        403
    );
    assert_eq!(
        send(token(
            json!({"iss": "https://issuer.example.com", "sub": "s", "n1.n2": "v", "exp": EXPIRY})
        )),
        403
    );
    assert_eq!(send(None), 403);
    // A token that fails verification is refused by jwt_authn, not passed on as "no token".
    let mut forged = mint(&good).unwrap();
    forged.push('A');
    assert_eq!(send(Some(forged)), 401);
    assert_eq!(
        send(token(
            json!({"iss": "https://issuer.example.com", "sub": "s", "exp": 1000})
        )),
        401
    );
}
