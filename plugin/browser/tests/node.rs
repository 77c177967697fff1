//! The simulator through its real .wasm: the `wasm-bindgen --target nodejs` build that
//! `cargo xtask simulator` writes to `<target>/simulator-node/`, run under Node by
//! `tests/driver.js`. Every shop sample request must be decided as the native engine decides
//! it on the same files, and a bad policy must come back as an error with a line and column.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use palisade_engine::{Decision, Options, Request, SourceFile, compile, load};
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Cargo's target directory: three levels above this test's binary (`<target>/debug/deps/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn newest(dir: &Path) -> SystemTime {
    sorted(dir)
        .iter()
        .map(|p| {
            if p.is_dir() {
                newest(p)
            } else {
                p.metadata().unwrap().modified().unwrap()
            }
        })
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The built package, or a failure that says how to build it.
fn package() -> PathBuf {
    let pkg = target_dir().join("simulator-node");
    let wasm = pkg.join("palisade_simulator_bg.wasm");
    let Ok(built) = wasm.metadata().and_then(|m| m.modified()) else {
        panic!(
            "{} is missing: build it with `cargo xtask simulator` (`cargo xtask test` does)",
            wasm.display()
        );
    };
    for src in [root().join("plugin/browser/src"), root().join("engine/src")] {
        assert!(
            newest(&src) <= built,
            "{} is older than {}: rebuild it with `cargo xtask simulator`",
            wasm.display(),
            src.display()
        );
    }
    pkg
}

fn node() -> PathBuf {
    let node = PathBuf::from(std::env::var_os("NODE").unwrap_or_else(|| "/usr/bin/node".into()));
    let ok = Command::new(&node)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "Node.js is needed to run the simulator's .wasm: `{}` does not run (set NODE, or install \
         Debian's `nodejs`)",
        node.display()
    );
    node
}

#[test]
fn the_wasm_decides_every_shop_request_as_the_native_engine() {
    let pkg = package();
    let node = node();
    let shop = root().join("examples/shop");
    let mut files = vec![shop.join("inventory.yaml")];
    files.extend(sorted(&shop.join("policies")));
    let sources: Vec<SourceFile> = files
        .iter()
        .map(|p| SourceFile::new(p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let native = compile(&load(&sources).unwrap(), &Options::default()).unwrap();
    let policies = sources
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join("---\n");
    let requests: Vec<(String, String)> = sorted(&shop.join("requests"))
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(p).unwrap())
        })
        .collect();
    assert_eq!(requests.len(), 12, "the shop's sample requests");
    // Line 9, column 11: `action: MAYBE`.
    let bad = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: shop\nspec:\n  selector:\n    matchLabels: {app: cart}\n  action: MAYBE\n";
    let input = json!({
        "policies": policies,
        "requests": requests.iter().map(|(n, t)| json!({"name": n, "text": t})).collect::<Vec<_>>(),
        "badPolicies": bad,
        "badRequest": "{\n  \"destination\": {\"prot\": 1}\n}",
    });
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("input.json");
    std::fs::write(&input_path, input.to_string()).unwrap();
    let out = Command::new(&node)
        .arg(root().join("plugin/browser/tests/driver.js"))
        .arg(&pkg)
        .arg(&input_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["version"], env!("CARGO_PKG_VERSION"));

    let check = &answer["check"];
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["summary"]["authorizationPolicies"], 14);
    assert_eq!(check["summary"]["networkPolicies"], 3);
    assert_eq!(answer["compiledCheck"], *check);

    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), requests.len());
    let mut differences = Vec::new();
    for (r, (name, text)) in results.iter().zip(&requests) {
        assert_eq!(r["name"], name.as_str());
        let item: Value = serde_json::from_str(text).unwrap();
        let request: Request = serde_json::from_value(item["request"].clone()).unwrap();
        let want = native.decide(&request);
        for way in ["compiled", "direct"] {
            let a = &r[way];
            assert_eq!(a["ok"], true, "{name} ({way}): {a}");
            assert_eq!(a["totals"]["requests"], 1);
            let got = &a["results"][0];
            let decision: Decision = serde_json::from_value(got.clone()).unwrap();
            let summary = |d: &Decision| (d.verdict, d.step, d.rule.as_ref().map(|r| r.id.clone()));
            if summary(&decision) != summary(&want) || decision != want {
                differences.push(format!(
                    "{name} ({way}): wasm {:?}, native {:?}",
                    summary(&decision),
                    summary(&want)
                ));
            }
            assert_eq!(got["explanation"], want.explain(), "{name}");
            assert_eq!(got["asExpected"], true, "{name}: {got}");
        }
    }
    assert!(differences.is_empty(), "differences: {differences:#?}");

    let bad = &answer["badPolicies"];
    assert_eq!(bad["ok"], false, "{bad}");
    let e = &bad["errors"][0];
    assert_eq!(
        (e["line"].clone(), e["column"].clone()),
        (json!(9), json!(11)),
        "{e}"
    );
    assert_eq!(e["path"], "spec.action");
    assert_eq!(e["file"], "policies.yaml");
    let be = &answer["badPoliciesEvaluate"];
    assert_eq!(
        (be["ok"].clone(), be["stage"].clone()),
        (json!(false), json!("policies"))
    );
    assert_eq!(be["errors"], bad["errors"]);

    let br = &answer["badRequest"];
    assert_eq!(
        (br["ok"].clone(), br["stage"].clone()),
        (json!(false), json!("request"))
    );
    let e = &br["errors"][0];
    assert_eq!(
        (e["line"].clone(), e["column"].clone()),
        (json!(2), json!(24)),
        "{e}"
    );
    assert_eq!(e["path"], "destination.prot");
}
