//! The plugin configuration (Envoy's `PluginConfig.configuration`, Istio's `pluginConfig`):
//! parsed, validated and compiled once per filter configuration into a [`Plugin`], which every
//! request context then shares read-only.
//!
//! Every option is documented in the README section "The Envoy plugin". Unknown fields are
//! rejected; any problem is a [`ConfigError`] whose text is what `on_configure` logs before
//! returning `false` (Envoy then refuses the configuration and keeps the previous one).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use ipnet::IpNet;
use palisade_engine::{
    Decision, Engine, Errors, Needs, PathNormalization, Protocol, Request, Scope, Step,
    TrustedKeys, Verdict, WorkloadRef, WorkloadView, error::DecisionError, netpol, open_bundle,
};
#[cfg(feature = "yaml")]
use palisade_engine::{Options, SourceFile, load};
use serde::Deserialize;

/// Whether denials are enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Deny what the policy denies (the default).
    #[default]
    Enforce,
    /// Decide, count and log, never block.
    DryRun,
}

/// What a filter configuration does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Decide requests or connections by the policy (the default).
    #[default]
    Decide,
    /// On an HTTP listener, as an `envoy.filters.network.wasm` filter before the HTTP
    /// connection manager: decide nothing, only record each connection's direct peer for the
    /// HTTP filter (see `docs/envoy-gateway.md`), which cannot read it once Envoy has taken
    /// the client address from `x-forwarded-for`.
    PeerRecorder,
}

/// A configuration as a filter runs it.
#[derive(Debug, Clone)]
pub enum Configured {
    /// The compiled policy, deciding.
    Decide(Box<Plugin>),
    /// The peer recorder ([`Role::PeerRecorder`]).
    PeerRecorder,
}

/// Parses a configuration and, by its `role`, compiles it ([`Plugin::from_config`]) or
/// checks that it is a peer recorder's: `role` alone (and `protocol`), since a recorder
/// decides nothing and an option given to it would be a mistake silently ignored.
pub fn configure(json: &[u8], node: &NodeMetadata) -> Result<Configured, ConfigError> {
    let config = parse(json)?;
    if config.role != Role::PeerRecorder {
        return Plugin::from_config(config, node).map(|p| Configured::Decide(Box::new(p)));
    }
    let rest = PluginConfig {
        role: Role::Decide,
        protocol: Protocol::default(),
        ..config
    };
    if rest != PluginConfig::default() {
        return Err(ConfigError::Invalid(
            "a `peerRecorder` decides nothing: give it `role` alone, and the policy and \
             options to the HTTP filter's configuration"
                .into(),
        ));
    }
    Ok(Configured::PeerRecorder)
}

fn parse(json: &[u8]) -> Result<PluginConfig, ConfigError> {
    let text = std::str::from_utf8(json)
        .map_err(|_| ConfigError::Json("the configuration is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Err(ConfigError::Invalid(
            "the configuration is empty: set `policy` or `bundle`".into(),
        ));
    }
    serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))
}

/// The local workload: the destination whose policies apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Its namespace.
    pub namespace: String,
    /// Its name; when it names an inventory workload, labels come from the inventory.
    #[serde(default)]
    pub name: Option<String>,
    /// Its pod labels (select the AuthorizationPolicies that apply).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its service account.
    #[serde(default)]
    pub service_account: Option<String>,
}

/// The configuration JSON as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    /// Inline YAML (one or more documents: AuthorizationPolicy, NetworkPolicy, Inventory).
    #[serde(default)]
    pub policy: Option<String>,
    /// A compiled bundle (`palisade compile` output), base64.
    #[serde(default)]
    pub bundle: Option<String>,
    /// The keys a `bundle` must be signed by (`[{keyId, publicKey}]`, the public key as
    /// `palisade keygen` prints it). When set, only a bundle signed by one of them, for this
    /// workload, its namespace or the mesh, is accepted; several allow rotation.
    #[serde(default)]
    pub trusted_keys: Option<Vec<TrustedKeyConfig>>,
    /// Which filter this configuration serves: `http` (`envoy.filters.http.wasm`, the
    /// default) or `tcp` (`envoy.filters.network.wasm`). One `.wasm` serves both; Envoy does
    /// not tell a plugin which filter created it, so the configuration does.
    #[serde(default)]
    pub protocol: Protocol,
    /// The local workload; when absent it is read from Envoy's node metadata.
    #[serde(default)]
    pub workload: Option<WorkloadConfig>,
    /// The mesh's trust domain (default `cluster.local`).
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Other trust domains treated as the same.
    #[serde(default)]
    pub trust_domain_aliases: Option<Vec<String>>,
    /// Policies in this namespace apply mesh-wide (default `istio-system`).
    #[serde(default)]
    pub root_namespace: Option<String>,
    /// `NONE`, `BASE` (default), `MERGE_SLASHES`, `DECODE_AND_MERGE_SLASHES`.
    #[serde(default)]
    pub path_normalization: Option<PathNormalization>,
    /// The external authorizers CUSTOM policies name, as meshConfig `extensionProviders`
    /// (`[{name, envoyExtAuthzHttp: {...}}]` or `envoyExtAuthzGrpc`).
    #[serde(default)]
    pub extension_providers: Option<Vec<palisade_engine::extauthz::ExtensionProvider>>,
    /// How NetworkPolicy treats node traffic: `{hostNetworkPods: node|pod, allowOwnNode}`
    /// (default `node`, `true`; see `docs/inventory.md`).
    #[serde(default)]
    pub node_traffic: Option<palisade_engine::NodeTraffic>,
    /// At an Istio gateway: the mesh's `gatewayTopology.numTrustedProxies`, unchanged (the
    /// listener's `xff_num_trusted_hops`, with `use_remote_address: true`). Absent on sidecars.
    /// Only `ipBlocks` / `source.ip` need it, and only for a request whose client address
    /// Envoy took from `x-forwarded-for` (see `docs/envoy-gateway.md`).
    #[serde(default)]
    pub num_trusted_proxies: Option<u32>,
    /// Removed: refused with a message saying what replaced it.
    #[serde(default)]
    pub trusted_xff_hops: Option<serde_json::Value>,
    /// `peerRecorder` for the network filter that records the direct peer on an HTTP
    /// listener; absent (deciding) otherwise.
    #[serde(default)]
    pub role: Role,
    /// `enforce` (default) or `dry-run`.
    #[serde(default)]
    pub mode: Mode,
    /// The status of an HTTP denial (default 403).
    #[serde(default)]
    pub deny_status: Option<u32>,
    /// The body of an HTTP denial (default `RBAC: access denied`).
    #[serde(default)]
    pub deny_body: Option<String>,
}

