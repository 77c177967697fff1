//! What the host could not do, in the way of cedar's `authorizer/err.rs`: compile or link a
//! module, start and configure a VM, route a replayed request to a sidecar, read a decision
//! back from what the plugin showed.

use std::fmt;
use std::net::IpAddr;

use palisade_engine::Verdict;
use palisade_proxy_wasm::config::ConfigError;
use palisade_proxy_wasm::enforce::POLICY_HEADER;

use crate::abi::LogLevel;
use crate::outcome::LogLine;
use crate::trap::GuestTrap;

/// What the host could not do with a module (it is not wasm, or it does not link).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The bytes do not compile.
    #[error("the module does not compile: {0}")]
    Compile(String),
    /// The module's imports cannot be satisfied, or it exports no memory or allocator.
    #[error("the module does not link: {0}")]
    Link(String),
}

/// Why a plugin configuration was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigRefused {
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false; the guest's log says why.
    #[error("`{callback}` returned false: {}", warnings(logs))]
    Refused {
        /// The callback that returned false.
        callback: String,
        /// The log lines emitted while starting and configuring.
        logs: Vec<LogLine>,
    },
    /// The guest trapped while starting or configuring.
    #[error("{trap} (log: {})", warnings(logs))]
    Trap {
        /// The trap.
        trap: GuestTrap,
        /// The log lines emitted before it.
        logs: Vec<LogLine>,
    },
    /// The module could not be instantiated.
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
}

impl ConfigRefused {
    /// The log lines emitted while starting and configuring.
    pub fn logs(&self) -> &[LogLine] {
        match self {
            ConfigRefused::Refused { logs, .. } | ConfigRefused::Trap { logs, .. } => logs,
            ConfigRefused::Instantiate(_) => &[],
        }
    }
}

/// The warnings and errors among log lines, joined: what the guest said about a refusal.
fn warnings(logs: &[LogLine]) -> String {
    logs.iter()
        .filter(|l| l.level >= LogLevel::Warn)
        .map(|l| l.message.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A request no sidecar can be found for: it names no destination workload and its
/// destination address is not in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unroutable {
    /// Neither a destination workload nor an address.
    #[error("the request names no destination workload or address")]
    NoDestination,
    /// No live pod-network workload of the inventory has the destination address.
    #[error("no destination workload: no inventory workload has address `{0}`")]
    UnknownAddress(IpAddr),
}

/// What the plugin showed does not read back as the decision it logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadBackError {
    /// No decision log line (the host logs below the plugin's level, say).
    #[error("the plugin logged no decision (log: {log})")]
    NoDecisionLogged {
        /// Every line the stream logged, joined with ` | `.
        log: String,
    },
    /// The log line does not explain itself in the engine's words.
    #[error("cannot read the decision from the log line `{line}`")]
    UnreadableLine {
        /// The line.
        line: String,
    },
    /// The stream went on (or not) unlike the log line's verdict.
    #[error("the stream was {stream}ed but the log line says {logged} (`{line}`)")]
    VerdictDiffers {
        /// What the stream showed.
        stream: Verdict,
        /// What the log line says.
        logged: Verdict,
        /// The line.
        line: String,
    },
    /// The local reply's response code details are not the logged decision's.
    #[error("response details `{details}` disagree with the log line `{line}`")]
    DetailsDiffer {
        /// The local reply's details.
        details: String,
        /// The line.
        line: String,
    },
    /// The local reply's policy header names another policy than the log line.
    #[error("`{name}: {header}` disagrees with the log line `{line}`", name = POLICY_HEADER)]
    PolicyHeaderDiffers {
        /// The header's value.
        header: String,
        /// The line.
        line: String,
    },
}

