//! Replaying requests through the plugin's `.wasm` and the native engine side by side.
//!
//! A [`Replayer`] holds the policy files once: natively compiled into an [`Engine`], and as
//! the inline `policy` of the plugin configuration. Each request goes to
//! [`Replayer::decide_native`] (`Engine::decide`) and to [`Replayer::decide_wasm`]: a plugin
//! instance configured as the request's destination sidecar would be — one VM per
//! destination workload, protocol and trusted `x-forwarded-for` hops, created on first use
//! and reused — whose decision is read back from what the plugin shows Envoy (see
//! [`decision_from`]). [`same_decision`] compares the two.
//!
//! The destination workload is the request's `destination.workload`, else the inventory
//! workload with the destination address; a request with neither cannot be routed to a
//! sidecar ([`Unroutable`]).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use palisade_engine::{Decision, Engine, Options, Protocol, Request, SourceFile, WorkloadRef};

use crate::decider::{POLICY_HEADER, decision_from};
use crate::envoy::trusted_xff_hops;
use crate::host::{PluginInstance, ProxyWasmHost};

/// A request no sidecar can be found for: it names no destination workload and its
/// destination address is not in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unroutable(pub String);

impl std::fmt::Display for Unroutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One configured VM, with what it was configured for.
#[derive(Debug)]
struct Slot {
    workload: WorkloadRef,
    protocol: Protocol,
    hops: u32,
    vm: Result<PluginInstance, String>,
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
}

impl Replayer {
    /// Loads and compiles `files` natively (an error is the engine's diagnostics, as text)
    /// and keeps them, joined as YAML documents, for the plugin configurations.
    pub fn new(
        host: ProxyWasmHost,
        files: &[SourceFile],
        options: &Options,
    ) -> Result<Replayer, String> {
        let set = palisade_engine::load(files).map_err(|e| format!("load: {e}"))?;
        let native =
            palisade_engine::compile(&set, options).map_err(|e| format!("compile: {e}"))?;
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
        })
    }

    /// The natively compiled engine.
    pub fn native(&self) -> &Engine {
        &self.native
    }

    /// How many plugin VMs were configured (one per destination workload, protocol and
    /// trusted hops seen).
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
        if let Some(w) = &request.destination.workload {
            return Ok(w.clone());
        }
        let Some(ip) = request.destination.ip else {
            return Err(Unroutable(
                "the request names no destination workload or address".into(),
            ));
        };
        self.native
            .inventory
            .workloads
            .iter()
            .find(|w| w.ips.contains(&ip))
            .map(|w| WorkloadRef {
                namespace: w.namespace.clone(),
                name: Some(w.name.clone()),
                ..WorkloadRef::default()
            })
            .ok_or_else(|| {
                Unroutable(format!(
                    "no destination workload: no inventory workload has address `{ip}`"
                ))
            })
    }

    /// The plugin configuration JSON for a destination sidecar.
    pub fn configuration(&self, workload: &WorkloadRef, protocol: Protocol, hops: u32) -> String {
        let mut c = match serde_json::to_value(&self.options) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        c.insert("policy".into(), self.policy.clone().into());
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
        c.insert("trustedXffHops".into(), hops.into());
        serde_json::Value::Object(c).to_string()
    }

    /// The VM for a destination sidecar, configured on first use.
    fn slot(&mut self, workload: &WorkloadRef, protocol: Protocol, hops: u32) -> usize {
        let mut h = DefaultHasher::new();
        workload.namespace.hash(&mut h);
        workload.name.hash(&mut h);
        workload.labels.hash(&mut h);
        workload.service_account.hash(&mut h);
        protocol.hash(&mut h);
        hops.hash(&mut h);
        let key = h.finish();
        if let Some(found) = self.index.get(&key).and_then(|v| {
            v.iter().copied().find(|i| {
                self.slots.get(*i).is_some_and(|s| {
                    s.protocol == protocol && s.hops == hops && s.workload == *workload
                })
            })
        }) {
            return found;
        }
        let config = self.configuration(workload, protocol, hops);
        let vm = self
            .host
            .configure(&config)
            .map_err(|e| format!("the plugin refused its configuration: {e}"));
        self.slots.push(Slot {
            workload: workload.clone(),
            protocol,
            hops,
            vm,
        });
        let i = self.slots.len().saturating_sub(1);
        self.index.entry(key).or_default().push(i);
        i
    }

    /// The plugin's decision, as the destination's sidecar makes it. `Err` when the request
    /// cannot be routed (the outer error) or the plugin failed (refused its configuration,
    /// trapped, or showed a decision that does not read back).
    pub fn decide_wasm(
        &mut self,
        request: &Request,
    ) -> Result<Result<Decision, String>, Unroutable> {
        let workload = self.destination(request)?;
        let hops = trusted_xff_hops(request);
        let i = self.slot(&workload, request.protocol, hops);
        let Some(slot) = self.slots.get_mut(i) else {
            return Ok(Err("no VM".into()));
        };
        let vm = match &mut slot.vm {
            Ok(vm) => vm,
            Err(e) => return Ok(Err(e.clone())),
        };
        Ok(match request.protocol {
            Protocol::Http => {
                let o = vm.http(request);
                match o.trap {
                    Some(t) => Err(format!("the guest trapped: {t}")),
                    None => {
                        let header = o
                            .headers
                            .iter()
                            .find(|(k, _)| k == POLICY_HEADER)
                            .map(|(_, v)| v.as_str());
                        decision_from(o.allowed, &o.logs, o.details.as_deref(), header)
                    }
                }
            }
            Protocol::Tcp => {
                let o = vm.tcp(request);
                match o.trap {
                    Some(t) => Err(format!("the guest trapped: {t}")),
                    None => decision_from(o.allowed, &o.logs, None, None),
                }
            }
        })
    }
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
