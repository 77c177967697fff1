//! The commands: each reads its inputs, calls the engine, prints a result and returns the
//! exit status (or a [`Failure`]: [`Exit::Invalid`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use palisade_engine::bundle::digest_hex;
use palisade_engine::bundle::{Manifest, hex, parts};
use palisade_engine::labelled::{Evaluated, Totals, decide_all_with};
use palisade_engine::{BundleInfo, Options, Scope, encode_signed};
use serde::Serialize;

use crate::args::{Format, MeshArgs, SignArgs};
use crate::exit::Exit;
use crate::input;
use crate::report::{Failure, print_result};
use crate::summary::{AuthzCounts, EngineSummary, summarise};

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
pub fn check(paths: &[PathBuf], mesh: &MeshArgs, output: Format) -> Result<Exit, Failure> {
    let sources = input::read_sources(paths)?;
    let (set, engine) = input::build(&sources, &input::options(mesh)?)?;
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
    Ok(Exit::Ok)
}

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
) -> Result<Exit, Failure> {
    let sources = input::read_sources(policy)?;
    let (_, engine) = input::build(&sources, &input::options(mesh)?)?;
    let (_, requests) = input::read_requests(request)?;
    let verifier = crate::token::RingVerifier;
    let (results, totals) = decide_all_with(&engine, requests, Some(&verifier));
    let status = if totals.denied > 0 {
        Exit::Denied
    } else if totals.pending > 0 {
        Exit::CustomPending
    } else {
        Exit::Ok
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

fn human_decision(out: &mut String, r: &Evaluated) {
    let d = &r.decision;
    let rule = d.rule.as_ref().map_or("(none)", |r| r.id.as_str());
    let _ = writeln!(out, "  rule:     {rule}");
    let _ = writeln!(out, "  step:     {}", d.step.as_str());
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
        let _ = writeln!(out, "  network:  {} ({})", n.verdict, n.step.as_str());
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
    scope: String,
    key_id: Option<String>,
}

/// `palisade compile`.
pub fn compile(
    paths: &[PathBuf],
    bundle: &Path,
    mesh: &MeshArgs,
    signing: &SignArgs,
    output: Format,
) -> Result<Exit, Failure> {
    let scope: Scope = signing
        .scope
        .parse()
        .map_err(|e: palisade_engine::BundleError| Failure::message(e.to_string()))?;
    let signer = match (&signing.sign, &signing.key_id) {
        (Some(key), Some(id)) => Some(crate::signing::signer(key, id)?),
        _ => None,
    };
    let sources = input::read_sources(paths)?;
    let (_, engine) = input::build(&sources, &input::options(mesh)?)?;
    let mut info = BundleInfo {
        scope,
        inputs: Vec::new(),
    };
    for source in &sources {
        info.input(&source.name, source.text.as_bytes());
    }
    let bytes = encode_signed(&engine, &info, signer.as_ref())
        .map_err(|e| Failure::message(e.to_string()))?;
    std::fs::write(bundle, &bytes).map_err(|e| {
        Failure::message(format!("cannot write bundle `{}`: {e}", bundle.display()))
    })?;
    let result = CompileResult {
        bundle: bundle.display().to_string(),
        size: bytes.len(),
        sha256: digest_hex(&bytes).unwrap_or_default(),
        format_version: format_version(&bytes),
        scope: info.scope.to_string(),
        key_id: signer.map(|s| s.key_id),
    };
    print_result(output, &result, || {
        let signed = match &result.key_id {
            Some(id) => format!("signed by key `{id}`"),
            None => "unsigned".into(),
        };
        format!(
            "wrote {}: {} bytes, sha256 {}, for {}, {signed}\n",
            result.bundle, result.size, result.sha256, result.scope
        )
    });
    Ok(Exit::Ok)
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
    scope: String,
    key_id: Option<String>,
    /// Whether the signature was checked against `--trusted-key` and verified.
    verified: bool,
    inputs: Vec<InputRow>,
    options: Options,
    rules: usize,
    #[serde(flatten)]
    summary: EngineSummary,
}

#[derive(Debug, Serialize)]
struct InputRow {
    name: String,
    sha256: String,
}

/// `palisade inspect`.
pub fn inspect(bundle: &Path, trusted: &[String], output: Format) -> Result<Exit, Failure> {
    let name = bundle.display().to_string();
    let bytes = std::fs::read(bundle)
        .map_err(|e| Failure::message(format!("cannot read bundle `{name}`: {e}")))?;
    let invalid = |e: palisade_engine::BundleError| {
        Failure::message(format!("invalid bundle `{name}`: {e}"))
            .with_help("rebuild it with `palisade compile <policies> -o <bundle>`")
    };
    let parts = parts(&bytes).map_err(invalid)?;
    let keys = crate::signing::trusted_keys(trusted)?;
    // Whom it is for is the host's question; here only the signature is checked.
    parts
        .verify(&keys, &parts.manifest.scope)
        .map_err(|e| Failure::message(format!("bundle `{name}` is refused: {e}")))?;
    let engine = parts.engine().map_err(invalid)?;
    let Manifest {
        scope,
        key_id,
        inputs,
        ..
    } = parts.manifest;
    let result = InspectResult {
        bundle: name,
        format_version: format_version(&bytes),
        size: bytes.len(),
        sha256: digest_hex(&bytes).unwrap_or_default(),
        scope: scope.to_string(),
        key_id,
        verified: !keys.is_empty(),
        inputs: inputs
            .iter()
            .map(|i| InputRow {
                name: i.name.clone(),
                sha256: hex(&i.sha256),
            })
            .collect(),
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
        let _ = writeln!(out, "sha256: {} (the revision hosts report)", result.sha256);
        let signer = match (&result.key_id, result.verified) {
            (Some(id), true) => format!("signed by key `{id}`, verified"),
            (Some(id), false) => format!("signed by key `{id}` (not verified: no --trusted-key)"),
            (None, _) => "unsigned".into(),
        };
        let _ = writeln!(out, "scope: {}; {signer}", result.scope);
        let _ = writeln!(out, "inputs: {}", result.inputs.len());
        for i in &result.inputs {
            let _ = writeln!(out, "  {}  {}", i.sha256, i.name);
        }
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
    Ok(Exit::Ok)
}
