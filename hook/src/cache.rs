//! The component, precompiled once and kept on disk.
//!
//! Compiling the component with Cranelift takes far longer than a hook may spend on each
//! container start, so the first run compiles it (`Engine::precompile_component`) and writes
//! `<cache-dir>/<sha256 of the component>-<wasmtime compatibility hash>.cwasm` with the
//! SHA-256 of that file beside it (`.cwasm.sha256`); later runs check the file against that
//! hash and map it (`Component::deserialize_file`). A new component, wasmtime version or
//! engine configuration is a new key, so a stale file is never loaded.
//!
//! Loading precompiled code trusts the file to be what wasmtime wrote: the cache directory
//! must be owned by the hook's user and writable by no one else (it is created `0700`), and
//! files are written whole and renamed into place. A directory that fails those checks, or a
//! file whose hash does not match, is not used.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where the component came from on this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Mapped from a checked cache file.
    Hit,
    /// Compiled now and written to the cache.
    Compiled,
    /// Compiled now, in memory only (no usable cache directory).
    Uncached,
}

/// The default cache directory for a hook running as root.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/palisade-oci-hook";

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cache key: the component's hash and what makes precompiled code compatible (the
/// wasmtime build and its configuration).
pub fn cache_key(engine: &Engine, component: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    format!("{}-{:016x}", sha256_hex(component), h.finish())
}

/// Loads the component at `wasm`, from the cache in `cache_dir` when it holds a checked
/// copy, else compiling it (and caching it when the directory is usable).
pub fn load_component(
    engine: &Engine,
    wasm: &Path,
    cache_dir: Option<&Path>,
) -> Result<(Component, CacheStatus), String> {
    let bytes = fs::read(wasm)
        .map_err(|e| format!("cannot read the component `{}`: {e}", wasm.display()))?;
    let dir = match cache_dir.map(usable_dir) {
        Some(Ok(d)) => d,
        Some(Err(why)) => {
            eprintln!("palisade-oci-hook: warning: not caching the compiled component: {why}");
            return compile_in_memory(engine, &bytes);
        }
        None => return compile_in_memory(engine, &bytes),
    };
    let key = cache_key(engine, &bytes);
    let cwasm = dir.join(format!("{key}.cwasm"));
    let sum = dir.join(format!("{key}.cwasm.sha256"));
    if let Ok(expected) = fs::read_to_string(&sum) {
        match load_checked(engine, &cwasm, expected.trim()) {
            Ok(c) => return Ok((c, CacheStatus::Hit)),
            Err(why) => eprintln!("palisade-oci-hook: warning: recompiling: {why}"),
        }
    }
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(|e| format!("cannot compile the component `{}`: {e:#}", wasm.display()))?;
    let hash = sha256_hex(&compiled);
    if let Err(why) =
        write_atomic(&cwasm, &compiled).and_then(|()| write_atomic(&sum, hash.as_bytes()))
    {
        eprintln!("palisade-oci-hook: warning: not caching the compiled component: {why}");
        return compile_in_memory(engine, &bytes);
    }
    load_checked(engine, &cwasm, &hash).map(|c| (c, CacheStatus::Compiled))
}

fn compile_in_memory(engine: &Engine, bytes: &[u8]) -> Result<(Component, CacheStatus), String> {
    Component::new(engine, bytes)
        .map(|c| (c, CacheStatus::Uncached))
        .map_err(|e| format!("cannot compile the component: {e:#}"))
}

/// Maps a precompiled component after checking that the file hashes to `expected`.
fn load_checked(engine: &Engine, cwasm: &Path, expected: &str) -> Result<Component, String> {
    let bytes = fs::read(cwasm).map_err(|e| format!("cannot read `{}`: {e}", cwasm.display()))?;
    if sha256_hex(&bytes) != expected {
        return Err(format!(
            "`{}` does not match its recorded SHA-256",
            cwasm.display()
        ));
    }
    drop(bytes);
    // SAFETY: `deserialize_file` trusts the file to be `Engine::precompile_component`'s
    // output for a compatible engine and not to change while mapped. The file was written
    // by this hook (whole, then renamed) into a directory only this user may write
    // (`usable_dir`), its name carries the engine's compatibility hash (`cache_key`), and its
    // contents hash to what was recorded when it was written (checked just above). Files are
    // only ever replaced by rename, never modified in place, so the mapping stays stable.
    #[expect(
        unsafe_code,
        reason = "wasmtime's only API for loading precompiled code; see SAFETY"
    )]
    let component = unsafe { Component::deserialize_file(engine, cwasm) };
    component.map_err(|e| format!("cannot load `{}`: {e:#}", cwasm.display()))
}

/// Creates the cache directory (`0700`) if needed and checks that only this user can write it.
pub(crate) fn usable_dir(dir: &Path) -> Result<PathBuf, String> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    }
    let meta =
        fs::symlink_metadata(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("`{}` is not a directory", dir.display()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "`{}` is owned by uid {}, not by this user (uid {me})",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "`{}` is writable by group or others (mode {:o})",
            dir.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(dir.to_path_buf())
}

/// Writes `path` whole: a temporary file beside it, then a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_writable_directory_is_not_used() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o775))
            .map_err(|e| e.to_string())?;
        let err = usable_dir(dir.path()).err().unwrap_or_default();
        assert!(err.contains("writable by group or others"), "{err}");
        Ok(())
    }

    #[test]
    fn a_missing_directory_is_created_private() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cache = dir.path().join("a/b");
        usable_dir(&cache)?;
        let mode = fs::metadata(&cache)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        Ok(())
    }
}
