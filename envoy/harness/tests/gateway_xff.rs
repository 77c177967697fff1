//! The client addresses at Istio's listener shapes, in the real Envoy 1.40: Envoy's RBAC
//! filter (configured as Istio generates it for `ipBlocks`, `notIpBlocks`, `remoteIpBlocks`,
//! `notRemoteIpBlocks`, `source.ip` and `remote.ip`) beside the Palisade plugin with the same
//! policy, on the same requests, for each shape:
//!
//! - a sidecar's inbound listener (`use_remote_address: false`, no trusted hops; the plugin
//!   without `numTrustedProxies`);
//! - an ingress gateway's (`use_remote_address: true`, `xff_num_trusted_hops: N`) for N = 0, 1
//!   and 2 (the plugin with `numTrustedProxies: N`).
//!
//! The plugin runs on two listeners of each shape: alone (the HTTP filter), and with its peer
//! recorder (`"role": "peerRecorder"`, an `envoy.filters.network.wasm` filter before the HTTP
//! connection manager) — Istio's `WasmPlugin` of `type: NETWORK`.
//!
//! The requests come from three 127/8 peers (an allowed, a banned and a neutral one) and the
//! two that Envoy treats as loopback (`127.0.0.1` and `::1`), each with no `x-forwarded-for`,
//! an empty one, spoofed ones naming the allowed or the banned peer or a loopback address,
//! several entries, several header lines, IPv6 entries, and entries that are not addresses.
//!
//! Every request also goes through an access log that records, with Envoy's CEL formatter,
//! the `source.address` and `source.port` attributes a filter reads (the same
//! `Filters::Common::Expr` attributes the wasm host serves), the physical peer
//! (`%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`), `x-forwarded-for` as the filters saw it and what
//! the recorder stored (`%FILTER_STATE(wasm.palisade_peer)%`): the test checks them against
//! the model of Envoy's connection manager the plugin's derivation rests on
//! (`docs/envoy-gateway.md`).
//!
//! Every answer is also predicted: each scenario restates its policy as a function of (peer,
//! client), and RBAC must answer it on the model's addresses. The plugin with its recorder
//! must answer exactly as RBAC, on every request. The plugin alone must answer the same
//! except where it cannot know the direct peer — on a sidecar when Envoy took
//! `source.address` from `x-forwarded-for`, and at a gateway for a peer of `127.0.0.1` or
//! `::1` (Envoy writes its own address into `x-forwarded-for` instead) — where it must decide
//! if every peer gets the same answer and otherwise fail closed (`x-palisade-policy: error`);
//! the test counts those requests by class, exactly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use palisade_envoy_harness::bootstrap::{EchoServer, ListenerKind, ListenerSpec, bootstrap};
use palisade_envoy_harness::certs::Pki;
use palisade_envoy_harness::client::{HttpRequest, Transport, send_http_from};
use palisade_envoy_harness::envoy::{EnvoyProcess, find_or_install_envoy, validate_config};
use palisade_envoy_harness::plugin::{POLICY_HEADER, build_plugin, http_filter, network_filter};
use serde_json::{Value, json};

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A listener shape: `None` a sidecar, `Some(n)` a gateway trusting `n` proxies.
type Shape = Option<u32>;

const SHAPES: [Shape; 4] = [None, Some(0), Some(1), Some(2)];

fn shape_name(s: Shape) -> String {
    s.map_or_else(|| "sidecar".into(), |n| format!("gateway-{n}"))
}

const ALLOWED: &str = "127.0.0.7";
const NEUTRAL: &str = "127.0.0.8";
const BANNED: &str = "127.0.0.9";
/// The peers Envoy treats as loopback: it appends its own node address instead.
const LOOPBACK: &str = "127.0.0.1";
const LOOPBACK_V6: &str = "::1";

fn envoy_loopback(ip: IpAddr) -> bool {
    ip == LOOPBACK.parse::<IpAddr>().unwrap() || ip == LOOPBACK_V6.parse::<IpAddr>().unwrap()
}

/// Envoy RBAC principals, as Istio writes them.
fn direct(ip: &str, len: u32) -> Value {
    json!({"direct_remote_ip": {"address_prefix": ip, "prefix_len": len}})
}
fn remote(ip: &str, len: u32) -> Value {
    json!({"remote_ip": {"address_prefix": ip, "prefix_len": len}})
}
fn or(ids: Vec<Value>) -> Value {
    json!({"or_ids": {"ids": ids}})
}
fn and(ids: Vec<Value>) -> Value {
    json!({"and_ids": {"ids": ids}})
}
fn not(id: Value) -> Value {
    json!({"not_id": id})
}

