//! The plugin's `.wasm` for the tests: the one `cargo xtask test` (`cargo xtask plugin`) built,
//! else built here.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use palisade_host_test::ProxyWasmHost;

const WASM: &str = "wasm32-wasip1/plugin/palisade_proxy_wasm.wasm";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The newest modification time of the files the plugin is built from.
fn newest_source() -> Option<std::time::SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<std::time::SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(Some(m));
            }
        }
    }
    let mut newest = None;
    for dir in ["engine/src", "plugin/proxy-wasm/src"] {
        walk(&root().join(dir), &mut newest);
    }
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "engine/Cargo.toml",
        "plugin/proxy-wasm/Cargo.toml",
    ] {
        if let Ok(m) = std::fs::metadata(root().join(file)).and_then(|m| m.modified()) {
            newest = newest.max(Some(m));
        }
    }
    newest
}

/// The plugin: `$PALISADE_PROXY_WASM`, else the workspace build when it is newer than every
/// source it is built from, else a build of our own (in a target directory of its own: the
/// outer `cargo test` may hold the workspace one's lock; cargo rebuilds only what changed).
pub fn plugin_wasm() -> Vec<u8> {
    if let Some(p) = std::env::var_os("PALISADE_PROXY_WASM") {
        return std::fs::read(&p).unwrap();
    }
    let built = target_dir().join(WASM);
    let fresh = std::fs::metadata(&built)
        .and_then(|m| m.modified())
        .is_ok_and(|built| newest_source().is_none_or(|source| built >= source));
    if fresh {
        return std::fs::read(&built).unwrap();
    }
    let own = target_dir().join("host-test-plugin");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = std::time::Instant::now();
    let status = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--quiet",
            "-p",
            "palisade-proxy-wasm",
            "--target",
            "wasm32-wasip1",
            "--profile",
            "plugin",
            "--target-dir",
        ])
        .arg(&own)
        .status()
        .unwrap();
    assert!(status.success(), "building the plugin failed");
    eprintln!("built the plugin in {:?}", started.elapsed());
    std::fs::read(own.join(WASM)).unwrap()
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
