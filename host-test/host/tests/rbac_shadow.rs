//! The dry-run results of the shop traffic recorded through Envoy's own RBAC
//! (`host-test/testdata/shop-rbac/`, `cargo xtask record-traffic --rbac`): Envoy's ALLOW filter
//! evaluated the dry-run policy `shop/catalog-shop-only` as Istio configures it (its
//! `shadowRules`) and wrote the result into its dynamic metadata, which the recording logs
//! (`rbac_shadow_result`, `rbac_shadow_policy`). The native engine's dry-run results and the
//! plugin's, read back from its decision log, must be exactly Envoy's, record by record.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use palisade_engine::{Decision, Options, Verdict};
use palisade_wasm_host::Replayer;
use serde_json::Value;

/// A decision's dry-run ALLOW result as Envoy's RBAC logs it: (`allowed`|`denied`, the
/// matched policy). Palisade names the result by its action and verdict; RBAC by its engine
/// result and effective policy id.
fn shadow(d: &Decision) -> Option<(String, Option<String>)> {
    let results: Vec<_> = d.shadow.iter().filter(|s| s.action == "ALLOW").collect();
    assert!(results.len() <= 1, "{:?}", d.shadow);
    results.first().map(|s| {
        let verdict = match s.verdict {
            Verdict::Allow => "allowed",
            Verdict::Deny | Verdict::CustomPending => "denied",
        };
        (
            verdict.to_string(),
            s.matched.as_ref().map(|r| r.id.clone()),
        )
    })
}

#[test]
fn the_dry_run_results_are_envoys_rbac_shadow_rules_results_on_every_record() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text =
        std::fs::read_to_string(root.join("host-test/testdata/shop-rbac/envoy-access.jsonl"))
            .unwrap();
    let traffic = palisade_traffic::read(&text, None, false).unwrap();
    let sources = palisade_wasm_host::modules::shop_sources().unwrap();
    let mut replayer = Replayer::new(common::host(), &sources, &Options::default()).unwrap();
    let mut with_shadow = Vec::new();
    for (record, line) in traffic.records.iter().zip(text.lines()) {
        let raw: Value = serde_json::from_str(line).unwrap();
        let name = record
            .name
            .clone()
            .unwrap_or_else(|| format!("line {}", record.line));
        let rbac = raw["rbac_shadow_result"].as_str().map(|r| {
            (
                r.to_string(),
                raw["rbac_shadow_policy"].as_str().map(str::to_string),
            )
        });
        let native = replayer.decide_native(&record.request);
        let wasm = replayer.decide_wasm(&record.request).unwrap().unwrap();
        assert_eq!(shadow(&native), rbac, "{name}: native against RBAC");
        assert_eq!(wasm.shadow, native.shadow, "{name}: wasm against native");
        if let Some((result, _)) = rbac {
            with_shadow.push((name, result));
        }
    }
    assert_eq!(traffic.records.len(), 42);
    // Every request to the catalog reached its ALLOW filter (none was denied before it).
    let want: Vec<(String, String)> = [
        ("catalog-list", "allowed"),
        ("catalog-item-gw", "denied"),
        ("catalog-other-host", "allowed"),
        ("catalog-from-payments", "denied"),
        ("catalog-write-frontend", "allowed"),
        ("catalog-admin-put", "allowed"),
        ("catalog-admin-no-ticket", "allowed"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(with_shadow, want);
}
