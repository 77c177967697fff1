//! The NRI plugin's `.wasm` for the tests, and shared fixtures.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use palisade_nri_loader::NriLoader;

const WASM: &str = "wasm32-wasip1/plugin/palisade_nri.wasm";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The plugin: `$PALISADE_NRI_WASM`, else a build of our own — always through cargo, so it is
/// never stale, in a target directory of its own (the outer `cargo test` holds the
/// workspace one's lock).
pub fn plugin_wasm() -> Vec<u8> {
    if let Some(p) = std::env::var_os("PALISADE_NRI_WASM") {
        return std::fs::read(&p).unwrap();
    }
    let own = target_dir().join("nri-plugin");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = std::time::Instant::now();
    let status = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--quiet",
            "-p",
            "palisade-nri",
            "--target",
            "wasm32-wasip1",
            "--profile",
            "plugin",
            "--target-dir",
        ])
        .arg(&own)
        .status()
        .unwrap();
    assert!(status.success(), "building the NRI plugin failed");
    eprintln!("built the NRI plugin in {:?}", started.elapsed());
    std::fs::read(own.join(WASM)).unwrap()
}

/// The plugin compiled once per test binary.
pub fn loader() -> &'static NriLoader {
    static LOADER: OnceLock<NriLoader> = OnceLock::new();
    LOADER.get_or_init(|| NriLoader::new(&plugin_wasm()).unwrap())
}

pub fn testdata() -> PathBuf {
    root().join("host-test/testdata/nri")
}

/// The recorded events' policy.
pub fn policy() -> String {
    std::fs::read_to_string(testdata().join("policy.yaml")).unwrap()
}