/// A key bundles may be signed by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedKeyConfig {
    /// The id `palisade compile --key-id` wrote into the bundle.
    pub key_id: String,
    /// The ed25519 public key, base64.
    pub public_key: String,
}

/// The local workload as Istio describes it in Envoy's node metadata
/// (`NAMESPACE`, `WORKLOAD_NAME`, `LABELS`, `SERVICE_ACCOUNT`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMetadata {
    /// `NAMESPACE`.
    pub namespace: Option<String>,
    /// `WORKLOAD_NAME`.
    pub workload_name: Option<String>,
    /// `LABELS`.
    pub labels: BTreeMap<String, String>,
    /// `SERVICE_ACCOUNT`.
    pub service_account: Option<String>,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// Not JSON, or a field of the wrong type, or an unknown field.
    Json(String),
    /// An option's value is invalid.
    Invalid(String),
    /// The policies do not load or compile (the engine's diagnostics).
    Policy(Errors),
    /// The bundle does not decode.
    Bundle(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Json(e) => write!(f, "invalid plugin configuration: {e}"),
            ConfigError::Invalid(e) => write!(f, "invalid plugin configuration: {e}"),
            ConfigError::Policy(e) => write!(f, "invalid policy: {e}"),
            ConfigError::Bundle(e) => write!(f, "invalid `bundle`: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The default body of an HTTP denial, as Envoy's RBAC filter sends it.
pub const DEFAULT_DENY_BODY: &str = "RBAC: access denied";

/// A compiled configuration: everything a request context needs, immutable.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// The compiled policies.
    pub engine: Engine,
    /// The local workload's view (built once).
    pub view: WorkloadView,
    /// The local workload, as put into each request's `destination.workload`.
    pub workload: WorkloadRef,
    /// Which filter this configuration serves.
    pub protocol: Protocol,
    /// The gateway's trusted proxies (`numTrustedProxies`), `None` when not configured (a
    /// sidecar). See [`crate::attributes::client_addresses`].
    pub num_trusted_proxies: Option<u32>,
    /// Peer addresses that between them give every decision the local rules can reach by
    /// `source.ip` (see [`peer_candidates`]); empty when NetworkPolicies apply (they also
    /// look the peer up in the inventory: see [`Plugin::decide_without_peer`]).
    pub peer_candidates: Vec<IpAddr>,
    /// Enforce or dry-run.
    pub mode: Mode,
    /// HTTP denial status.
    pub deny_status: u32,
    /// HTTP denial body.
    pub deny_body: String,
    /// What the local workload's rules (and NetworkPolicies, if any) can test on this
    /// protocol: the glue reads only those properties (each a host call per request); an
    /// attribute no rule tests is left absent, which decides exactly as reading it.
    pub needs: Needs,
    /// The request headers a request keeps (lower-case): `:method`, `:path`, `:authority`,
    /// `x-forwarded-for` at a gateway (`numTrustedProxies` > 0) when `source.ip` is tested, and
    /// every header a rule tests by name. The others cannot change a decision, so the glue does not copy them.
    pub headers: Vec<String>,
}

impl Plugin {
    /// Parses, validates and compiles a configuration. `node` is consulted only when the
    /// configuration has no `workload`.
    pub fn configure(json: &[u8], node: &NodeMetadata) -> Result<Plugin, ConfigError> {
        Plugin::from_config(parse(json)?, node)
    }

    /// Validates and compiles a parsed configuration.
    pub fn from_config(
        mut config: PluginConfig,
        node: &NodeMetadata,
    ) -> Result<Plugin, ConfigError> {
        if config.role == Role::PeerRecorder {
            return Err(ConfigError::Invalid(
                "a `peerRecorder` configuration decides nothing (see `configure`)".into(),
            ));
        }
        let workload = local_workload(config.workload.take(), node)?;
        let keys = match config.trusted_keys.take() {
            Some(keys) if keys.is_empty() => {
                return Err(ConfigError::Invalid(
                    "`trustedKeys` is empty: name at least one key, or leave it out".into(),
                ));
            }
            Some(keys) => Some(
                TrustedKeys::parse(
                    keys.iter()
                        .map(|k| (k.key_id.as_str(), k.public_key.as_str())),
                )
                .map_err(|e| ConfigError::Invalid(e.to_string()))?,
            ),
            None => None,
        };
        let mut engine = match (config.policy.take(), config.bundle.take()) {
            (Some(_), None) if keys.is_some() => {
                return Err(ConfigError::Invalid(
                    "`trustedKeys` accepts only a signed `bundle`, not an inline `policy`: \
                     compile and sign it with `palisade compile --sign`"
                        .into(),
                ));
            }
            #[cfg(not(feature = "yaml"))]
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "this build of the plugin reads only `bundle` (it was built without the \
                     `yaml` feature): compile the policy with `palisade compile` and pass it as \
                     `bundle`"
                        .into(),
                ));
            }
            #[cfg(feature = "yaml")]
            (Some(policy), None) => {
                let options = options(&config)?;
                // The text moves into the source file (no copy), and the decoded set is
                // dropped as soon as it is compiled: wasm memory never shrinks, so what is
                // held at once here stays resident for the plugin's lifetime.
                let set = load(&[SourceFile::new("pluginConfig.policy", policy)])
                    .map_err(ConfigError::Policy)?;
                palisade_engine::compile(&set, &options).map_err(ConfigError::Policy)?
            }
            (None, Some(mut bundle)) => {
                if config.trust_domain.is_some()
                    || config.trust_domain_aliases.is_some()
                    || config.root_namespace.is_some()
                    || config.path_normalization.is_some()
                    || config.node_traffic.is_some()
                    || config.extension_providers.is_some()
                {
                    return Err(ConfigError::Invalid(
                        "`trustDomain`, `trustDomainAliases`, `rootNamespace`, \
                         `pathNormalization`, `nodeTraffic` and `extensionProviders` are fixed \
                         when a bundle is compiled; pass them to `palisade compile` instead"
                            .into(),
                    ));
                }
                // In place, and each buffer dropped once read (see `policy` above).
                bundle.retain(|c| !c.is_ascii_whitespace());
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(bundle.as_bytes())
                    .map_err(|e| ConfigError::Bundle(format!("not base64: {e}")))?;
                drop(bundle);
                // What this plugin enforces: its workload when named, else its namespace.
                let host = match &workload.name {
                    Some(name) => Scope::Workload {
                        namespace: workload.namespace.clone(),
                        name: name.clone(),
                    },
                    None => Scope::Namespace(workload.namespace.clone()),
                };
                let keys = keys.unwrap_or_default();
                open_bundle(&bytes, &keys, &host)
                    .map_err(|e| ConfigError::Bundle(e.to_string()))?
                    .0
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set one of `policy` or `bundle`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "set `policy` (inline YAML) or `bundle` (base64)".into(),
                ));
            }
        };
        if config.trusted_xff_hops.is_some() {
            return Err(ConfigError::Invalid(
                "`trustedXffHops` was removed: `remote.ip` is now the address Envoy's RBAC uses \
                 (`source.address`), whatever the listener; at an Istio gateway set \
                 `numTrustedProxies` to the mesh's `gatewayTopology.numTrustedProxies`, and on \
                 a sidecar set nothing"
                    .into(),
            ));
        }
        let deny_status = config.deny_status.unwrap_or(403);
        if !(200..=599).contains(&deny_status) {
            return Err(ConfigError::Invalid(format!(
                "`denyStatus` {deny_status} is not an HTTP status between 200 and 599"
            )));
        }
        let named = workload
            .name
            .as_ref()
            .and_then(|name| engine.view_of(&workload.namespace, name).cloned());
        let (view, workload) = match named {
            Some(view) => (view, workload),
            None => {
                let labels: Vec<(String, String)> = workload
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                // Not in the inventory: described inline, so NetworkPolicy looks it up by labels.
                let inline = WorkloadRef {
                    name: None,
                    ..workload
                };
                (engine.build_view(&inline.namespace, &labels), inline)
            }
        };
        let needs = engine.needs(&view, config.protocol);
        let peer_candidates = if engine.network().is_empty() {
            peer_candidates(&engine.source_ip_cidrs(&view, config.protocol))
        } else {
            Vec::new()
        };
        let mut headers: Vec<String> = [":method", ":path", ":authority"].map(String::from).into();
        if needs.source_ip
            && config.protocol == Protocol::Http
            && config.num_trusted_proxies.is_some_and(|n| n > 0)
        {
            headers.push("x-forwarded-for".into());
        }
        for name in engine.tested_headers(&view, config.protocol) {
            let name = name.to_ascii_lowercase();
            if !headers.contains(&name) {
                headers.push(name);
            }
        }
        // What a request context never reads: the other workloads' views (the local one is
        // `view`) and the ContainerPolicies (decided by the container hosts, not Envoy).
        engine.drop_views_and_container_policies();
        Ok(Plugin {
            needs,
            headers,
            engine,
            view,
            workload,
            protocol: config.protocol,
            num_trusted_proxies: config.num_trusted_proxies,
            peer_candidates,
            mode: config.mode,
            deny_status,
            deny_body: config
                .deny_body
                .unwrap_or_else(|| DEFAULT_DENY_BODY.to_string()),
        })
    }

    /// Whether a request keeps the header `name` (see [`Plugin::headers`]).
    pub fn keeps_header(&self, name: impl AsRef<[u8]>) -> bool {
        let name = name.as_ref();
        self.headers
            .iter()
            .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
    }

    /// A one-line summary for the log: mode, workload and the policies that apply.
    pub fn summary(&self) -> String {
        let name = self.workload.name.as_deref().unwrap_or("-");
        format!(
            "palisade: {} {} for workload {}/{} ({} AuthorizationPolicies apply: [{}]; {} NetworkPolicies)",
            match self.protocol {
                Protocol::Http => "http",
                Protocol::Tcp => "tcp",
            },
            match self.mode {
                Mode::Enforce => "enforce",
                Mode::DryRun => "dry-run",
            },
            self.workload.namespace,
            name,
            self.view.policies.len(),
            self.view.policies.join(", "),
            self.engine.network().policies.len(),
        )
    }

    /// Decides a request whose direct peer the plugin cannot know (`why`; its `source.ip` is
    /// absent): the decision when it is the same for every peer it can be, else a fail-closed
    /// error. Without a rule testing the peer, simply the decision. The peers it can be: each
    /// of [`Plugin::peer_candidates`] (they reach every decision the rules can make by the
    /// peer); with NetworkPolicies, which also look the peer up in the inventory, the
    /// inventory's addresses of the workloads whose identity the verified peer certificate
    /// names ([`Plugin::inventory_peers`]) — none without mTLS, so that fails closed.
    pub fn decide_without_peer(&self, request: &Request, why: &str) -> Decision {
        if !self.needs.source_ip {
            return self.decide(request);
        }
        let network = !self.engine.network().is_empty();
        let inventory_peers;
        let candidates: &[IpAddr] = if network {
            inventory_peers = self.inventory_peers(request.source.principal.as_deref());
            if inventory_peers.is_empty() {
                return error_decision(format!(
                    "{why}, and NetworkPolicies apply: without a peer certificate naming an \
                     inventory workload, the peer could be any pod"
                ));
            }
            &inventory_peers
        } else {
            &self.peer_candidates
        };
        let mut r = request.clone();
        let mut first: Option<Decision> = None;
        for ip in candidates {
            r.source.ip = Some(*ip);
            let d = self.decide(&r);
            match &first {
                None => first = Some(d),
                Some(f) if *f == d => {}
                Some(_) => {
                    return error_decision(format!(
                        "{why}, and a rule of this workload decides on it (ipBlocks, \
                         notIpBlocks or source.ip)"
                    ));
                }
            }
        }
        first.unwrap_or_else(|| error_decision(why.to_string()))
    }

    /// The inventory addresses of the workloads a verified peer principal
    /// (`spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, the trust domain the
    /// mesh's or an alias) names: the pods an mTLS peer with that certificate can be.
    pub fn inventory_peers(&self, principal: Option<&str>) -> Vec<IpAddr> {
        let Some(rest) = principal.and_then(|p| p.strip_prefix("spiffe://")) else {
            return Vec::new();
        };
        let Some((td, path)) = rest.split_once('/') else {
            return Vec::new();
        };
        let o = self.engine.options();
        if td != o.trust_domain && !o.trust_domain_aliases.iter().any(|a| a == td) {
            return Vec::new();
        }
        let Some((ns, sa)) = path.strip_prefix("ns/").and_then(|p| p.split_once("/sa/")) else {
            return Vec::new();
        };
        let mut ips: Vec<IpAddr> = self
            .engine
            .inventory()
            .workloads
            .iter()
            .filter(|w| w.namespace == ns && w.service_account == sa)
            .flat_map(|w| w.ips.iter().copied())
            .collect();
        ips.sort_unstable();
        ips.dedup();
        ips
    }

    /// Decides a request with the local workload's view: AuthorizationPolicy, then
    /// NetworkPolicy when there are any (both must allow), as [`Engine::decide`] does.
    pub fn decide(&self, request: &Request) -> Decision {
        let mut decision = self.engine.decide_in_view(&self.view, request);
        if matches!(decision.step, Step::Error | Step::JwtRejected)
            || self.engine.network().is_empty()
        {
            return decision;
        }
        match netpol::evaluate(
            self.engine.network(),
            self.engine.inventory(),
            request,
            self.engine.options().node_traffic,
        ) {
            Ok(outcome) => {
                decision.join_network(outcome);
                decision
            }
            Err(e) => error_decision(e),
        }
    }
}

