//! Kubernetes objects to inventory workloads: Istio's workload names, the pod phases, what is
//! merged, and every object that is not mapped, each with its reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_engine::inventory::{NamedPort, Phase, Workload};
use palisade_engine::request::Transport;
use palisade_engine::{SourceFile, load};
use palisade_sources::kubernetes::{Objects, cron_job_name, digest_of};
use palisade_sources::{Finding, Image, Import, ObjectRef, document};
use serde_json::{Value, json};

fn pod(ns: &str, name: &str, generate: &str, owner: Option<(&str, &str)>, labels: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
        "status": {"phase": "Running"}
    });
    if !generate.is_empty() {
        p["metadata"]["generateName"] = json!(generate);
    }
    if let Some((kind, owner)) = owner {
        p["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": "u", "controller": true
        }]);
    }
    p
}

fn ip(ip: &str, p: &mut Value) {
    p["status"]["podIP"] = json!(ip);
    p["status"]["podIPs"] = json!([{"ip": ip}]);
}

fn with_ip(mut p: Value, a: &str) -> Value {
    ip(a, &mut p);
    p
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// The objects with a Namespace object for every namespace they use, as a full dump has.
fn import(mut items: Vec<Value>) -> Import {
    let mut namespaces: Vec<String> = items
        .iter()
        .filter_map(|i| i["metadata"]["namespace"].as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    namespaces.sort();
    namespaces.dedup();
    for ns in namespaces {
        let listed = items
            .iter()
            .any(|i| i["kind"] == "Namespace" && i["metadata"]["name"] == ns.as_str());
        if !listed {
            items.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
    }
    bare_import(items)
}

fn bare_import(items: Vec<Value>) -> Import {
    let mut o = Objects::default();
    o.add(list(items));
    o.import()
}

#[test]
fn a_namespace_with_pods_but_no_namespace_object_is_noted_as_having_unknown_labels() {
    let i = bare_import(vec![pod("shop", "debug", "", None, json!({}))]);
    assert_eq!(names(&i), ["shop/debug"]);
    assert_eq!(i.inventory.namespaces, []);
    assert_eq!(
        i.notes,
        [finding(
            "Namespace",
            "",
            "shop",
            "has pods but is not among the objects read: its labels are unknown, so namespace selectors see only `kubernetes.io/metadata.name`"
        )]
    );
}

fn names(i: &Import) -> Vec<String> {
    i.inventory
        .workloads
        .iter()
        .map(|w| format!("{}/{}", w.namespace, w.name))
        .collect()
}

fn finding(kind: &str, ns: &str, name: &str, reason: &str) -> Finding {
    Finding::new(ObjectRef::new(kind, ns, name), reason)
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rs(ns: &str, name: &str, deployment: Option<&str>) -> Value {
    let mut r = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {}}
    });
    if let Some(d) = deployment {
        r["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": d, "uid": "u", "controller": true
        }]);
    }
    r
}

#[test]
fn a_deployments_pod_is_named_after_the_deployment_with_or_without_its_replicaset() {
    let p = pod(
        "shop",
        "cart-5f7b9c8d6e-x7k2p",
        "cart-5f7b9c8d6e-",
        Some(("ReplicaSet", "cart-5f7b9c8d6e")),
        json!({"app": "cart", "pod-template-hash": "5f7b9c8d6e"}),
    );
    let without = import(vec![p.clone()]);
    assert_eq!(names(&without), ["shop/cart"]);
    assert_eq!(without.notes, []);
    assert_eq!(without.unmapped, []);
    let with = import(vec![p, rs("shop", "cart-5f7b9c8d6e", Some("cart"))]);
    assert_eq!(names(&with), ["shop/cart"]);
    assert_eq!(with.notes, []);
}

#[test]
fn a_replicaset_whose_name_does_not_end_in_the_pod_template_hash_names_the_workload_itself() {
    // Istio's heuristic needs the hash label and the suffix; otherwise the ReplicaSet's name.
    let no_label = pod(
        "ns",
        "web-abc-1",
        "web-abc-",
        Some(("ReplicaSet", "web-abc")),
        json!({"app": "web"}),
    );
    let other_hash = pod(
        "ns",
        "api-abc-1",
        "api-abc-",
        Some(("ReplicaSet", "api-abc")),
        json!({"pod-template-hash": "zzz"}),
    );
    let i = import(vec![no_label, other_hash]);
    assert_eq!(names(&i), ["ns/api-abc", "ns/web-abc"]);
}

