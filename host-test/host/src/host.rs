//! The proxy-wasm host: a module compiled once ([`ProxyWasmHost`]), one VM per plugin
//! configuration ([`PluginInstance`]), driven callback by callback as Envoy drives it.
//!
//! The sequence follows proxy-wasm-cpp-host (Envoy's host):
//!
//! 1. instantiate; `_initialize` (a WASI reactor), `main(0, 0)` if exported;
//! 2. `proxy_on_context_create(root, 0)`, `proxy_on_vm_start(root, vm_configuration_size)`,
//!    `proxy_on_configure(root, plugin_configuration_size)` — `false` refuses the configuration;
//! 3. per HTTP request: `proxy_on_context_create(ctx, root)`, `proxy_on_request_headers`,
//!    `proxy_on_request_body` (when there is a body and the headers continued), HTTP callouts
//!    answered from fixtures, then `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`;
//! 4. per TCP connection: `proxy_on_new_connection`, `proxy_on_downstream_data`,
//!    `proxy_on_downstream_connection_close`, then done, log and delete.
//!
//! Every guest call runs with a fuel budget; a trap (an `unreachable` from a guest panic, a
//! memory fault, fuel exhausted, a host import the test host does not provide) is a
//! [`GuestTrap`], and the VM is dead from then on, as in Envoy: every later stream fails
//! closed.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use wasmtime::{
    Config, Engine, InstancePre, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder,
    TypedFunc, WasmParams, WasmResults,
};

use crate::abi::{self, Action, LogLevel, MetricType};
use crate::envoy::{PropertyMap, StreamInput, StreamSink, encode_request};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestTrap {
    /// The callback that trapped (`proxy_on_request_headers`, …).
    pub callback: String,
    /// What kind of failure.
    pub kind: TrapKind,
    /// wasmtime's message, with the guest backtrace when there is one.
    pub message: String,
}

impl fmt::Display for GuestTrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` trapped ({:?}): {}",
            self.callback, self.kind, self.message
        )
    }
}

impl std::error::Error for GuestTrap {}

/// Why a plugin configuration was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigRefused {
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false; the guest's log says why.
    Refused {
        /// The callback that returned false.
        callback: String,
        /// The log lines emitted while starting and configuring.
        logs: Vec<LogLine>,
    },
    /// The guest trapped while starting or configuring.
    Trap {
        /// The trap.
        trap: GuestTrap,
        /// The log lines emitted before it.
        logs: Vec<LogLine>,
    },
    /// The module could not be instantiated.
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

impl fmt::Display for ConfigRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let logs = |logs: &[LogLine]| {
            logs.iter()
                .filter(|l| l.level >= LogLevel::Warn)
                .map(|l| l.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        };
        match self {
            ConfigRefused::Refused { callback, logs: l } => {
                write!(f, "`{callback}` returned false: {}", logs(l))
            }
            ConfigRefused::Trap { trap, logs: l } => write!(f, "{trap} (log: {})", logs(l)),
            ConfigRefused::Instantiate(e) => write!(f, "cannot instantiate: {e}"),
        }
    }
}

impl std::error::Error for ConfigRefused {}

/// One `proxy_log` call (or a line the guest wrote to stdout/stderr through WASI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level (stdout is INFO, stderr ERROR, as in Envoy).
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// The context that was current when it was logged.
    pub context_id: u32,
}

/// A `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// The HTTP status.
    pub status: u32,
    /// The response code details (`%RESPONSE_CODE_DETAILS%`).
    pub details: String,
    /// The body.
    pub body: Vec<u8>,
    /// The added response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The gRPC status, -1 when not a gRPC reply.
    pub grpc_status: i32,
}

/// A `proxy_http_call` the guest made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The upstream cluster.
    pub upstream: String,
    /// The request headers, pseudo-headers included.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The timeout.
    pub timeout_ms: u32,
    /// The token returned to the guest.
    pub token: u32,
}

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

/// A proxy-wasm module compiled once; cheap to clone (the engine and module are shared).
#[derive(Clone)]
pub struct ProxyWasmHost {
    engine: Engine,
    module: Module,
    pre: InstancePre<HostState>,
    settings: Arc<HostSettings>,
}

impl fmt::Debug for ProxyWasmHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyWasmHost")
            .field("imports", &self.module.imports().len())
            .field("exports", &self.module.exports().len())
            .finish()
    }
}

impl ProxyWasmHost {
    /// Compiles a module with the default settings.
    pub fn new(wasm: &[u8]) -> Result<ProxyWasmHost, HostError> {
        ProxyWasmHost::with_settings(wasm, HostSettings::default())
    }