/// Peer addresses such that every decision reachable by varying `source.ip` is reached by
/// one of them: the first address of each block, the first address after it, and the
/// unspecified address of each family. Proof: a decision depends on the peer only through
/// which of `nets` hold it. Take any address and the smallest address `y` of its family that
/// is in exactly the same blocks. Either `y` is the family's first address, or `y - 1` is in
/// different blocks (else `y` would not be the smallest), so some block holds exactly one of
/// `y - 1` and `y`: then `y` is that block's first address, or the address after its last.
pub fn peer_candidates(nets: &[IpNet]) -> Vec<IpAddr> {
    let mut out = vec![
        IpAddr::from(Ipv4Addr::UNSPECIFIED),
        IpAddr::from(Ipv6Addr::UNSPECIFIED),
    ];
    for n in nets {
        out.push(n.network());
        let after: Option<IpAddr> = match n.broadcast() {
            IpAddr::V4(b) => u32::from(b)
                .checked_add(1)
                .map(|x| Ipv4Addr::from(x).into()),
            IpAddr::V6(b) => u128::from(b)
                .checked_add(1)
                .map(|x| Ipv6Addr::from(x).into()),
        };
        out.extend(after);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A fail-closed decision for an internal error (a property that cannot be read, say).
pub fn error_decision(message: impl Into<DecisionError>) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        step: Step::Error,
        rule: None,
        shadow: Vec::new(),
        audit: None,
        network: None,
        errors: vec![message.into()],
        custom: Vec::new(),
    }
}

