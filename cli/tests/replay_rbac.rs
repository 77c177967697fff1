//! `palisade replay` against a peer: the shop's scripted traffic recorded through Envoy 1.40's
//! own RBAC filters (`host-test/testdata/shop-rbac/`, `cargo xtask record-traffic --rbac`),
//! configured with the shop's AuthorizationPolicies as Istio translates them — not through
//! Palisade's plugin. Its live column is Envoy's RBAC decision, so "same as live" is the
//! `.wasm`, the native engine and Envoy's RBAC agreeing, record by record, on the verdict
//! and on the deciding rule of every denial.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn recording() -> PathBuf {
    root().join("host-test/testdata/shop-rbac/envoy-access.jsonl")
}

/// Runs `palisade --output json replay --list` on the RBAC recording with the shop's
/// policies and the inventory the traffic was recorded with.
fn replay() -> Value {
    let wasm = palisade_wasm_host::modules::plugin("cli-test-plugin").unwrap();
    let shop = root().join("examples/shop");
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["--output", "json", "replay", "--list", "--wasm"])
        .arg(wasm)
        .arg("--policy")
        .arg(shop.join("policies"))
        .arg("--inventory")
        .arg(shop.join("traffic/inventory.yaml"))
        .arg("--traffic")
        .arg(recording())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A listed record's name: its request id; a TCP connection carries none, so its line.
fn label(l: &Value) -> String {
    l["name"]
        .as_str()
        .map_or_else(|| format!("line {}", l["line"]), str::to_string)
}

/// The records Envoy's RBAC cannot decide as Palisade does, each with why (exact).
const NOT_COMPARABLE: &[(&str, &str)] = &[(
    "charge-status-processor",
    "NetworkPolicy: the processor is isolated for egress (payments/processor-egress allows \
     only the data namespace on 5432 and port 443 outside 10/8), so Palisade denies its call \
     to the payments API on 8443; Envoy's RBAC at the destination knows no NetworkPolicy",
)];

