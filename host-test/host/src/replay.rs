//! Replaying requests through the plugin's `.wasm` and the native engine side by side.
//!
//! A [`Replayer`] holds the policy files once: natively compiled into an [`Engine`], and as
//! the inline `policy` of the plugin configuration. Each request goes to
//! [`Replayer::decide_native`] (`Engine::decide`) and to [`Replayer::decide_wasm`]: a plugin
//! instance configured as the request's destination sidecar would be — one VM per
//! destination workload, protocol and trusted `x-forwarded-for` hops, created on first use
//! and reused. What is read back from the plugin depends on the [`ReadBack`]:
//!
//! - [`ReadBack::Outcome`] ([`Replayer::observe_wasm`]): only what Envoy itself shows — the
//!   verdict, the local reply (status and `rbac_access_denied_matched_policy[<id>]` details,
//!   the `x-palisade-policy` header) and the counters the plugin incremented — with the host
//!   at `warn`, Envoy's default level, so that the plugin formats no log line. It is compared
//!   with the native decision mapped through the plugin's own `enforce::outcome`
//!   ([`Replayer::expected`]): verdict, deciding rule and every counter increment must agree.
//!   This is what `palisade replay` does by default, and it is fast.
//! - [`ReadBack::Decision`] ([`Replayer::decide_wasm`]): the full decision (step, rule,
//!   dry-run results, audit, NetworkPolicy verdict) from the plugin's decision log line, with
//!   the host at `trace` (see [`decision_from`]); [`same_decision`] compares it with the
//!   native one. Richer, and slower: the plugin formats an explanation for every request.
//!
//! The destination workload is the request's `destination.workload`, else the inventory
//! workload with the destination address; a request with neither cannot be routed to a
//! sidecar ([`Unroutable`]).

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use palisade_corpus::LoadError;
use palisade_engine::{
    Decision, Engine, Options, Protocol, Request, SourceFile, Verdict, WorkloadRef,
};
use palisade_proxy_wasm::config::{ConfigError, NodeMetadata, Plugin as PluginConfig};
use palisade_proxy_wasm::enforce;
use palisade_proxy_wasm::enforce::POLICY_HEADER;

use crate::abi::LogLevel;
use crate::decider::sidecar_configuration;
use crate::envoy::trusted_proxies;
use crate::error::{ConfigRefused, PluginFailure, Unroutable};
use crate::host::ProxyWasmHost;
use crate::instance::PluginInstance;
use crate::outcome::StreamSummary;
use crate::readback::decision_from;

/// What a [`Replayer`] reads back from the plugin (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadBack {
    /// What Envoy shows: verdict, local reply, counters; the host at `warn`.
    #[default]
    Outcome,
    /// The full decision from the plugin's decision log line; the host at `trace`.
    Decision,
}

/// What the plugin showed Envoy for one request, or what it should show for a native
/// decision ([`Replayer::expected`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Whether the request or connection went on.
    pub verdict: Verdict,
    /// HTTP: the local reply's status and response code details.
    pub reply: Option<(u32, String)>,
    /// HTTP: the local reply's `x-palisade-policy` header (the deciding rule on a denial).
    pub policy: Option<String>,
    /// The counters incremented, in order, with the increment.
    pub counters: Vec<(Arc<str>, i64)>,
}

impl Observed {
    fn of(s: StreamSummary) -> Observed {
        Observed {
            verdict: if s.allowed {
                Verdict::Allow
            } else {
                Verdict::Deny
            },
            reply: s.reply,
            policy: s.policy_header,
            counters: s.increments,
        }
    }

    /// The deciding rule as Envoy shows it: the `x-palisade-policy` header on a denial, else
    /// the rule segment of a `palisade.policy.<rule>.<outcome>` counter (dots shown as `_`),
    /// else `none`.
    pub fn rule(&self) -> String {
        if let Some(p) = &self.policy {
            return p.clone();
        }
        self.counters
            .iter()
            .find_map(|(name, _)| {
                let rest = name.strip_prefix("palisade.policy.")?;
                let (rule, outcome) = rest.rsplit_once('.')?;
                matches!(outcome, "allowed" | "denied").then(|| rule.to_string())
            })
            .unwrap_or_else(|| "none".into())
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reply {
            Some((status, details)) => write!(f, "local reply {status} `{details}`")?,
            None => write!(f, "{}ed", self.verdict)?,
        }
        if let Some(p) = &self.policy {
            write!(f, ", {POLICY_HEADER}: {p}")?;
        }
        f.write_str("; counters:")?;
        if self.counters.is_empty() {
            f.write_str(" none")?;
        }
        for (i, (name, by)) in self.counters.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{name} +{by}")?;
        }
        Ok(())
    }
}