#[cfg(feature = "yaml")]
fn options(config: &PluginConfig) -> Result<Options, ConfigError> {
    let mut o = Options::default();
    if let Some(td) = &config.trust_domain {
        if td.is_empty() {
            return Err(ConfigError::Invalid("`trustDomain` is empty".into()));
        }
        o.trust_domain.clone_from(td);
    }
    if let Some(a) = &config.trust_domain_aliases {
        o.trust_domain_aliases.clone_from(a);
    }
    if let Some(r) = &config.root_namespace {
        o.root_namespace.clone_from(r);
    }
    if let Some(p) = config.path_normalization {
        o.path_normalization = p;
    }
    if let Some(n) = config.node_traffic {
        o.node_traffic = n;
    }
    if let Some(e) = &config.extension_providers {
        o.extension_providers.clone_from(e);
    }
    Ok(o)
}

fn local_workload(
    config: Option<WorkloadConfig>,
    node: &NodeMetadata,
) -> Result<WorkloadRef, ConfigError> {
    let w = match config {
        Some(w) => w,
        None => WorkloadConfig {
            namespace: node.namespace.clone().ok_or_else(|| {
                ConfigError::Invalid(
                    "no local workload: set `workload` or run under Istio, whose node metadata \
                     carries `NAMESPACE`"
                        .into(),
                )
            })?,
            name: node.workload_name.clone(),
            labels: node.labels.clone(),
            service_account: node.service_account.clone(),
        },
    };
    if w.namespace.is_empty() {
        return Err(ConfigError::Invalid("`workload.namespace` is empty".into()));
    }
    Ok(WorkloadRef {
        namespace: w.namespace,
        name: w.name,
        labels: w.labels,
        service_account: w.service_account,
    })
}