    /// Compiles a module with these settings.
    pub fn with_settings(wasm: &[u8], settings: HostSettings) -> Result<ProxyWasmHost, HostError> {
        let mut config = Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // `perf` can name the guest's functions: wasmtime writes /tmp/perf-<pid>.map.
        if std::env::var_os("PALISADE_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        match settings.bound {
            Bound::Fuel => config.consume_fuel(true),
            Bound::Time { .. } => config.epoch_interruption(true),
        };
        let engine = Engine::new(&config).map_err(|e| HostError::Compile(e.to_string()))?;
        if matches!(settings.bound, Bound::Time { .. }) {
            start_epoch_ticker(&engine).map_err(|e| HostError::Link(e.to_string()))?;
        }
        let module =
            Module::from_binary(&engine, wasm).map_err(|e| HostError::Compile(format!("{e:#}")))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        crate::imports::define(&mut linker).map_err(|e| HostError::Link(e.to_string()))?;
        // Envoy stubs the rest of WASI; here any other import links, and traps if called.
        linker
            .define_unknown_imports_as_traps(&module)
            .map_err(|e| HostError::Link(e.to_string()))?;
        let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
        if !exports.contains(&"memory") {
            return Err(HostError::Link("the module exports no `memory`".into()));
        }
        if !exports.contains(&"proxy_on_memory_allocate") && !exports.contains(&"malloc") {
            return Err(HostError::Link(
                "the module exports neither `proxy_on_memory_allocate` nor `malloc`".into(),
            ));
        }
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| HostError::Link(format!("{e:#}")))?;
        Ok(ProxyWasmHost {
            engine,
            module,
            pre,
            settings: Arc::new(settings),
        })
    }

    /// The module's imports, `module.name` each (what the guest asks of its host).
    pub fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect()
    }

    /// A plugin of this module with the host's settings.
    pub fn plugin(&self) -> Plugin {
        Plugin {
            host: self.clone(),
            settings: (*self.settings).clone(),
        }
    }

    /// Starts a VM and configures it (`Plugin::configure` with the host's settings).
    pub fn configure(&self, configuration: &str) -> Result<PluginInstance, ConfigRefused> {
        self.plugin().configure(configuration)
    }
}

/// A plugin about to be configured: the module plus per-plugin settings.
#[derive(Debug, Clone)]
pub struct Plugin {
    host: ProxyWasmHost,
    /// The settings this plugin's VMs get (changeable before `configure`).
    pub settings: HostSettings,
}

