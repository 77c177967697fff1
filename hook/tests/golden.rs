//! Regression tests from hook inputs recorded from real runtimes (`testdata/<runtime>/<case>/`:
//! the state JSON the hook got on stdin, the bundle's `config.json`, and `expect.json` — the
//! decision recorded then, with `--record`). Each recording is decided again by the native
//! engine, by the component in-process, and by the hook binary (replaying: `--config-file`
//! names the recording, the state keeps the bundle it was recorded with, and
//! `--no-host-facts`, since this host's files say nothing about the recording's), and must
//! give the recorded verdict and controls.
//!
//! runc 1.1.5 sends `"status": "creating"` and `ociVersion` `1.0.2-dev`; crun 1.8.1 sends
//! `"status": "created"`, `ociVersion` `1.0` and an extra `root`; podman (through runc) adds
//! its own annotations.

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

use palisade_oci_hook::component::{Admission, DEFAULT_FUEL, Guest, admit_native};
use palisade_oci_hook::policy::PolicyPath;
use serde_json::Value;

use common::{cache_dir, component, hook_bin, policy_yaml, testdata};

fn recordings() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for runtime in ["runc", "crun", "podman"] {
        for e in fs::read_dir(testdata().join(runtime)).unwrap() {
            out.push(e.unwrap().path());
        }
    }
    out.sort();
    // crun: 3, podman: 3, runc: 6 (`hook/testdata/<runtime>/<case>/`); adding a recording means
    // adding it here, and a recording that goes missing fails.
    let names: Vec<String> = out
        .iter()
        .map(|p| {
            let runtime = p.parent().unwrap().file_name().unwrap().to_string_lossy();
            format!("{runtime}/{}", p.file_name().unwrap().to_string_lossy())
        })
        .collect();
    assert_eq!(
        names,
        [
            "crun/all-caps",
            "crun/allowed",
            "crun/host-pid",
            "podman/allowed",
            "podman/cap-add-all",
            "podman/latest",
            "runc/all-caps",
            "runc/allowed",
            "runc/docker-sock",
            "runc/everything",
            "runc/host-pid",
            "runc/latest",
        ],
        "recordings"
    );
    out
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap()
}

fn expected(dir: &Path) -> (bool, Vec<String>) {
    let e: Value = serde_json::from_str(&read(dir, "expect.json")).unwrap();
    let controls = e["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (e["allowed"].as_bool().unwrap(), controls)
}

fn got(a: &Admission) -> (bool, Vec<String>) {
    (
        a.allowed,
        a.violations.iter().map(|v| v.control.clone()).collect(),
    )
}

/// A regression test: `expect.json` is what the hook itself decided when the input was
/// recorded (`--record`), not an independent expectation.
#[test]
fn regression_recorded_runtime_inputs_decide_as_recorded_natively_and_in_the_component() {
    let policy = PolicyPath::Yaml(policy_yaml()).read().unwrap();
    let mut guest = Guest::new(&component(), Some(&cache_dir()), DEFAULT_FUEL).unwrap();
    guest.load(&policy).unwrap();
    for dir in recordings() {
        let (state, config) = (read(&dir, "state.json"), read(&dir, "config.json"));
        let want = expected(&dir);
        let native = admit_native(&policy, &state, &config, &[], None).unwrap();
        assert_eq!(got(&native), want, "native, {}", dir.display());
        let wasm = guest.admit(&state, &config, &[], None).unwrap();
        assert_eq!(wasm, native, "component vs native, {}", dir.display());
    }
}

/// A regression test, as above.
#[test]
fn regression_recorded_runtime_inputs_decide_as_recorded_through_the_hook_binary() {
    for dir in recordings() {
        let state: Value = serde_json::from_str(&read(&dir, "state.json")).unwrap();
        let mut child = Command::new(hook_bin())
            .arg("--config-file")
            .arg(dir.join("config.json"))
            .arg("--no-host-facts")
            .arg("--policy")
            .arg(policy_yaml())
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
            .write_all(state.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let (allowed, controls) = expected(&dir);
        assert_eq!(
            out.status.code(),
            Some(if allowed { 0 } else { 1 }),
            "{}: {stderr}",
            dir.display()
        );
        for c in controls {
            assert!(
                stderr.contains(&format!("[{c}]")),
                "{}: no [{c}] in {stderr}",
                dir.display()
            );
        }
    }
}