/// Test support: a configuration's JSON as given, or, in the bundle-only build, with its
/// `policy` YAML compiled natively into the `bundle` that build reads (so the same tests run
/// in both builds).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_configuration(json: serde_json::Value) -> Vec<u8> {
    #[cfg(not(feature = "yaml"))]
    let json = policy_as_bundle(json);
    serde_json::to_vec(&json).unwrap()
}

/// `policy` (YAML) replaced by the equivalent `bundle`.
#[cfg(all(test, not(feature = "yaml")))]
#[allow(clippy::unwrap_used)]
fn policy_as_bundle(mut json: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = json.as_object_mut()
        && let Some(serde_json::Value::String(policy)) = obj.remove("policy")
    {
        let set = palisade_engine::load(&[palisade_engine::SourceFile::new("policy.yaml", policy)])
            .unwrap();
        let engine = palisade_engine::compile(&set, &palisade_engine::Options::default()).unwrap();
        let bytes = palisade_engine::encode_bundle(&engine).unwrap();
        obj.insert(
            "bundle".into(),
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into(),
        );
    }
    json
}

#[cfg(all(test, not(feature = "yaml")))]
mod bundle_only_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_bundle_only_build_refuses_yaml_and_reads_bundles() {
        let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                      metadata: {name: a, namespace: shop}\nspec: {}\n";
        let json = serde_json::json!({"policy": policy, "workload": {"namespace": "shop"}});
        let e = Plugin::configure(
            &serde_json::to_vec(&json).unwrap(),
            &NodeMetadata::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("reads only `bundle`"), "{e}");
        let set =
            palisade_engine::load(&[palisade_engine::SourceFile::new("p.yaml", policy)]).unwrap();
        let engine = palisade_engine::compile(&set, &palisade_engine::Options::default()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(palisade_engine::encode_bundle(&engine).unwrap());
        let json = serde_json::json!({"bundle": b64, "workload": {"namespace": "shop"}});
        let p = Plugin::configure(
            &serde_json::to_vec(&json).unwrap(),
            &NodeMetadata::default(),
        )
        .unwrap();
        assert_eq!(p.view.policies, vec!["shop/a".to_string()]);
    }
}

#[cfg(all(test, feature = "yaml"))]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    const POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-get, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  rules:
  - to: [{operation: {methods: ["GET"]}}]
