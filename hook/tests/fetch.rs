//! `--bundle-url`: the hook fetches its bundle from `palisade serve` (on loopback), verifies
//! it, keeps the last verified one, decides with it when the server is down, and fails closed
//! with nothing kept. A test-only fake server sends what the real one never would: a bundle
//! signed by the wrong key, one whose payload does not decode, silence.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{hook_bin, policy_yaml, scratch, testdata};
use ed25519_dalek::{Signer as _, SigningKey};
use palisade_engine::bundle::{digest_hex, public_key_base64};
use palisade_engine::{BundleInfo, BundleSigner, Options, Scope, SourceFile, compile, load};
use sha2::{Digest, Sha256};

const TRUSTED_SEED: u8 = 1;

fn trusted_entry() -> String {
    let key = SigningKey::from_bytes(&[TRUSTED_SEED; 32]);
    format!("k1={}", public_key_base64(&key.verifying_key()))
}

/// The test policy without its `:latest` rule: the recorded `latest` container is allowed.
fn policy_without_latest_rule() -> String {
    std::fs::read_to_string(policy_yaml())
        .unwrap()
        .replace("  images:\n    deniedTags: [latest]\n", "")
}

/// The state of a recorded runc case (`latest`: denied by the test policy; `allowed`).
fn state(case: &str) -> String {
    let recorded = testdata().join("runc").join(case);
    // A directory per call: tests run in parallel, and a `config.json` rewritten while another
    // hook reads it would be read half-written.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = scratch().join(format!("fetch-{case}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::copy(recorded.join("config.json"), dir.join("config.json")).unwrap();
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(recorded.join("state.json")).unwrap())
            .unwrap();
    state["bundle"] = serde_json::Value::String(dir.display().to_string());
    state.to_string()
}

fn hook(url: &str, cache: &Path, extra: &[&str], case: &str) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(hook_bin())
        .args([
            "--native",
            "--bundle-url",
            url,
            "--trusted-key",
            &trusted_entry(),
        ])
        .arg("--bundle-cache")
        .arg(cache)
        .args(extra)
        .env_remove("PALISADE_BUNDLE")
        .env_remove("PALISADE_POLICY")
        .env_remove("PALISADE_BUNDLE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(state(case).as_bytes());
    let out = child.wait_with_output().unwrap();
    (out, started.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn persisted(cache: &Path) -> Option<Vec<u8>> {
    std::fs::read(cache.join("last-verified.plsd")).ok()
}

fn serve(dir: &Path) -> palisade_serve::Handle {
    palisade_serve::spawn(palisade_serve::Config {
        recipe: palisade_serve::Recipe {
            paths: vec![dir.to_path_buf()],
            options: Options::default(),
            signer: Some(BundleSigner {
                key_id: "k1".into(),
                key: SigningKey::from_bytes(&[TRUSTED_SEED; 32]),
            }),
            scopes: vec![Scope::Mesh],
        },
        http: "127.0.0.1:0".parse().unwrap(),
        debounce: Duration::from_millis(50),
    })
    .unwrap()
}

fn wait_for_revision(h: &palisade_serve::Handle, not: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = h.status().revisions.get("mesh")
            && r != not
        {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no new revision");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A closed port on loopback: bound, then released.
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/v1/bundles/mesh")
}

#[test]
fn a_container_start_is_decided_by_the_served_bundle_then_by_the_persisted_one() {
    let policies = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(policy_yaml(), policies.path().join("policy.yaml")).unwrap();
    let server = serve(policies.path());
    let url = format!("http://{}/v1/bundles/mesh", server.addr());
    let first = server.status().revisions["mesh"].clone();

    // Served: the `:latest` container is denied, the other allowed; the bundle is kept.
    let (out, fetched_in) = hook(&url, cache.path(), &[], "latest");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("latest"), "{}", stderr(&out));
    let kept = persisted(cache.path()).unwrap();
    assert_eq!(digest_hex(&kept).unwrap(), first);
    let (out, not_modified_in) = hook(&url, cache.path(), &[], "allowed");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let client = server
        .status()
        .clients
        .into_iter()
        .find(|c| c.client.starts_with("palisade-oci-hook@"))
        .unwrap();
    assert_eq!(
        (client.revision.as_str(), client.requests),
        (first.as_str(), 2)
    );

    // The policy changes: the next start is decided by the new revision, which is kept.
    std::fs::write(
        policies.path().join("policy.yaml"),
        policy_without_latest_rule(),
    )
    .unwrap();
    let second = wait_for_revision(&server, &first);
    let (out, _) = hook(&url, cache.path(), &[], "latest");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        digest_hex(&persisted(cache.path()).unwrap()).unwrap(),
        second
    );

    // The server goes away: the persisted bundle decides.
    drop(server);
    let (out, down_in) = hook(&url, cache.path(), &[], "latest");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deciding with the persisted bundle"),
        "{}",
        stderr(&out)
    );
    eprintln!(
        "hook process wall time (--native, debug build): fetched 200 {fetched_in:?}, 304 {not_modified_in:?}, server down {down_in:?}"
    );
}

