//! `palisade replay`: recorded traffic through the proxy-wasm plugin's `.wasm` (in the
//! wasmtime test host) and through the native engine, side by side.
//!
//! It reports the allow and deny counts per deciding rule and policy, every record the
//! `.wasm` and the native engine decide differently, and — where the recording carries the
//! live outcome — every record this policy decides differently from the live system.
//!
//! By default the `.wasm` side is read back as Envoy shows it (`--compare outcome`): the host
//! runs at `warn`, Envoy's default, so the plugin formats no log line, and its verdict, local
//! reply and counter increments must be exactly those the plugin's own mapping gives for the
//! native decision. `--compare decision` reads the full decision back from the plugin's log
//! line instead (the host at `trace`: slower) and compares it with the native one.
//!
//! Exit status: 0 when the `.wasm` and the native engine agree on every record, 3 when they
//! disagree on any, 2 on invalid input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use palisade_engine::{
    Decision, Diagnostic, Errors, Location, Request, SourceFile, Verdict, WorkloadRef,
};
use palisade_traffic::{Format as TrafficFormat, Live, Record, policy_of, rule_or_none};
use palisade_wasm_host::{
    Bound, HostSettings, Observed, ProxyWasmHost, ReadBack, Replayer, same_decision,
};
use serde::Serialize;

use crate::args::{Format, MeshArgs};
use crate::commands::step_name;
use crate::input;
use crate::report::{Failure, print_result};

/// Exit status: the `.wasm` and the native engine disagree on some record.
pub const DISAGREE: u8 = 3;

/// The plugin as `cargo xtask plugin` builds it, relative to the target directory.
const PLUGIN_WASM: &str = "wasm32-wasip1/plugin/palisade_proxy_wasm.wasm";

/// Inputs larger than this get a progress bar (on a terminal).
const PROGRESS_FROM: usize = 10_000;

/// The progress bar moves every this many records (not per record).
const PROGRESS_EVERY: usize = 1024;

/// At most this many disagreements, live differences and unroutable records are listed in
/// the human output (all of them in JSON).
const LIST_AT_MOST: usize = 50;

/// `palisade replay`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Policy files or directories (YAML, read as `check` reads them).
    #[arg(long, short = 'p', required = true, num_args = 1.., value_name = "PATH")]
    pub policy: Vec<PathBuf>,
    /// The recorded traffic: JSON lines.
    #[arg(long, short = 't', value_name = "FILE")]
    pub traffic: PathBuf,
    /// The recording's format [default: auto, from the first line].
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// The proxy-wasm plugin [default: `$PALISADE_PROXY_WASM`, else the plugin built beside
    /// this binary or in `$CARGO_TARGET_DIR`: `<target>/wasm32-wasip1/plugin/palisade_proxy_wasm.wasm`].
    #[arg(long, value_name = "PLUGIN.wasm")]
    pub wasm: Option<PathBuf>,
    /// An inventory file (workloads, their addresses), added to the policies: destinations
    /// are found by address in it.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Decide every record as received by this workload (`<namespace>/<name>` in the
    /// inventory), whatever its destination.
    #[arg(long, value_name = "NS/NAME")]
    pub workload: Option<String>,
    /// Skip lines that do not parse (they are counted and listed) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// What of the `.wasm` is compared with the native engine: `outcome` — the verdict, local
    /// reply and counters, as Envoy shows them (fast); `decision` — the full decision read
    /// back from the plugin's log line (step, dry-run results, audit: slower).
    #[arg(long, value_enum, default_value_t = Compare::Outcome)]
    pub compare: Compare,
    /// Also list every record: the request, the plugin's and the native engine's verdict and
    /// deciding rule, and the live outcome where the recording has one.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// From the first line.
    Auto,
    /// Envoy access-log JSON lines (the format in `envoy/`).
    Envoy,
    /// `hubble observe -o json` lines.
    Hubble,
    /// Palisade request records.
    Records,
}

