//! `istio_rbac` (AuthorizationPolicies → Envoy RBAC filters, written from Istio's translator)
//! against Istio's own golden files (`testdata/istio-authz`): every case it translates must
//! give exactly the filters in the case's `want` files, in chain order, field for field. The
//! cases it does not translate are named with their reason. No Envoy is needed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use palisade_envoy_harness::cases::{corpus_dir, load_cases};
use palisade_envoy_harness::istio_rbac::{Proxy, filters};
use palisade_envoy_harness::yaml::yaml_to_json;

/// The cases not translated, with why (exact).
const NOT_TRANSLATED: &[&str] = &[
    "allow-host-before-111: not referenced by the upstream test (legacy pre-1.11 output)",
    "custom-bad-invalid-config: CUSTOM action: not translated",
    "custom-bad-multiple-providers: CUSTOM action: not translated",
    "custom-both-http-tcp: CUSTOM action: not translated",
    "custom-grpc-provider-no-namespace: CUSTOM action: not translated",
    "custom-grpc-provider: CUSTOM action: not translated",
    "custom-http-provider: CUSTOM action: not translated",
    "custom-only-http: CUSTOM action: not translated",
    "trust-domain-aliases-in-source-principal: trust-domain aliases: not translated",
    "trust-domain-multiple-aliases: trust-domain aliases: not translated",
    "trust-domain-one-alias: trust-domain aliases: not translated",
    "trust-domain-wildcard-in-principal: trust-domain aliases: not translated",
];

#[test]
fn the_translation_gives_istios_golden_filters_for_every_case_it_translates() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let dir = corpus_dir(root);
    let proxy = Proxy {
        namespace: "foo".into(),
        labels: [("app", "httpbin"), ("version", "v1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let (mut equal, mut filters_compared) = (Vec::new(), 0usize);
    let mut not_translated = Vec::new();
    let mut differences = Vec::new();
    for case in load_cases(&dir).unwrap() {
        let label = format!("{} ({})", case.name, case.kind);
        let why = if case.custom_builder {
            Some("CUSTOM action: not translated")
        } else if case.trust_domain_bundle.is_some() {
            Some("trust-domain aliases: not translated")
        } else if !case.referenced_by_test {
            Some("not referenced by the upstream test (legacy pre-1.11 output)")
        } else {
            None
        };
        if let Some(why) = why {
            not_translated.push(format!("{}: {why}", case.name));
            continue;
        }
        let input = yaml_to_json(&std::fs::read_to_string(dir.join(&case.input)).unwrap()).unwrap();
        let got = match filters(&input, &proxy, "istio-system", case.kind == "tcp") {
            Ok(f) => f,
            Err(e) => {
                differences.push(format!("{label}: {e}"));
                continue;
            }
        };
        let want: Vec<_> = case
            .want
            .iter()
            .flat_map(|w| yaml_to_json(&std::fs::read_to_string(dir.join(w)).unwrap()).unwrap())
            .collect();
        filters_compared += want.len();
        if got == want {
            equal.push(label);
        } else {
            differences.push(format!(
                "{label}:\n got  {}\n want {}",
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&want).unwrap()
            ));
        }
    }
    for d in &differences {
        println!("DIFFERENT {d}");
    }
    println!("equal: {equal:?}");
    assert!(differences.is_empty(), "{} cases differ", differences.len());
    not_translated.sort();
    assert_eq!(not_translated, NOT_TRANSLATED, "cases not translated");
    // 13 HTTP and 5 TCP cases, 20 filters (three cases have two: DENY then ALLOW).
    assert_eq!(
        (equal.len(), filters_compared),
        (18, 20),
        "cases translated equal to Istio's files, filters compared"
    );
}