#[test]
fn with_nothing_persisted_and_no_server_the_start_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let (out, _) = hook(&closed_port(), cache.path(), &[], "allowed");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("container start denied (fail closed)"),
        "{err}"
    );
    assert!(err.contains("no bundle is persisted"), "{err}");
    assert_eq!(persisted(cache.path()), None);
}

#[test]
fn without_trusted_keys_a_bundle_url_is_refused() {
    let out = Command::new(hook_bin())
        .args(["--native", "--bundle-url", &closed_port(), "--no-cache"])
        .env_remove("PALISADE_TRUSTED_KEYS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = out;
    let _ = out
        .stdin
        .take()
        .unwrap()
        .write_all(state("allowed").as_bytes());
    let out = out.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`--bundle-url` needs `--trusted-key`"),
        "{}",
        stderr(&out)
    );
}

/// What the fake server sends for one request.
#[derive(Clone)]
enum Answer {
    Bundle(Vec<u8>),
    Silence,
}

/// A test-only server: answers request `i` with `answers[i]` and records each request's
/// `If-None-Match` (`None` when absent).
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

fn fake(answers: Vec<Answer>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (answer, stream) in answers.into_iter().zip(listener.incoming()) {
            let mut stream = stream.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&request).to_lowercase();
            log.lock().unwrap().push(
                text.lines()
                    .find_map(|l| l.strip_prefix("if-none-match: "))
                    .map(str::to_string),
            );
            match answer {
                Answer::Bundle(body) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\netag: \"{}\"\r\nconnection: close\r\n\r\n",
                        body.len(),
                        digest_hex(&body).unwrap_or_default()
                    );
                    stream.write_all(head.as_bytes()).unwrap();
                    stream.write_all(&body).unwrap();
                }
                // Keep the connection open and say nothing.
                Answer::Silence => held.push(stream),
            }
        }
        std::thread::sleep(Duration::from_secs(10));
        drop(held);
    });
    Fake { addr, seen }
}

fn signed(policy: &str, seed: u8, key_id: &str) -> Vec<u8> {
    let engine = compile(
        &load(&[SourceFile::new("policy.yaml", policy.to_string())]).unwrap(),
        &Options::default(),
    )
    .unwrap();
    let signer = BundleSigner {
        key_id: key_id.into(),
        key: SigningKey::from_bytes(&[seed; 32]),
    };
    palisade_engine::encode_signed(&engine, &BundleInfo::default(), Some(&signer)).unwrap()
}

/// A bundle signed by the trusted key whose payload is not an engine: it verifies, and fails
/// when the hook loads it. The manifest starts with the payload's SHA-256 (postcard writes a
/// `[u8; 32]` as its 32 bytes), so the new payload's digest goes there and the header is
/// signed again.
fn undecodable() -> Vec<u8> {
    let good = signed(
        &std::fs::read_to_string(policy_yaml()).unwrap(),
        TRUSTED_SEED,
        "k1",
    );
    let manifest_len = u32::from_le_bytes(good[6..10].try_into().unwrap()) as usize;
    let signed_end = 10 + manifest_len;
    let payload = b"not an engine".to_vec();
    let mut out = good[..signed_end].to_vec();
    out[10..42].copy_from_slice(&Sha256::digest(&payload));
    let signature = SigningKey::from_bytes(&[TRUSTED_SEED; 32]).sign(&out);
    out.push(64);
    out.extend_from_slice(&signature.to_bytes());
    out.extend_from_slice(&payload);
    out
}

