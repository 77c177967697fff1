//! Recorded traffic for `palisade replay`: three JSON-lines formats read into the engine's
//! [`Request`], each with the outcome the live system gave it when the recording says.
//!
//! - [`envoy`]: lines written by Envoy's access log with the `json_format` in `envoy/`
//!   (addresses, peer URI SAN, SNI, method, authority, path, chosen headers, response code
//!   and details); a 403 whose details are `rbac_access_denied_matched_policy[<rule>]` is a
//!   live denial by that rule, a 2xx a live allow;
//! - [`hubble`]: Cilium Hubble flows as `hubble observe -o json` prints them; the
//!   destination workload is described inline (namespace and labels), `FORWARDED` is a live
//!   allow and `DROPPED` a live denial;
//! - [`records`]: Palisade's own request records,
//!   `{"request": {...}, "live": {"verdict": "allow"|"deny", "rule": "..."}, "name": "..."}`.
//!
//! Readers convert at the edge: a line that is not valid for its format is a [`LineError`]
//! with its 1-based line number (or, with `skip_invalid`, skipped and kept in
//! [`Traffic::skipped`]); lines that carry no decision (a Hubble TCP `ACK`, an L7 response)
//! are counted in [`Traffic::ignored`].
//!
//! ```
//! use palisade_traffic::{Format, read};
//!
//! let text = r#"{"request": {"destination": {"port": 80}}, "live": {"verdict": "allow"}}"#;
//! let traffic = read(text, Some(Format::Records), false).unwrap();
//! assert_eq!(traffic.records.len(), 1);
//! ```

use std::fmt;

use palisade_engine::{Request, Verdict};
use serde::{Deserialize, Serialize};

pub mod envoy;
pub mod hubble;
pub mod records;

/// A recorded traffic format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Envoy access-log JSON lines ([`envoy`]).
    Envoy,
    /// `hubble observe -o json` lines ([`hubble`]).
    Hubble,
    /// Palisade request records ([`records`]).
    Records,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Envoy => "envoy",
            Format::Hubble => "hubble",
            Format::Records => "records",
        })
    }
}

/// What the live system did with a recorded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Live {
    /// Allowed or denied.
    pub verdict: Verdict,
    /// The deciding rule (`ns[..]-policy[..]-rule[..]`) when the recording names one, or
    /// `none` for a denial no rule decided (no ALLOW rule matched, as Envoy's RBAC details
    /// say `rbac_access_denied_matched_policy[none]`); `None` when the recording does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its 1-based line in the input.
    pub line: usize,
    /// A name, when the recording gives one (records format) or a request id (Envoy).
    pub name: Option<String>,
    /// The request, as the engine decides it.
    pub request: Request,
    /// What the live system did, when the recording says.
    pub live: Option<Live>,
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    /// Its 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for LineError {}

/// What one line holds, once read.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A request to decide.
    Record(Box<Record>),
    /// A line that carries no decision (why, for the count).
    Ignored(&'static str),
}

/// A whole recording, read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traffic {
    /// The format it was read as.
    pub format: Option<Format>,
    /// The requests, in input order.
    pub records: Vec<Record>,
    /// Lines skipped as invalid (only with `skip_invalid`).
    pub skipped: Vec<LineError>,
    /// Lines that carry no decision.
    pub ignored: usize,
}

/// Guesses the format from the first non-blank line: a Hubble flow has `flow` or `verdict`
/// and `IP`/`l4`/`source` endpoints; a record has `request`; anything else that is a JSON
/// object is taken as an Envoy access-log line.
pub fn detect(text: &str) -> Option<Format> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let v: serde_json::Value = serde_json::from_str(first).ok()?;
    let o = v.as_object()?;
    if o.contains_key("request") {
        Some(Format::Records)
    } else if o.contains_key("flow")
        || (o.contains_key("verdict") && (o.contains_key("IP") || o.contains_key("l4")))
    {
        Some(Format::Hubble)
    } else {
        Some(Format::Envoy)
    }
}

/// Reads one line in a format.
pub fn parse_line(format: Format, line: &str) -> Result<Line, String> {
    match format {
        Format::Envoy => envoy::parse(line),
        Format::Hubble => hubble::parse(line),
        Format::Records => records::parse(line),
    }
}

