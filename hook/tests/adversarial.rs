//! The adversarial corpus (`testdata/adversarial/<class>/<case>/`): `config.json` as an
//! attacker (or a runtime we must not refuse) writes it, and `case.json` with what the Pod
//! Security Standards say (the pod-security-admission check named) and the expected outcome.
//! Every case is decided by the native engine, by the component in-process, and by the hook
//! binary; all must give the expected outcome.
//!
//! The hook binary runs live: a bundle is made in a temporary directory (with the symlinks
//! `setup` names) and the hook gathers its host facts on this machine (namespace identities,
//! resolved sources). Cases marked `replay` describe another host's layout (podman's stores)
//! and run with `--config-file` and `--no-host-facts`. The in-process runs have no host
//! facts and judge by spelling; `expectWithoutFacts` says when that differs.

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
use serde_json::{Value, json};

use common::{cache_dir, component, hook_bin, policy_yaml, testdata};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Decision(bool, Vec<String>),
    Refused(String),
}

fn expect(v: &Value) -> Expect {
    match v["refused"].as_str() {
        Some(r) => Expect::Refused(r.to_string()),
        None => Expect::Decision(
            v["allowed"].as_bool().unwrap(),
            v["controls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect(),
        ),
    }
}

struct Case {
    dir: PathBuf,
    label: String,
    case: Value,
}

impl Case {
    fn with_facts(&self) -> Expect {
        expect(&self.case["expect"])
    }
    fn without_facts(&self) -> Expect {
        match self.case.get("expectWithoutFacts") {
            Some(v) => expect(v),
            None => self.with_facts(),
        }
    }
    fn replay(&self) -> bool {
        self.case["replay"].as_bool().unwrap_or(false)
    }
    fn config(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join("config.json")).unwrap()).into_owned()
    }
    fn state(&self, bundle: &str) -> String {
        let s = &self.case["state"];
        json!({
            "ociVersion": "1.0.2-dev",
            "id": s["id"].as_str().map_or_else(|| format!("adv-{}", self.label.replace('/', "-")), str::to_string),
            "status": "creating",
            "pid": 4300,
            "bundle": s["bundle"].as_str().unwrap_or(bundle),
            "annotations": s.get("annotations").cloned().unwrap_or_else(|| json!({})),
        })
        .to_string()
    }
}

const CLASSES: [&str; 5] = [
    "1-reading",
    "2-namespaces",
    "3-mounts",
    "4-exemptions",
    "9-false-denials",
];

fn corpus() -> Vec<Case> {
    let root = testdata().join("adversarial");
    let mut out = Vec::new();
    for class in CLASSES {
        let mut n = 0;
        let mut dirs: Vec<PathBuf> = fs::read_dir(root.join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        for dir in dirs {
            let case: Value =
                serde_json::from_str(&fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
            for field in ["name", "pss"] {
                assert!(case.get(field).is_some(), "{}: no `{field}`", dir.display());
            }
            assert!(case["pss"]["check"].is_string(), "{}", dir.display());
            let label = format!("{class}/{}", dir.file_name().unwrap().to_string_lossy());
            out.push(Case { dir, label, case });
            n += 1;
        }
        assert!(n >= 3, "class {class} has {n} cases, at least 3 wanted");
    }
    out
}

fn got(r: Result<Admission, String>) -> Expect {
    match r {
        Ok(a) => Expect::Decision(
            a.allowed,
            a.violations.iter().map(|v| v.control.clone()).collect(),
        ),
        Err(e) => Expect::Refused(e),
    }
}

fn matches(got: &Expect, want: &Expect) -> bool {
    match (got, want) {
        (Expect::Refused(g), Expect::Refused(w)) => g.contains(w.as_str()),
        (g, w) => g == w,
    }
}

#[test]
fn the_corpus_decides_as_expected_natively_and_in_the_component() {
    let policy = PolicyPath::Yaml(policy_yaml()).read().unwrap();
    let mut guest = Guest::new(&component(), Some(&cache_dir()), DEFAULT_FUEL).unwrap();
    guest.load(&policy).unwrap();
    let mut failed = Vec::new();
    let cases = corpus();
    for c in &cases {
        let state = c.state(&format!("/adversarial/{}", c.label));
        let config = c.config();
        let want = c.without_facts();
        let native = admit_native(&policy, &state, &config, &[], None);
        let wasm = guest.admit(&state, &config, &[], None);
        assert_eq!(wasm, native, "{}: component and native differ", c.label);
        let g = got(native);
        if !matches(&g, &want) {
            failed.push(format!("{}: want {want:?}, got {g:?}", c.label));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    eprintln!(
        "{} adversarial cases, native and component agree",
        cases.len()
    );
}

/// The controls the hook named on stderr (`  <policy> [<control>]: …` lines).
fn stderr_controls(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| {
            let open = l.find('[')?;
            let close = l[open..].find(']')? + open;
            Some(l[open + 1..close].to_string())
        })
        .collect()
}

fn make_bundle(c: &Case, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::copy(c.dir.join("config.json"), dir.join("config.json")).unwrap();
    let links = c.case["setup"]["symlinks"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, target) in &links {
        std::os::unix::fs::symlink(target.as_str().unwrap(), dir.join(name)).unwrap();
    }
    if !links.contains_key("rootfs") {
        fs::create_dir_all(dir.join("rootfs")).unwrap();
    }
}

#[test]
fn the_corpus_decides_as_expected_through_the_hook_binary() {
    let scratch = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for c in corpus() {
        let mut cmd = Command::new(hook_bin());
        cmd.arg("--policy")
            .arg(policy_yaml())
            .arg("--component")
            .arg(component())
            .arg("--cache-dir")
            .arg(cache_dir());
        let (state, want) = if c.replay() {
            cmd.arg("--config-file")
                .arg(c.dir.join("config.json"))
                .arg("--no-host-facts");
            (c.state("/nonexistent"), c.without_facts())
        } else {
            let bundle = scratch.path().join(c.label.replace('/', "-"));
            make_bundle(&c, &bundle);
            (c.state(&bundle.display().to_string()), c.with_facts())
        };
        let mut child = cmd
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
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let g = match out.status.code() {
            Some(0) => Expect::Decision(true, stderr_controls(&stderr)),
            Some(1) => Expect::Decision(false, stderr_controls(&stderr)),
            _ => Expect::Refused(stderr.clone()),
        };
        if !matches(&g, &want) {
            failed.push(format!("{}: want {want:?}, got {g:?}\n{stderr}", c.label));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