impl FormatArg {
    fn traffic(self) -> Option<TrafficFormat> {
        match self {
            FormatArg::Auto => None,
            FormatArg::Envoy => Some(TrafficFormat::Envoy),
            FormatArg::Hubble => Some(TrafficFormat::Hubble),
            FormatArg::Records => Some(TrafficFormat::Records),
        }
    }
}

/// `--compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compare {
    /// Verdict, local reply and counters, as Envoy shows them.
    Outcome,
    /// The full decision, from the plugin's log line.
    Decision,
}

/// A decision as reported.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    /// Allow or deny (absent when the side failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The deciding rule, or the step in parentheses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The one-paragraph explanation, or the failure.
    pub explanation: String,
    /// What the plugin shows Envoy (`--compare outcome`): the local reply and the counters
    /// incremented — for the native side, what the plugin's mapping of its decision shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy: Option<String>,
}

impl Shown {
    fn of(d: &Decision) -> Shown {
        Shown {
            verdict: Some(d.verdict),
            rule: Some(decider(d)),
            explanation: d.explain(),
            envoy: None,
        }
    }

    fn observed(o: &Observed) -> Shown {
        Shown {
            verdict: Some(o.verdict),
            rule: Some(o.rule()),
            explanation: format!("the plugin showed Envoy: {o}"),
            envoy: Some(o.to_string()),
        }
    }

    fn failed(e: &str) -> Shown {
        Shown {
            verdict: None,
            rule: None,
            explanation: format!("error: {e}"),
            envoy: None,
        }
    }

    fn human(&self) -> String {
        match (self.verdict, &self.rule) {
            (Some(v), Some(r)) => format!("{v} by {r}"),
            _ => self.explanation.clone(),
        }
    }
}

/// The deciding rule's id, or the deciding step in parentheses.
fn decider(d: &Decision) -> String {
    match &d.rule {
        Some(r) => r.id.clone(),
        None => format!("({})", step_name(d.step)),
    }
}

/// A record the `.wasm` and the native engine decide differently.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Disagreement {
    /// Its line in the recording.
    pub line: usize,
    /// Its name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The request.
    pub request: Request,
    /// The plugin's decision.
    pub wasm: Shown,
    /// The native engine's decision.
    pub native: Shown,
}

/// A record this policy decides differently from the live system.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveDifference {
    /// Its line in the recording.
    pub line: usize,
    /// Its name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What differs: `verdict`, or `rule` (both denied, by different rules).
    pub differs: &'static str,
    /// What the live system did.
    pub live: Live,
    /// What this policy decides (the native engine).
    pub policy: Shown,
    /// The request.
    pub request: Request,
}

/// One record as `--list` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    /// Its line in the recording.
    pub line: usize,
    /// Its name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The request in one line.
    pub request: String,
    /// The plugin's verdict and deciding rule (`allow by <rule>`), or its failure.
    pub wasm: String,
    /// The native engine's verdict and deciding rule.
    pub native: String,
    /// Whether the plugin and the native engine agree (as `--compare` compares them).
    pub agree: bool,
    /// What the live system did, when the recording says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Live>,
}

/// A record no sidecar can be found for.
#[derive(Debug, Serialize)]
pub struct Unrouted {
    /// Its line.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// Allow and deny counts under one key.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Count {
    /// Allowed.
    pub allowed: usize,
    /// Denied.
    pub denied: usize,
    /// Pending on a CUSTOM provider's answer (the record carries none).
    #[serde(skip_serializing_if = "is_zero")]
    pub pending: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Count {
    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Allow => self.allowed = self.allowed.saturating_add(1),
            Verdict::Deny => self.denied = self.denied.saturating_add(1),
            Verdict::CustomPending => self.pending = self.pending.saturating_add(1),
        }
    }
}

/// Counts for one deciding rule (or step).
#[derive(Debug, Serialize)]
pub struct RuleCount {
    /// The rule id, or the step in parentheses.
    pub rule: String,
    /// Its policy (`<namespace>/<name>`), or the step.
    pub policy: String,
    /// The counts.
    #[serde(flatten)]
    pub count: Count,
}

