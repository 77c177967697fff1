//! `images.provenance` under real runc: the hook, given `--attestations DIR`, lets a container
//! start only when a DSSE envelope in that directory, signed by a key the policy lists, holds
//! an in-toto statement naming the image's digest from an allowed builder and source.
//!
//! The image is simulated: the digest is the one in the containerd image annotation
//! (`io.kubernetes.cri.image-name: <repo>@sha256:…`), as a digest-pinned pod gets it; the root
//! filesystem is busybox-static. Each case builds its own bundle and attestation directory.
//!
//! Runtimes need root: as another user every case prints why it is skipped and passes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use palisade_engine::provenance::{ATTEST_BUILD_TYPE, Envelope, PAYLOAD_TYPE, StatementSpec};
use palisade_engine::{Options, SourceFile, compile, encode_bundle, load};
use serde_json::{Value, json};

use common::{cache_dir, component, hook_bin, is_root, scratch, skipped};

const REPOSITORY: &str = "registry.example.com/shop/cart";
const DIGEST: &str = "sha256:1c42ddc0285b9c25135be3bf345e6a041271b784b22a6f6cab6588dab93c5980";
const BUILDER: &str = "https://ci.example.com/builders/shop@v1";
const SOURCE: &str = "https://git.example.com/shop/cart";
const COMMIT: &str = "c27d339ee6075c1f744c5d4b200f7901aad2c369";

fn ci_key() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn policy() -> String {
    let public =
        base64::engine::general_purpose::STANDARD.encode(ci_key().verifying_key().to_bytes());
    format!(
        "apiVersion: palisade.dev/v1alpha1
kind: ContainerPolicy
metadata: {{name: pipeline, namespace: palisade-test}}
spec:
  images:
    provenance:
      builders: [\"{BUILDER}\"]
      sources: [\"{SOURCE}\"]
      keys: [{{keyId: ci, publicKey: \"{public}\"}}]
"
    )
}

/// An envelope for `digest`, built by `builder`, signed by `key` under id `ci`.
fn envelope(digest: &str, builder: &str, key: &SigningKey) -> String {
    let body = StatementSpec {
        name: REPOSITORY.into(),
        digest: digest.into(),
        builder: builder.into(),
        build_type: ATTEST_BUILD_TYPE.into(),
        repository: SOURCE.into(),
        git_ref: "refs/heads/main".into(),
        revision: COMMIT.into(),
    }
    .to_json()
    .unwrap();
    serde_json::to_string(&Envelope::sign(PAYLOAD_TYPE, &body, "ci", key)).unwrap()
}

struct Env {
    dir: PathBuf,
    template: Value,
    policy_yaml: PathBuf,
    policy_bundle: PathBuf,
}

fn env() -> Option<&'static Env> {
    static ENV: OnceLock<Option<Env>> = OnceLock::new();
    let env = ENV.get_or_init(|| is_root().then(set_up)).as_ref();
    if env.is_none() {
        skipped("real container runtimes need root");
    }
    env
}

fn set_up() -> Env {
    for (bin, pkg) in [("runc", "runc"), ("busybox", "busybox-static")] {
        if Command::new(bin).arg("--help").output().is_err() {
            let ok = Command::new("apt-get")
                .args(["install", "-y", "-qq", pkg])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot install {pkg}");
        }
    }
    let dir = scratch().join(format!("provenance-{}", std::process::id()));
    let spec = dir.join("spec");
    fs::create_dir_all(&spec).unwrap();
    let out = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(out.status.success(), "runc spec: {out:?}");
    let template = serde_json::from_slice(&fs::read(spec.join("config.json")).unwrap()).unwrap();
    let policy_yaml = dir.join("policy.yaml");
    fs::write(&policy_yaml, policy()).unwrap();
    let set = load(&[SourceFile::new("policy.yaml", policy())]).unwrap();
    let engine = compile(&set, &Options::default()).unwrap();
    let policy_bundle = dir.join("policy.bundle");
    fs::write(&policy_bundle, encode_bundle(&engine).unwrap()).unwrap();
    cache_dir();
    Env {
        dir,
        template,
        policy_yaml,
        policy_bundle,
    }
}

/// Starts `echo hello from <case>` under runc for `image`, with `attestations` (file name,
/// JSON) in the hook's attestation directory; `bundle`: the policy as a compiled bundle
/// (else YAML).
fn start(case: &str, image: &str, attestations: &[(&str, String)], bundle: bool) -> Output {
    let env = env().unwrap();
    let dir = env.dir.join(case);
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for tool in ["sh", "echo"] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool));
    }
    let att = dir.join("attestations");
    fs::create_dir_all(&att).unwrap();
    for (name, text) in attestations {
        fs::write(att.join(name), text).unwrap();
    }
    let (flag, policy) = if bundle {
        ("--bundle", &env.policy_bundle)
    } else {
        ("--policy", &env.policy_yaml)
    };
    let mut config = env.template.clone();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["sh", "-c", format!("echo hello from {case}")]);
    config["root"] = json!({"path": "rootfs", "readonly": true});
    config["annotations"] = json!({
        "io.kubernetes.cri.sandbox-namespace": "palisade-test",
        "io.kubernetes.cri.image-name": image,
    });
    config["hooks"] = json!({"createRuntime": [{
        "path": hook_bin(),
        "args": ["palisade-oci-hook", flag, policy, "--component", component(),
                 "--cache-dir", cache_dir(), "--attestations", att],
        "timeout": 60,
    }]});
    fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    run(&env.dir, &dir, case)
}

