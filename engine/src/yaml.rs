//! Reading YAML with source positions, and a small typed decoder over it.
//!
//! We read with `saphyr` (the maintained successor of yaml-rust, pure Rust, builds for every
//! wasm target) keeping each node's position, then decode documents by hand with [`Fields`]:
//! this gives every error its exact field path and position, rejects unknown fields with a
//! "did you mean" hint, and keeps scalars as the user wrote them (`"80"` and `80` are both the
//! string `80`, as Kubernetes' own decoder would accept for a string field).

use std::collections::BTreeMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span, SpannedEventReceiver};

use crate::diag::{Diagnostic, Location};

/// A position in the input (line 1-based, column 1-based, character index).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Character index from the start of the file.
    pub index: usize,
    /// Length in characters (0 when unknown).
    pub len: usize,
}

/// A YAML node, owned, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// The node's content.
    pub value: Value,
}

/// A YAML node's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// A scalar as written (after YAML unquoting); `plain` is false when it was quoted.
    Scalar {
        /// The text.
        text: String,
        /// Whether it was an unquoted plain scalar.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in input order: key, the key's position, value.
    Map(Vec<(String, Pos, Node)>),
}

/// Parses every document of a YAML stream. Empty documents are skipped.
///
/// The parser's events build [`Node`]s directly (no intermediate YAML tree): a hosted plugin
/// loads its policy once, and wasm linear memory never shrinks, so the peak of this load stays
/// resident for the plugin's lifetime. Semantics are those of `saphyr`'s loader, which this
/// replaced: duplicate keys are an error, aliases are expanded (at most 100,000 nodes in all),
/// tags are ignored, nesting deeper than 128 is refused, and scalars are kept as written.
pub fn load_documents(text: &str) -> Result<Vec<Node>, Diagnostic> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        return Err(invalid_yaml(e.marker(), e.info()));
    }
    if let Some(d) = builder.error {
        return Err(d);
    }
    Ok(builder.docs)
}

const MAX_DEPTH: usize = 128;

/// The nodes alias expansion may produce in all (as `saphyr`'s loader: a "billion laughs"
/// document is refused instead of exhausting memory).
const ALIAS_BUDGET: usize = 100_000;

fn invalid_yaml(m: &Marker, info: &str) -> Diagnostic {
    let mut d = Diagnostic::new(format!("invalid YAML: {info}"));
    d.location = Some(Location {
        file: String::new(),
        line: m.line(),
        column: m.col() + 1,
        offset: m.index(),
        len: 0,
    });
    d
}

fn diagnostic_at(pos: Pos, msg: &str) -> Diagnostic {
    error_at_pos(pos, "", msg)
}

fn span_pos(start: &Marker, end: &Marker) -> Pos {
    Pos {
        line: start.line(),
        column: start.col() + 1,
        index: start.index(),
        len: end.index().saturating_sub(start.index()),
    }
}

/// A mapping key waiting for its value.
#[derive(Debug)]
struct Key {
    text: String,
    style: ScalarStyle,
    pos: Pos,
    mark: Marker,
}

/// A collection being read.
#[derive(Debug)]
struct Frame {
    /// Its start.
    start: Marker,
    /// `Seq` or `Map`, filled as the events come.
    value: Value,
    /// Its anchor (0: none).
    anchor: usize,
    /// The nesting level its children are at.
    child_depth: usize,
    /// A mapping's key waiting for its value.
    key: Option<Key>,
    /// A mapping key that is not a scalar: refused when the mapping ends.
    bad_key: bool,
    /// A mapping's key styles, beside its entries (duplicate detection compares text and style).
    styles: Vec<ScalarStyle>,
}

/// Builds [`Node`]s from the parser's events, keeping the first problem.
#[derive(Debug, Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<Frame>,
    /// Anchored nodes, by anchor id.
    anchors: BTreeMap<usize, Node>,
    alias_budget_used: usize,
    error: Option<Diagnostic>,
}