/// Counts for one policy.
#[derive(Debug, Serialize)]
pub struct PolicyCount {
    /// `<namespace>/<name>`, or the step in parentheses.
    pub policy: String,
    /// The counts.
    #[serde(flatten)]
    pub count: Count,
}

/// The live comparison.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveSummary {
    /// Records that carry the live outcome.
    pub compared: usize,
    /// Of those, decided as live.
    pub same: usize,
    /// The others.
    pub differences: Vec<LiveDifference>,
}

/// `palisade replay`'s result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayResult {
    /// The recording.
    pub traffic: String,
    /// Its format.
    pub format: Option<TrafficFormat>,
    /// The plugin module.
    pub wasm: String,
    /// Records read.
    pub records: usize,
    /// Lines skipped as invalid (`--skip-invalid`).
    pub skipped: Vec<palisade_traffic::LineError>,
    /// Lines that carry no decision (Hubble replies, later TCP segments, ...).
    pub ignored: usize,
    /// Plugin VMs configured (one per destination workload and protocol).
    pub vms: usize,
    /// Whether the `.wasm` and the native engine agree on every record.
    pub agree: bool,
    /// The native engine's totals.
    pub native: Count,
    /// The plugin's totals.
    pub wasm_totals: Count,
    /// Native counts by deciding rule.
    pub rules: Vec<RuleCount>,
    /// Native counts by deciding policy.
    pub policies: Vec<PolicyCount>,
    /// Every disagreement.
    pub disagreements: Vec<Disagreement>,
    /// Records whose destination sidecar is unknown (not decided).
    pub unroutable: Vec<Unrouted>,
    /// The comparison with the live outcome.
    pub live: LiveSummary,
    /// Every record, with `--list`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listed: Vec<Listed>,
}

/// Finds the plugin: `--wasm`, `$PALISADE_PROXY_WASM`, beside this binary
/// (`<target>/<profile>/palisade` → `<target>/wasm32-wasip1/plugin/…`), `$CARGO_TARGET_DIR`.
pub fn plugin_path(arg: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(p) = arg {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("PALISADE_PROXY_WASM") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(target) = exe.parent().and_then(Path::parent)
    {
        candidates.push(target.join(PLUGIN_WASM));
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join(PLUGIN_WASM));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            Failure::message("no proxy-wasm plugin found")
                .with_help("build it with `cargo xtask plugin`, or pass `--wasm <plugin.wasm>`")
        })
}

/// A line error as a diagnostic pointing at its line of the recording.
fn line_failure(file: &SourceFile, e: &palisade_traffic::LineError) -> Failure {
    let offset: usize = file
        .text
        .split_inclusive('\n')
        .take(e.line.saturating_sub(1))
        .map(str::len)
        .sum();
    let len = file
        .text
        .get(offset..)
        .and_then(|t| t.lines().next())
        .map_or(0, str::len);
    let mut d = Diagnostic::new(format!("invalid traffic line {}: {}", e.line, e.message))
        .with_help("fix the line, or pass `--skip-invalid` to skip and count invalid lines");
    d.location = Some(Location {
        file: file.name.clone(),
        line: e.line,
        column: 1,
        offset,
        len,
    });
    Failure::invalid(Errors::one(d), std::slice::from_ref(file))
}

fn parse_workload(w: &str) -> Result<WorkloadRef, Failure> {
    match w.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(WorkloadRef {
                namespace: ns.into(),
                name: Some(name.into()),
                ..WorkloadRef::default()
            })
        }
        _ => Err(Failure::message(format!(
            "invalid `--workload` `{w}`: expected `<namespace>/<name>`"
        ))),
    }
}

