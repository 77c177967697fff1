//! `cargo xtask bench-hook [--runs N]`: the OCI hook's process start to exit for an allowed
//! container, as a runtime runs it — the component with its precompiled cache warm, beside the
//! same check with `--native` (the engine linked into the hook, no wasm).
//!
//! Builds the hook (release) and the component (`--profile component`), compiles
//! `hook/testdata/policy.yaml` into a bundle with the `palisade` CLI, sets up a bundle
//! directory with the `config.json` recorded from runc (`hook/testdata/runc/allowed`), warms
//! the cache (`--precompile`), then runs each mode N times (after 20 warm-up runs), feeding
//! the state on stdin, and reports the median, p90 and minimum wall time. With `hyperfine`
//! installed it also runs hyperfine over the same two commands (stdin from the state file).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cargo, run as run_step};

/// The target: the hook's median start-to-exit for an allowed container.
const TARGET: Duration = Duration::from_millis(10);

/// Runs the benchmark; `args` may hold `--runs N` (default 200).
pub fn run(args: &[String], root: &Path, target_dir: &Path) -> Result<(), String> {
    let runs = match args {
        [] => 200,
        [flag, n] if flag == "--runs" => n.parse().map_err(|_| format!("bad --runs `{n}`"))?,
        _ => return Err("usage: cargo xtask bench-hook [--runs N]".into()),
    };
    run_step(
        "palisade-oci-hook (release)",
        cargo().args(["build", "--quiet", "--release", "-p", "palisade-oci-hook"]),
    )?;
    run_step(
        "palisade-component (wasm32-wasip2, profile component)",
        cargo().args([
            "build",
            "--quiet",
            "-p",
            "palisade-component",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "component",
        ]),
    )?;
    let hook = target_dir.join("release/palisade-oci-hook");
    let wasm = target_dir.join("wasm32-wasip2/component/palisade_component.wasm");
    let work = target_dir.join("bench-hook");
    let bundle_dir = work.join("bundle");
    fs::create_dir_all(&bundle_dir)
        .map_err(|e| format!("cannot create `{}`: {e}", bundle_dir.display()))?;
    // The recorded root is `rootfs` in the bundle; the hook resolves it on this host.
    fs::create_dir_all(bundle_dir.join("rootfs"))
        .map_err(|e| format!("cannot create the bundle's rootfs: {e}"))?;
    let recorded = root.join("hook/testdata/runc/allowed");
    fs::copy(recorded.join("config.json"), bundle_dir.join("config.json"))
        .map_err(|e| format!("cannot copy the recorded config.json: {e}"))?;
    let mut state: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(recorded.join("state.json"))
            .map_err(|e| format!("cannot read the recorded state: {e}"))?,
    )
    .map_err(|e| format!("recorded state: {e}"))?;
    if let Some(obj) = state.as_object_mut() {
        obj.insert("bundle".into(), bundle_dir.display().to_string().into());
    }
    let state_file = work.join("state.json");
    fs::write(&state_file, state.to_string())
        .map_err(|e| format!("cannot write the state: {e}"))?;
    let policy = work.join("policy.bundle");
    run_step(
        "policy bundle (palisade compile hook/testdata/policy.yaml)",
        cargo()
            .args(["run", "--quiet", "-p", "palisade-cli", "--", "compile"])
            .arg(root.join("hook/testdata/policy.yaml"))
            .arg("-o")
            .arg(&policy),
    )?;
    let cache = work.join("cache");
    let _ = fs::remove_dir_all(&cache);
    run_step(
        "precompile the component into the cache",
        Command::new(&hook)
            .arg("--precompile")
            .arg("--component")
            .arg(&wasm)
            .arg("--cache-dir")
            .arg(&cache),
    )?;

    let component_args: Vec<PathBuf> = [
        "--bundle".into(),
        policy.clone(),
        "--component".into(),
        wasm.clone(),
        "--cache-dir".into(),
        cache.clone(),
    ]
    .into_iter()
    .collect();
    let native_args: Vec<PathBuf> = vec!["--native".into(), "--bundle".into(), policy.clone()];
    let sizes = [
        (
            "component",
            fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0),
        ),
        (
            "hook binary",
            fs::metadata(&hook).map(|m| m.len()).unwrap_or(0),
        ),
    ];
    println!(
        "bench-hook: {runs} runs each, allowed container (runc's recorded config.json), policy bundle"
    );
    for (what, size) in sizes {
        println!("  {what}: {} KiB", size / 1024);
    }
    let mut medians = Vec::new();
    for (name, args) in [
        ("component (cached, precompiled)", &component_args),
        ("native (--native)", &native_args),
    ] {
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs + 20 {
            let stdin = fs::File::open(&state_file).map_err(|e| format!("state: {e}"))?;
            let started = Instant::now();
            let status = Command::new(&hook)
                .args(args)
                .stdin(Stdio::from(stdin))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("cannot run the hook: {e}"))?;
            let took = started.elapsed();
            if !status.success() {
                return Err(format!(
                    "the hook did not allow the container ({status}): run it by hand to see why"
                ));
            }
            if i >= 20 {
                times.push(took);
            }
        }
        times.sort();
        let at = |q: f64| {
            let i = ((times.len() as f64 - 1.0) * q).round() as usize;
            times.get(i).copied().unwrap_or_default()
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "  {name:<32} median {:6.2} ms   p90 {:6.2} ms   min {:6.2} ms",
            ms(at(0.5)),
            ms(at(0.9)),
            ms(at(0.0))
        );
        medians.push(at(0.5));
    }
    if let Some(component) = medians.first() {
        println!(
            "  target: component median under {} ms: {}",
            TARGET.as_millis(),
            if *component < TARGET {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    hyperfine(&hook, &state_file, &component_args, &native_args, runs);
    Ok(())
}

/// The same two commands under hyperfine, when it is installed (Debian's `hyperfine`), without
/// a shell (`-N`): the hook reads the state from `--state-file`.
fn hyperfine(hook: &Path, state: &Path, component: &[PathBuf], native: &[PathBuf], runs: usize) {
    let line = |args: &[PathBuf]| {
        let mut s = format!("{} --state-file {}", hook.display(), state.display());
        for a in args {
            s.push_str(&format!(" {}", a.display()));
        }
        s
    };
    let status = Command::new("hyperfine")
        .args(["-N", "--warmup", "20", "--runs", &runs.to_string()])
        .arg(line(component))
        .arg(line(native))
        .status();
    if status.is_err() {
        println!("  (hyperfine not installed: `apt-get install hyperfine` for its report too)");
    }
}
