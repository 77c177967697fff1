//! Cilium Hubble flows (`hubble observe -o json`: one `{"flow": {...}}` a line, or the flow
//! object itself) → requests.
//!
//! | request attribute | flow field |
//! |---|---|
//! | `transport`, `source.port`, `destination.port` | `l4.TCP` / `l4.UDP` / `l4.SCTP` `.source_port`, `.destination_port` |
//! | `source.ip`, `destination.ip` | `IP.source`, `IP.destination` |
//! | `destination.workload` (inline) | `destination.namespace` (else the label `k8s:io.kubernetes.pod.namespace`); labels: the `k8s:` labels of `destination.labels` (`k8s:app=cart` → `app: cart`) except Cilium's own (`io.cilium.k8s.*`, `io.kubernetes.pod.namespace`); service account: `k8s:io.cilium.k8s.policy.serviceaccount` |
//! | `source.workload` (inline, for NetworkPolicy) | the same, from `source` |
//! | `source.principal` | derived only with Cilium mutual authentication (`auth_type: "SPIRE"`): `spiffe://cluster.local/ns/<namespace>/sa/<service account>` from the source's namespace and service-account label; otherwise unknown (the peer counts as plaintext) |
//! | `protocol`, `http` | `Type: "L7"` with `l7.http`: `method`, `url` (host and path+query), `headers` (`[{key, value}]`) → HTTP; every other flow is a TCP connection |
//!
//! Hubble carries no SPIFFE ID of its own: its numeric `identity` is Cilium's security
//! identity (`spiffe://spiffe.cilium/identity/<n>` under mutual auth), not the Kubernetes
//! service account Istio policies name, hence the derivation above and the rule that a flow
//! without mutual auth has no principal.
//!
//! The live outcome is the flow's `verdict`: `FORWARDED` → allow, `DROPPED` (or `ERROR`) →
//! deny, without a rule (Hubble names none of ours); `AUDIT`, `REDIRECTED`, `TRACED`,
//! `TRANSLATED` → none.
//!
//! Ignored lines (counted, not decided): replies (`is_reply: true`), L7 responses, TCP
//! segments other than a connection's first `SYN`, flows without L4 ports (ICMP) and lines
//! with no flow (`hubble observe` also prints node status lines).

use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_engine::{
    Endpoint, HttpAttributes, Protocol, Request, Transport, Verdict, WorkloadRef,
};
use serde_json::{Map, Value};

use crate::{Line, Live, Record};

/// The trust domain of derived principals.
pub const TRUST_DOMAIN: &str = "cluster.local";

const SERVICE_ACCOUNT_LABEL: &str = "io.cilium.k8s.policy.serviceaccount";
const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";

fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key)?.as_object()
}

fn string<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str().filter(|s| !s.is_empty())
}

fn port(l4: &Map<String, Value>, key: &str) -> Result<Option<u16>, String> {
    match l4.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .map(Some)
            .ok_or_else(|| format!("`l4.*.{key}` is not a port: `{v}`")),
    }
}

fn ip(v: &Value, key: &str) -> Result<Option<IpAddr>, String> {
    match string(v, key) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("`IP.{key}` is not an address: `{s}`")),
    }
}

/// A Hubble endpoint: namespace, labels (Kubernetes ones, prefix removed) and service account.
#[derive(Debug, Default)]
struct HubbleEndpoint {
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    service_account: Option<String>,
}

fn endpoint(flow: &Value, key: &str) -> Result<HubbleEndpoint, String> {
    let mut e = HubbleEndpoint::default();
    let Some(v) = flow.get(key) else {
        return Ok(e);
    };
    e.namespace = string(v, "namespace").map(str::to_string);
    if let Some(labels) = v.get("labels") {
        let labels = labels
            .as_array()
            .ok_or_else(|| format!("`{key}.labels` must be a list"))?;
        for l in labels {
            let l = l
                .as_str()
                .ok_or_else(|| format!("`{key}.labels` must hold strings"))?;
            let Some(kv) = l.strip_prefix("k8s:") else {
                continue; // reserved:, cidr:, container: ... are not pod labels
            };
            let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
            if k == SERVICE_ACCOUNT_LABEL {
                e.service_account = Some(val.to_string());
            } else if k == NAMESPACE_LABEL {
                if e.namespace.is_none() {
                    e.namespace = Some(val.to_string());
                }
            } else if !k.starts_with("io.cilium.k8s.") {
                e.labels.insert(k.to_string(), val.to_string());
            }
        }
    }
    Ok(e)
}

impl HubbleEndpoint {
    fn workload(&self) -> Option<WorkloadRef> {
        Some(WorkloadRef {
            namespace: self.namespace.clone()?,
            name: None,
            labels: self.labels.clone(),
            service_account: self.service_account.clone(),
        })
    }
}

