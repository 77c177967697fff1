//! Palisade's wasmtime test host: loads the proxy-wasm plugin's `.wasm` unchanged, drives it
//! through the proxy-wasm ABI v0.2.1 as Envoy does, and reads back what it decided — so the
//! test suite can prove the `.wasm` decides like the native engine.
//!
//! - [`host`]: [`ProxyWasmHost`] (a module compiled once), [`Plugin::configure`] (one VM per
//!   plugin configuration);
//! - [`instance`]: [`PluginInstance::http`] and [`PluginInstance::tcp`] (one stream each),
//!   [`PluginInstance::metrics`];
//! - [`settings`]: what the host offers every VM ([`HostSettings`], [`Bound`]);
//! - [`outcome`]: what a stream showed ([`HttpOutcome`], [`TcpOutcome`], [`StreamSummary`]);
//! - [`trap`] and [`error`]: a guest call that trapped, a module or configuration refused;
//! - `state`: the VM's store data, which the imports read and change; `exports`: the
//!   callbacks the host calls; `imports`: one small function per host import, each returning
//!   a status, grouped by what they touch;
//! - [`envoy`]: an engine `Request` as Envoy 1.40's properties and request headers;
//! - [`decider`]: the guest behind the corpus's `Decider` trait;
//! - [`readback`]: a decision read back from what the plugin showed Envoy;
//! - [`abi`]: the ABI's numbers and the pairs serialization;
//! - [`modules`]: the workspace's modules for tests and benchmarks, rebuilt when stale;
//! - [`replay`]: recorded requests through the `.wasm` and the native engine side by side
//!   (`palisade replay`), read back as Envoy shows them (verdict, local reply, counters) or as
//!   the full decision of the plugin's log line.
//!
//! Guest calls are bounded by fuel (deterministic: the default) or by time through epoch
//! interruption ([`Bound`]); either way a guest that never returns is a trap.
//!
//! ```no_run
//! use palisade_wasm_host::ProxyWasmHost;
//!
//! let wasm = std::fs::read("palisade_proxy_wasm.wasm").unwrap();
//! let host = ProxyWasmHost::new(&wasm).unwrap();
//! let mut vm = host
//!     .configure(r#"{"policy": "", "workload": {"namespace": "shop"}}"#)
//!     .unwrap();
//! let request = serde_json::from_str(r#"{"http": {"method": "GET", "path": "/"}}"#).unwrap();
//! let outcome = vm.http(&request);
//! println!("allowed: {}, metrics: {:?}", outcome.allowed, vm.metrics());
//! ```

pub mod abi;
pub mod decider;
pub mod envoy;
pub mod error;
mod exports;
pub mod host;
mod imports;
pub mod instance;
pub mod modules;
pub mod outcome;
pub mod readback;
pub mod replay;
pub mod settings;
mod state;
pub mod trap;

pub use abi::{Action, LogLevel};
pub use decider::ProxyWasmDecider;
pub use envoy::{PropertyMap, StreamInput};
pub use error::{ConfigRefused, HostError, PluginFailure, ReadBackError, Unroutable};
pub use host::{Plugin, ProxyWasmHost};
pub use instance::PluginInstance;
pub use outcome::{HttpCall, HttpOutcome, LocalReply, LogLine, StreamSummary, TcpOutcome};
pub use replay::{Observed, ReadBack, Replayer, provider_answers, same_decision};
pub use settings::{Bound, EPOCH_TICK_MS, HostSettings, HttpFixture};
pub use trap::{GuestTrap, TrapKind};
