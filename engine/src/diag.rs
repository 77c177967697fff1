//! Errors people can act on: every problem in an input names its file, line, column and the
//! field path (`spec.rules[0].from[1].source.principals[2]`), with help where we have some.

use std::fmt;

use serde::Serialize;

/// Where in an input a problem is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file (or `-` for standard input, or a name a host gave).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Byte offset into the file.
    pub offset: usize,
    /// Length in bytes of the offending text (0 when unknown).
    pub len: usize,
}

/// One problem found in the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// What is wrong (lower-case, user input in backticks).
    pub message: String,
    /// Where; absent for problems that span documents.
    pub location: Option<Location>,
    /// The field path inside the document, e.g. `spec.rules[0].to[0].operation.paths[1]`.
    pub path: Option<String>,
    /// The document: `<kind> <namespace>/<name>` when known.
    pub document: Option<String>,
    /// How to fix it, when we can tell.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem with no location yet.
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            location: None,
            path: None,
            document: None,
            help: None,
        }
    }

    /// Adds help text.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.location {
            write!(f, "{}:{}:{}: ", l.file, l.line, l.column)?;
        }
        f.write_str(&self.message)?;
        if let Some(p) = &self.path {
            write!(f, " (at `{p}`")?;
            if let Some(d) = &self.document {
                write!(f, " in {d}")?;
            }
            f.write_str(")")?;
        } else if let Some(d) = &self.document {
            write!(f, " (in {d})")?;
        }
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found while reading or compiling a set of inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Errors {
    /// The problems, in input order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Errors {
    /// One error.
    pub fn one(d: Diagnostic) -> Self {
        Errors {
            diagnostics: vec![d],
        }
    }

    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {d}")?;
        }
        Ok(())
    }
}

impl miette::Diagnostic for Diagnostic {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display>)
    }
}

impl std::error::Error for Diagnostic {}
