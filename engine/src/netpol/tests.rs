#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use super::*;
use crate::{Engine, Options, SourceFile, compile as compile_engine, load};

/// Namespaces x, y, z (as in Kubernetes' own NetworkPolicy e2e model), pods a, b, c.
const INVENTORY: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: Inventory
metadata: {name: cluster}
spec:
  namespaces:
  - {name: x, labels: {team: red}}
  - {name: y, labels: {team: blue}}
  - {name: z}
  workloads:
  - name: a
    namespace: x
    labels: {pod: a, tier: web}
    ips: [10.0.0.1]
    ports: [{name: serve-80, port: 80}, {name: dns, port: 53, protocol: UDP}]
  - name: b
    namespace: x
    labels: {pod: b}
    ips: [10.0.0.2]
    ports: [{name: serve-80, port: 80}, {name: serve-81, port: 81}]
  - {name: c, namespace: x, labels: {pod: c, tier: db}, ips: [10.0.0.3]}
  - {name: a, namespace: y, labels: {pod: a}, ips: [10.0.1.1]}
  - {name: b, namespace: y, labels: {pod: b}, ips: [10.0.1.2]}
  - {name: a, namespace: z, labels: {pod: a}, ips: [10.0.2.1]}
"#;

/// A NetworkPolicy document; `id` is `namespace/name`, `spec` flow-style YAML.
fn policy_doc(id: &str, spec: &str) -> String {
    let (ns, name) = id.split_once('/').unwrap();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

fn engine(policies: &[(&str, &str)]) -> Engine {
    let text = policies
        .iter()
        .map(|(id, spec)| policy_doc(id, spec))
        .collect::<Vec<_>>()
        .join("---\n");
    let set = load(&[
        SourceFile::new("inventory.yaml", INVENTORY),
        SourceFile::new("policies.yaml", text),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    compile_engine(&set, &Options::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// `ns/name` is an inventory workload, `ns{k=v}` an inline one, anything else an address.
fn endpoint(s: &str) -> serde_json::Value {
    if let Some((ns, labels)) = s.split_once('{') {
        let labels: serde_json::Map<_, _> = labels
            .trim_end_matches('}')
            .split(',')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), serde_json::Value::from(v))
            })
            .collect();
        serde_json::json!({"workload": {"namespace": ns, "labels": labels}})
    } else if let Some((ns, name)) = s.split_once('/') {
        serde_json::json!({"workload": {"namespace": ns, "name": name}})
    } else if s.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({"ip": s})
    }
}

/// A connection `src -> dst:port/transport`, e.g. `x/b -> x/a:80/TCP`.
fn conn(c: &str) -> Request {
    let (src, rest) = c.split_once(" -> ").unwrap();
    let (dst, port_t) = rest.rsplit_once(':').unwrap();
    let (port, transport) = port_t.split_once('/').unwrap_or((port_t, "TCP"));
    let mut d = endpoint(dst);
    d["port"] = port.parse::<u16>().unwrap().into();
    serde_json::from_value(serde_json::json!({
        "protocol": "tcp",
        "transport": transport,
        "source": endpoint(src),
        "destination": d,
    }))
    .unwrap()
}

/// `allow network-allowed in=<id> out=<id>`, `-` for no rule.
fn summary(e: &Engine, c: &str) -> String {
    let d = e.decide(&conn(c));
    let step = serde_json::to_value(d.step).unwrap();
    let id = |r: Option<RuleRef>| r.map_or_else(|| "-".to_string(), |r| r.id);
    let errors = d.error_message();
    let (i, o) = d
        .network
        .map_or((None, None), |n| (n.ingress_rule, n.egress_rule));
    let mut s = format!("{} {}", d.verdict, step.as_str().unwrap());
    if d.step == Step::Error {
        s.push_str(&format!(" {errors}"));
    } else {
        s.push_str(&format!(" in={} out={}", id(i), id(o)));
    }
    s
}

const DENY_ALL: &str = "{podSelector: {}}";
const FROM_B: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]}";
const FROM_C: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}]}]}";
const FROM_BLUE: &str =
    "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]}";
