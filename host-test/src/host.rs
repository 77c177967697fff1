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
    Config, Engine, InstancePre, Linker, Module, Store, StoreLimits, StoreLimitsBuilder,
    WasmParams, WasmResults,
};

use crate::abi::{self, Action, LogLevel, MetricType};
use crate::envoy::{PropertyMap, StreamInput};

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

/// What the host offers every VM; the defaults suit a test.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Fuel for `_initialize`, `proxy_on_vm_start` and `proxy_on_configure` (compiling a
    /// large policy is the heaviest call).
    pub configure_fuel: u64,
    /// Fuel for each stream callback.
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
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(|e| HostError::Compile(e.to_string()))?;
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
        let mut vm = PluginInstance {
            store,
            instance,
            root: ROOT_CONTEXT,
            next_context: ROOT_CONTEXT.saturating_add(1),
            failed: None,
        };
        let trap = |vm: &mut PluginInstance, trap: GuestTrap| ConfigRefused::Trap {
            trap,
            logs: vm.store.data_mut().take_logs(0),
        };
        let fuel = settings.configure_fuel;
        if let Err(t) = vm.call::<(), ()>("_initialize", (), fuel) {
            return Err(trap(&mut vm, t));
        }
        if let Err(t) = vm.call::<(i32, i32), i32>("main", (0, 0), fuel) {
            return Err(trap(&mut vm, t));
        }
        let root = ctx(vm.root);
        if let Err(t) = vm.call::<(i32, i32), ()>("proxy_on_context_create", (root, 0), fuel) {
            return Err(trap(&mut vm, t));
        }
        let vm_config_len = len32(settings.vm_configuration.len());
        let plugin_config_len = len32(configuration.len());
        for (callback, size) in [
            ("proxy_on_vm_start", vm_config_len),
            ("proxy_on_configure", plugin_config_len),
        ] {
            match vm.call::<(i32, i32), i32>(callback, (root, size), fuel) {
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

/// A configured VM: the root context is live; streams come one at a time.
pub struct PluginInstance {
    store: Store<HostState>,
    instance: wasmtime::Instance,
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
        params: P,
        fuel: u64,
    ) -> Result<Option<R>, GuestTrap> {
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let typed = func.typed::<P, R>(&self.store).map_err(|e| GuestTrap {
            callback: name.into(),
            kind: TrapKind::Signature,
            message: e.to_string(),
        })?;
        let trap = |kind, e: &wasmtime::Error| GuestTrap {
            callback: name.into(),
            kind,
            message: format!("{e:?}"),
        };
        self.store
            .set_fuel(fuel)
            .map_err(|e| trap(TrapKind::Host, &e))?;
        match typed.call(&mut self.store, params) {
            Ok(r) => Ok(Some(r)),
            Err(e) => Err(match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::OutOfFuel) => trap(TrapKind::OutOfFuel, &e),
                Some(_) => trap(TrapKind::Wasm, &e),
                None => trap(TrapKind::Host, &e),
            }),
        }
    }

    /// A stream callback; a trap kills the VM.
    fn stream_call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        params: P,
    ) -> Result<Option<R>, GuestTrap> {
        let fuel = self.store.data().settings.callback_fuel;
        let r = self.call::<P, R>(name, params, fuel);
        if let Err(t) = &r {
            self.failed = Some(t.clone());
        }
        r
    }

    /// The size of the VM's linear memory in bytes: the most the guest ever held, since
    /// wasm memory grows in 64 KiB pages and never shrinks (Envoy's V8 keeps the touched
    /// pages resident).
    pub fn memory_bytes(&mut self) -> usize {
        self.instance
            .get_memory(&mut self.store, "memory")
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
        self.http_stream(StreamInput::from_request(request))
    }

    /// Runs one HTTP request given as Envoy's properties and headers.
    pub fn http_stream(&mut self, input: StreamInput) -> HttpOutcome {
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
        if let Err(t) = self.run_http(input, &mut outcome) {
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
        let closed = !state.stream.closed.is_empty();
        let continued = state.stream.continued.contains(&abi::stream::HTTP_REQUEST);
        let went_on = outcome.action == Some(Action::Continue) || continued;
        outcome.allowed = outcome.trap.is_none() && went_on && outcome.status.is_none() && !closed;
        if outcome.trap.is_some() {
            // Envoy's FAIL_CLOSED: the filter answers 503 once the VM has failed.
            outcome.status = Some(503);
            outcome.details = Some("wasm_fail_stream".into());
        }
        outcome
    }

    fn run_http(&mut self, input: StreamInput, outcome: &mut HttpOutcome) -> Result<(), GuestTrap> {
        if let Some(t) = &self.failed {
            return Err(t.clone());
        }
        let id = self.new_context();
        let has_body = !input.request_body.is_empty();
        let headers = len32(input.request_headers.len());
        self.store.data_mut().begin_stream(id, input);
        let (c, root) = (ctx(id), ctx(self.root));
        self.stream_call::<(i32, i32), ()>("proxy_on_context_create", (c, root))?;
        let eos = i32::from(!has_body);
        let action = self
            .stream_call::<(i32, i32, i32), i32>("proxy_on_request_headers", (c, headers, eos))?;
        let action = action.map_or(Action::Continue, Action::from_code);
        outcome.action = Some(action);
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
            let a =
                self.stream_call::<(i32, i32, i32), i32>("proxy_on_request_body", (c, size, 1))?;
            if a.map(Action::from_code) == Some(Action::Pause) {
                outcome.action = Some(Action::Pause);
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
                state.settings.http_fixtures.get(&upstream).cloned()
            }
            .unwrap_or_default();
            let (h, b, t) = (
                len32(fixture.headers.len()),
                len32(fixture.body.len()),
                len32(fixture.trailers.len()),
            );
            self.store.data_mut().call_response = Some(fixture);
            let r = self.stream_call::<(i32, i32, i32, i32, i32), ()>(
                "proxy_on_http_call_response",
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
        self.stream_call::<i32, i32>("proxy_on_done", c)?;
        self.stream_call::<i32, ()>("proxy_on_log", c)?;
        self.stream_call::<i32, ()>("proxy_on_delete", c)?;
        Ok(())
    }

    /// Runs one TCP connection, given as the engine's request.
    pub fn tcp(&mut self, request: &palisade_engine::Request) -> TcpOutcome {
        self.tcp_stream(StreamInput::from_request(request))
    }

    /// Runs one TCP connection given as Envoy's properties; the first data the client sends
    /// is `input.downstream_data`, or the settings' `tcp_first_data` when that is empty.
    pub fn tcp_stream(&mut self, mut input: StreamInput) -> TcpOutcome {
        let log_start = self.store.data().logs.len();
        if input.downstream_data.is_empty() {
            input
                .downstream_data
                .clone_from(&self.store.data().settings.tcp_first_data);
        }
        let result = self.run_tcp(input);
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

    fn run_tcp(&mut self, input: StreamInput) -> Result<bool, GuestTrap> {
        if let Some(t) = &self.failed {
            return Err(t.clone());
        }
        let id = self.new_context();
        let data = len32(input.downstream_data.len());
        self.store.data_mut().begin_stream(id, input);
        let (c, root) = (ctx(id), ctx(self.root));
        self.stream_call::<(i32, i32), ()>("proxy_on_context_create", (c, root))?;
        let first = self.stream_call::<i32, i32>("proxy_on_new_connection", c)?;
        let mut went_on = first.map_or(Action::Continue, Action::from_code) == Action::Continue;
        if went_on && self.store.data().stream.closed.is_empty() {
            let a =
                self.stream_call::<(i32, i32, i32), i32>("proxy_on_downstream_data", (c, data, 0))?;
            went_on = a.map_or(Action::Continue, Action::from_code) == Action::Continue;
        }
        self.answer_http_calls()?;
        let peer = if self.store.data().stream.closed.is_empty() {
            abi::PEER_REMOTE
        } else {
            1
        };
        self.stream_call::<(i32, i32), ()>("proxy_on_downstream_connection_close", (c, peer))?;
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
        self.stream_call::<i32, ()>("proxy_on_tick", root)?;
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
            .map(|m| (m.name.clone(), u64::try_from(m.value).unwrap_or(0)))
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
    pub(crate) name: String,
    pub(crate) kind: MetricType,
    pub(crate) value: i64,
}

/// A header map: pairs in order, names as the guest or the host gave them.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Per-stream state: what the guest reads and what it did.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub(crate) context: u32,
    pub(crate) properties: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) maps: BTreeMap<i32, Pairs>,
    pub(crate) buffers: BTreeMap<i32, Vec<u8>>,
    pub(crate) local_reply: Option<LocalReply>,
    pub(crate) closed: Vec<i32>,
    pub(crate) continued: Vec<i32>,
    pub(crate) calls: Vec<HttpCall>,
}

impl StreamState {
    pub(crate) fn map(&self, t: i32) -> &[(Vec<u8>, Vec<u8>)] {
        self.maps.get(&t).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn buffer(&self, t: i32) -> &[u8] {
        self.buffers.get(&t).map_or(&[], Vec::as_slice)
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
        }
    }

    fn begin_stream(&mut self, context: u32, input: StreamInput) {
        let mut maps = BTreeMap::new();
        maps.insert(
            abi::map::HTTP_REQUEST_HEADERS,
            input
                .request_headers
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
                .collect(),
        );
        let mut buffers = BTreeMap::new();
        buffers.insert(abi::buffer::HTTP_REQUEST_BODY, input.request_body);
        buffers.insert(abi::buffer::DOWNSTREAM_DATA, input.downstream_data);
        self.stream = StreamState {
            context,
            properties: input.properties.into_inner(),
            maps,
            buffers,
            ..StreamState::default()
        };
        self.current_context = context;
        self.pending_calls.clear();
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
    pub(crate) fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = self.stream.properties.get(path) {
            return Some(v.clone());
        }
        if let Some(v) = self.settings.properties.get_raw(path) {
            return Some(v.to_vec());
        }
        match path {
            b"plugin_name" | b"plugin_root_id" => Some(self.settings.root_id.clone().into_bytes()),
            b"plugin_vm_id" => Some(self.settings.vm_id.clone().into_bytes()),
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

    /// A header map of a type (callout maps from the current response).
    pub(crate) fn header_map(&self, t: i32) -> Option<Pairs> {
        let from = |p: &[(String, String)]| -> Pairs {
            p.iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                .collect()
        };
        match t {
            abi::map::HTTP_CALL_RESPONSE_HEADERS => {
                self.call_response.as_ref().map(|r| from(&r.headers))
            }
            abi::map::HTTP_CALL_RESPONSE_TRAILERS => {
                self.call_response.as_ref().map(|r| from(&r.trailers))
            }
            0..=5 => Some(self.stream.map(t).to_vec()),
            _ => None,
        }
    }
}
