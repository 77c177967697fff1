//! `palisade replay` on the recorded shop samples (`examples/shop/traffic/`): the real-Envoy
//! access log replays with no wasm/native disagreement and no difference from the live
//! outcome; with a deliberately changed policy exactly the changed flows are reported; the
//! synthetic Hubble sample reports only what Hubble cannot carry; bad lines fail with their
//! number or are skipped and counted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn shop() -> PathBuf {
    root().join("examples/shop")
}

/// The plugin: `$PALISADE_PROXY_WASM`, the workspace build when it is newer than its sources,
/// else built here (see `palisade_wasm_host::modules`).
fn plugin() -> PathBuf {
    static WASM_PATH: OnceLock<PathBuf> = OnceLock::new();
    WASM_PATH
        .get_or_init(|| palisade_wasm_host::modules::plugin("cli-test-plugin").unwrap())
        .clone()
}

/// Runs `palisade --output json replay <args>`: (exit status, the JSON result or stderr).
fn replay(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["--output", "json", "replay", "--wasm"])
        .arg(plugin())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The names (request ids) of the records reported against the live outcome, with what
/// differs, sorted.
fn live_differences(result: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = result["live"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("?").to_string(),
                d["differs"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A regression test: the sample was recorded from Envoy running Palisade's own plugin, so
/// "as live" compares the plugin with an earlier run of itself (the counts below are that
/// recording's), not with a peer implementation.
#[test]
fn regression_the_recorded_envoy_sample_replays_with_no_disagreement_and_as_live() {
    let (code, r, err) = replay(&[
        "--policy",
        s(&shop().join("policies")),
        "--inventory",
        s(&shop().join("traffic/inventory.yaml")),
        "--traffic",
        s(&shop().join("traffic/envoy-access.jsonl")),
    ]);
    assert_eq!(code, 0, "{err}\n{r:#}");
    assert_eq!(r["format"], "envoy");
    assert_eq!(r["records"], 42);
    assert_eq!(r["agree"], true);
    assert_eq!(r["disagreements"].as_array().unwrap().len(), 0);
    assert_eq!(r["unroutable"].as_array().unwrap().len(), 0);
    assert_eq!(r["live"]["compared"], 42);
    assert_eq!(r["live"]["same"], 42, "{:#}", r["live"]);
    assert_eq!(r["native"]["allowed"], 19);
    assert_eq!(r["native"]["denied"], 23);
    assert_eq!(r["native"], r["wasmTotals"]);
    // Every policy of the shop decided something; the mobile app's JWT rule among them.
    let rules: Vec<&str> = r["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rule"].as_str().unwrap())
        .collect();
    for rule in [
        "ns[shop]-policy[cart]-rule[1]",
        "ns[shop]-policy[catalog]-rule[1]",
        "ns[data]-policy[postgres]-rule[0]",
        "ns[payments]-policy[refunds-need-ops]-rule[0]",
        "(network-egress-denied)",
    ] {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }
}

#[test]
fn list_shows_every_record_with_both_sides_and_the_live_outcome() {
    let (policies, inventory, traffic) = (
        shop().join("policies"),
        shop().join("traffic/inventory.yaml"),
        shop().join("traffic/envoy-access.jsonl"),
    );
    let args = [
        "--policy",
        s(&policies),
        "--inventory",
        s(&inventory),
        "--traffic",
        s(&traffic),
    ];
    let (code, plain, _) = replay(&args);
    assert_eq!(code, 0);
    assert!(plain.get("listed").is_none(), "listed only with --list");
    let mut with_list = args.to_vec();
    with_list.push("--list");
    let (code, r, err) = replay(&with_list);
    assert_eq!(code, 0, "{err}");
    let listed = r["listed"].as_array().unwrap();
    assert_eq!(listed.len(), 42);
    let lines: Vec<u64> = listed.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, (1..=42).collect::<Vec<u64>>());
    assert!(listed.iter().all(|l| l["agree"] == true));
    let first = &listed[0];
    assert_eq!(first["name"], "gw-home");
    assert_eq!(
        first["native"],
        "allow by ns[istio-system]-policy[ingress]-rule[0]"
    );
    assert_eq!(first["wasm"], first["native"]);
    assert_eq!(first["live"]["verdict"], "allow");
    assert!(
        first["request"]
            .as_str()
            .unwrap()
            .starts_with("GET shop.example.com/ ")
    );
    // The native verdicts listed are the totals counted.
    let denied = listed
        .iter()
        .filter(|l| l["native"].as_str().unwrap().starts_with("deny by "))
        .count();
    assert_eq!(denied, 23);
    // The human form: a line per record naming the request, then both sides.
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["replay", "--wasm"])
        .arg(plugin())
        .args(&with_list)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("line 1 (gw-home) GET shop.example.com/ to "),
        "{text}"
    );
    assert_eq!(text.matches("(wasm: same; live: ").count(), 42, "{text}");
}