/// A scalar's text at its exact size: the parser's own buffers have room to spare (128
/// bytes and more for a three-letter key), and a policy has tens of thousands of scalars.
fn exact(text: std::borrow::Cow<'_, str>) -> String {
    let mut s = text.into_owned();
    s.shrink_to_fit();
    s
}

/// Whether a collection's tag is not one of YAML's core schema (such a tag counts one more
/// nesting level, as the tree loader's `Tagged` node did).
fn tag_is_custom(tag: Option<&saphyr_parser::Tag>) -> bool {
    tag.is_some_and(|t| !t.is_yaml_core_schema())
}

/// Counts a subtree's nodes (mapping keys included) against `budget`; false past it.
fn within_budget(node: &Node, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match &node.value {
        Value::Seq(items) => items.iter().all(|n| within_budget(n, budget)),
        Value::Map(entries) => entries.iter().all(|(_, _, v)| {
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            within_budget(v, budget)
        }),
        Value::Null | Value::Scalar { .. } => true,
    }
}

impl Builder {
    fn fail(&mut self, d: Diagnostic) {
        if self.error.is_none() {
            self.error = Some(d);
        }
    }

    /// The nesting level of the next node.
    fn depth(&self) -> usize {
        self.stack.last().map_or(0, |f| f.child_depth)
    }

    /// Puts a finished node into its parent (or makes it a document).
    fn insert(&mut self, node: Node, anchor: usize, key_style: ScalarStyle, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(parent) = self.stack.last_mut() else {
            if node.value != Value::Null {
                self.docs.push(node);
            }
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match parent.key.take() {
                None => {
                    let text = match node.value {
                        Value::Scalar { text, .. } => text,
                        Value::Null => String::new(),
                        Value::Seq(_) | Value::Map(_) => {
                            parent.bad_key = true;
                            String::new()
                        }
                    };
                    let pos = Pos {
                        len: text.chars().count(),
                        ..node.pos
                    };
                    parent.key = Some(Key {
                        text,
                        style: key_style,
                        pos,
                        mark,
                    });
                }
                Some(key) => {
                    let duplicate = entries
                        .iter()
                        .zip(&parent.styles)
                        .any(|((k, _, _), s)| *k == key.text && *s == key.style);
                    if duplicate {
                        let d = invalid_yaml(&key.mark, "duplicated key in mapping");
                        self.fail(d);
                        return;
                    }
                    parent.styles.push(key.style);
                    entries.push((key.text, key.pos, node));
                }
            },
            Value::Null | Value::Scalar { .. } => {}
        }
    }