/// Reads a recording: every non-blank line in `format` (detected when `None`). The first
/// invalid line is the error, unless `skip_invalid`, which skips and keeps it.
pub fn read(text: &str, format: Option<Format>, skip_invalid: bool) -> Result<Traffic, LineError> {
    let format = match format.or_else(|| detect(text)) {
        Some(f) => f,
        None if text.trim().is_empty() => {
            return Ok(Traffic::default());
        }
        None => {
            return Err(LineError {
                line: text
                    .lines()
                    .position(|l| !l.trim().is_empty())
                    .map_or(1, |i| i.saturating_add(1)),
                message: "not a JSON object: cannot tell the format (give `--format`)".into(),
            });
        }
    };
    let mut traffic = Traffic {
        format: Some(format),
        ..Traffic::default()
    };
    for (i, line) in text.lines().enumerate() {
        let number = i.saturating_add(1);
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(format, line) {
            Ok(Line::Record(mut r)) => {
                r.line = number;
                traffic.records.push(*r);
            }
            Ok(Line::Ignored(_)) => traffic.ignored = traffic.ignored.saturating_add(1),
            Err(message) => {
                let e = LineError {
                    line: number,
                    message,
                };
                if skip_invalid {
                    traffic.skipped.push(e);
                } else {
                    return Err(e);
                }
            }
        }
    }
    Ok(traffic)
}

/// `ns[<ns>]-policy[<name>]-rule[<i>]` → `<ns>/<name>` (the policy a rule belongs to);
/// other ids are returned whole.
pub fn policy_of(rule: &str) -> String {
    rule.strip_prefix("ns[")
        .and_then(|r| r.split_once("]-policy["))
        .and_then(|(ns, rest)| {
            rest.rsplit_once("]-rule[")
                .map(|(p, _)| format!("{ns}/{p}"))
        })
        .or_else(|| {
            rule.strip_prefix("netpol[")
                .and_then(|r| r.split_once(']'))
                .map(|(p, _)| p.to_string())
        })
        .unwrap_or_else(|| rule.to_string())
}

/// Envoy's RBAC response details, `rbac_access_denied_matched_policy[<rule>|none]` → the rule
/// or `none`; `None` when the details are not RBAC's.
pub fn rbac_denial(details: &str) -> Option<String> {
    let inner = details
        .trim()
        .strip_prefix("rbac_access_denied_matched_policy[")?
        .strip_suffix(']')?;
    Some(if inner.is_empty() { "none" } else { inner }.to_string())
}

/// What [`Live::rule`] holds for a decision: its rule id, or `none`.
pub fn rule_or_none(rule: Option<&str>) -> &str {
    rule.unwrap_or("none")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_format_is_detected_from_the_first_line() {
        assert_eq!(detect("\n{\"request\": {}}\n"), Some(Format::Records));
        assert_eq!(
            detect(r#"{"flow": {"verdict": "FORWARDED"}}"#),
            Some(Format::Hubble)
        );
        assert_eq!(
            detect(r#"{"verdict": "DROPPED", "IP": {}}"#),
            Some(Format::Hubble)
        );
        assert_eq!(detect(r#"{"method": "GET"}"#), Some(Format::Envoy));
        assert_eq!(detect("not json"), None);
    }

    #[test]
    fn a_malformed_line_is_an_error_with_its_number() {
        let text = "{\"request\": {}}\n\n{\"request\": \n";
        let e = read(text, None, false).unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn skip_invalid_skips_and_counts() {
        let text = "{\"request\": {}}\nnope\n{\"request\": {}}\n";
        let t = read(text, None, true).unwrap();
        assert_eq!(t.records.len(), 2);
        assert_eq!(t.skipped.len(), 1);
        assert_eq!(t.skipped[0].line, 2);
        assert_eq!(t.records[1].line, 3);
    }

    #[test]
    fn rule_ids_name_their_policy() {
        assert_eq!(policy_of("ns[shop]-policy[cart]-rule[1]"), "shop/cart");
        assert_eq!(policy_of("netpol[data/x]-ingress[0]"), "data/x");
        assert_eq!(policy_of("(no-allow-matched)"), "(no-allow-matched)");
    }

    #[test]
    fn rbac_details_give_the_rule() {
        assert_eq!(
            rbac_denial("rbac_access_denied_matched_policy[ns[a]-policy[b]-rule[0]]"),
            Some("ns[a]-policy[b]-rule[0]".into())
        );
        assert_eq!(
            rbac_denial("rbac_access_denied_matched_policy[none]"),
            Some("none".into())
        );
        assert_eq!(rbac_denial("via_upstream"), None);
    }
}