/// One configured VM, with what it was configured for.
#[derive(Debug)]
struct Slot {
    workload: WorkloadRef,
    protocol: Protocol,
    hops: u32,
    vm: Result<PluginInstance, ConfigRefused>,
    /// The same configuration compiled natively by the plugin crate (for
    /// [`Replayer::expected`]); only with [`ReadBack::Outcome`].
    config: Option<Result<PluginConfig, ConfigError>>,
}

/// The plugin in the test host and the native engine, over the same policy files.
#[derive(Debug)]
pub struct Replayer {
    host: ProxyWasmHost,
    policy: String,
    options: Options,
    native: Engine,
    slots: Vec<Slot>,
    index: HashMap<u64, Vec<usize>>,
    read_back: ReadBack,
    /// The slot of the last request (consecutive requests often share one).
    last: Option<usize>,
}

impl Replayer {
    /// Loads and compiles `files` natively (an error is the engine's diagnostics, as text)
    /// and keeps them, joined as YAML documents, for the plugin configurations. The full
    /// decision is read back from the plugin's log line ([`ReadBack::Decision`]).
    pub fn new(
        host: ProxyWasmHost,
        files: &[SourceFile],
        options: &Options,
    ) -> Result<Replayer, LoadError> {
        Replayer::with_read_back(host, files, options, ReadBack::Decision)
    }

    /// [`Replayer::new`], reading back as `read_back` says.
    pub fn with_read_back(
        host: ProxyWasmHost,
        files: &[SourceFile],
        options: &Options,
        read_back: ReadBack,
    ) -> Result<Replayer, LoadError> {
        let set = palisade_engine::load(files).map_err(|e| LoadError::Invalid(e.to_string()))?;
        let native = palisade_engine::compile(&set, options)
            .map_err(|e| LoadError::Compile(e.to_string()))?;
        let mut policy = String::new();
        for f in files {
            policy.push_str("---\n");
            policy.push_str(&f.text);
            if !f.text.ends_with('\n') {
                policy.push('\n');
            }
        }
        Ok(Replayer {
            host,
            policy,
            options: options.clone(),
            native,
            slots: Vec::new(),
            index: HashMap::new(),
            read_back,
            last: None,
        })
    }

    /// What this replayer reads back.
    pub fn read_back(&self) -> ReadBack {
        self.read_back
    }

    /// The natively compiled engine.
    pub fn native(&self) -> &Engine {
        &self.native
    }

    /// How many plugin VMs were configured (one per destination workload, protocol and
    /// listener shape seen: sidecar, or gateway with one trusted proxy).
    pub fn configured(&self) -> usize {
        self.slots.len()
    }

    /// The native engine's decision.
    pub fn decide_native(&self, request: &Request) -> Decision {
        self.native.decide(request)
    }

    /// The destination sidecar's workload: the request's, else the inventory workload with
    /// the destination address.
    pub fn destination(&self, request: &Request) -> Result<WorkloadRef, Unroutable> {
        self.destination_ref(request).map(|w| match w {
            Dest::Named(w) => w.clone(),
            Dest::Inventory(ns, name) => WorkloadRef {
                namespace: ns.to_string(),
                name: Some(name.to_string()),
                ..WorkloadRef::default()
            },
        })
    }

    fn destination_ref<'a>(&'a self, request: &'a Request) -> Result<Dest<'a>, Unroutable> {
        if let Some(w) = &request.destination.workload {
            return Ok(Dest::Named(w));
        }
        let Some(ip) = request.destination.ip else {
            return Err(Unroutable::NoDestination);
        };
        let inventory = self.native.inventory();
        match inventory.owner_of(ip) {
            // Only a live pod-network workload has a sidecar to decide in.
            palisade_engine::AddressOwner::Workload(i) => inventory.workloads.get(i),
            _ => None,
        }
        .map(|w| Dest::Inventory(&w.namespace, &w.name))
        .ok_or(Unroutable::UnknownAddress(ip))
    }

    /// The plugin configuration JSON for a destination sidecar.
    pub fn configuration(&self, workload: &WorkloadRef, protocol: Protocol, hops: u32) -> String {
        sidecar_configuration(&self.options, &self.policy, workload, protocol, hops)
    }

