//! The commands: each reads its inputs, calls the engine, prints a result and returns the
//! exit status (or a [`Failure`], status 2).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use palisade_engine::bundle::digest_hex;
use palisade_engine::{Options, decode_bundle, encode_bundle};
use serde::Serialize;

use crate::args::{Format, MeshArgs};
use crate::input;
use crate::report::{Failure, print_result};
use crate::summary::{AuthzCounts, EngineSummary, summarise};

/// Exit status: success, or every request allowed.
pub const OK: u8 = 0;
/// Exit status: some request denied (or a demo expectation not met).
pub const DENIED: u8 = 1;
/// Exit status: no request denied, but some pending on an external authorizer (a CUSTOM rule
/// matched and the request carried no `extAuthz` answer from its provider).
pub const CUSTOM_PENDING: u8 = 4;

/// `check`'s result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckResult {
    valid: bool,
    files: Vec<String>,
    options: Options,
    network_policies: usize,
    #[serde(flatten)]
    summary: EngineSummary,
    /// What the inventory holds that a person should look at (addresses held twice).
    warnings: Vec<palisade_engine::InventoryWarning>,
}

/// `palisade check`.
pub fn check(paths: &[PathBuf], mesh: &MeshArgs, output: Format) -> Result<u8, Failure> {
    let sources = input::read_sources(paths)?;
    let (set, engine) = input::build(&sources, &mesh.options()?)?;
    let result = CheckResult {
        valid: true,
        files: sources.iter().map(|s| s.name.clone()).collect(),
        options: engine.options().clone(),
        network_policies: set.network.len(),
        summary: summarise(&engine),
        warnings: set.inventory.warnings(),
    };
    print_result(output, &result, || {
        let mut out = String::new();
        let n = result.files.len();
        let _ = writeln!(out, "valid: {n} file{}", if n == 1 { "" } else { "s" });
        let _ = writeln!(
            out,
            "AuthorizationPolicies: {}",
            result.summary.authorization_policies.human()
        );
        let _ = writeln!(out, "NetworkPolicies: {}", result.network_policies);
        result.summary.human_workloads(&mut out);
        for w in &result.warnings {
            let _ = writeln!(out, "warning: {}", w.message);
        }
        out
    });
    Ok(OK)
}

pub use palisade_engine::labelled::{Evaluated, Totals, decide_all, decide_all_with};

#[derive(Debug, Serialize)]
struct EvalResult {
    results: Vec<Evaluated>,
    totals: Totals,
}

/// `palisade eval`.
pub fn eval(
    policy: &[PathBuf],
    request: &str,
    mesh: &MeshArgs,
    output: Format,
) -> Result<u8, Failure> {
    let sources = input::read_sources(policy)?;
    let (_, engine) = input::build(&sources, &mesh.options()?)?;
    let (_, requests) = input::read_requests(request)?;
    let verifier = crate::token::RingVerifier;
    let (results, totals) = decide_all_with(&engine, requests, Some(&verifier));
    let status = if totals.denied > 0 {
        DENIED
    } else if totals.pending > 0 {
        CUSTOM_PENDING
    } else {
        OK
    };
    let result = EvalResult { results, totals };
    print_result(output, &result, || {
        let mut out = String::new();
        let batch = result.results.len() > 1;
        for r in &result.results {
            if batch {
                let _ = writeln!(out, "{}: {}", r.label(), r.decision.verdict);
            } else {
                let _ = writeln!(out, "{}", r.decision.verdict);
            }
            human_decision(&mut out, r);
        }
        if batch {
            let t = &result.totals;
            let _ = writeln!(
                out,
                "{} requests: {} allowed, {} denied{}",
                t.requests,
                t.allowed,
                t.denied,
                if t.pending > 0 {
                    format!(", {} pending on an external authorizer", t.pending)
                } else {
                    String::new()
                }
            );
        }
        out
    });
    Ok(status)
}

pub use palisade_engine::labelled::step_name;

