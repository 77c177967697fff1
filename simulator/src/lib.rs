//! Palisade's browser-based policy simulator: the engine behind a small JavaScript API.
//!
//! Everything crosses the boundary as JSON text, so the JS API stays stable and plain:
//!
//! - `check(policies)`: validates and compiles the policies (one YAML text, documents separated
//!   by `---`, the inventory among them) and answers
//!   `{"ok", "errors": [{file, line, column, path, document, message, help}], "summary"}`.
//! - `evaluate(policies, requests)`: decides one request, an array of them or JSON lines (each a
//!   bare `Request` or `{name?, description?, request, expect?, rule?}`, as `palisade eval`
//!   reads them) and answers what `palisade eval --output json` prints —
//!   `{"results": [{index, name, verdict, step, rule, shadow, audit, network, errors,
//!   explanation, envoyDetails, …}], "totals"}` — with `"ok": true`; or `{"ok": false, "stage",
//!   "errors"}` when the policies or the requests are invalid.
//! - `new Simulator(policies)`: compiles once; `.check()` and `.evaluate(requests)` as above.
//!
//! The logic is in the plain functions of this module ([`check`], [`evaluate`],
//! [`Simulator`]), tested natively; [`js`] is the thin `#[wasm_bindgen]` layer. Nothing here
//! panics: bad input is an error object, never a trap.

use palisade_engine::{
    Decision, Diagnostic, Engine, Errors, Options, PolicySet, Request, SourceFile, Verdict,
    authz::Action, compile, load,
};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub mod js;

/// The name the policies' text goes by in error locations.
pub const POLICIES_FILE: &str = "policies.yaml";
/// The name the requests' text goes by in error locations.
pub const REQUESTS_FILE: &str = "request.json";

/// One problem, flattened for JavaScript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The input it is in (`policies.yaml` or `request.json`), when located.
    pub file: Option<String>,
    /// 1-based line, when located.
    pub line: Option<usize>,
    /// 1-based column, when located.
    pub column: Option<usize>,
    /// The field path (`spec.rules[0].to[0].operation.paths[1]`), when known.
    pub path: Option<String>,
    /// The document (`AuthorizationPolicy shop/cart`), when known.
    pub document: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when known.
    pub help: Option<String>,
}

impl From<&Diagnostic> for Problem {
    fn from(d: &Diagnostic) -> Self {
        Problem {
            file: d.location.as_ref().map(|l| l.file.clone()),
            line: d.location.as_ref().map(|l| l.line),
            column: d.location.as_ref().map(|l| l.column),
            path: d.path.clone(),
            document: d.document.clone(),
            message: d.message.clone(),
            help: d.help.clone(),
        }
    }
}

fn problems(errors: &Errors) -> Vec<Problem> {
    errors.diagnostics.iter().map(Problem::from).collect()
}

/// What the policies hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// AuthorizationPolicies.
    pub authorization_policies: usize,
    /// Of those, `action: ALLOW`.
    pub allow: usize,
    /// `action: DENY`.
    pub deny: usize,
    /// `action: AUDIT`.
    pub audit: usize,
    /// Dry-run (`istio.io/dry-run: "true"`).
    pub dry_run: usize,
    /// Rules over all AuthorizationPolicies.
    pub rules: usize,
    /// NetworkPolicies.
    pub network_policies: usize,
    /// ContainerPolicies.
    pub container_policies: usize,
    /// Inventory namespaces.
    pub namespaces: usize,
    /// Inventory workloads.
    pub workloads: usize,
}

fn summarise(set: &PolicySet) -> Summary {
    let mut s = Summary {
        authorization_policies: set.authorization.len(),
        network_policies: set.network.len(),
        container_policies: set.container.len(),
        namespaces: set.inventory.namespaces.len(),
        workloads: set.inventory.workloads.len(),
        ..Summary::default()
    };
    for p in &set.authorization {
        match p.action {
            Action::Allow => s.allow += 1,
            Action::Deny => s.deny += 1,
            Action::Audit => s.audit += 1,
        }
        s.dry_run += usize::from(p.dry_run);
        s.rules += p.rules.as_ref().map_or(0, Vec::len);
    }
    s
}

/// `check`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Whether the policies are valid and compiled.
    pub ok: bool,
    /// Every problem found (empty when `ok`).
    pub errors: Vec<Problem>,
    /// What the policies hold (absent when not `ok`).
    pub summary: Option<Summary>,
}

/// A compiled set of policies, or why there is none.
#[derive(Debug)]
pub struct Simulator {
    engine: Option<Engine>,
    check: CheckResult,
}