    /// The VM for a destination sidecar, configured on first use.
    fn slot(&mut self, request: &Request) -> Result<usize, Unroutable> {
        let dest = self.destination_ref(request)?;
        let (protocol, hops) = (request.protocol, trusted_proxies(request));
        let fits = |s: &Slot| s.protocol == protocol && s.hops == hops && dest.is(&s.workload);
        // Consecutive requests often go to the same sidecar: compared, not hashed.
        if let Some(i) = self.last
            && self.slots.get(i).is_some_and(fits)
        {
            return Ok(i);
        }
        let mut h = DefaultHasher::new();
        dest.hash_into(&mut h);
        protocol.hash(&mut h);
        hops.hash(&mut h);
        let key = h.finish();
        if let Some(found) = self.index.get(&key).and_then(|v| {
            v.iter()
                .copied()
                .find(|i| self.slots.get(*i).is_some_and(fits))
        }) {
            self.last = Some(found);
            return Ok(found);
        }
        let workload = self.destination(request)?;
        let config = self.configuration(&workload, protocol, hops);
        let mut plugin = self.host.plugin();
        plugin.settings.log_level = match self.read_back {
            ReadBack::Outcome => LogLevel::Warn,
            ReadBack::Decision => LogLevel::Trace,
        };
        let vm = plugin.configure(&config);
        let native_config = (self.read_back == ReadBack::Outcome)
            .then(|| PluginConfig::configure(config.as_bytes(), &NodeMetadata::default()));
        self.slots.push(Slot {
            workload,
            protocol,
            hops,
            vm,
            config: native_config,
        });
        let i = self.slots.len().saturating_sub(1);
        self.index.entry(key).or_default().push(i);
        self.last = Some(i);
        Ok(i)
    }

    /// The VM of the request's destination sidecar: `Err` when the request cannot be routed
    /// (the outer error) or its VM refused the configuration or died.
    fn vm(
        &mut self,
        request: &Request,
    ) -> Result<Result<&mut PluginInstance, PluginFailure>, Unroutable> {
        let i = self.slot(request)?;
        Ok(match self.slots.get_mut(i).map(|s| &mut s.vm) {
            Some(Ok(vm)) => Ok(vm),
            Some(Err(e)) => Err(PluginFailure::ConfigurationRefused(e.clone())),
            None => Err(PluginFailure::NoVm),
        })
    }

    /// The plugin's decision, as the destination's sidecar makes it, read back from its
    /// decision log line (needs [`ReadBack::Decision`]). `Err` when the request cannot be
    /// routed (the outer error) or the plugin failed (refused its configuration, trapped, or
    /// showed a decision that does not read back).
    pub fn decide_wasm(
        &mut self,
        request: &Request,
    ) -> Result<Result<Decision, PluginFailure>, Unroutable> {
        let answers = provider_answers(&self.options, request);
        let vm = match self.vm(request)? {
            Ok(vm) => vm,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match request.protocol {
            Protocol::Http => {
                let o = vm.http_answering(request, answers);
                match o.trap {
                    Some(t) => Err(PluginFailure::Trapped(t)),
                    None => {
                        let header = o
                            .headers
                            .iter()
                            .find(|(k, _)| k == POLICY_HEADER)
                            .map(|(_, v)| v.as_str());
                        decision_from(o.allowed, &o.logs, o.details.as_deref(), header)
                            .map_err(PluginFailure::from)
                    }
                }
            }
            Protocol::Tcp => {
                let o = vm.tcp(request);
                match o.trap {
                    Some(t) => Err(PluginFailure::Trapped(t)),
                    None => {
                        decision_from(o.allowed, &o.logs, None, None).map_err(PluginFailure::from)
                    }
                }
            }
        })
    }

    /// What the plugin showed Envoy for a request, as the destination's sidecar ran it:
    /// verdict, local reply and counter increments. `Err` as for [`Replayer::decide_wasm`]
    /// (a trap is an error, not a verdict).
    pub fn observe_wasm(
        &mut self,
        request: &Request,
    ) -> Result<Result<Observed, PluginFailure>, Unroutable> {
        let answers = provider_answers(&self.options, request);
        let vm = match self.vm(request)? {
            Ok(vm) => vm,
            Err(e) => return Ok(Err(e)),
        };
        let summary = match request.protocol {
            Protocol::Http => vm.http_summary_answering(request, answers),
            Protocol::Tcp => vm.tcp_summary(request),
        };
        Ok(match summary.trap {
            Some(t) => Err(PluginFailure::Trapped(t)),
            None => Ok(Observed::of(summary)),
        })
    }

