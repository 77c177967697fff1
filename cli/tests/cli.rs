//! The `palisade` binary, run against temporary files: exit statuses, human errors with
//! file:line:column and field path, JSON results and errors that parse.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A valid set: the cart accepts GETs on `/api/*` from the frontend; `/admin` is denied.
const POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/api/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: orphan, namespace: shop}
spec:
  selector: {matchLabels: {app: nobody}}
  rules: [{}]
"#;

const INVENTORY: &str = r#"apiVersion: palisade.dev/v1alpha1
kind: Inventory
metadata: {name: shop}
spec:
  workloads:
  - {name: cart, namespace: shop, serviceAccount: cart, labels: {app: cart}}
  - {name: frontend, namespace: shop, serviceAccount: frontend, labels: {app: frontend}}
"#;

/// Line 7 has a misspelt `methods` (the engine points at the key, column 19).
const INVALID: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart, namespace: shop}
spec:
  rules:
  - to:
    - operation: {methodz: ["GET"]}
"#;

fn request(path: &str) -> String {
    format!(
        r#"{{"source": {{"principal": "spiffe://cluster.local/ns/shop/sa/frontend"}},
 "destination": {{"port": 8080, "workload": {{"namespace": "shop", "name": "cart"}}}},
 "http": {{"method": "GET", "host": "cart", "path": "{path}"}}}}"#
    )
}

/// A temporary directory holding `policies/` (policies and inventory) and whatever else a
/// test writes.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        f.write("policies/authz.yaml", POLICIES);
        f.write("policies/nested/inventory.yml", INVENTORY);
        f.write("policies/README.md", "not read");
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn palisade(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn check_of_a_valid_directory_summarises_and_exits_0() {
    let f = Fixture::new();
    let o = palisade(&["check", "policies"], f.dir.path());
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.contains("valid: 2 files"), "{out}");
    assert!(
        out.contains("AuthorizationPolicies: 3 (ALLOW 2, DENY 1, AUDIT 0; 0 dry-run)"),
        "{out}"
    );
    assert!(
        out.contains("shop/cart      shop/cart, shop/deny-admin"),
        "{out}"
    );
    assert!(
        out.contains("shop/orphan  selects no inventory workload"),
        "{out}"
    );
}

#[test]
fn check_with_json_output_lists_workloads_and_unselected_policies() {
    let f = Fixture::new();
    let o = palisade(&["check", "policies", "--output", "json"], f.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&stdout(&o));
    assert_eq!(v["valid"], true);
    assert_eq!(v["authorizationPolicies"]["total"], 3);
    assert_eq!(v["authorizationPolicies"]["deny"], 1);
    assert_eq!(v["networkPolicies"], 0);
    assert_eq!(v["workloads"][0]["name"], "cart");
    assert_eq!(
        v["workloads"][0]["policies"],
        serde_json::json!(["shop/cart", "shop/deny-admin"])
    );
    assert_eq!(
        v["workloads"][1]["policies"],
        serde_json::json!(["shop/deny-admin"])
    );
    assert_eq!(v["unselectedPolicies"][0]["id"], "shop/orphan");
}