/// One policy: its AuthorizationPolicy, the RBAC filter Istio generates for it, and whether
/// it tests the direct peer.
struct Scenario {
    name: &'static str,
    policy: String,
    rbac: Value,
    /// The policy restated: whether a request from this peer with this client is allowed.
    decide: fn(IpAddr, IpAddr) -> bool,
}

/// Whether `ip` is in `block` (`a.b.c.d/len`, `v6/len`, or one address).
fn in_block(ip: IpAddr, block: &str) -> bool {
    let (net, len) = block.split_once('/').unwrap_or((block, "128"));
    let len: u32 = len.parse().unwrap();
    match (ip, net.parse::<IpAddr>().unwrap()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = len.min(32);
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn in_any(ip: IpAddr, blocks: &[&str]) -> bool {
    blocks.iter().any(|b| in_block(ip, b))
}

/// Peers that, between them, fall in every combination of the scenarios' peer blocks (the
/// first address of each, the one after it, and the zero addresses).
const PEER_CANDIDATES: [&str; 8] = [
    "0.0.0.0",
    "::",
    "::1",
    "::2",
    "127.0.0.7",
    "127.0.0.8",
    "127.0.0.9",
    "127.0.0.10",
];

fn answer(allowed: bool) -> Answer {
    if allowed { Answer::Allow } else { Answer::Deny }
}

fn scenario(
    name: &'static str,
    action: &str,
    rule: &str,
    principal: Value,
    decide: fn(IpAddr, IpAddr) -> bool,
) -> Scenario {
    let policy = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: {name}, namespace: foo}}\nspec:\n  action: {action}\n  rules:\n  - {rule}\n"
    );
    let rbac = json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": action,
                "policies": {
                    format!("ns[foo]-policy[{name}]-rule[0]"): {
                        "permissions": [{"any": true}],
                        "principals": [principal],
                    },
                },
            },
        },
    });
    Scenario {
        name,
        policy,
        rbac,
        decide,
    }
}

fn scenarios() -> Vec<Scenario> {
    vec![
        scenario(
            "allow-ip-blocks",
            "ALLOW",
            "from: [{source: {ipBlocks: [\"127.0.0.7\"]}}]",
            and(vec![or(vec![direct(ALLOWED, 32)])]),
            |peer, _| in_block(peer, ALLOWED),
        ),
        scenario(
            "deny-ip-blocks",
            "DENY",
            "from: [{source: {ipBlocks: [\"127.0.0.9/32\", \"::1/128\"]}}]",
            and(vec![or(vec![direct(BANNED, 32), direct(LOOPBACK_V6, 128)])]),
            |peer, _| !in_any(peer, &[BANNED, LOOPBACK_V6]),
        ),
        scenario(
            "allow-remote-ip-blocks",
            "ALLOW",
            "from: [{source: {remoteIpBlocks: [\"203.0.113.0/24\", \"2001:db8::/32\", \"127.0.0.7\"]}}]",
            and(vec![or(vec![
                remote("203.0.113.0", 24),
                remote("2001:db8::", 32),
                remote(ALLOWED, 32),
            ])]),
            |_, client| in_any(client, &["203.0.113.0/24", "2001:db8::/32", ALLOWED]),
        ),
        scenario(
            "deny-remote-ip-blocks",
            "DENY",
            "from: [{source: {remoteIpBlocks: [\"198.51.100.0/24\", \"127.0.0.9\"]}}]",
            and(vec![or(vec![
                remote("198.51.100.0", 24),
                remote(BANNED, 32),
            ])]),
            |_, client| !in_any(client, &["198.51.100.0/24", BANNED]),
        ),
        scenario(
            "allow-not-blocks",
            "ALLOW",
            "from: [{source: {notIpBlocks: [\"127.0.0.9\"], notRemoteIpBlocks: [\"198.51.100.0/24\"]}}]",
            and(vec![
                not(or(vec![direct(BANNED, 32)])),
                not(or(vec![remote("198.51.100.0", 24)])),
            ]),
            |peer, client| !in_block(peer, BANNED) && !in_block(client, "198.51.100.0/24"),
        ),
        scenario(
            "allow-when-source-and-remote-ip",
            "ALLOW",
            "when: [{key: source.ip, values: [\"127.0.0.7\", \"127.0.0.8\"]}, \
             {key: remote.ip, notValues: [\"203.0.113.0/24\", \"2001:db8::/32\"]}]",
            and(vec![
                or(vec![direct(ALLOWED, 32), direct(NEUTRAL, 32)]),
                not(or(vec![
                    remote("203.0.113.0", 24),
                    remote("2001:db8::", 32),
                ])),
            ]),
            |peer, client| {
                in_any(peer, &[ALLOWED, NEUTRAL])
                    && !in_any(client, &["203.0.113.0/24", "2001:db8::/32"])
            },
        ),
    ]
}

