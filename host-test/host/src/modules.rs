//! The workspace's wasm modules for tests and benchmarks: where cargo puts them, and a fresh
//! build when the one there is older than its sources; and the shop example's sources.
//!
//! Tests and benchmarks across the workspace (`host-test`, `cli`, `host-test/nri-loader`)
//! load modules built with profile `plugin`. [`fresh_module`] returns the workspace build
//! when it is newer than every source it is built from, else builds one in a target
//! directory of its own (the outer `cargo test` may hold the workspace one's lock; cargo then
//! rebuilds only what changed). Paths are the workspace's at compile time: this is test
//! tooling, not something a deployed host uses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Why a module or the shop's sources could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// cargo could not be started.
    #[error("running cargo: {0}")]
    Cargo(#[source] std::io::Error),
    /// cargo ran and failed.
    #[error("building {package} failed ({status})")]
    BuildFailed {
        /// The package built.
        package: String,
        /// cargo's exit status.
        status: std::process::ExitStatus,
    },
    /// A source file or directory cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

impl miette::Diagnostic for ModuleError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(match self {
            ModuleError::Cargo(_) => "palisade::wasm_host::cargo_not_run",
            ModuleError::BuildFailed { .. } => "palisade::wasm_host::build_failed",
            ModuleError::Read { .. } => "palisade::wasm_host::source_unreadable",
        }))
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `$CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Where a package's module is, relative to a target directory (wasm32-wasip1, profile
/// `plugin`).
pub fn module_path(package: &str) -> PathBuf {
    module_path_for(package, "wasm32-wasip1", "plugin")
}

/// Where a package's module built for `triple` with `profile` is, relative to a target
/// directory.
pub fn module_path_for(package: &str, triple: &str, profile: &str) -> PathBuf {
    Path::new(triple)
        .join(profile)
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// The newest modification time of the files under `dirs` and of `files` (paths relative to
/// the workspace root).
fn newest(dirs: &[&str], files: &[&str]) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
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
    let root = workspace_root();
    let mut out = None;
    for dir in dirs {
        walk(&root.join(dir), &mut out);
    }
    for file in files {
        if let Ok(m) = std::fs::metadata(root.join(file)).and_then(|m| m.modified()) {
            out = out.max(Some(m));
        }
    }
    out
}

/// What a module is built from: its crate's sources and the engine's, and the manifests.
fn sources_of(crate_dir: &str) -> Option<SystemTime> {
    let (src, manifest) = (
        format!("{crate_dir}/src"),
        format!("{crate_dir}/Cargo.toml"),
    );
    newest(
        &[&src, "engine/src"],
        &["Cargo.toml", "Cargo.lock", "engine/Cargo.toml", &manifest],
    )
}

/// `package`'s module (in `crate_dir`, relative to the workspace root): `$<var>` when set,
/// else the workspace build when it is newer than its sources, else a build of our own in
/// `<target>/<own>`.
pub fn fresh_module(
    var: &str,
    package: &str,
    crate_dir: &str,
    own: &str,
) -> Result<PathBuf, ModuleError> {
    if let Some(p) = std::env::var_os(var) {
        return Ok(PathBuf::from(p));
    }
    let built = target_dir().join(module_path(package));
    let fresh = std::fs::metadata(&built)
        .and_then(|m| m.modified())
        .is_ok_and(|built| sources_of(crate_dir).is_none_or(|source| built >= source));
    if fresh {
        return Ok(built);
    }
    build(package, &target_dir().join(own))
}

/// Builds `package` for wasm32-wasip1 with profile `plugin` into `target`; the module's path.
pub fn build(package: &str, target: &Path) -> Result<PathBuf, ModuleError> {
    build_for(package, "wasm32-wasip1", "plugin", target)
}

/// Builds `package` for `triple` with `profile` into `target`; the module's path.
pub fn build_for(
    package: &str,
    triple: &str,
    profile: &str,
    target: &Path,
) -> Result<PathBuf, ModuleError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = std::time::Instant::now();
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--target",
            triple,
            "--profile",
            profile,
            "--target-dir",
        ])
        .arg(target)
        .status()
        .map_err(ModuleError::Cargo)?;
    if !status.success() {
        return Err(ModuleError::BuildFailed {
            package: package.into(),
            status,
        });
    }
    eprintln!("built {package} in {:?}", started.elapsed());
    Ok(target.join(module_path_for(package, triple, profile)))
}

/// The shop example's policies and its recorded traffic's inventory (`examples/shop/`), as
/// the replay tests and benchmark load them.
pub fn shop_sources() -> Result<Vec<palisade_engine::SourceFile>, ModuleError> {
    let shop = workspace_root().join("examples/shop");
    let dir = shop.join("policies");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|source| ModuleError::Read {
            path: dir.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    paths.push(shop.join("traffic/inventory.yaml"));
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|text| palisade_engine::SourceFile::new(p.display().to_string(), text))
                .map_err(|source| ModuleError::Read {
                    path: p.clone(),
                    source,
                })
        })
        .collect()
}

/// The proxy-wasm plugin: `$PALISADE_PROXY_WASM`, the workspace build when fresh, else built
/// in `<target>/<own>`.
pub fn plugin(own: &str) -> Result<PathBuf, ModuleError> {
    fresh_module(
        "PALISADE_PROXY_WASM",
        "palisade-proxy-wasm",
        "plugin/proxy-wasm",
        own,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_named_as_cargo_names_them() {
        assert_eq!(
            module_path("palisade-proxy-wasm"),
            Path::new("wasm32-wasip1/plugin/palisade_proxy_wasm.wasm")
        );
        assert!(
            workspace_root()
                .join("host-test/host/src/modules.rs")
                .exists()
        );
        // The plugin's sources exist, so they have a modification time.
        assert!(sources_of("plugin/proxy-wasm").is_some());
    }
}
