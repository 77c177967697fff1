//! What went wrong running the corpus, in the way of cedar's `authorizer/err.rs`: a topic that
//! does not read, policies an implementation does not load, a request it does not decide, a
//! decision other than the one expected. Each message is the text the report prints.

use std::fmt;
use std::net::IpAddr;

/// A topic file or directory that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The directory or file cannot be read.
    #[error("reading `{path}`: {message}")]
    Read {
        /// The directory or file.
        path: String,
        /// The operating system's reason.
        message: String,
    },
    /// The file is not a topic (invalid JSON, an unknown field, ...).
    #[error("`{path}`: {message}")]
    Parse {
        /// The file.
        path: String,
        /// serde's reason, with line and column.
        message: String,
    },
}

/// Why an implementation could not load a topic's policy files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// A policy file cannot be read.
    #[error("reading `{path}`: {message}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        message: String,
    },
    /// The files do not load (the engine's diagnostics, as text).
    #[error("load: {0}")]
    Invalid(String),
    /// The loaded policies do not compile (the engine's diagnostics, as text).
    #[error("compile: {0}")]
    Compile(String),
}

/// Why an implementation could not decide a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// `decide` before a successful `load`.
    #[error("no policies loaded")]
    NotLoaded,
    /// A host that decides in the destination's sidecar cannot find one: the request names
    /// neither a destination workload nor an address.
    #[error("the request names no destination workload or address")]
    NoDestination,
    /// No inventory workload has the request's destination address.
    #[error("no workload in the inventory has address `{0}`")]
    UnknownAddress(IpAddr),
    /// The plugin refused the configuration it was given (the host's reason).
    #[error("configuration refused: {0}")]
    ConfigurationRefused(String),
    /// The guest trapped while deciding (the host's trap, as text).
    #[error("the guest trapped: {0}")]
    Trapped(String),
    /// What the guest showed does not read back as a decision (the host's reason).
    #[error("{0}")]
    ReadBack(String),
}

/// A case's request that does not read as a `Request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {0}")]
pub struct InvalidRequest(pub String);

/// A decision other than the one a case expects: every difference, and the decision's own
/// explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({explanation})", differences.join("; "))]
pub struct Mismatch {
    /// Each difference, named (`verdict: expected allow, got deny`).
    pub differences: Vec<String>,
    /// The decision's explanation.
    pub explanation: String,
}

/// Why a case failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseFailure {
    /// Its topic's policies did not load.
    #[error("topic not loaded: {0}")]
    TopicNotLoaded(LoadError),
    /// Its request is invalid.
    #[error(transparent)]
    InvalidRequest(#[from] InvalidRequest),
    /// The implementation could not decide it.
    #[error(transparent)]
    Decide(#[from] DecideError),
    /// The decision was not the one expected.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
}

/// A stable code per error, for miette's reports (`palisade::corpus::…`).
macro_rules! diagnostic {
    ($t:ty, $self:ident => $code:expr) => {
        impl miette::Diagnostic for $t {
            fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
                let $self = self;
                Some(Box::new($code))
            }
        }
    };
}

diagnostic!(TopicError, e => match e {
    TopicError::Read { .. } => "palisade::corpus::topic_unreadable",
    TopicError::Parse { .. } => "palisade::corpus::topic_invalid",
});
diagnostic!(LoadError, e => match e {
    LoadError::Read { .. } => "palisade::corpus::policy_unreadable",
    LoadError::Invalid(_) => "palisade::corpus::policy_invalid",
    LoadError::Compile(_) => "palisade::corpus::policy_does_not_compile",
});
diagnostic!(DecideError, e => match e {
    DecideError::NotLoaded => "palisade::corpus::not_loaded",
    DecideError::NoDestination => "palisade::corpus::no_destination",
    DecideError::UnknownAddress(_) => "palisade::corpus::unknown_address",
    DecideError::ConfigurationRefused(_) => "palisade::corpus::configuration_refused",
    DecideError::Trapped(_) => "palisade::corpus::guest_trapped",
    DecideError::ReadBack(_) => "palisade::corpus::unreadable_decision",
});
diagnostic!(InvalidRequest, _e => "palisade::corpus::invalid_request");
diagnostic!(Mismatch, _e => "palisade::corpus::unexpected_decision");
diagnostic!(CaseFailure, e => match e {
    CaseFailure::TopicNotLoaded(_) => "palisade::corpus::topic_not_loaded",
    CaseFailure::InvalidRequest(_) => "palisade::corpus::invalid_request",
    CaseFailure::Decide(_) => "palisade::corpus::not_decided",
    CaseFailure::Mismatch(_) => "palisade::corpus::unexpected_decision",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_prints_the_text_the_report_printed_before() {
        let cases: Vec<(Box<dyn std::error::Error>, &str)> = vec![
            (
                Box::new(TopicError::Read {
                    path: "cases".into(),
                    message: "gone".into(),
                }),
                "reading `cases`: gone",
            ),
            (
                Box::new(TopicError::Parse {
                    path: "cases/a.json".into(),
                    message: "EOF at line 1".into(),
                }),
                "`cases/a.json`: EOF at line 1",
            ),
            (
                Box::new(CaseFailure::TopicNotLoaded(LoadError::Invalid(
                    "error: bad".into(),
                ))),
                "topic not loaded: load: error: bad",
            ),
            (
                Box::new(CaseFailure::TopicNotLoaded(LoadError::Compile("x".into()))),
                "topic not loaded: compile: x",
            ),
            (
                Box::new(CaseFailure::from(InvalidRequest("missing field".into()))),
                "invalid request: missing field",
            ),
            (
                Box::new(CaseFailure::from(DecideError::NotLoaded)),
                "no policies loaded",
            ),
            (
                Box::new(DecideError::UnknownAddress(IpAddr::from([10, 0, 0, 9]))),
                "no workload in the inventory has address `10.0.0.9`",
            ),
            (
                Box::new(CaseFailure::from(Mismatch {
                    differences: vec![
                        "verdict: expected allow, got deny".into(),
                        "rule: expected null, got `r`".into(),
                    ],
                    explanation: "denied: DENY rule r matched".into(),
                })),
                "verdict: expected allow, got deny; rule: expected null, got `r` (denied: DENY rule r matched)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn every_failure_has_a_code_that_names_it() {
        use miette::Diagnostic;
        let code = |d: &dyn Diagnostic| d.code().map(|c| c.to_string());
        assert_eq!(
            code(&CaseFailure::from(DecideError::NotLoaded)).as_deref(),
            Some("palisade::corpus::not_decided")
        );
        assert_eq!(
            code(&DecideError::Trapped("t".into())).as_deref(),
            Some("palisade::corpus::guest_trapped")
        );
        assert_eq!(
            code(&LoadError::Compile("c".into())).as_deref(),
            Some("palisade::corpus::policy_does_not_compile")
        );
    }
}