const FROM_Z: &str = "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]}]}";
const FROM_ALL_NS: &str = "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}";
const AND_PEER: &str = "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {pod: b}}}]}]}";
const OR_PEERS: &str = "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}, {podSelector: {matchLabels: {pod: b}}}]}]}";
const IN_B: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, z]}]}}]}]}";
const NOT_IN_DB: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [db]}]}}]}]}";
const TIER_EXISTS: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}]}]}";
const TIER_ABSENT: &str = "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]}]}";
const ISOLATE_WEB: &str =
    "{podSelector: {matchExpressions: [{key: tier, operator: In, values: [web]}]}}";
const IP_BLOCK: &str = "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]}]}";
const POD_CIDR: &str = "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24}}]}]}";
const EGRESS_TO_NET: &str =
    "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}]}]}";
const NAMED_80: &str = "{podSelector: {}, ingress: [{ports: [{port: serve-80}]}]}";
const NAMED_DNS_UDP: &str = "{podSelector: {}, ingress: [{ports: [{protocol: UDP, port: dns}]}]}";
const EGRESS_NAMED_81: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{ports: [{port: serve-81}]}]}";
const RANGE: &str = "{podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 8100}]}]}";
const UDP_53: &str = "{podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 53}]}]}";
const TCP_53: &str = "{podSelector: {}, ingress: [{ports: [{port: 53}]}]}";
const ALL_SCTP: &str = "{podSelector: {}, ingress: [{ports: [{protocol: SCTP}]}]}";
const EGRESS_ONLY: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}";
const EGRESS_RULES: &str = "{podSelector: {matchLabels: {pod: a}}, egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]}";
const EGRESS_EMPTY: &str = "{podSelector: {matchLabels: {pod: a}}, egress: []}";
const EGRESS_TYPE_IGNORES_INGRESS: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]}";
const BOTH_TYPES_EMPTY: &str =
    "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress, Egress]}";
const A_TO_B_80: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]}";
const B_FROM_C: &str = "{podSelector: {matchLabels: {pod: b}}, ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}]}]}";
const B_FROM_A: &str = "{podSelector: {matchLabels: {pod: b}}, ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}]}]}";
const ALLOW_ALL: &str = "{podSelector: {}, ingress: [{}]}";
const EMPTY_FROM_PORTS: &str = "{podSelector: {}, ingress: [{from: [], ports: []}]}";
const INGRESS_TYPE_IGNORES_EGRESS: &str = "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress], egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]}";
const EGRESS_DENY_ALL: &str = "{podSelector: {}, policyTypes: [Egress]}";

/// A row: (case, policies as `(namespace/name, spec)`, connection, expected summary).
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

