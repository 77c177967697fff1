//! Envoy access-log JSON lines (`json_format` or `typed_json_format`) → requests.
//!
//! Field order does not matter and unknown fields are ignored, so the same reader takes the
//! format in `envoy/` and Istio-style formats that name fields a little differently: each
//! request attribute is read from the first of its accepted keys that holds a value. Envoy
//! writes an unset operator as `"-"` (or `null` in `typed_json_format`); both mean absent.
//!
//! | request attribute | keys (first present wins) | Envoy operator |
//! |---|---|---|
//! | `source.ip`, `source.port` (the direct peer) | `direct_peer_address`, `downstream_direct_remote_address` (else the remote address below, unless its port is 0: an address Envoy took from `x-forwarded-for`, which leaves the peer unknown) | `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%` |
//! | `remoteIp` (when not the direct peer) | `source_address`, `downstream_remote_address`, `remote_address` | `%DOWNSTREAM_REMOTE_ADDRESS%` |
//! | `destination.ip`, `destination.port` | `downstream_local_address`, `destination_address`, `local_address`; port also `downstream_local_port`, `destination_port`, `local_port` | `%DOWNSTREAM_LOCAL_ADDRESS%` |
//! | `source.principal` (first URI SAN) | `downstream_peer_uri_san`, `peer_uri_san`, `source_principal` | `%DOWNSTREAM_PEER_URI_SAN%` |
//! | `mtls` (a client certificate without URI SAN) | `downstream_peer_subject`, `peer_subject` | `%DOWNSTREAM_PEER_SUBJECT%` |
//! | `sni` | `requested_server_name`, `sni` | `%REQUESTED_SERVER_NAME%` |
//! | `http.method` | `method`, `request_method` | `%REQ(:METHOD)%` |
//! | `http.host` | `authority`, `host` | `%REQ(:AUTHORITY)%` |
//! | `http.path` | `path`, `request_path` | `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%` |
//! | `http.headers` | `x_forwarded_for` / `x-forwarded-for`, `user_agent`, and every key of an object `request_headers` or `headers` | `%REQ(<NAME>)%` |
//! | `jwt` | `jwt_payload`, `jwt` (an object, or its JSON text) | `%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:payload)%` |
//! | `destination.workload` | `destination_workload` (`<namespace>/<name>`) | a literal per listener |
//! | the record's name | `request_id`, `x_request_id` | `%REQ(X-REQUEST-ID)%` |
//!
//! A line with a method is an HTTP request, one without a TCP connection.
//!
//! The live outcome: HTTP — details `rbac_access_denied_matched_policy[<rule>|none]`
//! (`response_code_details`, or `connection_termination_details`) are a live denial by that
//! rule (a 403 with only the plugin's `palisade_policy`, `%RESP(X-PALISADE-POLICY)%`, is read
//! the same way); otherwise a status below 400, or any status the upstream answered
//! (`via_upstream`), is a live allow; anything else (a 503 of a failed filter, a 401 of
//! `jwt_authn`) says nothing about the policy and the record carries no live outcome. TCP —
//! RBAC details are a denial; bytes sent back to the client (`bytes_sent` > 0) mean the
//! connection reached its upstream (allowed); none, with a response flag or no upstream host,
//! mean it was closed first (denied).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use palisade_engine::{Endpoint, HttpAttributes, Protocol, Request, Verdict, WorkloadRef};
use serde_json::{Map, Value};

use crate::{Line, Live, Record, rbac_denial};