#[test]
fn statefulset_daemonset_cronjob_job_and_bare_pods_are_named_as_istio_names_them() {
    let i = import(vec![
        pod(
            "data",
            "postgres-0",
            "postgres-",
            Some(("StatefulSet", "postgres")),
            json!({"app": "postgres"}),
        ),
        pod(
            "kube-system",
            "fluentbit-8h2xq",
            "fluentbit-",
            Some(("DaemonSet", "fluentbit")),
            json!({}),
        ),
        pod(
            "ops",
            "backup-29412360-4kq8z",
            "backup-29412360-",
            Some(("Job", "backup-29412360")),
            json!({}),
        ),
        pod(
            "ops",
            "migrate-v2-7sd9x",
            "migrate-v2-",
            Some(("Job", "migrate-v2")),
            json!({}),
        ),
        pod("ops", "debug", "", None, json!({})),
    ]);
    assert_eq!(
        names(&i),
        [
            "data/postgres",
            "kube-system/fluentbit",
            "ops/backup",
            "ops/debug",
            "ops/migrate-v2"
        ]
    );
    assert_eq!(i.unmapped, []);
    assert_eq!(i.notes, []);
}

#[test]
fn a_job_name_is_a_cronjobs_only_with_eight_to_ten_trailing_digits() {
    assert_eq!(cron_job_name("backup-29412360"), Some("backup"));
    assert_eq!(cron_job_name("a-b-1234567890"), Some("a-b"));
    assert_eq!(cron_job_name("backup-1234567"), None);
    assert_eq!(cron_job_name("backup-12345678901"), None);
    assert_eq!(cron_job_name("-12345678"), None);
    assert_eq!(cron_job_name("backup-1234567a"), None);
    assert_eq!(cron_job_name("12345678"), None);
}

#[test]
fn the_istio_workload_name_label_overrides_the_derived_name() {
    let i = import(vec![pod(
        "shop",
        "cart-5f7b9c8d6e-x7k2p",
        "cart-5f7b9c8d6e-",
        Some(("ReplicaSet", "cart-5f7b9c8d6e")),
        json!({"pod-template-hash": "5f7b9c8d6e", "service.istio.io/workload-name": "cart-v2"}),
    )]);
    assert_eq!(names(&i), ["shop/cart-v2"]);
}

#[test]
fn a_pod_with_a_controller_but_no_generate_name_is_named_after_itself_and_noted() {
    let i = import(vec![pod(
        "ns",
        "hand-made",
        "",
        Some(("ReplicaSet", "web-abc")),
        json!({}),
    )]);
    assert_eq!(names(&i), ["ns/hand-made"]);
    assert_eq!(
        i.notes,
        [finding(
            "Pod",
            "ns",
            "hand-made",
            "has controller ReplicaSet `web-abc` but no `generateName`: named `hand-made` after itself, as Istio does"
        )]
    );
}

#[test]
fn owner_chains_that_end_nowhere_are_noted_with_the_missing_object() {
    let orphan = pod(
        "shop",
        "cart-5f7b-a",
        "cart-5f7b-",
        Some(("ReplicaSet", "cart-5f7b")),
        json!({"pod-template-hash": "5f7b"}),
    );
    let stray = pod(
        "shop",
        "web-9c8d-b",
        "web-9c8d-",
        Some(("ReplicaSet", "web-9c8d")),
        json!({"pod-template-hash": "9c8d"}),
    );
    let moved = pod(
        "shop",
        "api-1a2b-c",
        "api-1a2b-",
        Some(("ReplicaSet", "api-1a2b")),
        json!({"pod-template-hash": "1a2b"}),
    );
    let i = import(vec![
        orphan,
        stray,
        moved,
        rs("shop", "web-9c8d", None),
        rs("shop", "api-1a2b", Some("api-v2")),
    ]);
    assert_eq!(names(&i), ["shop/api", "shop/cart", "shop/web"]);
    assert_eq!(
        i.notes,
        [
            finding(
                "Pod",
                "shop",
                "cart-5f7b-a",
                "its controller ReplicaSet `cart-5f7b` is not among the objects read: named `cart` from the pod alone"
            ),
            finding(
                "Pod",
                "shop",
                "web-9c8d-b",
                "named `web` as Istio derives it, but its ReplicaSet `web-9c8d` has no controller"
            ),
            finding(
                "Pod",
                "shop",
                "api-1a2b-c",
                "named `api` as Istio derives it, but its ReplicaSet `api-1a2b` is controlled by Deployment `api-v2`"
            ),
        ]
    );
}