/// `palisade replay`.
pub fn replay(args: &ReplayArgs, output: Format) -> Result<u8, Failure> {
    let mut paths = args.policy.clone();
    paths.extend(args.inventory.iter().cloned());
    let sources = input::read_sources(&paths)?;
    let options = args.mesh.options()?;
    // Validate with full diagnostics first; the replayer compiles the same sources again.
    input::build(&sources, &options)?;
    let workload = args.workload.as_deref().map(parse_workload).transpose()?;

    let name = args.traffic.display().to_string();
    let text = std::fs::read_to_string(&args.traffic)
        .map_err(|e| Failure::message(format!("cannot read `{name}`: {e}")))?;
    let file = SourceFile::new(name.clone(), text);
    let traffic = palisade_traffic::read(&file.text, args.format.traffic(), args.skip_invalid)
        .map_err(|e| line_failure(&file, &e))?;

    let wasm_path = plugin_path(args.wasm.as_deref())?;
    let bytes = std::fs::read(&wasm_path).map_err(|e| {
        Failure::message(format!("cannot read `{}`: {e}", wasm_path.display()))
            .with_help("build it with `cargo xtask plugin`, or pass `--wasm <plugin.wasm>`")
    })?;
    // Bounded by time (epoch interruption) rather than fuel: a guest that never returns is
    // still a trap, and the plugin's code runs without counting every basic block.
    let settings = HostSettings {
        bound: Bound::TIME,
        ..HostSettings::default()
    };
    let host = ProxyWasmHost::with_settings(&bytes, settings)
        .map_err(|e| Failure::message(format!("`{}`: {e}", wasm_path.display())))?;
    let read_back = match args.compare {
        Compare::Outcome => ReadBack::Outcome,
        Compare::Decision => ReadBack::Decision,
    };
    let mut replayer =
        Replayer::with_read_back(host, &sources, &options, read_back).map_err(Failure::message)?;

    let mut records = traffic.records;
    if let Some(w) = &workload {
        for r in &mut records {
            r.request.destination.workload = Some(w.clone());
        }
    }
    let progress = progress_bar(records.len());
    let mut result = ReplayResult {
        traffic: name,
        format: traffic.format,
        wasm: wasm_path.display().to_string(),
        records: records.len(),
        skipped: traffic.skipped,
        ignored: traffic.ignored,
        vms: 0,
        agree: true,
        native: Count::default(),
        wasm_totals: Count::default(),
        rules: Vec::new(),
        policies: Vec::new(),
        disagreements: Vec::new(),
        unroutable: Vec::new(),
        live: LiveSummary::default(),
        listed: Vec::new(),
    };
    let mut by_rule: BTreeMap<String, Count> = BTreeMap::new();
    for (i, record) in records.into_iter().enumerate() {
        if i % PROGRESS_EVERY == 0 {
            progress.set_position(u64::try_from(i).unwrap_or(u64::MAX));
        }
        replay_one(&mut replayer, record, &mut result, &mut by_rule, args.list);
    }
    progress.finish_and_clear();
    result.vms = replayer.configured();
    result.agree = result.disagreements.is_empty();
    let mut by_policy: BTreeMap<String, Count> = BTreeMap::new();
    for (rule, count) in by_rule {
        let policy = policy_of(&rule);
        let p = by_policy.entry(policy.clone()).or_default();
        p.allowed = p.allowed.saturating_add(count.allowed);
        p.denied = p.denied.saturating_add(count.denied);
        result.rules.push(RuleCount {
            rule,
            policy,
            count,
        });
    }
    result.policies = by_policy
        .into_iter()
        .map(|(policy, count)| PolicyCount { policy, count })
        .collect();
    let status = if result.agree {
        crate::commands::OK
    } else {
        DISAGREE
    };
    print_result(output, &result, || human(&result));
    Ok(status)
}