const DIRECT: &[&str] = &[
    "direct_peer_address",
    "downstream_direct_remote_address",
    "direct_remote_address",
];
const REMOTE: &[&str] = &[
    "source_address",
    "downstream_remote_address",
    "remote_address",
];
const LOCAL: &[&str] = &[
    "downstream_local_address",
    "destination_address",
    "local_address",
];
const LOCAL_PORT: &[&str] = &["downstream_local_port", "destination_port", "local_port"];
const SAN: &[&str] = &[
    "downstream_peer_uri_san",
    "peer_uri_san",
    "source_principal",
];
const SUBJECT: &[&str] = &["downstream_peer_subject", "peer_subject"];
const SNI: &[&str] = &["requested_server_name", "sni"];
const METHOD: &[&str] = &["method", "request_method", ":method"];
const AUTHORITY: &[&str] = &["authority", "host", ":authority"];
const PATH: &[&str] = &["path", "request_path", ":path"];
const HEADER_OBJECTS: &[&str] = &["request_headers", "headers"];
const HEADER_FIELDS: &[(&str, &str)] = &[
    ("x_forwarded_for", "x-forwarded-for"),
    ("x-forwarded-for", "x-forwarded-for"),
    ("user_agent", "user-agent"),
    ("user-agent", "user-agent"),
];
const JWT: &[&str] = &["jwt_payload", "jwt"];
const WORKLOAD: &[&str] = &["destination_workload"];
const NAME: &[&str] = &["request_id", "x_request_id", "x-request-id"];
const CODE: &[&str] = &["response_code", "status"];
const DETAILS: &[&str] = &["response_code_details"];
const TERMINATION: &[&str] = &["connection_termination_details"];

/// A value Envoy logged: a string other than `-` and empty, or a number or boolean as text.
fn text(o: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match o.get(*k)? {
        Value::String(s) if s.is_empty() || s == "-" => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// `ip:port`, `[v6]:port` or a bare address.
fn address(s: &str, what: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok((a.ip(), Some(a.port())));
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| (ip, None))
        .map_err(|_| format!("`{what}` is not an address: `{s}`"))
}

fn number(o: &Map<String, Value>, keys: &[&str], what: &str) -> Result<Option<u64>, String> {
    match text(o, keys) {
        None => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("`{what}` is not a number: `{s}`")),
    }
}

/// Reads one access-log line.
pub fn parse(line: &str) -> Result<Line, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        let t = e.to_string();
        let t = t.rsplit_once(" at line ").map_or(t.as_str(), |(m, _)| m);
        format!("not JSON: {t}")
    })?;
    let Value::Object(o) = v else {
        return Err("an access-log line must be a JSON object".into());
    };
    parse_object(&o).map(|r| Line::Record(Box::new(r)))
}

/// Reads one access-log line already parsed as a JSON object.
pub fn parse_object(o: &Map<String, Value>) -> Result<Record, String> {
    let direct = text(o, DIRECT)
        .map(|s| address(&s, "downstream_direct_remote_address"))
        .transpose()?;
    let remote = text(o, REMOTE)
        .map(|s| address(&s, "downstream_remote_address"))
        .transpose()?;
    // `source.ip` is the direct peer (RBAC's `direct_remote_ip`), `remoteIp` the remote
    // address (`remote_ip`). A log without the direct peer gives it only when the remote
    // address is the connection's own: one Envoy took from `x-forwarded-for` has port 0 (see
    // docs/envoy-gateway.md), and then the peer is unknown, not that address.
    let (source, remote_ip) = match (direct, remote) {
        (Some(d), Some(r)) => (Some(d), (r.0 != d.0).then_some(r.0)),
        (Some(d), None) => (Some(d), None),
        (None, Some(r)) if r.1 == Some(0) => (None, Some(r.0)),
        (None, r) => (r, None),
    };
    let local = text(o, LOCAL)
        .map(|s| address(&s, "downstream_local_address"))
        .transpose()?;
    let local_port = number(o, LOCAL_PORT, "downstream_local_port")?
        .map(|p| u16::try_from(p).map_err(|_| format!("port {p} is out of range")))
        .transpose()?;
    let principal = text(o, SAN).and_then(|s| {
        s.split(',')
            .map(str::trim)
            .find(|p| !p.is_empty())
            .map(str::to_string)
    });
    let mtls = (principal.is_none() && text(o, SUBJECT).is_some()).then_some(true);
    let method = text(o, METHOD);
    let workload = text(o, WORKLOAD)
        .map(|w| match w.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(WorkloadRef {
                namespace: ns.to_string(),
                name: Some(name.to_string()),
                ..WorkloadRef::default()
            }),
            _ => Err(format!(
                "`destination_workload` must be `<namespace>/<name>`: `{w}`"
            )),
        })
        .transpose()?;
    let protocol = if method.is_some() {
        Protocol::Http
    } else {
        Protocol::Tcp
    };
    let http = match &method {
        None => None,
        Some(m) => Some(HttpAttributes {
            method: m.clone(),
            host: text(o, AUTHORITY).unwrap_or_default(),
            path: text(o, PATH).unwrap_or_default(),
            headers: headers(o)?,
        }),
    };
    let jwt = match JWT.iter().find_map(|k| o.get(*k)) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() || s == "-" => None,
        Some(Value::String(s)) => Some(
            serde_json::from_str::<Value>(s)
                .map_err(|e| format!("`jwt_payload` is not JSON: {e}"))?,
        ),
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(other) => return Err(format!("`jwt_payload` is not an object: `{other}`")),
    };
    let request = Request {
        protocol,
        source: Endpoint {
            ip: source.map(|s| s.0),
            port: source.and_then(|s| s.1),
            principal,
            workload: None,
        },
        destination: Endpoint {
            ip: local.map(|l| l.0),
            port: local_port.or(local.and_then(|l| l.1)),
            principal: None,
            workload,
        },
        remote_ip,
        mtls,
        sni: text(o, SNI),
        http,
        jwt,
        ..Request::default()
    };
    let live = live(o, protocol)?;
    Ok(Record {
        line: 0,
        name: text(o, NAME),
        request,
        live,
    })
}