/// The `x-forwarded-for` lines each peer sends (none: no header).
fn xff_variants() -> Vec<Vec<&'static str>> {
    vec![
        vec![],
        vec![""],
        vec![ALLOWED],
        vec![BANNED],
        vec!["203.0.113.5"],
        vec!["198.51.100.7"],
        vec!["203.0.113.5, 198.51.100.7"],
        vec!["198.51.100.7, 203.0.113.5"],
        vec!["198.51.100.7,203.0.113.5,127.0.0.9"],
        vec!["127.0.0.9, 127.0.0.7"],
        vec!["203.0.113.5", "198.51.100.7"],
        vec!["198.51.100.7", ALLOWED],
        vec![LOOPBACK],
        vec![LOOPBACK_V6],
        vec!["2001:db8::1"],
        vec!["2001:db8::1, 198.51.100.7"],
        vec!["198.51.100.7, 2001:db8::1"],
        vec!["[2001:db8::1]"],
        vec!["203.0.113.5:80"],
        vec!["not-an-address"],
        vec!["203.0.113.5,"],
        vec![" 198.51.100.7 , 127.0.0.7 "],
    ]
}

/// Envoy's `getLastAddressFromXFF` (see the plugin's `attributes::envoy_xff_address`), restated
/// here so that the model below is checked against the real Envoy independently.
fn envoy_pick(xff: &str, skip: u32) -> Option<IpAddr> {
    let mut s = xff;
    for _ in 0..skip {
        s = &s[..s.rfind(',')?];
    }
    if let Some(c) = s.rfind(',')
        && c + 1 < s.len()
    {
        s = &s[c + 1..];
    }
    s.trim_matches([' ', '\t']).parse().ok()
}

/// What the model says Envoy does with a request: (`source.address` as `ip:port` — port 0 when
/// taken from `x-forwarded-for` — and `x-forwarded-for` as the filters see it). `port` is the
/// client's port; `local` Envoy's node address (appended for a peer of 127.0.0.1).
fn model(
    peer: IpAddr,
    port: u16,
    xff: &[&str],
    shape: Shape,
    local: &str,
) -> (String, Option<String>) {
    // The HTTP/1 codec drops the whitespace around each line's value (RFC 9110 OWS), and
    // repeated lines are joined with ",".
    let received = (!xff.is_empty()).then(|| {
        xff.iter()
            .map(|v| v.trim_matches([' ', '\t']))
            .collect::<Vec<_>>()
            .join(",")
    });
    let picked = match shape {
        None => received.as_deref().and_then(|x| envoy_pick(x, 0)),
        Some(0) => None,
        Some(n) => received.as_deref().and_then(|x| envoy_pick(x, n - 1)),
    };
    let source = match picked {
        Some(c) => SocketAddr::new(c, 0).to_string(),
        None => SocketAddr::new(peer, port).to_string(),
    };
    let seen = match (shape, received) {
        (None, r) => r,
        (Some(_), r) => {
            let appended = if envoy_loopback(peer) {
                local.to_string()
            } else {
                peer.to_string()
            };
            Some(match r {
                Some(x) if !x.is_empty() => format!("{x},{appended}"),
                _ => appended,
            })
        }
    };
    (source, seen)
}

const ACCESS_LOG_FORMAT: &str = r#"{"case":"%REQ(X-CASE)%","cel_source_address":"%CEL(source.address)%","cel_source_port":"%CEL(source.port)%","direct":"%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%","remote":"%DOWNSTREAM_REMOTE_ADDRESS%","xff":"%REQ(X-FORWARDED-FOR)%","recorded":"%FILTER_STATE(wasm.palisade_peer:PLAIN)%"}"#;

/// Adds a JSON access log (`ACCESS_LOG_FORMAT`) to every HTTP connection manager.
fn add_access_log(v: &mut Value, path: &Path) {
    match v {
        Value::Object(m) => {
            if m.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("http_connection_manager.v3.HttpConnectionManager"))
            {
                let format: Value = serde_json::from_str(ACCESS_LOG_FORMAT).unwrap();
                m.insert(
                    "access_log".into(),
                    json!([{
                        "name": "envoy.access_loggers.file",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                            "path": path.display().to_string(),
                            "log_format": {
                                "json_format": format,
                                "formatters": [{
                                    "name": "envoy.formatter.cel",
                                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.formatter.cel.v3.Cel"},
                                }],
                            },
                        },
                    }]),
                );
            }
            for x in m.values_mut() {
                add_access_log(x, path);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| add_access_log(x, path)),
        _ => {}
    }
}

