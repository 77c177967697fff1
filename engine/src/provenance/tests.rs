//! DSSE, in-toto Statement v1 and SLSA provenance v1, checked against the specifications'
//! published examples, and the rule's refusals by name.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use super::*;

const DIGEST: &str = "sha256:4b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";
const OTHER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
const BUILDER: &str = "https://ci.example.com/builders/shop@v1";
const REPO: &str = "https://git.example.com/shop/cart";
const COMMIT: &str = "c27d339ee6075c1f744c5d4b200f7901aad2c369";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn trusted(id: &str, n: u8) -> ProvenanceKey {
    ProvenanceKey {
        key_id: id.into(),
        public_key: key(n).verifying_key().to_bytes(),
    }
}

fn spec(digest: &str, builder: &str, repo: &str) -> StatementSpec {
    StatementSpec {
        name: "registry.example.com/shop/cart".into(),
        digest: digest.into(),
        builder: builder.into(),
        build_type: ATTEST_BUILD_TYPE.into(),
        repository: repo.into(),
        git_ref: "refs/heads/main".into(),
        revision: COMMIT.into(),
    }
}

fn statement(digest: &str, builder: &str, repo: &str) -> Vec<u8> {
    spec(digest, builder, repo).to_json().unwrap()
}

fn envelope(body: &[u8], id: &str, n: u8) -> String {
    serde_json::to_string(&Envelope::sign(PAYLOAD_TYPE, body, id, &key(n))).unwrap()
}

fn rule() -> ProvenanceRule {
    ProvenanceRule {
        builders: vec![BUILDER.into()],
        sources: vec![REPO.into()],
        keys: vec![trusted("ci", 1)],
    }
}

/// An envelope whose signature is over `signed` rather than the PAE.
fn signed_over(payload_type: &str, body: &[u8], signed: &[u8], id: &str, n: u8) -> String {
    serde_json::to_string(&Envelope {
        payload: BASE64.encode(body),
        payload_type: payload_type.into(),
        signatures: vec![EnvelopeSignature {
            keyid: id.into(),
            sig: BASE64.encode(key(n).sign(signed).to_bytes()),
        }],
    })
    .unwrap()
}

// ---- DSSE ----

#[test]
fn pae_equals_the_dsse_specifications_test_vector() {
    // secure-systems-lab/dsse, protocol.md (v1.0.0), "Test Vectors".
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}

#[test]
fn pae_counts_bytes_not_characters() {
    assert_eq!(
        pae("t", "é".as_bytes()),
        "DSSEv1 1 t 2 é".as_bytes().to_vec()
    );
}

#[test]
fn pae_lengths_keep_type_and_body_apart_when_their_concatenation_is_equal() {
    // "x 1 y" + "z" and "x" + "y 1 z" read alike without the lengths.
    assert_eq!(pae("x 1 y", b"z"), b"DSSEv1 5 x 1 y 1 z".to_vec());
    assert_eq!(pae("x", b"y 1 z"), b"DSSEv1 1 x 5 y 1 z".to_vec());
}

#[test]
fn the_dsse_specifications_published_envelope_is_read() {
    // secure-systems-lab/dsse, protocol.md: the test vector's envelope (ECDSA P-256, so it
    // is read here, not verified: no ed25519 key signs it).
    let text = r#"{"payload": "aGVsbG8gd29ybGQ=",
 "payloadType": "http://example.com/HelloWorld",
 "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="}]}"#;
    let e = Envelope::from_json(text).unwrap();
    assert_eq!(e.body().unwrap(), b"hello world".to_vec());
    assert_eq!(e.payload_type, "http://example.com/HelloWorld");
    assert_eq!(e.signatures[0].keyid, "");
    assert_eq!(decode_base64(&e.signatures[0].sig).unwrap().len(), 64);
    assert_eq!(
        e.verify(&[trusted("ci", 1)]),
        Err(ProvenanceError::Unsigned(
            "signature 0 verifies with no trusted key".into()
        ))
    );
}

