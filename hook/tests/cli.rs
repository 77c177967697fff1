//! The hook binary as a runtime runs it, without a runtime: what it does with malformed
//! input, a missing policy, a broken component, and its flags. Every failure is a deny
//! (exit 2) with a message that says what to fix.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{cache_dir, component, hook_bin, policy_bundle, policy_yaml, scratch, testdata};

fn hook(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(hook_bin())
        .args(args)
        .env_remove("PALISADE_BUNDLE")
        .env_remove("PALISADE_POLICY")
        .env_remove("PALISADE_COMPONENT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hook may exit before reading everything (a bad flag): ignore a broken pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A state for the recorded runc `latest` case, its bundle a copy of the recording's
/// `config.json` beside a `rootfs` directory (the hook resolves `root.path` on this host).
fn latest_state() -> String {
    let recorded = testdata().join("runc/latest");
    let dir = scratch().join("cli-latest");
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::copy(recorded.join("config.json"), dir.join("config.json")).unwrap();
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(recorded.join("state.json")).unwrap())
            .unwrap();
    state["bundle"] = serde_json::Value::String(dir.display().to_string());
    state.to_string()
}

fn with_component<'a>(cache: &'a str, wasm: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--component", wasm, "--cache-dir", cache];
    v.extend_from_slice(rest);
    v
}

#[test]
fn a_malformed_state_fails_closed() {
    let (cache, wasm) = (cache_dir(), component());
    let (cache, wasm) = (cache.to_str().unwrap(), wasm.to_str().unwrap());
    let bundle = policy_bundle();
    let args = with_component(cache, wasm, &["--bundle", bundle.to_str().unwrap()]);
    for (stdin, message) in [
        ("", "no OCI state on stdin"),
        ("{not json", "invalid OCI state on stdin"),
        (
            r#"{"id":"c","status":"creating"}"#,
            "missing field `bundle`",
        ),
        (
            r#"{"id":"c","bundle":"relative/dir"}"#,
            "must be an absolute path",
        ),
        (
            r#"{"id":"c","bundle":"/nonexistent/bundle"}"#,
            "cannot open `/nonexistent/bundle/config.json`",
        ),
    ] {
        let out = hook(&args, stdin);
        assert_eq!(out.status.code(), Some(2), "{stdin}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("container start denied (fail closed)"),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(message), "{stdin}: {}", stderr(&out));
    }
}

#[test]
fn a_malformed_config_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{\"process\": 7}").unwrap();
    let state = format!(
        r#"{{"ociVersion":"1.0.2","id":"c","status":"creating","bundle":"{}"}}"#,
        dir.path().display()
    );
    let out = hook(
        &["--native", "--policy", policy_yaml().to_str().unwrap()],
        &state,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid config.json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_policy_fails_closed_and_says_how_to_give_one() {
    let out = hook(&["--native"], &latest_state());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no policy: give `--bundle <file>` or `--policy <file|dir>`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_invalid_policy_fails_closed_with_its_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: palisade.dev/v1alpha1\nkind: ContainerPolicy\nmetadata: {name: x}\nspec: {privileges: {level: superuser}}\n").unwrap();
    let (cache, wasm) = (cache_dir(), component());
    let args = with_component(
        cache.to_str().unwrap(),
        wasm.to_str().unwrap(),
        &["--policy", bad.to_str().unwrap()],
    );
    let out = hook(&args, &latest_state());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid policy"), "{}", stderr(&out));
    assert!(stderr(&out).contains("superuser"), "{}", stderr(&out));
}

#[test]
fn a_broken_or_missing_component_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm junk").unwrap();
    let bundle = policy_bundle();
    for (wasm, message) in [
        (junk.to_str().unwrap(), "cannot compile the component"),
        (
            "/nonexistent/palisade_component.wasm",
            "cannot read the component",
        ),
    ] {
        let cache = dir.path().join("cache");
        let out = hook(
            &[
                "--component",
                wasm,
                "--cache-dir",
                cache.to_str().unwrap(),
                "--bundle",
                bundle.to_str().unwrap(),
            ],
            &latest_state(),
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
}

#[test]
fn a_guest_out_of_fuel_fails_closed() {
    let (cache, wasm) = (cache_dir(), component());
    let bundle = policy_bundle();
    let args = with_component(
        cache.to_str().unwrap(),
        wasm.to_str().unwrap(),
        &["--bundle", bundle.to_str().unwrap(), "--fuel", "1000"],
    );
    let out = hook(&args, &latest_state());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the policy component failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_tampered_cache_file_is_not_loaded_but_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let wasm = component();
    let bundle = policy_bundle();
    let args = [
        "--component",
        wasm.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
    ];
    let first = hook(&args, &latest_state());
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let cwasm = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let mut bytes = std::fs::read(&cwasm).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&cwasm, bytes).unwrap();
    let second = hook(&args, &latest_state());
    assert!(
        stderr(&second).contains("does not match its recorded SHA-256"),
        "{}",
        stderr(&second)
    );
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
}

#[test]
fn native_and_component_modes_say_the_same() {
    let (cache, wasm) = (cache_dir(), component());
    let bundle = policy_bundle();
    let b = bundle.to_str().unwrap();
    let native = hook(&["--native", "--bundle", b], &latest_state());
    let wasm = hook(
        &with_component(
            cache.to_str().unwrap(),
            wasm.to_str().unwrap(),
            &["--bundle", b],
        ),
        &latest_state(),
    );
    assert_eq!(native.status.code(), Some(1));
    assert_eq!(stderr(&native), stderr(&wasm));
    assert!(
        stderr(&wasm).contains("palisade-test/baseline [image.deniedTag]"),
        "{}",
        stderr(&wasm)
    );
}

#[test]
fn record_keeps_the_inputs_and_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let out = hook(
        &[
            "--native",
            "--policy",
            policy_yaml().to_str().unwrap(),
            "--record",
            rec.to_str().unwrap(),
        ],
        &latest_state(),
    );
    assert_eq!(out.status.code(), Some(1));
    let kept = rec.join("palisade-runc-latest-6545");
    for f in ["state.json", "config.json", "expect.json"] {
        assert!(
            kept.join(f).exists(),
            "{f} not recorded in {}",
            kept.display()
        );
    }
    let expect: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kept.join("expect.json")).unwrap()).unwrap();
    assert_eq!(
        expect,
        serde_json::json!({"allowed": false, "controls": ["image.deniedTag"]})
    );
}

