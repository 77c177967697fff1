//! Addresses that lead to the right identity (or to none): reused pod IPs, addresses two live
//! pods claim, node addresses and `hostNetwork` pods, a pod's own node, phases. The expected
//! values are written by hand from the Kubernetes documentation ("Network Policies": the
//! "Isolation" rules and "NetworkPolicy and hostNetwork pods"; "Pod Lifecycle": phases), not
//! computed by the engine; the generated cluster at the end checks its decisions against an
//! independent model of who holds each address, built while generating it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use palisade_engine::{
    AddressOwner, Engine, HostNetworkPods, Options, Request, SourceFile, Step, Verdict, compile,
    load,
};
use serde_json::{Value, json};

/// Two nodes; a finished Job pod whose address a live pod now holds; two live pods claiming
/// one address; a terminating pod; a `hostNetwork` exporter on node-b; the database on node-b.
const INVENTORY: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: Inventory
metadata: {name: cluster}
spec:
  nodes:
  - {name: node-a, ips: [192.168.0.10]}
  - {name: node-b, ips: [192.168.0.11, "fd00::11"]}
  namespaces:
  - {name: shop}
  - {name: batch}
  - {name: monitoring}
  workloads:
  - {name: web, namespace: shop, labels: {app: web}, ips: [10.1.0.5], phase: Running, nodeName: node-a}
  - name: db
    namespace: shop
    labels: {app: db}
    ips: [10.1.1.7, "fd00:1::7"]
    phase: Running
    nodeName: node-b
    ports: [{port: 5432}, {name: metrics, port: 9187}]
  - {name: old-job, namespace: batch, labels: {app: old-job}, ips: [10.1.0.9], phase: Succeeded, nodeName: node-a}
  - {name: api, namespace: shop, labels: {app: api}, ips: [10.1.0.9], phase: Running, nodeName: node-a}
  - {name: twin-1, namespace: shop, labels: {app: twin}, ips: [10.1.2.2], phase: Running, nodeName: node-a}
  - {name: twin-2, namespace: shop, labels: {app: twin}, ips: [10.1.2.2], nodeName: node-b}
  - {name: draining, namespace: shop, labels: {app: draining}, ips: [10.1.3.3], phase: Running, terminating: true, nodeName: node-a}
  - {name: gone, namespace: batch, labels: {app: gone}, ips: [10.9.9.9], phase: Failed, nodeName: node-a}
  - {name: exporter, namespace: monitoring, labels: {app: exporter}, ips: [192.168.0.11], hostNetwork: true, nodeName: node-b}
  - {name: agent, namespace: monitoring, labels: {app: agent}, ips: [192.168.0.11], hostNetwork: true, nodeName: node-b}
"#;

