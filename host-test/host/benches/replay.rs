//! `palisade replay`'s throughput: the recorded shop sample
//! (`examples/shop/traffic/envoy-access.jsonl`, real Envoy output) scaled to at least a
//! million records, decided by the native engine and by the proxy-wasm plugin's `.wasm` in the
//! wasmtime host, in one run. Run: `cargo xtask bench-replay [--records N]` (or `cargo bench
//! -p palisade-wasm-host --bench replay -- --records N`).
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
//!
//! Then where the wasm time goes, in the same run: the floor (the same replay through the
//! minimal module of `testdata/floor.wat`, which reads nothing and lets everything through),
//! one empty callback, and the engine's decision alone natively and in wasm (the decide guest,
//! `host-test/decide-guest`: `Engine::decide` over the sample's requests in a loop, no ABI) —
//! and the bound the floor and the wasm decision set on wasm ÷ native.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Instant;

use palisade_engine::{Options, Request, SourceFile, Verdict};
use palisade_wasm_host::{
    Bound, HostSettings, ProxyWasmHost, ReadBack, Replayer, modules, same_decision,
};

/// The guest calls an HTTP stream takes as Envoy drives it: context creation, request
/// headers, done, log, delete.
const STREAM_CALLS: usize = 5;

fn root() -> PathBuf {
    modules::workspace_root()
}

/// The module `cargo xtask bench-replay` built for `package`, or `$<var>` when set.
fn read_module(var: &str, package: &str) -> Vec<u8> {
    let path = std::env::var_os(var).map_or_else(
        || modules::target_dir().join(modules::module_path(package)),
        PathBuf::from,
    );
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (cargo xtask bench-replay builds it)",
            path.display()
        )
    })
}

/// A wasmtime engine as the replay host configures one: Cranelift at `speed`, with the epoch
/// checks time-bounded guests carry (no ticker runs here, so none fires).
fn wasm_engine() -> wasmtime::Engine {
    let mut config = wasmtime::Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.epoch_interruption(true);
    if std::env::var_os("PALISADE_WASM_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    wasmtime::Engine::new(&config).unwrap()
}

/// Seconds for `calls` calls of the minimal module's no-op `proxy_on_context_create`, each
/// with its epoch deadline set as the host sets it: the least one guest callback costs.
fn empty_calls(floor_wasm: &[u8], calls: usize) -> f64 {
    let engine = wasm_engine();
    let module = wasmtime::Module::from_binary(&engine, floor_wasm).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let f = instance
        .get_typed_func::<(i32, i32), ()>(&mut store, "proxy_on_context_create")
        .unwrap();
    let t = Instant::now();
    for i in 0..calls {
        store.set_epoch_deadline(101);
        f.call(&mut store, (black_box(i as i32), 1)).unwrap();
    }
    t.elapsed().as_secs_f64()
}

/// `Engine::decide` over `requests`, `rounds` times, inside the decide guest (the engine
/// compiled to wasm32-wasip1, no proxy-wasm ABI): seconds, and how many decisions allowed.
fn decide_alone_in_wasm(
    wasm: &[u8],
    files: &[SourceFile],
    requests: &[Request],
    rounds: u32,
) -> (f64, u32) {
    use wasmtime::{Linker, Module, Store};
    let engine = wasm_engine();
    let module = Module::from_binary(&engine, wasm).unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.define_unknown_imports_as_traps(&module).unwrap();
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
        init.call(&mut store, ()).unwrap();
    }
    let files: Vec<serde_json::Value> = files
        .iter()
        .map(|f| serde_json::json!({"name": f.name, "text": f.text}))
        .collect();
    let input =
        serde_json::to_vec(&serde_json::json!({"files": files, "requests": requests})).unwrap();
    let len = u32::try_from(input.len()).unwrap();
    let alloc = instance
        .get_typed_func::<u32, u32>(&mut store, "palisade_alloc")
        .unwrap();
    let prepare = instance
        .get_typed_func::<(u32, u32), u32>(&mut store, "palisade_prepare")
        .unwrap();
    let run = instance
        .get_typed_func::<u32, u32>(&mut store, "palisade_run")
        .unwrap();
    let at = alloc.call(&mut store, len).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    memory.write(&mut store, at as usize, &input).unwrap();
    assert_eq!(
        prepare.call(&mut store, (at, len)).unwrap(),
        0,
        "the decide guest refused its input"
    );
    run.call(&mut store, 1).unwrap();
    let t = Instant::now();
    let allowed = run.call(&mut store, rounds).unwrap();
    (t.elapsed().as_secs_f64(), allowed)
}

