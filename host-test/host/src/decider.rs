//! The proxy-wasm guest behind the corpus's [`Decider`] trait.
//!
//! `load` keeps the policy files and options; each request is then decided by a VM configured
//! as the request's destination sidecar would be: the files inlined as `policy`, the options
//! as `trustDomain`, `trustDomainAliases`, `rootNamespace` and `pathNormalization`, the
//! destination workload as `workload`, `protocol` from the request, and `numTrustedProxies` 1
//! (shown as at an Istio gateway, see [`crate::envoy`]) when the request's original client
//! differs from its direct peer. One VM per distinct
//! configuration, cached until the next `load`.
//!
//! The decision is read back from what the plugin shows Envoy: the verdict from the stream
//! (a local reply or a closed connection denies); the deciding rule from the response details
//! `rbac_access_denied_matched_policy[<id>]` and the `x-palisade-policy` header on a denial;
//! and the full explanation (step, rule, dry-run results, audit, NetworkPolicy verdict) from
//! the decision log line the plugin writes for every request, which is accepted only when
//! the decision read from it explains itself in exactly the same words. What that line does
//! not carry — the NetworkPolicy ingress and egress rules when AuthorizationPolicy decided —
//! is reported by `unsupported_checks`, and a request over UDP or SCTP (which no proxy-wasm
//! filter sees) by `cannot_express`: the corpus runner lists both instead of failing them.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use palisade_corpus::{DecideError, Decider, LoadError};
use palisade_engine::{
    Decision, Engine, Options, Protocol, Request, SourceFile, Transport, WorkloadRef,
};
use palisade_proxy_wasm::enforce::POLICY_HEADER;

use crate::envoy::{hidden_peer, trusted_proxies};
use crate::error::ConfigRefused;
use crate::host::ProxyWasmHost;
use crate::instance::PluginInstance;
use crate::readback::decision_from;

/// The proxy-wasm plugin in the test host, as a corpus [`Decider`].
#[derive(Debug)]
pub struct ProxyWasmDecider {
    host: ProxyWasmHost,
    policy: String,
    options: Options,
    /// The natively compiled inventory, only to find a request's destination workload by its
    /// address (as the destination's sidecar knows its own workload).
    native: Option<Engine>,
    instances: BTreeMap<String, Result<PluginInstance, ConfigRefused>>,
    configured: usize,
}

impl ProxyWasmDecider {
    /// A decider running the plugin compiled in `host`.
    pub fn new(host: ProxyWasmHost) -> ProxyWasmDecider {
        ProxyWasmDecider {
            host,
            policy: String::new(),
            options: Options::default(),
            native: None,
            instances: BTreeMap::new(),
            configured: 0,
        }
    }

    /// How many VMs were configured so far (one per distinct plugin configuration).
    pub fn configured(&self) -> usize {
        self.configured
    }

    /// The plugin configuration for a destination workload.
    pub fn configuration(
        &self,
        workload: &WorkloadRef,
        protocol: Protocol,
        trusted: u32,
    ) -> String {
        sidecar_configuration(&self.options, &self.policy, workload, protocol, trusted)
    }

    /// The destination workload: the request's, else the inventory workload with the
    /// destination address.
    fn destination(&self, request: &Request) -> Result<WorkloadRef, DecideError> {
        if let Some(w) = &request.destination.workload {
            return Ok(w.clone());
        }
        let ip = request.destination.ip.ok_or(DecideError::NoDestination)?;
        self.native
            .as_ref()
            .and_then(|e| match e.inventory().owner_of(ip) {
                // Only a live pod-network workload has a sidecar to decide in.
                palisade_engine::AddressOwner::Workload(i) => e.inventory().workloads.get(i),
                _ => None,
            })
            .map(|w| WorkloadRef {
                namespace: w.namespace.clone(),
                name: Some(w.name.clone()),
                ..WorkloadRef::default()
            })
            .ok_or(DecideError::UnknownAddress(ip))
    }
}

