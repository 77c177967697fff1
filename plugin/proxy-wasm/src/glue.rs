//! The proxy-wasm contexts (wasm32 only): read Envoy's attributes, ask the compiled
//! [`Plugin`], act on the [`Outcome`].
//!
//! The SDK's trait helpers `unwrap` host errors; this glue calls `proxy_wasm::hostcalls`
//! directly and turns every error into a fail-closed decision instead.

mod custom;

use std::cell::RefCell;
use std::rc::Rc;

use palisade_engine::Needs;
use palisade_engine::extauthz::ExtensionProvider;
use palisade_engine::{Decision, Protocol, Request, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{
    Action, BufferType, ContextType, LogLevel, MapType, MetricType, StreamType,
};

use crate::attributes::{
    AttributeError, RawAttributes, build, build_request, decode_bool, decode_labels, decode_string,
    has_port, kept_headers, paths,
};
use crate::config::{Mode, NodeMetadata, Plugin, error_decision};
use crate::enforce::{
    Counter, Level, Outcome, POLICY_HEADER, Total, outcome_with, serialize_pairs,
};
use crate::extauthz::{Answer, Reply, resolve};
use rustc_hash::FxHashMap;

/// The entry point Envoy calls after instantiating the module.
#[allow(
    unsafe_code,
    reason = "proxy_wasm::main! exports `_initialize` with #[no_mangle], which the ABI requires"
)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
        proxy_wasm::set_root_context(|_| Box::new(super::Root::default()));
    }}
}

/// ABI imports the SDK's wrappers make costlier than needed (or cannot express):
/// `proxy_send_local_response` with response code details, which the SDK's
/// `send_http_response` leaves empty; `proxy_get_property` with a pre-serialised path (the
/// SDK's `get_property` copies the path and serialises it again on every call, and panics on
/// an unexpected status); `proxy_get_header_map_pairs` handing back the host's buffer as is
/// (the SDK's `get_map_bytes` copies every pair into a `String` and a `Vec`, and panics on
/// any status but OK).
#[allow(
    unsafe_code,
    reason = "ABI imports: the SDK has no wrapper that passes response code details, takes a \
              pre-serialised property path, or returns the header map's bytes unparsed"
)]
mod abi {
    use std::ptr::null_mut;

    /// `proxy_status_t` OK.
    const OK: u32 = 0;
    /// `proxy_status_t` NOT_FOUND.
    const NOT_FOUND: u32 = 1;

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        fn proxy_continue_stream(stream_type: u32) -> u32;
        fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_send_local_response(
            status_code: u32,
            details_data: *const u8,
            details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
    }

    /// Sends a local reply; returns the host's status (0 = OK).
    pub fn send_local_response(status: u32, details: &str, body: &[u8], headers: &[u8]) -> u32 {
        // SAFETY: each pointer/length pair describes a live slice for the whole call; the host
        // copies the bytes and keeps no pointer. -1: not a gRPC reply.
        unsafe {
            proxy_send_local_response(
                status,
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        }
    }

    /// Resumes a paused stream (`proxy_continue_stream`); returns the host's status (0 = OK).
    /// The SDK's `resume_*` panic on any other status, and Envoy answers `Unimplemented` for a
    /// network filter's upstream direction.
    pub fn continue_stream(stream_type: u32) -> u32 {
        // SAFETY: no pointers; the host reads the integer.
        unsafe { proxy_continue_stream(stream_type) }
    }

    /// Sets a header of a map (replacing any value); returns the host's status (0 = OK).
    pub fn replace_header(map_type: u32, key: &str, value: &str) -> u32 {
        // SAFETY: both pointer/length pairs describe live slices for the whole call; the host
        // copies the bytes.
        unsafe {
            proxy_replace_header_map_value(
                map_type,
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
            )
        }
    }

    /// Takes ownership of a buffer the host returned: `None` when it returned none.
    ///
    /// # Safety
    /// `data`, when not null, must be what the host got from this module's
    /// `proxy_on_memory_allocate(size)` (the SDK's allocator: a boxed slice of exactly `size`
    /// bytes from the global allocator, which the host has filled) and must not be owned by
    /// anything else.
    unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
        if data.is_null() {
            return None;
        }
        // SAFETY: by the caller's contract the pointer was allocated by the global allocator
        // with the layout of `[u8; size]` (align 1), all `size` bytes are initialised, and
        // nothing else owns it: a `Vec` with length and capacity `size` may take it over and
        // free it (a zero `size` is a dangling, unallocated pointer, which a zero-capacity
        // `Vec` never frees). This is what the SDK's own `get_property` does.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }

    /// A property by its NUL-joined path: `Ok(None)` when the host does not have it, the
    /// host's status when it fails.
    pub fn get_property(path: &[u8]) -> Result<Option<Vec<u8>>, u32> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the path is a live slice for the whole call (the host copies it); the two
        // out-pointers point to live locals the host writes before returning.
        let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
        match status {
            // SAFETY: on OK the host returns a buffer it allocated through
            // `proxy_on_memory_allocate` and handed over to the module (or no buffer).
            OK => Ok(unsafe { take(data, size) }),
            NOT_FOUND => Ok(None),
            s => Err(s),
        }
    }