/// The request headers the line carries: the known top-level header fields, then every key of
/// a `request_headers` (or `headers`) object; a value may be a string or a list of strings.
fn headers(o: &Map<String, Value>) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, name) in HEADER_FIELDS {
        if let Some(v) = text(o, &[key]) {
            let values = out.entry((*name).to_string()).or_default();
            if !values.contains(&v) {
                values.push(v);
            }
        }
    }
    for key in HEADER_OBJECTS {
        let Some(v) = o.get(*key) else { continue };
        let Value::Object(h) = v else {
            return Err(format!("`{key}` must be an object of header names"));
        };
        for (name, value) in h {
            let name = name.to_ascii_lowercase();
            let mut push = |s: &str| {
                if !s.is_empty() && s != "-" {
                    let values = out.entry(name.clone()).or_default();
                    if !values.iter().any(|x| x == s) {
                        values.push(s.to_string());
                    }
                }
            };
            match value {
                Value::Null => {}
                Value::String(s) => push(s),
                Value::Array(a) => {
                    for item in a {
                        match item {
                            Value::String(s) => push(s),
                            _ => return Err(format!("header `{name}`: values must be strings")),
                        }
                    }
                }
                _ => return Err(format!("header `{name}`: the value must be a string")),
            }
        }
    }
    Ok(out)
}