#[test]
fn pods_and_namespaces_give_every_workload_fact_the_inventory_holds() {
    let mut p = pod(
        "shop",
        "web-0",
        "web-",
        Some(("StatefulSet", "web")),
        json!({"app": "web"}),
    );
    p["spec"] = json!({
        "serviceAccountName": "web",
        "nodeName": "node-a",
        "containers": [
            {"name": "app", "image": "registry.example.com/web:1", "ports": [
                {"name": "http", "containerPort": 8080},
                {"containerPort": 9090, "protocol": "UDP"}
            ]}
        ],
        "initContainers": [
            {"name": "proxy", "image": "proxy:1", "restartPolicy": "Always", "ports": [{"name": "admin", "containerPort": 15000}]},
            {"name": "setup", "image": "setup:1", "ports": [{"containerPort": 1}]}
        ]
    });
    p["status"] = json!({
        "phase": "Running",
        "podIP": "10.1.0.9",
        "podIPs": [{"ip": "10.1.0.9"}, {"ip": "fd00:1::9"}],
        "hostIP": "192.168.0.10",
        "hostIPs": [{"ip": "192.168.0.10"}, {"ip": "fd00::10"}],
        "containerStatuses": [{"name": "app", "image": "registry.example.com/web:1", "imageID": "registry.example.com/web@sha256:00ff", "ready": true, "restartCount": 0}]
    });
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "shop", "kubernetes.io/metadata.name": "shop"}}});
    let i = import(vec![p, ns]);
    assert_eq!(
        i.inventory.workloads,
        [Workload {
            name: "web".into(),
            namespace: "shop".into(),
            service_account: "web".into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            ips: vec![addr("10.1.0.9"), addr("fd00:1::9")],
            ports: vec![
                NamedPort {
                    name: "http".into(),
                    port: 8080,
                    protocol: Transport::Tcp
                },
                NamedPort {
                    name: String::new(),
                    port: 9090,
                    protocol: Transport::Udp
                },
                NamedPort {
                    name: "admin".into(),
                    port: 15000,
                    protocol: Transport::Tcp
                },
            ],
            phase: Some(Phase::Running),
            terminating: false,
            host_network: false,
            node_name: "node-a".into(),
        }]
    );
    assert_eq!(i.inventory.namespaces.len(), 1);
    assert_eq!(
        i.inventory.namespaces[0].labels,
        BTreeMap::from([("team".into(), "shop".into())])
    );
    assert_eq!(i.inventory.nodes.len(), 1);
    assert_eq!(i.inventory.nodes[0].name, "node-a");
    assert_eq!(
        i.inventory.nodes[0].ips,
        [addr("192.168.0.10"), addr("fd00::10")]
    );
    assert_eq!(
        i.images[0].images,
        [Image {
            container: "app".into(),
            image: "registry.example.com/web:1".into(),
            digest: Some("sha256:00ff".into())
        }]
    );
    assert_eq!(i.notes, []);
}