"#;

    fn config(extra: serde_json::Value) -> Vec<u8> {
        let mut c = serde_json::json!({
            "policy": POLICY,
            "workload": {"namespace": "shop", "labels": {"app": "cart"}},
        });
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&c).unwrap()
    }

    fn err(json: &[u8]) -> String {
        Plugin::configure(json, &NodeMetadata::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn only_what_the_workloads_rules_test_is_needed() {
        let p =
            Plugin::configure(&config(serde_json::json!({})), &NodeMetadata::default()).unwrap();
        assert_eq!(
            p.needs,
            Needs {
                headers: true,
                ..Needs::default()
            },
            "methods only: the header map"
        );
        let with_sni = |namespace: &str, protocol: &str| {
            let policy = format!(
                "{POLICY}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                 metadata: {{name: sni, namespace: {namespace}}}\nspec:\n  action: DENY\n  rules:\n  \
                 - when: [{{key: connection.sni, values: [\"x.example\"]}}]\n"
            );
            Plugin::configure(
                &config(serde_json::json!({ "policy": policy, "protocol": protocol })),
                &NodeMetadata::default(),
            )
            .unwrap()
            .needs
        };
        assert!(with_sni("shop", "http").sni);
        assert!(with_sni("shop", "http").headers);
        assert!(
            !with_sni("other", "http").sni,
            "a policy for another workload"
        );
        let tcp = with_sni("shop", "tcp");
        assert!(
            tcp.sni && !tcp.headers,
            "on TCP the ALLOW methods rule is dropped"
        );
    }

    #[test]
    fn a_request_keeps_the_pseudo_headers_and_the_tested_ones() {
        let policy = format!(
            "{POLICY}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: h, namespace: shop}}\nspec:\n  action: DENY\n  rules:\n  \
             - from: [{{source: {{ipBlocks: [\"1.2.3.4\"]}}}}]\n    \
             when: [{{key: \"request.headers[x-tenant]\", values: [\"t\"]}}]\n"
        );
        let p = |json: serde_json::Value| {
            let mut json = json;
            json["policy"] = policy.clone().into();
            Plugin::configure(&config(json), &NodeMetadata::default()).unwrap()
        };
        let sidecar = p(serde_json::json!({}));
        assert_eq!(
            sidecar.headers,
            [":method", ":path", ":authority", "x-tenant"]
        );
        assert!(sidecar.keeps_header("X-Tenant") && sidecar.keeps_header(":path"));
        assert!(
            !sidecar.keeps_header("x-forwarded-for"),
            "a sidecar never reads x-forwarded-for"
        );
        assert!(!sidecar.keeps_header("user-agent"));
        assert!(
            !p(serde_json::json!({"numTrustedProxies": 0})).keeps_header("x-forwarded-for"),
            "a gateway without trusted proxies takes no address from x-forwarded-for"
        );
        assert!(
            p(serde_json::json!({"numTrustedProxies": 1})).keeps_header("x-forwarded-for"),
            "a gateway with a trusted proxy reads the peer Envoy appended"
        );
    }

    #[test]
    fn a_minimal_configuration_compiles_with_the_documented_defaults() {
        let p =
            Plugin::configure(&config(serde_json::json!({})), &NodeMetadata::default()).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.protocol, Protocol::Http);
        assert_eq!(p.deny_status, 403);
        assert_eq!(p.deny_body, "RBAC: access denied");
        assert_eq!(p.num_trusted_proxies, None);
        assert_eq!(p.view.policies, vec!["shop/only-get".to_string()]);
        assert!(p.summary().contains("shop/only-get"));
    }

    #[test]
    fn every_option_is_read() {
        let p = Plugin::configure(
            &config(serde_json::json!({
                "protocol": "tcp", "mode": "dry-run", "denyStatus": 401, "denyBody": "no",
                "numTrustedProxies": 2, "trustDomain": "example.org",
                "trustDomainAliases": ["old.example"], "rootNamespace": "mesh",
                "pathNormalization": "MERGE_SLASHES",
            })),
            &NodeMetadata::default(),
        )
        .unwrap();
        assert_eq!(p.protocol, Protocol::Tcp);
        assert_eq!(p.mode, Mode::DryRun);
        assert_eq!((p.deny_status, p.deny_body.as_str()), (401, "no"));
        assert_eq!(p.num_trusted_proxies, Some(2));
        assert_eq!(p.engine.options().trust_domain, "example.org");
        assert_eq!(p.engine.options().trust_domain_aliases, vec!["old.example"]);
        assert_eq!(p.engine.options().root_namespace, "mesh");
        assert_eq!(
            p.engine.options().path_normalization,
            PathNormalization::MergeSlashes
        );
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let e = err(&config(serde_json::json!({"denyStatuss": 401})));
        assert!(e.contains("unknown field `denyStatuss`"), "{e}");
    }

    #[test]
    fn the_removed_trusted_xff_hops_is_refused_with_what_replaced_it() {
        let e = err(&config(serde_json::json!({"trustedXffHops": 1})));
        assert!(e.contains("`trustedXffHops` was removed"), "{e}");
        assert!(e.contains("numTrustedProxies"), "{e}");
    }

    fn role(json: serde_json::Value) -> Result<bool, String> {
        configure(
            &serde_json::to_vec(&json).unwrap(),
            &NodeMetadata::default(),
        )
        .map(|c| matches!(c, Configured::PeerRecorder))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_peer_recorder_takes_its_role_alone() {
        assert_eq!(role(serde_json::json!({"role": "peerRecorder"})), Ok(true));
        assert_eq!(
            role(serde_json::json!({"role": "peerRecorder", "protocol": "tcp"})),
            Ok(true),
            "the harness and the Envoy example add the network filter's protocol"
        );
        for (name, extra) in [
            ("a policy", serde_json::json!({"policy": POLICY})),
            ("an option", serde_json::json!({"numTrustedProxies": 1})),
            ("a mode", serde_json::json!({"mode": "dry-run"})),
        ] {
            let mut json = serde_json::json!({"role": "peerRecorder"});
            json.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let e = role(json).unwrap_err();
            assert!(
                e.contains("a `peerRecorder` decides nothing"),
                "{name}: {e}"
            );
        }
        let e = role(serde_json::json!({"role": "recorder"})).unwrap_err();
        assert!(e.contains("unknown variant `recorder`"), "{e}");
    }

    #[test]
    fn a_deciding_configuration_is_one_without_a_role_or_with_role_decide() {
        let decide = |extra| configure(&config(extra), &NodeMetadata::default()).unwrap();
        assert!(matches!(
            decide(serde_json::json!({})),
            Configured::Decide(_)
        ));
        assert!(matches!(
            decide(serde_json::json!({"role": "decide"})),
            Configured::Decide(_)
        ));
        let e = err(&config(serde_json::json!({"role": "peerRecorder"})));
        assert!(e.contains("decides nothing"), "{e}");
    }

    #[test]
    fn an_unknown_mode_is_refused() {
        let e = err(&config(serde_json::json!({"mode": "audit"})));
        assert!(e.contains("unknown variant `audit`"), "{e}");
    }

    #[test]
    fn a_policy_error_carries_the_engines_diagnostic() {
        let e = err(&serde_json::to_vec(&serde_json::json!({
            "policy": "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: y}\nspec: {action: MAYBE}\n",
            "workload": {"namespace": "y"},
        }))
        .unwrap());
        assert!(e.starts_with("invalid policy: "), "{e}");
        assert!(e.contains("MAYBE"), "{e}");
    }

    #[test]
    fn neither_or_both_sources_are_refused() {
        let e = err(br#"{"workload": {"namespace": "shop"}}"#);
        assert!(e.contains("set `policy`"), "{e}");
        let e = err(&config(serde_json::json!({"bundle": "AAAA"})));
        assert!(e.contains("not both"), "{e}");
        assert!(err(b"").contains("empty"));
        assert!(err(b"not json").contains("invalid plugin configuration"));
    }

    #[test]
    fn a_bad_bundle_and_a_bad_status_are_refused() {
        let e = err(br#"{"bundle": "!!", "workload": {"namespace": "shop"}}"#);
        assert!(e.contains("not base64"), "{e}");
        let e = err(br#"{"bundle": "AAAA", "workload": {"namespace": "shop"}}"#);
        assert!(e.contains("not a Palisade bundle"), "{e}");
        let e = err(&config(serde_json::json!({"denyStatus": 99})));
        assert!(e.contains("`denyStatus` 99"), "{e}");
    }

    #[test]
    fn a_bundle_decides_like_the_policy_it_was_compiled_from() {
        let set = load(&[SourceFile::new("p.yaml", POLICY)]).unwrap();
        let engine = palisade_engine::compile(&set, &Options::default()).unwrap();
        let bytes = palisade_engine::encode_bundle(&engine).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let json = serde_json::json!({"bundle": b64, "workload": {"namespace": "shop", "labels": {"app": "cart"}}});
        let p = Plugin::configure(
            &serde_json::to_vec(&json).unwrap(),
            &NodeMetadata::default(),
        )
        .unwrap();
        assert_eq!(p.view.policies, vec!["shop/only-get".to_string()]);
        let json = serde_json::json!({"bundle": "AAAA", "trustDomain": "x", "workload": {"namespace": "shop"}});
        let e = err(&serde_json::to_vec(&json).unwrap());
        assert!(e.contains("fixed when a bundle is compiled"), "{e}");
    }

    /// A signed bundle of `POLICY` for `scope`, and the `trustedKeys` entry of its key.
    fn signed_bundle(seed: u8, scope: palisade_engine::Scope) -> (String, serde_json::Value) {
        use palisade_engine::{BundleInfo, BundleSigner, bundle::public_key_base64};
        let set = load(&[SourceFile::new("p.yaml", POLICY)]).unwrap();
        let engine = palisade_engine::compile(&set, &Options::default()).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let public = public_key_base64(&key.verifying_key());
        let signer = BundleSigner {
            key_id: format!("key-{seed}"),
            key,
        };
        let info = BundleInfo {
            scope,
            inputs: vec![],
        };
        let bytes = palisade_engine::encode_signed(&engine, &info, Some(&signer)).unwrap();
        (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            serde_json::json!({"keyId": format!("key-{seed}"), "publicKey": public}),
        )
    }

    #[test]
    fn trusted_keys_accept_only_a_bundle_signed_for_this_workload() {
        use palisade_engine::Scope;
        let cart =
            serde_json::json!({"namespace": "shop", "name": "cart", "labels": {"app": "cart"}});
        let workload = |ns: &str, name: &str| Scope::Workload {
            namespace: ns.into(),
            name: name.into(),
        };
        let (good, key) = signed_bundle(1, workload("shop", "cart"));
        let (_, other_key) = signed_bundle(2, Scope::Mesh);
        let (for_frontend, _) = signed_bundle(1, workload("shop", "frontend"));
        let (mesh, _) = signed_bundle(1, Scope::Mesh);
        let unsigned = base64::engine::general_purpose::STANDARD.encode(
            palisade_engine::encode_bundle(
                &palisade_engine::compile(
                    &load(&[SourceFile::new("p.yaml", POLICY)]).unwrap(),
                    &Options::default(),
                )
                .unwrap(),
            )
            .unwrap(),
        );
        let configure = |bundle: &str, keys: serde_json::Value| {
            let json = serde_json::json!({"bundle": bundle, "trustedKeys": keys, "workload": cart});
            Plugin::configure(
                &serde_json::to_vec(&json).unwrap(),
                &NodeMetadata::default(),
            )
            .map(|p| p.view.policies)
            .map_err(|e| e.to_string())
        };
        let policies = Ok(vec!["shop/only-get".to_string()]);
        assert_eq!(configure(&good, serde_json::json!([key])), policies);
        assert_eq!(configure(&mesh, serde_json::json!([key])), policies);
        // Rotation: the old key and a new one, either accepted.
        assert_eq!(
            configure(&good, serde_json::json!([other_key, key])),
            policies
        );
        let refused = [
            (
                "unsigned",
                &unsigned,
                serde_json::json!([key]),
                "invalid `bundle`: bundle is not signed, and this host only accepts bundles signed by a trusted key",
            ),
            (
                "another key",
                &good,
                serde_json::json!([other_key]),
                "invalid `bundle`: bundle is signed by key `key-1`, which this host does not trust",
            ),
            (
                "another workload",
                &for_frontend,
                serde_json::json!([key]),
                "invalid `bundle`: bundle is for workload:shop/frontend, and this host enforces workload:shop/cart",
            ),
            (
                "no key named",
                &good,
                serde_json::json!([]),
                "invalid plugin configuration: `trustedKeys` is empty: name at least one key, or leave it out",
            ),
        ];
        for (name, bundle, keys, want) in refused {
            assert_eq!(configure(bundle, keys), Err(want.to_string()), "{name}");
        }
        let json = serde_json::json!({"policy": POLICY, "trustedKeys": [key], "workload": cart});
        let e = err(&serde_json::to_vec(&json).unwrap());
        assert!(e.contains("accepts only a signed `bundle`"), "{e}");
    }

    #[test]
    fn a_named_workload_keeps_only_its_own_view() {
        let inventory = "apiVersion: palisade.dev/v1alpha1\nkind: Inventory\nmetadata: {name: inv}\n\
                         spec:\n  namespaces: [{name: shop}]\n  workloads:\n  \
                         - {name: cart, namespace: shop, labels: {app: cart}}\n  \
                         - {name: web, namespace: shop, labels: {app: web}}\n";
        let policy = format!("{POLICY}---\n{inventory}");
        let json = serde_json::json!({"policy": policy, "workload": {"namespace": "shop", "name": "cart"}});
        let p = Plugin::configure(
            &serde_json::to_vec(&json).unwrap(),
            &NodeMetadata::default(),
        )
        .unwrap();
        assert_eq!(p.view.policies, vec!["shop/only-get".to_string()]);
        assert!(p.engine.views().is_empty() && p.engine.container_policies().is_empty());
        assert_eq!(
            p.engine.inventory().workloads.len(),
            2,
            "NetworkPolicy still needs it"
        );
        let json =
            serde_json::json!({"policy": policy, "workload": {"namespace": "shop", "name": "web"}});
        let p = Plugin::configure(
            &serde_json::to_vec(&json).unwrap(),
            &NodeMetadata::default(),
        )
        .unwrap();
        assert!(p.view.policies.is_empty(), "{:?}", p.view.policies);
    }

    #[test]
    fn a_bundle_with_whitespace_still_decodes() {
        let set = load(&[SourceFile::new("p.yaml", POLICY)]).unwrap();
        let engine = palisade_engine::compile(&set, &Options::default()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(palisade_engine::encode_bundle(&engine).unwrap());
        let wrapped: String = b64
            .as_bytes()
            .chunks(60)
            .map(|c| format!("{}\n  ", std::str::from_utf8(c).unwrap()))
            .collect();
        let json = serde_json::json!({"bundle": wrapped, "workload": {"namespace": "shop", "labels": {"app": "cart"}}});
        let p = Plugin::configure(
            &serde_json::to_vec(&json).unwrap(),
            &NodeMetadata::default(),
        )
        .unwrap();
        assert_eq!(p.view.policies, vec!["shop/only-get".to_string()]);
    }

    #[test]
    fn the_workload_comes_from_node_metadata_when_not_configured() {
        let node = NodeMetadata {
            namespace: Some("shop".into()),
            workload_name: Some("cart-v1".into()),
            labels: [("app".to_string(), "cart".to_string())].into(),
            service_account: Some("cart".into()),
        };
        let json = serde_json::to_vec(&serde_json::json!({"policy": POLICY})).unwrap();
        let p = Plugin::configure(&json, &node).unwrap();
        assert_eq!(p.view.policies, vec!["shop/only-get".to_string()]);
        assert_eq!(p.workload.service_account.as_deref(), Some("cart"));
        let e = err(&json);
        assert!(e.contains("no local workload"), "{e}");
    }
}

#[cfg(test)]
mod peer_candidate_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ipnet::{Ipv4Net, Ipv6Net};
    use proptest::prelude::*;

    fn members(nets: &[IpNet], ip: IpAddr) -> Vec<bool> {
        nets.iter().map(|n| n.contains(&ip)).collect()
    }

    #[test]
    fn candidates_are_each_blocks_first_address_the_one_after_and_the_zeros() {
        let nets: Vec<IpNet> = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "255.255.255.255/32",
            "2001:db8::/32",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let got: Vec<String> = peer_candidates(&nets)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "0.0.0.0",
                "10.0.0.0",
                "10.1.0.0",
                "10.2.0.0",
                "11.0.0.0",
                "255.255.255.255",
                "::",
                "2001:db8::",
                "2001:db9::",
            ]
        );
    }

    proptest! {
        /// Whatever blocks a view tests and whatever the peer, some candidate is in exactly
        /// the same blocks (so deciding every candidate decides every peer).
        #[test]
        fn some_candidate_is_in_exactly_the_blocks_of_any_ipv4_peer(
            blocks in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..6),
            peer in any::<u32>(),
            near in proptest::option::of((0usize..6, -2i64..=2)),
        ) {
            let nets: Vec<IpNet> = blocks
                .iter()
                .map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(*a), *l).unwrap().trunc().into())
                .collect();
            // Half the time, a peer at the edge of a block (where the membership changes).
            let peer = match near.and_then(|(i, d)| Some((nets.get(i)?, d))) {
                Some((IpNet::V4(n), d)) => {
                    let edge = i64::from(u32::from(n.network()));
                    u32::try_from(edge + d).unwrap_or(peer)
                }
                _ => peer,
            };
            let want = members(&nets, Ipv4Addr::from(peer).into());
            prop_assert!(peer_candidates(&nets).iter().any(|c| members(&nets, *c) == want));
        }

        #[test]
        fn some_candidate_is_in_exactly_the_blocks_of_any_ipv6_peer(
            blocks in proptest::collection::vec((any::<u128>(), 0u8..=128), 0..6),
            peer in any::<u128>(),
        ) {
            let nets: Vec<IpNet> = blocks
                .iter()
                .map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(*a), *l).unwrap().trunc().into())
                .collect();
            let want = members(&nets, Ipv6Addr::from(peer).into());
            prop_assert!(peer_candidates(&nets).iter().any(|c| members(&nets, *c) == want));
        }
    }
}