    /// A header map's bytes in the pairs format (empty when the host returned no buffer), or
    /// the host's status when it fails.
    pub fn get_header_map_pairs(map_type: u32) -> Result<Vec<u8>, u32> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        // SAFETY: the two out-pointers point to live locals the host writes before returning.
        let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
        match status {
            // SAFETY: as in `get_property`: on OK the buffer is the module's to own.
            OK => Ok(unsafe { take(data, size) }.unwrap_or_default()),
            s => Err(s),
        }
    }
}

/// A host status for an error message (`proxy_status_t`'s names).
fn status_name(status: u32) -> String {
    let name = match status {
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        4 => "ParseFailure",
        6 => "InvalidMemoryAccess",
        7 => "Empty",
        8 => "CasMismatch",
        10 => "InternalFailure",
        _ => return format!("status {status}"),
    };
    name.to_string()
}

fn log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
    };
    let _ = hostcalls::log(level, message);
}

/// Counter ids, defined on first use and cached (one cache per root context, shared with its
/// request contexts): the totals by slot, the per-policy counters by rule id and outcome, so
/// that a request increments its counters without building their names.
#[derive(Debug, Default)]
struct Metrics {
    totals: RefCell<[Option<u32>; Total::ALL.len()]>,
    policies: RefCell<FxHashMap<String, [Option<u32>; 4]>>,
}