fn netpol(id: &str, spec: &str) -> String {
    let (ns, name) = id.split_once('/').unwrap();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

fn engine_with(policies: &[(&str, &str)], options: &Options) -> Engine {
    let text = policies
        .iter()
        .map(|(id, spec)| netpol(id, spec))
        .collect::<Vec<_>>()
        .join("---\n");
    let set = load(&[
        SourceFile::new("inventory.yaml", INVENTORY),
        SourceFile::new("policies.yaml", text),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    compile(&set, options).unwrap_or_else(|e| panic!("{e}"))
}

/// `ns/name` names an inventory workload; anything else is an address.
fn endpoint(s: &str) -> Value {
    match s.split_once('/') {
        Some((ns, name)) if !s.contains(':') && !s.contains('.') => {
            json!({"workload": {"namespace": ns, "name": name}})
        }
        _ => json!({"ip": s}),
    }
}

/// `src -> dst:port` over TCP.
fn conn(c: &str) -> Request {
    let (src, rest) = c.split_once(" -> ").unwrap();
    let (dst, port) = rest.rsplit_once(':').unwrap();
    let mut d = endpoint(dst);
    d["port"] = port.parse::<u16>().unwrap().into();
    serde_json::from_value(json!({"protocol": "tcp", "source": endpoint(src), "destination": d}))
        .unwrap()
}

/// `allow network-allowed` / `deny network-ingress-denied` / `deny error: <message>`.
fn summary(e: &Engine, c: &str) -> String {
    let d = e.decide(&conn(c));
    let step = serde_json::to_value(d.step).unwrap();
    let mut s = format!("{} {}", d.verdict, step.as_str().unwrap());
    if d.step == Step::Error {
        s.push_str(&format!(": {}", d.error_message()));
    }
    s
}

const DB_FROM_API: &str = "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]}";
const DB_FROM_ANY_POD: &str =
    "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{namespaceSelector: {}}]}]}";
const DB_FROM_NODES: &str = "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/24}}]}]}";
const DB_FROM_DRAINING: &str = "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{podSelector: {matchLabels: {app: draining}}}]}]}";
const DB_FROM_OUTSIDE: &str =
    "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{ipBlock: {cidr: 10.9.0.0/16}}]}]}";
const SHOP_DENY_ALL: &str = "{podSelector: {}}";
const MONITORING_DENY_ALL: &str = "{podSelector: {}}";
const MONITORING_EGRESS_DENY_ALL: &str = "{podSelector: {}, policyTypes: [Egress]}";
const DB_FROM_EXPORTER: &str = "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}, podSelector: {matchLabels: {app: exporter}}}]}]}";
const DB_PORT_5432: &str =
    "{podSelector: {matchLabels: {app: db}}, ingress: [{ports: [{port: 5432}]}]}";
const DB_NAMED_METRICS: &str =
    "{podSelector: {matchLabels: {app: db}}, ingress: [{ports: [{port: metrics}]}]}";

/// (case, policies, connection, host-network pods as, expected summary).
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    HostNetworkPods,
    &'static str,
);

const NODE: HostNetworkPods = HostNetworkPods::Node;
const POD: HostNetworkPods = HostNetworkPods::Pod;

const CASES: &[Case] = &[
    // Reused and stale addresses.
    (
        "a reused address is the live pod's, not the finished Job pod's that listed it first",
        &[("shop/db-from-api", DB_FROM_API)],
        "10.1.0.9 -> shop/db:5432",
        NODE,
        "allow network-allowed",
    ),
    (
        "the finished Job pod's labels are never used for its old address",
        &[(
            "shop/db-from-old-job",
            "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: old-job}}}]}]}",
        )],
        "10.1.0.9 -> shop/db:5432",
        NODE,
        "deny network-ingress-denied",
    ),
    (
        "an address two live pods claim fails closed, naming both",
        &[("shop/db-from-api", DB_FROM_API)],
        "10.1.2.2 -> shop/db:5432",
        NODE,
        "deny error: the source address `10.1.2.2` is held by both `shop/twin-1` and `shop/twin-2`: which one sent it cannot be known; mark the stale one finished (`phase`) or remove it from the inventory",
    ),
    (
        "an address two live pods claim fails closed even where no policy isolates",
        &[("monitoring/deny-all", MONITORING_DENY_ALL)],
        "10.1.2.2 -> shop/web:80",
        NODE,
        "deny error: the source address `10.1.2.2` is held by both `shop/twin-1` and `shop/twin-2`: which one sent it cannot be known; mark the stale one finished (`phase`) or remove it from the inventory",
    ),
    (
        "a terminating pod still holds its address until it stops",
        &[("shop/db-from-draining", DB_FROM_DRAINING)],
        "10.1.3.3 -> shop/db:5432",
        NODE,
        "allow network-allowed",
    ),
    (
        "a finished pod's address no one reused is outside the cluster: pod selectors miss it",
        &[("shop/db-from-any-pod", DB_FROM_ANY_POD)],
        "10.9.9.9 -> shop/db:5432",
        NODE,
        "deny network-ingress-denied",
    ),
    (
        "a finished pod's address no one reused is outside the cluster: ipBlocks see it",
        &[("shop/db-from-outside", DB_FROM_OUTSIDE)],
        "10.9.9.9 -> shop/db:5432",
        NODE,
        "allow network-allowed",
    ),
    // Node traffic.
    (
        "a node's address is node traffic: namespace selectors do not match it",
        &[("shop/db-from-any-pod", DB_FROM_ANY_POD)],
        "192.168.0.10 -> shop/db:5432",
        NODE,
        "deny network-ingress-denied",
    ),
    (
        "a node's address is node traffic: ipBlocks match it",
        &[("shop/db-from-nodes", DB_FROM_NODES)],
        "192.168.0.10 -> shop/db:5432",
        NODE,
        "allow network-allowed",
    ),
    (
        "a hostNetwork pod's connection is its node's: selectors naming it do not match",
        &[
            ("shop/db-from-exporter", DB_FROM_EXPORTER),
            ("shop/deny-all", SHOP_DENY_ALL),
        ],
        "monitoring/exporter -> shop/web:80",
        NODE,
        "deny network-ingress-denied",
    ),
    (
        "a hostNetwork pod named in the request is its pod when hostNetwork pods are pods",
        &[(
            "shop/web-from-exporter",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: exporter}}}]}]}",
        )],
        "monitoring/exporter -> shop/web:80",
        POD,
        "allow network-allowed",
    ),
    (
        "a bare node address stays node traffic when hostNetwork pods are pods (whose it is cannot be told)",
        &[(
            "shop/web-from-exporter",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: exporter}}}]}]}",
        )],
        "192.168.0.11 -> shop/web:80",
        POD,
        "deny network-ingress-denied",
    ),
    (
        "policies do not isolate a hostNetwork pod: connections to it are the node's",
        &[("monitoring/deny-all", MONITORING_DENY_ALL)],
        "shop/web -> monitoring/exporter:9100",
        NODE,
        "allow network-not-isolated",
    ),
    (
        "policies isolate a hostNetwork pod when hostNetwork pods are pods",
        &[("monitoring/deny-all", MONITORING_DENY_ALL)],
        "shop/web -> monitoring/exporter:9100",
        POD,
        "deny network-ingress-denied",
    ),
    (
        "a hostNetwork pod's egress is the node's, not isolated by its namespace's policies",
        &[("monitoring/egress-deny-all", MONITORING_EGRESS_DENY_ALL)],
        "monitoring/exporter -> shop/web:80",
        NODE,
        "allow network-not-isolated",
    ),
    (
        "a hostNetwork pod's egress is isolated when hostNetwork pods are pods",
        &[("monitoring/egress-deny-all", MONITORING_EGRESS_DENY_ALL)],
        "monitoring/exporter -> shop/web:80",
        POD,
        "deny network-egress-denied",
    ),
    // A pod's own node.
    (
        "an ingress-isolated pod accepts connections from its own node",
        &[("shop/deny-all", SHOP_DENY_ALL)],
        "192.168.0.11 -> shop/db:5432",
        NODE,
        "allow network-from-own-node",
    ),
    (
        "an ingress-isolated pod accepts its own node over IPv6 too",
        &[("shop/deny-all", SHOP_DENY_ALL)],
        "fd00::11 -> shop/db:5432",
        NODE,
        "allow network-from-own-node",
    ),
    (
        "an ingress-isolated pod refuses another node",
        &[("shop/deny-all", SHOP_DENY_ALL)],
        "192.168.0.10 -> shop/db:5432",
        NODE,
        "deny network-ingress-denied",
    ),
    (
        "a hostNetwork pod on the destination's node is that node's traffic",
        &[("shop/deny-all", SHOP_DENY_ALL)],
        "monitoring/agent -> shop/db:5432",
        NODE,
        "allow network-from-own-node",
    ),
    (
        "a pod on the same node is not the node",
        &[("shop/deny-all", SHOP_DENY_ALL)],
        "10.1.0.5 -> shop/api:8080",
        NODE,
        "deny network-ingress-denied",
    ),
    (
        "the own-node rule is not claimed when nothing isolates the pod",
        &[("monitoring/deny-all", MONITORING_DENY_ALL)],
        "192.168.0.11 -> shop/db:5432",
        NODE,
        "allow network-not-isolated",
    ),
    // Ports without a name.
    (
        "an unnamed container port is matched by number",
        &[("shop/db-5432", DB_PORT_5432)],
        "shop/web -> shop/db:5432",
        NODE,
        "allow network-allowed",
    ),
    (
        "a named-port rule still matches the named port",
        &[("shop/db-metrics", DB_NAMED_METRICS)],
        "shop/web -> shop/db:9187",
        NODE,
        "allow network-allowed",
    ),
    (
        "a named-port rule does not match the unnamed port",
        &[("shop/db-metrics", DB_NAMED_METRICS)],
        "shop/web -> shop/db:5432",
        NODE,
        "deny network-ingress-denied",
    ),
];

