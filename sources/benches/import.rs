//! Importing 5,000 pods across 200 namespaces: `cargo bench -p palisade-sources --bench
//! import`. Prints the time to read kubectl's JSON into objects, to map them to the
//! inventory, and to write the document, each the median of several runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use palisade_sources::document;
use palisade_sources::kubernetes::Objects;
use serde_json::{Value, json};

const NAMESPACES: usize = 200;
const DEPLOYMENTS_PER_NAMESPACE: usize = 5;
const REPLICAS: usize = 5;
const RUNS: usize = 7;

/// A dump shaped like `kubectl get namespaces,pods,deployments,replicasets -A -o json`:
/// every pod with a ReplicaSet owner, labels, a container with two ports, a status with its
/// addresses and a container status.
fn dump() -> String {
    let mut items: Vec<Value> = Vec::new();
    for n in 0..NAMESPACES {
        let ns = format!("team-{n:03}");
        items.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns, "team": format!("t{n}")}}}));
        for d in 0..DEPLOYMENTS_PER_NAMESPACE {
            let app = format!("svc-{d}");
            let hash = format!("{:010x}", n * 100 + d);
            let rs = format!("{app}-{hash}");
            items.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": app, "namespace": ns, "labels": {"app": app}},
                "spec": {"selector": {"matchLabels": {"app": app}}, "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}}}}));
            items.push(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs, "namespace": ns, "labels": {"app": app, "pod-template-hash": hash},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": app, "uid": "u", "controller": true}]},
                "spec": {"selector": {"matchLabels": {"app": app, "pod-template-hash": hash}}}}));
            for r in 0..REPLICAS {
                let i = (n * DEPLOYMENTS_PER_NAMESPACE + d) * REPLICAS + r;
                let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
                let ip6 = format!("fd00::{i:x}");
                items.push(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{rs}-p{r:04}"), "generateName": format!("{rs}-"), "namespace": ns,
                        "uid": format!("uid-{i}"), "resourceVersion": "12345", "creationTimestamp": "2026-11-30T09:12:44Z",
                        "labels": {"app": app, "pod-template-hash": hash, "version": "v1"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "u", "controller": true, "blockOwnerDeletion": true}]},
                    "spec": {"serviceAccountName": app, "nodeName": format!("node-{}", i % 50),
                        "containers": [{"name": "app", "image": "registry.example.com/app:1",
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "prod"}], "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
                    "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}, {"ip": ip6}],
                        "hostIP": format!("192.168.{}.{}", (i % 50) / 256, i % 50), "startTime": "2026-11-30T09:12:44Z",
                        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-30T09:12:50Z"}],
                        "containerStatuses": [{"name": "app", "image": "registry.example.com/app:1",
                            "imageID": "registry.example.com/app@sha256:9bea9f2796e236cb18c2b3ad561ff29f655d1001f9ec7247a0bc5e08d25652a1",
                            "ready": true, "restartCount": 0, "started": true, "state": {"running": {"startedAt": "2026-11-30T09:12:45Z"}}}]}}));
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
        .to_string()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let text = dump();
    let (mut read, mut map, mut write, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut workloads = 0;
    let mut yaml_len = 0;
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let mut objects = Objects::default();
        objects.read("bench.json", &text).unwrap();
        let t1 = Instant::now();
        let import = objects.import();
        let t2 = Instant::now();
        let yaml = document::to_yaml(&import, "bench");
        let t3 = Instant::now();
        assert_eq!(import.unmapped.len(), 0);
        assert_eq!(import.inventory.namespaces.len(), NAMESPACES);
        workloads = import.inventory.workloads.len();
        yaml_len = yaml.len();
        read.push(t1 - t0);
        map.push(t2 - t1);
        write.push(t3 - t2);
        total.push(t3 - t0);
    }
    let pods = NAMESPACES * DEPLOYMENTS_PER_NAMESPACE * REPLICAS;
    println!(
        "{pods} pods in {NAMESPACES} namespaces ({workloads} workloads), kubectl JSON {} bytes, YAML out {} bytes; median of {RUNS} runs",
        text.len(),
        yaml_len
    );
    println!("| step | median | fastest |");
    println!("|---|---|---|");
    for (name, v) in [
        ("read JSON into objects", read),
        ("map to the inventory", map),
        ("write the YAML document", write),
        ("total", total),
    ] {
        let fastest = *v.iter().min().unwrap();
        println!("| {name} | {} | {} |", ms(median(v)), ms(fastest));
    }
}