impl Metrics {
    fn increment(&self, counter: &Counter<'_>) {
        let define = || hostcalls::define_metric(MetricType::Counter, &counter.name()).ok();
        let id = match counter {
            Counter::Total(t) => {
                let Ok(mut totals) = self.totals.try_borrow_mut() else {
                    return;
                };
                let Some(slot) = totals.get_mut(t.index()) else {
                    return;
                };
                if slot.is_none() {
                    *slot = define();
                }
                *slot
            }
            Counter::Policy { id, outcome } => {
                let Ok(mut policies) = self.policies.try_borrow_mut() else {
                    return;
                };
                let ids = match policies.get_mut(*id) {
                    Some(ids) => ids,
                    None => policies.entry((*id).to_string()).or_default(),
                };
                let Some(slot) = ids.get_mut(outcome.index()) else {
                    return;
                };
                if slot.is_none() {
                    *slot = define();
                }
                *slot
            }
        };
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

/// Whether Envoy keeps log lines at `level` (its `wasm` log component's level; lines below it
/// are dropped by the host, so the plugin does not build them). Asked per request, not
/// cached: `/logging` can change it at any time and the next request must follow (a cache
/// refreshed on a 1 s tick was tried: no measurable saving, and the real-Envoy test, which
/// turns info logging on through `/logging` just before its requests, then missed its lines).
fn host_logs(level: Level) -> bool {
    let wanted = match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
    };
    hostcalls::get_log_level().map_or(true, |host| host as u32 <= wanted as u32)
}

/// A property's raw bytes (`path` NUL-joined, see [`paths`]); `None` when Envoy does not have
/// it. One host call and no allocation but the host's buffer, which becomes the `Vec`.
fn property(path: &[u8]) -> Result<Option<Vec<u8>>, AttributeError> {
    abi::get_property(path).map_err(|s| {
        AttributeError(format!(
            "cannot read `{}`: {}",
            paths::name(path),
            status_name(s)
        ))
    })
}

fn node_metadata() -> NodeMetadata {
    let string = |p: &[u8]| {
        property(p)
            .ok()
            .flatten()
            .and_then(|b| decode_string(&paths::name(p), &b).ok())
            .filter(|s| !s.is_empty())
    };
    NodeMetadata {
        namespace: string(paths::NODE_NAMESPACE),
        workload_name: string(paths::NODE_WORKLOAD_NAME),
        labels: property(paths::NODE_LABELS)
            .ok()
            .flatten()
            .and_then(|b| decode_labels(&b).ok())
            .unwrap_or_default(),
        service_account: string(paths::NODE_SERVICE_ACCOUNT),
    }
}

/// The connection attributes `needs` asks for (TCP and HTTP).
///
/// Each property read is a host call costing about 1 µs of Envoy CPU on V8 (measured with
/// `cargo xtask bench-envoy`), so only what the workload's rules can test is read (see
/// [`Needs`]); the rest stays absent, which decides the same. Within that, reads whose answer
/// cannot change the request are skipped too: `*.port` when `*.address` already carries the
/// port (`ip:port` on Envoy 1.40, and the same socket's port), and the peer URI SAN without
/// mTLS (`build_request` drops it then).
fn connection_attributes(needs: &Needs) -> Result<RawAttributes, AttributeError> {
    let mut raw = RawAttributes::default();
    if needs.source_ip || needs.remote_ip {
        raw.source_address = property(paths::SOURCE_ADDRESS)?;
        raw.source_port = port_unless_in(raw.source_address.as_deref(), paths::SOURCE_PORT)?;
    }
    if needs.destination_ip || needs.destination_port {
        raw.destination_address = property(paths::DESTINATION_ADDRESS)?;
    }
    if needs.destination_port {
        raw.destination_port =
            port_unless_in(raw.destination_address.as_deref(), paths::DESTINATION_PORT)?;
    }
    if needs.principal {
        raw.mtls = property(paths::MTLS)?;
        let verified = raw
            .mtls
            .as_deref()
            .is_some_and(|b| matches!(decode_bool("connection.mtls", b), Ok(true)));
        if verified {
            raw.peer_uri_san = property(paths::PEER_URI_SAN)?;
        }
    }
    if needs.sni {
        raw.sni = property(paths::SNI)?;
    }
    Ok(raw)
}

/// The port property, read only when the address property has no port.
fn port_unless_in(address: Option<&[u8]>, port: &[u8]) -> Result<Option<Vec<u8>>, AttributeError> {
    if address.is_some_and(has_port) {
        Ok(None)
    } else {
        property(port)
    }
}

/// [`connection_attributes`], the header map when a rule tests a header, the method, the path
/// or the host (or, at a gateway, `source.ip` of a request whose `source.address` Envoy took
/// from `x-forwarded-for`) — keeping only the headers
/// [`Plugin::keeps_header`] names — and `metadata` when a rule tests the JWT.
fn http_attributes(plugin: &Plugin, needs: &Needs) -> Result<RawAttributes, AttributeError> {
    let mut raw = connection_attributes(needs)?;
    // At a gateway, an address Envoy took from x-forwarded-for (port 0) leaves the direct
    // peer to be read from the header's last entry, checked against the listener-side
    // address (`attributes::client_addresses`).
    let derive_peer = needs.source_ip
        && plugin.num_trusted_proxies.is_some_and(|n| n > 0)
        && raw
            .source_address
            .as_deref()
            .is_some_and(|a| a.ends_with(b":0"));
    if derive_peer && raw.destination_address.is_none() {
        raw.destination_address = property(paths::DESTINATION_ADDRESS)?;
    }
    if needs.headers || derive_peer {
        let map = abi::get_header_map_pairs(MapType::HttpRequestHeaders as u32).map_err(|s| {
            AttributeError(format!(
                "cannot read the request headers: {}",
                status_name(s)
            ))
        })?;
        raw.headers = Some(kept_headers(
            &map,
            |name| plugin.keeps_header(name),
            plugin.headers.len(),
        )?);
    }
    if needs.jwt {
        raw.metadata = property(paths::METADATA)?;
    }
    Ok(raw)
}

/// The request for a log line's text: `request` when it has what the line shows (the source,
/// and for HTTP the method, host and path, else the destination port), otherwise everything
/// read again (log lines are built only when Envoy keeps them, so this is off the usual path).
fn for_log<'a>(
    request: &'a palisade_engine::Request,
    plugin: &Plugin,
    shown: Needs,
) -> std::borrow::Cow<'a, palisade_engine::Request> {
    let n = &plugin.needs;
    let has = (n.source_ip || n.remote_ip)
        && n.principal
        && (!shown.headers || n.headers)
        && (!shown.destination_port || n.destination_port);
    if has {
        return std::borrow::Cow::Borrowed(request);
    }
    let raw = match plugin.protocol {
        Protocol::Http => http_attributes(plugin, &Needs::ALL),
        Protocol::Tcp => connection_attributes(&Needs::ALL),
    };
    match raw.and_then(|r| build_request(r, plugin)) {
        Ok(full) => std::borrow::Cow::Owned(full),
        Err(_) => std::borrow::Cow::Borrowed(request),
    }
}

