//! Requests as people write them (`palisade eval`, the browser simulator, the examples'
//! `requests/*.json`): one JSON request, an array of them, or JSON lines, each bare or in the
//! labelled form `{name?, description?, request, expect?, rule?}`; and their decisions with the
//! expectations checked. Every invalid item is a [`Diagnostic`] with its line, column and field
//! path in the whole text.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decision::{Decision, Step, Verdict};
use crate::diag::{Diagnostic, Errors, Location};
use crate::engine::Engine;
use crate::request::Request;
use crate::source::SourceFile;

/// A request to decide, with an optional name and expectations.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// The name given, if any.
    pub name: Option<String>,
    /// The request.
    pub request: Request,
    /// The verdict the author expects, if given.
    pub expect: Option<Verdict>,
    /// The deciding rule the author expects (`ns[..]-policy[..]-rule[..]`), if given.
    pub expect_rule: Option<String>,
}

/// The labelled form of a request item, as `examples/*/requests/*.json` write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    #[serde(default)]
    name: Option<String>,
    /// Read for people; accepted so that example files parse.
    #[serde(default, rename = "description")]
    _description: Option<IgnoredAny>,
    request: Request,
    #[serde(default)]
    expect: Option<Verdict>,
    /// The expected deciding rule.
    #[serde(default)]
    rule: Option<String>,
}

/// Just enough to tell the labelled form from a bare request.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    request: Option<IgnoredAny>,
}

/// Parses `file`: one JSON request, a JSON array of them, or JSON lines (any
/// whitespace-separated sequence of JSON values).
pub fn parse(file: &SourceFile) -> Result<Vec<Labelled>, Errors> {
    let text = file.text.as_str();
    let whole = |e: &serde_json::Error| Errors::one(json_diagnostic(file, 0, e, None));
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
        return Err(Errors::one(
            Diagnostic::new(format!("no requests in `{}`", file.name))
                .with_help("give a JSON request object, an array of them, or one per line"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut errors = Errors::default();
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
                errors
                    .diagnostics
                    .push(json_diagnostic(file, start, &e, path));
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

/// A JSON error as a diagnostic pointing into `file`; `start` is the byte offset of the text
/// serde_json's line and column count from.
fn json_diagnostic(
    file: &SourceFile,
    start: usize,
    e: &serde_json::Error,
    path: Option<String>,
) -> Diagnostic {
    let full = e.to_string();
    let message = match full.rsplit_once(" at line ") {
        Some((m, _)) => m.to_string(),
        None => full,
    };
    let mut d = Diagnostic::new(format!("invalid request: {message}"))
        .with_help("see the `Request` JSON schema in the README");
    d.path = path;
    if e.line() > 0 {
        let base = file.text.get(start..).unwrap_or("");
        let offset = start.saturating_add(offset_of(base, e.line(), e.column()));
        let (line, column) = line_col(&file.text, offset);
        d.location = Some(Location {
            file: file.name.clone(),
            line,
            column,
            offset,
            len: 0,
        });
    }
    d
}

/// The byte offset of 1-based `line` and `column` (serde_json's, in bytes) in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col = column.saturating_sub(1).min(l.trim_end_matches('\n').len());
            // Stay on a character boundary.
            let mut o = offset + col;
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
    /// Envoy's response code details on a denial (`rbac_access_denied_matched_policy[…]`);
    /// absent when the request is allowed, as Envoy shows none then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_details: Option<String>,
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

impl Evaluated {
    /// The name given, or `#<index>`.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("#{}", self.index))
    }

    /// The deciding rule's id, or the deciding step in parentheses when no one rule decided.
    pub fn decider(&self) -> String {
        match &self.decision.rule {
            Some(r) => r.id.clone(),
            None => format!("({})", step_name(self.decision.step)),
        }
    }
}

/// A step's name as it is serialised (`no-allow-matched`, ...).
pub fn step_name(step: Step) -> String {
    step.as_str().to_string()
}

/// Totals over a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Requests decided.
    pub requests: usize,
    /// Allowed.
    pub allowed: usize,
    /// Denied.
    pub denied: usize,
    /// Pending: a CUSTOM rule matched and its provider's answer was not given (neither
    /// allowed nor denied).
    pub pending: usize,
    /// With an expectation that was not met.
    pub unexpected: usize,
}

/// Decides every request, in order, checking each one's expectations.
pub fn decide_all(engine: &Engine, requests: Vec<Labelled>) -> (Vec<Evaluated>, Totals) {
    decide_all_with(engine, requests, None)
}

/// [`decide_all`], with a verifier for raw `jwtToken`s.
pub fn decide_all_with(
    engine: &Engine,
    requests: Vec<Labelled>,
    verifier: Option<&dyn crate::authn::TokenVerifier>,
) -> (Vec<Evaluated>, Totals) {
    let mut totals = Totals::default();
    let results = requests
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let decision = engine.decide_with(&l.request, verifier);
            totals.requests += 1;
            match decision.verdict {
                Verdict::Allow => totals.allowed += 1,
                Verdict::Deny => totals.denied += 1,
                Verdict::CustomPending => totals.pending += 1,
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
                envoy_details: (!decision.allowed()).then(|| decision.envoy_details()),
                decision,
                expect: l.expect,
                expect_rule: l.expect_rule,
                as_expected,
            }
        })
        .collect();
    (results, totals)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn bare_labelled_arrays_and_lines_parse() {
        let bare = r#"{"http": {"method": "GET", "host": "a", "path": "/"}}"#;
        let labelled = format!(r#"{{"name": "n", "request": {bare}, "expect": "deny"}}"#);
        let one = parse(&SourceFile::new("r.json", bare)).unwrap();
        assert_eq!(one.len(), 1);
        assert!(one[0].name.is_none() && one[0].expect.is_none());
        let array = parse(&SourceFile::new("r.json", format!("[{bare}, {labelled}]"))).unwrap();
        assert_eq!(array.len(), 2);
        assert_eq!(array[1].name.as_deref(), Some("n"));
        assert_eq!(array[1].expect, Some(Verdict::Deny));
        let lines = parse(&SourceFile::new("r.json", format!("{bare}\n{labelled}\n"))).unwrap();
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn an_invalid_item_is_located_in_the_whole_text_with_its_path() {
        let text = "[{\"http\": {\"method\": \"GET\", \"host\": \"a\", \"path\": \"/\"}},\n {\"http\": {\"method\": 7}}]";
        let e = parse(&SourceFile::new("r.json", text)).unwrap_err();
        let d = &e.diagnostics[0];
        assert!(d.message.starts_with("invalid request:"), "{}", d.message);
        assert_eq!(d.path.as_deref(), Some("[1].http.method"));
        let at = d.location.as_ref().unwrap();
        assert_eq!((at.file.as_str(), at.line), ("r.json", 2));
        let empty = parse(&SourceFile::new("r.json", "  ")).unwrap_err();
        assert!(empty.diagnostics[0].message.contains("no requests"));
    }
}
