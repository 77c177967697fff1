//! The NRI plugin's `.wasm` for the tests, and shared fixtures.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::OnceLock;

use palisade_nri_loader::NriLoader;
use palisade_wasm_host::modules;

pub fn root() -> PathBuf {
    modules::workspace_root()
}

/// The plugin: `$PALISADE_NRI_WASM`, else a build of our own — always through cargo, so it is
/// never stale, in a target directory of its own (the outer `cargo test` holds the
/// workspace one's lock).
pub fn plugin_wasm() -> Vec<u8> {
    let path = match std::env::var_os("PALISADE_NRI_WASM") {
        Some(p) => PathBuf::from(p),
        None => modules::build("palisade-nri", &modules::target_dir().join("nri-plugin")).unwrap(),
    };
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