#[test]
fn an_envelope_signed_by_securesystemslib_verifies_here() {
    // testdata/sslib.py: securesystemslib 1.6.0's DSSE (the DSSE authors' library) signed this
    // with the ed25519 key of seed [3; 32]; the same script verified an envelope `palisade
    // attest` wrote (examples/shop/provenance/shop-cart.intoto.json) the other way round.
    let text = include_str!("testdata/sslib-envelope.json");
    let rule = ProvenanceRule {
        builders: vec!["https://ci.example.com/builders/container@v1".into()],
        sources: vec!["https://git.example.com/shop/cart".into()],
        keys: vec![trusted("sslib", 3)],
    };
    let digest = "sha256:c9cab907477e6ee1932739c11844d691a51649eaada0d1e219fde566ec790855";
    let a = rule.check_envelope(digest, text).unwrap();
    assert_eq!(a.key_ids, vec!["sslib".to_string()]);
    assert_eq!(
        a.provenance.source.revision,
        "8e2d4f6a0c1b3e5d7f9a2c4e6b8d0f1a3c5e7b92"
    );
    // One byte of the payload changed breaks it.
    let tampered = text.replacen("eyJfdHlwZSI6", "eyJfdHlwZSI7", 1);
    assert_ne!(tampered, text);
    assert_eq!(
        rule.check_envelope(digest, &tampered),
        Err(ProvenanceError::Unsigned(
            "signature 0 by key `sslib` does not verify".into()
        ))
    );
}

#[test]
fn a_signed_envelope_verifies_and_names_its_key() {
    let body = statement(DIGEST, BUILDER, REPO);
    let e = Envelope::from_json(&envelope(&body, "ci", 1)).unwrap();
    let v = e.verify(&[trusted("old", 2), trusted("ci", 1)]).unwrap();
    assert_eq!(v.body, body);
    assert_eq!(v.key_ids, vec!["ci".to_string()]);
}

#[test]
fn url_safe_and_unpadded_base64_are_accepted_as_dsse_requires() {
    let body = b"{\"x\":\"??>>\"}";
    let sig = key(1).sign(&pae(PAYLOAD_TYPE, body)).to_bytes();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let e = Envelope {
        payload: url.encode(body),
        payload_type: PAYLOAD_TYPE.into(),
        signatures: vec![EnvelopeSignature {
            keyid: "ci".into(),
            sig: url.encode(sig),
        }],
    };
    assert!(e.payload.contains('_') || e.payload.contains('-'));
    assert_eq!(e.verify(&[trusted("ci", 1)]).unwrap().body, body.to_vec());
}

#[test]
fn a_payload_type_swapped_after_signing_breaks_the_signature() {
    let body = statement(DIGEST, BUILDER, REPO);
    // Signed as `application/json`, relabelled as in-toto: PAE binds the type.
    let text = signed_over(
        PAYLOAD_TYPE,
        &body,
        &pae("application/json", &body),
        "ci",
        1,
    );
    assert_eq!(
        rule().check_envelope(DIGEST, &text),
        Err(ProvenanceError::Unsigned(
            "signature 0 by key `ci` does not verify".into()
        ))
    );
}

#[test]
fn a_validly_signed_envelope_of_another_payload_type_is_refused_after_the_signature() {
    let body = statement(DIGEST, BUILDER, REPO);
    let text =
        serde_json::to_string(&Envelope::sign("application/json", &body, "ci", &key(1))).unwrap();
    assert_eq!(
        rule().check_envelope(DIGEST, &text),
        Err(ProvenanceError::PayloadType("application/json".into()))
    );
}

#[test]
fn a_signature_over_the_raw_payload_instead_of_pae_is_refused() {
    let body = statement(DIGEST, BUILDER, REPO);
    let text = signed_over(PAYLOAD_TYPE, &body, &body, "ci", 1);
    assert_eq!(
        rule().check_envelope(DIGEST, &text),
        Err(ProvenanceError::Unsigned(
            "signature 0 by key `ci` does not verify".into()
        ))
    );
}

