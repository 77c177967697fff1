//! `palisade serve` on loopback: edits reach long-polling clients as new revisions, invalid
//! edits are never served, `304` when nothing changed, scopes, status and metrics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use palisade_engine::bundle::{self, public_key_base64};
use palisade_engine::{BundleSigner, Options, Scope, TrustedKeys};
use palisade_serve::{Config, Handle, Recipe};

const KEY_SEED: [u8; 32] = [7; 32];

fn policy(path: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-get\n  namespace: shop\nspec:\n  action: ALLOW\n  rules:\n  - to:\n    - operation:\n        paths: [\"{path}\"]\n"
    )
}

fn start(dir: &Path, scopes: Vec<Scope>) -> Handle {
    start_with(dir, scopes, Duration::from_millis(50))
}

fn start_with(dir: &Path, scopes: Vec<Scope>, debounce: Duration) -> Handle {
    std::fs::write(dir.join("policy.yaml"), policy("/v0")).unwrap();
    palisade_serve::spawn(Config {
        recipe: Recipe {
            paths: vec![dir.to_path_buf()],
            options: Options::default(),
            signer: Some(BundleSigner {
                key_id: "test".into(),
                key: SigningKey::from_bytes(&KEY_SEED),
            }),
            scopes,
        },
        http: "127.0.0.1:0".parse().unwrap(),
        debounce,
    })
    .unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

struct Reply {
    status: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

fn get(h: &Handle, path: &str, if_none_match: Option<&str>) -> Reply {
    let mut req = agent()
        .get(format!("http://{}{path}", h.addr()))
        .header("x-palisade-client", "test-client");
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let mut r = req.call().unwrap();
    Reply {
        status: r.status().as_u16(),
        etag: r
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string()),
        body: r.body_mut().read_to_vec().unwrap(),
    }
}

fn trusted() -> TrustedKeys {
    let public = public_key_base64(&SigningKey::from_bytes(&KEY_SEED).verifying_key());
    TrustedKeys::parse([("test", public.as_str())]).unwrap()
}

/// The body verifies against the key, is for `scope`, and its revision is the ETag.
fn check_bundle(reply: &Reply, scope: &Scope) -> String {
    assert_eq!(reply.status, 200);
    let parts = bundle::parts(&reply.body).unwrap();
    parts.verify(&trusted(), scope).unwrap();
    assert_eq!(&parts.manifest.scope, scope);
    let revision = parts.manifest.revision_hex();
    assert_eq!(
        reply.etag.as_deref(),
        Some(format!("\"{revision}\"").as_str())
    );
    revision
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[test]
fn a_long_polling_client_sees_every_edit_as_a_new_signed_revision() {
    let dir = tempfile::tempdir().unwrap();
    // The debounce `palisade serve` uses by default.
    let h = start_with(dir.path(), vec![Scope::Mesh], Duration::from_millis(200));
    let mut etag = get(&h, "/v1/bundles/mesh", None).etag.unwrap();
    let mut latencies = Vec::new();
    let mut seen = vec![etag.clone()];
    for i in 1..=20 {
        let (addr, held) = (h.addr(), etag.clone());
        let poll = std::thread::spawn(move || {
            let mut r = agent()
                .get(format!("http://{addr}/v1/bundles/mesh?wait=30s"))
                .header("if-none-match", &held)
                .call()
                .unwrap();
            let at = Instant::now();
            let status = r.status().as_u16();
            let etag = r
                .headers()
                .get("etag")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            (
                at,
                Reply {
                    status,
                    etag: Some(etag),
                    body: r.body_mut().read_to_vec().unwrap(),
                },
            )
        });
        wait_until("the long poll to be waiting", || h.long_pollers() == 1);
        let written = Instant::now();
        std::fs::write(dir.path().join("policy.yaml"), policy(&format!("/v{i}"))).unwrap();
        let (answered, reply) = poll.join().unwrap();
        latencies.push(answered.duration_since(written));
        let revision = check_bundle(&reply, &Scope::Mesh);
        etag = reply.etag.unwrap();
        assert_eq!(etag, format!("\"{revision}\""));
        assert!(
            !seen.contains(&etag),
            "edit {i} gave a revision already served"
        );
        seen.push(etag.clone());
    }
    latencies.sort();
    eprintln!(
        "file write -> new ETag at a long-polling client, 20 edits, debounce 200 ms: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies[latencies.len() - 1]
    );
    assert!(latencies[latencies.len() - 1] < Duration::from_secs(5));
    let status = h.status();
    assert_eq!(status.revisions["mesh"], etag.trim_matches('"'));
    let text = String::from_utf8(get(&h, "/metrics", None).body).unwrap();
    for line in [
        "palisade_serve_revisions_total 21",
        "palisade_serve_change_to_served_seconds_count 20",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    let client = status
        .clients
        .iter()
        .find(|c| c.client == "127.0.0.1")
        .unwrap();
    assert_eq!(client.revision, etag.trim_matches('"'));
}

#[test]
fn an_invalid_edit_is_never_served_and_its_diagnostics_are_in_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), vec![Scope::Mesh]);
    let good = get(&h, "/v1/bundles/mesh", None);
    let good_etag = good.etag.clone().unwrap();
    let good_revision = check_bundle(&good, &Scope::Mesh);

    let started = Instant::now();
    let (addr, held) = (h.addr(), good_etag.clone());
    let poll = std::thread::spawn(move || {
        agent()
            .get(format!("http://{addr}/v1/bundles/mesh?wait=2s"))
            .header("if-none-match", &held)
            .call()
            .unwrap()
            .status()
            .as_u16()
    });
    wait_until("the long poll to be waiting", || h.long_pollers() == 1);
    let invalid = policy("/v1").replace("action: ALLOW", "action: MAYBE");
    std::fs::write(dir.path().join("policy.yaml"), invalid).unwrap();
    wait_until("the invalid compile", || {
        h.status().last_compile.is_some_and(|c| !c.ok)
    });
    // The long poll ends at its deadline with "not modified": nothing new was served.
    assert_eq!(poll.join().unwrap(), 304);
    assert!(started.elapsed() >= Duration::from_secs(2));

    let status = h.status();
    let last = status.last_compile.unwrap();
    assert_eq!(last.revision, None);
    assert!(
        last.diagnostics.iter().any(|d| d.message.contains("MAYBE")),
        "{:?}",
        last.diagnostics
    );
    assert_eq!(
        status.last_good_compile.unwrap().revision.as_deref(),
        Some(good_revision.as_str())
    );
    assert_eq!(status.revisions["mesh"], good_revision);
    let again = get(&h, "/v1/bundles/mesh", None);
    assert_eq!(
        again.body, good.body,
        "the last good bundle is still served"
    );

    // Fixing the file serves a new revision.
    std::fs::write(dir.path().join("policy.yaml"), policy("/v1")).unwrap();
    wait_until("the fixed compile", || {
        h.status().last_compile.is_some_and(|c| c.ok)
    });
    let fixed = get(&h, "/v1/bundles/mesh", Some(&good_etag));
    assert_ne!(check_bundle(&fixed, &Scope::Mesh), good_revision);
    let metrics = get(&h, "/metrics", None);
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("\npalisade_serve_change_to_served_seconds_count 1\n"),
        "{text}"
    );
    assert!(
        text.contains("\npalisade_serve_compile_failures_total 1\n"),
        "{text}"
    );
}

