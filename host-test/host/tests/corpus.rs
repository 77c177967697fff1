//! The whole decision corpus through the proxy-wasm plugin's `.wasm` in the test host, behind
//! the same `Decider` trait as the native engine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::time::Instant;

use palisade_corpus::run;
use palisade_wasm_host::ProxyWasmDecider;

#[test]
fn the_proxy_wasm_guest_decides_every_corpus_case_as_expected() {
    let host = common::host();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testing/corpus")
        .join("cases");
    let mut decider = ProxyWasmDecider::new(host);
    let started = Instant::now();
    let report = run(&dir, &mut decider);
    println!("{report}");
    println!(
        "executed {} corpus cases through the proxy-wasm guest ({} VMs configured) in {:?}",
        report.total(),
        decider.configured(),
        started.elapsed()
    );
    assert_eq!(report.failed(), 0, "{report}");
    // Every case but those a proxy-wasm filter cannot be shown, each named with its reason
    // (`ProxyWasmDecider::cannot_express`). The corpus holds 434 cases (see
    // `testing/corpus/tests/native.rs`, which counts them per topic); 434 - 1 skipped = 433.
    assert_eq!(
        report.skipped,
        vec![
            "[netpol] a TCP port rule does not admit UDP: transport Udp: Envoy runs proxy-wasm \
             network filters on TCP only"
                .to_string()
        ],
        "{report}"
    );
    assert_eq!(report.total(), 433, "{report}");
}