#[test]
fn the_full_decision_read_back_agrees_too_and_counts_the_same() {
    let (policies, inventory, traffic) = (
        shop().join("policies"),
        shop().join("traffic/inventory.yaml"),
        shop().join("traffic/envoy-access.jsonl"),
    );
    let args = [
        "--policy",
        s(&policies),
        "--inventory",
        s(&inventory),
        "--traffic",
        s(&traffic),
    ];
    let (code, outcome, err) = replay(&args);
    assert_eq!(code, 0, "{err}");
    let mut full_args = args.to_vec();
    full_args.extend(["--compare", "decision"]);
    let (code, full, err) = replay(&full_args);
    assert_eq!(code, 0, "{err}\n{full:#}");
    assert_eq!(full["agree"], true);
    assert_eq!(full["wasmTotals"], outcome["wasmTotals"]);
    assert_eq!(full["rules"], outcome["rules"]);
    assert_eq!(full["native"]["denied"], 23);
}

#[test]
fn a_changed_policy_reports_exactly_the_changed_flows_against_the_live_outcome() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shop().join("policies")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    // 1. Remove the cart's first ALLOW rule (the frontend's).
    let shop_yaml = dir.path().join("shop.yaml");
    let text = std::fs::read_to_string(&shop_yaml).unwrap();
    let removed = "    - from:\n        - source:\n            serviceAccounts: [\"frontend\"]\n      to:\n        - operation:\n            methods: [\"GET\", \"POST\", \"DELETE\"]\n            paths: [\"/api/cart/{*}\", \"/api/cart/{*}/items/{**}\"]\n";
    assert!(text.contains(removed), "the cart's first rule moved");
    std::fs::write(&shop_yaml, text.replace(removed, "")).unwrap();
    // 2. Add a DENY: catalog writes frozen.
    std::fs::write(
        dir.path().join("freeze.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: catalog-freeze, namespace: shop}\nspec:\n  selector: {matchLabels: {app: catalog}}\n  action: DENY\n  rules:\n  - to: [{operation: {methods: [\"PUT\"]}}]\n",
    )
    .unwrap();
    let (code, r, err) = replay(&[
        "--policy",
        s(dir.path()),
        "--inventory",
        s(&shop().join("traffic/inventory.yaml")),
        "--traffic",
        s(&shop().join("traffic/envoy-access.jsonl")),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["disagreements"].as_array().unwrap().len(), 0);
    let expected = [
        // The frontend lost its cart rule: allowed live, denied now.
        ("cart-add", "verdict"),
        ("cart-read", "verdict"),
        ("cart-remove", "verdict"),
        // The freeze denies the admin's ticketed write...
        ("catalog-admin-put", "verdict"),
        // ...and now decides the unticketed one (denied live by no rule) by its rule.
        ("catalog-admin-no-ticket", "rule"),
    ];
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    expected.sort();
    assert_eq!(live_differences(&r), expected, "{:#}", r["live"]);
    assert_eq!(r["live"]["same"], 42 - 5);
    let put = r["live"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "catalog-admin-put")
        .unwrap();
    assert_eq!(put["live"]["verdict"], "allow");
    assert_eq!(put["policy"]["verdict"], "deny");
    assert_eq!(
        put["policy"]["rule"],
        "ns[shop]-policy[catalog-freeze]-rule[0]"
    );
}

#[test]
fn the_hubble_sample_agrees_and_differs_from_live_only_where_hubble_lacks_the_facts() {
    let (code, r, err) = replay(&[
        "--policy",
        s(&shop()),
        "--traffic",
        s(&shop().join("traffic/hubble.jsonl")),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["format"], "hubble");
    assert_eq!(r["records"], 42);
    assert_eq!(
        r["ignored"], 3,
        "an L7 response, an ACK and a SYN-ACK reply"
    );
    assert_eq!(r["disagreements"].as_array().unwrap().len(), 0);
    // Hubble carries no verified JWT (the mobile app's cart read, the operator's refund) and
    // no container ports of an inline destination (NetworkPolicy's named port `postgres`).
    let lines: Vec<u64> = r["live"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![20, 35, 40], "{:#}", r["live"]);
}

#[test]
fn a_malformed_line_fails_with_its_number_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(shop().join("traffic/envoy-access.jsonl")).unwrap();
    let mut lines: Vec<&str> = sample.lines().take(4).collect();
    lines.insert(2, "{\"method\": \"GET\", \"local_address\": \"nowhere\"}");
    let file = dir.path().join("bad.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let policy = shop().join("policies");
    let inventory = shop().join("traffic/inventory.yaml");
    let args = [
        "--policy",
        s(&policy),
        "--inventory",
        s(&inventory),
        "--traffic",
        s(&file),
    ];
    let (code, _, err) = replay(&args);
    assert_eq!(code, 2);
    assert!(err.contains("invalid traffic line 3"), "{err}");
    let mut skip = args.to_vec();
    skip.push("--skip-invalid");
    let (code, r, err) = replay(&skip);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["records"], 4);
    assert_eq!(r["skipped"][0]["line"], 3);
}