impl Simulator {
    /// Loads, validates and compiles `policies` (one YAML text) with the default mesh options
    /// (root namespace `istio-system`, trust domain `cluster.local`).
    pub fn new(policies: &str) -> Self {
        let sources = [SourceFile::new(POLICIES_FILE, policies)];
        let built = load(&sources).and_then(|set| {
            let engine = compile(&set, &Options::default())?;
            Ok((set, engine))
        });
        match built {
            Ok((set, engine)) => Simulator {
                engine: Some(engine),
                check: CheckResult {
                    ok: true,
                    errors: Vec::new(),
                    summary: Some(summarise(&set)),
                },
            },
            Err(e) => Simulator {
                engine: None,
                check: CheckResult {
                    ok: false,
                    errors: problems(&e),
                    summary: None,
                },
            },
        }
    }

    /// The validation result.
    pub fn check(&self) -> &CheckResult {
        &self.check
    }

    /// Decides every request in `requests` (see the module documentation for the forms).
    pub fn evaluate(&self, requests: &str) -> Result<Evaluation, Failure> {
        let Some(engine) = &self.engine else {
            return Err(Failure {
                stage: Stage::Policies,
                errors: self.check.errors.clone(),
            });
        };
        let requests = parse_requests(requests).map_err(|errors| Failure {
            stage: Stage::Request,
            errors,
        })?;
        Ok(decide_all(engine, requests))
    }
}

/// Which input an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The policies.
    Policies,
    /// The requests.
    Request,
}

/// `evaluate`'s answer when an input is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Which input.
    pub stage: Stage,
    /// Every problem found.
    pub errors: Vec<Problem>,
}

/// One decided request, as `palisade eval --output json` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluated {
    /// 1-based position in the input.
    pub index: usize,
    /// The name given, if any.
    pub name: Option<String>,
    /// The decision.
    #[serde(flatten)]
    pub decision: Decision,
    /// The one-paragraph explanation.
    pub explanation: String,
    /// Envoy's response code details.
    pub envoy_details: String,
    /// The verdict expected, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Verdict>,
    /// The deciding rule expected, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_rule: Option<String>,
    /// Whether the verdict (and rule) are the expected ones (absent when nothing was expected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_expected: Option<bool>,
}

/// Totals over the requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Requests decided.
    pub requests: usize,
    /// Allowed.
    pub allowed: usize,
    /// Denied.
    pub denied: usize,
    /// With an expectation that was not met.
    pub unexpected: usize,
}

/// Every decision.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// One per request, in input order.
    pub results: Vec<Evaluated>,
    /// Totals.
    pub totals: Totals,
}

fn decide_all(engine: &Engine, requests: Vec<Labelled>) -> Evaluation {
    let mut totals = Totals::default();
    let results = requests
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let decision = engine.decide(&l.request);
            totals.requests += 1;
            if decision.allowed() {
                totals.allowed += 1;
            } else {
                totals.denied += 1;
            }
            let rule = decision.rule.as_ref().map(|r| r.id.as_str());
            let as_expected = match (l.expect, &l.expect_rule) {
                (None, None) => None,
                (verdict, expected) => Some(
                    verdict.is_none_or(|v| v == decision.verdict)
                        && expected.as_deref().is_none_or(|r| Some(r) == rule),
                ),
            };
            if as_expected == Some(false) {
                totals.unexpected += 1;
            }
            Evaluated {
                index: i + 1,
                name: l.name,
                explanation: decision.explain(),
                envoy_details: decision.envoy_details(),
                decision,
                expect: l.expect,
                expect_rule: l.expect_rule,
                as_expected,
            }
        })
        .collect();
    Evaluation { results, totals }
}

/// A request with its optional name and expectations.
#[derive(Debug, Clone)]
struct Labelled {
    name: Option<String>,
    request: Request,
    expect: Option<Verdict>,
    expect_rule: Option<String>,
}

/// The labelled form (`examples/*/requests/*.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "description")]
    _description: Option<IgnoredAny>,
    request: Request,
    #[serde(default)]
    expect: Option<Verdict>,
    #[serde(default)]
    rule: Option<String>,
}

/// Tells the labelled form from a bare request.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    request: Option<IgnoredAny>,
}