/// The source as a log line names it: the principal, else the address.
fn source_text(r: &palisade_engine::Request) -> String {
    r.source.principal.clone().unwrap_or_else(|| {
        r.source
            .ip
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    })
}

fn record(ctx: &Shared, o: &Outcome<'_>) {
    for c in &o.counters {
        ctx.metrics.increment(c);
    }
    if !o.log.1.is_empty() {
        log(o.log.0, &o.log.1);
    }
}

/// What a root context shares with its request contexts.
#[derive(Debug, Default)]
struct Shared {
    metrics: Metrics,
}

/// One per filter configuration.
#[derive(Debug, Default)]
struct Root {
    plugin: Option<Rc<Plugin>>,
    shared: Rc<Shared>,
    protocol: Protocol,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(c) => c.unwrap_or_default(),
            Err(s) => {
                log(
                    Level::Warn,
                    &format!("palisade: cannot read the plugin configuration: {s:?}"),
                );
                return false;
            }
        };
        match Plugin::configure(&config, &node_metadata()) {
            Ok(p) => {
                log(Level::Info, &p.summary());
                self.protocol = p.protocol;
                self.plugin = Some(Rc::new(p));
                true
            }
            Err(e) => {
                let _ = hostcalls::log(
                    LogLevel::Error,
                    &format!("palisade: configuration refused: {e}"),
                );
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(match self.protocol {
            Protocol::Http => ContextType::HttpContext,
            Protocol::Tcp => ContextType::StreamContext,
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            plugin: self.plugin.clone(),
            shared: self.shared.clone(),
            check: None,
        }))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Tcp {
            plugin: self.plugin.clone(),
            shared: self.shared.clone(),
            decided: None,
            check: None,
        }))
    }
}

/// The log line's description of an HTTP request.
fn describe_http(plugin: &Plugin, r: &Request) -> String {
    let shown = Needs {
        headers: true,
        ..Needs::default()
    };
    let r = for_log(r, plugin, shown);
    let h = r.http.clone().unwrap_or_default();
    format!("{} {}{} from {}", h.method, h.host, h.path, source_text(&r))
}

/// The log line's description of a TCP connection.
fn describe_tcp(plugin: &Plugin, r: &Request) -> String {
    let shown = Needs {
        destination_port: true,
        ..Needs::default()
    };
    let r = for_log(r, plugin, shown);
    let port = r
        .destination
        .port
        .map_or_else(String::new, |p| p.to_string());
    format!("connection to port {port} from {}", source_text(&r))
}

/// A CUSTOM provider's answer applied to the request: the counters of the call's end, the
/// answer as the engine takes it (`failOpen` and `statusOnError` applied), the headers it sets
/// on the upstream request (HTTP), and the decision taken again with it. Returns that decision
/// and, when the provider denied or failed closed, its reply.
fn apply_answer(
    ctx: &Shared,
    plugin: &Plugin,
    request: &mut Request,
    provider: &ExtensionProvider,
    answer: Answer,
) -> (Decision, Option<Reply>) {
    for t in custom::answer_counters(&answer) {
        ctx.metrics.increment(&Counter::Total(t));
    }
    if let Answer::Error { reason, .. } = &answer {
        log(
            Level::Warn,
            &format!("palisade: CUSTOM provider `{}`: {reason}", provider.name),
        );
    }
    let resolution = resolve(provider, answer);
    request
        .ext_authz
        .insert(provider.name.clone(), resolution.answer);
    for (k, v) in &resolution.upstream_headers {
        let _ = abi::replace_header(MapType::HttpRequestHeaders as u32, k, v);
    }
    (plugin.decide(request), resolution.reply)
}

