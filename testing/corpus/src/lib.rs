//! Palisade's decision corpus: policies, requests and the decisions Istio's and Kubernetes'
//! documented semantics give for them, run through every implementation behind one trait.
//!
//! The data lives in `cases/*.json`, one file per topic:
//!
//! ```json
//! {
//!   "description": "what the topic covers",
//!   "options": {"trustDomainAliases": ["old.local"]},
//!   "policies": ["policies/principals.yaml", "../../../examples/shop/inventory.yaml"],
//!   "defaults": {"destination": {"port": 8080}},
//!   "cases": [
//!     {"name": "a sentence naming the case", "request": {"http": {"path": "/"}},
//!      "expect": "allow", "rule": "ns[shop]-policy[cart]-rule[0]"}
//!   ]
//! }
//! ```
//!
//! `caseFiles` (optional) lists files that each hold one case — the examples' sample
//! requests are used this way, so they are checked where they are documented.
//!
//! Each case's `request` is deep-merged over `defaults` (objects merge key by key, anything
//! else replaces) and read as a [`Request`]. A case must say `expect` and `rule` (the deciding
//! rule id, or `null`); it may also say `step`, `audit` (rule id or `null`), `shadow` (the
//! dry-run results) and `network` (the NetworkPolicy outcome), which are then checked too.
//!
//! An implementation implements [`Decider`]; [`run`] drives it over a directory and returns a
//! [`Report`] with every case's outcome and the reason of each failure. [`Native`] is the
//! engine compiled for the host; the wasm hosts implement the same trait.
//!
//! ```no_run
//! use palisade_corpus::{Native, run};
//!
//! let report = run(std::path::Path::new("testing/corpus/cases"), &mut Native::default());
//! println!("{}", report.summary());
//! assert_eq!(report.failed(), 0);
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use palisade_engine::{
    Decision, Engine, Options, Request, ShadowResult, SourceFile, Step, Verdict, compile, load,
};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

mod error;

pub use error::{CaseFailure, DecideError, InvalidRequest, LoadError, Mismatch, TopicError};

/// One implementation of Palisade's decisions: the native engine, a wasm build in a test
/// host, the browser build.
pub trait Decider {
    /// A short name for reports (`native`, `proxy-wasm`, …).
    fn name(&self) -> String;
    /// Loads and compiles the policy files (YAML text with names) with these options,
    /// replacing whatever was loaded before.
    fn load(&mut self, files: &[SourceFile], options: &Options) -> Result<(), LoadError>;
    /// Decides one request with the policies last loaded.
    fn decide(&mut self, request: &Request) -> Result<Decision, DecideError>;
    /// The optional checks this implementation cannot answer (`step`, `audit`, `shadow`,
    /// `network.ingressRule`, `network.egressRule`): the runner leaves them out and lists
    /// each one left out in [`Report::unchecked`]. None by default.
    fn unsupported_checks(&self) -> &'static [&'static str] {
        &[]
    }
    /// Why this implementation cannot be given this request at all (a host that cannot
    /// express its transport, say): the case is then skipped and listed in
    /// [`Report::skipped`], not counted as run. `None` by default.
    fn cannot_express(&self, _request: &Request) -> Option<String> {
        None
    }
}

/// The engine, compiled natively and called directly.
#[derive(Debug, Default)]
pub struct Native {
    engine: Option<Engine>,
}

impl Decider for Native {
    fn name(&self) -> String {
        "native".into()
    }

    fn load(&mut self, files: &[SourceFile], options: &Options) -> Result<(), LoadError> {
        self.engine = None;
        let set = load(files).map_err(|e| LoadError::Invalid(e.to_string()))?;
        let engine = compile(&set, options).map_err(|e| LoadError::Compile(e.to_string()))?;
        self.engine = Some(engine);
        Ok(())
    }

    fn decide(&mut self, request: &Request) -> Result<Decision, DecideError> {
        self.engine
            .as_ref()
            .map(|e| e.decide(request))
            .ok_or(DecideError::NotLoaded)
    }
}

/// A topic file, as written in `cases/*.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// What the topic covers.
    pub description: String,
    /// Engine options for every case of the topic (defaults when absent).
    #[serde(default)]
    pub options: Option<Options>,
    /// Policy and inventory files, relative to the topic file.
    #[serde(default)]
    pub policies: Vec<String>,
    /// A partial request deep-merged under each case's request.
    #[serde(default)]
    pub defaults: Value,
    /// Files each holding one case (for example an example's sample requests), relative to
    /// the topic file; run before `cases`.
    #[serde(default, rename = "caseFiles")]
    pub case_files: Vec<String>,
    /// The cases.
    pub cases: Vec<Case>,
}

