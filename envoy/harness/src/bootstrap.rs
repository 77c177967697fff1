//! Envoy bootstrap generation: one listener per port, each with a TLS filter chain (server
//! certificate, client certificate optional) and a plaintext one, selected by `tls_inspector`.
//!
//! HTTP listeners run an HTTP connection manager with the harness's `jwt_authn` filter (see
//! [`crate::jwt`]: it verifies the probes' HS256 tokens and puts their payload into dynamic
//! metadata for Istio's `requestPrincipals` / `request.auth.*` matchers), then the golden RBAC
//! filters (verbatim, in chain order), then the router and a `direct_response` 200 route. TCP listeners run the
//! golden network filters and then a `tcp_proxy` to the harness's [`EchoServer`]. (Not
//! `envoy.filters.network.direct_response`: it writes its bytes and closes as soon as the
//! connection is accepted, before the network RBAC filter sees the first byte, so it cannot
//! show whether RBAC allowed the connection.)
//!
//! Connection manager settings, chosen to match an Istio sidecar's inbound listener with the
//! default mesh config: `normalize_path: true`, `merge_slashes: false` (Istio's `BASE`
//! normalisation); `use_remote_address: false` with `xff_num_trusted_hops: 0`, so that Envoy's
//! `remote_ip` (Istio `remote.ip` / `remoteIpBlocks`) is the rightmost `x-forwarded-for`
//! address when that header is present, and the direct peer otherwise. That lets the harness
//! drive `remote.ip` with any address through `x-forwarded-for`, while `source.ip` /
//! `ipBlocks` (Envoy `direct_remote_ip`) stay the loopback peer. [`ListenerKind::Gateway`]
//! listeners are shaped as an Istio ingress gateway's instead (`use_remote_address: true`,
//! `xff_num_trusted_hops: N`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::certs::Pki;
use crate::error::{Context, Result};
use crate::jwt::jwt_authn_filter;

/// The response header in which the HTTP route shows the request's
/// `x-ext-authz-check-result` (the header Istio's sample authorizer sets on allow).
pub const UPSTREAM_RESULT_HEADER: &str = "x-palisade-upstream-ext-authz";

/// The bytes the TCP upstream ([`EchoServer`]) answers with.
pub const TCP_RESPONSE: &str = "palisade-harness-ok";

/// The upstream of every TCP listener: answers [`TCP_RESPONSE`] to the first bytes it
/// receives on each connection. Only traffic the RBAC filter let through reaches it.
#[derive(Debug)]
pub struct EchoServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl EchoServer {
    /// Starts the server on a free port (its thread lives as long as the process).
    pub fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context(|| "binding echo server".into())?;
        let port = listener
            .local_addr()
            .context(|| "echo server address".into())?
            .port();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                thread::spawn(move || answer(conn));
            }
        });
        Ok(EchoServer { port })
    }
}

fn answer(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 256];
    if let Ok(n) = conn.read(&mut buf)
        && n > 0
    {
        let _ = conn.write_all(TCP_RESPONSE.as_bytes());
    }
}

/// What a listener runs.
#[derive(Debug, Clone)]
pub enum ListenerKind {
    /// HTTP connection manager with these HTTP filters (after `jwt_authn`, before the router),
    /// shaped as an Istio sidecar's inbound listener (`use_remote_address: false`, no trusted
    /// hops).
    Http(Vec<Value>),
    /// The same, shaped as an Istio ingress gateway's listener: `use_remote_address: true`
    /// and `xff_num_trusted_hops` = the mesh's `gatewayTopology.numTrustedProxies` (the
    /// second field), as Istio's gateway generation sets them.
    Gateway(Vec<Value>, u32),
    /// These network filters, then a direct response.
    Tcp(Vec<Value>),
}

/// One listener.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// A unique name.
    pub name: String,
    /// Listening address.
    pub address: Ipv4Addr,
    /// Listening port.
    pub port: u16,
    /// The filter chain content.
    pub kind: ListenerKind,
}

