//! `palisade keygen`, `compile --sign --key-id --scope` and `inspect --trusted-key`: the
//! signed bundle's round trip through the command, each refusal by name, determinism, and a
//! key written by OpenSSL as the independent anchor for the key format.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const POLICY: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - to: [{operation: {methods: [GET]}}]
";

fn palisade(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok_json(o: &Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `openssl genpkey -algorithm ed25519` and its public key (`openssl pkey -pubout -outform
/// DER | tail -c 32 | base64`), made once with OpenSSL 3.0 and kept as test data.
fn openssl_key() -> (std::path::PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let public = std::fs::read_to_string(dir.join("openssl-ed25519.pub")).unwrap();
    (dir.join("openssl-ed25519.key"), public.trim().to_string())
}

#[test]
fn keygen_compile_sign_and_inspect_verify_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("policy.yaml"), POLICY).unwrap();
    let key = ok_json(&palisade(&["keygen", "-o", "ci", "--output", "json"], d));
    assert_eq!(key["privateKey"], "ci.key");
    let public = key["publicKey"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(d.join("ci.pub")).unwrap(),
        format!("{public}\n")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("ci.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // keygen never overwrites a key.
    let again = palisade(&["keygen", "-o", "ci"], d);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));

    let compiled = ok_json(&palisade(
        &[
            "compile",
            "policy.yaml",
            "-o",
            "b.plsd",
            "--sign",
            "ci.key",
            "--key-id",
            "ci-2026",
            "--scope",
            "workload:shop/cart",
            "--output",
            "json",
        ],
        d,
    ));
    assert_eq!(compiled["keyId"], "ci-2026");
    assert_eq!(compiled["scope"], "workload:shop/cart");
    assert_eq!(compiled["formatVersion"], 4);

    let trusted = format!("ci-2026={public}");
    let v = ok_json(&palisade(
        &[
            "inspect",
            "b.plsd",
            "--trusted-key",
            &trusted,
            "--output",
            "json",
        ],
        d,
    ));
    assert_eq!(v["keyId"], "ci-2026");
    assert_eq!(v["verified"], true);
    assert_eq!(v["scope"], "workload:shop/cart");
    assert_eq!(v["sha256"], compiled["sha256"]);
    // The input's digest is the SHA-256 of the file's bytes.
    use sha2_digest::sha256_hex;
    assert_eq!(v["inputs"][0]["name"], "policy.yaml");
    assert_eq!(v["inputs"][0]["sha256"], sha256_hex(POLICY.as_bytes()));
    let human = palisade(&["inspect", "b.plsd", "--trusted-key", &trusted], d);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("scope: workload:shop/cart; signed by key `ci-2026`, verified"),
        "{text}"
    );

    // Without keys inspect still reads it, and says it did not verify.
    let v = ok_json(&palisade(&["inspect", "b.plsd", "--output", "json"], d));
    assert_eq!(v["verified"], false);
}

#[test]
fn inspect_refuses_a_bundle_its_trusted_keys_did_not_sign() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("policy.yaml"), POLICY).unwrap();
    ok_json(&palisade(&["keygen", "-o", "a", "--output", "json"], d));
    let other = ok_json(&palisade(&["keygen", "-o", "b", "--output", "json"], d));
    let other = other["publicKey"].as_str().unwrap();
    palisade(
        &[
            "compile",
            "policy.yaml",
            "-o",
            "signed.plsd",
            "--sign",
            "a.key",
            "--key-id",
            "a",
        ],
        d,
    );
    palisade(&["compile", "policy.yaml", "-o", "unsigned.plsd"], d);
    let rows = [
        (
            "another key under the same id",
            "signed.plsd",
            format!("a={other}"),
            "bundle signature by key `a` does not verify",
        ),
        (
            "a key id it was not signed by",
            "signed.plsd",
            format!("b={other}"),
            "bundle is signed by key `a`, which this host does not trust",
        ),
        (
            "unsigned",
            "unsigned.plsd",
            format!("b={other}"),
            "bundle is not signed",
        ),
        (
            "not a key",
            "signed.plsd",
            "a=nope".to_string(),
            "trusted key `a`: 3 bytes, not the 32 of an ed25519 key",
        ),
    ];
    for (name, bundle, key, want) in rows {
        let o = palisade(&["inspect", bundle, "--trusted-key", &key], d);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{name}: {}", stderr(&o));
    }
}

#[test]
fn the_same_inputs_and_key_give_byte_identical_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("policy.yaml"), POLICY).unwrap();
    let (key, _) = openssl_key();
    let key = key.to_str().unwrap();
    for out in ["one.plsd", "two.plsd"] {
        let o = palisade(
            &[
                "compile",
                "policy.yaml",
                "-o",
                out,
                "--sign",
                key,
                "--key-id",
                "k",
            ],
            d,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let one = std::fs::read(d.join("one.plsd")).unwrap();
    assert_eq!(one, std::fs::read(d.join("two.plsd")).unwrap());
}

#[test]
fn a_key_made_by_openssl_signs_and_its_openssl_public_key_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("policy.yaml"), POLICY).unwrap();
    let (key, public) = openssl_key();
    let o = palisade(
        &[
            "compile",
            "policy.yaml",
            "-o",
            "b.plsd",
            "--sign",
            key.to_str().unwrap(),
            "--key-id",
            "ossl",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = ok_json(&palisade(
        &[
            "inspect",
            "b.plsd",
            "--trusted-key",
            &format!("ossl={public}"),
            "--output",
            "json",
        ],
        d,
    ));
    assert_eq!(v["verified"], true);
}

#[test]
fn a_bad_scope_or_key_file_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("policy.yaml"), POLICY).unwrap();
    std::fs::write(d.join("junk.key"), "not a key").unwrap();
    let rows: [(&str, &[&str], &str); 3] = [
        (
            "a scope that is not one",
            &["--scope", "cluster"],
            "`cluster` is not a scope",
        ),
        (
            "a key file that is not a key",
            &["--sign", "junk.key", "--key-id", "k"],
            "`junk.key` is not an ed25519 private key",
        ),
        ("a key without its id", &["--sign", "junk.key"], "--key-id"),
    ];
    for (name, extra, want) in rows {
        let mut args = vec!["compile", "policy.yaml", "-o", "b.plsd"];
        args.extend_from_slice(extra);
        let o = palisade(&args, d);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{name}: {}", stderr(&o));
        assert!(!d.join("b.plsd").exists(), "{name}");
    }
}

/// SHA-256 by `ring`, not the `sha2` crate the engine uses: a second implementation.
mod sha2_digest {
    pub fn sha256_hex(bytes: &[u8]) -> String {
        use ring::digest::{SHA256, digest};
        digest(&SHA256, bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