#[test]
fn pae_without_lengths_or_with_a_leading_zero_length_is_refused() {
    let body = statement(DIGEST, BUILDER, REPO);
    let mut naive = format!("DSSEv1 {PAYLOAD_TYPE} ").into_bytes();
    naive.extend_from_slice(&body);
    let mut zero = format!("DSSEv1 028 {PAYLOAD_TYPE} {} ", body.len()).into_bytes();
    zero.extend_from_slice(&body);
    for signed in [naive, zero] {
        let text = signed_over(PAYLOAD_TYPE, &body, &signed, "ci", 1);
        assert_eq!(
            rule().check_envelope(DIGEST, &text),
            Err(ProvenanceError::Unsigned(
                "signature 0 by key `ci` does not verify".into()
            ))
        );
    }
}

#[test]
fn two_signatures_one_bad_verify_by_the_good_one_as_dsse_says() {
    let body = statement(DIGEST, BUILDER, REPO);
    let mut e = Envelope::sign(PAYLOAD_TYPE, &body, "ci", &key(1));
    // A second signature by key 3 claiming to be the trusted `old`.
    let forged = key(3).sign(&pae(PAYLOAD_TYPE, &body)).to_bytes();
    e.signatures.insert(
        0,
        EnvelopeSignature {
            keyid: "old".into(),
            sig: BASE64.encode(forged),
        },
    );
    let keys = [trusted("old", 2), trusted("ci", 1)];
    assert_eq!(e.verify(&keys).unwrap().key_ids, vec!["ci".to_string()]);
    // The bad one alone verifies nothing.
    e.signatures.truncate(1);
    assert_eq!(
        e.verify(&keys),
        Err(ProvenanceError::Unsigned(
            "signature 0 by key `old` does not verify".into()
        ))
    );
}

#[test]
fn a_key_id_naming_a_trusted_key_does_not_lend_its_trust_to_another_key() {
    // Signed by key 2, labelled with the trusted id `ci` (key 1).
    let text = envelope(&statement(DIGEST, BUILDER, REPO), "ci", 2);
    assert_eq!(
        rule().check_envelope(DIGEST, &text),
        Err(ProvenanceError::Unsigned(
            "signature 0 by key `ci` does not verify".into()
        ))
    );
    // Signed by key 2 under its own, untrusted, id.
    let text = envelope(&statement(DIGEST, BUILDER, REPO), "intruder", 2);
    assert_eq!(
        rule().check_envelope(DIGEST, &text),
        Err(ProvenanceError::Unsigned(
            "signature 0 names key `intruder`, which is not trusted".into()
        ))
    );
}

#[test]
fn a_signature_without_a_key_id_is_tried_against_every_trusted_key() {
    let text = envelope(&statement(DIGEST, BUILDER, REPO), "", 1);
    let a = rule().check_envelope(DIGEST, &text).unwrap();
    assert_eq!(a.key_ids, vec!["ci".to_string()]);
}

#[test]
fn an_envelope_without_signatures_or_with_a_short_signature_is_refused() {
    let body = statement(DIGEST, BUILDER, REPO);
    let mut e = Envelope::sign(PAYLOAD_TYPE, &body, "ci", &key(1));
    e.signatures[0].sig = BASE64.encode([7u8; 63]);
    assert_eq!(
        e.verify(&rule().keys),
        Err(ProvenanceError::Unsigned(
            "signature 0 has 63 bytes, not 64".into()
        ))
    );
    e.signatures.clear();
    assert_eq!(
        e.verify(&rule().keys),
        Err(ProvenanceError::Unsigned(
            "the envelope has no signatures".into()
        ))
    );
}