/// `http://host:port/path?q` → (`host:port`, `/path?q`); a bare path keeps an empty host.
fn split_url(url: &str) -> (String, String) {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .map(|r| match r.find('/') {
            Some(i) => (
                r.get(..i).unwrap_or_default().to_string(),
                r.get(i..).unwrap_or("/").to_string(),
            ),
            None => (r.to_string(), "/".to_string()),
        });
    rest.unwrap_or_else(|| (String::new(), url.to_string()))
}

/// Reads one `hubble observe -o json` line.
pub fn parse(line: &str) -> Result<Line, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        let t = e.to_string();
        let t = t.rsplit_once(" at line ").map_or(t.as_str(), |(m, _)| m);
        format!("not JSON: {t}")
    })?;
    if !v.is_object() {
        return Err("a Hubble line must be a JSON object".into());
    }
    let flow = match v.get("flow") {
        Some(f) if f.is_object() => f,
        Some(_) => return Err("`flow` must be an object".into()),
        None if v.get("verdict").is_some() => &v,
        None => return Ok(Line::Ignored("no flow")),
    };
    parse_flow(flow)
}

/// Reads one flow object.
pub fn parse_flow(flow: &Value) -> Result<Line, String> {
    if flow.get("is_reply").and_then(Value::as_bool) == Some(true) {
        return Ok(Line::Ignored("a reply"));
    }
    let l7 = flow.get("l7");
    if flow.get("Type").and_then(Value::as_str) == Some("L7")
        && l7.and_then(|l| string(l, "type")) == Some("RESPONSE")
    {
        return Ok(Line::Ignored("an L7 response"));
    }
    let l4 = obj(flow, "l4").ok_or("the flow has no `l4`")?;
    let (transport, ports) = if let Some(t) = l4.get("TCP") {
        (Transport::Tcp, t)
    } else if let Some(u) = l4.get("UDP") {
        (Transport::Udp, u)
    } else if let Some(s) = l4.get("SCTP") {
        (Transport::Sctp, s)
    } else {
        return Ok(Line::Ignored("no L4 ports (ICMP)"));
    };
    let ports = ports
        .as_object()
        .ok_or("`l4.<protocol>` must be an object")?;
    if let Some(flags) = ports.get("flags").and_then(Value::as_object)
        && !flags.is_empty()
    {
        let set = |f: &str| flags.get(f).and_then(Value::as_bool) == Some(true);
        if !set("SYN") || set("ACK") {
            return Ok(Line::Ignored("not a connection's first SYN"));
        }
    }
    let addresses = flow.get("IP").ok_or("the flow has no `IP`")?;
    let src = endpoint(flow, "source")?;
    let dst = endpoint(flow, "destination")?;
    let mutual_auth = string(flow, "auth_type") == Some("SPIRE");
    let principal = match (&src.namespace, &src.service_account) {
        (Some(ns), Some(sa)) if mutual_auth => {
            Some(format!("spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{sa}"))
        }
        _ => None,
    };
    let http = match l7.and_then(|l| l.get("http")) {
        Some(h) if flow.get("Type").and_then(Value::as_str) == Some("L7") => {
            let method = string(h, "method").ok_or("`l7.http.method` is missing")?;
            let (host, path) = split_url(string(h, "url").unwrap_or("/"));
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            if let Some(list) = h.get("headers") {
                for item in list.as_array().ok_or("`l7.http.headers` must be a list")? {
                    let k = string(item, "key").ok_or("a header has no `key`")?;
                    let val = item.get("value").and_then(Value::as_str).unwrap_or("");
                    headers
                        .entry(k.to_ascii_lowercase())
                        .or_default()
                        .push(val.to_string());
                }
            }
            let host = headers
                .get(":authority")
                .or_else(|| headers.get("host"))
                .and_then(|v| v.first().cloned())
                .unwrap_or(host);
            Some(HttpAttributes {
                method: method.to_string(),
                host,
                path,
                headers,
            })
        }
        _ => None,
    };
    let live = match string(flow, "verdict") {
        Some("FORWARDED") => Some(Live {
            verdict: Verdict::Allow,
            rule: None,
        }),
        Some("DROPPED" | "ERROR") => Some(Live {
            verdict: Verdict::Deny,
            rule: None,
        }),
        _ => None,
    };
    let request = Request {
        protocol: if http.is_some() {
            Protocol::Http
        } else {
            Protocol::Tcp
        },
        transport,
        source: Endpoint {
            ip: ip(addresses, "source")?,
            port: port(ports, "source_port")?,
            principal,
            workload: src.workload(),
        },
        destination: Endpoint {
            ip: ip(addresses, "destination")?,
            port: port(ports, "destination_port")?,
            principal: None,
            workload: dst.workload(),
        },
        http,
        ..Request::default()
    };
    Ok(Line::Record(Box::new(Record {
        line: 0,
        name: string(flow, "uuid").map(str::to_string),
        request,
        live,
    })))
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
    fn the_cilium_tutorial_flow_reads_with_an_inline_destination() {
        // From the Cilium docs (reference §2.3), compacted.
        let r = record(
            r#"{"time":"2020-12-14T07:58:04.526869639Z","verdict":"FORWARDED","IP":{"source":"10.0.0.69","destination":"10.0.0.120","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":59974,"destination_port":8080,"flags":{"SYN":true}}},"source":{"identity":1,"labels":["reserved:host"]},"destination":{"ID":2495,"identity":2087,"namespace":"kube-system","labels":["k8s:io.cilium.k8s.policy.cluster=default","k8s:io.cilium.k8s.policy.serviceaccount=coredns","k8s:io.kubernetes.pod.namespace=kube-system","k8s:k8s-app=kube-dns"],"pod_name":"coredns-f9fd979d6-88nqn"},"Type":"L3_L4","node_name":"minikube","event_type":{"type":4},"traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT","Summary":"TCP Flags: SYN"}"#,
        );
        let q = &r.request;
        assert_eq!(q.protocol, Protocol::Tcp);
        assert_eq!(q.destination.port, Some(8080));
        let w = q.destination.workload.as_ref().unwrap();
        assert_eq!(w.namespace, "kube-system");
        assert_eq!(w.labels["k8s-app"], "kube-dns");
        assert_eq!(w.labels.len(), 1);
        assert_eq!(w.service_account.as_deref(), Some("coredns"));
        assert_eq!(q.source.workload, None);
        assert_eq!(q.source.principal, None);
        assert_eq!(r.live.unwrap().verdict, Verdict::Allow);
    }

    #[test]
    fn an_l7_flow_is_an_http_request_and_spire_gives_a_principal() {
        let r = record(
            r#"{"flow":{"verdict":"DROPPED","auth_type":"SPIRE","IP":{"source":"10.1.0.10","destination":"10.1.0.20"},"l4":{"TCP":{"source_port":45000,"destination_port":8080}},"source":{"namespace":"shop","labels":["k8s:app=frontend","k8s:io.cilium.k8s.policy.serviceaccount=frontend"]},"destination":{"namespace":"shop","labels":["k8s:app=cart"]},"Type":"L7","l7":{"type":"REQUEST","http":{"method":"POST","url":"http://cart.shop:8080/api/cart/1?x=1","protocol":"HTTP/1.1","headers":[{"key":"X-Env","value":"prod"}]}}}}"#,
        );
        let q = &r.request;
        assert_eq!(q.protocol, Protocol::Http);
        let h = q.http.as_ref().unwrap();
        assert_eq!(
            (h.method.as_str(), h.host.as_str(), h.path.as_str()),
            ("POST", "cart.shop:8080", "/api/cart/1?x=1")
        );
        assert_eq!(h.headers["x-env"], vec!["prod"]);
        assert_eq!(
            q.source.principal.as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/frontend")
        );
        assert_eq!(r.live.unwrap().verdict, Verdict::Deny);
    }

    #[test]
    fn replies_responses_and_later_segments_are_ignored() {
        for line in [
            r#"{"flow":{"verdict":"FORWARDED","is_reply":true,"l4":{"TCP":{}}}}"#,
            r#"{"flow":{"verdict":"FORWARDED","Type":"L7","l7":{"type":"RESPONSE"},"l4":{"TCP":{}}}}"#,
            r#"{"flow":{"verdict":"FORWARDED","IP":{},"l4":{"TCP":{"flags":{"ACK":true}}}}}"#,
            r#"{"flow":{"verdict":"FORWARDED","IP":{},"l4":{"ICMPv4":{"type":8}}}}"#,
            r#"{"node_status":{"state":"NODE_CONNECTED"}}"#,
        ] {
            assert!(matches!(parse(line).unwrap(), Line::Ignored(_)), "{line}");
        }
    }

    #[test]
    fn bad_fields_are_errors() {
        assert!(parse(r#"{"flow":{"verdict":"FORWARDED"}}"#).is_err());
        assert!(
            parse(r#"{"flow":{"verdict":"FORWARDED","IP":{"source":"x"},"l4":{"TCP":{}}}}"#)
                .unwrap_err()
                .contains("not an address")
        );
        assert!(
            parse(r#"{"flow":{"verdict":"FORWARDED","IP":{},"l4":{"TCP":{"destination_port":70000}}}}"#)
                .unwrap_err()
                .contains("not a port")
        );
    }
}