#[test]
fn a_refused_bundle_is_never_kept_nor_its_etag_sent() {
    let good = signed(
        &std::fs::read_to_string(policy_yaml()).unwrap(),
        TRUSTED_SEED,
        "k1",
    );
    // Allows the `latest` container, under the trusted key's id, signed by another key.
    let forged = signed(&policy_without_latest_rule(), 2, "k1");
    let broken = undecodable();
    let good_tag = format!("\"{}\"", digest_hex(&good).unwrap());
    assert_ne!(digest_hex(&forged), digest_hex(&good));
    let server = fake(vec![
        Answer::Bundle(good.clone()),
        Answer::Bundle(forged.clone()),
        Answer::Bundle(forged),
        Answer::Bundle(broken.clone()),
        Answer::Bundle(broken),
    ]);
    let url = format!("http://{}/v1/bundles/mesh", server.addr);
    let cache = tempfile::tempdir().unwrap();

    let (out, _) = hook(&url, cache.path(), &[], "latest");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(persisted(cache.path()).as_ref(), Some(&good));
    for (round, why) in [
        (1, "bundle signature by key `k1` does not verify"),
        (2, "bundle signature by key `k1` does not verify"),
        (3, "corrupt bundle"),
        (4, "corrupt bundle"),
    ] {
        let (out, _) = hook(&url, cache.path(), &[], "latest");
        // The persisted bundle decides: `latest` is still denied.
        assert_eq!(
            out.status.code(),
            Some(1),
            "round {round}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.contains(why), "round {round}: {err}");
        assert!(
            err.contains("deciding with the persisted bundle"),
            "round {round}: {err}"
        );
        assert_eq!(
            persisted(cache.path()).as_ref(),
            Some(&good),
            "round {round}"
        );
    }
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            None,
            Some(good_tag.clone()),
            Some(good_tag.clone()),
            Some(good_tag.clone()),
            Some(good_tag)
        ]
    );
}

#[test]
fn a_refused_bundle_with_nothing_persisted_fails_closed() {
    let forged = signed(&policy_without_latest_rule(), 2, "k1");
    let server = fake(vec![Answer::Bundle(forged)]);
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://{}/v1/bundles/mesh", server.addr);
    let (out, _) = hook(&url, cache.path(), &[], "latest");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));
    assert_eq!(persisted(cache.path()), None);
}

#[test]
fn a_server_that_never_answers_is_given_up_at_the_fetch_timeout() {
    let good = signed(
        &std::fs::read_to_string(policy_yaml()).unwrap(),
        TRUSTED_SEED,
        "k1",
    );
    let server = fake(vec![Answer::Bundle(good), Answer::Silence, Answer::Silence]);
    let url = format!("http://{}/v1/bundles/mesh", server.addr);
    let cache = tempfile::tempdir().unwrap();
    let (out, _) = hook(&url, cache.path(), &[], "latest");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (out, default_timeout) = hook(&url, cache.path(), &[], "latest");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deciding with the persisted bundle"),
        "{}",
        stderr(&out)
    );
    let (out, short_timeout) = hook(&url, cache.path(), &["--fetch-timeout-ms", "100"], "latest");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    eprintln!(
        "hook against a silent server (wall time, debug build): 500 ms timeout {default_timeout:?}, 100 ms timeout {short_timeout:?}"
    );
    assert!(default_timeout >= Duration::from_millis(500));
    assert!(default_timeout < Duration::from_secs(3));
    assert!(short_timeout >= Duration::from_millis(100));
    assert!(short_timeout < default_timeout);
}

#[test]
fn a_bundle_cache_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let good = signed(
        &std::fs::read_to_string(policy_yaml()).unwrap(),
        TRUSTED_SEED,
        "k1",
    );
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join("last-verified.plsd"), &good).unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (out, _) = hook(&closed_port(), cache.path(), &[], "allowed");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("not using the bundle cache"), "{err}");
    assert!(err.contains("writable by group or others"), "{err}");
    // The same bundle in a directory only this user writes decides.
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (out, _) = hook(&closed_port(), cache.path(), &[], "allowed");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