#[test]
fn a_pending_pod_without_addresses_is_a_live_workload_without_addresses() {
    let mut p = pod(
        "shop",
        "web-abc-1",
        "web-abc-",
        Some(("ReplicaSet", "web-abc")),
        json!({"pod-template-hash": "abc"}),
    );
    p["status"] = json!({"phase": "Pending"});
    let i = import(vec![p]);
    let w = &i.inventory.workloads[0];
    assert_eq!(
        (w.name.as_str(), w.phase, w.ips.len(), w.live()),
        ("web", Some(Phase::Pending), 0, true)
    );
    assert_eq!(w.service_account, "default");
    // No status yet: the image as the spec names it, without a digest.
    assert_eq!(
        i.images[0].images,
        [Image {
            container: "app".into(),
            image: "example/app:1".into(),
            digest: None
        }]
    );
}

#[test]
fn finished_pods_are_left_out_of_a_workload_that_has_live_ones_and_noted() {
    let live = with_ip(
        pod(
            "ops",
            "web-abc-1",
            "web-abc-",
            Some(("ReplicaSet", "web-abc")),
            json!({"pod-template-hash": "abc"}),
        ),
        "10.0.0.1",
    );
    let mut evicted = with_ip(
        pod(
            "ops",
            "web-abc-2",
            "web-abc-",
            Some(("ReplicaSet", "web-abc")),
            json!({"pod-template-hash": "abc"}),
        ),
        "10.0.0.2",
    );
    evicted["status"]["phase"] = json!("Failed");
    let mut done = with_ip(
        pod(
            "ops",
            "backup-29412360-a",
            "backup-29412360-",
            Some(("Job", "backup-29412360")),
            json!({}),
        ),
        "10.0.0.3",
    );
    done["status"]["phase"] = json!("Succeeded");
    let i = import(vec![live, evicted, done]);
    assert_eq!(names(&i), ["ops/backup", "ops/web"]);
    let backup = &i.inventory.workloads[0];
    assert_eq!(
        (backup.phase, backup.ips.clone()),
        (Some(Phase::Succeeded), vec![addr("10.0.0.3")])
    );
    let web = &i.inventory.workloads[1];
    assert_eq!(
        (web.phase, web.ips.clone()),
        (Some(Phase::Running), vec![addr("10.0.0.1")])
    );
    assert_eq!(
        i.notes,
        [finding(
            "Pod",
            "ops",
            "web-abc-2",
            "finished (Failed): its addresses are free for reuse, so it is left out of workload `ops/web`, which has live pods"
        )]
    );
}