    fn start(&mut self, value: Value, anchor: usize, tagged: bool, span: &Span) {
        let depth = self.depth() + usize::from(tagged);
        if depth > MAX_DEPTH {
            let pos = span_pos(&span.start, &span.end);
            self.fail(diagnostic_at(pos, "YAML nesting is too deep"));
        }
        self.stack.push(Frame {
            start: span.start,
            value,
            anchor,
            child_depth: depth + 1,
            key: None,
            bad_key: false,
            styles: Vec::new(),
        });
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        if self.error.is_some() {
            return;
        }
        let mark = span.start;
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart(_) => {}
            Event::DocumentEnd => {
                if !self.stack.is_empty() {
                    self.stack.clear();
                    self.fail(invalid_yaml(&mark, "unterminated collection"));
                }
            }
            Event::SequenceStart(anchor, tag) => {
                self.start(
                    Value::Seq(Vec::new()),
                    anchor,
                    tag_is_custom(tag.as_deref()),
                    &span,
                );
            }
            Event::MappingStart(anchor, tag) => {
                self.start(
                    Value::Map(Vec::new()),
                    anchor,
                    tag_is_custom(tag.as_deref()),
                    &span,
                );
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let pos = span_pos(&frame.start, &mark);
                if frame.bad_key {
                    self.fail(diagnostic_at(pos, "mapping keys must be plain strings"));
                    return;
                }
                let mut value = frame.value;
                // Exact sizes: most mappings and lists are short, and doubling leaves them up
                // to four times their size.
                match &mut value {
                    Value::Seq(items) => items.shrink_to_fit(),
                    Value::Map(entries) => entries.shrink_to_fit(),
                    Value::Null | Value::Scalar { .. } => {}
                }
                let node = Node { pos, value };
                self.insert(node, frame.anchor, ScalarStyle::Plain, frame.start);
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let pos = span_pos(&span.start, &span.end);
                if self.depth() > MAX_DEPTH {
                    self.fail(diagnostic_at(pos, "YAML nesting is too deep"));
                    return;
                }
                let plain = matches!(style, ScalarStyle::Plain);
                // A mapping key keeps its text as written, even `~` or `null`.
                let is_key = self
                    .stack
                    .last()
                    .is_some_and(|f| matches!(f.value, Value::Map(_)) && f.key.is_none());
                let value = if plain
                    && !is_key
                    && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: exact(text),
                        plain,
                    }
                };
                self.insert(Node { pos, value }, anchor, style, mark);
            }
            Event::Alias(id) => {
                let pos = span_pos(&span.start, &span.end);
                let Some(target) = self.anchors.get(&id) else {
                    self.fail(diagnostic_at(
                        pos,
                        "unsupported YAML value (alias or bad value)",
                    ));
                    return;
                };
                let mut budget = ALIAS_BUDGET.saturating_sub(self.alias_budget_used);
                let before = budget;
                if !within_budget(target, &mut budget) {
                    self.fail(invalid_yaml(
                        &mark,
                        "alias expansion exceeded the maximum node budget (possible billion-laughs attack)",
                    ));
                    return;
                }
                self.alias_budget_used += before - budget;
                let node = Node {
                    pos,
                    value: target.value.clone(),
                };
                self.insert(node, 0, ScalarStyle::Plain, mark);
            }
        }
    }
}

/// A node with the field path that led to it.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    /// The node.
    pub node: &'a Node,
    path: &'a str,
}

/// A decoding error: message plus where.
pub type DResult<T> = Result<T, Diagnostic>;

/// Builds a diagnostic at a node.
pub fn error_at(node: &Node, path: &str, message: impl Into<String>) -> Diagnostic {
    error_at_pos(node.pos, path, message)
}

/// Builds a diagnostic at a position.
pub fn error_at_pos(pos: Pos, path: &str, message: impl Into<String>) -> Diagnostic {
    let mut d = Diagnostic::new(message);
    d.location = Some(Location {
        file: String::new(),
        line: pos.line,
        column: pos.column,
        offset: pos.index,
        len: pos.len,
    });
    if !path.is_empty() {
        d.path = Some(path.to_string());
    }
    d
}

impl<'a> At<'a> {
    /// The document root.
    pub fn root(node: &'a Node) -> Self {
        At { node, path: "" }
    }

    /// The field path of this node.
    pub fn path(&self) -> &str {
        self.path
    }