    /// What the plugin should show Envoy for a request the native engine decided `native`:
    /// the decision mapped by the plugin crate's own `enforce::outcome` under the same plugin
    /// configuration (compiled natively), as its glue applies it — an HTTP denial is a local
    /// reply with the configured status, the Envoy RBAC details and the `x-palisade-policy`
    /// header; a TCP denial closes the connection; every counter is incremented by one.
    /// Needs [`ReadBack::Outcome`].
    pub fn expected(
        &mut self,
        request: &Request,
        native: &Decision,
    ) -> Result<Result<Observed, PluginFailure>, Unroutable> {
        let i = self.slot(request)?;
        let plugin = match self.slots.get(i).and_then(|s| s.config.as_ref()) {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Ok(Err(PluginFailure::NativeConfigurationRefused(e.clone()))),
            None => return Ok(Err(PluginFailure::NotReadingOutcomes)),
        };
        let o = enforce::outcome_with(native, plugin, String::new, |_| false);
        let http = request.protocol == Protocol::Http;
        Ok(Ok(Observed {
            verdict: if o.block {
                Verdict::Deny
            } else {
                Verdict::Allow
            },
            reply: (o.block && http).then(|| (o.status, o.details.clone())),
            policy: (o.block && http).then(|| o.policy.to_string()),
            counters: o
                .counters
                .iter()
                .map(|c| (Arc::from(c.name().as_str()), 1))
                .collect(),
        }))
    }
}

/// A destination workload, borrowed: the request's own, or an inventory workload's name.
enum Dest<'a> {
    Named(&'a WorkloadRef),
    Inventory(&'a str, &'a str),
}

impl Dest<'_> {
    fn hash_into(&self, h: &mut DefaultHasher) {
        match self {
            Dest::Named(w) => {
                w.namespace.hash(h);
                w.name.as_deref().hash(h);
                w.labels.hash(h);
                w.service_account.as_deref().hash(h);
            }
            Dest::Inventory(ns, name) => {
                ns.hash(h);
                Some(*name).hash(h);
                std::collections::BTreeMap::<String, String>::new().hash(h);
                None::<&str>.hash(h);
            }
        }
    }

    fn is(&self, w: &WorkloadRef) -> bool {
        match self {
            Dest::Named(d) => *d == w,
            Dest::Inventory(ns, name) => {
                w.namespace == *ns
                    && w.name.as_deref() == Some(*name)
                    && w.labels.is_empty()
                    && w.service_account.is_none()
            }
        }
    }
}

/// The HTTP callout answers a request's recorded CUSTOM answers (`extAuthz`) give the plugin:
/// each answered HTTP provider's cluster (`outbound|<port>||<host>`) answers `200` for allow
/// and `403` for deny, as an `ext_authz` HTTP server would. gRPC providers are not served (the
/// test host has no gRPC upstreams): their calls fail, closed unless `failOpen`.
pub fn provider_answers(
    options: &Options,
    request: &Request,
) -> std::collections::BTreeMap<String, crate::HttpFixture> {
    request
        .ext_authz
        .iter()
        .filter_map(|(name, answer)| {
            let p = options
                .extension_providers
                .iter()
                .find(|p| &p.name == name && !p.is_grpc())?;
            let status = match answer {
                palisade_engine::ExtAuthzAnswer::Allow => "200",
                palisade_engine::ExtAuthzAnswer::Deny => "403",
            };
            Some((
                p.cluster(),
                crate::HttpFixture {
                    headers: vec![(":status".into(), status.into())],
                    ..crate::HttpFixture::default()
                },
            ))
        })
        .collect()
}

/// Whether two decisions are the same as far as the plugin can show one: verdict, step,
/// deciding rule, dry-run results, audit and the NetworkPolicy verdict (the plugin's log
/// line names NetworkPolicy rules only when NetworkPolicy decided, so those are compared
/// through the explanation's step and verdict alone).
pub fn same_decision(a: &Decision, b: &Decision) -> bool {
    let rule = |d: &Decision| d.rule.as_ref().map(|r| r.id.clone());
    let shadow = |d: &Decision| {
        d.shadow
            .iter()
            .map(|s| {
                (
                    s.action.clone(),
                    s.verdict,
                    s.matched.as_ref().map(|m| m.id.clone()),
                )
            })
            .collect::<Vec<_>>()
    };
    a.verdict == b.verdict
        && a.step == b.step
        && rule(a) == rule(b)
        && shadow(a) == shadow(b)
        && a.audit.as_ref().map(|r| &r.id) == b.audit.as_ref().map(|r| &r.id)
        && a.network.as_ref().map(|n| n.verdict) == b.network.as_ref().map(|n| n.verdict)
        && a.errors.is_empty() == b.errors.is_empty()
}