fn sources() -> Vec<SourceFile> {
    modules::shop_sources().unwrap()
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
    let wasm = read_module("PALISADE_PROXY_WASM", "palisade-proxy-wasm");
    let decide_guest = read_module("PALISADE_DECIDE_GUEST", "palisade-decide-guest");
    let sample_path = root().join("examples/shop/traffic/envoy-access.jsonl");
    let sample = std::fs::read_to_string(&sample_path).unwrap();

    let traffic = palisade_traffic::read(&sample, None, false).unwrap();
    // Parsing, timed apart: the sample's text repeated to 100,000 lines or more.
    let repeats = 100_000usize.div_ceil(traffic.records.len());
    let text = sample.repeat(repeats);
    let t = Instant::now();
    let parsed = palisade_traffic::read(&text, None, false).unwrap();
    let parse_ns = t.elapsed().as_nanos() as f64 / parsed.records.len() as f64;
    assert_eq!(parsed.records.len(), traffic.records.len() * repeats);
    drop(parsed);
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
    let host = ProxyWasmHost::with_settings(&wasm, settings.clone()).unwrap();
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

    // The floor: the same replay (routing, properties and headers set for the record, the
    // stream's callbacks, the read-back) through a minimal module that reads nothing and lets
    // everything through — what any plugin costs this host before its own code.
    let floor_wasm = wat::parse_str(include_str!("../../testdata/floor.wat")).unwrap();
    let floor_host = ProxyWasmHost::with_settings(&floor_wasm, settings).unwrap();
    let mut floor = Replayer::with_read_back(
        floor_host,
        &sources(),
        &Options::default(),
        ReadBack::Outcome,
    )
    .unwrap();
    let t = Instant::now();
    let mut floor_allowed = 0usize;
    for r in &records {
        let o = floor.observe_wasm(black_box(r)).unwrap().unwrap();
        floor_allowed += usize::from(o.verdict == Verdict::Allow);
    }
    let floor_s = t.elapsed().as_secs_f64();
    assert_eq!(
        floor_allowed, n,
        "the minimal module lets every record through"
    );
    let call_s = empty_calls(&floor_wasm, n);

    // The decision alone, natively and in wasm: `Engine::decide` on the sample's requests,
    // as many decisions as records, with no proxy-wasm ABI in between.
    let rounds = u32::try_from(copies).unwrap();
    let t = Instant::now();
    let mut alone_native_allowed = 0u32;
    for _ in 0..rounds {
        for r in &base {
            let d = replayer.native().decide(black_box(r));
            alone_native_allowed += u32::from(d.verdict == Verdict::Allow);
        }
    }
    let alone_native_s = t.elapsed().as_secs_f64();
    let (alone_wasm_s, alone_wasm_allowed) =
        decide_alone_in_wasm(&decide_guest, &sources(), &base, rounds);
    assert_eq!(alone_native_allowed as usize, base_allowed * copies);
    assert_eq!(alone_wasm_allowed, alone_native_allowed);

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
    println!(
        "  parse (envoy access log, the sample repeated x{repeats})  {parse_ns:>6.0} ns/record"
    );
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
    let ns = |s: f64| s * 1e9 / n as f64;
    println!("  where the wasm time goes:");
    println!(
        "    floor: the same replay through a minimal module (reads nothing, decides nothing) {:>6.0} ns/record",
        ns(floor_s)
    );
    println!(
        "    one guest callback, empty: {:.0} ns; a stream is at least {STREAM_CALLS} of them",
        ns(call_s)
    );
    println!(
        "    the decision alone (Engine::decide, no ABI): native {:.0} ns, wasm {:.0} ns ({:.2}x native's time)",
        ns(alone_native_s),
        ns(alone_wasm_s),
        alone_wasm_s / alone_native_s
    );
    println!(
        "    the plugin's own reading, deciding and counting: {:.0} ns/record ({:.0} of it beyond the wasm decision)",
        ns(wasm_s - floor_s),
        ns(wasm_s - floor_s - alone_wasm_s)
    );
    // Both sides read each of the distinct records from memory: the native side inside its
    // decision (which is why it costs more per record than the decision alone on the 42 hot
    // sample requests), the wasm side while the host encodes the record (in the floor).
    let least = floor_s + alone_wasm_s;
    println!(
        "    bound: the floor plus the wasm decision alone, {:.0} ns against native's {:.0} ns per record: wasm / native at most {:.3}x, were reading attributes free for the plugin",
        ns(least),
        ns(native_s),
        native_s / least
    );
}
