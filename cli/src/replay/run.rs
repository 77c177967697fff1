//! The run of `palisade replay`: reads the policies, the recording and the plugin, then
//! drives every record through the `.wasm` and the native engine.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use palisade_engine::{
    Decision, Diagnostic, Errors, Location, Request, SourceFile, Verdict, WorkloadRef,
};
use palisade_traffic::{Record, policy_of, rule_or_none};
use palisade_wasm_host::{
    Bound, HostSettings, Observed, PluginFailure, ProxyWasmHost, ReadBack, Replayer, Unroutable,
    same_decision,
};

use super::output::{
    Count, Disagreement, Listed, LiveDifference, LiveSummary, PolicyCount, ReplayResult, RuleCount,
    Shown, Unrouted, brief, decider, human,
};
use crate::args::{Compare, Format, ReplayArgs};
use crate::exit::Exit;
use crate::input;
use crate::report::{Failure, print_result};

/// The plugin as `cargo xtask plugin` builds it, relative to the target directory.
const PLUGIN_WASM: &str = "wasm32-wasip1/plugin/palisade_proxy_wasm.wasm";

/// Inputs larger than this get a progress bar (on a terminal).
const PROGRESS_FROM: usize = 10_000;

/// The progress bar moves every this many records (not per record).
const PROGRESS_EVERY: usize = 1024;

/// Finds the plugin: `--wasm`, `$PALISADE_PROXY_WASM`, beside this binary
/// (`<target>/<profile>/palisade` → `<target>/wasm32-wasip1/plugin/…`), `$CARGO_TARGET_DIR`.
fn plugin_path(arg: Option<&Path>) -> Result<PathBuf, Failure> {
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
pub fn replay(args: &ReplayArgs, output: Format) -> Result<Exit, Failure> {
    let mut paths = args.policy.clone();
    paths.extend(args.inventory.iter().cloned());
    let sources = input::read_sources(&paths)?;
    let options = input::options(&args.mesh)?;
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
    let mut replayer = Replayer::with_read_back(host, &sources, &options, read_back)
        .map_err(|e| Failure::message(e.to_string()))?;

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
        Exit::Ok
    } else {
        Exit::Disagree
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
                reason: unroutable.to_string(),
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
            Err(u) => Some(Err(PluginFailure::from(u))),
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
) -> Result<Result<WasmSide, PluginFailure>, Unroutable> {
    Ok(match replayer.read_back() {
        ReadBack::Decision => replayer
            .decide_wasm(request)?
            .map(|d| WasmSide::Decision(Box::new(d))),
        ReadBack::Outcome => replayer.observe_wasm(request)?.map(WasmSide::Outcome),
    })
}