/// One per HTTP request.
struct Http {
    plugin: Option<Rc<Plugin>>,
    shared: Rc<Shared>,
    /// The CUSTOM call in flight, if any.
    check: Option<custom::Check>,
}

impl Http {
    /// Acts on a decision: a pending CUSTOM check (enforce mode) starts the provider's call and
    /// pauses; otherwise count, log, and continue or reply (the provider's `reply` when it
    /// denied, else the RBAC-style denial).
    fn settle(
        &mut self,
        plugin: &Plugin,
        request: Request,
        decision: Decision,
        reply: Option<Reply>,
    ) -> Action {
        if decision.verdict == Verdict::CustomPending && plugin.mode == Mode::Enforce {
            self.shared
                .metrics
                .increment(&Counter::Total(Total::ExtAuthzCalls));
            let provider = match custom::provider_of(plugin, &decision) {
                Ok(p) => p,
                Err(e) => return self.settle(plugin, request, error_decision(e), None),
            };
            match custom::start(plugin, provider, request.clone(), true) {
                Ok(check) => {
                    self.check = Some(check);
                    return Action::Pause;
                }
                Err(reason) => {
                    let mut request = request;
                    let answer = Answer::Error {
                        timeout: false,
                        reason,
                    };
                    let (decision, reply) =
                        apply_answer(&self.shared, plugin, &mut request, provider, answer);
                    return self.settle(plugin, request, decision, reply);
                }
            }
        }
        let o = outcome_with(
            &decision,
            plugin,
            || describe_http(plugin, &request),
            host_logs,
        );
        record(&self.shared, &o);
        if !o.block {
            return Action::Continue;
        }
        let sent = match &reply {
            Some(r) => {
                let mut pairs: Vec<(&str, &str)> = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                pairs.push((POLICY_HEADER, o.policy));
                abi::send_local_response(r.status, r.details, &r.body, &serialize_pairs(&pairs))
            }
            None => {
                let headers = serialize_pairs(&[(POLICY_HEADER, o.policy)]);
                abi::send_local_response(o.status, &o.details, o.body.as_bytes(), &headers)
            }
        };
        if sent != 0 {
            log(
                Level::Warn,
                &format!("palisade: local reply failed (status {sent}); resetting the stream"),
            );
            let _ = hostcalls::reset_http_request();
        }
        Action::Pause
    }

    /// A provider's answer arrived: decide again, then resume, ask the next provider, or reply.
    fn answered(&mut self, token: u32, answer: impl FnOnce(&custom::Check) -> Answer) {
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        let Some(check) = self.check.take_if(|c| c.token == token) else {
            return;
        };
        let answer = answer(&check);
        let custom::Check {
            mut request,
            provider,
            ..
        } = check;
        let (decision, reply) =
            apply_answer(&self.shared, &plugin, &mut request, &provider, answer);
        if self.settle(&plugin, request, decision, reply) == Action::Continue {
            let status = abi::continue_stream(StreamType::HttpRequest as u32);
            if status != 0 {
                log(
                    Level::Warn,
                    &format!("palisade: cannot resume the request (status {status}); resetting it"),
                );
                let _ = hostcalls::reset_http_request();
            }
        }
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body: usize, _: usize) {
        self.answered(token, |c| custom::http_answer(c, body));
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        self.answered(token, |c| custom::grpc_answer(c, status, size));
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(plugin) = self.plugin.clone() else {
            // No configuration: Envoy does not create contexts for a refused one; deny anyway.
            let _ = abi::send_local_response(403, "palisade_not_configured", b"", &[]);
            return Action::Pause;
        };
        let raw = http_attributes(&plugin, &plugin.needs);
        // `build` keeps a request whose direct peer Envoy does not show (a sidecar behind a
        // gateway): `Built::decide` then decides without it, or fails closed.
        match raw.and_then(|r| build(r, &plugin)) {
            Ok(built) => {
                let decision = built.decide(&plugin);
                self.settle(&plugin, built.request, decision, None)
            }
            Err(e) => {
                let decision = error_decision(e.0);
                let o = outcome_with(&decision, &plugin, || "request".to_string(), host_logs);
                record(&self.shared, &o);
                let headers = serialize_pairs(&[(POLICY_HEADER, o.policy)]);
                let _ = abi::send_local_response(o.status, &o.details, o.body.as_bytes(), &headers);
                Action::Pause
            }
        }
    }
}

