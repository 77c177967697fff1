//! A guest call that trapped: the VM is dead from then on, and every later stream fails
//! closed, as in Envoy.

/// Why a guest call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// The fuel budget of one callback ran out (an endless loop, say).
    OutOfFuel,
    /// The time budget of one callback ran out ([`Bound::Time`]: an endless loop, say).
    Interrupted,
    /// A wasm trap: `unreachable` (a Rust panic), an out-of-bounds access, …
    Wasm,
    /// A host import failed the call: `proc_exit`, or an import the test host does not
    /// provide.
    Host,
    /// A callback is exported with the wrong signature.
    Signature,
}

/// A guest call that trapped: the VM is dead and every later stream fails closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{callback}` trapped ({kind:?}): {message}")]
pub struct GuestTrap {
    /// The callback that trapped (`proxy_on_request_headers`, …).
    pub callback: String,
    /// What kind of failure.
    pub kind: TrapKind,
    /// wasmtime's message, with the guest backtrace when there is one.
    pub message: String,
}
