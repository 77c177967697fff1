//! Reading inputs: policy files and directories, request JSON.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use palisade_engine::{
    Diagnostic, Errors, Location, PolicySet, Request, SourceFile, Verdict, compile, load,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::report::Failure;

/// Reads every file named, and every `*.yaml` / `*.yml` under every directory named
/// (recursively, in name order). Every unreadable input is reported.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>, Failure> {
    let mut files = Vec::new();
    let mut errors = Errors::default();
    for path in paths {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let before = files.len();
                walk(path, &mut files, &mut errors);
                if files.len() == before {
                    errors.diagnostics.push(
                        Diagnostic::new(format!(
                            "no `.yaml` or `.yml` files in directory `{}`",
                            path.display()
                        ))
                        .with_help("name policy and inventory files `*.yaml` or `*.yml`"),
                    );
                }
            }
            Ok(_) => read_file(path, &mut files, &mut errors),
            Err(e) => errors.diagnostics.push(Diagnostic::new(format!(
                "cannot read `{}`: {e}",
                path.display()
            ))),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(Failure::invalid(errors, &files))
    }
}

fn walk(dir: &Path, files: &mut Vec<SourceFile>, errors: &mut Errors) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.diagnostics.push(Diagnostic::new(format!(
                "cannot read directory `{}`: {e}",
                dir.display()
            )));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, files, errors);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            read_file(&path, files, errors);
        }
    }
}

fn read_file(path: &Path, files: &mut Vec<SourceFile>, errors: &mut Errors) {
    match fs::read_to_string(path) {
        Ok(text) => files.push(SourceFile::new(path.display().to_string(), text)),
        Err(e) => errors.diagnostics.push(Diagnostic::new(format!(
            "cannot read `{}`: {e}",
            path.display()
        ))),
    }
}

/// Loads and validates the sources, keeping the validated set (for counts).
pub fn load_set(sources: &[SourceFile]) -> Result<PolicySet, Failure> {
    load(sources).map_err(|e| Failure::invalid(e, sources))
}

/// Loads, validates and compiles the sources.
pub fn build(
    sources: &[SourceFile],
    options: &palisade_engine::Options,
) -> Result<(PolicySet, palisade_engine::Engine), Failure> {
    let set = load_set(sources)?;
    let engine = compile(&set, options).map_err(|e| Failure::invalid(e, sources))?;
    Ok((set, engine))
}

/// A request to decide, with an optional name and expected verdict.
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
    #[serde(default)]
    #[expect(dead_code, reason = "read for people; accepted so example files parse")]
    description: Option<String>,
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

/// Reads requests from a file or `-` (standard input).
pub fn read_requests(arg: &str) -> Result<(SourceFile, Vec<Labelled>), Failure> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::message(format!("cannot read standard input: {e}")))?;
        s
    } else {
        fs::read_to_string(arg)
            .map_err(|e| Failure::message(format!("cannot read `{arg}`: {e}")))?
    };
    let file = SourceFile::new(arg, text);
    let requests = parse_requests(&file)?;
    Ok((file, requests))
}

/// Parses one JSON request, a JSON array of them, or JSON lines (any whitespace-separated
/// sequence of JSON values). Each item is a `Request` or
/// `{name?, description?, request, expect?, rule?}`.
pub fn parse_requests(file: &SourceFile) -> Result<Vec<Labelled>, Failure> {
    let text = file.text.as_str();
    let fail = |d: Diagnostic| Failure::invalid(Errors::one(d), std::slice::from_ref(file));
    let items: Vec<(&RawValue, Option<usize>)> = if text.trim_start().starts_with('[') {
        let v: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| fail(json_diagnostic(file, 0, &e, None)))?;
        v.into_iter()
            .enumerate()
            .map(|(i, r)| (r, Some(i)))
            .collect()
    } else {
        let mut v = Vec::new();
        for item in serde_json::Deserializer::from_str(text).into_iter::<&RawValue>() {
            v.push((
                item.map_err(|e| fail(json_diagnostic(file, 0, &e, None)))?,
                None,
            ));
        }
        v
    };
    if items.is_empty() {
        return Err(fail(
            Diagnostic::new(format!("no requests in `{}`", file.name))
                .with_help("give a JSON request object, an array of them, or one per line"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut errors = Errors::default();
    for (raw, index) in items {
        let item = raw.get();
        let start = (item.as_ptr() as usize)
            .checked_sub(text.as_ptr() as usize)
            .filter(|s| *s <= text.len())
            .unwrap_or(0);
        let prefix = index.map(|i| format!("[{i}]"));
        match parse_item(item) {
            Ok(l) => out.push(l),
            Err((e, path)) => {
                let path = match (prefix, path.as_str()) {
                    (Some(p), "" | ".") => Some(p),
                    (Some(p), rest) => Some(format!("{p}.{rest}")),
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
        Err(Failure::invalid(errors, std::slice::from_ref(file)))
    }
}

fn parse_item(item: &str) -> Result<Labelled, (serde_json::Error, String)> {
    let named = serde_json::from_str::<Probe>(item)
        .map(|p| p.request.is_some())
        .unwrap_or(false);
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
        let r: Request = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| (e.path().to_string(), e.into_inner()))
            .map_err(|(p, e)| (e, p))?;
        Ok(Labelled {
            name: None,
            request: r,
            expect: None,
            expect_rule: None,
        })
    }
}

/// A JSON error as a diagnostic pointing into the request file. `start` is the byte offset
/// of the text the error's line and column count from.
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
        .with_help("see the `Request` JSON schema: `palisade eval --help` and the README");
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn parse(text: &str) -> Result<Vec<Labelled>, Failure> {
        parse_requests(&SourceFile::new("r.json", text))
    }

    #[test]
    fn one_object_an_array_and_json_lines_all_parse() {
        let one = r#"{"destination": {"port": 80}}"#;
        assert_eq!(parse(one).unwrap().len(), 1);
        assert_eq!(parse(&format!("[{one}, {one}]")).unwrap().len(), 2);
        assert_eq!(parse(&format!("{one}\n{one}\n{one}\n")).unwrap().len(), 3);
    }

    #[test]
    fn the_labelled_form_keeps_name_and_expectation() {
        let v = parse(r#"[{"name": "a", "request": {}, "expect": "deny"}]"#).unwrap();
        assert_eq!(v[0].name.as_deref(), Some("a"));
        assert_eq!(v[0].expect, Some(Verdict::Deny));
    }

    #[test]
    fn an_unknown_field_names_line_column_and_path() {
        let text = "[\n  {},\n  {\"destination\": {\"prot\": 1}}\n]";
        let Err(f) = parse(text) else {
            panic!("an unknown field must be refused")
        };
        let d = &f.errors.diagnostics[0];
        assert_eq!(d.path.as_deref(), Some("[1].destination.prot"));
        let l = d.location.as_ref().unwrap();
        assert_eq!((l.line, l.column), (3, 25));
        assert!(d.message.contains("unknown field `prot`"), "{}", d.message);
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(parse("  \n").is_err());
    }
}