/// Parses one JSON request, an array of them, or JSON lines. Every invalid item is a problem
/// with its line, column and field path in the whole text.
fn parse_requests(text: &str) -> Result<Vec<Labelled>, Vec<Problem>> {
    let whole = |e: &serde_json::Error| vec![json_problem(text, 0, e, None)];
    let items: Vec<(&RawValue, Option<usize>)> = if text.trim_start().starts_with('[') {
        let v: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| whole(&e))?;
        v.into_iter()
            .enumerate()
            .map(|(i, r)| (r, Some(i)))
            .collect()
    } else {
        let mut v = Vec::new();
        for item in serde_json::Deserializer::from_str(text).into_iter::<&RawValue>() {
            v.push((item.map_err(|e| whole(&e))?, None));
        }
        v
    };
    if items.is_empty() {
        return Err(vec![Problem {
            file: Some(REQUESTS_FILE.into()),
            line: None,
            column: None,
            path: None,
            document: None,
            message: "no request given".into(),
            help: Some("give a JSON request object, an array of them, or one per line".into()),
        }]);
    }
    let mut out = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (raw, index) in items {
        let item = raw.get();
        // The item is a slice of `text`: its start is the difference of the two addresses.
        let start = (item.as_ptr() as usize)
            .checked_sub(text.as_ptr() as usize)
            .filter(|s| *s <= text.len())
            .unwrap_or(0);
        match parse_item(item) {
            Ok(l) => out.push(l),
            Err((e, path)) => {
                let path = match (index, path.as_str()) {
                    (Some(i), "" | ".") => Some(format!("[{i}]")),
                    (Some(i), rest) => Some(format!("[{i}].{rest}")),
                    (None, "" | ".") => None,
                    (None, rest) => Some(rest.to_string()),
                };
                errors.push(json_problem(text, start, &e, path));
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn parse_item(item: &str) -> Result<Labelled, (serde_json::Error, String)> {
    let named = serde_json::from_str::<Probe>(item).is_ok_and(|p| p.request.is_some());
    let mut de = serde_json::Deserializer::from_str(item);
    if named {
        let n: Named = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| (e.path().to_string(), e.into_inner()))
            .map_err(|(p, e)| (e, p))?;
        Ok(Labelled {
            name: n.name,
            request: n.request,
            expect: n.expect,
            expect_rule: n.rule,
        })
    } else {
        let request: Request = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| (e.path().to_string(), e.into_inner()))
            .map_err(|(p, e)| (e, p))?;
        Ok(Labelled {
            name: None,
            request,
            expect: None,
            expect_rule: None,
        })
    }
}

/// A JSON error as a problem located in the whole text; `start` is the byte offset of the
/// text serde_json's line and column count from.
fn json_problem(text: &str, start: usize, e: &serde_json::Error, path: Option<String>) -> Problem {
    let full = e.to_string();
    let message = match full.rsplit_once(" at line ") {
        Some((m, _)) => m.to_string(),
        None => full,
    };
    let (line, column) = if e.line() > 0 {
        let base = text.get(start..).unwrap_or("");
        let offset = start.saturating_add(offset_of(base, e.line(), e.column()));
        let (l, c) = line_col(text, offset);
        (Some(l), Some(c))
    } else {
        (None, None)
    };
    Problem {
        file: Some(REQUESTS_FILE.into()),
        line,
        column,
        path,
        document: None,
        message: format!("invalid request: {message}"),
        help: Some("see the `Request` JSON schema in the README".into()),
    }
}

/// The byte offset of 1-based `line` and `column` (serde_json's, in bytes) in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let mut o = offset + column.saturating_sub(1).min(l.trim_end_matches('\n').len());
            while o > offset && !text.is_char_boundary(o) {
                o -= 1;
            }
            return o;
        }
        offset += l.len();
    }
    text.len()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, l)| l)
        .chars()
        .count()
        + 1;
    (line, column)
}

/// JSON for JavaScript; serialising these types cannot fail, but if it did the answer is
/// still a JSON error object.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        serde_json::json!({"ok": false, "stage": "internal", "errors": [{"message": e.to_string()}]})
            .to_string()
    })
}

#[derive(Serialize)]
struct Answered<'a, T> {
    ok: bool,
    #[serde(flatten)]
    value: &'a T,
}

#[derive(Serialize)]
struct Refused<'a> {
    ok: bool,
    #[serde(flatten)]
    failure: &'a Failure,
}

/// `check`'s JSON: `{ok, errors, summary}`.
pub fn check_json(policies: &str) -> String {
    to_json(Simulator::new(policies).check())
}

/// `evaluate`'s JSON: `{ok: true, results, totals}` or `{ok: false, stage, errors}`.
pub fn evaluation_json(result: &Result<Evaluation, Failure>) -> String {
    match result {
        Ok(value) => to_json(&Answered { ok: true, value }),
        Err(failure) => to_json(&Refused { ok: false, failure }),
    }
}

/// Compiles `policies` and decides `requests`.
pub fn evaluate(policies: &str, requests: &str) -> Result<Evaluation, Failure> {
    Simulator::new(policies).evaluate(requests)
}

/// Validates `policies`.
pub fn check(policies: &str) -> CheckResult {
    Simulator::new(policies).check().clone()
}

#[cfg(test)]
mod tests;