/// Makes every listener also listen on `[::1]` (same port), so that a peer can be `::1`, and
/// puts the plugin's peer recorder (`"role": "peerRecorder"`, an `envoy.filters.network.wasm`
/// filter in the same VM as the HTTP filter) first in the filter chains of the listeners whose
/// name starts with `recorder_`, before the HTTP connection manager.
fn add_ipv6_and_recorders(boot: &mut Value, recorder: &Value) {
    for l in boot["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
    {
        let port = l["address"]["socket_address"]["port_value"].clone();
        l["additional_addresses"] =
            json!([{"address": {"socket_address": {"address": LOOPBACK_V6, "port_value": port}}}]);
        if !l["name"].as_str().unwrap().starts_with("recorder_") {
            continue;
        }
        for chain in l["filter_chains"].as_array_mut().unwrap() {
            chain["filters"]
                .as_array_mut()
                .unwrap()
                .insert(0, recorder.clone());
        }
    }
}

/// How one side answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Allow,
    Deny,
    /// The plugin could not know an address a rule tests (`x-palisade-policy: error`).
    FailedClosed,
}

/// The three listeners of a scenario and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    /// Envoy's RBAC filter, as Istio generates it.
    Rbac,
    /// The plugin alone (the HTTP filter).
    Plugin,
    /// The plugin with its peer recorder in the network filter chain.
    Recorder,
}

const SIDES: [Side; 3] = [Side::Rbac, Side::Plugin, Side::Recorder];

/// One request, sent to each side.
struct Sent {
    what: String,
    scenario: usize,
    shape: Shape,
    peer: &'static str,
    xff: Vec<&'static str>,
    rbac: Answer,
    plugin: Answer,
    recorder: Answer,
}

/// Why the plugin without a recorder cannot know the direct peer of a request.
fn unknown_peer_class(shape: Shape, peer: &str) -> &'static str {
    match (shape, peer) {
        (None, _) => "sidecar, source.address from x-forwarded-for",
        (Some(_), LOOPBACK) => "gateway, peer 127.0.0.1 replaced by Envoy's address",
        (Some(_), LOOPBACK_V6) => "gateway, peer ::1 replaced by Envoy's address",
        (Some(_), _) => "gateway, another peer (never expected)",
    }
}