/// Why the plugin gave no decision for a replayed request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginFailure {
    /// The request's destination sidecar cannot be found.
    #[error(transparent)]
    Unroutable(#[from] Unroutable),
    /// The VM refused the sidecar's configuration.
    #[error("the plugin refused its configuration: {0}")]
    ConfigurationRefused(ConfigRefused),
    /// The plugin crate, compiled natively, refused the same configuration.
    #[error("the plugin crate refused the configuration natively: {0}")]
    NativeConfigurationRefused(ConfigError),
    /// The guest trapped (the VM is dead from then on).
    #[error("the guest trapped: {0}")]
    Trapped(GuestTrap),
    /// What the plugin showed does not read back as a decision.
    #[error(transparent)]
    ReadBack(#[from] ReadBackError),
    /// [`crate::Replayer::expected`] of a replayer that reads back decisions.
    #[error("the expected outcome needs a replayer reading back outcomes")]
    NotReadingOutcomes,
    /// The replayer lost the VM it configured (not expected to happen).
    #[error("no VM")]
    NoVm,
}

/// A stable code per error, for miette's reports (`palisade::wasm_host::…`).
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

diagnostic!(HostError, e => match e {
    HostError::Compile(_) => "palisade::wasm_host::does_not_compile",
    HostError::Link(_) => "palisade::wasm_host::does_not_link",
});
diagnostic!(ConfigRefused, e => match e {
    ConfigRefused::Refused { .. } => "palisade::wasm_host::configuration_refused",
    ConfigRefused::Trap { .. } => "palisade::wasm_host::configuration_trapped",
    ConfigRefused::Instantiate(_) => "palisade::wasm_host::cannot_instantiate",
});
diagnostic!(Unroutable, e => match e {
    Unroutable::NoDestination => "palisade::wasm_host::no_destination",
    Unroutable::UnknownAddress(_) => "palisade::wasm_host::unknown_address",
});
diagnostic!(ReadBackError, e => match e {
    ReadBackError::NoDecisionLogged { .. } => "palisade::wasm_host::no_decision_logged",
    ReadBackError::UnreadableLine { .. } => "palisade::wasm_host::unreadable_log_line",
    ReadBackError::VerdictDiffers { .. } => "palisade::wasm_host::verdict_differs",
    ReadBackError::DetailsDiffer { .. } => "palisade::wasm_host::details_differ",
    ReadBackError::PolicyHeaderDiffers { .. } => "palisade::wasm_host::policy_header_differs",
});
diagnostic!(PluginFailure, e => match e {
    PluginFailure::Unroutable(_) => "palisade::wasm_host::unroutable",
    PluginFailure::ConfigurationRefused(_) => "palisade::wasm_host::configuration_refused",
    PluginFailure::NativeConfigurationRefused(_) => "palisade::wasm_host::native_configuration_refused",
    PluginFailure::Trapped(_) => "palisade::wasm_host::guest_trapped",
    PluginFailure::ReadBack(_) => "palisade::wasm_host::unreadable_decision",
    PluginFailure::NotReadingOutcomes => "palisade::wasm_host::not_reading_outcomes",
    PluginFailure::NoVm => "palisade::wasm_host::no_vm",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_failures_print_the_text_replay_printed_before() {
        let cases: Vec<(PluginFailure, &str)> = vec![
            (
                Unroutable::NoDestination.into(),
                "the request names no destination workload or address",
            ),
            (
                Unroutable::UnknownAddress(IpAddr::from([10, 1, 0, 9])).into(),
                "no destination workload: no inventory workload has address `10.1.0.9`",
            ),
            (
                PluginFailure::ConfigurationRefused(ConfigRefused::Instantiate("x".into())),
                "the plugin refused its configuration: cannot instantiate: x",
            ),
            (
                PluginFailure::Trapped(GuestTrap {
                    callback: "proxy_on_request_headers".into(),
                    kind: crate::trap::TrapKind::OutOfFuel,
                    message: "all fuel consumed".into(),
                }),
                "the guest trapped: `proxy_on_request_headers` trapped (OutOfFuel): all fuel consumed",
            ),
            (
                PluginFailure::NotReadingOutcomes,
                "the expected outcome needs a replayer reading back outcomes",
            ),
        ];
        for (failure, text) in cases {
            assert_eq!(failure.to_string(), text);
        }
    }

    #[test]
    fn a_refused_configuration_shows_only_the_guests_warnings_and_errors() {
        let line = |level, message: &str| LogLine {
            level,
            message: message.into(),
            context_id: 1,
        };
        let refused = ConfigRefused::Refused {
            callback: "proxy_on_configure".into(),
            logs: vec![
                line(LogLevel::Info, "starting"),
                line(LogLevel::Warn, "unknown field"),
                line(LogLevel::Error, "bad policy"),
            ],
        };
        assert_eq!(
            refused.to_string(),
            "`proxy_on_configure` returned false: unknown field; bad policy"
        );
        use miette::Diagnostic;
        assert_eq!(
            refused.code().map(|c| c.to_string()).as_deref(),
            Some("palisade::wasm_host::configuration_refused")
        );
    }
}