#[test]
fn addresses_lead_to_the_identity_kubernetes_gives_them() {
    let mut failures = Vec::new();
    for (name, policies, c, host_network, expected) in CASES {
        let mut options = Options::default();
        options.node_traffic.host_network_pods = *host_network;
        let got = summary(&engine_with(policies, &options), c);
        if got != *expected {
            failures.push(format!(
                "{name}\n  {c}\n  expected: {expected}\n  got:      {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn isolating_pods_from_their_own_node_is_a_choice() {
    let mut options = Options::default();
    options.node_traffic.allow_own_node = false;
    let e = engine_with(&[("shop/deny-all", SHOP_DENY_ALL)], &options);
    assert_eq!(
        summary(&e, "192.168.0.11 -> shop/db:5432"),
        "deny network-ingress-denied"
    );
}

#[test]
fn owner_of_says_who_holds_each_address() {
    let set = load(&[SourceFile::new("inventory.yaml", INVENTORY)]).unwrap();
    let inv = &set.inventory;
    let index = |name: &str| inv.workloads.iter().position(|w| w.name == name).unwrap();
    let ip = |s: &str| s.parse().unwrap();
    let rows: &[(&str, AddressOwner<'_>)] = &[
        ("10.1.0.5", AddressOwner::Workload(index("web"))),
        ("10.1.0.9", AddressOwner::Workload(index("api"))),
        (
            "10.1.2.2",
            AddressOwner::Ambiguous(index("twin-1"), index("twin-2")),
        ),
        ("10.1.3.3", AddressOwner::Workload(index("draining"))),
        ("10.9.9.9", AddressOwner::External),
        ("192.168.0.10", AddressOwner::Node("node-a")),
        ("192.168.0.11", AddressOwner::Node("node-b")),
        ("fd00::11", AddressOwner::Node("node-b")),
        ("fd00:1::7", AddressOwner::Workload(index("db"))),
        ("203.0.113.1", AddressOwner::External),
    ];
    for (addr, expected) in rows {
        assert_eq!(inv.owner_of(ip(addr)), *expected, "{addr}");
    }
}

#[test]
fn a_hostnetwork_pod_without_listed_nodes_is_still_node_traffic() {
    let text = r#"
apiVersion: palisade.dev/v1alpha1
kind: Inventory
metadata: {name: c}
spec:
  workloads:
  - {name: ds, namespace: kube-system, ips: [172.16.0.4], hostNetwork: true, nodeName: n1}
"#;
    let set = load(&[SourceFile::new("i.yaml", text)]).unwrap();
    assert_eq!(
        set.inventory.owner_of("172.16.0.4".parse().unwrap()),
        AddressOwner::Node("n1")
    );
}

#[test]
fn addresses_held_twice_are_warnings_naming_both() {
    let set = load(&[SourceFile::new("inventory.yaml", INVENTORY)]).unwrap();
    let warnings: Vec<String> = set
        .inventory
        .warnings()
        .into_iter()
        .map(|w| w.message)
        .collect();
    assert_eq!(
        warnings,
        [
            "address `10.1.0.9` is held by workload `batch/old-job` (Succeeded, finished) and workload `shop/api`; it resolves to the live `shop/api`",
            "address `10.1.2.2` is held by workload `shop/twin-1` and workload `shop/twin-2`; requests from or to it fail closed until one record is removed",
        ]
    );
}

const API_GET: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-get, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
"#;

#[test]
fn a_destination_address_resolves_by_the_same_rules_for_authorization() {
    let set = load(&[
        SourceFile::new("inventory.yaml", INVENTORY),
        SourceFile::new("policy.yaml", API_GET),
    ])
    .unwrap();
    let e = compile(&set, &Options::default()).unwrap();
    let http = |dst: &str| -> Request {
        serde_json::from_value(json!({
            "protocol": "http",
            "destination": {"ip": dst, "port": 8080},
            "http": {"method": "GET", "path": "/"},
        }))
        .unwrap()
    };
    // The reused address is the live api pod's, so its ALLOW policy applies.
    let d = e.decide(&http("10.1.0.9"));
    assert_eq!((d.verdict, d.step), (Verdict::Allow, Step::AllowMatched));
    let d = e.decide(&http("10.1.2.2"));
    assert_eq!((d.verdict, d.step), (Verdict::Deny, Step::Error));
    assert_eq!(
        d.errors,
        [
            "the address `10.1.2.2` is held by both `shop/twin-1` and `shop/twin-2`: which one it is cannot be known; mark the stale one finished (`phase`) or remove it from the inventory"
        ]
    );
    let d = e.decide(&http("192.168.0.11"));
    assert_eq!((d.verdict, d.step), (Verdict::Deny, Step::Error));
    assert_eq!(
        d.errors,
        [
            "the address `192.168.0.11` is node `node-b`'s (a node or a hostNetwork pod), not a pod's: name the workload"
        ]
    );
}

#[test]
fn inventory_fields_are_validated_at_their_position() {
    // (case, workload line, message, field path)
    let rows: &[(&str, &str, &str, &str)] = &[
        (
            "an unknown phase",
            "  - {name: w, namespace: n, phase: Done}\n",
            "unknown pod phase `Done`",
            "spec.workloads[0].phase",
        ),
        (
            "a hostNetwork pod with addresses and no node",
            "  - {name: w, namespace: n, hostNetwork: true, ips: [10.0.0.1]}\n",
            "hostNetwork workload `n/w` has addresses but no `nodeName`",
            "spec.workloads[0]",
        ),
        (
            "terminating is a boolean",
            "  - {name: w, namespace: n, terminating: soon}\n",
            "expected `true` or `false`, found `soon`",
            "spec.workloads[0].terminating",
        ),
    ];
    for (case, workload, message, path) in rows {
        let text = format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: Inventory\nmetadata: {{name: c}}\nspec:\n  workloads:\n{workload}"
        );
        let err = load(&[SourceFile::new("i.yaml", text)]).expect_err(case);
        let d = &err.diagnostics[0];
        assert_eq!(d.message, *message, "{case}");
        assert_eq!(d.path.as_deref(), Some(*path), "{case}");
        let loc = d
            .location
            .as_ref()
            .unwrap_or_else(|| panic!("{case}: no location"));
        assert_eq!(loc.line, 6, "{case}");
    }
}

/// A cluster of 240 pods over 6 nodes: Deployments' pods, a Job's finished pods whose
/// addresses live pods reuse, a hostNetwork DaemonSet on every node. Each connection from an
/// address to a database that admits only `role: client` pods (and no node) must be decided by
/// the identity that really holds the address, which the generator records on its own.
#[test]
fn a_generated_cluster_decides_every_address_by_its_real_holder() {
    use std::fmt::Write as _;
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Truth {
        Client,
        Other,
        Node,
    }
    let mut inv = String::from(
        "apiVersion: palisade.dev/v1alpha1\nkind: Inventory\nmetadata: {name: gen}\nspec:\n  nodes:\n",
    );
    let nodes = 6;
    for n in 0..nodes {
        let _ = writeln!(inv, "  - {{name: node-{n}, ips: [192.168.1.{n}]}}");
    }
    inv.push_str("  workloads:\n");
    inv.push_str("  - {name: db, namespace: data, labels: {app: db}, ips: [10.2.0.1], phase: Running, nodeName: node-0}\n");
    let mut truth: Vec<(String, Truth)> = Vec::new();
    let mut pods = 1;
    // A simple deterministic generator (no randomness needed to reach every shape).
    for i in 0..200u32 {
        let ip = format!("10.3.{}.{}", i / 200, i % 200 + 1);
        let node = i % nodes;
        let client = i % 3 == 0;
        let role = if client { "client" } else { "server" };
        if i % 5 == 0 {
            // A finished Job pod listed first, holding the address before this pod.
            let _ = writeln!(
                inv,
                "  - {{name: job-{i}, namespace: batch, labels: {{role: {}}}, ips: [{ip}], phase: {}, nodeName: node-{node}}}",
                if client { "server" } else { "client" },
                if i % 2 == 0 { "Succeeded" } else { "Failed" }
            );
            pods += 1;
        }
        let phase = match i % 4 {
            0 => "phase: Running, ",
            1 => "phase: Pending, ",
            2 => "",
            _ => "phase: Running, terminating: true, ",
        };
        let _ = writeln!(
            inv,
            "  - {{name: app-{i}, namespace: apps, labels: {{role: {role}}}, ips: [{ip}], {phase}nodeName: node-{node}}}"
        );
        pods += 1;
        truth.push((ip, if client { Truth::Client } else { Truth::Other }));
    }
    for n in 0..nodes {
        // A hostNetwork DaemonSet pod labelled as a client: node traffic, so it must not pass.
        let _ = writeln!(
            inv,
            "  - {{name: ds-{n}, namespace: kube-system, labels: {{role: client}}, ips: [192.168.1.{n}], hostNetwork: true, nodeName: node-{n}}}"
        );
        pods += 1;
        truth.push((format!("192.168.1.{n}"), Truth::Node));
    }
    assert_eq!(pods, 1 + 200 + 40 + nodes);
    let policy = netpol(
        "data/db-from-clients",
        "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]}]}",
    );
    let set = load(&[
        SourceFile::new("gen.yaml", inv),
        SourceFile::new("p.yaml", policy),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let e = compile(&set, &Options::default()).unwrap();
    let (mut allowed, mut denied, mut own_node) = (0, 0, 0);
    for (ip, who) in &truth {
        let d = e.decide(&conn(&format!("{ip} -> data/db:5432")));
        let expected = match who {
            Truth::Client => (Verdict::Allow, Step::NetworkAllowed),
            Truth::Other => (Verdict::Deny, Step::NetworkIngressDenied),
            // The db runs on node-0: that node may always connect; the others are node traffic
            // no selector matches.
            Truth::Node if ip == "192.168.1.0" => (Verdict::Allow, Step::NetworkFromOwnNode),
            Truth::Node => (Verdict::Deny, Step::NetworkIngressDenied),
        };
        assert_eq!(
            (d.verdict, d.step),
            expected,
            "{ip} ({who:?}): {}",
            d.explain()
        );
        match expected.1 {
            Step::NetworkAllowed => allowed += 1,
            Step::NetworkFromOwnNode => own_node += 1,
            _ => denied += 1,
        }
    }
    // 67 of the 200 app pods are clients (i % 3 == 0); the 40 stale Job records, labelled the
    // other way, change nothing; 5 nodes are refused and node-0 is let in.
    assert_eq!((allowed, denied, own_node), (67, 133 + 5, 1));
    assert_eq!(
        set.inventory.warnings().len(),
        40,
        "one warning per reused address"
    );
}

/// Envoy shows `response_code_details` only on a local reply: an allowed request has none, so
/// the evaluation shows no `envoyDetails` for it (it used to say `…matched_policy[none]`).
#[test]
fn envoy_details_are_shown_for_denials_only() {
    let set = load(&[
        SourceFile::new("inventory.yaml", INVENTORY),
        SourceFile::new("policy.yaml", API_GET),
    ])
    .unwrap();
    let e = compile(&set, &Options::default()).unwrap();
    let requests = palisade_engine::labelled::parse(&SourceFile::new(
        "r.json",
        r#"[
  {"name": "allowed", "request": {"protocol": "http",
   "destination": {"workload": {"namespace": "shop", "name": "api"}, "port": 80},
   "http": {"method": "GET", "path": "/"}}},
  {"name": "denied", "request": {"protocol": "http",
   "destination": {"workload": {"namespace": "shop", "name": "api"}, "port": 80},
   "http": {"method": "POST", "path": "/"}}}
]"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let (results, _) = palisade_engine::labelled::decide_all(&e, requests);
    let json: Vec<Value> = results
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    assert_eq!(json[0]["verdict"], "allow");
    assert_eq!(json[0].get("envoyDetails"), None, "{}", json[0]);
    assert_eq!(json[1]["verdict"], "deny");
    assert_eq!(
        json[1]["envoyDetails"],
        "rbac_access_denied_matched_policy[none]"
    );
}