fn progress_bar(n: usize) -> ProgressBar {
    if n < PROGRESS_FROM || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(u64::try_from(n).unwrap_or(u64::MAX));
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} replaying {bar:40} {human_pos}/{human_len} records ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// One record through both sides.
fn replay_one(
    replayer: &mut Replayer,
    record: Record,
    result: &mut ReplayResult,
    by_rule: &mut BTreeMap<String, Count>,
    list: bool,
) {
    let wasm = match wasm_side(replayer, &record.request) {
        Ok(w) => w,
        Err(unroutable) => {
            result.unroutable.push(Unrouted {
                line: record.line,
                reason: unroutable.0,
            });
            return;
        }
    };
    let native = replayer.decide_native(&record.request);
    result.native.add(native.verdict);
    by_rule
        .entry(decider(&native))
        .or_default()
        .add(native.verdict);
    // `--compare outcome`: what the plugin's own mapping of the native decision shows Envoy.
    let expected = match &wasm {
        Ok(WasmSide::Outcome(_)) => match replayer.expected(&record.request, &native) {
            Ok(e) => Some(e),
            Err(u) => Some(Err(u.0)),
        },
        _ => None,
    };
    let agree = match (&wasm, &expected) {
        (Ok(WasmSide::Decision(w)), _) => {
            result.wasm_totals.add(w.verdict);
            same_decision(w, &native)
        }
        (Ok(WasmSide::Outcome(o)), Some(Ok(e))) => {
            result.wasm_totals.add(o.verdict);
            o == e
        }
        (Ok(WasmSide::Outcome(o)), _) => {
            result.wasm_totals.add(o.verdict);
            false
        }
        (Err(_), _) => false,
    };
    if let Some(live) = &record.live {
        result.live.compared = result.live.compared.saturating_add(1);
        let rule = rule_or_none(native.rule.as_ref().map(|r| r.id.as_str()));
        let differs = if live.verdict != native.verdict {
            Some("verdict")
        } else if live.verdict == Verdict::Deny && live.rule.as_deref().is_some_and(|l| l != rule) {
            Some("rule")
        } else {
            None
        };
        match differs {
            None => result.live.same = result.live.same.saturating_add(1),
            Some(differs) => result.live.differences.push(LiveDifference {
                line: record.line,
                name: record.name.clone(),
                differs,
                live: live.clone(),
                policy: Shown::of(&native),
                request: record.request.clone(),
            }),
        }
    }
    if list {
        result.listed.push(Listed {
            line: record.line,
            name: record.name.clone(),
            request: brief(&record.request),
            wasm: match &wasm {
                Ok(WasmSide::Decision(w)) => format!("{} by {}", w.verdict, decider(w)),
                Ok(WasmSide::Outcome(o)) => format!("{} by {}", o.verdict, o.rule()),
                Err(e) => format!("error: {e}"),
            },
            native: format!("{} by {}", native.verdict, decider(&native)),
            agree,
            live: record.live.clone(),
        });
    }
    if !agree {
        result.disagreements.push(Disagreement {
            line: record.line,
            name: record.name,
            request: record.request,
            wasm: match &wasm {
                Ok(WasmSide::Decision(w)) => Shown::of(w),
                Ok(WasmSide::Outcome(o)) => Shown::observed(o),
                Err(e) => Shown::failed(e),
            },
            native: Shown {
                envoy: expected.map(|e| match e {
                    Ok(e) => e.to_string(),
                    Err(e) => format!("error: {e}"),
                }),
                ..Shown::of(&native)
            },
        });
    }
}

/// The `.wasm`'s side of one record, as `--compare` reads it back.
enum WasmSide {
    Decision(Box<Decision>),
    Outcome(Observed),
}

fn wasm_side(
    replayer: &mut Replayer,
    request: &Request,
) -> Result<Result<WasmSide, String>, palisade_wasm_host::Unroutable> {
    Ok(match replayer.read_back() {
        ReadBack::Decision => replayer
            .decide_wasm(request)?
            .map(|d| WasmSide::Decision(Box::new(d))),
        ReadBack::Outcome => replayer.observe_wasm(request)?.map(WasmSide::Outcome),
    })
}