#[test]
fn plugin_and_rbac_agree_on_client_addresses_at_every_istio_listener_shape() {
    let started = Instant::now();
    let envoy = find_or_install_envoy(repo_root()).unwrap();
    let wasm = build_plugin(repo_root()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(work.path()).unwrap();
    let echo = EchoServer::start().unwrap();
    let scenarios = scenarios();
    let address = Ipv4Addr::new(127, 77, 0, 2);

    // One listener per side, scenario and shape, each on its own port (held, on both
    // addresses, until all are chosen, so that none is handed out twice).
    let mut held = Vec::new();
    let mut port = || loop {
        let l = std::net::TcpListener::bind((address, 0)).unwrap();
        let p = l.local_addr().unwrap().port();
        if let Ok(l6) = std::net::TcpListener::bind((LOOPBACK_V6.parse::<IpAddr>().unwrap(), p)) {
            held.push(l);
            held.push(l6);
            return p;
        }
    };
    let mut listeners = Vec::new();
    let mut ports: BTreeMap<(usize, String, Side), u16> = BTreeMap::new();
    for (i, sc) in scenarios.iter().enumerate() {
        for shape in SHAPES {
            let mut config = json!({
                "policy": sc.policy,
                "workload": {"namespace": "foo", "labels": {"app": "httpbin"}},
            });
            if let Some(n) = shape {
                config["numTrustedProxies"] = n.into();
            }
            let kind = |filters: Vec<Value>| match shape {
                None => ListenerKind::Http(filters),
                Some(n) => ListenerKind::Gateway(filters, n),
            };
            for side in SIDES {
                let (prefix, filter) = match side {
                    Side::Rbac => ("rbac", sc.rbac.clone()),
                    Side::Plugin => ("plugin", http_filter(&wasm, &config)),
                    Side::Recorder => ("recorder", http_filter(&wasm, &config)),
                };
                let p = port();
                listeners.push(ListenerSpec {
                    name: format!("{prefix}_{}_{}", sc.name, shape_name(shape)),
                    address,
                    port: p,
                    kind: kind(vec![filter]),
                });
                ports.insert((i, shape_name(shape), side), p);
            }
        }
    }
    drop(held);
    let log_path = work.path().join("access.log");
    let mut boot = bootstrap(&listeners, &pki, echo.port);
    add_access_log(&mut boot, &log_path);
    add_ipv6_and_recorders(
        &mut boot,
        &network_filter(&wasm, &json!({"role": "peerRecorder"})),
    );
    let cfg = work.path().join("envoy.json");
    fs::write(&cfg, serde_json::to_vec_pretty(&boot).unwrap()).unwrap();
    validate_config(&envoy, &cfg).unwrap();
    let proc = EnvoyProcess::start(&envoy, &cfg, work.path()).unwrap();

    let peers = [ALLOWED, NEUTRAL, BANNED, LOOPBACK, LOOPBACK_V6];
    let mut answers: Vec<Sent> = Vec::new();
    let mut clients: BTreeMap<String, (IpAddr, u16, Shape, Vec<&str>, Side)> = BTreeMap::new();
    let mut n = 0usize;
    for (i, sc) in scenarios.iter().enumerate() {
        for shape in SHAPES {
            for peer in peers {
                let from: IpAddr = peer.parse().unwrap();
                let to_address: IpAddr = if from.is_ipv6() {
                    LOOPBACK_V6.parse().unwrap()
                } else {
                    address.into()
                };
                for xff in xff_variants() {
                    n += 1;
                    let mut got = BTreeMap::new();
                    for side in SIDES {
                        let id = format!("{side:?}-{n}");
                        let mut headers: Vec<(String, String)> =
                            vec![("x-case".into(), id.clone())];
                        headers.extend(
                            xff.iter()
                                .map(|v| ("x-forwarded-for".to_string(), v.to_string())),
                        );
                        let req = HttpRequest {
                            method: "GET".into(),
                            host: "httpbin.foo".into(),
                            path: "/".into(),
                            headers,
                        };
                        let to = SocketAddr::new(to_address, ports[&(i, shape_name(shape), side)]);
                        let (r, local) = send_http_from(Some(from), to, &Transport::Plain, &req)
                            .unwrap_or_else(|e| panic!("{id}: {e}\n{}", proc.log_tail()));
                        let answer = match (r.status, r.header(POLICY_HEADER)) {
                            (200, _) => Answer::Allow,
                            (403, Some("error")) => Answer::FailedClosed,
                            (403, _) => Answer::Deny,
                            (s, _) => panic!("{id}: HTTP {s}: {r:?}"),
                        };
                        clients.insert(id, (local.ip(), local.port(), shape, xff.clone(), side));
                        got.insert(side, answer);
                    }
                    answers.push(Sent {
                        what: format!("{} {} peer {peer} xff {xff:?}", sc.name, shape_name(shape)),
                        scenario: i,
                        shape,
                        peer,
                        xff: xff.clone(),
                        rbac: got[&Side::Rbac],
                        plugin: got[&Side::Plugin],
                        recorder: got[&Side::Recorder],
                    });
                }
            }
        }
    }

    // The access log: what Envoy showed the filters, against the model.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        lines = fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= clients.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        lines.len(),
        clients.len(),
        "one access-log line per request"
    );
    // Envoy's node address, as it appended it for the 127.0.0.1 peer at a gateway without
    // x-forwarded-for (the last entry, then).
    let mut node_address = None;
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        let (ip, _, shape, xff, _) = &clients[v["case"].as_str().unwrap()];
        if shape.is_some() && ip.to_string() == LOOPBACK && xff.is_empty() {
            node_address = v["xff"].as_str().map(str::to_string);
        }
    }
    let node_address = node_address.expect("a 127.0.0.1 request at a gateway");
    assert_ne!(node_address, LOOPBACK, "Envoy replaces a 127.0.0.1 peer");
    let mut observed = BTreeMap::<String, usize>::new();
    let mut mismatches = Vec::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        let id = v["case"].as_str().unwrap();
        let (ip, port, shape, xff, side) = &clients[id];
        let (source, seen) = model(*ip, *port, xff, *shape, &node_address);
        let direct = SocketAddr::new(*ip, *port).to_string();
        let want_port = source.rsplit(':').next().unwrap().to_string();
        // What the recorder stored: the direct peer, on its listeners only.
        let recorded = (*side == Side::Recorder).then_some(direct.as_str());
        let checks = [
            (
                "source.address",
                v["cel_source_address"].as_str(),
                Some(source.as_str()),
            ),
            (
                "source.port",
                v["cel_source_port"].as_str(),
                Some(want_port.as_str()),
            ),
            ("remote_ip", v["remote"].as_str(), Some(source.as_str())),
            (
                "direct_remote_ip",
                v["direct"].as_str(),
                Some(direct.as_str()),
            ),
            ("x-forwarded-for", v["xff"].as_str(), seen.as_deref()),
            ("wasm.palisade_peer", v["recorded"].as_str(), recorded),
        ];
        for (what, got, want) in checks {
            if got != want {
                mismatches.push(format!(
                    "{id} {} peer {ip} xff {xff:?}: {what} {got:?}, model {want:?}",
                    shape_name(*shape)
                ));
            }
        }
        let derived = source.ends_with(":0");
        *observed
            .entry(format!(
                "{}: source.address {}",
                shape_name(*shape),
                if derived {
                    "from x-forwarded-for (port 0)"
                } else {
                    "the peer"
                }
            ))
            .or_default() += 1;
    }
    for m in mismatches.iter().take(40) {
        println!("model mismatch: {m}");
    }
    assert!(
        mismatches.is_empty(),
        "{} access-log values differ from the model",
        mismatches.len()
    );

    // Decisions. Each request's expected answers come from the model: RBAC decides on the
    // model's (peer, client), and so must the plugin with its recorder. The plugin alone
    // knows the peer when `source.address` is the peer or, at a gateway, when the last
    // x-forwarded-for entry is a 127/8 address other than 127.0.0.1 (the listener address is
    // loopback); otherwise it decides only if every peer gets the same decision, else fails
    // closed.
    let (mut agree, mut allowed, mut denied) = (0usize, 0usize, 0usize);
    let mut failed_closed = BTreeMap::<&str, usize>::new();
    let mut differences = Vec::new();
    let (mut recorder_agree, mut recorder_differences) = (0usize, Vec::new());
    let mut recorder_answers = BTreeMap::<String, usize>::new();
    let mut unexpected = Vec::new();
    for Sent {
        what,
        scenario,
        shape,
        peer,
        xff,
        rbac,
        plugin,
        recorder,
    } in &answers
    {
        let sc = &scenarios[*scenario];
        let peer_ip: IpAddr = peer.parse().unwrap();
        let (source, seen) = model(peer_ip, 1, xff, *shape, &node_address);
        let client: IpAddr = source
            .rsplit_once(':')
            .unwrap()
            .0
            .trim_matches(['[', ']'])
            .parse()
            .unwrap();
        let derived = source.ends_with(":0");
        let expected_rbac = answer((sc.decide)(peer_ip, client));
        let known = !derived
            || (shape.is_some_and(|n| n > 0)
                && seen
                    .as_deref()
                    .and_then(|x| x.rsplit(',').next())
                    .and_then(|last| last.parse::<IpAddr>().ok())
                    .is_some_and(|last| {
                        let certain = matches!(last, IpAddr::V4(v4) if v4.is_loopback())
                            && last != LOOPBACK.parse::<IpAddr>().unwrap();
                        if certain {
                            assert_eq!(last, peer_ip, "{what}: Envoy appended the peer");
                        }
                        certain
                    }));
        let expected_plugin = if known {
            expected_rbac
        } else {
            // Every peer the scenario's blocks can tell apart.
            let outcomes: Vec<bool> = PEER_CANDIDATES
                .iter()
                .map(|p| (sc.decide)(p.parse().unwrap(), client))
                .collect();
            if outcomes.iter().all(|o| *o == outcomes[0]) {
                answer(outcomes[0])
            } else {
                Answer::FailedClosed
            }
        };
        if *rbac != expected_rbac || *plugin != expected_plugin || *recorder != expected_rbac {
            unexpected.push(format!(
                "{what}: rbac {rbac:?} (model {expected_rbac:?}), plugin {plugin:?} (model \
                 {expected_plugin:?}), plugin with recorder {recorder:?} (model {expected_rbac:?})"
            ));
        }
        if recorder == rbac {
            recorder_agree += 1;
            *recorder_answers.entry(format!("{recorder:?}")).or_default() += 1;
        } else {
            recorder_differences.push(format!("{what}: rbac {rbac:?}, plugin {recorder:?}"));
        }
        if rbac == plugin {
            agree += 1;
            match rbac {
                Answer::Allow => allowed += 1,
                Answer::Deny => denied += 1,
                Answer::FailedClosed => panic!("RBAC cannot fail closed: {what}"),
            }
            continue;
        }
        if *plugin == Answer::FailedClosed && !known {
            *failed_closed
                .entry(unknown_peer_class(*shape, peer))
                .or_default() += 1;
            continue;
        }
        differences.push(format!("{what}: rbac {rbac:?}, plugin {plugin:?}"));
    }
    for u in unexpected.iter().take(40) {
        println!("unexpected: {u}");
    }

    println!("\nwhat Envoy 1.40 showed the filters (access log, CEL attributes):");
    for (k, v) in &observed {
        println!("  {k}: {v}");
    }
    println!("  Envoy's node address (appended for a 127.0.0.1 or ::1 peer): {node_address}");
    println!(
        "\n{} requests to each side ({} scenarios × {} shapes × {} peers × {} x-forwarded-for variants)",
        answers.len(),
        scenarios.len(),
        SHAPES.len(),
        peers.len(),
        xff_variants().len()
    );
    println!("plugin alone: agree {agree} ({allowed} allowed, {denied} denied)");
    println!("plugin alone failed closed where RBAC decided (cannot know the peer):");
    for (k, v) in &failed_closed {
        println!("  {k}: {v}");
    }
    println!("plugin alone, other differences: {}", differences.len());
    for d in &differences {
        println!("  {d}");
    }
    println!(
        "plugin with its peer recorder: agree {recorder_agree} {recorder_answers:?}, differences {}",
        recorder_differences.len()
    );
    for d in recorder_differences.iter().take(40) {
        println!("  {d}");
    }
    println!("({:.1}s)", started.elapsed().as_secs_f64());
    drop(proc);

    assert!(
        unexpected.is_empty(),
        "{} answers differ from the model",
        unexpected.len()
    );
    // With the recorder: exactly RBAC's answer on every request.
    assert_eq!(
        recorder_differences.len(),
        0,
        "differences with the recorder"
    );
    assert_eq!(recorder_agree, answers.len());
    // Without it: no difference but the fail-closed requests, each of a named class.
    assert!(differences.is_empty(), "{} differences", differences.len());
    assert!(
        allowed > 100 && denied > 100,
        "{allowed} allowed, {denied} denied"
    );
    let expected_failed_closed = BTreeMap::from([
        ("gateway, peer 127.0.0.1 replaced by Envoy's address", 87),
        ("gateway, peer ::1 replaced by Envoy's address", 87),
        ("sidecar, source.address from x-forwarded-for", 280),
    ]);
    assert_eq!(failed_closed, expected_failed_closed);
}