#[test]
fn check_of_an_invalid_file_exits_2_naming_file_line_column_and_field_path() {
    let f = Fixture::new();
    f.write("bad.yaml", INVALID);
    let o = palisade(&["check", "bad.yaml", "policies"], f.dir.path());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.yaml:7:19"), "{err}");
    assert!(
        err.contains("spec.rules[0].to[0].operation.methodz"),
        "{err}"
    );
    assert!(err.contains("unknown field `methodz`"), "{err}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn check_reports_every_problem_of_every_file() {
    let f = Fixture::new();
    f.write("a.yaml", INVALID);
    f.write("b.yaml", &INVALID.replace("methodz", "portz"));
    let o = palisade(&["check", "a.yaml", "b.yaml", "missing.yaml"], f.dir.path());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read `missing.yaml`"), "{err}");
    let o = palisade(&["check", "a.yaml", "b.yaml"], f.dir.path());
    let err = stderr(&o);
    assert!(
        err.contains("a.yaml:7:19") && err.contains("b.yaml:7:19"),
        "{err}"
    );
    assert!(err.contains("2 problems found"), "{err}");
}

#[test]
fn json_error_format_prints_the_engine_errors() {
    let f = Fixture::new();
    f.write("bad.yaml", INVALID);
    let o = palisade(
        &["check", "bad.yaml", "--error-format", "json"],
        f.dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let v = json(&stderr(&o));
    let d = &v["diagnostics"][0];
    assert_eq!(d["location"]["file"], "bad.yaml");
    assert_eq!(d["location"]["line"], 7);
    assert_eq!(d["location"]["column"], 19);
    assert_eq!(d["path"], "spec.rules[0].to[0].operation.methodz");
    assert_eq!(d["document"], "AuthorizationPolicy shop/cart");
}

#[test]
fn eval_of_an_allowed_request_exits_0_with_the_deciding_rule() {
    let f = Fixture::new();
    f.write("req.json", &request("/api/items"));
    let o = palisade(
        &[
            "eval",
            "--policy",
            "policies",
            "--request",
            "req.json",
            "--output",
            "json",
        ],
        f.dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&stdout(&o));
    let r = &v["results"][0];
    assert_eq!(r["verdict"], "allow");
    assert_eq!(r["step"], "allow-matched");
    assert_eq!(r["rule"]["id"], "ns[shop]-policy[cart]-rule[0]");
    assert!(r["explanation"].as_str().unwrap().starts_with("allowed"));
    assert_eq!(v["totals"]["allowed"], 1);
}

#[test]
fn eval_of_a_denied_request_exits_1_and_explains() {
    let f = Fixture::new();
    f.write("req.json", &request("/admin/users"));
    let o = palisade(&["eval", "-p", "policies", "-r", "req.json"], f.dir.path());
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(out.starts_with("deny\n"), "{out}");
    assert!(
        out.contains("rule:     ns[shop]-policy[deny-admin]-rule[0]"),
        "{out}"
    );
    assert!(out.contains("why:      denied: DENY rule"), "{out}");
}

#[test]
fn eval_of_a_batch_exits_1_when_any_request_is_denied() {
    let f = Fixture::new();
    let batch = format!(
        r#"[{},
 {{"name": "admin", "request": {}, "expect": "deny"}}]"#,
        request("/api/x"),
        request("/admin")
    );
    f.write("batch.json", &batch);
    let o = palisade(
        &[
            "eval",
            "-p",
            "policies",
            "-r",
            "batch.json",
            "--output",
            "json",
        ],
        f.dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&stdout(&o));
    assert_eq!(v["results"][0]["verdict"], "allow");
    assert_eq!(v["results"][1]["name"], "admin");
    assert_eq!(v["results"][1]["verdict"], "deny");
    assert_eq!(v["results"][1]["asExpected"], true);
    assert_eq!(v["totals"]["denied"], 1);

    let lines = format!(
        "{}\n{}\n",
        request("/api/x").replace('\n', ""),
        request("/api/y").replace('\n', "")
    );
    f.write("lines.jsonl", &lines);
    let o = palisade(
        &["eval", "-p", "policies", "-r", "lines.jsonl"],
        f.dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 requests: 2 allowed, 0 denied"));
}

#[test]
fn eval_reads_the_request_from_standard_input() {
    let f = Fixture::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["eval", "-p", "policies", "-r", "-"])
        .current_dir(f.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(request("/api/x").as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("allow\n"));
}

#[test]
fn eval_of_an_invalid_request_exits_2_with_its_position_and_path() {
    let f = Fixture::new();
    f.write("req.json", "{\n  \"destination\": {\"prot\": 1}\n}\n");
    let o = palisade(
        &[
            "eval",
            "-p",
            "policies",
            "-r",
            "req.json",
            "--error-format",
            "json",
        ],
        f.dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let v = json(&stderr(&o));
    let d = &v["diagnostics"][0];
    assert_eq!(d["path"], "destination.prot");
    assert_eq!(d["location"]["line"], 2);
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `prot`")
    );
}

#[test]
fn compile_then_inspect_round_trips() {
    let f = Fixture::new();
    let o = palisade(
        &[
            "compile",
            "policies",
            "-o",
            "out.plsd",
            "--trust-domain",
            "example.org",
            "--output",
            "json",
        ],
        f.dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let written = json(&stdout(&o));
    let size = std::fs::metadata(f.path("out.plsd")).unwrap().len();
    assert_eq!(written["size"], size);
    let digest = written["sha256"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64);

    let o = palisade(&["inspect", "out.plsd", "--output", "json"], f.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&stdout(&o));
    assert_eq!(v["sha256"], digest.as_str());
    assert_eq!(v["formatVersion"], 4);
    assert_eq!(v["options"]["trustDomain"], "example.org");
    assert_eq!(v["policies"][0]["id"], "shop/cart");
    assert_eq!(v["policies"][0]["action"], "ALLOW");
    assert_eq!(v["policies"][0]["rules"], 1);
    assert_eq!(v["workloads"].as_array().unwrap().len(), 2);

    let o = palisade(&["inspect", "out.plsd"], f.dir.path());
    let out = stdout(&o);
    assert!(out.contains(&format!("sha256: {digest}")), "{out}");
    assert!(out.contains("format version 4"), "{out}");
}

#[test]
fn a_corrupt_or_foreign_bundle_exits_2_with_a_clear_error() {
    let f = Fixture::new();
    let o = palisade(&["compile", "policies", "-o", "out.plsd"], f.dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut bytes = std::fs::read(f.path("out.plsd")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(f.path("corrupt.plsd"), &bytes).unwrap();
    let o = palisade(&["inspect", "corrupt.plsd"], f.dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("invalid bundle `corrupt.plsd`: corrupt bundle: payload digest mismatch"),
        "{}",
        stderr(&o)
    );

    f.write("policies.yaml.plsd", POLICIES);
    let o = palisade(
        &["inspect", "policies.yaml.plsd", "--error-format", "json"],
        f.dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let v = json(&stderr(&o));
    assert!(
        v["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not a Palisade bundle")
    );
}

#[test]
fn path_normalization_is_passed_to_the_engine() {
    let f = Fixture::new();
    f.write("req.json", &request("//admin"));
    let step = |mode: &str| {
        let o = palisade(
            &[
                "eval",
                "-p",
                "policies",
                "-r",
                "req.json",
                "--output",
                "json",
                "--path-normalization",
                mode,
            ],
            f.dir.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        json(&stdout(&o))["results"][0]["step"].clone()
    };
    // BASE keeps `//admin`, which no rule matches; MERGE_SLASHES makes it `/admin`, denied.
    assert_eq!(step("BASE"), "no-allow-matched");
    assert_eq!(step("MERGE_SLASHES"), "deny-matched");
    let o = palisade(
        &[
            "eval",
            "-p",
            "policies",
            "-r",
            "req.json",
            "--path-normalization",
            "SOMETIMES",
        ],
        f.dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn demo_decides_the_built_in_example() {
    let o = palisade(&["demo"], Path::new("."));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.starts_with("REQUEST"), "{out}");
    assert!(out.lines().last().unwrap().contains(" requests: "), "{out}");
    let o = palisade(&["demo", "--output", "json"], Path::new("."));
    let v = json(&stdout(&o));
    // The twelve sample requests of `examples/shop/requests/`, six allowed and six denied (each
    // file names the verdict it expects: `unexpected` is 0).
    assert_eq!(v["totals"]["requests"], 12);
    assert_eq!(v["totals"]["allowed"], 6);
    assert_eq!(v["totals"]["denied"], 6);
    assert_eq!(v["totals"]["unexpected"], 0);
    assert_eq!(
        out.lines().last().unwrap(),
        "12 requests: 6 allowed, 6 denied"
    );
}