#[test]
fn the_rbac_recorded_shop_traffic_replays_with_the_wasm_the_engine_and_envoys_rbac_agreeing() {
    let r = replay();
    assert_eq!(r["format"], "envoy");
    assert_eq!(r["records"], 42);
    assert_eq!(r["skipped"].as_array().map_or(0, Vec::len), 0);
    // The .wasm and the native engine.
    assert_eq!(r["agree"], true, "{:#}", r["disagreements"]);
    assert_eq!(r["disagreements"].as_array().unwrap().len(), 0);
    assert_eq!(r["unroutable"].as_array().unwrap().len(), 0);

    // Envoy's RBAC, as recorded: 20 allowed (18 HTTP, 2 TCP), 22 denied, by rule.
    let listed = r["listed"].as_array().unwrap();
    assert_eq!(listed.len(), 42);
    let mut live_allowed = 0;
    let mut live_denied: BTreeMap<String, usize> = BTreeMap::new();
    for l in listed {
        match l["live"]["verdict"].as_str().unwrap() {
            "allow" => live_allowed += 1,
            "deny" => {
                *live_denied
                    .entry(l["live"]["rule"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1;
            }
            other => panic!("{}: live {other}", label(l)),
        }
    }
    assert_eq!(live_allowed, 20);
    let want: BTreeMap<String, usize> = [
        ("none", 15),
        ("ns[data]-policy[deny-plaintext]-rule[0]", 1),
        ("ns[istio-system]-policy[deny-internal-paths]-rule[0]", 3),
        ("ns[payments]-policy[refunds-need-ops]-rule[0]", 1),
        ("ns[shop]-policy[deny-plaintext]-rule[0]", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(live_denied, want, "Envoy's RBAC denials by matched policy");

    // Record by record, read here without replay's own comparison: the native verdict and
    // rule (`(no-allow-matched)` is RBAC's `none`) against RBAC's, the .wasm the same.
    let mut compared = 0;
    let mut not_compared = Vec::new();
    for l in listed {
        let name = label(l);
        let name = name.as_str();
        assert_eq!(l["agree"], true, "{name}");
        let native = l["native"].as_str().unwrap();
        // The plugin shows a denial by no rule (no ALLOW matched, NetworkPolicy) as `none`.
        let wasm = l["wasm"].as_str().unwrap();
        if native.starts_with("deny by (") {
            assert_eq!(wasm, "deny by none", "{name}");
        } else {
            assert_eq!(wasm, native, "{name}");
        }
        let live = match (l["live"]["verdict"].as_str(), l["live"]["rule"].as_str()) {
            (Some("deny"), Some("none")) => "deny by (no-allow-matched)".to_string(),
            (Some("deny"), Some(rule)) => format!("deny by {rule}"),
            (Some("allow"), _) => "allow".to_string(),
            other => panic!("{name}: live {other:?}"),
        };
        let native_verdict = if native.starts_with("allow") {
            "allow"
        } else {
            native
        };
        if native_verdict == live {
            compared += 1;
        } else {
            not_compared.push((name.to_string(), format!("live {live}, native {native}")));
        }
    }
    let names: Vec<&str> = not_compared.iter().map(|(n, _)| n.as_str()).collect();
    let want_names: Vec<&str> = NOT_COMPARABLE.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names, want_names,
        "records deciding otherwise: {not_compared:?}"
    );
    assert_eq!(
        not_compared[0].1,
        "live allow, native deny by (network-egress-denied)"
    );
    assert_eq!(compared, 41);

    // Replay's own live comparison says the same.
    assert_eq!(r["live"]["compared"], 42);
    assert_eq!(r["live"]["same"], 41);
    let differences: Vec<(&str, &str)> = r["live"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["differs"].as_str().unwrap()))
        .collect();
    assert_eq!(differences, vec![("charge-status-processor", "verdict")]);

    // The totals: the engine's and the plugin's.
    assert_eq!(r["native"]["allowed"], 19);
    assert_eq!(r["native"]["denied"], 23);
    assert_eq!(r["native"], r["wasmTotals"]);
}

/// The reader takes `source.ip` from the direct peer (`%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`,
/// what RBAC's `direct_remote_ip` and Istio's `ipBlocks` read) and `remoteIp` from the address
/// Envoy derived from `x-forwarded-for` (`%DOWNSTREAM_REMOTE_ADDRESS%`, RBAC's `remote_ip`,
/// `remoteIpBlocks`), on every line of the RBAC recording.
#[test]
fn the_reader_takes_the_direct_peer_and_the_forwarded_client_from_their_own_fields() {
    let text = std::fs::read_to_string(recording()).unwrap();
    let traffic = palisade_traffic::read(&text, None, false).unwrap();
    assert_eq!(traffic.records.len(), 42);
    let ip = |s: &str| -> IpAddr { s.rsplit_once(':').unwrap().0.parse().unwrap() };
    let mut forwarded = Vec::new();
    for (record, line) in traffic.records.iter().zip(text.lines()) {
        let raw: Value = serde_json::from_str(line).unwrap();
        let name = record
            .name
            .clone()
            .unwrap_or_else(|| format!("line {}", record.line));
        let peer = ip(raw["direct_peer_address"].as_str().unwrap());
        assert_eq!(record.request.source.ip, Some(peer), "{name}");
        let xff = raw["request_headers"]["x-forwarded-for"].as_str();
        match xff {
            Some(client) => {
                // Envoy took the client from the header: port 0, not the peer.
                assert_eq!(
                    raw["source_address"].as_str(),
                    Some(format!("{client}:0").as_str())
                );
                assert_eq!(record.request.remote_ip, Some(client.parse().unwrap()));
                forwarded.push((name, peer.to_string(), client.to_string()));
            }
            None => {
                assert_eq!(raw["source_address"], raw["direct_peer_address"], "{name}");
                assert_eq!(record.request.remote_ip, None, "{name}");
            }
        }
    }
    assert_eq!(
        forwarded,
        vec![
            (
                "gw-home".to_string(),
                "127.0.0.70".to_string(),
                "203.0.113.9".to_string()
            ),
            (
                "frontend-home".to_string(),
                "127.0.0.10".to_string(),
                "203.0.113.9".to_string()
            ),
        ]
    );
}
