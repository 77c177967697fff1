//! `palisade attest` and `palisade verify`: an envelope made by the command verifies, and
//! each refusal exits 2 with its reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const DIGEST: &str = "sha256:1c42ddc0285b9c25135be3bf345e6a041271b784b22a6f6cab6588dab93c5980";
const BUILDER: &str = "https://ci.example.com/builders/shop@v1";
const COMMIT: &str = "c27d339ee6075c1f744c5d4b200f7901aad2c369";

fn palisade(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Two keys (`ci`, `other`) and an envelope for DIGEST signed by `ci`; returns the public keys.
fn setup(d: &Path) -> (String, String) {
    for k in ["ci", "other"] {
        assert!(palisade(&["keygen", "-o", k], d).status.success());
    }
    let source = format!("https://git.example.com/shop/cart@{COMMIT}");
    let o = palisade(
        &[
            "attest",
            "--key",
            "ci.key",
            "--key-id",
            "ci",
            "--image-digest",
            DIGEST,
            "--name",
            "registry.example.com/shop/cart",
            "--builder",
            BUILDER,
            "--source",
            &source,
            "-o",
            "cart.json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let read = |f: &str| {
        std::fs::read_to_string(d.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    (read("ci.pub"), read("other.pub"))
}

#[test]
fn attest_makes_an_envelope_that_verify_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ci, _) = setup(d);
    let envelope: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("cart.json")).unwrap()).unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(envelope["signatures"][0]["keyid"], "ci");
    let trusted = format!("ci={ci}");
    let o = palisade(
        &[
            "verify",
            "cart.json",
            "--trusted-key",
            &trusted,
            "--image-digest",
            DIGEST,
            "--builder",
            BUILDER,
            "--source",
            "https://git.example.com/shop/cart",
            "--output",
            "json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["keyIds"], serde_json::json!(["ci"]));
    assert_eq!(v["builder"], BUILDER);
    assert_eq!(
        v["source"],
        serde_json::json!({"repository": "https://git.example.com/shop/cart", "gitRef": "refs/heads/main", "revision": COMMIT})
    );
    assert_eq!(
        v["subjects"],
        serde_json::json!([{"name": "registry.example.com/shop/cart", "sha256": DIGEST.trim_start_matches("sha256:")}])
    );
}

#[test]
fn verify_refuses_with_exit_2_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ci, other) = setup(d);
    let good = format!("ci={ci}");
    let wrong_key_same_id = format!("ci={other}");
    let other_id = format!("other={other}");
    let other_digest = format!("sha256:{}", "0".repeat(64));
    let cases: Vec<(&str, Vec<&str>, String)> = vec![
        (
            "another key under the signer's id",
            vec!["--trusted-key", &wrong_key_same_id],
            "no signature verifies with a trusted key (signature 0 by key `ci` does not verify)".into(),
        ),
        (
            "only another key trusted",
            vec!["--trusted-key", &other_id],
            "no signature verifies with a trusted key (signature 0 names key `ci`, which is not trusted)".into(),
        ),
        (
            "another image digest",
            vec!["--trusted-key", &good, "--image-digest", &other_digest],
            format!("the statement names `{DIGEST}`, not the image `{other_digest}`"),
        ),
        (
            "a builder that is a prefix of the statement's",
            vec!["--trusted-key", &good, "--builder", "https://ci.example.com/builders/shop"],
            format!("built by `{BUILDER}`, not by an allowed builder (`https://ci.example.com/builders/shop`)"),
        ),
        (
            "another source",
            vec!["--trusted-key", &good, "--source", "https://git.example.com/shop/cart-fork"],
            "built from `https://git.example.com/shop/cart@refs/heads/main`, not from an allowed source (`https://git.example.com/shop/cart-fork`)".into(),
        ),
    ];
    for (name, extra, want) in cases {
        let mut args = vec!["verify", "cart.json", "--error-format", "json"];
        args.extend(extra);
        let o = palisade(&args, d);
        assert_eq!(o.status.code(), Some(2), "{name}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("`cart.json` is refused: {want}")),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_tampered_payload_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ci, _) = setup(d);
    let mut envelope: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("cart.json")).unwrap()).unwrap();
    // The same statement with another builder, under the old signature.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let body = String::from_utf8(body)
        .unwrap()
        .replace(BUILDER, "https://evil.example.com/b");
    envelope["payload"] = b64.encode(body).into();
    std::fs::write(d.join("tampered.json"), envelope.to_string()).unwrap();
    let good = format!("ci={ci}");
    let o = palisade(
        &[
            "verify",
            "tampered.json",
            "--trusted-key",
            &good,
            "--error-format",
            "json",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("signature 0 by key `ci` does not verify"),
        "{}",
        stderr(&o)
    );
}

/// `examples/shop/provenance`: each image of `examples/shop/kubernetes.json` from the shop's
/// registry has an envelope that verifies with the example's key for its `imageID` digest,
/// from the example policy's builder and its own repository; the policy loads.
#[test]
fn the_shop_examples_attestations_verify_for_their_images() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/shop");
    let objects: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("kubernetes.json")).unwrap())
            .unwrap();
    let mut images: Vec<(String, String)> = Vec::new();
    for item in objects["items"].as_array().unwrap() {
        if item["kind"] != "Pod" {
            continue;
        }
        for s in item["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (image, id) = (s["image"].as_str().unwrap(), s["imageID"].as_str().unwrap());
            if image.starts_with("registry.example.com/") {
                images.push((image.to_string(), id.to_string()));
            }
        }
    }
    images.sort();
    images.dedup();
    assert_eq!(images.len(), 5, "{images:?}");
    let dir = root.join("provenance");
    let key = format!(
        "shop-ci-2026={}",
        std::fs::read_to_string(dir.join("ci.pub")).unwrap().trim()
    );
    for (image, id) in &images {
        // registry.example.com/<team>/<name>:<tag>
        let repo = image.rsplit_once(':').unwrap().0;
        let parts: Vec<&str> = repo.split('/').collect();
        let (team, name) = (parts[1], parts[2]);
        let digest = id.split_once('@').unwrap().1;
        let envelope = dir.join(format!("{team}-{name}.intoto.json"));
        let source = format!("https://git.example.com/{team}/{name}");
        let o = palisade(
            &[
                "verify",
                envelope.to_str().unwrap(),
                "--trusted-key",
                &key,
                "--image-digest",
                digest,
                "--builder",
                "https://ci.example.com/builders/container@v1",
                "--source",
                &source,
            ],
            &root,
        );
        assert_eq!(o.status.code(), Some(0), "{image}: {}", stderr(&o));
    }
    let o = palisade(&["check", "provenance/policy.yaml"], &root);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
