//! A configured VM ([`PluginInstance`]), driven callback by callback as Envoy drives it.
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

use std::collections::BTreeMap;
use std::fmt;

use palisade_proxy_wasm::enforce::POLICY_HEADER;
use wasmtime::{Store, WasmParams, WasmResults};

use crate::abi::{self, Action};
use crate::envoy::{StreamInput, encode_request};
use crate::error::ConfigRefused;
use crate::exports::{Export, Exports, Pick, export};
use crate::outcome::{HttpOutcome, LogLine, StreamSummary, TcpOutcome};
use crate::settings::{Bound, EPOCH_TICK_MS, HttpFixture};
use crate::state::{HostState, ROOT_CONTEXT, StreamState};
use crate::trap::{GuestTrap, TrapKind};

/// Which budget a guest call gets.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Configure,
    Callback,
}

/// The response code details of a request refused because the VM failed (Envoy's).
const FAIL_STREAM: &str = "wasm_fail_stream";

fn ctx(id: u32) -> i32 {
    i32::from_ne_bytes(id.to_ne_bytes())
}

fn len32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
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
    /// Starts the VM of a fresh instance and runs Envoy's configuration sequence:
    /// `_initialize`, `main`, the root context, `proxy_on_vm_start`, `proxy_on_configure`
    /// (`configuration_len`: the plugin configuration's size, already in the store).
    pub(crate) fn start(
        mut store: Store<HostState>,
        instance: &wasmtime::Instance,
        configuration_len: usize,
    ) -> Result<PluginInstance, ConfigRefused> {
        let exports = Exports::of(instance, &mut store);
        let memory = instance.get_memory(&mut store, "memory");
        let allocator = ["proxy_on_memory_allocate", "malloc"]
            .into_iter()
            .map(|name| export::<_, i32, i32>(instance, &mut store, name))
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
        let vm_config_len = len32(vm.store.data().settings.vm_configuration.len());
        let plugin_config_len = len32(configuration_len);
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
                    .find(|(k, _)| k == POLICY_HEADER)
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