#[test]
fn an_unknown_flag_fails_closed_with_the_usage() {
    let out = hook(&["--frobnicate"], "{}");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown argument `--frobnicate`"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("usage: palisade-oci-hook"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_shipped_hooks_d_file_is_a_createruntime_hook_for_every_container() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks.d/palisade.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["when"], serde_json::json!({"always": true}));
    assert_eq!(v["stages"], serde_json::json!(["createRuntime"]));
    assert_eq!(v["hook"]["args"][0], "palisade-oci-hook");
    assert!(v["hook"]["path"].as_str().unwrap().starts_with('/'));
}

/// A bundle of the test policy signed by the key of `seed`, written under `name`, and that
/// key's `--trusted-key` entry.
fn signed_bundle(seed: u8, name: &str, scope: palisade_engine::Scope) -> (String, String) {
    use palisade_engine::bundle::public_key_base64;
    use palisade_engine::{BundleInfo, BundleSigner, Options, SourceFile, compile, load};
    let text = std::fs::read_to_string(policy_yaml()).unwrap();
    let engine = compile(
        &load(&[SourceFile::new("policy.yaml", text)]).unwrap(),
        &Options::default(),
    )
    .unwrap();
    let signer = BundleSigner {
        key_id: format!("k{seed}"),
        key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
    };
    let info = BundleInfo {
        scope,
        inputs: vec![],
    };
    let path = scratch().join(name);
    std::fs::create_dir_all(scratch()).unwrap();
    std::fs::write(
        &path,
        palisade_engine::encode_signed(&engine, &info, Some(&signer)).unwrap(),
    )
    .unwrap();
    let entry = format!("k{seed}={}", public_key_base64(&signer.key.verifying_key()));
    (path.display().to_string(), entry)
}

#[test]
fn with_trusted_keys_only_a_bundle_signed_for_the_mesh_decides() {
    use palisade_engine::Scope;
    let (good, key) = signed_bundle(1, "signed-mesh.bundle", Scope::Mesh);
    let (_, other) = signed_bundle(2, "signed-other.bundle", Scope::Mesh);
    let (ns, _) = signed_bundle(1, "signed-ns.bundle", Scope::Namespace("shop".into()));
    let unsigned = policy_bundle().display().to_string();
    let yaml = policy_yaml().display().to_string();
    // The signed bundle decides (the recorded `latest` case is denied by the policy: exit 1),
    // in both modes, with the key given by flag or by environment.
    let decided = hook(
        &["--native", "--bundle", &good, "--trusted-key", &key],
        &latest_state(),
    );
    assert_eq!(decided.status.code(), Some(1), "{}", stderr(&decided));
    let (cache, wasm) = (cache_dir(), component());
    let args = with_component(
        cache.to_str().unwrap(),
        wasm.to_str().unwrap(),
        &[
            "--bundle",
            &good,
            "--trusted-key",
            &other,
            "--trusted-key",
            &key,
        ],
    );
    let rotated = hook(&args, &latest_state());
    assert_eq!(rotated.status.code(), Some(1), "{}", stderr(&rotated));
    assert_eq!(stderr(&rotated), stderr(&decided));
    let rows = [
        (
            "unsigned",
            unsigned.as_str(),
            "--bundle",
            key.as_str(),
            "bundle is not signed",
        ),
        (
            "another key",
            good.as_str(),
            "--bundle",
            other.as_str(),
            "bundle is signed by key `k1`, which this host does not trust",
        ),
        (
            "one namespace's bundle",
            ns.as_str(),
            "--bundle",
            key.as_str(),
            "bundle is for namespace:shop, and this host enforces mesh",
        ),
        (
            "YAML",
            yaml.as_str(),
            "--policy",
            key.as_str(),
            "the policy must be a signed bundle",
        ),
    ];
    for (name, policy, flag, key, want) in rows {
        let out = hook(
            &["--native", flag, policy, "--trusted-key", key],
            &latest_state(),
        );
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("container start denied (fail closed)"),
            "{name}"
        );
        assert!(stderr(&out).contains(want), "{name}: {}", stderr(&out));
    }
    let out = hook(
        &["--native", "--bundle", &good, "--trusted-key", "k1"],
        &latest_state(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a trusted key is `ID=KEY`"),
        "{}",
        stderr(&out)
    );
}
