//! `palisade eval` with CUSTOM policies: providers from `--mesh-config`, the answer a request
//! carries (`extAuthz`), the `custom-pending` verdict and its exit status 4.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: CUSTOM
  provider: {name: ext-authz}
  rules:
  - to: [{operation: {paths: ["/custom*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin"]}}]
"#;

const MESH: &str = r#"defaultConfig: {discoveryAddress: istiod.istio-system.svc:15012}
extensionProviders:
- name: ext-authz
  envoyExtAuthzHttp:
    service: foo/ext-authz.foo.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: [x-ext-authz]
"#;

fn request(path: &str, answer: Option<&str>) -> String {
    let ext = answer.map_or(String::new(), |a| {
        format!(r#", "extAuthz": {{"ext-authz": "{a}"}}"#)
    });
    format!(
        r#"{{"destination": {{"workload": {{"namespace": "shop", "labels": {{"app": "cart"}}}}}}, "http": {{"method": "GET", "host": "cart", "path": "{path}"}}{ext}}}"#
    )
}

fn palisade(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.yaml"), POLICIES).unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
    dir
}

fn eval(dir: &Path, req: &str, json: bool) -> Output {
    std::fs::write(dir.join("req.json"), req).unwrap();
    let mut args = vec![
        "eval",
        "-p",
        "policies.yaml",
        "-r",
        "req.json",
        "--mesh-config",
        "mesh.yaml",
    ];
    if json {
        args.extend(["--output", "json"]);
    }
    palisade(&args, dir)
}

#[test]
fn exit_statuses_follow_the_providers_answer() {
    let dir = setup();
    let cases = [
        (
            "no CUSTOM match: allowed, exit 0",
            request("/public", None),
            0,
            "allow",
        ),
        (
            "CUSTOM match without an answer: pending, exit 4",
            request("/custom", None),
            4,
            "custom-pending",
        ),
        (
            "the provider allowed: exit 0",
            request("/custom", Some("allow")),
            0,
            "allow",
        ),
        (
            "the provider denied: exit 1",
            request("/custom", Some("deny")),
            1,
            "deny",
        ),
    ];
    for (name, req, code, verdict) in cases {
        let o = eval(dir.path(), &req, true);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["results"][0]["verdict"], verdict, "{name}");
    }
}

#[test]
fn a_pending_request_names_its_provider_and_a_denial_in_the_batch_wins() {
    let dir = setup();
    let o = eval(dir.path(), &request("/custom", None), false);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("custom-pending\n"), "{out}");
    assert!(
        out.contains("pending: CUSTOM rule istio-ext-authz-ext-authz-ns[shop]-policy[ext]-rule[0] matched; ask provider `ext-authz`"),
        "{out}"
    );
    let batch = format!(
        "[{}, {}]",
        request("/custom", None),
        request("/admin", None)
    );
    let o = eval(dir.path(), &batch, true);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a denial outranks a pending request"
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["totals"]["pending"], 1);
    assert_eq!(v["totals"]["denied"], 1);
    assert_eq!(v["results"][0]["custom"][0]["provider"], "ext-authz");
}

#[test]
fn without_the_mesh_config_the_provider_is_undeclared_and_its_rules_deny() {
    let dir = setup();
    std::fs::write(
        dir.path().join("req.json"),
        request("/custom", Some("allow")),
    )
    .unwrap();
    let o = palisade(
        &[
            "eval",
            "-p",
            "policies.yaml",
            "-r",
            "req.json",
            "--output",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"][0]["step"], "custom-provider-missing");
    assert_eq!(
        v["results"][0]["rule"]["id"],
        "istio-ext-authz-ext-authz-ns[shop]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action"
    );
}

#[test]
fn an_invalid_mesh_config_is_refused_with_its_line() {
    let dir = setup();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        "extensionProviders:\n- name: ext-authz\n  envoyExtAuthzHttp: {service: a, port: 0}\n",
    )
    .unwrap();
    let o = eval(dir.path(), &request("/custom", None), false);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("port must be in the range [1, 65535], found: 0"),
        "{err}"
    );
    assert!(err.contains("mesh.yaml:2"), "{err}");
}
