//! Input files: what the engine reads, and the names its diagnostics give.

/// An input file: a name for messages and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The name used in diagnostics (a path, `-`, or a host-given name).
    pub name: String,
    /// The YAML text (one or more documents).
    pub text: String,
}

impl SourceFile {
    /// A file from a name and its text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }
}