impl Decider for ProxyWasmDecider {
    fn name(&self) -> String {
        "proxy-wasm".into()
    }

    /// The plugin's decision log line names the NetworkPolicy ingress and egress rules only
    /// when NetworkPolicy decided.
    fn unsupported_checks(&self) -> &'static [&'static str] {
        &["network.ingressRule", "network.egressRule"]
    }

    /// Envoy runs proxy-wasm network filters on TCP connections only: a UDP or SCTP
    /// request cannot reach the plugin.
    /// A TCP connection whose original client differs from its peer cannot be shown either:
    /// without HTTP there is no `x-forwarded-for`.
    fn cannot_express(&self, request: &Request) -> Option<String> {
        if request.transport != Transport::Tcp {
            return Some(format!(
                "transport {:?}: Envoy runs proxy-wasm network filters on TCP only",
                request.transport
            ));
        }
        if request.protocol == Protocol::Tcp && trusted_proxies(request) > 0 {
            return Some(
                "a TCP connection has no `x-forwarded-for`: its `remote.ip` is its peer".into(),
            );
        }
        hidden_peer(request)
    }

    fn load(&mut self, files: &[SourceFile], options: &Options) -> Result<(), LoadError> {
        self.instances.clear();
        self.options = options.clone();
        let mut policy = String::new();
        for f in files {
            policy.push_str("---\n");
            policy.push_str(&f.text);
            if !f.text.ends_with('\n') {
                policy.push('\n');
            }
        }
        self.policy = policy;
        let set = palisade_engine::load(files).map_err(|e| LoadError::Invalid(e.to_string()))?;
        self.native = Some(
            palisade_engine::compile(&set, options)
                .map_err(|e| LoadError::Compile(e.to_string()))?,
        );
        Ok(())
    }

    fn decide(&mut self, request: &Request) -> Result<Decision, DecideError> {
        let workload = self.destination(request)?;
        let config = self.configuration(&workload, request.protocol, trusted_proxies(request));
        let vm = match self.instances.entry(config) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.configured = self.configured.saturating_add(1);
                let vm = self.host.configure(e.key());
                e.insert(vm)
            }
        };
        let vm = vm
            .as_mut()
            .map_err(|e| DecideError::ConfigurationRefused(e.to_string()))?;
        match request.protocol {
            Protocol::Http => {
                let o = vm.http(request);
                if let Some(t) = o.trap {
                    return Err(DecideError::Trapped(t.to_string()));
                }
                let header = o
                    .headers
                    .iter()
                    .find(|(k, _)| k == POLICY_HEADER)
                    .map(|(_, v)| v.clone());
                decision_from(o.allowed, &o.logs, o.details.as_deref(), header.as_deref())
                    .map_err(|e| DecideError::ReadBack(e.to_string()))
            }
            Protocol::Tcp => {
                let o = vm.tcp(request);
                if let Some(t) = o.trap {
                    return Err(DecideError::Trapped(t.to_string()));
                }
                decision_from(o.allowed, &o.logs, None, None)
                    .map_err(|e| DecideError::ReadBack(e.to_string()))
            }
        }
    }
}

/// The plugin configuration JSON a destination workload's sidecar gets: the mesh options, the
/// policy inline, the workload, the filter (`http` or `tcp`) and, when `trusted` is not 0,
/// `numTrustedProxies` (the request is shown as at an Istio gateway).
pub fn sidecar_configuration(
    options: &Options,
    policy: &str,
    workload: &WorkloadRef,
    protocol: Protocol,
    trusted: u32,
) -> String {
    let mut c = match serde_json::to_value(options) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    c.insert("policy".into(), policy.into());
    c.insert(
        "workload".into(),
        serde_json::to_value(workload).unwrap_or_default(),
    );
    c.insert(
        "protocol".into(),
        match protocol {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
        .into(),
    );
    if trusted > 0 {
        c.insert("numTrustedProxies".into(), trusted.into());
    }
    serde_json::Value::Object(c).to_string()
}
