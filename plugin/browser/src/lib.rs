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
//! Each takes an optional last argument, the mesh options as JSON — the engine's `Options`:
//! `{"rootNamespace", "trustDomain", "trustDomainAliases", "pathNormalization",
//! "extensionProviders"}`, every field optional (defaults `istio-system`, `cluster.local`, none, `BASE`), as `palisade`'s
//! `--root-namespace`, `--trust-domain`, `--trust-domain-alias` and `--path-normalization`
//! set them. Options that do not read are an error of the policies' stage, located in
//! `options.json`.
//!
//! The logic is in the plain functions of this module ([`check`], [`evaluate`],
//! [`Simulator`]), tested natively; [`js`] is the thin `#[wasm_bindgen]` layer. Nothing here
//! panics: bad input is an error object, never a trap.

use palisade_engine::labelled::{Labelled, decide_all};
use palisade_engine::{
    Diagnostic, Engine, Errors, Options, PolicySet, SourceFile, authz::Action, compile, load,
};
use serde::Serialize;

pub mod js;

/// The name the policies' text goes by in error locations.
pub const POLICIES_FILE: &str = "policies.yaml";
/// The name the requests' text goes by in error locations.
pub const REQUESTS_FILE: &str = "request.json";
/// The name the mesh options' text goes by in error locations.
pub const OPTIONS_FILE: &str = "options.json";

/// Reads the mesh options (JSON; blank: the defaults).
pub fn parse_options(text: &str) -> Result<Options, Problem> {
    if text.trim().is_empty() {
        return Ok(Options::default());
    }
    serde_json::from_str(text).map_err(|e| Problem {
        file: Some(OPTIONS_FILE.into()),
        line: Some(e.line()),
        column: Some(e.column()),
        path: None,
        document: None,
        message: format!("the mesh options do not read: {e}"),
        help: Some(
            "an object with any of rootNamespace, trustDomain, trustDomainAliases (a list) and pathNormalization (NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)".into(),
        ),
    })
}

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
    /// `action: CUSTOM`.
    pub custom: usize,
    /// Dry-run (`istio.io/dry-run: "true"`).
    pub dry_run: usize,
    /// Rules over all AuthorizationPolicies.
    pub rules: usize,
    /// RequestAuthentications.
    pub request_authentications: usize,
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
        request_authentications: set.authentication.len(),
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
            Action::Custom => s.custom += 1,
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
        Simulator::with_options(policies, "")
    }

    /// [`Simulator::new`] with the mesh options given as JSON (see the module documentation;
    /// blank: the defaults).
    pub fn with_options(policies: &str, options: &str) -> Self {
        let options = match parse_options(options) {
            Ok(o) => o,
            Err(problem) => {
                return Simulator {
                    engine: None,
                    check: CheckResult {
                        ok: false,
                        errors: vec![problem],
                        summary: None,
                    },
                };
            }
        };
        let sources = [SourceFile::new(POLICIES_FILE, policies)];
        let built = load(&sources).and_then(|set| {
            let engine = compile(&set, &options)?;
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
        let (results, totals) = decide_all(engine, requests);
        Ok(Evaluation { results, totals })
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

pub use palisade_engine::labelled::{Evaluated, Totals};

/// Every decision.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// One per request, in input order.
    pub results: Vec<Evaluated>,
    /// Totals.
    pub totals: Totals,
}

/// Parses the requests' text (see the module documentation for the forms); every invalid
/// item is a problem located in `request.json`.
fn parse_requests(text: &str) -> Result<Vec<Labelled>, Vec<Problem>> {
    palisade_engine::labelled::parse(&SourceFile::new(REQUESTS_FILE, text))
        .map_err(|e| problems(&e))
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

/// `check`'s JSON: `{ok, errors, summary}`, with the mesh options given as JSON.
pub fn check_json(policies: &str, options: &str) -> String {
    to_json(Simulator::with_options(policies, options).check())
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

/// [`evaluate`] with the mesh options given as JSON.
pub fn evaluate_with(policies: &str, requests: &str, options: &str) -> Result<Evaluation, Failure> {
    Simulator::with_options(policies, options).evaluate(requests)
}

/// Validates `policies`.
pub fn check(policies: &str) -> CheckResult {
    Simulator::new(policies).check().clone()
}

#[cfg(test)]
mod tests;