#[test]
fn an_envelope_with_unknown_shape_is_not_an_envelope() {
    assert_eq!(
        Envelope::from_json(r#"{"payload": "e30=", "signatures": []}"#),
        Err(ProvenanceError::Envelope(
            "missing field `payloadType` at line 1 column 37".into()
        ))
    );
}

// ---- in-toto and SLSA ----

#[test]
fn the_statement_attest_writes_reads_back_exactly() {
    let p = parse_statement(&statement(DIGEST, BUILDER, REPO)).unwrap();
    assert_eq!(
        p,
        Provenance {
            subjects: vec![Subject {
                name: "registry.example.com/shop/cart".into(),
                sha256: Some(DIGEST.trim_start_matches("sha256:").into()),
            }],
            builder: BUILDER.into(),
            build_type: ATTEST_BUILD_TYPE.into(),
            source: Source {
                repository: REPO.into(),
                git_ref: Some("refs/heads/main".into()),
                revision: COMMIT.into(),
            },
        }
    );
}

/// slsa-framework/github-actions-buildtypes, `workflow/v1/example.json`: the published
/// complete example of the GitHub Actions workflow build type (predicateType as written
/// there, `https://slsa.dev/provenance/v1?draft`).
const GITHUB_WORKFLOW_EXAMPLE: &str = r#"{
  "_type": "https://in-toto.io/Statement/v1",
  "predicateType": "https://slsa.dev/provenance/v1?draft",
  "predicate": {
    "buildDefinition": {
      "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1?draft",
      "externalParameters": {
        "inputs": {"build_id": 123456768, "deploy_target": "deployment_sys_1a", "perform_deploy": "true"},
        "vars": {"MASCOT": "Mona"},
        "workflow": {"ref": "refs/heads/main", "repository": "https://github.com/octocat/hello-world", "path": ".github/workflow/release.yml"}
      },
      "systemParameters": {"github": {"actor_id": "1234567", "event_name": "workflow_dispatch"}},
      "resolvedDependencies": [
        {"uri": "git+https://github.com/octocat/hello-world@refs/heads/main", "digest": {"gitCommit": "c27d339ee6075c1f744c5d4b200f7901aad2c369"}},
        {"uri": "https://github.com/actions/virtual-environments/releases/tag/ubuntu20/20220515.1"}
      ]
    },
    "runDetails": {
      "builder": {"id": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/builder_go_slsa3.yml@refs/tags/v0.0.1"},
      "metadata": {"invocationId": "https://github.com/octocat/hello-world/actions/runs/1536140711/attempts/1", "startedOn": "2023-01-01T12:34:56Z"}
    }
  },
  "subject": [{"name": "_", "digest": {"sha256": "fe4fe40ac7250263c5dbe1cf3138912f3f416140aa248637a60d65fe22c47da4"}}]
}"#;

#[test]
fn the_published_github_workflow_example_is_read_once_its_predicate_type_is_final() {
    assert_eq!(
        parse_statement(GITHUB_WORKFLOW_EXAMPLE.as_bytes()),
        Err(ProvenanceError::Statement(
            "`predicateType` is `https://slsa.dev/provenance/v1?draft`, not `https://slsa.dev/provenance/v1`".into()
        ))
    );
    let final_v1 = GITHUB_WORKFLOW_EXAMPLE.replace(
        "\"https://slsa.dev/provenance/v1?draft\"",
        "\"https://slsa.dev/provenance/v1\"",
    );
    let p = parse_statement(final_v1.as_bytes()).unwrap();
    assert_eq!(
        p.builder,
        "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/builder_go_slsa3.yml@refs/tags/v0.0.1"
    );
    assert_eq!(
        p.source,
        Source {
            repository: "https://github.com/octocat/hello-world".into(),
            git_ref: Some("refs/heads/main".into()),
            revision: "c27d339ee6075c1f744c5d4b200f7901aad2c369".into(),
        }
    );
    assert_eq!(
        p.subjects[0].sha256.as_deref(),
        Some("fe4fe40ac7250263c5dbe1cf3138912f3f416140aa248637a60d65fe22c47da4")
    );
}

#[test]
fn the_slsa_specifications_parameter_example_gives_the_source() {
    // slsa-framework/slsa, docs/spec/v1.0/provenance.md, BuildDefinition: the example of
    // `externalParameters` and the `resolvedDependencies` entry they resolve to.
    let text = r#"{"_type": "https://in-toto.io/Statement/v1",
      "subject": [{"name": "app", "digest": {"sha256": "fe4fe40ac7250263c5dbe1cf3138912f3f416140aa248637a60d65fe22c47da4"}}],
      "predicateType": "https://slsa.dev/provenance/v1",
      "predicate": {"buildDefinition": {"buildType": "https://example.com/build/v1",
        "externalParameters": {"repository": "https://github.com/octocat/hello-world", "ref": "refs/heads/main"},
        "resolvedDependencies": [{"uri": "git+https://github.com/octocat/hello-world@refs/heads/main",
                                  "digest": {"gitCommit": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"}}]},
        "runDetails": {"builder": {"id": "https://example.com/builder"}}}}"#;
    let p = parse_statement(text.as_bytes()).unwrap();
    assert_eq!(
        p.source.to_string(),
        "https://github.com/octocat/hello-world@refs/heads/main"
    );
    assert_eq!(
        p.source.revision,
        "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"
    );
}

fn with(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&statement(DIGEST, BUILDER, REPO)).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn statements_that_are_not_in_toto_v1_slsa_v1_are_refused_by_name() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "an in-toto v0.1 statement",
            with(|v| v["_type"] = "https://in-toto.io/Statement/v0.1".into()),
            "`_type` is `https://in-toto.io/Statement/v0.1`, not `https://in-toto.io/Statement/v1`",
        ),
        (
            "a SLSA v0.2 predicate",
            with(|v| v["predicateType"] = "https://slsa.dev/provenance/v0.2".into()),
            "`predicateType` is `https://slsa.dev/provenance/v0.2`, not `https://slsa.dev/provenance/v1`",
        ),
        (
            "no subject",
            with(|v| v["subject"] = serde_json::json!([])),
            "`subject` is empty",
        ),
        (
            "a subject without a digest",
            with(|v| v["subject"] = serde_json::json!([{"name": "x"}])),
            "`subject[0]` has no digest",
        ),
        (
            "an upper-case subject digest",
            with(|v| {
                v["subject"][0]["digest"]["sha256"] =
                    DIGEST.trim_start_matches("sha256:").to_uppercase().into()
            }),
            "`subject[0].digest.sha256` `4B1C2D3E4F5A6B7C8D9E0F1A2B3C4D5E6F7A8B9C0D1E2F3A4B5C6D7E8F9A0B1C` is not 64 lowercase hex digits",
        ),
        (
            "an empty builder id",
            with(|v| v["predicate"]["runDetails"]["builder"]["id"] = "".into()),
            "`runDetails.builder.id` is empty",
        ),
        (
            "no repository",
            with(|v| {
                v["predicate"]["buildDefinition"]["externalParameters"] = serde_json::json!({})
            }),
            "no source: `buildDefinition.externalParameters` has no `repository`",
        ),
        (
            "no revision for the source",
            with(|v| {
                v["predicate"]["buildDefinition"]["resolvedDependencies"] = serde_json::json!([])
            }),
            "no revision: `resolvedDependencies` has no `git+https://git.example.com/shop/cart@refs/heads/main` with a `gitCommit`",
        ),
        (
            "two commits for the source",
            with(|v| {
                let deps = &mut v["predicate"]["buildDefinition"]["resolvedDependencies"];
                let mut second = deps[0].clone();
                second["digest"]["gitCommit"] = "0".repeat(40).into();
                deps.as_array_mut().unwrap().push(second);
            }),
            "`git+https://git.example.com/shop/cart@refs/heads/main` resolved to two commits",
        ),
        (
            "a workflow naming another source than the top-level parameters",
            with(
                |v| v["predicate"]["buildDefinition"]["externalParameters"]["workflow"] = serde_json::json!({"repository": "https://git.example.com/evil", "ref": "refs/heads/main"}),
            ),
            "`externalParameters` and `externalParameters.workflow` name different sources",
        ),
    ];
    for (name, body, want) in cases {
        assert_eq!(
            parse_statement(&body),
            Err(ProvenanceError::Statement(want.into())),
            "{name}"
        );
    }
}

#[test]
fn duplicate_keys_are_refused_where_readers_would_disagree() {
    let text = String::from_utf8(statement(DIGEST, BUILDER, REPO)).unwrap();
    let hex = DIGEST.trim_start_matches("sha256:");
    let twice = text.replace(
        &format!("{{\"sha256\":\"{hex}\"}}"),
        &format!("{{\"sha256\":\"{}\",\"sha256\":\"{hex}\"}}", "0".repeat(64)),
    );
    assert_ne!(twice, text);
    let e = parse_statement(twice.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("digest algorithm `sha256` given twice"), "{e}");
    let type_twice = text.replacen(
        "\"_type\":",
        "\"_type\":\"https://in-toto.io/Statement/v1\",\"_type\":",
        1,
    );
    let e = parse_statement(type_twice.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate field `_type`"), "{e}");
}

// ---- the rule ----

#[test]
fn a_statement_from_the_allowed_builder_and_source_lets_the_image_run() {
    let text = envelope(&statement(DIGEST, BUILDER, REPO), "ci", 1);
    let a = rule()
        .check(DIGEST, [("cart.intoto.json", text.as_str())])
        .unwrap();
    assert_eq!(a.provenance.builder, BUILDER);
    assert_eq!(a.provenance.source.revision, COMMIT);
    assert_eq!(a.key_ids, vec!["ci".to_string()]);
}

#[test]
fn a_statement_naming_another_digest_is_refused() {
    let text = envelope(&statement(OTHER, BUILDER, REPO), "ci", 1);
    assert_eq!(
        rule().check_envelope(DIGEST, &text),
        Err(ProvenanceError::OtherSubject {
            digest: DIGEST.into(),
            subjects: format!("`{OTHER}`"),
        })
    );
}

#[test]
fn a_subject_digest_under_another_algorithm_does_not_name_the_image() {
    let body = with(|v| {
        v["subject"][0]["digest"] =
            serde_json::json!({"sha512": DIGEST.trim_start_matches("sha256:")})
    });
    let text = envelope(&body, "ci", 1);
    assert_eq!(
        rule().check_envelope(DIGEST, &text),
        Err(ProvenanceError::OtherSubject {
            digest: DIGEST.into(),
            subjects: "`registry.example.com/shop/cart` (no sha256 digest)".into(),
        })
    );
}

#[test]
fn builder_ids_are_compared_exactly_so_a_prefix_or_a_longer_id_does_not_pass() {
    for builder in [
        "https://ci.example.com/builders/shop@v1-evil",
        "https://ci.example.com/builders/shop@v",
        "https://ci.example.com/builders/shop",
        "https://ci.example.com/builders/shop@v1/../evil",
        "HTTPS://ci.example.com/builders/shop@v1",
    ] {
        let text = envelope(&statement(DIGEST, builder, REPO), "ci", 1);
        assert_eq!(
            rule().check_envelope(DIGEST, &text),
            Err(ProvenanceError::Builder {
                builder: builder.into(),
                allowed: format!("`{BUILDER}`"),
            }),
            "{builder}"
        );
    }
}

#[test]
fn sources_are_compared_exactly_and_may_pin_the_ref() {
    for repo in [
        "https://git.example.com/shop/cart-evil",
        "https://git.example.com/shop/car",
        "https://git.example.com/shop/cart/",
    ] {
        let text = envelope(&statement(DIGEST, BUILDER, repo), "ci", 1);
        assert_eq!(
            rule().check_envelope(DIGEST, &text),
            Err(ProvenanceError::Source {
                from: format!("{repo}@refs/heads/main"),
                allowed: format!("`{REPO}`"),
            }),
            "{repo}"
        );
    }
    let pinned = ProvenanceRule {
        sources: vec![format!("{REPO}@refs/heads/release")],
        ..rule()
    };
    let text = envelope(&statement(DIGEST, BUILDER, REPO), "ci", 1);
    assert_eq!(
        pinned.check_envelope(DIGEST, &text),
        Err(ProvenanceError::Source {
            from: format!("{REPO}@refs/heads/main"),
            allowed: format!("`{REPO}@refs/heads/release`"),
        })
    );
    let main = ProvenanceRule {
        sources: vec![format!("{REPO}@refs/heads/main")],
        ..rule()
    };
    assert!(main.check_envelope(DIGEST, &text).is_ok());
}

#[test]
fn image_digests_must_be_sha256_in_lowercase_hex() {
    let text = envelope(&statement(DIGEST, BUILDER, REPO), "ci", 1);
    for digest in [
        DIGEST.to_uppercase(),
        format!("sha512:{}", DIGEST.trim_start_matches("sha256:")),
        "sha256:abc".to_string(),
    ] {
        assert_eq!(
            rule().check(&digest, [("a", text.as_str())]),
            Err(Denial {
                digest: digest.clone(),
                failures: vec![("image".into(), ProvenanceError::ImageDigest(digest.clone()))],
            })
        );
    }
}

#[test]
fn the_first_passing_envelope_wins_and_a_denial_lists_every_failure() {
    let other_builder = envelope(
        &statement(DIGEST, "https://evil.example.com/b", REPO),
        "ci",
        1,
    );
    let good = envelope(&statement(DIGEST, BUILDER, REPO), "ci", 1);
    let a = rule()
        .check(
            DIGEST,
            [
                ("evil.json", other_builder.as_str()),
                ("good.json", good.as_str()),
            ],
        )
        .unwrap();
    assert_eq!(a.provenance.builder, BUILDER);

    let other_digest = envelope(&statement(OTHER, BUILDER, REPO), "ci", 1);
    let denial = rule()
        .check(
            DIGEST,
            [
                ("evil.json", other_builder.as_str()),
                ("other.json", other_digest.as_str()),
            ],
        )
        .unwrap_err();
    assert_eq!(
        denial.to_string(),
        format!(
            "no verified provenance statement from an allowed builder and source names image `{DIGEST}`; evil.json: built by `https://evil.example.com/b`, not by an allowed builder (`{BUILDER}`); other.json: the statement names `{OTHER}`, not the image `{DIGEST}`"
        )
    );
    let none = rule().check(DIGEST, []).unwrap_err();
    assert_eq!(
        none.to_string(),
        format!("no provenance statement for image `{DIGEST}`")
    );
}

#[test]
fn attest_refuses_a_revision_that_is_not_a_commit() {
    let mut s = spec(DIGEST, BUILDER, REPO);
    s.revision = "main".into();
    assert_eq!(
        s.to_json(),
        Err(ProvenanceError::Statement(
            "revision `main` is not a git commit (40 or 64 lowercase hex digits)".into()
        ))
    );
}

// ---- the ContainerPolicy rule ----

mod container_policy {
    use super::*;
    use crate::container::{ContainerRequest, decide_container};
    use crate::{SourceFile, load};

    fn policy(keys: &str) -> String {
        format!(
            "apiVersion: palisade.dev/v1alpha1
kind: ContainerPolicy
metadata: {{name: pipeline, namespace: shop}}
spec:
  images:
    provenance:
      builders: [\"{BUILDER}\"]
      sources: [\"{REPO}\"]
      keys: {keys}
"
        )
    }

    fn ci_keys() -> String {
        format!(
            "[{{keyId: ci, publicKey: \"{}\"}}]",
            BASE64.encode(key(1).verifying_key().to_bytes())
        )
    }

    fn request(image: &str, attestations: &[(&str, String)]) -> ContainerRequest {
        let mut req: ContainerRequest = serde_json::from_value(serde_json::json!({
            "state": {"ociVersion": "1.0.2", "id": "c1", "status": "creating", "bundle": "/b",
                      "annotations": {"io.kubernetes.cri.image-name": image}},
            "config": {}
        }))
        .unwrap();
        let facts = req.host.get_or_insert_with(Default::default);
        for (name, envelope) in attestations {
            facts.attestations.push(Attestation {
                name: (*name).into(),
                envelope: envelope.clone(),
            });
        }
        req
    }

    fn decide(req: &ContainerRequest) -> Vec<(String, String)> {
        let set = load(&[SourceFile::new("p.yaml", policy(&ci_keys()))]).unwrap();
        let d = decide_container(&set.container, &set.inventory, req).unwrap();
        d.violations
            .iter()
            .map(|v| (v.control.clone(), v.message.clone()))
            .collect()
    }

    const IMAGE: &str = "registry.example.com/shop/cart";

    #[test]
    fn an_image_with_a_statement_from_the_pipeline_starts() {
        let env = envelope(&statement(DIGEST, BUILDER, REPO), "ci", 1);
        let req = request(&format!("{IMAGE}@{DIGEST}"), &[("cart.json", env)]);
        assert_eq!(decide(&req), vec![]);
    }

    #[test]
    fn an_image_without_a_statement_or_from_another_builder_is_denied_with_the_reason() {
        let image = format!("{IMAGE}@{DIGEST}");
        assert_eq!(
            decide(&request(&image, &[])),
            vec![(
                "image.provenance".to_string(),
                format!("image `{image}`: no provenance statement for image `{DIGEST}`")
            )]
        );
        let evil = envelope(
            &statement(DIGEST, "https://evil.example.com/b", REPO),
            "ci",
            1,
        );
        assert_eq!(
            decide(&request(&image, &[("evil.json", evil)])),
            vec![(
                "image.provenance".to_string(),
                format!(
                    "image `{image}`: no verified provenance statement from an allowed builder and source names image `{DIGEST}`; evil.json: built by `https://evil.example.com/b`, not by an allowed builder (`{BUILDER}`)"
                )
            )]
        );
    }

    #[test]
    fn a_tagged_image_cannot_be_matched_to_a_statement() {
        let env = envelope(&statement(DIGEST, BUILDER, REPO), "ci", 1);
        assert_eq!(
            decide(&request(&format!("{IMAGE}:1.4"), &[("cart.json", env)])),
            vec![(
                "image.provenance".to_string(),
                format!(
                    "image `{IMAGE}:1.4` has no digest, so no provenance statement can name it; pin it as `name@sha256:…`"
                )
            )]
        );
    }

    #[test]
    fn the_rule_refuses_empty_lists_and_bad_keys_when_loaded() {
        let cases = [
            ("[]", "no keys: no statement could be verified"),
            (
                "[{keyId: ci, publicKey: \"AAAA\"}]",
                "key `ci`: 3 bytes, not the 32 of an ed25519 key",
            ),
            ("[{keyId: \"\", publicKey: \"AAAA\"}]", "a key id is empty"),
        ];
        for (keys, want) in cases {
            let errors = load(&[SourceFile::new("p.yaml", policy(keys))]).unwrap_err();
            let got = errors.diagnostics[0].message.clone();
            assert_eq!(got, want, "{keys}");
        }
        let no_builders = policy(&ci_keys()).replace(&format!("[\"{BUILDER}\"]"), "[]");
        let errors = load(&[SourceFile::new("p.yaml", no_builders)]).unwrap_err();
        assert_eq!(
            errors.diagnostics[0].message,
            "no builder ids: no image could run"
        );
    }
}
