//! Path normalisation against Istio's own expectations, mode by mode.
//!
//! Anchor kind: **hand-written expected values from a second source.** The table is Istio's
//! integration test `TestNormalization` (istio/istio, `tests/integration/security/
//! normalization_test.go`): for each `meshConfig.pathNormalization` mode, the path a client
//! sends and the path the backend behind the sidecar receives — what Envoy's connection
//! manager made of it with the options Istio sets for that mode (`normalize_path`,
//! `merge_slashes`, `path_with_escaped_slashes_action`), and so what Envoy's RBAC matches
//! `paths` against. The facts are copied as data; the engine's `normalize` must give the same.
//! (The real-Envoy check of the same modes is `envoy/harness/tests/parity_extra.rs`.)

use palisade_engine::PathNormalization::{self, Base, DecodeAndMergeSlashes, MergeSlashes, None};
use palisade_engine::normalize::normalize;

/// The paths sent, in the order of Istio's table.
const SENT: [&str; 15] = [
    "/",
    "/app/",
    "/app/../admin",
    "/app",
    "/app//",
    "/app/%2f",
    "/app%2f/",
    "/xyz%30..//abc",
    "/app/%2E./admin",
    r"/app\admin",
    r"/app/\/\/\admin",
    r"/%2Fapp%5cadmin%5Cabc",
    r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
    "/app//../admin",
    "/app//../../admin",
];

/// What the backend received, per mode, in the order of [`SENT`].
const RECEIVED: [(PathNormalization, [&str; 15]); 4] = [
    (
        None,
        [
            "/",
            "/app/",
            "/app/../admin",
            "/app",
            "/app//",
            "/app/%2f",
            "/app%2f/",
            "/xyz%30..//abc",
            "/app/%2E./admin",
            r"/app\admin",
            r"/app/\/\/\admin",
            r"/%2Fapp%5cadmin%5Cabc",
            r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
            "/app//../admin",
            "/app//../../admin",
        ],
    ),
    (
        Base,
        [
            "/",
            "/app/",
            "/admin",
            "/app",
            "/app//",
            "/app/%2f",
            "/app%2f/",
            "/xyz0..//abc",
            "/admin",
            "/app/admin",
            "/app//////admin",
            r"/%2Fapp%5cadmin%5Cabc",
            "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
            "/app/admin",
            "/admin",
        ],
    ),
    (
        MergeSlashes,
        [
            "/",
            "/app/",
            "/admin",
            "/app",
            "/app/",
            "/app/%2f",
            "/app%2f/",
            "/xyz0../abc",
            "/admin",
            "/app/admin",
            "/app/admin",
            r"/%2Fapp%5cadmin%5Cabc",
            "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
            "/app/admin",
            "/admin",
        ],
    ),
    (
        DecodeAndMergeSlashes,
        [
            "/",
            "/app/",
            "/admin",
            "/app",
            "/app/",
            "/app/",
            "/app/",
            "/xyz0../abc",
            "/admin",
            "/app/admin",
            "/app/admin",
            "/app/admin/abc",
            "/app/admin/abc",
            "/app/admin",
            "/admin",
        ],
    ),
];

#[test]
fn every_mode_normalises_istios_table_as_istio_expects() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (mode, received) in RECEIVED {
        for (sent, want) in SENT.iter().zip(received) {
            let got = normalize(sent, mode);
            if got != want {
                wrong.push(format!("{mode:?} {sent}: want {want}, got {got}"));
            }
            checked += 1;
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(checked, 60);
}
