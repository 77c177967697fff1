//! The outcome read-back of `palisade replay` ([`ReadBack::Outcome`]): what the plugin shows
//! Envoy (verdict, local reply, counters) must be exactly what the plugin crate's own mapping
//! gives for the native decision — over the whole decision corpus (dry-run results, audits,
//! NetworkPolicy, errors included) and the recorded shop traffic — and a wrong native
//! decision must not pass for the right one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};

use palisade_engine::{Options, Protocol, Request, RuleRef, SourceFile, Transport, Verdict};
use palisade_wasm_host::{
    Bound, HostSettings, ProxyWasmHost, ReadBack, Replayer,
    envoy::{hidden_peer, trusted_proxies},
    same_decision,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The plugin with the host `palisade replay` uses: calls bounded by time, not fuel.
fn timed_host() -> ProxyWasmHost {
    let settings = HostSettings {
        bound: Bound::TIME,
        ..HostSettings::default()
    };
    ProxyWasmHost::with_settings(&common::plugin_wasm(), settings).unwrap()
}

/// What a proxy-wasm filter can be shown (as `ProxyWasmDecider::cannot_express` says).
fn expressible(r: &Request) -> bool {
    r.transport == Transport::Tcp
        && !(r.protocol == Protocol::Tcp && trusted_proxies(r) > 0)
        && hidden_peer(r).is_none()
}

#[test]
fn every_corpus_case_shows_envoy_what_the_plugin_mapping_of_the_native_decision_shows() {
    let host = timed_host();
    let dir = root().join("testing/corpus/cases");
    let (mut checked, mut denied_http, mut with_shadow) = (0usize, 0usize, 0usize);
    // The cases not checked, each named: a topic whose policies do not load, a request a
    // proxy-wasm filter cannot be shown, a destination without a sidecar.
    let mut not_checked: Vec<String> = Vec::new();
    for (path, topic) in palisade_corpus::load_topics(&dir).unwrap() {
        let files = palisade_corpus::policy_files(&path, &topic).unwrap();
        let options = topic.options.clone().unwrap_or_default();
        let Ok(mut replayer) =
            Replayer::with_read_back(host.clone(), &files, &options, ReadBack::Outcome)
        else {
            not_checked.extend(
                topic
                    .cases
                    .iter()
                    .map(|c| format!("{}: the topic's policies do not load", c.name)),
            );
            continue;
        };
        for case in &topic.cases {
            let request = palisade_corpus::case_request(&topic.defaults, case).unwrap();
            if !expressible(&request) {
                not_checked.push(format!(
                    "{}: not expressible to a proxy-wasm filter",
                    case.name
                ));
                continue;
            }
            let native = replayer.decide_native(&request);
            let Ok(observed) = replayer.observe_wasm(&request) else {
                not_checked.push(format!("{}: no destination sidecar", case.name));
                continue;
            };
            let observed = observed.unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let expected = replayer.expected(&request, &native).unwrap().unwrap();
            assert_eq!(
                observed,
                expected,
                "{} ({}): {}",
                case.name,
                path.display(),
                native.explain()
            );
            assert!(!observed.counters.is_empty(), "{}: no counter", case.name);
            if observed.reply.is_some() {
                denied_http += 1;
            }
            if !native.shadow.is_empty() {
                with_shadow += 1;
            }
            checked += 1;
        }
    }
    println!(
        "{checked} corpus cases: {denied_http} HTTP denials, {with_shadow} with dry-run results"
    );
    for n in &not_checked {
        println!("not checked: {n}");
    }
    // `topic.cases` holds 422 of the corpus's 434 cases (the shop topic's 12 `caseFiles` are
    // not read here); of those, 421 are checked and 1 is named in `not_checked`. Exact, from
    // the corpus as it stands: adding a case changes them (update from the lines printed).
    assert_eq!(not_checked, NOT_CHECKED, "cases not checked");
    assert_eq!(
        (checked, denied_http, with_shadow),
        (421, 180, 16),
        "cases checked, HTTP denials among them, with dry-run results"
    );
}

/// The corpus cases the outcome read-back cannot check, with why.
const NOT_CHECKED: &[&str] =
    &["a TCP port rule does not admit UDP: not expressible to a proxy-wasm filter"];

fn shop_sources() -> Vec<SourceFile> {
    palisade_wasm_host::modules::shop_sources().unwrap()
}

fn shop_requests() -> Vec<Request> {
    let text =
        std::fs::read_to_string(root().join("examples/shop/traffic/envoy-access.jsonl")).unwrap();
    palisade_traffic::read(&text, None, false)
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.request)
        .collect()
}

/// A regression test, not an independent check: `examples/shop/traffic/envoy-access.jsonl`
/// was recorded from Envoy running Palisade's own plugin (`cargo xtask record-traffic`), and
/// the expected side is the plugin crate's `enforce::outcome_with` — the anchors written by
/// hand are in `tests/outcome_anchors.rs`.
#[test]
fn regression_the_recorded_shop_traffic_reads_back_the_same_either_way_and_a_wrong_native_decision_is_caught()
 {
    let sources = shop_sources();
    let requests = shop_requests();
    let mut outcome = Replayer::with_read_back(
        timed_host(),
        &sources,
        &Options::default(),
        ReadBack::Outcome,
    )
    .unwrap();
    let mut decision = Replayer::new(common::host(), &sources, &Options::default()).unwrap();
    let mut caught = 0;
    for r in &requests {
        let native = outcome.decide_native(r);
        let observed = outcome.observe_wasm(r).unwrap().unwrap();
        let expected = outcome.expected(r, &native).unwrap().unwrap();
        assert_eq!(observed, expected, "{r:?}");
        let full = decision.decide_wasm(r).unwrap().unwrap();
        assert!(same_decision(&full, &native), "{r:?}");
        assert_eq!(observed.verdict, full.verdict);
        if native.verdict == Verdict::Deny && r.protocol == Protocol::Http {
            let (status, details) = observed.reply.clone().unwrap();
            assert_eq!(status, 403);
            assert_eq!(details, native.envoy_details());
            assert_eq!(observed.rule(), expected.rule());
        }
        // The same verdict by another rule, or the other verdict: not what the plugin showed.
        let mut wrong = native.clone();
        match &wrong.rule {
            Some(_) => wrong.rule = None,
            None => {
                wrong.rule = Some(std::sync::Arc::new(RuleRef {
                    kind: "AuthorizationPolicy".into(),
                    namespace: "shop".into(),
                    policy: "other".into(),
                    rule: 0,
                    id: "ns[shop]-policy[other]-rule[0]".into(),
                }));
            }
        }
        let wrong_expected = outcome.expected(r, &wrong).unwrap().unwrap();
        assert_ne!(observed, wrong_expected, "a wrong rule passed: {r:?}");
        wrong = native.clone();
        wrong.verdict = match native.verdict {
            Verdict::Allow => Verdict::Deny,
            Verdict::Deny | Verdict::CustomPending => Verdict::Allow,
        };
        assert_ne!(
            observed,
            outcome.expected(r, &wrong).unwrap().unwrap(),
            "a wrong verdict passed: {r:?}"
        );
        caught += 2;
    }
    assert_eq!(caught, 2 * requests.len());
    assert_eq!(requests.len(), 42);
}