/// One request and what must be decided for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A sentence naming the case.
    pub name: String,
    /// A longer explanation, optional.
    #[serde(default)]
    pub description: Option<String>,
    /// A partial request, merged over the topic's `defaults`.
    #[serde(default)]
    pub request: Value,
    /// The expected verdict.
    pub expect: Verdict,
    /// The expected deciding rule id (`null`: no rule decided). Required.
    #[serde(default, deserialize_with = "present")]
    pub rule: Option<Option<String>>,
    /// The expected step, when checked.
    #[serde(default)]
    pub step: Option<Step>,
    /// The expected AUDIT rule id (`null`: none matched), when checked.
    #[serde(default, deserialize_with = "present")]
    pub audit: Option<Option<String>>,
    /// The expected dry-run results, in the engine's order (ALLOW first), when checked.
    #[serde(default)]
    pub shadow: Option<Vec<ShadowExpect>>,
    /// The expected NetworkPolicy outcome (`null`: none evaluated), when checked.
    #[serde(default, deserialize_with = "present")]
    pub network: Option<Option<NetworkExpect>>,
}

/// An expected dry-run result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowExpect {
    /// `ALLOW` or `DENY`.
    pub action: String,
    /// What the dry-run policies alone would decide.
    pub verdict: Verdict,
    /// The shadow effective policy id, or `null`.
    pub matched: Option<String>,
}

/// An expected NetworkPolicy outcome.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkExpect {
    /// Allow only when egress and ingress both allow.
    pub verdict: Verdict,
    /// The allowing ingress rule id, when checked.
    #[serde(default, deserialize_with = "present")]
    pub ingress_rule: Option<Option<String>>,
    /// The allowing egress rule id, when checked.
    #[serde(default, deserialize_with = "present")]
    pub egress_rule: Option<Option<String>>,
}

/// Distinguishes an absent field (`None`) from `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The topic file's stem (`principals`).
    pub topic: String,
    /// The case's name.
    pub name: String,
    /// `Ok` when the decision was as expected, else every difference.
    pub outcome: Result<(), CaseFailure>,
}

/// Every case's outcome, and the problems that kept cases from running.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The implementation's name.
    pub decider: String,
    /// Every case run (a case whose topic could not be loaded counts as failed).
    pub cases: Vec<CaseResult>,
    /// Problems outside any case (an unreadable directory or topic file).
    pub errors: Vec<String>,
    /// Cases not run because the implementation cannot express their request, with why.
    pub skipped: Vec<String>,
    /// Optional checks left out because the implementation cannot answer them, per case.
    pub unchecked: Vec<String>,
}

impl Report {
    /// Cases executed.
    pub fn total(&self) -> usize {
        self.cases.len()
    }

    /// Cases that failed, plus problems outside cases.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| c.outcome.is_err()).count() + self.errors.len()
    }

    /// The failures, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.errors.clone();
        out.extend(self.cases.iter().filter_map(|c| {
            c.outcome
                .as_ref()
                .err()
                .map(|e| format!("[{}] {}: {}", c.topic, c.name, e))
        }));
        out
    }

    /// Per topic: (topic, cases, failed), in file order.
    pub fn per_topic(&self) -> Vec<(String, usize, usize)> {
        let mut out: Vec<(String, usize, usize)> = Vec::new();
        for c in &self.cases {
            let failed = usize::from(c.outcome.is_err());
            match out.iter_mut().find(|(t, _, _)| *t == c.topic) {
                Some(row) => {
                    row.1 += 1;
                    row.2 += failed;
                }
                None => out.push((c.topic.clone(), 1, failed)),
            }
        }
        out
    }

    /// A short text: totals, then one line per topic.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} cases, {} failed\n",
            self.decider,
            self.total(),
            self.failed()
        );
        if !self.skipped.is_empty() || !self.unchecked.is_empty() {
            s.push_str(&format!(
                "  ({} cases skipped, {} optional checks left out)\n",
                self.skipped.len(),
                self.unchecked.len()
            ));
        }
        for (topic, n, f) in self.per_topic() {
            s.push_str(&format!("  {topic:<24} {n:>4} cases, {f} failed\n"));
        }
        s
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())?;
        for line in &self.skipped {
            writeln!(f, "SKIP {line}")?;
        }
        for line in &self.unchecked {
            writeln!(f, "UNCHECKED {line}")?;
        }
        for line in self.failures() {
            writeln!(f, "FAIL {line}")?;
        }
        Ok(())
    }
}

