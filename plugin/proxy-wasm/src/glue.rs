//! The proxy-wasm contexts (wasm32 only): read Envoy's attributes, ask the compiled
//! [`Plugin`], act on the [`Outcome`].
//!
//! The SDK's trait helpers `unwrap` host errors; this glue calls `proxy_wasm::hostcalls`
//! directly and turns every error into a fail-closed decision instead.
//!
//! Here: the entry point, the root context (one per filter configuration) and what the
//! request contexts share. Apart: the raw ABI imports ([`abi`]), what is read from Envoy
//! ([`read`]), the contexts — [`http`], [`tcp`] (which also serves the peer [`recorder`]) —
//! the CUSTOM calls ([`custom`]) and the metric-id cache ([`metrics`]).

/// ABI imports the SDK's wrappers make costlier than needed, or cannot express.
#[allow(
    unsafe_code,
    reason = "ABI imports: the SDK has no wrapper that passes response code details, takes a \
              pre-serialised property path, or returns the header map's bytes unparsed"
)]
mod abi;
mod custom;
mod http;
mod metrics;
mod read;
mod recorder;
mod tcp;

use std::rc::Rc;

use palisade_engine::Needs;
use palisade_engine::extauthz::ExtensionProvider;
use palisade_engine::{Decision, Protocol, Request};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};

use crate::attributes::build_request;
use crate::config::{Configured, Plugin, configure};
use crate::enforce::{Counter, Level, Outcome};
use crate::extauthz::{Answer, Reply, resolve};
use http::Http;
use metrics::Metrics;
use read::{connection_attributes, http_attributes, node_metadata};
use tcp::Tcp;

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

fn log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
    };
    let _ = hostcalls::log(level, message);
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
    /// A `peerRecorder` configuration (then `plugin` is `None`).
    recorder: bool,
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
        match configure(&config, &node_metadata()) {
            Ok(Configured::Decide(p)) => {
                log(Level::Info, &p.summary());
                self.protocol = p.protocol;
                self.plugin = Some(Rc::from(p));
                true
            }
            Ok(Configured::PeerRecorder) => {
                log(
                    Level::Info,
                    "palisade: recording each connection's direct peer for the HTTP filter",
                );
                self.recorder = true;
                self.protocol = Protocol::Tcp;
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
        Some(Box::new(Http::new(
            self.plugin.clone(),
            self.shared.clone(),
        )))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        if self.recorder {
            return Some(Box::new(Tcp::recorder(self.shared.clone())));
        }
        Some(Box::new(Tcp::new(self.plugin.clone(), self.shared.clone())))
    }
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