/// The bootstrap JSON: admin on 127.0.0.1 port 0 (see `--admin-address-path`), the
/// listeners, and the cluster `echo` (127.0.0.1:`echo_port`) that TCP listeners proxy to.
pub fn bootstrap(listeners: &[ListenerSpec], pki: &Pki, echo_port: u16) -> Value {
    bootstrap_with_clusters(listeners, pki, echo_port, &[])
}

/// [`bootstrap`] with more clusters (the CUSTOM test's authorizers).
pub fn bootstrap_with_clusters(
    listeners: &[ListenerSpec],
    pki: &Pki,
    echo_port: u16,
    clusters: &[Value],
) -> Value {
    let listeners: Vec<Value> = listeners.iter().map(|l| listener(l, pki)).collect();
    let mut all = vec![echo_cluster(echo_port)];
    all.extend(clusters.iter().cloned());
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": listeners,
            "clusters": all,
        },
    })
}

fn echo_cluster(echo_port: u16) -> Value {
    json!({
                "name": "echo",
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {
                    "cluster_name": "echo",
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                        "socket_address": { "address": "127.0.0.1", "port_value": echo_port },
                    } } }] }],
                },
    })
}

fn listener(l: &ListenerSpec, pki: &Pki) -> Value {
    let filters = match &l.kind {
        ListenerKind::Http(http_filters) => vec![hcm(&l.name, http_filters, None)],
        ListenerKind::Gateway(http_filters, hops) => {
            vec![hcm(&l.name, http_filters, Some(*hops))]
        }
        ListenerKind::Tcp(network_filters) => {
            let mut f = network_filters.clone();
            f.push(json!({
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": format!("{}_tcp", l.name),
                    "cluster": "echo",
                },
            }));
            f
        }
    };
    json!({
        "name": l.name,
        "address": { "socket_address": { "address": l.address.to_string(), "port_value": l.port } },
        "listener_filters": [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
            },
        }],
        "filter_chains": [
            {
                "name": "tls",
                "filter_chain_match": { "transport_protocol": "tls" },
                "transport_socket": tls_socket(pki),
                "filters": filters,
            },
            {
                "name": "plaintext",
                "filter_chain_match": { "transport_protocol": "raw_buffer" },
                "filters": filters,
            },
        ],
    })
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn tls_socket(pki: &Pki) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": false,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": { "filename": path_str(&pki.server_cert_file) },
                    "private_key": { "filename": path_str(&pki.server_key_file) },
                }],
                "validation_context": { "trusted_ca": { "filename": path_str(&pki.ca_file) } },
            },
        },
    })
}

/// The HTTP connection manager; `gateway`: the trusted hops of a gateway-shaped listener,
/// `None` for a sidecar-shaped one.
fn hcm(name: &str, http_filters: &[Value], gateway: Option<u32>) -> Value {
    let mut filters = vec![jwt_authn_filter()];
    filters.extend(http_filters.iter().cloned());
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    }));
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "codec_type": "HTTP1",
            "normalize_path": true,
            "merge_slashes": false,
            "use_remote_address": gateway.is_some(),
            "xff_num_trusted_hops": gateway.unwrap_or(0),
            "http_protocol_options": { "allow_custom_methods": true },
            "route_config": {
                "name": "direct",
                "virtual_hosts": [{
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{
                        "match": { "prefix": "/" },
                        "direct_response": { "status": 200, "body": { "inline_string": "ok" } },
                        // What reached the route of the header a CUSTOM provider sets on allow
                        // (absent when the request has none): shows it in the response.
                        "response_headers_to_add": [{
                            "header": {
                                "key": UPSTREAM_RESULT_HEADER,
                                "value": "%REQ(x-ext-authz-check-result)%",
                            },
                        }],
                    }],
                }],
            },
            "http_filters": filters,
        },
    })
}