/// One per TCP connection: decides once, on the first data in either direction (the peer
/// certificate is only known after the TLS handshake, which precedes any data). A CUSTOM
/// check keeps the connection paused until the provider answers.
struct Tcp {
    plugin: Option<Rc<Plugin>>,
    shared: Rc<Shared>,
    decided: Option<bool>,
    /// The CUSTOM call in flight, if any.
    check: Option<custom::Check>,
}

impl Tcp {
    /// Whether the connection may proceed (deciding it the first time); `None` while a CUSTOM
    /// provider is being asked.
    fn allowed(&mut self) -> Option<bool> {
        if let Some(allowed) = self.decided {
            return Some(allowed);
        }
        if self.check.is_some() {
            return None;
        }
        let Some(plugin) = self.plugin.clone() else {
            return Some(self.finish(false, false));
        };
        let raw = connection_attributes(&plugin.needs);
        let (request, decision) = match raw.and_then(|r| build_request(r, &plugin)) {
            Ok(request) => {
                let decision = plugin.decide(&request);
                (Some(request), decision)
            }
            Err(e) => (None, error_decision(e.0)),
        };
        self.settle(&plugin, request, decision)
    }

    /// Acts on a decision (see [`Http::settle`]); `None` while a provider is asked.
    fn settle(
        &mut self,
        plugin: &Plugin,
        request: Option<Request>,
        decision: Decision,
    ) -> Option<bool> {
        if let (Verdict::CustomPending, Mode::Enforce, Some(request)) =
            (decision.verdict, plugin.mode, &request)
        {
            self.shared
                .metrics
                .increment(&Counter::Total(Total::ExtAuthzCalls));
            let provider = match custom::provider_of(plugin, &decision) {
                Ok(p) => p,
                Err(e) => return self.settle(plugin, None, error_decision(e)),
            };
            match custom::start(plugin, provider, request.clone(), false) {
                Ok(check) => {
                    self.check = Some(check);
                    return None;
                }
                Err(reason) => {
                    let mut request = request.clone();
                    let answer = Answer::Error {
                        timeout: false,
                        reason,
                    };
                    let (decision, _) =
                        apply_answer(&self.shared, plugin, &mut request, provider, answer);
                    return self.settle(plugin, Some(request), decision);
                }
            }
        }
        let what = |r: &Request| describe_tcp(plugin, r);
        let o = match &request {
            Some(r) => outcome_with(&decision, plugin, || what(r), host_logs),
            None => outcome_with(&decision, plugin, || "connection".to_string(), host_logs),
        };
        record(&self.shared, &o);
        Some(self.finish(!o.block, false))
    }

    /// Records the verdict; closes a refused connection, and resumes an allowed one that was
    /// paused for a provider.
    fn finish(&mut self, allowed: bool, resume: bool) -> bool {
        self.decided = Some(allowed);
        if !allowed {
            let _ = hostcalls::close_downstream();
            let _ = hostcalls::close_upstream();
        } else if resume {
            // Only the downstream direction: Envoy cannot resume a network filter's upstream
            // direction (`Unimplemented`), see docs/custom-authorization.md.
            if abi::continue_stream(StreamType::Downstream as u32) != 0 {
                self.decided = Some(false);
                let _ = hostcalls::close_downstream();
                let _ = hostcalls::close_upstream();
                return false;
            }
        }
        allowed
    }
}

impl Context for Tcp {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        let Some(check) = self.check.take_if(|c| c.token == token) else {
            return;
        };
        let answer = custom::grpc_answer(&check, status, size);
        let custom::Check {
            mut request,
            provider,
            ..
        } = check;
        let (decision, _) = apply_answer(&self.shared, &plugin, &mut request, &provider, answer);
        if let Some(allowed) = self.settle(&plugin, Some(request), decision) {
            // `settle` closed a refused connection; an allowed one was paused.
            if allowed {
                self.finish(true, true);
            }
        }
    }
}

impl StreamContext for Tcp {
    fn on_downstream_data(&mut self, _size: usize, _end_of_stream: bool) -> Action {
        if self.allowed() == Some(true) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_upstream_data(&mut self, _size: usize, _end_of_stream: bool) -> Action {
        // A server-first protocol sends before the client: decide before relaying it.
        if self.allowed() == Some(true) {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}