/// A kept-alive HTTP/1.1 connection from a chosen peer address.
struct KeptAlive {
    stream: std::net::TcpStream,
}

impl KeptAlive {
    fn open(from: IpAddr, to: SocketAddr) -> KeptAlive {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::new(from, 0).into()).unwrap();
        sock.connect_timeout(&to.into(), Duration::from_secs(5))
            .unwrap();
        let stream: std::net::TcpStream = sock.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        KeptAlive { stream }
    }

    /// Sends one request and reads its response (`content-length` bodies only, as the
    /// listeners answer): (status, `x-palisade-policy`).
    fn send(&mut self, xff: &[&str]) -> (u16, Option<String>) {
        use std::io::{Read, Write};
        let mut head = "GET / HTTP/1.1\r\nhost: httpbin.foo\r\n".to_string();
        for v in xff {
            head.push_str(&format!("x-forwarded-for: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte, so that nothing of the next response is consumed.
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(self.stream.read(&mut byte).unwrap(), 1, "connection closed");
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let header = |name: &str| {
            head.split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        };
        let len: usize = header("content-length").unwrap().parse().unwrap();
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).unwrap();
        (status, header(POLICY_HEADER))
    }
}

#[test]
fn with_the_recorder_kept_alive_and_mtls_connections_keep_their_own_peer() {
    let envoy = find_or_install_envoy(repo_root()).unwrap();
    let wasm = build_plugin(repo_root()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(work.path()).unwrap();
    let echo = EchoServer::start().unwrap();
    let scenarios = scenarios();
    let address = Ipv4Addr::new(127, 77, 0, 3);
    // `ipBlocks` ALLOW and DENY, on a sidecar and a gateway with one trusted proxy.
    let cases: Vec<(usize, Shape)> = vec![(0, None), (1, None), (0, Some(1)), (1, Some(1))];
    let mut held = Vec::new();
    let mut listeners = Vec::new();
    let mut ports = BTreeMap::new();
    for &(i, shape) in &cases {
        let sc = &scenarios[i];
        let mut config = json!({
            "policy": sc.policy,
            "workload": {"namespace": "foo", "labels": {"app": "httpbin"}},
        });
        if let Some(n) = shape {
            config["numTrustedProxies"] = n.into();
        }
        for side in [Side::Rbac, Side::Recorder] {
            let port = loop {
                let l = std::net::TcpListener::bind((address, 0)).unwrap();
                let p = l.local_addr().unwrap().port();
                if let Ok(l6) =
                    std::net::TcpListener::bind((LOOPBACK_V6.parse::<IpAddr>().unwrap(), p))
                {
                    held.push(l);
                    held.push(l6);
                    break p;
                }
            };
            let (prefix, filter) = match side {
                Side::Rbac => ("rbac", sc.rbac.clone()),
                _ => ("recorder", http_filter(&wasm, &config)),
            };
            let filters = vec![filter];
            listeners.push(ListenerSpec {
                name: format!("{prefix}_{}_{}", sc.name, shape_name(shape)),
                address,
                port,
                kind: match shape {
                    None => ListenerKind::Http(filters),
                    Some(n) => ListenerKind::Gateway(filters, n),
                },
            });
            ports.insert((i, shape, side), port);
        }
    }
    drop(held);
    let mut boot = bootstrap(&listeners, &pki, echo.port);
    add_ipv6_and_recorders(
        &mut boot,
        &network_filter(&wasm, &json!({"role": "peerRecorder"})),
    );
    let cfg = work.path().join("envoy.json");
    fs::write(&cfg, serde_json::to_vec_pretty(&boot).unwrap()).unwrap();
    validate_config(&envoy, &cfg).unwrap();
    let _proc = EnvoyProcess::start(&envoy, &cfg, work.path()).unwrap();

    // Every peer's connections are open at once, and their requests interleave: each
    // request must read its own connection's peer, whatever the others carry.
    let peers = [ALLOWED, BANNED, LOOPBACK, LOOPBACK_V6];
    let requests: [&[&str]; 5] = [
        &[],
        &[ALLOWED],
        &[BANNED, "2001:db8::1"],
        &[LOOPBACK_V6],
        &["203.0.113.5", LOOPBACK],
    ];
    let mut compared = 0;
    for &(i, shape) in &cases {
        let sc = &scenarios[i];
        let mut conns: Vec<(&str, Side, KeptAlive)> = Vec::new();
        for peer in peers {
            let from: IpAddr = peer.parse().unwrap();
            let to: IpAddr = if from.is_ipv6() {
                LOOPBACK_V6.parse().unwrap()
            } else {
                address.into()
            };
            for side in [Side::Rbac, Side::Recorder] {
                let port = ports[&(i, shape, side)];
                conns.push((peer, side, KeptAlive::open(from, SocketAddr::new(to, port))));
            }
        }
        for xff in requests {
            let mut answers = BTreeMap::new();
            for (peer, side, conn) in &mut conns {
                let (status, policy) = conn.send(xff);
                let answer = match (status, policy.as_deref()) {
                    (200, _) => Answer::Allow,
                    (403, Some("error")) => Answer::FailedClosed,
                    (403, _) => Answer::Deny,
                    (s, _) => panic!("HTTP {s}"),
                };
                answers.insert((*peer, *side), answer);
            }
            for peer in peers {
                let what = format!("{} {} peer {peer} xff {xff:?}", sc.name, shape_name(shape));
                let expected = answer((sc.decide)(
                    peer.parse().unwrap(),
                    // These policies test only the peer.
                    IpAddr::from([0, 0, 0, 0]),
                ));
                assert_eq!(answers[&(peer, Side::Rbac)], expected, "{what}: RBAC");
                assert_eq!(answers[&(peer, Side::Recorder)], expected, "{what}: plugin");
                compared += 1;
            }
        }
    }
    // Over mutual TLS, as Istio's sidecars talk: the recorder runs on the TLS filter chain too
    // (the peer is the connection's before the handshake and after it).
    let client = pki
        .client("spiffe://cluster.local/ns/istio-system/sa/gateway")
        .unwrap();
    let tls = Transport::Tls {
        sni: None,
        client: Some(client),
    };
    let mut over_tls = 0;
    for &(i, shape) in &cases {
        let sc = &scenarios[i];
        for peer in peers {
            let from: IpAddr = peer.parse().unwrap();
            let to: IpAddr = if from.is_ipv6() {
                LOOPBACK_V6.parse().unwrap()
            } else {
                address.into()
            };
            for xff in [ALLOWED, BANNED] {
                let what = format!(
                    "mTLS {} {} peer {peer} xff {xff}",
                    sc.name,
                    shape_name(shape)
                );
                let req = HttpRequest {
                    method: "GET".into(),
                    host: "httpbin.foo".into(),
                    path: "/".into(),
                    headers: vec![("x-forwarded-for".into(), xff.into())],
                };
                let expected = answer((sc.decide)(from, IpAddr::from([0, 0, 0, 0])));
                for side in [Side::Rbac, Side::Recorder] {
                    let port = ports[&(i, shape, side)];
                    let (r, _) =
                        send_http_from(Some(from), SocketAddr::new(to, port), &tls, &req).unwrap();
                    let got = match (r.status, r.header(POLICY_HEADER)) {
                        (200, _) => Answer::Allow,
                        (403, Some("error")) => Answer::FailedClosed,
                        (403, _) => Answer::Deny,
                        (s, _) => panic!("{what}: HTTP {s}"),
                    };
                    assert_eq!(got, expected, "{what}: {side:?}");
                }
                over_tls += 1;
            }
        }
    }
    assert_eq!(compared, cases.len() * peers.len() * requests.len());
    assert_eq!(over_tls, cases.len() * peers.len() * 2);
}