fn live(o: &Map<String, Value>, protocol: Protocol) -> Result<Option<Live>, String> {
    let details = text(o, DETAILS);
    let termination = text(o, TERMINATION);
    for d in [&details, &termination].into_iter().flatten() {
        if let Some(rule) = rbac_denial(d) {
            return Ok(Some(Live {
                verdict: Verdict::Deny,
                rule: Some(rule),
            }));
        }
    }
    if number(o, CODE, "response_code")? == Some(403)
        && let Some(rule) = text(o, &["palisade_policy"])
    {
        return Ok(Some(Live {
            verdict: Verdict::Deny,
            rule: Some(rule),
        }));
    }
    let allow = Some(Live {
        verdict: Verdict::Allow,
        rule: None,
    });
    let deny = Some(Live {
        verdict: Verdict::Deny,
        rule: None,
    });
    match protocol {
        Protocol::Http => {
            let code = number(o, CODE, "response_code")?.unwrap_or(0);
            Ok(match code {
                100..=399 => allow,
                400..=599 if details.as_deref() == Some("via_upstream") => allow,
                _ => None,
            })
        }
        Protocol::Tcp => {
            let sent = number(o, &["bytes_sent"], "bytes_sent")?;
            let upstream = text(o, &["upstream_host"]);
            Ok(match sent {
                Some(n) if n > 0 => allow,
                Some(_) if upstream.is_none() || text(o, &["response_flags"]).is_some() => deny,
                _ => None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn record(line: &str) -> Record {
        match parse(line).unwrap() {
            Line::Record(r) => *r,
            Line::Ignored(why) => panic!("ignored: {why}"),
        }
    }

    #[test]
    fn an_rbac_denial_is_a_live_denial_by_its_rule() {
        let r = record(
            r#"{"response_code_details":"rbac_access_denied_matched_policy[ns[shop]-policy[deny-plaintext]-rule[0]]","response_code":403,"method":"GET","authority":"cart:8080","path":"/api/cart/1","downstream_direct_remote_address":"127.0.0.11:40000","downstream_local_address":"127.0.0.12:8080","downstream_peer_uri_san":"-","x_forwarded_for":"-","unknown":{"a":1}}"#,
        );
        let live = r.live.unwrap();
        assert_eq!(live.verdict, Verdict::Deny);
        assert_eq!(
            live.rule.as_deref(),
            Some("ns[shop]-policy[deny-plaintext]-rule[0]")
        );
        assert_eq!(r.request.protocol, Protocol::Http);
        assert_eq!(r.request.source.principal, None);
        assert_eq!(r.request.destination.port, Some(8080));
        assert!(r.request.http.unwrap().headers.is_empty());
    }

    #[test]
    fn without_the_direct_peer_an_xff_derived_remote_address_is_not_taken_for_the_peer() {
        // Istio's default format logs only %DOWNSTREAM_REMOTE_ADDRESS%.
        let derived = record(
            r#"{"downstream_remote_address":"203.0.113.9:0","method":"GET","path":"/","response_code":200}"#,
        );
        assert_eq!(derived.request.source.ip, None, "the peer is unknown");
        assert_eq!(
            derived.request.remote_ip,
            Some("203.0.113.9".parse().unwrap())
        );
        let peer = record(
            r#"{"downstream_remote_address":"10.0.0.7:40000","method":"GET","path":"/","response_code":200}"#,
        );
        assert_eq!(peer.request.source.ip, Some("10.0.0.7".parse().unwrap()));
        assert_eq!(peer.request.source.port, Some(40000));
        assert_eq!(peer.request.remote_ip, None, "the same address");
    }

    #[test]
    fn a_2xx_is_a_live_allow_and_every_attribute_is_read() {
        let r = record(
            r#"{"downstream_remote_address":"203.0.113.9:0","downstream_direct_remote_address":"127.0.0.10:5555","downstream_local_address":"127.0.0.11:8080","downstream_peer_uri_san":"spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway,spiffe://other","requested_server_name":"frontend.shop","method":"GET","authority":"shop.example.com","path":"/static/app.js","x_forwarded_for":"203.0.113.9","request_headers":{"X-Change-Ticket":"CHG-1","idempotency-key":["a","b"]},"jwt_payload":"{\"iss\":\"i\",\"sub\":\"s\"}","response_code":"200","response_code_details":"direct_response","request_id":"r-1"}"#,
        );
        assert_eq!(
            r.live,
            Some(Live {
                verdict: Verdict::Allow,
                rule: None
            })
        );
        let q = &r.request;
        assert_eq!(q.source.ip, Some("127.0.0.10".parse().unwrap()));
        assert_eq!(q.source.port, Some(5555));
        assert_eq!(q.remote_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(
            q.source.principal.as_deref(),
            Some("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway")
        );
        assert_eq!(q.sni.as_deref(), Some("frontend.shop"));
        let h = q.http.as_ref().unwrap();
        assert_eq!(h.headers["x-forwarded-for"], vec!["203.0.113.9"]);
        assert_eq!(h.headers["x-change-ticket"], vec!["CHG-1"]);
        assert_eq!(h.headers["idempotency-key"], vec!["a", "b"]);
        assert_eq!(q.jwt.as_ref().unwrap()["sub"], "s");
        assert_eq!(r.name.as_deref(), Some("r-1"));
    }

    #[test]
    fn a_line_without_a_method_is_a_tcp_connection() {
        let allowed = record(
            r#"{"downstream_direct_remote_address":"127.0.0.15:1","downstream_local_address":"127.0.0.16:5432","method":"-","response_code":0,"bytes_sent":19,"upstream_host":"127.0.0.1:9"}"#,
        );
        assert_eq!(allowed.request.protocol, Protocol::Tcp);
        assert_eq!(allowed.live.unwrap().verdict, Verdict::Allow);
        let denied = record(
            r#"{"downstream_direct_remote_address":"127.0.0.15:1","downstream_local_address":"127.0.0.16:5432","bytes_sent":0,"upstream_host":null}"#,
        );
        assert_eq!(denied.live.unwrap().verdict, Verdict::Deny);
    }

    #[test]
    fn the_lines_of_the_access_log_format_in_envoy_read() {
        // From README "Recorded traffic: the access-log format".
        let r = record(
            r#"{"authority":"cart.shop.svc.cluster.local:8080","bytes_received":0,"bytes_sent":2,"connection_termination_details":null,"destination_port":8080,"direct_peer_address":"127.0.0.11:45843","duration_ms":0,"jwt_payload":null,"local_address":"127.132.162.20:8080","method":"POST","palisade_policy":null,"path":"/api/cart/u123/items/sku-42","peer_uri_san":"spiffe://cluster.local/ns/shop/sa/frontend","protocol":"HTTP/1.1","request_headers":{"user-agent":"shop-e2e/1","x-forwarded-for":"203.0.113.9"},"response_code":200,"response_code_details":"direct_response","response_flags":"-","sni":"cart.shop.svc.cluster.local","source_address":"203.0.113.9:0","start_time":"2026-11-29T08:50:20.293Z","tls_version":"TLSv1.3"}"#,
        );
        let q = &r.request;
        assert_eq!(q.source.ip, Some("127.0.0.11".parse().unwrap()));
        assert_eq!(q.remote_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(q.destination.ip, Some("127.132.162.20".parse().unwrap()));
        assert_eq!(q.destination.port, Some(8080));
        assert_eq!(q.http.as_ref().unwrap().headers.len(), 2);
        assert_eq!(r.live.unwrap().verdict, Verdict::Allow);
        let r = record(
            r#"{"authority":"payments-api.payments:8443","bytes_sent":19,"destination_port":8443,"direct_peer_address":"127.0.0.12:56041","local_address":"127.132.162.40:8443","method":"POST","palisade_policy":"ns[payments]-policy[refunds-need-ops]-rule[0]","path":"/v1/refunds","peer_uri_san":"spiffe://cluster.local/ns/shop/sa/cart","protocol":"HTTP/1.1","request_headers":{"user-agent":null,"x-forwarded-for":null},"response_code":403,"response_code_details":"rbac_access_denied_matched_policy[ns[payments]-policy[refunds-need-ops]-rule[0]]","source_address":"127.0.0.12:56041"}"#,
        );
        assert_eq!(r.request.remote_ip, None);
        assert_eq!(
            r.live.unwrap().rule.as_deref(),
            Some("ns[payments]-policy[refunds-need-ops]-rule[0]")
        );
        let r = record(
            r#"{"authority":null,"bytes_received":23,"bytes_sent":19,"connection_termination_details":null,"destination_port":5432,"direct_peer_address":"127.0.0.15:49129","local_address":"127.132.162.50:5432","method":null,"path":null,"peer_uri_san":"spiffe://cluster.local/ns/payments/sa/processor","protocol":null,"request_headers":{"user-agent":null,"x-forwarded-for":null},"response_code":0,"response_code_details":null,"response_flags":"-","sni":"postgres.data.svc.cluster.local","source_address":"127.0.0.15:49129"}"#,
        );
        assert_eq!(r.request.protocol, Protocol::Tcp);
        assert_eq!(r.live.unwrap().verdict, Verdict::Allow);
    }

    #[test]
    fn a_503_of_a_failed_filter_says_nothing_about_the_policy() {
        let r = record(
            r#"{"method":"GET","response_code":503,"response_code_details":"wasm_fail_stream"}"#,
        );
        assert_eq!(r.live, None);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(
            parse(r#"{"method":"GET","downstream_local_address":"nowhere"}"#)
                .unwrap_err()
                .contains("not an address")
        );
        assert!(parse("[1]").unwrap_err().contains("JSON object"));
        assert!(
            parse(r#"{"method":"GET","request_headers":{"a":1}}"#)
                .unwrap_err()
                .contains("header `a`")
        );
        assert!(
            parse(r#"{"destination_workload":"shop"}"#)
                .unwrap_err()
                .contains("<namespace>/<name>")
        );
    }
}
