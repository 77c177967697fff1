//! Palisade request records: one JSON object a line,
//! `{"request": {...}, "live": {"verdict": "allow"|"deny", "rule": "..."}, "name": "..."}`.
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `request` | yes | the engine's request JSON (as `palisade eval --request` reads it) |
//! | `live.verdict` | with `live` | `allow` or `deny`: what the live system did |
//! | `live.rule` | no | the rule that decided live (`ns[..]-policy[..]-rule[..]`) |
//! | `name` | no | a label shown in reports |
//!
//! Unknown fields are errors (the format is ours: a typo must not pass silently).

use palisade_engine::Request;
use serde::{Deserialize, Serialize};

use crate::{Line, Live, Record};

/// One record as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordLine {
    /// A label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The request.
    pub request: Request,
    /// What the live system did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Live>,
}

impl From<&Record> for RecordLine {
    fn from(r: &Record) -> Self {
        RecordLine {
            name: r.name.clone(),
            request: r.request.clone(),
            live: r.live.clone(),
        }
    }
}

/// Reads one line.
pub fn parse(line: &str) -> Result<Line, String> {
    let r: RecordLine = serde_json::from_str(line).map_err(|e| {
        let text = e.to_string();
        match text.rsplit_once(" at line ") {
            Some((m, _)) => format!("invalid record: {m}"),
            None => format!("invalid record: {text}"),
        }
    })?;
    if let Some(Live {
        rule: Some(rule), ..
    }) = &r.live
        && rule.is_empty()
    {
        return Err("invalid record: `live.rule` is empty".into());
    }
    Ok(Line::Record(Box::new(Record {
        line: 0,
        name: r.name,
        request: r.request,
        live: r.live,
    })))
}

/// Writes a record as one line (no newline).
pub fn to_line(record: &Record) -> String {
    serde_json::to_string(&RecordLine::from(record)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use palisade_engine::Verdict;

    use super::*;

    #[test]
    fn a_record_round_trips() {
        let line = r#"{"name":"a","request":{"destination":{"port":80}},"live":{"verdict":"deny","rule":"ns[x]-policy[y]-rule[0]"}}"#;
        let Line::Record(r) = parse(line).unwrap() else {
            panic!("a record")
        };
        assert_eq!(r.live.as_ref().unwrap().verdict, Verdict::Deny);
        assert_eq!(parse(&to_line(&r)).unwrap(), Line::Record(r));
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let e = parse(r#"{"request": {}, "lve": {}}"#).unwrap_err();
        assert!(e.contains("unknown field `lve`"), "{e}");
        let e = parse(r#"{"request": {}, "live": {"verdict": "maybe"}}"#).unwrap_err();
        assert!(e.contains("maybe"), "{e}");
    }
}