#[test]
fn connections_are_decided_as_kubernetes_does() {
    let rows: &[Case] = &[
        (
            "default deny: a pod selected for ingress refuses its namespace",
            &[("x/deny", DENY_ALL)],
            "x/b -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "default deny: and other namespaces",
            &[("x/deny", DENY_ALL)],
            "y/a -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "default deny: pods of other namespaces are not isolated",
            &[("x/deny", DENY_ALL)],
            "x/a -> y/a:80",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "default deny: ingress only, egress stays open",
            &[("x/deny", DENY_ALL)],
            "x/a -> 203.0.113.9:443",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "allow all: ingress [{}] allows any peer on any port",
            &[("x/deny", DENY_ALL), ("x/all", ALLOW_ALL)],
            "203.0.113.9 -> x/a:9999",
            "allow network-allowed in=netpol[x/all]-ingress[0] out=-",
        ),
        (
            "empty from and ports: any peer on any port",
            &[("x/p", EMPTY_FROM_PORTS)],
            "203.0.113.9 -> x/a:9999/UDP",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "policyTypes [Ingress]: egress rules are ignored",
            &[("x/p", INGRESS_TYPE_IGNORES_EGRESS)],
            "x/a -> x/c:80",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "pod selector peer: the selected pod",
            &[("x/p", FROM_B)],
            "x/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "pod selector peer: another pod",
            &[("x/p", FROM_B)],
            "x/c -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "pod selector peer: same labels in another namespace",
            &[("x/p", FROM_B)],
            "y/b -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "pod selector peer: an inline source workload",
            &[("x/p", FROM_B)],
            "x{pod=b} -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "pod selector peer: the policy's selector leaves other pods open",
            &[("x/p", FROM_B)],
            "x/c -> x/b:80",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "pod selector peer: an inline destination is selected too",
            &[("x/p", FROM_B)],
            "x/c -> x{pod=a}:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "namespace selector peer: a matching namespace",
            &[("x/p", FROM_BLUE)],
            "y/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "namespace selector peer: the policy's own namespace does not match",
            &[("x/p", FROM_BLUE)],
            "x/b -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "namespace selector peer: kubernetes.io/metadata.name",
            &[("x/p", FROM_Z)],
            "z/a -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "namespace selector peer: by name, another namespace",
            &[("x/p", FROM_Z)],
            "y/a -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "namespace selector peer: {} matches every pod",
            &[("x/p", FROM_ALL_NS)],
            "z/a -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "namespace selector peer: {} does not match outside the cluster",
            &[("x/p", FROM_ALL_NS)],
            "203.0.113.9 -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "both in one peer: pod and namespace match",
            &[("x/p", AND_PEER)],
            "y/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "both in one peer: namespace matches, pod does not",
            &[("x/p", AND_PEER)],
            "y/a -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "both in one peer: pod matches, namespace does not",
            &[("x/p", AND_PEER)],
            "x/b -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "two peers: the namespace alone",
            &[("x/p", OR_PEERS)],
            "y/a -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "two peers: the pod alone",
            &[("x/p", OR_PEERS)],
            "x/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "two peers: neither",
            &[("x/p", OR_PEERS)],
            "x/c -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "In: a listed value",
            &[("x/p", IN_B)],
            "x/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "In: a value not listed",
            &[("x/p", IN_B)],
            "x/c -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "NotIn: the label absent",
            &[("x/p", NOT_IN_DB)],
            "x/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "NotIn: a listed value",
            &[("x/p", NOT_IN_DB)],
            "x/c -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "Exists: the label present",
            &[("x/p", TIER_EXISTS)],
            "x/c -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "Exists: the label absent",
            &[("x/p", TIER_EXISTS)],
            "x/b -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "DoesNotExist: the label absent",
            &[("x/p", TIER_ABSENT)],
            "x/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "DoesNotExist: the label present",
            &[("x/p", TIER_ABSENT)],
            "x/c -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "expressions in spec.podSelector: the selected pod",
            &[("x/p", ISOLATE_WEB)],
            "x/c -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "expressions in spec.podSelector: another pod",
            &[("x/p", ISOLATE_WEB)],
            "x/c -> x/b:80",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "ipBlock: inside cidr",
            &[("x/p", IP_BLOCK)],
            "203.0.113.9 -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "ipBlock: inside except",
            &[("x/p", IP_BLOCK)],
            "203.0.113.200 -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "ipBlock: outside cidr",
            &[("x/p", IP_BLOCK)],
            "198.51.100.1 -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "ipBlock: a pod's inventory address",
            &[("x/p", POD_CIDR)],
            "x/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "ipBlock: a pod outside the block",
            &[("x/p", POD_CIDR)],
            "y/b -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "ipBlock: egress to an external address",
            &[("x/p", EGRESS_TO_NET)],
            "x/a -> 203.0.113.9:443",
            "allow network-allowed in=- out=netpol[x/p]-egress[0]",
        ),
        (
            "ipBlock: egress to an address outside",
            &[("x/p", EGRESS_TO_NET)],
            "x/a -> 198.51.100.1:443",
            "deny network-egress-denied in=- out=-",
        ),
        (
            "named port: the destination's port of that name",
            &[("x/p", NAMED_80)],
            "x/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "named port: another port",
            &[("x/p", NAMED_80)],
            "x/b -> x/a:81",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "named port: a destination without that name",
            &[("x/p", NAMED_80)],
            "x/a -> x/c:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "named port: UDP name and transport",
            &[("x/p", NAMED_DNS_UDP)],
            "x/b -> x/a:53/UDP",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "named port: UDP name, TCP connection",
            &[("x/p", NAMED_DNS_UDP)],
            "x/b -> x/a:53/TCP",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "named port: egress resolves on the destination pod",
            &[("x/p", EGRESS_NAMED_81)],
            "x/a -> x/b:81",
            "allow network-allowed in=- out=netpol[x/p]-egress[0]",
        ),
        (
            "named port: egress to a pod without that name",
            &[("x/p", EGRESS_NAMED_81)],
            "x/a -> y/b:81",
            "deny network-egress-denied in=- out=-",
        ),
        (
            "named port: egress to an external address",
            &[("x/p", EGRESS_NAMED_81)],
            "x/a -> 203.0.113.9:81",
            "deny network-egress-denied in=- out=-",
        ),
        (
            "endPort: first port",
            &[("x/p", RANGE)],
            "x/b -> x/a:8000",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "endPort: last port",
            &[("x/p", RANGE)],
            "x/b -> x/a:8100",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "endPort: past the end",
            &[("x/p", RANGE)],
            "x/b -> x/a:8101",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "endPort: before the start",
            &[("x/p", RANGE)],
            "x/b -> x/a:7999",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "protocol: UDP rule, UDP connection",
            &[("x/p", UDP_53)],
            "x/b -> x/a:53/UDP",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "protocol: UDP rule, TCP connection",
            &[("x/p", UDP_53)],
            "x/b -> x/a:53/TCP",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "protocol: TCP by default",
            &[("x/p", TCP_53)],
            "x/b -> x/a:53/TCP",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "protocol: TCP by default, UDP connection",
            &[("x/p", TCP_53)],
            "x/b -> x/a:53/UDP",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "protocol: SCTP without a port is every SCTP port",
            &[("x/p", ALL_SCTP)],
            "x/b -> x/a:3868/SCTP",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "protocol: SCTP rule, TCP connection",
            &[("x/p", ALL_SCTP)],
            "x/b -> x/a:3868/TCP",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "egress isolation: the selected pod opens nothing",
            &[("x/p", EGRESS_ONLY)],
            "x/a -> x/b:80",
            "deny network-egress-denied in=- out=-",
        ),
        (
            "egress isolation: nor to outside the cluster",
            &[("x/p", EGRESS_ONLY)],
            "x/a -> 203.0.113.9:443",
            "deny network-egress-denied in=- out=-",
        ),
        (
            "egress isolation: Egress alone leaves ingress open",
            &[("x/p", EGRESS_ONLY)],
            "x/b -> x/a:80",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "policyTypes default: egress rules add Egress",
            &[("x/p", EGRESS_RULES)],
            "x/a -> x/c:80",
            "deny network-egress-denied in=- out=-",
        ),
        (
            "policyTypes default: an egress rule allows",
            &[("x/p", EGRESS_RULES)],
            "x/a -> x/b:80",
            "allow network-allowed in=- out=netpol[x/p]-egress[0]",
        ),
        (
            "policyTypes default: Ingress is always there",
            &[("x/p", EGRESS_RULES)],
            "x/b -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "policyTypes default: egress [] adds no Egress",
            &[("x/p", EGRESS_EMPTY)],
            "x/a -> x/c:80",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "policyTypes default: egress [] still isolates ingress",
            &[("x/p", EGRESS_EMPTY)],
            "x/c -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "policyTypes [Egress]: ingress rules are ignored",
            &[("x/p", EGRESS_TYPE_IGNORES_INGRESS)],
            "x/c -> x/a:80",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "policyTypes [Ingress, Egress] without rules: egress denied",
            &[("x/p", BOTH_TYPES_EMPTY)],
            "x/a -> x/b:80",
            "deny network-egress-denied in=- out=-",
        ),
        (
            "policyTypes [Ingress, Egress] without rules: ingress denied",
            &[("x/p", BOTH_TYPES_EMPTY)],
            "x/b -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "union: the first policy allows",
            &[("x/p1", FROM_B), ("x/p2", FROM_C)],
            "x/b -> x/a:80",
            "allow network-allowed in=netpol[x/p1]-ingress[0] out=-",
        ),
        (
            "union: the second policy allows",
            &[("x/p1", FROM_B), ("x/p2", FROM_C)],
            "x/c -> x/a:80",
            "allow network-allowed in=netpol[x/p2]-ingress[0] out=-",
        ),
        (
            "union: neither allows",
            &[("x/p1", FROM_B), ("x/p2", FROM_C)],
            "y/a -> x/a:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "union: a deny-all adds nothing to an allow",
            &[("x/deny", DENY_ALL), ("x/p", FROM_B)],
            "x/b -> x/a:80",
            "allow network-allowed in=netpol[x/p]-ingress[0] out=-",
        ),
        (
            "both directions: egress and ingress allow",
            &[("x/out", A_TO_B_80), ("x/in", B_FROM_A)],
            "x/a -> x/b:80",
            "allow network-allowed in=netpol[x/in]-ingress[0] out=netpol[x/out]-egress[0]",
        ),
        (
            "both directions: egress allows, ingress refuses",
            &[("x/out", A_TO_B_80), ("x/in", B_FROM_C)],
            "x/a -> x/b:80",
            "deny network-ingress-denied in=- out=netpol[x/out]-egress[0]",
        ),
        (
            "both directions: ingress allows, egress refuses",
            &[("x/out", A_TO_B_80), ("x/in", B_FROM_A)],
            "x/a -> x/b:81",
            "deny network-egress-denied in=netpol[x/in]-ingress[0] out=-",
        ),
        (
            "unknown pod: an external source is not isolated for egress",
            &[("x/deny", EGRESS_DENY_ALL)],
            "203.0.113.9 -> x/a:80",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "unknown pod: an external destination is not isolated for ingress",
            &[("x/deny", DENY_ALL)],
            "x/a -> 198.51.100.7:80",
            "allow network-not-isolated in=- out=-",
        ),
        (
            "unknown pod: found by address when no workload is named",
            &[("x/deny", DENY_ALL)],
            "203.0.113.9 -> 10.0.0.1:80",
            "deny network-ingress-denied in=- out=-",
        ),
        (
            "error: a source with neither workload nor address",
            &[("x/deny", DENY_ALL)],
            " -> x/a:80",
            "deny error NetworkPolicy needs the source workload, address or SPIFFE identity, and the request gives none",
        ),
        (
            "error: a workload not in the inventory",
            &[("x/deny", DENY_ALL)],
            "x/nope -> x/a:80",
            "deny error source workload `x/nope` is not in the inventory",
        ),
    ];
    let mut failures = Vec::new();
    for (case, policies, c, want) in rows {
        let got = summary(&engine(policies), c);
        if got != *want {
            failures.push(format!("{case}\n  {c}\n  want: {want}\n   got: {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_network_policies_leave_decisions_alone() {
    let e = engine(&[]);
    assert!(e.network().is_empty());
    let d = e.decide(&conn("x/b -> x/a:80"));
    assert!(d.allowed());
    assert_eq!(d.network, None);
}

#[test]
fn compile_precomputes_the_policies_selecting_each_workload() {
    let e = engine(&[
        ("x/web", ISOLATE_WEB),
        ("x/out", EGRESS_ONLY),
        ("y/all", DENY_ALL),
    ]);
    let by_name = |ns: &str, name: &str| {
        let i = e
            .inventory()
            .workloads
            .iter()
            .position(|w| w.namespace == ns && w.name == name)
            .unwrap();
        e.network().selected[i].clone()
    };
    assert_eq!(
        by_name("x", "a"),
        Selected {
            ingress: vec![0],
            egress: vec![1]
        }
    );
    assert_eq!(by_name("x", "b"), Selected::default());
    assert_eq!(
        by_name("y", "b"),
        Selected {
            ingress: vec![2],
            egress: vec![]
        }
    );
    assert_eq!(by_name("z", "a"), Selected::default());
}

#[test]
fn compiled_policies_survive_a_bundle() {
    let e = engine(&[
        ("x/p", IP_BLOCK),
        ("x/r", RANGE),
        ("x/n", AND_PEER),
        ("x/e", EGRESS_NAMED_81),
    ]);
    let bytes = crate::encode_bundle(&e).unwrap();
    let back = crate::decode_bundle(&bytes).unwrap();
    assert_eq!(back.network(), e.network());
    assert_eq!(
        summary(&back, "203.0.113.9 -> x/a:8050"),
        "allow network-allowed in=netpol[x/p]-ingress[0] out=-"
    );
}

#[test]
fn a_policy_defined_twice_is_an_error() {
    let text = [policy_doc("x/p", DENY_ALL), policy_doc("x/p", ALLOW_ALL)].join("---\n");
    let set = load(&[SourceFile::new("p.yaml", text)]).unwrap();
    let err = compile_engine(&set, &Options::default()).unwrap_err();
    assert_eq!(
        err.diagnostics[0].message,
        "NetworkPolicy `x/p` is defined twice (p.yaml:1 and p.yaml:6)"
    );
}

#[test]
fn invalid_policies_are_reported_at_their_field() {
    // (case, spec, message, path)
    let rows: &[(&str, &str, &str, &str)] = &[
        (
            "invalid CIDR",
            "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}",
            "invalid CIDR `10.0.0.0/33`",
            "spec.ingress[0].from[0].ipBlock.cidr",
        ),
        (
            "CIDR without prefix length",
            "{egress: [{to: [{ipBlock: {cidr: 10.0.0.1}}]}]}",
            "invalid CIDR `10.0.0.1`",
            "spec.egress[0].to[0].ipBlock.cidr",
        ),
        (
            "except outside cidr",
            "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 10.1.0.0/24]}}]}]}",
            "`except` entry `10.1.0.0/24` is not inside `cidr` `10.0.0.0/16`",
            "spec.ingress[0].from[0].ipBlock.except[1]",
        ),
        (
            "except equal to cidr",
            "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]}]}",
            "`except` entry `10.0.0.0/16` is not inside `cidr` `10.0.0.0/16`",
            "spec.ingress[0].from[0].ipBlock.except[0]",
        ),
        (
            "except of another family",
            "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: ['2001:db8::/64']}}]}]}",
            "`except` entry `2001:db8::/64` is not inside `cidr` `10.0.0.0/8`",
            "spec.ingress[0].from[0].ipBlock.except[0]",
        ),
        (
            "ipBlock without cidr",
            "{ingress: [{from: [{ipBlock: {except: [10.0.0.0/24]}}]}]}",
            "missing required field `cidr`",
            "spec.ingress[0].from[0].ipBlock",
        ),
        (
            "ipBlock with a selector",
            "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
            "`ipBlock` cannot be combined with `podSelector` or `namespaceSelector`",
            "spec.ingress[0].from[0].ipBlock",
        ),
        (
            "empty peer",
            "{ingress: [{from: [{}]}]}",
            "a peer needs `podSelector`, `namespaceSelector` or `ipBlock`",
            "spec.ingress[0].from[0]",
        ),
        (
            "endPort without port",
            "{ingress: [{ports: [{endPort: 90}]}]}",
            "`endPort` needs a numeric `port`",
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            "endPort with a named port",
            "{egress: [{ports: [{port: http, endPort: 90}]}]}",
            "`endPort` needs a numeric `port`, not the named port `http`",
            "spec.egress[0].ports[0].endPort",
        ),
        (
            "endPort below port",
            "{ingress: [{}, {ports: [{port: 80}, {port: 100, endPort: 90}]}]}",
            "`endPort` 90 is less than `port` 100",
            "spec.ingress[1].ports[1].endPort",
        ),
        (
            "port out of range",
            "{ingress: [{ports: [{port: 70000}]}]}",
            "`70000` is out of range 1..=65535",
            "spec.ingress[0].ports[0].port",
        ),
        (
            "port zero",
            "{ingress: [{ports: [{port: 0}]}]}",
            "`0` is out of range 1..=65535",
            "spec.ingress[0].ports[0].port",
        ),
        (
            "invalid port name",
            "{ingress: [{ports: [{port: Web_Port}]}]}",
            "invalid port `Web_Port`",
            "spec.ingress[0].ports[0].port",
        ),
        (
            "unknown protocol",
            "{ingress: [{ports: [{protocol: ICMP, port: 80}]}]}",
            "unknown protocol `ICMP`",
            "spec.ingress[0].ports[0].protocol",
        ),
        (
            "lower-case protocol",
            "{ingress: [{ports: [{protocol: tcp}]}]}",
            "unknown protocol `tcp`",
            "spec.ingress[0].ports[0].protocol",
        ),
        (
            "unknown operator",
            "{podSelector: {matchExpressions: [{key: app, operator: Equals, values: [web]}]}}",
            "unknown operator `Equals`",
            "spec.podSelector.matchExpressions[0].operator",
        ),
        (
            "values with Exists",
            "{podSelector: {matchExpressions: [{key: app, operator: Exists, values: [web]}]}}",
            "operator `Exists` takes no values",
            "spec.podSelector.matchExpressions[0].values",
        ),
        (
            "values with DoesNotExist",
            "{ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: DoesNotExist, values: [x]}]}}]}]}",
            "operator `DoesNotExist` takes no values",
            "spec.ingress[0].from[0].podSelector.matchExpressions[0].values",
        ),
        (
            "In without values",
            "{podSelector: {matchExpressions: [{key: app, operator: In}]}}",
            "operator `In` needs at least one value in `values`",
            "spec.podSelector.matchExpressions[0]",
        ),
        (
            "NotIn with empty values",
            "{egress: [{to: [{namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: []}]}}]}]}",
            "operator `NotIn` needs at least one value",
            "spec.egress[0].to[0].namespaceSelector.matchExpressions[0].values",
        ),
        (
            "expression without operator",
            "{podSelector: {matchExpressions: [{key: app}]}}",
            "missing required field `operator`",
            "spec.podSelector.matchExpressions[0]",
        ),
        (
            "unknown policy type",
            "{policyTypes: [Ingress, Egres]}",
            "unknown policy type `Egres`",
            "spec.policyTypes[1]",
        ),
        (
            "unknown field in spec",
            "{podSelector: {}, ingres: []}",
            "unknown field `ingres`",
            "spec.ingres",
        ),
        (
            "unknown field in a rule",
            "{ingress: [{fromm: []}]}",
            "unknown field `fromm`",
            "spec.ingress[0].fromm",
        ),
        (
            "to in an ingress rule",
            "{ingress: [{to: []}]}",
            "unknown field `to`",
            "spec.ingress[0].to",
        ),
        (
            "from in an egress rule",
            "{egress: [{from: []}]}",
            "unknown field `from`",
            "spec.egress[0].from",
        ),
        (
            "unknown field in a port",
            "{ingress: [{ports: [{port: 80, end_port: 90}]}]}",
            "unknown field `end_port`",
            "spec.ingress[0].ports[0].end_port",
        ),
        (
            "unknown field in a selector",
            "{podSelector: {matchLabel: {app: web}}}",
            "unknown field `matchLabel`",
            "spec.podSelector.matchLabel",
        ),
    ];
    let mut failures = Vec::new();
    for (case, spec, message, path) in rows {
        let result = load(&[SourceFile::new("p.yaml", policy_doc("x/p", spec))]);
        match result {
            Ok(_) => failures.push(format!("{case}: accepted")),
            Err(e) => {
                let d = &e.diagnostics[0];
                if d.message != *message || d.path.as_deref() != Some(*path) {
                    failures.push(format!(
                        "{case}\n  want: {message} at {path}\n   got: {} at {:?}",
                        d.message, d.path
                    ));
                }
                if d.document.as_deref() != Some("NetworkPolicy x/p") {
                    failures.push(format!("{case}: document {:?}", d.document));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_point_at_the_line_and_column() {
    let text = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.1.0.0/16, 192.168.0.0/16]
";
    let err = load(&[SourceFile::new("p.yaml", text)]).unwrap_err();
    let d = &err.diagnostics[0];
    let l = d.location.as_ref().unwrap();
    assert_eq!((l.file.as_str(), l.line, l.column), ("p.yaml", 10, 31));
    assert_eq!(
        d.help.as_deref(),
        Some("each `except` entry must be a strict subset of `cidr`")
    );
    let unknown = load(&[SourceFile::new("p.yaml", text.replace("except", "exept"))]).unwrap_err();
    assert_eq!(
        unknown.diagnostics[0].help.as_deref(),
        Some("did you mean `except`?")
    );
}

#[test]
fn defaults_and_shapes_are_read_as_kubernetes_reads_them() {
    let read = |spec: &str| {
        load(&[SourceFile::new("p.yaml", policy_doc("x/p", spec))])
            .unwrap()
            .network
            .remove(0)
    };
    let p = read("{}");
    assert_eq!(p.pod_selector, LabelSelector::default());
    assert_eq!(
        p.policy_types,
        PolicyTypes {
            ingress: true,
            egress: false
        }
    );
    let p = read("{policyTypes: [], egress: [{}]}");
    assert_eq!(
        p.policy_types,
        PolicyTypes {
            ingress: true,
            egress: true
        }
    );
    let p = read("{policyTypes: [Egress]}");
    assert_eq!(
        p.policy_types,
        PolicyTypes {
            ingress: false,
            egress: true
        }
    );
    let p =
        read("{ingress: [{ports: [{port: '8080', endPort: 8090}, {protocol: UDP, port: dns}]}]}");
    assert_eq!(
        p.ingress[0].ports,
        vec![
            PortMatch {
                protocol: Transport::Tcp,
                port: Some(PortRef::Number(8080)),
                end_port: Some(8090)
            },
            PortMatch {
                protocol: Transport::Udp,
                port: Some(PortRef::Name("dns".into())),
                end_port: None
            },
        ]
    );
    let p = read("{ingress: [{from: [{ipBlock: {cidr: 10.1.2.3/16}}]}]}");
    assert_eq!(
        p.ingress[0].peers,
        vec![Peer::IpBlock {
            cidr: "10.1.0.0/16".parse().unwrap(),
            except: vec![]
        }]
    );
}