impl Plugin {
    /// Starts a VM and runs the configuration sequence with this plugin configuration
    /// (Envoy's `PluginConfig.configuration`, a JSON text for Palisade).
    pub fn configure(&self, configuration: &str) -> Result<PluginInstance, ConfigRefused> {
        let settings = Arc::new(self.settings.clone());
        let state = HostState::new(settings.clone(), configuration.as_bytes().to_vec());
        let mut store = Store::new(&self.host.engine, state);
        store.limiter(|s| &mut s.limits);
        let instance = self
            .host
            .pre
            .instantiate(&mut store)
            .map_err(|e| ConfigRefused::Instantiate(format!("{e:#}")))?;
        let exports = Exports::of(&instance, &mut store);
        let memory = instance.get_memory(&mut store, "memory");
        let allocator = ["proxy_on_memory_allocate", "malloc"]
            .into_iter()
            .map(|name| export::<i32, i32>(&instance, &mut store, name))
            .find(|e| !matches!(e, Export::Missing))
            .unwrap_or(Export::Missing);
        let state = store.data_mut();
        state.memory = memory;
        state.allocator = allocator;
        let mut vm = PluginInstance {
            store,
            exports,
            root: ROOT_CONTEXT,
            next_context: ROOT_CONTEXT.saturating_add(1),
            failed: None,
        };
        let trap = |vm: &mut PluginInstance, trap: GuestTrap| ConfigRefused::Trap {
            trap,
            logs: vm.store.data_mut().take_logs(0),
        };
        let fuel = Budget::Configure;
        if let Err(t) = vm.call("_initialize", |e| &e.initialize, (), fuel) {
            return Err(trap(&mut vm, t));
        }
        if let Err(t) = vm.call("main", |e| &e.main, (0, 0), fuel) {
            return Err(trap(&mut vm, t));
        }
        let root = ctx(vm.root);
        if let Err(t) = vm.call(
            "proxy_on_context_create",
            |e| &e.context_create,
            (root, 0),
            fuel,
        ) {
            return Err(trap(&mut vm, t));
        }
        let vm_config_len = len32(settings.vm_configuration.len());
        let plugin_config_len = len32(configuration.len());
        let vm_start: Pick<(i32, i32), i32> = |e| &e.vm_start;
        let configure: Pick<(i32, i32), i32> = |e| &e.configure;
        for (callback, pick, size) in [
            ("proxy_on_vm_start", vm_start, vm_config_len),
            ("proxy_on_configure", configure, plugin_config_len),
        ] {
            match vm.call(callback, pick, (root, size), fuel) {
                Err(t) => return Err(trap(&mut vm, t)),
                Ok(Some(0)) => {
                    return Err(ConfigRefused::Refused {
                        callback: callback.into(),
                        logs: vm.store.data_mut().take_logs(0),
                    });
                }
                Ok(_) => {}
            }
        }
        Ok(vm)
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK_MS`] from a thread that ends once the engine
/// is dropped.
fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("palisade-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(EPOCH_TICK_MS));
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .map(drop)
}

/// Which budget a guest call gets.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Configure,
    Callback,
}

/// The response code details of a request refused because the VM failed (Envoy's).
const FAIL_STREAM: &str = "wasm_fail_stream";

/// The root context's id, as Envoy gives the first root context.
const ROOT_CONTEXT: u32 = 1;

fn ctx(id: u32) -> i32 {
    i32::from_ne_bytes(id.to_ne_bytes())
}

fn len32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// What happened to one HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOutcome {
    /// The request went on to the upstream: the headers callback (and the body callback, if
    /// any) continued, and the guest neither replied locally nor closed the stream.
    pub allowed: bool,
    /// The local reply's status (`None` when the request went on); 503 when the VM failed.
    pub status: Option<u32>,
    /// The local reply's response code details.
    pub details: Option<String>,
    /// The local reply's headers.
    pub headers: Vec<(String, String)>,
    /// The local reply's body.
    pub body: Vec<u8>,
    /// Log lines emitted while the request was processed.
    pub logs: Vec<LogLine>,
    /// What `proxy_on_request_headers` returned.
    pub action: Option<Action>,
    /// The request headers as the guest left them (it may add or remove some).
    pub request_headers: Vec<(String, String)>,
    /// HTTP callouts made while processing the request.
    pub http_calls: Vec<HttpCall>,
    /// The trap, when the VM failed (the request is then refused: fail closed).
    pub trap: Option<GuestTrap>,
}

/// What happened to one TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOutcome {
    /// The connection went on: the callbacks continued and nothing was closed.
    pub allowed: bool,
    /// The guest closed the downstream (or upstream) connection.
    pub closed: bool,
    /// Log lines emitted while the connection was processed.
    pub logs: Vec<LogLine>,
    /// The trap, when the VM failed (the connection is then closed: fail closed).
    pub trap: Option<GuestTrap>,
}

/// A guest export, looked up by name and type-checked once per VM (not on every call).
#[derive(Clone)]
pub(crate) enum Export<P, R> {
    /// The guest does not export it: the call is skipped, as Envoy skips it.
    Missing,
    /// Exported with another signature: calling it fails ([`TrapKind::Signature`]).
    Mistyped(String),
    /// Ready to call.
    Func(TypedFunc<P, R>),
}

fn export<P: WasmParams, R: WasmResults>(
    instance: &wasmtime::Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Export<P, R> {
    match instance.get_func(&mut *store, name) {
        None => Export::Missing,
        Some(f) => match f.typed::<P, R>(&*store) {
            Ok(t) => Export::Func(t),
            Err(e) => Export::Mistyped(e.to_string()),
        },
    }
}

/// The callbacks the host calls, resolved when the VM starts.
struct Exports {
    initialize: Export<(), ()>,
    main: Export<(i32, i32), i32>,
    context_create: Export<(i32, i32), ()>,
    vm_start: Export<(i32, i32), i32>,
    configure: Export<(i32, i32), i32>,
    request_headers: Export<(i32, i32, i32), i32>,
    request_body: Export<(i32, i32, i32), i32>,
    http_call_response: Export<(i32, i32, i32, i32, i32), ()>,
    done: Export<i32, i32>,
    log: Export<i32, ()>,
    delete: Export<i32, ()>,
    new_connection: Export<i32, i32>,
    downstream_data: Export<(i32, i32, i32), i32>,
    connection_close: Export<(i32, i32), ()>,
    tick: Export<i32, ()>,
}

impl Exports {
    fn of(i: &wasmtime::Instance, s: &mut Store<HostState>) -> Exports {
        Exports {
            initialize: export(i, s, "_initialize"),
            main: export(i, s, "main"),
            context_create: export(i, s, "proxy_on_context_create"),
            vm_start: export(i, s, "proxy_on_vm_start"),
            configure: export(i, s, "proxy_on_configure"),
            request_headers: export(i, s, "proxy_on_request_headers"),
            request_body: export(i, s, "proxy_on_request_body"),
            http_call_response: export(i, s, "proxy_on_http_call_response"),
            done: export(i, s, "proxy_on_done"),
            log: export(i, s, "proxy_on_log"),
            delete: export(i, s, "proxy_on_delete"),
            new_connection: export(i, s, "proxy_on_new_connection"),
            downstream_data: export(i, s, "proxy_on_downstream_data"),
            connection_close: export(i, s, "proxy_on_downstream_connection_close"),
            tick: export(i, s, "proxy_on_tick"),
        }
    }
}

/// Picks one callback out of [`Exports`].
type Pick<P, R> = fn(&Exports) -> &Export<P, R>;

/// What one stream showed Envoy, without the copies an [`HttpOutcome`] makes (its log lines,
/// the request headers as the guest left them): what a replay of many requests reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The request or connection went on (as [`HttpOutcome::allowed`], [`TcpOutcome::allowed`]).
    pub allowed: bool,
    /// HTTP: the local reply's status and response code details (503 `wasm_fail_stream` when
    /// the VM failed).
    pub reply: Option<(u32, String)>,
    /// HTTP: the local reply's `x-palisade-policy` header.
    pub policy_header: Option<String>,
    /// The metric increments the guest made during the stream, in order: name and offset.
    pub increments: Vec<(Arc<str>, i64)>,
    /// The trap, when the VM failed.
    pub trap: Option<GuestTrap>,
}

/// A configured VM: the root context is live; streams come one at a time.
pub struct PluginInstance {
    store: Store<HostState>,
    exports: Exports,
    root: u32,
    next_context: u32,
    failed: Option<GuestTrap>,
}

impl fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginInstance")
            .field("root", &self.root)
            .field("next_context", &self.next_context)
            .field("failed", &self.failed)
            .finish()
    }
}

impl PluginInstance {
    /// Calls an export if the guest has it (`Ok(None)` when it does not).
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        pick: Pick<P, R>,
        params: P,
        budget: Budget,
    ) -> Result<Option<R>, GuestTrap> {
        let trap = |kind, message: String| GuestTrap {
            callback: name.into(),
            kind,
            message,
        };
        let func = match pick(&self.exports) {
            Export::Missing => return Ok(None),
            Export::Mistyped(e) => return Err(trap(TrapKind::Signature, e.clone())),
            Export::Func(f) => f,
        };
        let settings = &self.store.data().settings;
        match settings.bound {
            Bound::Fuel => {
                let fuel = match budget {
                    Budget::Configure => settings.configure_fuel,
                    Budget::Callback => settings.callback_fuel,
                };
                self.store
                    .set_fuel(fuel)
                    .map_err(|e| trap(TrapKind::Host, format!("{e:?}")))?;
            }
            Bound::Time {
                configure_ms,
                callback_ms,
            } => {
                let ms = match budget {
                    Budget::Configure => configure_ms,
                    Budget::Callback => callback_ms,
                };
                self.store
                    .set_epoch_deadline(ms.div_ceil(EPOCH_TICK_MS).saturating_add(1));
            }
        }
        match func.call(&mut self.store, params) {
            Ok(r) => Ok(Some(r)),
            Err(e) => Err(match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::OutOfFuel) => trap(TrapKind::OutOfFuel, format!("{e:?}")),
                Some(wasmtime::Trap::Interrupt) => trap(TrapKind::Interrupted, format!("{e:?}")),
                Some(_) => trap(TrapKind::Wasm, format!("{e:?}")),
                None => trap(TrapKind::Host, format!("{e:?}")),
            }),
        }
    }

    /// A stream callback; a trap kills the VM.
    fn stream_call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        pick: Pick<P, R>,
        params: P,
    ) -> Result<Option<R>, GuestTrap> {
        let r = self.call(name, pick, params, Budget::Callback);
        if let Err(t) = &r {
            self.failed = Some(t.clone());
        }
        r
    }

    /// The size of the VM's linear memory in bytes: the most the guest ever held, since
    /// wasm memory grows in 64 KiB pages and never shrinks (Envoy's V8 keeps the touched
    /// pages resident).
    pub fn memory_bytes(&mut self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.store))
    }

    /// The trap that killed this VM, if one did.
    pub fn failed(&self) -> Option<&GuestTrap> {
        self.failed.as_ref()
    }

    fn new_context(&mut self) -> u32 {
        let id = self.next_context;
        self.next_context = self.next_context.saturating_add(1);
        id
    }

    /// Runs one HTTP request, given as the engine's request (converted as Envoy 1.40 would
    /// present it: see [`crate::envoy`]).
    pub fn http(&mut self, request: &palisade_engine::Request) -> HttpOutcome {
        self.http_with(|s| encode_request(request, s))
    }

    /// Runs one HTTP request given as Envoy's properties and headers.
    pub fn http_stream(&mut self, input: StreamInput) -> HttpOutcome {
        self.http_with(|s| s.fill(input))
    }

    fn http_with(&mut self, fill: impl FnOnce(&mut StreamState)) -> HttpOutcome {
        let log_start = self.store.data().logs.len();
        let mut outcome = HttpOutcome {
            allowed: false,
            status: None,
            details: None,
            headers: Vec::new(),
            body: Vec::new(),
            logs: Vec::new(),
            action: None,
            request_headers: Vec::new(),
            http_calls: Vec::new(),
            trap: None,
        };
        if let Err(t) = self.run_http(fill, &mut outcome.action) {
            outcome.trap = Some(t);
        }
        let state = self.store.data_mut();
        outcome.logs = state.take_logs(log_start);
        outcome.request_headers = state
            .stream
            .map(abi::map::HTTP_REQUEST_HEADERS)
            .iter()
            .map(|(k, v)| (lossy(k), lossy(v)))
            .collect();
        outcome.http_calls = std::mem::take(&mut state.stream.calls);
        if let Some(reply) = state.stream.local_reply.take() {
            outcome.status = Some(reply.status);
            outcome.details = Some(reply.details);
            outcome.headers = reply.headers;
            outcome.body = reply.body;
        }
        let went_on = self.went_on(outcome.action);
        outcome.allowed = outcome.trap.is_none() && went_on && outcome.status.is_none();
        if outcome.trap.is_some() {
            // Envoy's FAIL_CLOSED: the filter answers 503 once the VM has failed.
            outcome.status = Some(503);
            outcome.details = Some(FAIL_STREAM.into());
        }
        outcome
    }

    /// Whether the request went on: the headers callback continued (or the guest resumed
    /// the stream) and nothing was closed.
    fn went_on(&self, action: Option<Action>) -> bool {
        let stream = &self.store.data().stream;
        let continued = stream.continued.contains(&abi::stream::HTTP_REQUEST);
        (action == Some(Action::Continue) || continued) && stream.closed.is_empty()
    }

    /// Runs one HTTP request (as [`PluginInstance::http`]) and reads back only what Envoy
    /// shows of it: the verdict, the local reply and the metric increments. Log lines the
    /// guest wrote are dropped.
    pub fn http_summary(&mut self, request: &palisade_engine::Request) -> StreamSummary {
        self.http_summary_answering(request, BTreeMap::new())
    }

    /// [`PluginInstance::http`], HTTP callouts to these upstreams answered as given (before the
    /// settings' fixtures): replay serves a request's recorded CUSTOM provider answers so.
    pub fn http_answering(
        &mut self,
        request: &palisade_engine::Request,
        answers: BTreeMap<String, HttpFixture>,
    ) -> HttpOutcome {
        self.http_with(|s| {
            encode_request(request, s);
            s.answers = answers;
        })
    }

    /// [`PluginInstance::http_summary`] with callout answers, as [`PluginInstance::http_answering`].
    pub fn http_summary_answering(
        &mut self,
        request: &palisade_engine::Request,
        answers: BTreeMap<String, HttpFixture>,
    ) -> StreamSummary {
        let log_start = self.store.data().logs.len();
        let mut action = None;
        let trap = self
            .run_http(
                |s| {
                    encode_request(request, s);
                    s.answers = answers;
                },
                &mut action,
            )
            .err();
        let went_on = self.went_on(action);
        let state = self.store.data_mut();
        state.logs.truncate(log_start);
        let (reply, policy_header) = match state.stream.local_reply.take() {
            Some(r) => {
                let header = r
                    .headers
                    .into_iter()
                    .find(|(k, _)| k == crate::decider::POLICY_HEADER)
                    .map(|(_, v)| v);
                (Some((r.status, r.details)), header)
            }
            None => (None, None),
        };
        let allowed = trap.is_none() && went_on && reply.is_none();
        StreamSummary {
            allowed,
            reply: if trap.is_some() {
                Some((503, FAIL_STREAM.into()))
            } else {
                reply
            },
            policy_header,
            increments: state.increments(),
            trap,
        }
    }

    fn run_http(
        &mut self,
        fill: impl FnOnce(&mut StreamState),
        action_out: &mut Option<Action>,
    ) -> Result<(), GuestTrap> {
        if let Some(t) = &self.failed {
            return Err(t.clone());
        }
        let id = self.new_context();
        let state = self.store.data_mut();
        state.begin_stream(id, fill);
        let has_body = !state
            .stream
            .buffer(abi::buffer::HTTP_REQUEST_BODY)
            .is_empty();
        let headers = len32(state.stream.map(abi::map::HTTP_REQUEST_HEADERS).len());
        let (c, root) = (ctx(id), ctx(self.root));
        self.stream_call("proxy_on_context_create", |e| &e.context_create, (c, root))?;
        let eos = i32::from(!has_body);
        let action = self.stream_call(
            "proxy_on_request_headers",
            |e| &e.request_headers,
            (c, headers, eos),
        )?;
        let action = action.map_or(Action::Continue, Action::from_code);
        *action_out = Some(action);
        self.answer_http_calls()?;
        if has_body && action == Action::Continue && self.store.data().stream.local_reply.is_none()
        {
            let size = len32(
                self.store
                    .data()
                    .stream
                    .buffer(abi::buffer::HTTP_REQUEST_BODY)
                    .len(),
            );
            let a = self.stream_call("proxy_on_request_body", |e| &e.request_body, (c, size, 1))?;
            if a.map(Action::from_code) == Some(Action::Pause) {
                *action_out = Some(Action::Pause);
            }
            self.answer_http_calls()?;
        }
        self.finish(id)
    }

    /// Answers the callouts the guest made, from the fixtures, until none is pending.
    fn answer_http_calls(&mut self) -> Result<(), GuestTrap> {
        for _ in 0..64 {
            let Some((token, context)) = self.store.data_mut().pending_calls.pop_front() else {
                return Ok(());
            };
            let fixture = {
                let state = self.store.data_mut();
                let upstream = state
                    .stream
                    .calls
                    .iter()
                    .find(|c| c.token == token)
                    .map(|c| c.upstream.clone())
                    .unwrap_or_default();
                state
                    .stream
                    .answers
                    .get(&upstream)
                    .or_else(|| state.settings.http_fixtures.get(&upstream))
                    .cloned()
            }
            .unwrap_or_default();
            let (h, b, t) = (
                len32(fixture.headers.len()),
                len32(fixture.body.len()),
                len32(fixture.trailers.len()),
            );
            self.store.data_mut().call_response = Some(fixture);
            let r = self.stream_call(
                "proxy_on_http_call_response",
                |e| &e.http_call_response,
                (ctx(context), ctx(token), h, b, t),
            );
            self.store.data_mut().call_response = None;
            r?;
        }
        Ok(())
    }

    /// `proxy_on_done`, `proxy_on_log`, `proxy_on_delete` for a stream context.
    fn finish(&mut self, id: u32) -> Result<(), GuestTrap> {
        let c = ctx(id);
        self.stream_call("proxy_on_done", |e| &e.done, c)?;
        self.stream_call("proxy_on_log", |e| &e.log, c)?;
        self.stream_call("proxy_on_delete", |e| &e.delete, c)?;
        Ok(())
    }

    /// Runs one TCP connection, given as the engine's request.
    pub fn tcp(&mut self, request: &palisade_engine::Request) -> TcpOutcome {
        self.tcp_with(|s| encode_request(request, s))
    }

    /// Runs one TCP connection given as Envoy's properties; the first data the client sends
    /// is `input.downstream_data`, or the settings' `tcp_first_data` when that is empty.
    pub fn tcp_stream(&mut self, input: StreamInput) -> TcpOutcome {
        self.tcp_with(|s| s.fill(input))
    }

    fn tcp_with(&mut self, fill: impl FnOnce(&mut StreamState)) -> TcpOutcome {
        let log_start = self.store.data().logs.len();
        let result = self.run_tcp(fill);
        let state = self.store.data_mut();
        let closed = !state.stream.closed.is_empty();
        let logs = state.take_logs(log_start);
        match result {
            Ok(went_on) => TcpOutcome {
                allowed: went_on && !closed,
                closed,
                logs,
                trap: None,
            },
            Err(t) => TcpOutcome {
                allowed: false,
                closed: true,
                logs,
                trap: Some(t),
            },
        }
    }

    /// Runs one TCP connection (as [`PluginInstance::tcp`]) and reads back only the verdict
    /// and the metric increments; log lines the guest wrote are dropped.
    pub fn tcp_summary(&mut self, request: &palisade_engine::Request) -> StreamSummary {
        let log_start = self.store.data().logs.len();
        let result = self.run_tcp(|s| encode_request(request, s));
        let state = self.store.data_mut();
        state.logs.truncate(log_start);
        let closed = !state.stream.closed.is_empty();
        let (allowed, trap) = match result {
            Ok(went_on) => (went_on && !closed, None),
            Err(t) => (false, Some(t)),
        };
        StreamSummary {
            allowed,
            reply: None,
            policy_header: None,
            increments: state.increments(),
            trap,
        }
    }

    fn run_tcp(&mut self, fill: impl FnOnce(&mut StreamState)) -> Result<bool, GuestTrap> {
        if let Some(t) = &self.failed {
            return Err(t.clone());
        }
        let id = self.new_context();
        let state = self.store.data_mut();
        state.begin_stream(id, fill);
        let HostState {
            stream, settings, ..
        } = state;
        if let Some(data) = stream.buffer_mut(abi::buffer::DOWNSTREAM_DATA)
            && data.is_empty()
        {
            data.extend_from_slice(&settings.tcp_first_data);
        }
        let data = len32(stream.buffer(abi::buffer::DOWNSTREAM_DATA).len());
        let (c, root) = (ctx(id), ctx(self.root));
        self.stream_call("proxy_on_context_create", |e| &e.context_create, (c, root))?;
        let first = self.stream_call("proxy_on_new_connection", |e| &e.new_connection, c)?;
        let mut went_on = first.map_or(Action::Continue, Action::from_code) == Action::Continue;
        if went_on && self.store.data().stream.closed.is_empty() {
            let a = self.stream_call(
                "proxy_on_downstream_data",
                |e| &e.downstream_data,
                (c, data, 0),
            )?;
            went_on = a.map_or(Action::Continue, Action::from_code) == Action::Continue;
        }
        self.answer_http_calls()?;
        let peer = if self.store.data().stream.closed.is_empty() {
            abi::PEER_REMOTE
        } else {
            1
        };
        self.stream_call(
            "proxy_on_downstream_connection_close",
            |e| &e.connection_close,
            (c, peer),
        )?;
        self.finish(id)?;
        Ok(went_on)
    }

    /// Calls `proxy_on_tick` on the root context (the host's timer, fired by hand).
    pub fn tick(&mut self) -> Result<(), GuestTrap> {
        if let Some(t) = &self.failed {
            return Err(t.clone());
        }
        let root = ctx(self.root);
        self.store.data_mut().current_context = self.root;
        self.stream_call("proxy_on_tick", |e| &e.tick, root)?;
        self.answer_http_calls()
    }

    /// The tick period the guest asked for (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// Every metric the guest defined, by name (gauges below zero read 0; histograms their
    /// number of recorded values).
    pub fn metrics(&self) -> BTreeMap<String, u64> {
        self.store
            .data()
            .metrics
            .iter()
            .map(|m| (m.name.to_string(), u64::try_from(m.value).unwrap_or(0)))
            .collect()
    }

    /// The shared data, by key (value and CAS).
    pub fn shared_data(&self) -> BTreeMap<Vec<u8>, (Vec<u8>, u32)> {
        self.store.data().shared.clone()
    }

    /// Every log line since the VM started that no outcome has taken yet (those of
    /// starting and configuring, say).
    pub fn logs(&mut self) -> Vec<LogLine> {
        self.store.data_mut().take_logs(0)
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A metric the guest defined.
#[derive(Debug, Clone)]
pub(crate) struct Metric {
    pub(crate) name: Arc<str>,
    pub(crate) kind: MetricType,
    pub(crate) value: i64,
}

/// A header map: pairs in order, names as the guest or the host gave them.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A stream's properties: path (NUL-joined) and value, looked up by a scan (a stream has a
/// dozen). The buffers are kept from one stream to the next and overwritten in place, so a
/// stream sets its properties without allocating.
#[derive(Debug, Default)]
pub(crate) struct Props {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    len: usize,
}

impl Props {
    fn clear(&mut self) {
        self.len = 0;
    }

    fn live(&self) -> &[(Vec<u8>, Vec<u8>)] {
        self.entries.get(..self.len).unwrap_or_default()
    }

    pub(crate) fn get(&self, path: &[u8]) -> Option<&[u8]> {
        self.live()
            .iter()
            .find(|(k, _)| k.as_slice() == path)
            .map(|(_, v)| v.as_slice())
    }

    /// A new property's (emptied) value buffer.
    fn push(&mut self, path: &[u8]) -> Option<&mut Vec<u8>> {
        if self.entries.len() <= self.len {
            self.entries.push((Vec::new(), Vec::new()));
        }
        let (k, v) = self.entries.get_mut(self.len)?;
        if k.as_slice() != path {
            k.clear();
            k.extend_from_slice(path);
        }
        v.clear();
        self.len = self.len.saturating_add(1);
        Some(v)
    }

    /// Sets a property, replacing its value if it is set.
    pub(crate) fn set(&mut self, path: &[u8], value: Vec<u8>) {
        let len = self.len;
        if let Some((_, v)) = self
            .entries
            .iter_mut()
            .take(len)
            .find(|(k, _)| k.as_slice() == path)
        {
            *v = value;
        } else if let Some(v) = self.push(path) {
            *v = value;
        }
    }
}

/// The number of header map types a stream has (`HTTP_REQUEST_HEADERS` ..
/// `GRPC_CALL_TRAILING_METADATA`).
const STREAM_MAPS: usize = 6;
/// The number of buffer types a stream has (`HTTP_REQUEST_BODY` .. `UPSTREAM_DATA`).
const STREAM_BUFFERS: usize = 4;

/// Per-stream state: what the guest reads and what it did. Kept from one stream to the next
/// and reset in place (its buffers keep their capacity).
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub(crate) context: u32,
    pub(crate) properties: Props,
    maps: [Pairs; STREAM_MAPS],
    buffers: [Vec<u8>; STREAM_BUFFERS],
    pub(crate) local_reply: Option<LocalReply>,
    pub(crate) closed: Vec<i32>,
    pub(crate) continued: Vec<i32>,
    pub(crate) calls: Vec<HttpCall>,
    /// This stream's HTTP callout answers by upstream (before the settings' fixtures): a
    /// replayed request's recorded CUSTOM provider answers.
    pub(crate) answers: BTreeMap<String, HttpFixture>,
    /// The metric increments made during this stream: metric index and offset.
    pub(crate) increments: Vec<(usize, i64)>,
    /// How many request headers were set so far while filling.
    headers_set: usize,
}

impl StreamState {
    pub(crate) fn map(&self, t: i32) -> &[(Vec<u8>, Vec<u8>)] {
        usize::try_from(t)
            .ok()
            .and_then(|i| self.maps.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// A stream header map, to change; `None` for another type.
    pub(crate) fn map_mut(&mut self, t: i32) -> Option<&mut Pairs> {
        usize::try_from(t).ok().and_then(|i| self.maps.get_mut(i))
    }

    pub(crate) fn buffer(&self, t: i32) -> &[u8] {
        usize::try_from(t)
            .ok()
            .and_then(|i| self.buffers.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// A stream buffer, to change; `None` for another type.
    pub(crate) fn buffer_mut(&mut self, t: i32) -> Option<&mut Vec<u8>> {
        usize::try_from(t)
            .ok()
            .and_then(|i| self.buffers.get_mut(i))
    }

    /// Empties everything for a new stream, keeping the buffers' capacity.
    fn reset(&mut self, context: u32) {
        self.context = context;
        self.properties.clear();
        for m in self.maps.iter_mut().skip(1) {
            m.clear();
        }
        self.headers_set = 0;
        for b in &mut self.buffers {
            b.clear();
        }
        self.local_reply = None;
        self.closed.clear();
        self.continued.clear();
        self.calls.clear();
        self.answers.clear();
        self.increments.clear();
    }

    /// Ends filling: request headers left over from an earlier stream go.
    fn end_fill(&mut self) {
        let n = self.headers_set;
        if let Some(m) = self.maps.get_mut(0) {
            m.truncate(n);
        }
    }

    /// Sets what a [`StreamInput`] shows.
    pub(crate) fn fill(&mut self, input: StreamInput) {
        for (path, value) in input.properties.into_inner() {
            self.properties.set(&path, value);
        }
        for (k, v) in &input.request_headers {
            self.header(k.as_bytes(), v.as_bytes());
        }
        if let Some(b) = self.buffer_mut(abi::buffer::HTTP_REQUEST_BODY) {
            *b = input.request_body;
        }
        if let Some(b) = self.buffer_mut(abi::buffer::DOWNSTREAM_DATA) {
            *b = input.downstream_data;
        }
    }
}

impl StreamSink for StreamState {
    fn property(&mut self, path: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        if let Some(v) = self.properties.push(path) {
            value(v);
        }
    }

    fn header(&mut self, name: &[u8], value: &[u8]) {
        let i = self.headers_set;
        let Some(map) = self.maps.get_mut(0) else {
            return;
        };
        match map.get_mut(i) {
            Some((k, v)) => {
                k.clear();
                k.extend_from_slice(name);
                v.clear();
                v.extend_from_slice(value);
            }
            None => map.push((name.to_vec(), value.to_vec())),
        }
        self.headers_set = i.saturating_add(1);
    }
}

/// A shared queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) items: VecDeque<Vec<u8>>,
}

/// Everything the host keeps for one VM (wasmtime's store data).
pub(crate) struct HostState {
    pub(crate) limits: StoreLimits,
    pub(crate) settings: Arc<HostSettings>,
    pub(crate) plugin_configuration: Vec<u8>,
    pub(crate) stream: StreamState,
    pub(crate) current_context: u32,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) shared: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    pub(crate) queues: Vec<Queue>,
    pub(crate) tick_period_ms: u32,
    pub(crate) pending_calls: VecDeque<(u32, u32)>,
    pub(crate) next_token: u32,
    pub(crate) call_response: Option<HttpFixture>,
    pub(crate) rng: u64,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) done_called: u32,
    /// The guest's `memory`, resolved once.
    pub(crate) memory: Option<Memory>,
    /// The guest's allocator (`proxy_on_memory_allocate`, else `malloc`), resolved once.
    pub(crate) allocator: Export<i32, i32>,
    /// A buffer the imports reuse to stage bytes for the guest.
    pub(crate) scratch: Vec<u8>,
}

impl HostState {
    fn new(settings: Arc<HostSettings>, plugin_configuration: Vec<u8>) -> HostState {
        let limits = StoreLimitsBuilder::new()
            .memory_size(settings.max_memory)
            .build();
        let rng = settings.random_seed | 1;
        HostState {
            limits,
            settings,
            plugin_configuration,
            stream: StreamState::default(),
            current_context: ROOT_CONTEXT,
            logs: Vec::new(),
            metrics: Vec::new(),
            shared: BTreeMap::new(),
            queues: Vec::new(),
            tick_period_ms: 0,
            pending_calls: VecDeque::new(),
            next_token: 1,
            call_response: None,
            rng,
            stdout: Vec::new(),
            stderr: Vec::new(),
            done_called: 0,
            memory: None,
            allocator: Export::Missing,
            scratch: Vec::new(),
        }
    }

    fn begin_stream(&mut self, context: u32, fill: impl FnOnce(&mut StreamState)) {
        self.stream.reset(context);
        fill(&mut self.stream);
        self.stream.end_fill();
        self.current_context = context;
        self.pending_calls.clear();
    }

    /// The metric increments of the current stream, by name.
    fn increments(&self) -> Vec<(Arc<str>, i64)> {
        self.stream
            .increments
            .iter()
            .filter_map(|(i, by)| self.metrics.get(*i).map(|m| (m.name.clone(), *by)))
            .collect()
    }

    /// The log lines from index `start` on, removed.
    fn take_logs(&mut self, start: usize) -> Vec<LogLine> {
        if start >= self.logs.len() {
            return Vec::new();
        }
        self.logs.split_off(start)
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        let context_id = self.current_context;
        self.logs.push(LogLine {
            level,
            message,
            context_id,
        });
    }

    /// A property: the stream's, else the host-wide ones, else the plugin's own.
    pub(crate) fn property(&self, path: &[u8]) -> Option<&[u8]> {
        if let Some(v) = self.stream.properties.get(path) {
            return Some(v);
        }
        if let Some(v) = self.settings.properties.get_raw(path) {
            return Some(v);
        }
        match path {
            b"plugin_name" | b"plugin_root_id" => Some(self.settings.root_id.as_bytes()),
            b"plugin_vm_id" => Some(self.settings.vm_id.as_bytes()),
            _ => None,
        }
    }

    /// The next pseudo-random u64 (xorshift64*, seeded: deterministic).
    pub(crate) fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The buffer of a type: the stream's, the configurations, or a callout's body.
    pub(crate) fn buffer(&self, t: i32) -> Option<&[u8]> {
        match t {
            abi::buffer::PLUGIN_CONFIGURATION => Some(&self.plugin_configuration),
            abi::buffer::VM_CONFIGURATION => Some(&self.settings.vm_configuration),
            abi::buffer::HTTP_CALL_RESPONSE_BODY => {
                self.call_response.as_ref().map(|r| r.body.as_slice())
            }
            abi::buffer::HTTP_REQUEST_BODY
            | abi::buffer::HTTP_RESPONSE_BODY
            | abi::buffer::DOWNSTREAM_DATA
            | abi::buffer::UPSTREAM_DATA => Some(self.stream.buffer(t)),
            _ => None,
        }
    }

    /// Serializes a header map of a type into `out` (callout maps from the current response);
    /// `None` for an unknown type.
    pub(crate) fn serialize_map(&self, t: i32, out: &mut Vec<u8>) -> Option<()> {
        self.with_map(t, |pairs| abi::serialize_pairs_into(out, pairs))
    }

    /// Runs `f` over a header map of a type (callout maps from the current response).
    pub(crate) fn with_map<T>(
        &self,
        t: i32,
        f: impl FnOnce(&[(Vec<u8>, Vec<u8>)]) -> T,
    ) -> Option<T> {
        let from = |p: &[(String, String)]| -> Pairs {
            p.iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                .collect()
        };
        match t {
            abi::map::HTTP_CALL_RESPONSE_HEADERS => {
                self.call_response.as_ref().map(|r| f(&from(&r.headers)))
            }
            abi::map::HTTP_CALL_RESPONSE_TRAILERS => {
                self.call_response.as_ref().map(|r| f(&from(&r.trailers)))
            }
            0..=5 => Some(f(self.stream.map(t))),
            _ => None,
        }
    }
}