/// Reads every `*.json` topic of a directory, sorted by file name.
pub fn load_topics(dir: &Path) -> Result<Vec<(PathBuf, Topic)>, TopicError> {
    let entries = fs::read_dir(dir).map_err(|e| TopicError::Read {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| load_topic(&p).map(|t| (p, t)))
        .collect()
}

/// Reads one topic file.
pub fn load_topic(path: &Path) -> Result<Topic, TopicError> {
    let text = fs::read_to_string(path).map_err(|e| TopicError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| TopicError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The policy files of a topic, read relative to the topic file's directory.
pub fn policy_files(topic_path: &Path, topic: &Topic) -> Result<Vec<SourceFile>, LoadError> {
    let base = topic_path.parent().unwrap_or(Path::new("."));
    topic
        .policies
        .iter()
        .map(|rel| {
            let p = base.join(rel);
            fs::read_to_string(&p)
                .map(|text| SourceFile::new(rel.clone(), text))
                .map_err(|e| LoadError::Read {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// Merges `over` into `base`: objects key by key, anything else replaced.
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The full request of a case: `defaults` with the case's request merged over it.
pub fn case_request(defaults: &Value, case: &Case) -> Result<Request, InvalidRequest> {
    let mut merged = match defaults {
        Value::Null => Value::Object(serde_json::Map::new()),
        d => d.clone(),
    };
    deep_merge(&mut merged, &case.request);
    serde_json::from_value(merged).map_err(|e| InvalidRequest(e.to_string()))
}

/// Compares a decision with a case's expectations; every difference is named.
pub fn check(case: &Case, d: &Decision) -> Result<(), Mismatch> {
    check_except(case, d, &[])
}

/// The optional checks a case makes that are in `unsupported` (see
/// [`Decider::unsupported_checks`]).
pub fn left_out(case: &Case, unsupported: &[&str]) -> Vec<&'static str> {
    let network = case.network.as_ref().and_then(|n| n.as_ref());
    [
        ("step", case.step.is_some()),
        ("audit", case.audit.is_some()),
        ("shadow", case.shadow.is_some()),
        (
            "network.ingressRule",
            network.is_some_and(|n| n.ingress_rule.is_some()),
        ),
        (
            "network.egressRule",
            network.is_some_and(|n| n.egress_rule.is_some()),
        ),
    ]
    .into_iter()
    .filter(|(name, made)| *made && unsupported.contains(name))
    .map(|(name, _)| name)
    .collect()
}

/// [`check`], leaving out the optional checks named in `unsupported`.
pub fn check_except(case: &Case, d: &Decision, unsupported: &[&str]) -> Result<(), Mismatch> {
    let mut case = case.clone();
    let left_out = left_out(&case, unsupported);
    if left_out.contains(&"step") {
        case.step = None;
    }
    if left_out.contains(&"audit") {
        case.audit = None;
    }
    if left_out.contains(&"shadow") {
        case.shadow = None;
    }
    if let Some(Some(n)) = &mut case.network {
        if left_out.contains(&"network.ingressRule") {
            n.ingress_rule = None;
        }
        if left_out.contains(&"network.egressRule") {
            n.egress_rule = None;
        }
    }
    let case = &case;
    let mut diffs = Vec::new();
    if d.verdict != case.expect {
        diffs.push(format!(
            "verdict: expected {}, got {}",
            case.expect, d.verdict
        ));
    }
    let got_rule = d.rule.as_ref().map(|r| r.id.clone());
    match &case.rule {
        None => diffs.push("the case does not say `rule` (use null for none)".into()),
        Some(want) if *want != got_rule => diffs.push(format!(
            "rule: expected {}, got {}",
            show(want.as_deref()),
            show(got_rule.as_deref())
        )),
        Some(_) => {}
    }
    if let Some(step) = case.step
        && step != d.step
    {
        diffs.push(format!("step: expected {step:?}, got {:?}", d.step));
    }
    if let Some(want) = &case.audit {
        let got = d.audit.as_ref().map(|r| r.id.clone());
        if *want != got {
            diffs.push(format!(
                "audit: expected {}, got {}",
                show(want.as_deref()),
                show(got.as_deref())
            ));
        }
    }
    if let Some(want) = &case.shadow {
        let got: Vec<ShadowExpect> = d.shadow.iter().map(shadow_of).collect();
        if *want != got {
            diffs.push(format!("shadow: expected {want:?}, got {got:?}"));
        }
    }
    if let Some(want) = &case.network {
        check_network(want.as_ref(), d, &mut diffs);
    }
    if !d.errors.is_empty() {
        diffs.push(format!("engine errors: {}", d.error_message()));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(Mismatch {
            differences: diffs,
            explanation: d.explain(),
        })
    }
}

fn check_network(want: Option<&NetworkExpect>, d: &Decision, diffs: &mut Vec<String>) {
    match (want, &d.network) {
        (None, None) => {}
        (None, Some(n)) => diffs.push(format!(
            "network: expected none evaluated, got {}",
            n.verdict
        )),
        (Some(_), None) => diffs.push("network: expected an outcome, got none".into()),
        (Some(w), Some(n)) => {
            if w.verdict != n.verdict {
                diffs.push(format!(
                    "network verdict: expected {}, got {}",
                    w.verdict, n.verdict
                ));
            }
            let pairs = [
                ("ingress", &w.ingress_rule, &n.ingress_rule),
                ("egress", &w.egress_rule, &n.egress_rule),
            ];
            for (dir, want, got) in pairs {
                let got = got.as_ref().map(|r| r.id.clone());
                if let Some(want) = want
                    && *want != got
                {
                    diffs.push(format!(
                        "network {dir} rule: expected {}, got {}",
                        show(want.as_deref()),
                        show(got.as_deref())
                    ));
                }
            }
        }
    }
}

fn shadow_of(s: &ShadowResult) -> ShadowExpect {
    ShadowExpect {
        action: s.action.clone(),
        verdict: s.verdict,
        matched: s.matched.as_ref().map(|r| r.id.clone()),
    }
}

fn show(id: Option<&str>) -> String {
    id.map_or_else(|| "null".to_string(), |s| format!("`{s}`"))
}

/// Runs every topic of `dir` through `decider`. A topic whose files cannot be loaded fails
/// all its cases with the reason.
pub fn run(dir: &Path, decider: &mut dyn Decider) -> Report {
    let mut report = Report {
        decider: decider.name(),
        ..Report::default()
    };
    let topics = match load_topics(dir) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    for (path, topic) in topics {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        run_topic(&path, &name, &topic, decider, &mut report);
    }
    report
}

/// Runs one topic, appending its cases to the report.
pub fn run_topic(
    path: &Path,
    name: &str,
    topic: &Topic,
    decider: &mut dyn Decider,
    report: &mut Report,
) {
    let options = topic.options.clone().unwrap_or_default();
    let loaded = policy_files(path, topic).and_then(|files| decider.load(&files, &options));
    let base = path.parent().unwrap_or(Path::new("."));
    let mut cases = Vec::new();
    for rel in &topic.case_files {
        let p = base.join(rel);
        match fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Case>(&t).map_err(|e| e.to_string()))
        {
            Ok(c) => cases.push(c),
            Err(e) => report
                .errors
                .push(format!("[{name}] case file `{}`: {e}", p.display())),
        }
    }
    cases.extend(topic.cases.iter().cloned());
    let unsupported = decider.unsupported_checks();
    for case in &cases {
        let request = case_request(&topic.defaults, case);
        if let Ok(req) = &request
            && let Some(why) = decider.cannot_express(req)
        {
            report
                .skipped
                .push(format!("[{name}] {}: {why}", case.name));
            continue;
        }
        for check in left_out(case, unsupported) {
            report
                .unchecked
                .push(format!("[{name}] {}: {check}", case.name));
        }
        let outcome = match &loaded {
            Err(e) => Err(CaseFailure::TopicNotLoaded(e.clone())),
            Ok(()) => request
                .map_err(CaseFailure::from)
                .and_then(|req| decider.decide(&req).map_err(CaseFailure::from))
                .and_then(|d| check_except(case, &d, unsupported).map_err(CaseFailure::from)),
        };
        report.cases.push(CaseResult {
            topic: name.to_string(),
            name: case.name.clone(),
            outcome,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_merge_merges_objects_and_replaces_the_rest() {
        let mut base = serde_json::json!({"a": {"b": 1, "c": [1]}, "d": 1});
        deep_merge(&mut base, &serde_json::json!({"a": {"c": [2]}, "e": 3}));
        assert_eq!(
            base,
            serde_json::json!({"a": {"b": 1, "c": [2]}, "d": 1, "e": 3})
        );
    }

    #[test]
    fn a_case_without_rule_is_reported() {
        let case: Case =
            serde_json::from_value(serde_json::json!({"name": "n", "expect": "allow"}))
                .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(case.rule, None);
        let case: Case = serde_json::from_value(
            serde_json::json!({"name": "n", "expect": "allow", "rule": null}),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(case.rule, Some(None));
    }
}