#[test]
fn a_workload_is_terminating_only_when_every_pod_is() {
    let mut old = with_ip(
        pod(
            "ns",
            "web-abc-1",
            "web-abc-",
            Some(("ReplicaSet", "web-abc")),
            json!({"pod-template-hash": "abc"}),
        ),
        "10.0.0.1",
    );
    old["metadata"]["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
    let new = with_ip(
        pod(
            "ns",
            "web-abc-2",
            "web-abc-",
            Some(("ReplicaSet", "web-abc")),
            json!({"pod-template-hash": "abc"}),
        ),
        "10.0.0.2",
    );
    let mut gone = with_ip(
        pod("ns", "db-0", "db-", Some(("StatefulSet", "db")), json!({})),
        "10.0.0.3",
    );
    gone["metadata"]["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
    let i = import(vec![old, new, gone]);
    let t: Vec<(String, bool, usize)> = i
        .inventory
        .workloads
        .iter()
        .map(|w| (w.name.clone(), w.terminating, w.ips.len()))
        .collect();
    // Both of web's pods still hold their addresses while the old one stops.
    assert_eq!(
        t,
        [("db".to_string(), true, 1), ("web".to_string(), false, 2)]
    );
}

#[test]
fn replicas_that_disagree_on_labels_keep_only_the_shared_ones_and_say_which() {
    let a = pod(
        "data",
        "db-0",
        "db-",
        Some(("StatefulSet", "db")),
        json!({"app": "db", "statefulset.kubernetes.io/pod-name": "db-0"}),
    );
    let b = pod(
        "data",
        "db-1",
        "db-",
        Some(("StatefulSet", "db")),
        json!({"app": "db", "statefulset.kubernetes.io/pod-name": "db-1", "extra": "x"}),
    );
    let i = import(vec![a, b]);
    assert_eq!(
        i.inventory.workloads[0].labels,
        BTreeMap::from([("app".into(), "db".into())])
    );
    assert_eq!(
        i.notes,
        [finding(
            "Workload",
            "data",
            "db",
            "its 2 members disagree on label(s) `extra`, `statefulset.kubernetes.io/pod-name`: the workload keeps only the labels they share"
        )]
    );
}

#[test]
fn duplicate_addresses_across_workloads_reach_the_engines_warning_and_within_one_are_kept_once() {
    let a = with_ip(pod("ns", "a", "", None, json!({})), "10.0.0.7");
    let b = with_ip(pod("ns", "b", "", None, json!({})), "10.0.0.7");
    let c1 = with_ip(
        pod("ns", "c-0", "c-", Some(("StatefulSet", "c")), json!({})),
        "10.0.0.8",
    );
    let c2 = with_ip(
        pod("ns", "c-1", "c-", Some(("StatefulSet", "c")), json!({})),
        "10.0.0.8",
    );
    let i = import(vec![a, b, c1, c2]);
    let warnings: Vec<String> = i
        .inventory
        .warnings()
        .into_iter()
        .map(|w| w.message)
        .collect();
    assert_eq!(
        warnings,
        [
            "address `10.0.0.7` is held by workload `ns/a` and workload `ns/b`; requests from or to it fail closed until one record is removed"
        ]
    );
    assert_eq!(i.inventory.workloads[2].ips, [addr("10.0.0.8")]);
    assert_eq!(
        i.notes,
        [finding(
            "Pod",
            "ns",
            "c-1",
            "address `10.0.0.8` is listed again in workload `ns/c`: kept once"
        )]
    );
}

#[test]
fn hostnetwork_daemonset_pods_on_several_nodes_leave_their_addresses_to_the_nodes() {
    let mk = |name: &str, node: &str, host: &str| {
        let mut p = with_ip(
            pod(
                "kube-system",
                name,
                "exporter-",
                Some(("DaemonSet", "exporter")),
                json!({"app": "exporter"}),
            ),
            host,
        );
        p["spec"]["hostNetwork"] = json!(true);
        p["spec"]["nodeName"] = json!(node);
        p["status"]["hostIP"] = json!(host);
        p
    };
    let i = import(vec![
        mk("exporter-a", "node-a", "192.168.0.10"),
        mk("exporter-b", "node-b", "192.168.0.11"),
    ]);
    let w = &i.inventory.workloads[0];
    assert_eq!(
        (w.host_network, w.ips.len(), w.node_name.as_str()),
        (true, 0, "")
    );
    let nodes: Vec<(String, Vec<IpAddr>)> = i
        .inventory
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.ips.clone()))
        .collect();
    assert_eq!(
        nodes,
        [
            ("node-a".into(), vec![addr("192.168.0.10")]),
            ("node-b".into(), vec![addr("192.168.0.11")])
        ]
    );
    assert_eq!(
        i.notes,
        [finding(
            "Workload",
            "kube-system",
            "exporter",
            "its hostNetwork members run on several nodes: their addresses are those nodes' and are left to the node list"
        )]
    );
    // The engine reads the document back (a hostNetwork workload with addresses would need a node).
    assert_roundtrip(&i);
}

