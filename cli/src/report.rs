//! Failures and how they are printed: miette's graphical report (the offending source, the
//! field path, help) for people, the engine's [`Errors`] as JSON for tools.

use std::fmt;
use std::io::{IsTerminal, Write};

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};
use palisade_engine::{Diagnostic, Errors, SourceFile};
use serde::Serialize;

use crate::args::Format;

/// Why a command could not do its job: every problem found, and the texts they point into.
/// Always exit status 2.
#[derive(Debug)]
pub struct Failure {
    /// The problems.
    pub errors: Errors,
    /// The inputs, for source snippets.
    pub sources: Vec<SourceFile>,
}

impl Failure {
    /// One problem that points into no file (unreadable file, bad bundle, ...).
    pub fn message(message: impl Into<String>) -> Self {
        Failure {
            errors: Errors::one(Diagnostic::new(message)),
            sources: Vec::new(),
        }
    }

    /// Problems found in `sources`.
    pub fn invalid(errors: Errors, sources: &[SourceFile]) -> Self {
        Failure {
            errors,
            sources: sources.to_vec(),
        }
    }

    /// Adds help to the first problem.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        if let Some(d) = self.errors.diagnostics.first_mut() {
            d.help = Some(help.into());
        }
        self
    }
}

/// Prints a failure on standard error.
pub fn print_failure(failure: &Failure, format: Format) {
    let text = match format {
        Format::Json => json(&failure.errors),
        Format::Human => human(failure),
    };
    let mut err = std::io::stderr().lock();
    // Nothing sensible is left to do when standard error is gone.
    let _ = writeln!(err, "{text}");
}

/// Prints a result on standard output (pretty JSON, or the human text as given).
pub fn print_result<T: Serialize>(format: Format, value: &T, human: impl FnOnce() -> String) {
    let text = match format {
        Format::Json => json(value),
        Format::Human => human(),
    };
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{text}");
    if !text.ends_with('\n') {
        let _ = writeln!(out);
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode result: {e}\"}}"))
}

fn human(failure: &Failure) -> String {
    let theme = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for (i, d) in failure.errors.diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let source = d
            .location
            .as_ref()
            .and_then(|l| failure.sources.iter().find(|s| s.name == l.file));
        let report = Report::new(d, source);
        let mut one = String::new();
        if handler.render_report(&mut one, &report).is_err() {
            one = format!("error: {d}\n");
        }
        out.push_str(&one);
    }
    let n = failure.errors.diagnostics.len();
    if n > 1 {
        out.push_str(&format!("error: {n} problems found\n"));
    }
    out.trim_end().to_string()
}

/// One engine diagnostic as a miette diagnostic: the message (with the document), the
/// offending text labelled with its field path, and the help.
#[derive(Debug)]
struct Report<'a> {
    d: &'a Diagnostic,
    title: String,
    source: Option<NamedSource<String>>,
    span: Option<LabeledSpan>,
}

impl<'a> Report<'a> {
    fn new(d: &'a Diagnostic, file: Option<&SourceFile>) -> Self {
        let at =
            |loc: &palisade_engine::Location| format!("{}:{}:{}", loc.file, loc.line, loc.column);
        let snippet = d.location.as_ref().zip(file).map(|(l, f)| {
            let len = f.text.len();
            let offset = l.offset.min(len);
            let span_len = l.len.min(len.saturating_sub(offset));
            let label = match &d.path {
                Some(p) => format!("at `{p}`"),
                None => "here".to_string(),
            };
            (
                NamedSource::new(&f.name, f.text.clone()),
                LabeledSpan::new(Some(label), offset, span_len),
            )
        });
        // The header of a snippet names file:line:column and the label the field path;
        // without a snippet both go into the title.
        let mut title = String::new();
        if let (None, Some(l)) = (&snippet, &d.location) {
            title.push_str(&at(l));
            title.push_str(": ");
        }
        title.push_str(&d.message);
        match (&d.path, &d.document, snippet.is_some()) {
            (Some(p), Some(doc), false) => title.push_str(&format!(" (at `{p}` in {doc})")),
            (Some(p), None, false) => title.push_str(&format!(" (at `{p}`)")),
            (_, Some(doc), _) => title.push_str(&format!(" (in {doc})")),
            _ => {}
        }
        let (source, span) = match snippet {
            Some((s, l)) => (Some(s), Some(l)),
            None => (None, None),
        };
        Report {
            d,
            title,
            source,
            span,
        }
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.d
            .help
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.span
            .clone()
            .map(|s| Box::new(std::iter::once(s)) as Box<dyn Iterator<Item = LabeledSpan>>)
    }
}
