//! What the hook's tests share: the component (built here unless `$PALISADE_COMPONENT` names
//! one), a warm precompiled cache, the test policy as YAML and as a bundle.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use palisade_engine::{Options, SourceFile, compile, encode_bundle, load};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Scratch space under the target directory that outlives one test.
pub fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("palisade-oci-hook")
}

pub fn hook_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_palisade-oci-hook"))
}

/// The component: `$PALISADE_COMPONENT`, else a build of our own in a target directory of
/// its own (the outer `cargo test` may hold the workspace one's lock).
pub fn component() -> PathBuf {
    static WASM_PATH: OnceLock<PathBuf> = OnceLock::new();
    WASM_PATH
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("PALISADE_COMPONENT") {
                return PathBuf::from(p);
            }
            palisade_wasm_host::modules::build_for(
                "palisade-component",
                "wasm32-wasip2",
                "component",
                &scratch().join("component-target"),
            )
            .unwrap()
        })
        .clone()
}

/// The precompiled-component cache, warmed once (`palisade-oci-hook --precompile`).
pub fn cache_dir() -> PathBuf {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = scratch().join("cache");
            let out = Command::new(hook_bin())
                .arg("--precompile")
                .arg("--component")
                .arg(component())
                .arg("--cache-dir")
                .arg(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "precompile failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            dir
        })
        .clone()
}

pub fn policy_yaml() -> PathBuf {
    testdata().join("policy.yaml")
}

/// The test policy compiled to a bundle file.
pub fn policy_bundle() -> PathBuf {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let text = std::fs::read_to_string(policy_yaml()).unwrap();
            let set = load(&[SourceFile::new("policy.yaml", text)]).unwrap();
            let engine = compile(&set, &Options::default()).unwrap();
            let path = scratch().join("policy.bundle");
            std::fs::create_dir_all(scratch()).unwrap();
            std::fs::write(&path, encode_bundle(&engine).unwrap()).unwrap();
            path
        })
        .clone()
}

/// Whether the tests run as root (real runtimes need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Records that the running test skips, and why: on stderr, and as one `<test>\t<reason>` line
/// in `$PALISADE_SKIP_LOG` when set (`cargo xtask test` sets it and counts the test as skipped,
/// not passed, naming it in its closing summary). The test then returns.
pub fn skipped(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("PALISADE_SKIP_LOG") {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| writeln!(f, "{test}\t{reason}"));
        if let Err(e) = written {
            eprintln!("cannot record the skip in {}: {e}", log.to_string_lossy());
        }
    }
}