#[test]
fn malformed_and_unknown_objects_are_reported_with_kind_name_and_reason() {
    let mut bad_spec = pod("ns", "broken", "", None, json!({}));
    bad_spec["spec"]["containers"] = json!("app");
    let no_ns = pod("", "lost", "", None, json!({}));
    let mut bad_ip = pod("ns", "odd", "", None, json!({}));
    ip("10.0.0.300", &mut bad_ip);
    let mut bad_port = pod("ns", "ports", "", None, json!({}));
    bad_port["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": 70000}, {"containerPort": 80, "protocol": "QUIC"}]);
    bad_port["status"]["phase"] = json!("Exploded");
    let i = import(vec![
        bad_spec,
        no_ns,
        bad_ip,
        bad_port,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ns"}}),
        json!({"metadata": {"name": "nokind"}}),
        json!({"apiVersion": "v1", "kind": "List", "items": []}),
        json!({"apiVersion": "example.com/v1", "kind": "Pod", "metadata": {"name": "impostor", "namespace": "ns"}}),
    ]);
    assert_eq!(names(&i), ["ns/odd", "ns/ports"]);
    assert_eq!(
        i.unmapped,
        [
            finding(
                "Pod",
                "ns",
                "broken",
                "does not read as its kind at `spec.containers`: invalid type: string \"app\", expected a sequence"
            ),
            finding(
                "ConfigMap",
                "ns",
                "cfg",
                "`v1` `ConfigMap` carries no workload facts Palisade reads"
            ),
            finding(
                "(no kind)",
                "",
                "nokind",
                "no `apiVersion` or `kind`: not a Kubernetes object"
            ),
            finding("List", "", "", "a list inside a list is not read"),
            finding(
                "Pod",
                "ns",
                "impostor",
                "`example.com/v1` `Pod` carries no workload facts Palisade reads"
            ),
            finding(
                "Pod",
                "",
                "lost",
                "a pod without `metadata.namespace`: its workload cannot be placed"
            ),
        ]
    );
    assert_eq!(
        i.notes,
        [
            finding(
                "Pod",
                "ns",
                "odd",
                "pod address `10.0.0.300` is not an IP address: left out"
            ),
            finding(
                "Pod",
                "ns",
                "ports",
                "container `app` port 70000 is out of range: left out"
            ),
            finding(
                "Pod",
                "ns",
                "ports",
                "container `app` port 80 has unknown protocol `QUIC`: left out"
            ),
            finding(
                "Pod",
                "ns",
                "ports",
                "unknown phase `Exploded`: read as not stated (live)"
            ),
        ]
    );
    assert_eq!(i.counts.get("ConfigMap"), Some(&1));
    assert_eq!(i.counts.get("Pod"), Some(&5));
}

#[test]
fn files_that_are_not_json_or_yaml_are_errors_naming_the_file() {
    let mut o = Objects::default();
    let e = o.read("dump.json", "{\"items\": [").unwrap_err();
    assert_eq!(e.file, "dump.json");
    assert!(
        e.message.starts_with("invalid JSON: EOF while parsing"),
        "{}",
        e.message
    );
    let e = o.read("dump.yaml", "items: [a, b\n").unwrap_err();
    assert!(e.message.starts_with("invalid YAML: "), "{}", e.message);
}

#[test]
fn yaml_several_documents_and_api_lists_read_like_kubectls_json() {
    let json_list = list(vec![
        with_ip(
            pod(
                "shop",
                "cart-5f7b-a",
                "cart-5f7b-",
                Some(("ReplicaSet", "cart-5f7b")),
                json!({"pod-template-hash": "5f7b", "on": "yes"}),
            ),
            "10.1.0.20",
        ),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"pci": "true"}}}),
    ]);
    let mut from_json = Objects::default();
    from_json.read("a.json", &json_list.to_string()).unwrap();
    let yaml = r#"
apiVersion: v1
kind: PodList
items:
  - metadata:
      name: cart-5f7b-a
      namespace: shop
      generateName: cart-5f7b-
      labels: {pod-template-hash: "5f7b", "on": "yes"}
      ownerReferences:
        - {apiVersion: apps/v1, kind: ReplicaSet, name: cart-5f7b, uid: u, controller: true}
    spec:
      containers: [{name: app, image: "example/app:1"}]
    status:
      phase: Running
      podIP: 10.1.0.20
      podIPs: [{ip: 10.1.0.20}]
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {pci: "true"}}
"#;
    let mut from_yaml = Objects::default();
    from_yaml.read("a.yaml", yaml).unwrap();
    assert_eq!(from_yaml.import(), from_json.import());
    assert_eq!(names(&from_yaml.import()), ["shop/cart"]);
}

#[test]
fn image_digests_come_from_the_runtimes_image_id_and_never_from_a_bare_image_id() {
    assert_eq!(
        digest_of("docker.io/library/nginx@sha256:0a1b").as_deref(),
        Some("sha256:0a1b")
    );
    assert_eq!(
        digest_of("docker-pullable://nginx@sha256:0a1b").as_deref(),
        Some("sha256:0a1b")
    );
    assert_eq!(digest_of("sha256:0a1b"), None);
    assert_eq!(digest_of("docker://sha256:0a1b"), None);
    assert_eq!(digest_of("nginx@sha256:not-hex"), None);
    assert_eq!(digest_of("nginx@"), None);
}

