//! What the host offers every VM: how guest calls are bounded, the clock, the properties and
//! the answers to HTTP callouts.

use std::collections::BTreeMap;

use crate::abi::LogLevel;
use crate::envoy::PropertyMap;

/// The answer to HTTP callouts to one upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpFixture {
    /// Response headers (`:status` included); empty means the call failed.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The trailers.
    pub trailers: Vec<(String, String)>,
}

/// How every guest call is bounded, so that a guest that never returns is a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Fuel: `configure_fuel` and `callback_fuel` (about one unit per wasm instruction).
    /// Deterministic; every basic block pays for counting.
    Fuel,
    /// Wall-clock time, through wasmtime's epoch interruption: a host thread advances the
    /// engine's epoch every [`EPOCH_TICK_MS`] ms and a call is interrupted once its budget of
    /// ticks is spent ([`TrapKind::Interrupted`]). Only a check at function entries and loop
    /// back-edges: cheaper than fuel, not deterministic.
    Time {
        /// The budget of `_initialize`, `proxy_on_vm_start` and `proxy_on_configure`, in ms.
        configure_ms: u64,
        /// The budget of each stream callback, in ms.
        callback_ms: u64,
    },
}

impl Bound {
    /// [`Bound::Time`] with budgets like the default fuel's on this machine, with a wide
    /// margin: 30 s to start and configure, 1 s per stream callback.
    pub const TIME: Bound = Bound::Time {
        configure_ms: 30_000,
        callback_ms: 1_000,
    };
}

/// The period of the epoch ticker of [`Bound::Time`], in milliseconds.
pub const EPOCH_TICK_MS: u64 = 10;

/// What the host offers every VM; the defaults suit a test.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// How guest calls are bounded (fuel by default).
    pub bound: Bound,
    /// Fuel for `_initialize`, `proxy_on_vm_start` and `proxy_on_configure` (compiling a
    /// large policy is the heaviest call); [`Bound::Fuel`] only.
    pub configure_fuel: u64,
    /// Fuel for each stream callback; [`Bound::Fuel`] only.
    pub callback_fuel: u64,
    /// The most linear memory a VM may grow to (Envoy's cpp-host: 1 GiB).
    pub max_memory: usize,
    /// What `proxy_get_log_level` answers (TRACE: the guest logs everything).
    pub log_level: LogLevel,
    /// The time every clock reads, in nanoseconds since the epoch (frozen: deterministic).
    pub now_nanos: u64,
    /// The seed of `random_get`.
    pub random_seed: u64,
    /// `plugin_root_id` and `plugin_name`.
    pub root_id: String,
    /// `plugin_vm_id`.
    pub vm_id: String,
    /// `VM_CONFIGURATION`, passed to `proxy_on_vm_start`.
    pub vm_configuration: Vec<u8>,
    /// Properties every stream sees (Istio's `node.metadata.*`, say); a stream's own
    /// properties take precedence.
    pub properties: PropertyMap,
    /// HTTP callout answers by upstream name; a callout to another upstream is refused
    /// with `BAD_ARGUMENT`, as Envoy refuses an unknown cluster.
    pub http_fixtures: BTreeMap<String, HttpFixture>,
    /// The first bytes a TCP client sends (`DOWNSTREAM_DATA` for `proxy_on_downstream_data`).
    pub tcp_first_data: Vec<u8>,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            bound: Bound::Fuel,
            configure_fuel: 20_000_000_000,
            callback_fuel: 2_000_000_000,
            max_memory: 1 << 30,
            log_level: LogLevel::Trace,
            now_nanos: 1_764_400_000_000_000_000,
            random_seed: 0x5eed,
            root_id: "palisade".into(),
            vm_id: "palisade".into(),
            vm_configuration: Vec::new(),
            properties: PropertyMap::default(),
            http_fixtures: BTreeMap::new(),
            tcp_first_data: b"\x16\x03\x01".to_vec(),
        }
    }
}
