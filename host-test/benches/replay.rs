//! `palisade replay`'s throughput: the recorded shop sample
//! (`examples/shop/traffic/envoy-access.jsonl`, real Envoy output) scaled to at least a
//! million records, decided by the native engine and by the proxy-wasm plugin's `.wasm` in the
//! wasmtime host, in one run. Run: `cargo xtask bench-replay [--records N]` (or `cargo bench
//! -p palisade-host-test --bench replay -- --records N`).
//!
//! Scaling repeats the sample with varied addresses: each copy gets its own source port, and
//! the records that came through `x-forwarded-for` their own original client in
//! 203.0.113.0/24 — nothing any shop policy decides on, so every copy must be decided as its
//! original was (checked: the allow count scales exactly, and a prefix is compared decision by
//! decision, wasm against native). Both sides are timed over the same pre-built records
//! (parsing is timed separately); the wasm side includes everything `palisade replay` does per
//! record to run the plugin: the properties and headers the plugin reads through the ABI, its
//! decision, its local reply and counters, and reading them back. By default that is the
//! outcome read-back of `palisade replay` (host at `warn`, Envoy's default: the plugin formats
//! no log line); `--read-back decision` times the full decision read back from the plugin's
//! log line instead (host at `trace`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use palisade_engine::{Options, Request, SourceFile, Verdict};
use palisade_host_test::{Bound, HostSettings, ProxyWasmHost, ReadBack, Replayer, same_decision};

const WASM: &str = "wasm32-wasip1/plugin/palisade_proxy_wasm.wasm";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn plugin() -> PathBuf {
    std::env::var_os("PALISADE_PROXY_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root().join("target"), PathBuf::from)
                .join(WASM)
        })
}

fn sources() -> Vec<SourceFile> {
    let shop = root().join("examples/shop");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(shop.join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.push(shop.join("traffic/inventory.yaml"));
    paths
        .iter()
        .map(|p| SourceFile::new(p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect()
}

fn main() {
    let mut records_wanted = 1_000_000usize;
    let mut read_back = ReadBack::Outcome;
    let mut fuel = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--records" {
            records_wanted = args[i + 1].parse().expect("--records N");
            i += 1;
        } else if args[i] == "--fuel" {
            fuel = true;
        } else if args[i] == "--read-back" {
            read_back = match args[i + 1].as_str() {
                "outcome" => ReadBack::Outcome,
                "decision" => ReadBack::Decision,
                other => panic!("--read-back outcome|decision, not {other}"),
            };
            i += 1;
        }
        i += 1;
    }
    let wasm_path = plugin();
    let wasm = std::fs::read(&wasm_path)
        .unwrap_or_else(|e| panic!("{}: {e} (cargo xtask plugin)", wasm_path.display()));
    let sample_path = root().join("examples/shop/traffic/envoy-access.jsonl");
    let sample = std::fs::read_to_string(&sample_path).unwrap();

    let t = Instant::now();
    let traffic = palisade_traffic::read(&sample, None, false).unwrap();
    let parse_ns = t.elapsed().as_nanos() as f64 / traffic.records.len() as f64;
    let base: Vec<Request> = traffic.records.iter().map(|r| r.request.clone()).collect();
    let copies = records_wanted.div_ceil(base.len());
    let mut records = Vec::with_capacity(copies * base.len());
    for copy in 0..copies {
        for r in &base {
            let mut r = r.clone();
            r.source.port = Some(1024 + (copy % 64_000) as u16);
            if r.remote_ip.is_some() {
                r.remote_ip = Some(IpAddr::V4(Ipv4Addr::new(
                    203,
                    0,
                    113,
                    (copy % 254) as u8 + 1,
                )));
            }
            records.push(r);
        }
    }
    let n = records.len();

    // As `palisade replay` runs it: calls bounded by time (epoch interruption), not fuel;
    // `--fuel` meters fuel instead.
    let settings = HostSettings {
        bound: if fuel { Bound::Fuel } else { Bound::TIME },
        ..HostSettings::default()
    };
    let host = ProxyWasmHost::with_settings(&wasm, settings).unwrap();
    let mut replayer =
        Replayer::with_read_back(host, &sources(), &Options::default(), read_back).unwrap();

    // Decision by decision on a prefix: the two sides agree (not timed). Outcome read-back:
    // the verdict, local reply and every counter increment are those the plugin's own
    // `enforce::outcome` gives for the native decision.
    for r in records.iter().take(base.len() * 4) {
        let native = replayer.decide_native(r);
        match read_back {
            ReadBack::Outcome => {
                let wasm = replayer.observe_wasm(r).unwrap().unwrap();
                let expected = replayer.expected(r, &native).unwrap().unwrap();
                assert_eq!(wasm, expected, "{r:?}\n{}", native.explain());
            }
            ReadBack::Decision => {
                let wasm = replayer.decide_wasm(r).unwrap().unwrap();
                assert!(
                    same_decision(&wasm, &native),
                    "{r:?}\n{}\n{}",
                    wasm.explain(),
                    native.explain()
                );
            }
        }
    }
    let base_allowed = base
        .iter()
        .filter(|r| replayer.decide_native(r).verdict == Verdict::Allow)
        .count();

    // Native.
    let t = Instant::now();
    let mut native_allowed = 0usize;
    for r in &records {
        let d = replayer.decide_native(black_box(r));
        native_allowed += usize::from(d.verdict == Verdict::Allow);
    }
    let native_s = t.elapsed().as_secs_f64();

    // Wasm.
    let t = Instant::now();
    let mut wasm_allowed = 0usize;
    for r in &records {
        let verdict = match read_back {
            ReadBack::Outcome => {
                replayer
                    .observe_wasm(black_box(r))
                    .unwrap()
                    .unwrap()
                    .verdict
            }
            ReadBack::Decision => replayer.decide_wasm(black_box(r)).unwrap().unwrap().verdict,
        };
        wasm_allowed += usize::from(verdict == Verdict::Allow);
    }
    let wasm_s = t.elapsed().as_secs_f64();

    assert_eq!(native_allowed, base_allowed * copies);
    assert_eq!(wasm_allowed, native_allowed);
    let native_rate = n as f64 / native_s;
    let wasm_rate = n as f64 / wasm_s;
    println!(
        "replay benchmark: {} ({} records) scaled x{copies} to {n} records, {} VMs, {} read-back, {}",
        sample_path.display(),
        base.len(),
        replayer.configured(),
        match read_back {
            ReadBack::Outcome => "outcome",
            ReadBack::Decision => "decision",
        },
        if fuel { "fuel-metered" } else { "time-bounded" }
    );
    println!("  parse (envoy access log)  {parse_ns:>10.0} ns/record");
    println!(
        "  native  {native_rate:>12.0} records/s  ({:>6.0} ns/record, {native_s:.2} s)",
        1e9 / native_rate
    );
    println!(
        "  wasm    {wasm_rate:>12.0} records/s  ({:>6.0} ns/record, {wasm_s:.2} s)",
        1e9 / wasm_rate
    );
    println!(
        "  wasm / native throughput {:.3}x; cost ratio (wasm time / native time) {:.1}",
        wasm_rate / native_rate,
        wasm_s / native_s
    );
    println!("  allowed {native_allowed} of {n} on both sides");
}
