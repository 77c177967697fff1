//! What the host could not do: compile or link a module, or start and configure a VM.

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