fn run(base: &Path, bundle: &Path, case: &str) -> Output {
    let root = base.join("runc-state");
    let id = format!("palisade-provenance-{case}-{}", std::process::id());
    let out = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["delete", "-f", &id])
        .output();
    eprintln!(
        "--- runc run ({case}): {}\n[stdout]\n{}[stderr]\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn assert_refused(out: &Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the container started: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("hello from"),
        "the process ran"
    );
    assert!(
        stderr.contains("palisade-test/pipeline [image.provenance]"),
        "{stderr}"
    );
    assert!(stderr.contains(reason), "no `{reason}` in {stderr}");
}

fn pinned() -> String {
    format!("{REPOSITORY}@{DIGEST}")
}

#[test]
fn runc_starts_an_image_its_pipeline_attested() {
    if env().is_none() {
        return;
    }
    for (case, bundle) in [("attested-yaml", false), ("attested-bundle", true)] {
        let out = start(
            case,
            &pinned(),
            &[("cart.intoto.json", envelope(DIGEST, BUILDER, &ci_key()))],
            bundle,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("hello from {case}\n")
        );
    }
}

#[test]
fn runc_refuses_an_image_without_a_statement() {
    if env().is_none() {
        return;
    }
    let out = start("none", &pinned(), &[], false);
    assert_refused(
        &out,
        &format!("no provenance statement for image `{DIGEST}`"),
    );
}

#[test]
fn runc_refuses_an_image_built_by_another_builder() {
    if env().is_none() {
        return;
    }
    let out = start(
        "other-builder",
        &pinned(),
        &[(
            "cart.intoto.json",
            envelope(
                DIGEST,
                "https://ci.example.com/builders/shop@v1-fork",
                &ci_key(),
            ),
        )],
        true,
    );
    assert_refused(
        &out,
        &format!(
            "cart.intoto.json: built by `https://ci.example.com/builders/shop@v1-fork`, not by an allowed builder (`{BUILDER}`)"
        ),
    );
}

#[test]
fn runc_refuses_a_statement_signed_by_another_key_or_naming_another_image() {
    if env().is_none() {
        return;
    }
    let other = SigningKey::from_bytes(&[2; 32]);
    let other_digest = format!("sha256:{}", "0".repeat(64));
    let out = start(
        "other-key",
        &pinned(),
        &[
            ("a.json", envelope(DIGEST, BUILDER, &other)),
            ("b.json", envelope(&other_digest, BUILDER, &ci_key())),
        ],
        false,
    );
    assert_refused(
        &out,
        &format!(
            "a.json: no signature verifies with a trusted key (signature 0 by key `ci` does not verify); b.json: the statement names `{other_digest}`, not the image `{DIGEST}`"
        ),
    );
}

#[test]
fn runc_refuses_a_tagged_image_whose_digest_is_unknown() {
    if env().is_none() {
        return;
    }
    let out = start(
        "tagged",
        &format!("{REPOSITORY}:1.4"),
        &[("cart.intoto.json", envelope(DIGEST, BUILDER, &ci_key()))],
        false,
    );
    assert_refused(
        &out,
        "has no digest, so no provenance statement can name it",
    );
}