fn assert_roundtrip(i: &Import) {
    let yaml = document::to_yaml(i, "test");
    let set = load(&[SourceFile::new("inventory.yaml", yaml.clone())])
        .unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
    assert_eq!(set.inventory, i.inventory, "{yaml}");
    let json = serde_json::to_string_pretty(&document::to_json(&i.inventory, "test")).unwrap();
    let set = load(&[SourceFile::new("inventory.json", json)]).unwrap();
    assert_eq!(set.inventory, i.inventory);
}

#[test]
fn the_written_document_reads_back_as_the_same_inventory_in_yaml_and_json() {
    let mut odd = with_ip(
        pod(
            "we ird",
            "x",
            "",
            None,
            json!({"yes": "no", "k": "a: b # c", "n": "007", "e": ""}),
        ),
        "fd00::1",
    );
    odd["spec"]["containers"][0]["ports"] =
        json!([{"name": "true", "containerPort": 53, "protocol": "SCTP"}]);
    odd["metadata"]["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
    let mut host = with_ip(
        pod(
            "kube-system",
            "proxy-a",
            "proxy-",
            Some(("DaemonSet", "proxy")),
            json!({}),
        ),
        "192.168.0.10",
    );
    host["spec"]["hostNetwork"] = json!(true);
    host["spec"]["nodeName"] = json!("node-a");
    host["status"]["phase"] = json!("Unknown");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "we ird", "labels": {"null": "~"}}});
    let i = import(vec![odd, host, ns]);
    assert_eq!(i.inventory.workloads.len(), 2);
    assert_eq!(i.inventory.namespaces.len(), 2);
    assert_roundtrip(&i);
    // An empty import is a valid, empty document too.
    assert_roundtrip(&import(vec![]));
}

#[test]
fn argo_rollouts_and_openshift_deploymentconfigs_are_named_as_istio_names_them() {
    let rollout = pod(
        "ns",
        "web-7f6d5c-a",
        "web-7f6d5c-",
        Some(("ReplicaSet", "web-7f6d5c")),
        json!({"rollouts-pod-template-hash": "7f6d5c"}),
    );
    let dc = pod(
        "ns",
        "legacy-3-x9z",
        "legacy-3-",
        Some(("ReplicationController", "legacy-3")),
        json!({"deploymentconfig": "legacy"}),
    );
    let rc = pod(
        "ns",
        "plain-rc-x9z",
        "plain-rc-",
        Some(("ReplicationController", "plain-rc")),
        json!({}),
    );
    let i = import(vec![rollout, dc, rc]);
    assert_eq!(names(&i), ["ns/legacy", "ns/plain-rc", "ns/web"]);
}

#[test]
fn node_objects_give_their_internal_and_external_addresses_only() {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
    "status": {"addresses": [
        {"type": "InternalIP", "address": "192.168.0.10"},
        {"type": "ExternalIP", "address": "203.0.113.10"},
        {"type": "Hostname", "address": "node-a"},
        {"type": "InternalIP", "address": "fd00::10"},
        {"type": "InternalIP", "address": "not-an-ip"}
    ]}});
    let mut p = with_ip(pod("ns", "a", "", None, json!({})), "10.0.0.1");
    p["spec"]["nodeName"] = json!("node-a");
    p["status"]["hostIP"] = json!("192.168.0.10");
    let i = import(vec![node, p]);
    assert_eq!(i.inventory.nodes.len(), 1);
    assert_eq!(
        i.inventory.nodes[0].ips,
        [addr("192.168.0.10"), addr("203.0.113.10"), addr("fd00::10")]
    );
    assert_eq!(
        i.notes,
        [finding(
            "Node",
            "",
            "node-a",
            "`InternalIP` address `not-an-ip` is not an IP address: left out"
        )]
    );
}