    /// A diagnostic at this node.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        error_at(self.node, self.path, message)
    }

    /// Whether the node is `null` (or absent content).
    pub fn is_null(&self) -> bool {
        self.node.value == Value::Null
    }

    /// The node as a string scalar.
    pub fn string(&self) -> DResult<String> {
        match &self.node.value {
            Value::Scalar { text, .. } => Ok(text.clone()),
            Value::Null => Err(self.error("expected a string, found null")),
            Value::Seq(_) => Err(self.error("expected a string, found a list")),
            Value::Map(_) => Err(self.error("expected a string, found a mapping")),
        }
    }

    /// The node as a boolean (`true`/`false`).
    pub fn boolean(&self) -> DResult<bool> {
        match self.string()?.as_str() {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            other => Err(self.error(format!("expected `true` or `false`, found `{other}`"))),
        }
    }

    /// The node as an integer in range.
    pub fn integer(&self, min: i64, max: i64) -> DResult<i64> {
        let s = self.string()?;
        match s.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            Ok(v) => Err(self.error(format!("`{v}` is out of range {min}..={max}"))),
            Err(_) => Err(self.error(format!("expected an integer, found `{s}`"))),
        }
    }

    /// The node as a list; `null` is an empty list. Each item comes with its path.
    pub fn items(&self) -> DResult<Vec<(At<'a>, String)>> {
        match &self.node.value {
            Value::Null => Ok(Vec::new()),
            Value::Seq(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, n)| (At { node: n, path: "" }, format!("{}[{i}]", self.path)))
                .collect()),
            _ => Err(self.error("expected a list")),
        }
    }

    /// The node as a list of strings, each with its path and node.
    pub fn strings(&self) -> DResult<Vec<Str>> {
        let items = self.items()?;
        let mut out = Vec::with_capacity(items.len());
        for (item, path) in items {
            let at = At {
                node: item.node,
                path: &path,
            };
            let value = at.string()?;
            out.push(Str {
                value,
                path,
                pos: item.node.pos,
            });
        }
        Ok(out)
    }

    /// The node as a mapping whose fields are taken one by one.
    pub fn fields(&self) -> DResult<Fields<'a>> {
        match &self.node.value {
            Value::Map(entries) => Ok(Fields {
                node: self.node,
                path: self.path.to_string(),
                entries: entries
                    .iter()
                    .map(|(k, kp, v)| (k.as_str(), *kp, v, false))
                    .collect(),
            }),
            Value::Null => Ok(Fields {
                node: self.node,
                path: self.path.to_string(),
                entries: Vec::new(),
            }),
            _ => Err(self.error("expected a mapping")),
        }
    }

    /// The node as a string-to-string map (labels, annotations).
    pub fn string_map(&self) -> DResult<Vec<(String, String)>> {
        match &self.node.value {
            Value::Null => Ok(Vec::new()),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, _, v)| {
                    let path = join(self.path, k);
                    Ok((
                        k.clone(),
                        At {
                            node: v,
                            path: &path,
                        }
                        .string()?,
                    ))
                })
                .collect(),
            _ => Err(self.error("expected a mapping of strings")),
        }
    }

    /// Re-roots this node at an owned path (for recursion into list items).
    pub fn with_path<'p>(&self, path: &'p str) -> At<'p>
    where
        'a: 'p,
    {
        At {
            node: self.node,
            path,
        }
    }
}

/// A string value with its path and node, for validation errors after decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Str {
    /// The value.
    pub value: String,
    /// Its field path.
    pub path: String,
    /// Its position.
    pub pos: Pos,
}

impl Str {
    /// A diagnostic at this value.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        error_at_pos(self.pos, &self.path, message)
    }
}

/// `a.b`, or `b` at the root.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The fields of a mapping, taken one by one; [`Fields::finish`] rejects the rest.
#[derive(Debug)]
pub struct Fields<'a> {
    node: &'a Node,
    path: String,
    entries: Vec<(&'a str, Pos, &'a Node, bool)>,
}

/// A field taken from a mapping: the node and its full path.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    /// The value node.
    pub node: &'a Node,
    /// The full path of the field.
    pub path: String,
}

impl<'a> Field<'a> {
    /// A cursor over the field.
    pub fn at(&self) -> At<'_> {
        At {
            node: self.node,
            path: &self.path,
        }
    }
}

