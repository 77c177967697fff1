//! The Palisade proxy-wasm plugin in Envoy: building the `.wasm` and the filter entries that
//! load it, for the plugin's smoke test, the parity suite and the benchmark.
//!
//! ```no_run
//! # use palisade_envoy_harness::{bootstrap::ListenerKind, plugin};
//! # let root = std::path::Path::new(".");
//! let wasm = plugin::build_plugin(root).unwrap();
//! let config = serde_json::json!({"policy": "...", "workload": {"namespace": "shop"}});
//! let http = ListenerKind::Http(vec![plugin::http_filter(&wasm, &config)]);
//! let tcp = ListenerKind::Tcp(vec![plugin::network_filter(&wasm, &config)]);
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::error::{Context, Error, Result};

/// The response header the plugin names the deciding policy in on an HTTP denial
/// (`<rule id>`, `none`, or `error` for a fail-closed internal error).
pub const POLICY_HEADER: &str = "x-palisade-policy";

/// The plugin's cargo package.
pub const PACKAGE: &str = "palisade-proxy-wasm";
/// The target it is built for.
pub const TARGET: &str = "wasm32-wasip1";
/// The cargo profile it is built with (root `Cargo.toml`: small, `panic = "abort"`).
pub const PROFILE: &str = "plugin";

/// The cargo target directory: `$CARGO_TARGET_DIR`, else `<repo>/target`.
pub fn target_dir(repo_root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root.join(p)
            }
        })
        .unwrap_or_else(|| repo_root.join("target"))
}

/// Where the built plugin lands.
pub fn wasm_path(repo_root: &Path) -> PathBuf {
    target_dir(repo_root)
        .join(TARGET)
        .join(PROFILE)
        .join("palisade_proxy_wasm.wasm")
}

/// Builds the plugin (`cargo build --target wasm32-wasip1 --profile plugin -p
/// palisade-proxy-wasm`; a no-op when it is up to date) and returns the `.wasm` path.
/// `$PALISADE_PLUGIN_WASM` names a prebuilt module instead.
pub fn build_plugin(repo_root: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PALISADE_PLUGIN_WASM") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error(format!(
                "PALISADE_PLUGIN_WASM={} is not a file",
                p.display()
            )))
        };
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo_root)
        .args([
            "build",
            "--quiet",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "-p",
            PACKAGE,
        ])
        .output()
        .context(|| "running cargo build for the plugin".into())?;
    if !out.status.success() {
        return Err(Error(format!(
            "building the plugin failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let wasm = wasm_path(repo_root);
    if wasm.is_file() {
        Ok(wasm)
    } else {
        Err(Error(format!(
            "built the plugin but {} is missing",
            wasm.display()
        )))
    }
}

/// The `PluginConfig` loading `wasm` with `configuration` (the plugin configuration JSON, as
/// a `StringValue`), on the V8 runtime, failing closed. Plugins with the same `vm_id` and code
/// share a VM; each filter entry is its own root context.
pub fn plugin_config(name: &str, wasm: &Path, configuration: &Value) -> Value {
    json!({
        "name": name,
        "root_id": "palisade",
        "vm_config": {
            "vm_id": "palisade",
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": wasm.display().to_string() } },
        },
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": configuration.to_string(),
        },
        "failure_policy": "FAIL_CLOSED",
    })
}

/// The `envoy.filters.http.wasm` entry for an HTTP listener's filter chain.
pub fn http_filter(wasm: &Path, configuration: &Value) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": plugin_config("palisade_http", wasm, configuration),
        },
    })
}

/// The `envoy.filters.network.wasm` entry for a TCP listener; `"protocol": "tcp"` is added to
/// the configuration when it does not say.
pub fn network_filter(wasm: &Path, configuration: &Value) -> Value {
    let mut configuration = configuration.clone();
    if let Some(o) = configuration.as_object_mut() {
        o.entry("protocol").or_insert_with(|| json!("tcp"));
    }
    json!({
        "name": "envoy.filters.network.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
            "config": plugin_config("palisade_tcp", wasm, &configuration),
        },
    })
}
