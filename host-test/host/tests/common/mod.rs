//! The plugin's `.wasm` for the tests: the one `cargo xtask test` (`cargo xtask plugin`) built,
//! else built here.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use palisade_wasm_host::ProxyWasmHost;

/// The plugin: `$PALISADE_PROXY_WASM`, else the workspace build when it is newer than every
/// source it is built from, else a build of our own (see `palisade_wasm_host::modules`).
pub fn plugin_wasm() -> Vec<u8> {
    let path = palisade_wasm_host::modules::plugin("host-test-plugin").unwrap();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The plugin compiled once per test binary.
pub fn host() -> ProxyWasmHost {
    static HOST: OnceLock<ProxyWasmHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let wasm = plugin_wasm();
        let started = std::time::Instant::now();
        let host = ProxyWasmHost::new(&wasm).unwrap();
        eprintln!(
            "compiled the plugin ({} bytes) in {:?}",
            wasm.len(),
            started.elapsed()
        );
        host
    })
    .clone()
}
