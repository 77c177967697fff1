//! `palisade replay`: recorded traffic through the proxy-wasm plugin's `.wasm` (in the
//! wasmtime test host) and through the native engine, side by side.
//!
//! It reports the allow and deny counts per deciding rule and policy, every record the
//! `.wasm` and the native engine decide differently, and — where the recording carries the
//! live outcome — every record this policy decides differently from the live system.
//!
//! By default the `.wasm` side is read back as Envoy shows it (`--compare outcome`): the host
//! runs at `warn`, Envoy's default, so the plugin formats no log line, and its verdict, local
//! reply and counter increments must be exactly those the plugin's own mapping gives for the
//! native decision. `--compare decision` reads the full decision back from the plugin's log
//! line instead (the host at `trace`: slower) and compares it with the native one.
//!
//! Exit status: 0 when the `.wasm` and the native engine agree on every record, 3 when they
//! disagree on any, 2 on invalid input ([`crate::exit::Exit`]).
//!
//! [`run`] reads the inputs and drives each record through both sides; [`output`] is what it
//! reports and how it prints it.

mod output;
mod run;

pub use run::replay;