#[test]
fn the_revision_held_answers_304_and_any_other_200() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), vec![Scope::Mesh]);
    let first = get(&h, "/v1/bundles/mesh", None);
    let etag = first.etag.clone().unwrap();
    let weak = format!("W/{etag}");
    for (held, status) in [
        (etag.as_str(), 304),
        (weak.as_str(), 304),
        ("\"other\", ".to_owned().as_str(), 200),
        ("*", 304),
        ("\"0000\"", 200),
    ] {
        let r = get(&h, "/v1/bundles/mesh", Some(held));
        assert_eq!((held, r.status), (held, status));
        assert_eq!(r.etag.as_deref(), Some(etag.as_str()));
        assert_eq!(
            r.body.len(),
            if status == 200 { first.body.len() } else { 0 }
        );
    }
    // A long poll with nothing changing ends in 304 at its deadline, not before.
    let started = Instant::now();
    let r = get(&h, "/v1/bundles/mesh?wait=300ms", Some(&etag));
    assert_eq!(r.status, 304);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let text = String::from_utf8(get(&h, "/metrics", None).body).unwrap();
    for line in [
        "palisade_serve_bundles_served_total 3",
        "palisade_serve_not_modified_total 4",
        "palisade_serve_compiles_total 1",
        "palisade_serve_long_pollers 0",
        "palisade_serve_compile_seconds_count 1",
        "palisade_serve_change_to_served_seconds_count 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
}