/// A request in one line: `GET host/path from <principal|ip>` or `TCP :port from ...`.
fn brief(r: &Request) -> String {
    let from = r
        .source
        .principal
        .clone()
        .or_else(|| r.source.ip.map(|ip| ip.to_string()))
        .unwrap_or_else(|| "?".into());
    let to = r
        .destination
        .workload
        .as_ref()
        .map(|w| {
            format!(
                "{}/{}",
                w.namespace,
                w.name.as_deref().unwrap_or("(inline)")
            )
        })
        .or_else(|| r.destination.ip.map(|ip| ip.to_string()))
        .unwrap_or_else(|| "?".into());
    let port = r
        .destination
        .port
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    match &r.http {
        Some(h) if r.protocol == palisade_engine::Protocol::Http => {
            format!(
                "{} {}{} to {to}{port} from {from}",
                h.method, h.host, h.path
            )
        }
        _ => format!("TCP to {to}{port} from {from}"),
    }
}

fn label(line: usize, name: Option<&String>) -> String {
    match name {
        Some(n) => format!("line {line} ({n})"),
        None => format!("line {line}"),
    }
}

fn human(r: &ReplayResult) -> String {
    let mut out = String::new();
    let format = r.format.map_or("-".to_string(), |f| f.to_string());
    let _ = writeln!(
        out,
        "replayed {} records from {} ({format}; {} skipped, {} ignored) through {} ({} VMs) and the native engine",
        r.records,
        r.traffic,
        r.skipped.len(),
        r.ignored,
        r.wasm,
        r.vms
    );
    for s in &r.skipped {
        let _ = writeln!(out, "  skipped {s}");
    }
    let _ = writeln!(
        out,
        "native: {} allowed, {} denied; wasm: {} allowed, {} denied",
        r.native.allowed, r.native.denied, r.wasm_totals.allowed, r.wasm_totals.denied
    );
    let _ = writeln!(out);
    if !r.listed.is_empty() {
        for l in &r.listed {
            let wasm = if l.agree {
                "wasm: same".to_string()
            } else {
                format!("WASM: {}", l.wasm)
            };
            let live = l
                .live
                .as_ref()
                .map_or_else(String::new, |live| format!("; live: {}", live.verdict));
            let _ = writeln!(
                out,
                "{:<9} {}\n          {} ({wasm}{live})",
                label(l.line, l.name.as_ref()),
                l.request,
                l.native,
            );
        }
        let _ = writeln!(out);
    }
    let width = r
        .rules
        .iter()
        .map(|c| c.rule.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(out, "{:<width$}  {:>7}  {:>7}", "rule", "allowed", "denied");
    for c in &r.rules {
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>7}",
            c.rule, c.count.allowed, c.count.denied
        );
    }
    let _ = writeln!(out);
    let width = r
        .policies
        .iter()
        .map(|c| c.policy.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>7}",
        "policy", "allowed", "denied"
    );
    for c in &r.policies {
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>7}",
            c.policy, c.count.allowed, c.count.denied
        );
    }
    let _ = writeln!(out);
    if r.disagreements.is_empty() {
        let _ = writeln!(out, "wasm/native: agree on all {} records", r.records);
    } else {
        let _ = writeln!(
            out,
            "wasm/native: DISAGREE on {} records",
            r.disagreements.len()
        );
        for d in r.disagreements.iter().take(LIST_AT_MOST) {
            let _ = writeln!(
                out,
                "  {}: {}\n    wasm:   {}\n    native: {}",
                label(d.line, d.name.as_ref()),
                brief(&d.request),
                d.wasm.human(),
                d.native.human(),
            );
            if let (Some(w), Some(n)) = (&d.wasm.envoy, &d.native.envoy) {
                let _ = writeln!(
                    out,
                    "    the plugin showed Envoy:  {w}\n    its mapping of native:    {n}"
                );
            }
            let _ = writeln!(
                out,
                "    request: {}",
                serde_json::to_string(&d.request).unwrap_or_default()
            );
        }
    }
    if !r.unroutable.is_empty() {
        let _ = writeln!(
            out,
            "not decided: {} records have no known destination workload (give `--inventory` or `--workload`)",
            r.unroutable.len()
        );
        for u in r.unroutable.iter().take(LIST_AT_MOST) {
            let _ = writeln!(out, "  line {}: {}", u.line, u.reason);
        }
    }
    let l = &r.live;
    if l.compared == 0 {
        let _ = writeln!(out, "live outcome: no record carries one");
    } else {
        let _ = writeln!(
            out,
            "live outcome: {} records carry one; this policy decides {} the same, {} differently",
            l.compared,
            l.same,
            l.differences.len()
        );
        for d in l.differences.iter().take(LIST_AT_MOST) {
            let live = match &d.live.rule {
                Some(rule) => format!("{} by {rule}", d.live.verdict),
                None => d.live.verdict.to_string(),
            };
            let _ = writeln!(
                out,
                "  {}: {}\n    live: {live}; policy: {}",
                label(d.line, d.name.as_ref()),
                brief(&d.request),
                d.policy.human()
            );
        }
    }
    let listed = r.disagreements.len().max(l.differences.len());
    if listed > LIST_AT_MOST {
        let _ = writeln!(
            out,
            "(lists cut at {LIST_AT_MOST}; `--output json` has every record)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::sync::Arc;

    use palisade_engine::{Decision, Step};

    use super::*;

    #[test]
    fn an_outcome_disagreement_shows_the_record_both_decisions_and_what_envoy_saw() {
        let request: Request = serde_json::from_value(serde_json::json!({
            "destination": {"workload": {"namespace": "shop", "name": "cart"}},
            "http": {"method": "GET", "host": "cart", "path": "/x"},
        }))
        .unwrap();
        let native = Decision {
            verdict: Verdict::Allow,
            step: Step::NoAllowPolicies,
            rule: None,
            shadow: Vec::new(),
            audit: None,
            network: None,
            errors: Vec::new(),
            custom: Vec::new(),
        };
        let observed = Observed {
            verdict: Verdict::Deny,
            reply: Some((403, "rbac_access_denied_matched_policy[none]".into())),
            policy: Some("none".into()),
            counters: vec![(Arc::from("palisade.denied"), 1)],
        };
        let expected = Observed {
            verdict: Verdict::Allow,
            reply: None,
            policy: None,
            counters: vec![(Arc::from("palisade.allowed"), 1)],
        };
        let result = ReplayResult {
            traffic: "t.jsonl".into(),
            format: None,
            wasm: "p.wasm".into(),
            records: 1,
            skipped: Vec::new(),
            ignored: 0,
            vms: 1,
            agree: false,
            native: Count::default(),
            wasm_totals: Count::default(),
            rules: Vec::new(),
            policies: Vec::new(),
            disagreements: vec![Disagreement {
                line: 7,
                name: Some("r7".into()),
                request,
                wasm: Shown::observed(&observed),
                native: Shown {
                    envoy: Some(expected.to_string()),
                    ..Shown::of(&native)
                },
            }],
            unroutable: Vec::new(),
            live: LiveSummary::default(),
            listed: Vec::new(),
        };
        let text = human(&result);
        assert!(text.contains("DISAGREE on 1 records"), "{text}");
        assert!(
            text.contains("line 7 (r7): GET cart/x to shop/cart"),
            "{text}"
        );
        assert!(text.contains("wasm:   deny by none"), "{text}");
        assert!(
            text.contains("native: allow by (no-allow-policies)"),
            "{text}"
        );
        assert!(
            text.contains(
                "the plugin showed Envoy:  local reply 403 `rbac_access_denied_matched_policy[none]`, x-palisade-policy: none; counters: palisade.denied +1"
            ),
            "{text}"
        );
        assert!(
            text.contains("its mapping of native:    allowed; counters: palisade.allowed +1"),
            "{text}"
        );
        assert!(text.contains("request: {"), "{text}");
        let json = serde_json::to_value(&result).unwrap();
        let d = &json["disagreements"][0];
        assert_eq!(d["wasm"]["verdict"], "deny");
        assert_eq!(d["native"]["verdict"], "allow");
        assert!(
            d["native"]["explanation"]
                .as_str()
                .unwrap()
                .contains("allowed")
        );
        assert!(
            d["wasm"]["envoy"]
                .as_str()
                .unwrap()
                .contains("palisade.denied")
        );
    }
}
