//! The shop's Kubernetes object dump (`examples/shop/kubernetes.json`) imports to exactly the
//! workloads of its hand-written inventory (`examples/shop/inventory.yaml`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;

use palisade_engine::inventory::{Inventory, Phase};
use palisade_engine::{SourceFile, load};
use palisade_sources::kubernetes::Objects;
use palisade_sources::{Finding, ObjectRef, document};

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/shop")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hand_written() -> Inventory {
    load(&[SourceFile::new("inventory.yaml", example("inventory.yaml"))])
        .unwrap()
        .inventory
}

#[test]
fn the_shops_kubernetes_dump_imports_to_the_hand_written_inventorys_workloads() {
    let mut objects = Objects::default();
    objects
        .read("kubernetes.json", &example("kubernetes.json"))
        .unwrap();
    let import = objects.import();
    let expected = hand_written();

    // The same workloads, by namespace and name, with the same service accounts, addresses
    // and ports.
    let key = |inv: &Inventory| {
        let mut v: Vec<_> = inv
            .workloads
            .iter()
            .map(|w| {
                (
                    w.namespace.clone(),
                    w.name.clone(),
                    w.service_account.clone(),
                    w.ips.clone(),
                    w.ports.clone(),
                )
            })
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    };
    assert_eq!(key(&import.inventory), key(&expected));
    assert_eq!(import.inventory.workloads.len(), 7);

    // Labels: the hand-written ones plus exactly what the controllers add to each pod.
    let controller_labels: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::from([
        (
            "istio-system/ingressgateway",
            vec![("pod-template-hash", "6b8f9c7d54")],
        ),
        ("shop/frontend", vec![("pod-template-hash", "7c9d8b6f5d")]),
        ("shop/cart", vec![("pod-template-hash", "5f7b9c8d6e")]),
        ("shop/catalog", vec![("pod-template-hash", "84d6c9b7f8")]),
        ("payments/api", vec![("pod-template-hash", "9d7c6b5f84")]),
        (
            "payments/processor",
            vec![("pod-template-hash", "6f8d7c9b5c")],
        ),
        (
            "data/postgres",
            vec![
                ("apps.kubernetes.io/pod-index", "0"),
                ("controller-revision-hash", "postgres-6d4b8f9c7b"),
                ("statefulset.kubernetes.io/pod-name", "postgres-0"),
            ],
        ),
    ]);
    for w in &expected.workloads {
        let id = format!("{}/{}", w.namespace, w.name);
        let got = import.inventory.workload(&w.namespace, &w.name).unwrap();
        let mut labels = w.labels.clone();
        for (k, v) in &controller_labels[id.as_str()] {
            labels.insert((*k).to_string(), (*v).to_string());
        }
        assert_eq!(got.labels, labels, "{id}");
        // What the hand-written inventory leaves unstated, the dump states.
        assert_eq!(got.phase, Some(Phase::Running), "{id}");
        assert!(!got.terminating && !got.host_network, "{id}");
        let node = if [
            "shop/cart",
            "shop/catalog",
            "payments/processor",
            "data/postgres",
        ]
        .contains(&id.as_str())
        {
            "node-b"
        } else {
            "node-a"
        };
        assert_eq!(got.node_name, node, "{id}");
    }

    // Namespaces and their labels: exactly the hand-written ones.
    let mut ns = expected.namespaces.clone();
    ns.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(import.inventory.namespaces, ns);

    // The nodes, from the pods' host addresses (the hand-written inventory lists none).
    let nodes: Vec<(String, Vec<String>)> = import
        .inventory
        .nodes
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                n.ips.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("node-a".to_string(), vec!["192.168.0.10".to_string()]),
            ("node-b".to_string(), vec!["192.168.0.11".to_string()]),
        ]
    );

    // Every object is accounted for: the evicted cart pod is noted, nothing is unmapped.
    assert_eq!(import.unmapped, []);
    assert_eq!(
        import.notes,
        [Finding::new(
            ObjectRef::new("Pod", "shop", "cart-5f7b9c8d6e-w2r5k"),
            "finished (Failed): its addresses are free for reuse, so it is left out of workload `shop/cart`, which has live pods"
        )]
    );
    let counts: Vec<(String, usize)> = import.counts.clone().into_iter().collect();
    assert_eq!(
        counts,
        [
            ("Deployment".to_string(), 6),
            ("Namespace".to_string(), 4),
            ("Pod".to_string(), 8),
            ("ReplicaSet".to_string(), 6),
            ("Service".to_string(), 7),
            ("ServiceAccount".to_string(), 11),
            ("StatefulSet".to_string(), 1),
        ]
    );
    // Each workload's image, with the digest from its container status.
    assert_eq!(import.images.len(), 7);
    let postgres = import.images.iter().find(|i| i.name == "postgres").unwrap();
    assert_eq!(postgres.images[0].image, "docker.io/library/postgres:17.2");
    assert_eq!(
        postgres.images[0].digest.as_deref(),
        Some("sha256:6f81ee4a2e4d523d5ce141fb68ab7f6bdf6a1b8dda9a3b77182863fe02e7dc0d")
    );

    // The written document loads in the engine as the same inventory.
    let yaml = document::to_yaml(&import, "shop");
    let back = load(&[SourceFile::new("inventory.yaml", yaml)])
        .unwrap()
        .inventory;
    assert_eq!(back, import.inventory);
}