#[test]
fn an_object_read_twice_counts_once_as_read_last_and_the_earlier_copy_is_reported() {
    let mut o = Objects::default();
    o.add(list(vec![
        with_ip(pod("ns", "a", "", None, json!({"v": "1"})), "10.0.0.1"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}),
    ]));
    o.add(list(vec![with_ip(
        pod("ns", "a", "", None, json!({"v": "2"})),
        "10.0.0.2",
    )]));
    let i = o.import();
    assert_eq!(i.inventory.workloads.len(), 1);
    assert_eq!(i.inventory.workloads[0].ips, [addr("10.0.0.2")]);
    assert_eq!(
        i.inventory.workloads[0].labels,
        BTreeMap::from([("v".into(), "2".into())])
    );
    assert_eq!(
        i.unmapped,
        [finding(
            "Pod",
            "ns",
            "a",
            "read again later: the later copy is used"
        )]
    );
    assert_eq!(i.notes, []);
}

#[test]
fn the_yaml_document_is_written_in_the_layout_docs_inventory_md_shows() {
    let mut p = with_ip(
        pod(
            "shop",
            "api-0",
            "api-",
            Some(("StatefulSet", "api")),
            json!({"app": "api"}),
        ),
        "10.1.0.9",
    );
    p["spec"]["serviceAccountName"] = json!("api");
    p["spec"]["nodeName"] = json!("node-a");
    p["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8080}, {"containerPort": 9090, "protocol": "UDP"}]);
    p["status"]["podIPs"] = json!([{"ip": "10.1.0.9"}, {"ip": "fd00:1::9"}]);
    p["status"]["hostIP"] = json!("192.168.0.10");
    p["status"]["containerStatuses"] = json!([{"name": "app", "image": "example/app:1", "imageID": "example/app@sha256:abc123", "ready": true, "restartCount": 0}]);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "shop"}}});
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"}});
    let i = import(vec![p, ns, cm]);
    assert_eq!(
        document::to_yaml(&i, "cluster"),
        r#"# Written by `palisade inventory`: 1 workloads, 1 namespaces, 1 nodes; 1 objects not mapped, 0 notes.
# not mapped: ConfigMap shop/cfg: `v1` `ConfigMap` carries no workload facts Palisade reads
apiVersion: palisade.dev/v1alpha1
kind: Inventory
metadata:
  name: cluster
spec:
  nodes:
    - name: node-a
      ips: ["192.168.0.10"]
  namespaces:
    - name: shop
      labels: {team: shop}
  workloads:
    # image app: example/app:1 @ sha256:abc123
    - name: api
      namespace: shop
      serviceAccount: api
      labels: {app: api}
      ips: ["10.1.0.9", "fd00:1::9"]
      ports:
        - {name: http, port: 8080}
        - {port: 9090, protocol: UDP}
      phase: Running
      nodeName: node-a
"#
    );
}

#[test]
fn a_cronjobs_pod_is_checked_against_its_job_when_the_job_was_read() {
    let job = |name: &str, cron: Option<&str>| {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "ops"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "x"}]}}}});
        if let Some(c) = cron {
            j["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": c, "uid": "u", "controller": true}]);
        }
        j
    };
    let i = import(vec![
        pod(
            "ops",
            "backup-29412360-a",
            "backup-29412360-",
            Some(("Job", "backup-29412360")),
            json!({}),
        ),
        pod(
            "ops",
            "report-29412360-b",
            "report-29412360-",
            Some(("Job", "report-29412360")),
            json!({}),
        ),
        pod(
            "ops",
            "sync-29412360-c",
            "sync-29412360-",
            Some(("Job", "sync-29412360")),
            json!({}),
        ),
        job("backup-29412360", Some("backup")),
        job("report-29412360", None),
    ]);
    assert_eq!(names(&i), ["ops/backup", "ops/report", "ops/sync"]);
    assert_eq!(
        i.notes,
        [
            finding(
                "Pod",
                "ops",
                "report-29412360-b",
                "named `report` as Istio derives it, but its Job `report-29412360` has no controller"
            ),
            finding(
                "Pod",
                "ops",
                "sync-29412360-c",
                "its controller Job `sync-29412360` is not among the objects read: named `sync` from the pod alone"
            ),
        ]
    );
}
