//! Istio's golden RBAC filters in a real Envoy versus `palisade-engine`, and versus the Palisade
//! proxy-wasm plugin running the case's input policy on a second set of listeners in the same
//! Envoy, on requests generated from each case's input policy. Installs Envoy into
//! `<repo>/.venv` when missing and builds the plugin.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Instant;

use palisade_envoy_harness::bootstrap::EchoServer;
use palisade_envoy_harness::cases::{corpus_dir, load_cases, skip_reason};
use palisade_envoy_harness::certs::Pki;
use palisade_envoy_harness::compare::{CaseReport, Harness, Oracle};
use palisade_envoy_harness::engine::EngineOracle;
use palisade_envoy_harness::envoy::find_or_install_envoy;
use palisade_envoy_harness::plugin::build_plugin;

/// The requests generated from the 22 cases run (`generate::generate` on each case's input
/// policy; the per-case table the test prints), every one answered allow or deny by Envoy and
/// compared. Exact: a probe that stops being sent, or that Envoy stops answering with a
/// verdict, changes it. When the generator changes (the gateway, reqauthn and custom work
/// add probes), update it from the table's `sent` column.
const COMPARED: usize = 2360;
/// Of [`COMPARED`], those Envoy allowed and denied.
const ALLOWED_DENIED: (usize, usize) = (190, 2170);
/// Compared requests carrying a JWT (`requestPrincipals`, `request.auth.*`).
const WITH_TOKEN: usize = 1502;
/// Requests whose verdict the JWT decided (the engine's verdict flips without it).
/// In the golden corpus only `multiple-policies` (policy `httpbin-6`, `requestPrincipals:
/// [requestPrincipals1, requestPrincipals2]`) has a rule a token alone can satisfy: the other
/// JWT rules (`allow-full-rule` rule 1, `single-policy`) also need `principals` together with
/// `notPrincipals: ["*"]` (never both), or methods/paths that cannot be sent, or peer addresses
/// outside loopback. So exactly its two matching tokens can flip a verdict.
const TOKEN_DECISIVE: usize = 2;
/// Requests Envoy answered with neither allow nor deny, by case and probe, with the answer:
/// none. Any such answer fails the test until it is listed here with its reason.
const NOT_COMPARABLE: &[&str] = &[];

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn golden_rbac_filters_in_envoy_agree_with_the_engine() {
    let started = Instant::now();
    let envoy = find_or_install_envoy(repo_root()).unwrap();
    let wasm = build_plugin(repo_root()).unwrap();
    let corpus = corpus_dir(repo_root());
    let cases = load_cases(&corpus).unwrap();
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(work.path()).unwrap();
    let echo = EchoServer::start().unwrap();
    let harness = Harness {
        envoy: &envoy,
        corpus: &corpus,
        work: work.path(),
        pki: &pki,
        echo_port: echo.port,
        plugin: Some(&wasm),
    };
    let oracle: &dyn Oracle = &EngineOracle;

    let mut reports: Vec<CaseReport> = Vec::new();
    let mut skipped = Vec::new();
    let mut case_errors = Vec::new();
    for case in &cases {
        if let Some(why) = skip_reason(case) {
            skipped.push(format!("{} ({}): {why}", case.name, case.kind));
            continue;
        }
        match harness.run_case(case, oracle) {
            Ok(r) => reports.push(r),
            Err(e) => case_errors.push(format!("{} ({}): {e}", case.name, case.kind)),
        }
    }

    println!("\nskipped cases:");
    for s in &skipped {
        println!("  {s}");
    }
    println!(
        "\n{:<42} {:>5} {:>8} {:>6} {:>5} {:>6} {:>5} {:>5} {:>6}",
        "case", "sent", "compared", "allow", "deny", "n/c", "diffs", "jwt", "jwt-d"
    );
    for r in &reports {
        println!(
            "{:<42} {:>5} {:>8} {:>6} {:>5} {:>6} {:>5} {:>5} {:>6}",
            r.name,
            r.sent,
            r.compared,
            r.allowed,
            r.denied,
            r.not_comparable.len(),
            r.differences.len(),
            r.with_token,
            r.token_decisive
        );
    }
    println!(
        "(jwt: compared requests carrying a token; jwt-d: those whose verdict the token decided)"
    );
    println!("\nattributes not driven (not varied), per case:");
    for r in &reports {
        for u in &r.undrivable {
            println!("  {}: {u}", r.name);
        }
    }
    println!("\nrequests Envoy answered with neither allow nor deny (not compared):");
    for r in &reports {
        for n in &r.not_comparable {
            println!("  {}: {n}", r.name);
        }
    }
    let rejected: Vec<_> = reports
        .iter()
        .flat_map(|r| r.token_rejected.iter().map(move |t| (&r.name, t)))
        .collect();
    println!("\ntokens Envoy's jwt_authn rejected ({}):", rejected.len());
    for (case, t) in &rejected {
        println!("  {case}: {t}");
    }
    let diffs: Vec<_> = reports.iter().flat_map(|r| r.differences.iter()).collect();
    println!("\ndifferences ({}):", diffs.len());
    for d in &diffs {
        println!(
            "  [{}] {}\n      envoy: {}\n      engine: {}",
            d.case, d.request, d.envoy, d.engine
        );
    }
    println!(
        "\nparity: Envoy RBAC (golden filters) vs the Palisade plugin (input policy), same Envoy"
    );
    println!(
        "{:<42} {:>8} {:>6} {:>5} {:>11}",
        "case", "requests", "allow", "deny", "differences"
    );
    for r in &reports {
        println!(
            "{:<42} {:>8} {:>6} {:>5} {:>11}",
            r.name,
            r.plugin_compared,
            r.plugin_allowed,
            r.plugin_denied,
            r.plugin_differences.len()
        );
    }
    let parity: Vec<_> = reports
        .iter()
        .flat_map(|r| r.plugin_differences.iter())
        .collect();
    println!("\nparity differences ({}):", parity.len());
    for d in &parity {
        println!(
            "  [{}] {}\n      rbac: {}\n      plugin: {}\n      engine: {}",
            d.case, d.request, d.rbac, d.plugin, d.engine
        );
    }
    let plugin_compared: usize = reports.iter().map(|r| r.plugin_compared).sum();
    println!(
        "parity: {} cases, {plugin_compared} requests compared, {} differences",
        reports.len(),
        parity.len()
    );

    println!("\ncases that could not be run ({}):", case_errors.len());
    for e in &case_errors {
        println!("  {e}");
    }
    let compared: usize = reports.iter().map(|r| r.compared).sum();
    println!(
        "\n{} cases, {compared} requests compared, {} differences, {:.1}s",
        reports.len(),
        diffs.len(),
        started.elapsed().as_secs_f64()
    );
    let not_comparable: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.not_comparable
                .iter()
                .map(move |n| format!("{}: {n}", r.name))
        })
        .collect();
    assert_eq!(
        not_comparable, NOT_COMPARABLE,
        "requests Envoy answered with neither allow nor deny"
    );
    // 30 cases in cases.json: 7 CUSTOM ones and `allow-host-before-111` skipped (each named
    // with its reason above), 22 run.
    assert_eq!(
        (skipped.len(), reports.len()),
        (8, 22),
        "cases skipped and run"
    );
    let sent: usize = reports.iter().map(|r| r.sent).sum();
    assert_eq!(compared, COMPARED, "requests compared ({sent} sent)");
    let allowed: usize = reports.iter().map(|r| r.allowed).sum();
    let denied: usize = reports.iter().map(|r| r.denied).sum();
    assert_eq!(
        (allowed, denied),
        ALLOWED_DENIED,
        "Envoy's verdicts: (allowed, denied)"
    );
    let with_token: usize = reports.iter().map(|r| r.with_token).sum();
    let token_decisive: usize = reports.iter().map(|r| r.token_decisive).sum();
    println!("{with_token} requests with a JWT, {token_decisive} decided by it");
    assert_eq!(
        (with_token, token_decisive),
        (WITH_TOKEN, TOKEN_DECISIVE),
        "requests with a JWT, and those it decided"
    );
    assert!(
        rejected.is_empty(),
        "Envoy rejected {} generated tokens",
        rejected.len()
    );
    assert!(
        case_errors.is_empty(),
        "{} cases could not be run",
        case_errors.len()
    );
    assert!(
        diffs.is_empty(),
        "{} differences between Envoy and the engine",
        diffs.len()
    );
    assert_eq!(
        plugin_compared, compared,
        "the plugin must answer every request the RBAC listener answered"
    );
    assert!(
        parity.is_empty(),
        "{} differences between Envoy's RBAC and the plugin",
        parity.len()
    );
}