fn human_decision(out: &mut String, r: &Evaluated) {
    let d = &r.decision;
    let rule = d.rule.as_ref().map_or("(none)", |r| r.id.as_str());
    let _ = writeln!(out, "  rule:     {rule}");
    let _ = writeln!(out, "  step:     {}", step_name(d.step));
    let _ = writeln!(out, "  why:      {}", r.explanation);
    for s in &d.shadow {
        let matched = s
            .matched
            .as_ref()
            .map_or("no rule matched", |m| m.id.as_str());
        let _ = writeln!(
            out,
            "  dry-run:  {} policies would {} ({matched})",
            s.action, s.verdict
        );
    }
    if let Some(a) = &d.audit {
        let _ = writeln!(out, "  audit:    {}", a.id);
    }
    if let Some(n) = &d.network {
        let _ = writeln!(out, "  network:  {} ({})", n.verdict, step_name(n.step));
    }
    for e in &d.errors {
        let _ = writeln!(out, "  error:    {e}");
    }
    if r.as_expected == Some(false) {
        let verdict = r.expect.map_or("-".to_string(), |v| v.to_string());
        let rule = r.expect_rule.as_deref().unwrap_or("-");
        let _ = writeln!(out, "  expected: {verdict} by {rule} (NOT MET)");
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CompileResult {
    bundle: String,
    size: usize,
    sha256: String,
    format_version: u16,
}

/// `palisade compile`.
pub fn compile(
    paths: &[PathBuf],
    bundle: &Path,
    mesh: &MeshArgs,
    output: Format,
) -> Result<u8, Failure> {
    let sources = input::read_sources(paths)?;
    let (_, engine) = input::build(&sources, &mesh.options()?)?;
    let bytes = encode_bundle(&engine).map_err(|e| Failure::message(e.to_string()))?;
    std::fs::write(bundle, &bytes).map_err(|e| {
        Failure::message(format!("cannot write bundle `{}`: {e}", bundle.display()))
    })?;
    let result = CompileResult {
        bundle: bundle.display().to_string(),
        size: bytes.len(),
        sha256: digest_hex(&bytes).unwrap_or_default(),
        format_version: format_version(&bytes),
    };
    print_result(output, &result, || {
        format!(
            "wrote {}: {} bytes, sha256 {}\n",
            result.bundle, result.size, result.sha256
        )
    });
    Ok(OK)
}

fn format_version(bytes: &[u8]) -> u16 {
    match bytes.get(4..6) {
        Some([a, b]) => u16::from_le_bytes([*a, *b]),
        _ => 0,
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InspectResult {
    bundle: String,
    format_version: u16,
    size: usize,
    sha256: String,
    options: Options,
    rules: usize,
    #[serde(flatten)]
    summary: EngineSummary,
}

/// `palisade inspect`.
pub fn inspect(bundle: &Path, output: Format) -> Result<u8, Failure> {
    let name = bundle.display().to_string();
    let bytes = std::fs::read(bundle)
        .map_err(|e| Failure::message(format!("cannot read bundle `{name}`: {e}")))?;
    let engine = decode_bundle(&bytes).map_err(|e| {
        Failure::message(format!("invalid bundle `{name}`: {e}"))
            .with_help("rebuild it with `palisade compile <policies> -o <bundle>`")
    })?;
    let result = InspectResult {
        bundle: name,
        format_version: format_version(&bytes),
        size: bytes.len(),
        sha256: digest_hex(&bytes).unwrap_or_default(),
        options: engine.options().clone(),
        rules: engine.rule_count(),
        summary: summarise(&engine),
    };
    print_result(output, &result, || {
        let mut out = String::new();
        let o = &result.options;
        let _ = writeln!(
            out,
            "bundle: {} (format version {}, {} bytes)",
            result.bundle, result.format_version, result.size
        );
        let _ = writeln!(out, "sha256: {}", result.sha256);
        let aliases = if o.trust_domain_aliases.is_empty() {
            String::new()
        } else {
            format!(" (aliases {})", o.trust_domain_aliases.join(", "))
        };
        let norm = serde_json::to_value(o.path_normalization)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "options: root namespace {}, trust domain {}{aliases}, path normalization {norm}",
            o.root_namespace, o.trust_domain
        );
        let counts: &AuthzCounts = &result.summary.authorization_policies;
        let _ = writeln!(
            out,
            "AuthorizationPolicies: {}, {} rules",
            counts.human(),
            result.rules
        );
        result.summary.human_policies(&mut out);
        result.summary.human_workloads(&mut out);
        out
    });
    Ok(OK)
}
