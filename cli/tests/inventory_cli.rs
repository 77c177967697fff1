//! `palisade inventory`: the shop's Kubernetes dump to an Inventory document that `palisade
//! check` accepts, in YAML and JSON, with every finding on standard error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .unwrap()
}

fn shop(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/shop")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("palisade-inventory-cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn the_shops_dump_becomes_a_document_that_check_accepts_with_its_findings_on_stderr() {
    let out = palisade(&["inventory", &shop("kubernetes.json"), "--name", "shop"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.contains("\nkind: Inventory\nmetadata:\n  name: shop\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("    # image cart: registry.example.com/shop/cart:1.9.0 @ sha256:"),
        "{yaml}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "read: Deployment 6, Namespace 4, Pod 8, ReplicaSet 6, Service 7, ServiceAccount 11, StatefulSet 1\n\
         inventory: 7 workloads, 4 namespaces, 2 nodes\n\
         note: Pod shop/cart-5f7b9c8d6e-w2r5k: finished (Failed): its addresses are free for reuse, so it is left out of workload `shop/cart`, which has live pods\n"
    );
    // The document with the shop's policies (the hand-written inventory left out) checks.
    let file = scratch("shop-inventory.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let policies = shop("policies");
    let out = palisade(&["check", &policies, file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("inventory workloads: 7"));
}

#[test]
fn json_output_is_the_same_document() {
    let file = scratch("shop-inventory.json");
    let out = palisade(&[
        "inventory",
        &shop("kubernetes.json"),
        "--format",
        "json",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc["kind"], "Inventory");
    assert_eq!(doc["spec"]["workloads"].as_array().unwrap().len(), 7);
    assert_eq!(doc["spec"]["workloads"][0]["name"], "postgres");
    assert_eq!(
        doc["spec"]["workloads"][0]["ips"],
        serde_json::json!(["10.3.0.10"])
    );
}

#[test]
fn unreadable_input_and_no_input_exit_2() {
    let out = palisade(&["inventory", "/nonexistent/dump.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dump.json"));
    let out = palisade(&["inventory"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to read"));
    let bad = scratch("bad.json");
    std::fs::write(&bad, "{\"kind\": ").unwrap();
    let out = palisade(&["inventory", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid JSON"));
}