impl<'a> Fields<'a> {
    /// Takes a field if present (a `null` value counts as absent).
    pub fn take(&mut self, key: &str) -> Option<Field<'a>> {
        for e in &mut self.entries {
            if e.0 == key && !e.3 {
                e.3 = true;
                if e.2.value == Value::Null {
                    return None;
                }
                return Some(Field {
                    node: e.2,
                    path: join(&self.path, key),
                });
            }
        }
        None
    }

    /// Whether a field is present (even if null), without taking it.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.0 == key)
    }

    /// Takes a required field.
    pub fn require(&mut self, key: &str) -> DResult<Field<'a>> {
        let path = self.path.clone();
        self.take(key)
            .ok_or_else(|| error_at(self.node, &path, format!("missing required field `{key}`")))
    }

    /// Marks fields as known and ignored (Kubernetes object metadata we do not use).
    pub fn ignore(&mut self, keys: &[&str]) {
        for e in &mut self.entries {
            if keys.contains(&e.0) {
                e.3 = true;
            }
        }
    }

    /// Rejects any field not taken. `known` lists the accepted names for the hint.
    pub fn finish(self, known: &[&str]) -> DResult<()> {
        for (key, key_pos, _, used) in &self.entries {
            if !used {
                let path = join(&self.path, key);
                let mut d = error_at_pos(*key_pos, &path, format!("unknown field `{key}`"));
                if let Some(s) = closest(key, known) {
                    d.help = Some(format!("did you mean `{s}`?"));
                } else if !known.is_empty() {
                    d.help = Some(format!(
                        "expected one of {}",
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                return Err(d);
            }
        }
        Ok(())
    }
}

/// The known name closest to `key` (edit distance ≤ 2 or same letters ignoring case).
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| {
            (
                levenshtein(&key.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.last().copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn multi_document_streams_keep_positions() {
        let docs = load_documents("a: 1\n---\nb:\n  c: 'x'\n").unwrap();
        assert_eq!(docs.len(), 2);
        let Value::Map(m) = &docs[1].value else {
            panic!("not a map")
        };
        assert_eq!(m[0].0, "b");
        let Value::Map(inner) = &m[0].2.value else {
            panic!("not a map")
        };
        assert_eq!(inner[0].2.pos.line, 4);
        assert_eq!(inner[0].2.pos.column, 6);
        assert_eq!((inner[0].1.line, inner[0].1.column), (4, 3), "key position");
    }

    #[test]
    fn unknown_field_is_rejected_with_a_hint() {
        let docs = load_documents("selector: {}\nrulez: []\n").unwrap();
        let mut f = At::root(&docs[0]).fields().unwrap();
        f.take("selector");
        let err = f.finish(&["selector", "rules"]).unwrap_err();
        assert_eq!(err.message, "unknown field `rulez`");
        assert_eq!(
            err.location.as_ref().unwrap().column,
            1,
            "points at the key"
        );
        assert_eq!(err.help.as_deref(), Some("did you mean `rules`?"));
        assert_eq!(err.location.unwrap().line, 2);
    }

    #[test]
    fn bad_yaml_is_an_error_with_a_line() {
        let err = load_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.message.starts_with("invalid YAML"));
        assert!(err.location.is_some());
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        assert!(load_documents("a: 1\na: 2\n").is_err());
    }

    /// The tree loader `load_documents` used before it read the parser's events itself:
    /// `saphyr`'s `MarkedYaml` tree, converted.
    fn tree_load(text: &str) -> Result<Vec<Node>, Diagnostic> {
        use saphyr::{MarkedYaml, YamlData, YamlLoader};
        fn convert(y: &MarkedYaml<'_>, depth: usize) -> Result<Node, Diagnostic> {
            let start = y.span.start;
            let pos = Pos {
                line: start.line(),
                column: start.col() + 1,
                index: start.index(),
                len: y.span.end.index().saturating_sub(start.index()),
            };
            let at_pos = |m: &str| diagnostic_at(pos, m);
            if depth > MAX_DEPTH {
                return Err(at_pos("YAML nesting is too deep"));
            }
            let value = match &y.data {
                YamlData::Representation(text, style, _) => {
                    let plain = matches!(style, ScalarStyle::Plain);
                    if plain && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                        Value::Null
                    } else {
                        Value::Scalar {
                            text: text.to_string(),
                            plain,
                        }
                    }
                }
                YamlData::Value(s) => Value::Scalar {
                    text: format!("{s:?}"),
                    plain: true,
                },
                YamlData::Sequence(items) => Value::Seq(
                    items
                        .iter()
                        .map(|i| convert(i, depth + 1))
                        .collect::<Result<_, _>>()?,
                ),
                YamlData::Mapping(map) => {
                    let mut entries = Vec::new();
                    for (k, v) in map {
                        let key = match &k.data {
                            YamlData::Representation(t, _, _) => t.to_string(),
                            _ => return Err(at_pos("mapping keys must be plain strings")),
                        };
                        let key_pos = Pos {
                            line: k.span.start.line(),
                            column: k.span.start.col() + 1,
                            index: k.span.start.index(),
                            len: key.chars().count(),
                        };
                        entries.push((key, key_pos, convert(v, depth + 1)?));
                    }
                    Value::Map(entries)
                }
                YamlData::Tagged(_, inner) => return convert(inner, depth + 1),
                YamlData::Alias(_) | YamlData::BadValue => {
                    return Err(at_pos("unsupported YAML value (alias or bad value)"));
                }
            };
            Ok(Node { pos, value })
        }
        let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
        loader.early_parse(false);
        let mut parser = Parser::new_from_str(text);
        let err = match parser.load(&mut loader, true) {
            Err(e) => Some(e),
            Ok(()) => loader.error().cloned(),
        };
        if let Some(e) = err {
            return Err(invalid_yaml(e.marker(), e.info()));
        }
        let mut out = Vec::new();
        for doc in loader.into_documents() {
            let node = convert(&doc, 0)?;
            if node.value != Value::Null {
                out.push(node);
            }
        }
        Ok(out)
    }

    fn same_as_the_tree_loader(text: &str) {
        let new = load_documents(text);
        let old = tree_load(text);
        match (&new, &old) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(a), Err(b)) => {
                assert_eq!(a.message, b.message, "{text}");
                let (a, b) = (a.location.as_ref().unwrap(), b.location.as_ref().unwrap());
                assert_eq!((a.line, a.column), (b.line, b.column), "{text}");
            }
            _ => panic!("{text}\nnew: {new:?}\nold: {old:?}"),
        }
    }

    #[test]
    fn the_event_loader_reads_like_the_tree_loader() {
        let cases = [
            "a: 1\n---\nb:\n  c: 'x'\n",
            "",
            "---\n",
            "---\n---\na: 1\n",
            "a: 1\n---\n...\n",
            "~\n",
            "- a\n- ~\n- null\n- ''\n- \"null\"\n- |\n  block\n  text\n- >\n  folded\n",
            "{a: [1, 2, {b: c}], d: {}, e: []}\n",
            "? [a]\n: b\n",
            "? {a: 1}\n: b\n",
            "~: a\nnull: b\n'': c\n",
            "a: &x {b: [1, 2]}\nc: *x\nd: *x\n",
            "a: &s text\nb: *s\n",
            "a: *nope\n",
            "a: !custom {b: 1}\nc: !!str 12\nd: !!map {e: f}\n",
            "a: 1\n'a': 2\n",
            "a: 1\nb: 2\na: 3\n",
            "a: [1, 2\nb: 3\n",
            "a: b: c\n",
            "\"ünï\": cödé\nx: \"é\"\n",
            "items:\n- {name: a, labels: {app: b}}\n- name: c\n  labels: null\n",
        ];
        for c in cases {
            same_as_the_tree_loader(c);
        }
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        same_as_the_tree_loader(&deep(128));
        same_as_the_tree_loader(&deep(129));
        same_as_the_tree_loader(&deep(140));
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e]\n";
        same_as_the_tree_loader(laughs);
    }

    #[test]
    fn the_event_loader_reads_the_repositorys_yaml_like_the_tree_loader() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut stack = vec![root];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if p.is_dir() {
                    if !name.starts_with('.') && name != "target" {
                        stack.push(p);
                    }
                } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                    same_as_the_tree_loader(&std::fs::read_to_string(&p).unwrap());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 20, "only {seen} YAML files found");
    }
}