#[test]
fn an_edit_that_changes_no_compiled_byte_keeps_the_revision_and_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), vec![Scope::Mesh]);
    let before = get(&h, "/v1/bundles/mesh", None);
    std::fs::write(
        dir.path().join("policy.yaml"),
        format!("{}# a trailing comment\n", policy("/v0")),
    )
    .unwrap();
    wait_until("the second compile", || {
        h.status()
            .last_compile
            .is_some_and(|c| c.finished_at_ms > 0)
            && String::from_utf8(get(&h, "/metrics", None).body)
                .unwrap()
                .lines()
                .any(|l| l == "palisade_serve_compiles_total 2")
    });
    let after = get(&h, "/v1/bundles/mesh", None);
    assert_eq!(after.etag, before.etag);
    assert_eq!(after.body, before.body);
}

#[test]
fn each_scope_is_served_signed_for_itself_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cart = Scope::Workload {
        namespace: "shop".into(),
        name: "cart".into(),
    };
    let h = start(
        dir.path(),
        vec![Scope::Mesh, Scope::Namespace("shop".into()), cart.clone()],
    );
    check_bundle(&get(&h, "/v1/bundles/workload:shop%2Fcart", None), &cart);
    check_bundle(&get(&h, "/v1/bundles/workload:shop/cart", None), &cart);
    check_bundle(
        &get(&h, "/v1/bundles/namespace%3Ashop", None),
        &Scope::Namespace("shop".into()),
    );
    let other = get(&h, "/v1/bundles/workload:shop/frontend", None);
    assert_eq!(other.status, 404);
    assert_eq!(
        String::from_utf8(other.body).unwrap(),
        "scope workload:shop/frontend is not served; served: mesh, namespace:shop, workload:shop/cart\n"
    );
    for bad in [
        "/v1/bundles/cluster",
        "/v1/bundles/workload:shop",
        "/v1/bundles/mesh?wait=5h",
    ] {
        assert_eq!(get(&h, bad, None).status, 400, "{bad}");
    }
    assert_eq!(get(&h, "/v1/other", None).status, 404);
    let clients = h.status().clients;
    assert_eq!(
        clients
            .iter()
            .map(|c| (c.client.as_str(), c.scope.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("test-client", "namespace:shop"),
            ("test-client", "workload:shop/cart")
        ]
    );
}

#[test]
fn with_invalid_inputs_at_start_nothing_is_served_until_they_are_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), vec![Scope::Mesh]);
    drop(h);
    std::fs::write(dir.path().join("policy.yaml"), "kind: [").unwrap();
    let h = palisade_serve::spawn(Config {
        recipe: Recipe {
            paths: vec![dir.path().to_path_buf()],
            options: Options::default(),
            signer: None,
            scopes: vec![Scope::Mesh],
        },
        http: "127.0.0.1:0".parse().unwrap(),
        debounce: Duration::from_millis(50),
    })
    .unwrap();
    let r = get(&h, "/v1/bundles/mesh", None);
    assert_eq!(r.status, 503);
    assert!(h.status().revisions.is_empty());
    std::fs::write(dir.path().join("policy.yaml"), policy("/v0")).unwrap();
    let r = get(&h, "/v1/bundles/mesh?wait=20s", None);
    assert_eq!(r.status, 200);
    let parts = bundle::parts(&r.body).unwrap();
    assert_eq!(parts.manifest.key_id, None);
}
