//! The adversarial corpus of `testdata/adversarial/` (issue 14, classes 5–8: `/proc` and
//! `/sys`, devices, seccomp, containerd's fields): each case is a JSON merge patch over a
//! restricted-compliant containerd `config.json`, with what PSS says and the violated
//! controls expected. Every case is decided by the native engine, by the component
//! in-process and by the hook binary (the merged `config.json` in a bundle directory), and
//! each must give exactly the expected verdict and controls.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use palisade_oci_hook::component::{DEFAULT_FUEL, Guest, admit_native};
use palisade_oci_hook::policy::PolicyPath;
use serde_json::{Value, json};

use common::{cache_dir, component, hook_bin, scratch, testdata};

const CLASSES: &[&str] = &["proc-sys", "devices", "seccomp", "containerd"];

fn corpus() -> PathBuf {
    testdata().join("adversarial")
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => {
            *target = match patch.as_object() {
                Some(_) => {
                    let mut fresh = json!({});
                    merge(&mut fresh, patch);
                    fresh
                }
                None => patch.clone(),
            }
        }
    }
}

struct Case {
    id: String,
    name: String,
    state: String,
    config: String,
    allowed: bool,
    controls: Vec<String>,
}

fn cases() -> Vec<Case> {
    let base: Value =
        serde_json::from_str(&fs::read_to_string(corpus().join("base-containerd.json")).unwrap())
            .unwrap();
    let mut out = Vec::new();
    for class in CLASSES {
        let mut files: Vec<PathBuf> = fs::read_dir(corpus().join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let denied = files.len();
        assert!(denied >= 3, "{class}: {denied} cases");
        for f in files {
            let case: Value = serde_json::from_str(&fs::read_to_string(&f).unwrap()).unwrap();
            for field in ["name", "level", "pss", "patch", "expect"] {
                assert!(!case[field].is_null(), "{}: no `{field}`", f.display());
            }
            assert!(
                case["pss"]["check"].as_str().is_some_and(|s| !s.is_empty())
                    && case["pss"]["says"].as_str().is_some_and(|s| !s.is_empty()),
                "{}: PSS's check and what it says",
                f.display()
            );
            let level = case["level"].as_str().unwrap();
            let mut config = base.clone();
            merge(&mut config, &case["patch"]);
            config["annotations"]["io.kubernetes.cri.sandbox-namespace"] =
                json!(format!("adv-{level}"));
            let stem = f.file_stem().unwrap().to_str().unwrap();
            let id = format!("adv-{class}-{stem}");
            let state = json!({"ociVersion": "1.0.2-dev", "id": id, "status": "creating",
                               "pid": 4300, "bundle": "/nonexistent",
                               "annotations": config["annotations"].clone()});
            out.push(Case {
                id,
                name: case["name"].as_str().unwrap().to_string(),
                state: state.to_string(),
                config: serde_json::to_string_pretty(&config).unwrap(),
                allowed: case["expect"]["allowed"].as_bool().unwrap(),
                controls: case["expect"]["controls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect(),
            });
        }
    }
    out
}

#[test]
fn every_class_has_at_least_three_refused_variants() {
    let all = cases();
    for class in CLASSES {
        let refused = all
            .iter()
            .filter(|c| c.id.starts_with(&format!("adv-{class}-")) && !c.allowed)
            .count();
        assert!(refused >= 3, "{class}: {refused} refused cases");
    }
    assert_eq!(all.len(), 37, "the corpus");
}

#[test]
fn the_corpus_decides_as_expected_natively_and_in_the_component() {
    let policy = PolicyPath::Yaml(corpus().join("policy.yaml"))
        .read()
        .unwrap();
    let mut guest = Guest::new(&component(), Some(&cache_dir()), DEFAULT_FUEL).unwrap();
    guest.load(&policy).unwrap();
    let mut failed = Vec::new();
    for c in cases() {
        let native = admit_native(&policy, &c.state, &c.config, &[], None).unwrap();
        let got: Vec<String> = native
            .violations
            .iter()
            .map(|v| v.control.clone())
            .collect();
        if (native.allowed, &got) != (c.allowed, &c.controls) {
            failed.push(format!(
                "{} ({}): want {:?}, got {:?}: {}",
                c.id, c.name, c.controls, got, native.explanation
            ));
        }
        let wasm = guest.admit(&c.state, &c.config, &[], None).unwrap();
        assert_eq!(wasm, native, "component vs native, {}", c.id);
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn write_bundle(dir: &Path, c: &Case) -> String {
    let bundle = dir.join(&c.id);
    fs::create_dir_all(bundle.join("rootfs")).unwrap();
    fs::write(bundle.join("config.json"), &c.config).unwrap();
    let mut state: Value = serde_json::from_str(&c.state).unwrap();
    state["bundle"] = json!(bundle);
    state.to_string()
}

#[test]
fn the_corpus_decides_as_expected_through_the_hook_binary() {
    let dir = scratch().join(format!("adversarial-{}", std::process::id()));
    for c in cases() {
        let state = write_bundle(&dir, &c);
        let mut child = Command::new(hook_bin())
            .arg("--policy")
            .arg(corpus().join("policy.yaml"))
            .arg("--component")
            .arg(component())
            .arg("--cache-dir")
            .arg(cache_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(state.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(if c.allowed { 0 } else { 1 }),
            "{}: {stderr}",
            c.id
        );
        let shown: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.split_once(" [").and_then(|(_, r)| r.split_once("]: ")))
            .map(|(control, _)| control)
            .collect();
        assert_eq!(shown, c.controls, "{}: {stderr}", c.id);
    }
    let _ = fs::remove_dir_all(&dir);
}
