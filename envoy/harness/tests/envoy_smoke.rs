//! Envoy install, bootstrap validation and the clients, against a deny-all and an allow-all
//! listener (no engine involved).
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
